package tenants

import (
	"testing"
	"time"
)

func TestRetentionPerTenantAndDefault(t *testing.T) {
	s, err := Parse([]byte("retention: 9mo\ntenants:\n  - {name: a, tz: Asia/Yekaterinburg, retention: 6mo}\n  - {name: b, tz: Europe/Moscow}\n  - {name: c, tz: UTC, retention: 180d}\n  - {name: d, tz: UTC, retention: 1y}\n"))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]Retention{"a": {Months: 6}, "b": {Months: 9}, "c": {Days: 180}, "d": {Months: 12}} {
		if tn, _ := s.Get(name); tn.Kept() != want {
			t.Errorf("%s: retention %v, want %v", name, tn.Kept(), want)
		}
	}
	if s.Default() != (Retention{Months: 9}) {
		t.Errorf("file default %v", s.Default())
	}
	// Without a file-level retention the default is 12 months.
	s2, err := Parse([]byte("tenants:\n  - {name: a, tz: UTC}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if a, _ := s2.Get("a"); a.Kept() != (Retention{Months: 12}) || s2.Default() != (Retention{Months: 12}) {
		t.Errorf("default retention %v / %v, want 12mo", a.Kept(), s2.Default())
	}
}

// The cutoff is the tenant's local midnight, months counted by calendar.
func TestCutoffIsLocalMidnightByCalendar(t *testing.T) {
	ufa, _ := time.LoadLocation("Asia/Yekaterinburg")
	for _, c := range []struct {
		keep Retention
		now  string // UTC
		want string // in Ufa
	}{
		// 27 Nov 10:00 UTC is 15:00 in Ufa: six months back is 27 May, 00:00 Ufa.
		{Retention{Months: 6}, "2026-11-27T10:00:00Z", "2026-05-27T00:00:00+05:00"},
		// 26 Nov 20:00 UTC is already 27 Nov in Ufa.
		{Retention{Months: 6}, "2026-11-26T20:00:00Z", "2026-05-27T00:00:00+05:00"},
		{Retention{Months: 12}, "2026-11-27T10:00:00Z", "2025-11-27T00:00:00+05:00"},
		// 31 August − 6 months has no 31 February: the month's last day.
		{Retention{Months: 6}, "2026-08-31T10:00:00Z", "2026-02-28T00:00:00+05:00"},
		{Retention{Months: 6}, "2028-08-31T10:00:00Z", "2028-02-29T00:00:00+05:00"},
		// Across a year boundary.
		{Retention{Months: 6}, "2026-03-15T10:00:00Z", "2025-09-15T00:00:00+05:00"},
		{Retention{Days: 180}, "2026-11-27T10:00:00Z", "2026-05-31T00:00:00+05:00"},
	} {
		now, _ := time.Parse(time.RFC3339, c.now)
		got := c.keep.Cutoff(now, ufa)
		if got.Format(time.RFC3339) != c.want {
			t.Errorf("%v at %s: cutoff %s, want %s", c.keep, c.now, got.Format(time.RFC3339), c.want)
		}
	}
}

// MaxSpan bounds how far back any cutoff reaches: six calendar months are
// at most 184 days (March–August, July–December), twelve at most 366.
func TestMaxSpan(t *testing.T) {
	for keep, days := range map[Retention]int{{Months: 6}: 184, {Months: 12}: 366, {Months: 1}: 31, {Days: 180}: 180} {
		if got, want := keep.MaxSpan(), time.Duration(days)*24*time.Hour+25*time.Hour; got != want {
			t.Errorf("%v: max span %s, want %s", keep, got, want)
		}
		// And every real cutoff is within it.
		for d := time.Date(2026, 1, 1, 23, 59, 0, 0, time.UTC); d.Year() == 2026; d = d.AddDate(0, 0, 1) {
			if span := d.Sub(keep.Cutoff(d, time.UTC)); span > keep.MaxSpan() {
				t.Fatalf("%v at %s reaches back %s, more than MaxSpan %s", keep, d, span, keep.MaxSpan())
			}
		}
	}
}
