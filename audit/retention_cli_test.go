package main

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestRetentionLokiConfig: loki-config renders the demo tenants file's
// retention for Loki: the 12-month default and the 6-month salons, in
// hours rounded up; --overrides gives the same per Loki tenant.
func TestRetentionLokiConfig(t *testing.T) {
	out, errOut, err := runAudit(t, "retention", "loki-config", "--tenants-file", "../demo/tenants.yaml")
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	var doc struct {
		Limits struct {
			Period  string `yaml:"retention_period"`
			Streams []struct {
				Selector, Period string
			} `yaml:"retention_stream"`
		} `yaml:"limits_config"`
	}
	if err := yaml.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if doc.Limits.Period != "8832h" || len(doc.Limits.Streams) != 8 {
		t.Fatalf("default %s, %d rules:\n%s", doc.Limits.Period, len(doc.Limits.Streams), out)
	}
	for _, r := range doc.Limits.Streams {
		want := "8832h"
		if strings.Contains(r.Selector, "salon-") {
			want = "4464h"
		}
		if r.Period != want {
			t.Errorf("%s: %s, want %s", r.Selector, r.Period, want)
		}
	}
	// Through --config's tenants_file, as overrides.
	cfg := writeConfig(t, "http://127.0.0.1:1", "assistant-events", "")
	out, errOut, err = runAudit(t, "retention", "loki-config", "--config", cfg, "--overrides")
	if err != nil || !strings.Contains(out, "\"salon-aurora\":\n    retention_period: 4464h") {
		t.Errorf("overrides: %v %s\n%s", err, errOut, out)
	}
}

// TestRetentionRefusals: an unknown tenant, an unknown subcommand and a
// format the command does not write are errors that say so, before any
// store is touched.
func TestRetentionRefusals(t *testing.T) {
	cfg := writeConfig(t, "http://127.0.0.1:1", "assistant-events", "")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"retention", "apply", "--config", cfg, "--tenant", "nope"}, `unknown tenant "nope"`},
		{[]string{"retention", "purge"}, `unknown subcommand "purge"`},
		{[]string{"retention"}, "say apply or loki-config"},
		{[]string{"retention", "apply", "--config", cfg, "--format", "md"}, "md"},
	} {
		_, _, err := runAudit(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error containing %q", c.args, err, c.want)
		}
	}
	if _, errOut, err := runAudit(t, "retention", "apply", "--help"); err != nil || !strings.Contains(errOut, "Examples:") {
		t.Errorf("--help: %v\n%s", err, errOut)
	}
}
