package retention

import (
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/assistlog/assistlog/internal/tenants"
)

// LokiPeriod rounds the longest calendar span up to whole days: Loki
// never deletes earlier than the tenant's cutoff, and keeps at most two
// days more.
func TestLokiPeriodNeverEarly(t *testing.T) {
	for keep, want := range map[tenants.Retention]time.Duration{
		{Months: 6}:  186 * 24 * time.Hour, // 184 days (Mar–Aug) + today + a DST hour, rounded up
		{Months: 12}: 368 * 24 * time.Hour,
		{Days: 1}:    3 * 24 * time.Hour,
	} {
		got := LokiPeriod(keep)
		if got != want {
			t.Errorf("%v: %s, want %s", keep, got, want)
		}
		if got%(24*time.Hour) != 0 || got < LokiMinimum {
			t.Errorf("%v: %s is not whole days of at least 24h", keep, got)
		}
		// Whatever the day, the tenant's cutoff is no further back than
		// Loki's period reaches, so Loki deletes nothing the cutoff keeps.
		ufa, _ := time.LoadLocation("Asia/Yekaterinburg")
		for d := time.Date(2027, 1, 1, 23, 59, 59, 0, ufa); d.Year() == 2027; d = d.AddDate(0, 0, 1) {
			if back := d.Sub(keep.Cutoff(d, ufa)); back > got {
				t.Fatalf("%v at %s: the cutoff is %s back, Loki's period only %s", keep, d, back, got)
			}
		}
	}
}

// The rendered limits parse as Loki's limits_config: the default period
// and one rule per tenant selecting its tenant label.
func TestLokiLimits(t *testing.T) {
	s, err := tenants.Parse([]byte("retention: 12mo\ntenants:\n  - {name: a, tz: UTC, retention: 6mo}\n  - {name: b, tz: Europe/Moscow}\n  - {name: c, tz: UTC, retention: 30d}\n"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Limits struct {
			RetentionPeriod string `yaml:"retention_period"`
			Streams         []struct {
				Selector string `yaml:"selector"`
				Priority int    `yaml:"priority"`
				Period   string `yaml:"period"`
			} `yaml:"retention_stream"`
		} `yaml:"limits_config"`
	}
	if err := yaml.Unmarshal([]byte("limits_config:\n"+LokiLimits(s, 0)), &doc); err != nil {
		t.Fatalf("%v\n%s", err, LokiLimits(s, 0))
	}
	if doc.Limits.RetentionPeriod != "8832h" {
		t.Errorf("retention_period %s, want 8832h (12 months rounded up)", doc.Limits.RetentionPeriod)
	}
	var got []string
	for _, r := range doc.Limits.Streams {
		got = append(got, r.Selector+" "+r.Period)
		if r.Priority < 1 {
			t.Errorf("%s: priority %d", r.Selector, r.Priority)
		}
	}
	want := `{tenant="a"} 4464h,{tenant="b"} 8832h,{tenant="c"} 768h`
	if strings.Join(got, ",") != want {
		t.Errorf("rules %s, want %s", strings.Join(got, ","), want)
	}

	var ov struct {
		Overrides map[string]struct {
			RetentionPeriod string `yaml:"retention_period"`
		} `yaml:"overrides"`
	}
	if err := yaml.Unmarshal([]byte(LokiOverrides(s, 0)), &ov); err != nil {
		t.Fatal(err)
	}
	if ov.Overrides["a"].RetentionPeriod != "4464h" || ov.Overrides["c"].RetentionPeriod != "768h" || len(ov.Overrides) != 3 {
		t.Errorf("overrides %+v", ov.Overrides)
	}
}

// A limit (the Loki's own shorter period) caps every period: the rules
// only ever shorten what Loki keeps.
func TestLokiLimitCaps(t *testing.T) {
	s, err := tenants.Parse([]byte("tenants:\n  - {name: a, tz: UTC, retention: 6mo}\n  - {name: c, tz: UTC, retention: 14d}\n"))
	if err != nil {
		t.Fatal(err)
	}
	out := LokiLimits(s, 744*time.Hour)
	for _, want := range []string{"retention_period: 744h", `'{tenant="a"}'` + "\n      priority: 1\n      period: 744h", `'{tenant="c"}'` + "\n      priority: 1\n      period: 384h"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
}
