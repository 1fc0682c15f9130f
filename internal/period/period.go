// Package period turns what an auditor types (--from/--to dates, an ISO
// week 2026-W47, --last 7d) into instants, in a tenant's time zone: a
// salon in Ufa's Monday starts at 00:00 UTC+5, not at midnight UTC or
// Moscow.
package period

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Spec is a period as given on the command line; exactly one of From/To,
// Week, Month or Last is set.
type Spec struct {
	// From and To are dates (To included) or RFC 3339 instants (To
	// excluded).
	From, To string
	// Week is an ISO week, 2026-W47 (Monday to Sunday).
	Week string
	// Month is a calendar month, 2026-11.
	Month string
	// Last is a length back from now: 7d, 2w, 24h, 90m.
	Last string
}

// Range is [From, To) in one zone.
type Range struct {
	From, To time.Time
	// Label is how the period reads in output: 2026-W47, 2026-11-16..2026-11-22.
	Label string
}

var (
	reWeek  = regexp.MustCompile(`^(\d{4})-W(\d{2})$`)
	reMonth = regexp.MustCompile(`^(\d{4})-(\d{2})$`)
	reLast  = regexp.MustCompile(`^(\d+)([mhdw])$`)
)

// Empty reports whether no period was given.
func (s Spec) Empty() bool {
	return s.From == "" && s.To == "" && s.Week == "" && s.Month == "" && s.Last == ""
}

// Validate checks the spec's shape without a zone: one kind of period,
// well-formed values. Errors name the flag.
func (s Spec) Validate() error {
	n := 0
	if s.From != "" || s.To != "" {
		n++
		if s.From == "" || s.To == "" {
			return errors.New("--from and --to go together")
		}
	}
	for _, v := range []string{s.Week, s.Month, s.Last} {
		if v != "" {
			n++
		}
	}
	if n == 0 {
		return errors.New("a period is required: --week 2026-W47, --from 2026-11-16 --to 2026-11-22, --month 2026-11 or --last 7d")
	}
	if n > 1 {
		return errors.New("give one period: --from/--to, --week, --month or --last")
	}
	_, err := s.In(time.UTC, time.Now())
	return err
}

// In resolves the spec in loc; now anchors --last.
func (s Spec) In(loc *time.Location, now time.Time) (Range, error) {
	switch {
	case s.Week != "":
		return Week(s.Week, loc)
	case s.Month != "":
		m := reMonth.FindStringSubmatch(s.Month)
		if m == nil {
			return Range{}, fmt.Errorf("--month: %q is not a month like 2026-11", s.Month)
		}
		y, _ := strconv.Atoi(m[1])
		mo, _ := strconv.Atoi(m[2])
		if mo < 1 || mo > 12 {
			return Range{}, fmt.Errorf("--month: %q has no month %d", s.Month, mo)
		}
		from := time.Date(y, time.Month(mo), 1, 0, 0, 0, 0, loc)
		return Range{From: from, To: from.AddDate(0, 1, 0), Label: s.Month}, nil
	case s.Last != "":
		m := reLast.FindStringSubmatch(s.Last)
		if m == nil {
			return Range{}, fmt.Errorf("--last: %q is not a length like 7d, 2w, 24h or 90m", s.Last)
		}
		n, _ := strconv.Atoi(m[1])
		if n == 0 {
			return Range{}, fmt.Errorf("--last: %q is empty", s.Last)
		}
		unit := map[string]time.Duration{"m": time.Minute, "h": time.Hour, "d": 24 * time.Hour, "w": 7 * 24 * time.Hour}[m[2]]
		to := now.In(loc)
		return Range{From: to.Add(-time.Duration(n) * unit), To: to, Label: "last " + s.Last}, nil
	case s.From != "" || s.To != "":
		if s.From == "" || s.To == "" {
			return Range{}, errors.New("--from and --to go together")
		}
		from, fromDay, err := parse(s.From, loc, false)
		if err != nil {
			return Range{}, fmt.Errorf("--from: %w", err)
		}
		to, toDay, err := parse(s.To, loc, true)
		if err != nil {
			return Range{}, fmt.Errorf("--to: %w", err)
		}
		if !to.After(from) {
			return Range{}, fmt.Errorf("--to (%s) must be after --from (%s)", s.To, s.From)
		}
		label := s.From + ".." + s.To
		if fromDay && toDay && s.From == s.To {
			label = s.From
		}
		return Range{From: from, To: to, Label: label}, nil
	}
	return Range{}, errors.New("a period is required: --week, --from/--to, --month or --last")
}

// Week is the ISO week (Monday 00:00 to the next Monday 00:00) in loc.
func Week(w string, loc *time.Location) (Range, error) {
	m := reWeek.FindStringSubmatch(w)
	if m == nil {
		return Range{}, fmt.Errorf("--week: %q is not an ISO week like 2026-W47", w)
	}
	y, _ := strconv.Atoi(m[1])
	n, _ := strconv.Atoi(m[2])
	// ISO week 1 holds January 4th.
	jan4 := time.Date(y, 1, 4, 0, 0, 0, 0, loc)
	monday := jan4.AddDate(0, 0, -((int(jan4.Weekday()) + 6) % 7))
	from := monday.AddDate(0, 0, 7*(n-1))
	if gy, gw := from.ISOWeek(); n < 1 || gy != y || gw != n {
		return Range{}, fmt.Errorf("--week: %d has no week %d", y, n)
	}
	return Range{From: from, To: from.AddDate(0, 0, 7), Label: w}, nil
}

// WeekOf names the ISO week t falls in, in loc: 2026-W47.
func WeekOf(t time.Time, loc *time.Location) string {
	y, w := t.In(loc).ISOWeek()
	return fmt.Sprintf("%d-W%02d", y, w)
}

// parse reads a date (the day's start; for an end, the next day's start,
// so the day is included) or an RFC 3339 instant.
func parse(v string, loc *time.Location, end bool) (time.Time, bool, error) {
	if t, err := time.ParseInLocation("2006-01-02", v, loc); err == nil {
		if end {
			t = t.AddDate(0, 0, 1)
		}
		return t, true, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t.In(loc), false, nil
	}
	if strings.Contains(v, "W") {
		return time.Time{}, false, fmt.Errorf("%q: for a week use --week", v)
	}
	return time.Time{}, false, fmt.Errorf("%q is neither a date (2026-11-16) nor an RFC 3339 time", v)
}
