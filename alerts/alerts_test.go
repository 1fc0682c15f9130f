package alerts_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/assistlog/assistlog/alerts"
	"github.com/assistlog/assistlog/internal/stacktest"
)

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func readRules(t *testing.T, path string) ruleFile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f ruleFile
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return f
}

// TestRulesAreComplete: every alert of both rule sets has a severity, a
// component, a summary, a description, a dashboard link and a runbook that
// exists in docs/runbooks.
func TestRulesAreComplete(t *testing.T) {
	runbook := regexp.MustCompile(`/docs/runbooks/([a-z0-9-]+\.md)$`)
	n := 0
	for _, path := range []string{"loki/assistlog.rules.yaml", "prometheus/pipeline.rules.yaml"} {
		for _, g := range readRules(t, path).Groups {
			for _, r := range g.Rules {
				n++
				if r.Labels["severity"] != "critical" && r.Labels["severity"] != "warning" {
					t.Errorf("%s: %s has severity %q", path, r.Alert, r.Labels["severity"])
				}
				if r.Labels["component"] != "content" && r.Labels["component"] != "pipeline" {
					t.Errorf("%s: %s has component %q (inhibition matches on it)", path, r.Alert, r.Labels["component"])
				}
				for _, a := range []string{"summary", "description", "dashboard_url", "runbook_url"} {
					if r.Annotations[a] == "" {
						t.Errorf("%s: %s has no %s", path, r.Alert, a)
					}
				}
				m := runbook.FindStringSubmatch(r.Annotations["runbook_url"])
				if m == nil {
					t.Errorf("%s: %s runbook_url %q is not under docs/runbooks", path, r.Alert, r.Annotations["runbook_url"])
				} else if _, err := os.Stat(filepath.Join("..", "docs", "runbooks", m[1])); err != nil {
					t.Errorf("%s: %s: runbook missing: %v", path, r.Alert, err)
				}
			}
		}
	}
	if n < 12 {
		t.Errorf("only %d rules found", n)
	}
}

// TestPrometheusRules runs promtool's checks and the unit tests in
// prometheus/pipeline.rules.test.yaml (each alert fires and stays quiet).
func TestPrometheusRules(t *testing.T) {
	ep := stacktest.Require(t, stacktest.Prometheus)
	for _, args := range [][]string{{"check", "rules", "pipeline.rules.yaml"}, {"test", "rules", "pipeline.rules.test.yaml"}} {
		cmd := exec.Command(ep.Promtool, args...)
		cmd.Dir = "prometheus"
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "SUCCESS") {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// Every alert has a unit test.
	tests, _ := os.ReadFile("prometheus/pipeline.rules.test.yaml")
	for _, g := range readRules(t, "prometheus/pipeline.rules.yaml").Groups {
		for _, r := range g.Rules {
			if !strings.Contains(string(tests), "alertname: "+r.Alert+"\n") {
				t.Errorf("%s has no promtool unit test", r.Alert)
			}
		}
	}
}

// TestAlertmanagerConfig loads the configuration with amtool (Alertmanager's
// own loader) and checks where alerts go.
func TestAlertmanagerConfig(t *testing.T) {
	ep := stacktest.Require(t, stacktest.Alertmanager)
	cmd := exec.Command(ep.Amtool, "check-config", "alertmanager.yml")
	cmd.Dir = "alertmanager"
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "SUCCESS") || !strings.Contains(string(out), "1 templates") {
		t.Fatalf("amtool check-config: %v\n%s", err, out)
	}
	for _, c := range []struct {
		labels []string
		want   string
	}{
		{[]string{"alertname=AssistlogProgramDown", "severity=critical", "component=pipeline"}, "oncall-webhook,oncall-telegram"},
		{[]string{"alertname=AssistlogDeadLetters", "severity=warning", "component=pipeline"}, "oncall-webhook"},
		{[]string{"alertname=AssistantErrorSpike", "severity=critical", "component=content", "tenant=dental-smile"}, "oncall-webhook,oncall-telegram"},
		{[]string{"alertname=AssistantLowConfidenceBurst", "severity=warning", "component=content", "tenant=salon-aurora"}, "salon-aurora-telegram,oncall-webhook"},
		{[]string{"alertname=AssistantBookingSilence", "severity=warning", "component=content", "tenant=dental-smile"}, "owners-email,oncall-webhook"},
	} {
		cmd := exec.Command(ep.Amtool, append([]string{"config", "routes", "test", "--config.file", "alertmanager.yml"}, c.labels...)...)
		cmd.Dir = "alertmanager"
		out, err := cmd.CombinedOutput()
		if got := strings.TrimSpace(string(out)); err != nil || got != c.want {
			t.Errorf("%v routes to %q (%v), want %q", c.labels, got, err, c.want)
		}
	}
	// The templates render an alert with what on-call needs.
	cmd = exec.Command(ep.Amtool, "template", "render", "--template.glob", "templates/*.tmpl",
		"--template.text", `{{ template "assistlog.telegram" . }}`)
	cmd.Dir = "alertmanager"
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "Since ") {
		t.Errorf("telegram template: %v\n%s", err, out)
	}
}

// TestLokiRulesLoadedByRuler: the stack installed the repository's content
// rules for the real Loki ruler, which lists every rule as evaluated
// without error (its LogQL parses and runs).
func TestLokiRulesLoadedByRuler(t *testing.T) {
	ep := stacktest.Require(t, stacktest.Loki)
	src, err := os.ReadFile("loki/assistlog.rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	installed, err := os.ReadFile(filepath.Join(ep.LokiRulesDir, "assistlog-content.yaml"))
	if err != nil || string(installed) != string(src) {
		t.Fatalf("the ruler's copy differs from loki/assistlog.rules.yaml (%v): run `stack up` again", err)
	}
	const group = "assistlog-content"
	var want []string
	for _, g := range readRules(t, "loki/assistlog.rules.yaml").Groups {
		for _, r := range g.Rules {
			want = append(want, r.Alert)
		}
	}
	sort.Strings(want)
	stacktest.Eventually(t, 2*time.Minute, "the Loki ruler evaluating every rule", func() error {
		resp, err := http.Get(ep.LokiURL + "/prometheus/api/v1/rules")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var r struct {
			Data struct {
				Groups []struct {
					Name  string `json:"name"`
					Rules []struct {
						Name           string `json:"name"`
						Health         string `json:"health"`
						LastError      string `json:"lastError"`
						LastEvaluation string `json:"lastEvaluation"`
					} `json:"rules"`
				} `json:"groups"`
			} `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			return err
		}
		var got []string
		for _, g := range r.Data.Groups {
			if g.Name != group {
				continue
			}
			for _, rule := range g.Rules {
				if rule.LastError != "" {
					t.Fatalf("rule %s fails in the ruler: %s", rule.Name, rule.LastError)
				}
				if rule.Health != "ok" {
					return fmt.Errorf("rule %s health %q (not evaluated yet)", rule.Name, rule.Health)
				}
				got = append(got, rule.Name)
			}
		}
		sort.Strings(got)
		if strings.Join(got, ",") != strings.Join(want, ",") {
			return fmt.Errorf("ruler lists %v, want %v", got, want)
		}
		return nil
	})
}

// TestLokiRulesAreRendered: the rules file is the rendering of the
// thresholds file (edit thresholds.yaml, run go run ./alerts/cmd/lokirules).
func TestLokiRulesAreRendered(t *testing.T) {
	b, err := os.ReadFile("loki/thresholds.yaml")
	if err != nil {
		t.Fatal(err)
	}
	th, err := alerts.ParseThresholds(b)
	if err != nil {
		t.Fatal(err)
	}
	want, err := alerts.RenderLokiRules(th)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile("loki/assistlog.rules.yaml")
	if string(got) != string(want) {
		t.Fatal("loki/assistlog.rules.yaml is not the rendering of loki/thresholds.yaml: run go run ./alerts/cmd/lokirules")
	}
}

// TestThresholdOverrides: a tenant's override changes only what it names,
// gets its own rules, and is left out of the shared ones; bad values are
// refused with the field named.
func TestThresholdOverrides(t *testing.T) {
	th, err := alerts.ParseThresholds([]byte(`
defaults:
  error_spike: {count: 5, share: 0.05, window: 10m}
  low_confidence: {count: 5, below: 0.6, window: 10m}
  complaints: {count: 3, window: 1h}
  booking_silence: {messages: 20, window: 2h, for: 10m}
tenants:
  big-clinic:
    error_spike: {count: 15}
    complaints: {window: 3h}
`))
	if err != nil {
		t.Fatal(err)
	}
	big := th.For("big-clinic")
	if big.ErrorSpike.Count != 15 || big.ErrorSpike.Share != 0.05 || big.Complaints.Window != "3h" || big.Complaints.Count != 3 {
		t.Errorf("merged: %+v %+v", *big.ErrorSpike, *big.Complaints)
	}
	b, _ := alerts.RenderLokiRules(th)
	rules := string(b)
	for _, want := range []string{`level="error", tenant!~"big-clinic"}[10m])) >= 5)`, `level="error", tenant="big-clinic"}[10m])) >= 15)`,
		`event_type="complaint.received", tenant="big-clinic"}[3h])) >= 3`} {
		if !strings.Contains(rules, want) {
			t.Errorf("rendered rules lack %s", want)
		}
	}
	var f ruleFile
	if err := yaml.Unmarshal(b, &f); err != nil || len(f.Groups) != 1 || len(f.Groups[0].Rules) != 8 {
		t.Errorf("rendered rules: %v, %+v", err, f)
	}
	_, err = alerts.ParseThresholds([]byte(`
defaults:
  error_spike: {count: 0, share: 2, window: ten minutes}
  low_confidence: {count: 5, below: 0.6, window: 10m}
  complaints: {count: 3, window: 1h}
  booking_silence: {messages: 20, window: 2h, for: 10m}
tenants:
  "Bad.Name": {}
`))
	for _, want := range []string{"defaults.error_spike.count", "defaults.error_spike.share", "defaults.error_spike.window", "tenants.Bad.Name"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %s: %v", want, err)
		}
	}
}
