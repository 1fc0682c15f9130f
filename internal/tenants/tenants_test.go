package tenants

import (
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	s, err := Parse([]byte("tenants:\n  - {name: salon-aurora, tz: Asia/Yekaterinburg, title: Аврора}\n  - {name: clinic-family, tz: Europe/Moscow}\n"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.Get("salon-aurora")
	if err != nil {
		t.Fatal(err)
	}
	// Ufa is UTC+5 all year (no DST since 2011).
	if _, off := time.Date(2026, 7, 1, 0, 0, 0, 0, a.Location()).Zone(); off != 5*3600 {
		t.Errorf("Asia/Yekaterinburg offset %d, want 18000", off)
	}
	if got := strings.Join(s.Names(), ","); got != "clinic-family,salon-aurora" {
		t.Errorf("names %s", got)
	}
	if f, _ := s.Get("clinic-family"); f.Title != "clinic-family" {
		t.Errorf("default title %q", f.Title)
	}
	if _, err := s.Get("nope"); err == nil || !strings.Contains(err.Error(), `unknown tenant "nope"`) {
		t.Errorf("unknown tenant: %v", err)
	}
	all, _ := s.Select("")
	if len(all) != 2 {
		t.Errorf("select all: %d", len(all))
	}
}

func TestParseErrorsNameTheField(t *testing.T) {
	for in, want := range map[string]string{
		"tenants: []\n": "tenants: at least one is required",
		"tenants:\n  - {name: Bad Name, tz: UTC}\n":                  "tenants[0].name: must match",
		"tenants:\n  - {name: a}\n":                                  "tenants[0] (a).tz: required",
		"tenants:\n  - {name: a, tz: Mars/Olympus}\n":                `tenants[0] (a).tz: unknown time zone "Mars/Olympus"`,
		"tenants:\n  - {name: a, tz: UTC}\n  - {name: a, tz: UTC}\n": "tenants[1] (a).name: defined twice",
		"tenants:\n  - {name: a, tz: UTC, retention: 6m}\n":          `tenants[0] (a).retention: must be a whole number of months, years or days such as 6mo, 1y or 180d, got "6m"`,
		"retention: 0d\ntenants:\n  - {name: a, tz: UTC}\n":          `retention: must be a whole number`,
		"tenants:\n  - {name: a, tz: UTC, keep: 6mo}\n":              "field keep not found",
	} {
		_, err := Parse([]byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want %q", in, err, want)
		}
	}
}
