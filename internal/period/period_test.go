package period

import (
	"strings"
	"testing"
	"time"
)

func TestWeekInUfa(t *testing.T) {
	ufa, err := time.LoadLocation("Asia/Yekaterinburg")
	if err != nil {
		t.Fatal(err)
	}
	r, err := Spec{Week: "2026-W47"}.In(ufa, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// 2026-W47 is Monday 16 to Sunday 22 November; Monday 00:00 in Ufa is
	// Sunday 19:00 UTC.
	if got := r.From.UTC().Format(time.RFC3339); got != "2026-11-15T19:00:00Z" {
		t.Errorf("from %s", got)
	}
	if got := r.To.UTC().Format(time.RFC3339); got != "2026-11-22T19:00:00Z" {
		t.Errorf("to %s", got)
	}
	if WeekOf(r.From.Add(time.Second), ufa) != "2026-W47" || WeekOf(r.To, ufa) != "2026-W48" {
		t.Error("WeekOf disagrees with Week")
	}
	// Week 1 of 2027 starts on Monday 4 January (1 January is a Friday);
	// 2026 has 53 weeks.
	if r, _ := Week("2027-W01", time.UTC); r.From.Format("2006-01-02") != "2027-01-04" {
		t.Errorf("2027-W01 starts %s", r.From)
	}
	if r, err := Week("2026-W53", time.UTC); err != nil || r.From.Format("2006-01-02") != "2026-12-28" {
		t.Errorf("2026-W53: %v %v", r.From, err)
	}
	if _, err := Week("2025-W53", time.UTC); err == nil {
		t.Error("2025 has no week 53")
	}
}

func TestSpecs(t *testing.T) {
	ufa, _ := time.LoadLocation("Asia/Yekaterinburg")
	now := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		s        Spec
		from, to string
	}{
		{Spec{From: "2026-11-16", To: "2026-11-22"}, "2026-11-15T19:00:00Z", "2026-11-22T19:00:00Z"},
		{Spec{From: "2026-11-16T10:00:00Z", To: "2026-11-16T11:00:00+03:00"}, "2026-11-16T10:00:00Z", "2026-11-16T08:00:00Z"},
		{Spec{Month: "2026-11"}, "2026-10-31T19:00:00Z", "2026-11-30T19:00:00Z"},
		{Spec{Last: "7d"}, "2026-11-20T08:00:00Z", "2026-11-27T08:00:00Z"},
	} {
		r, err := c.s.In(ufa, now)
		if c.from == "2026-11-16T10:00:00Z" {
			if err == nil {
				t.Errorf("%+v: --to before --from accepted", c.s)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%+v: %v", c.s, err)
		}
		if r.From.UTC().Format(time.RFC3339) != c.from || r.To.UTC().Format(time.RFC3339) != c.to {
			t.Errorf("%+v: [%s, %s), want [%s, %s)", c.s, r.From.UTC(), r.To.UTC(), c.from, c.to)
		}
	}
	for s, want := range map[Spec]string{
		{}:                                   "a period is required",
		{Week: "2026-47"}:                    "not an ISO week",
		{Week: "2026-W47", Last: "7d"}:       "give one period",
		{From: "2026-11-01"}:                 "go together",
		{Last: "7 days"}:                     "not a length",
		{Month: "2026-13"}:                   "has no month 13",
		{From: "2026-W47", To: "2026-11-30"}: "for a week use --week",
	} {
		if err := s.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%+v: %v, want %q", s, err, want)
		}
	}
}
