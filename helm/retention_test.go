package helm_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/assistlog/assistlog/internal/tenants"
)

// TestChartRetentionCronJob: with audit on, a daily CronJob runs `audit
// retention apply` with the audit config, whose tenants file carries each
// tenant's retention and the default (read back with the tenants
// package, as audit reads it); dryRun adds --dry-run; disabled, there is
// no such CronJob; a retention audit could not read is refused.
func TestChartRetentionCronJob(t *testing.T) {
	r, err := render(t, readValues(t, "testdata/all-on.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cj := r.one(t, "CronJob", "-retention").obj.(*batchv1.CronJob)
	if cj.Spec.Schedule != "15 3 * * *" || cj.Spec.TimeZone == nil || *cj.Spec.TimeZone != "Asia/Yekaterinburg" {
		t.Errorf("schedule %q in %v", cj.Spec.Schedule, cj.Spec.TimeZone)
	}
	c := cj.Spec.JobTemplate.Spec.Template.Spec.Containers[0]
	if got := strings.Join(c.Args, " "); got != "retention apply --config /etc/assistlog/audit.yaml --format csv" {
		t.Errorf("args %q", got)
	}
	if !strings.Contains(c.Image, "audit") {
		t.Errorf("image %q is not audit's", c.Image)
	}
	cm := r.one(t, "ConfigMap", "-audit").obj.(*corev1.ConfigMap)
	set, err := tenants.Parse([]byte(cm.Data["tenants.yaml"]))
	if err != nil {
		t.Fatalf("the chart's tenants file: %v\n%s", err, cm.Data["tenants.yaml"])
	}
	if a, _ := set.Get("salon-aurora"); a.Kept().String() != "6mo" {
		t.Errorf("salon-aurora keeps %s, want 6mo", a.Kept())
	}
	if d, _ := set.Get("dental-smile"); d.Kept().String() != "12mo" || set.Default().String() != "12mo" {
		t.Errorf("dental-smile keeps %s, default %s; want the 12mo default", d.Kept(), set.Default())
	}

	dir := t.TempDir()
	write := func(name, y string) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(y), 0o644); err != nil {
			t.Fatal(err)
		}
		return f
	}
	r, err = render(t, readValues(t, "testdata/all-on.yaml", write("dry.yaml", "audit: {retention: {dryRun: true}}")))
	if err != nil {
		t.Fatal(err)
	}
	if args := r.one(t, "CronJob", "-retention").obj.(*batchv1.CronJob).Spec.JobTemplate.Spec.Template.Spec.Containers[0].Args; args[len(args)-1] != "--dry-run" {
		t.Errorf("dryRun: args %v", args)
	}
	r, err = render(t, readValues(t, "testdata/all-on.yaml", write("off.yaml", "audit: {retention: {enabled: false}}")))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range r.all("CronJob") {
		if strings.HasSuffix(d.obj.(*batchv1.CronJob).Name, "-retention") {
			t.Errorf("retention disabled, yet %s is rendered", d.obj.(*batchv1.CronJob).Name)
		}
	}
	for _, bad := range []string{"audit: {retentionDefault: 6m}", "audit: {enabled: true, tenants: [{name: a, tz: UTC, retention: six months}]}"} {
		if _, err := render(t, readValues(t, "testdata/all-on.yaml", write("bad.yaml", bad))); err == nil || !strings.Contains(err.Error(), "retention") {
			t.Errorf("%s: rendered or refused for another reason: %v", bad, err)
		}
	}
}
