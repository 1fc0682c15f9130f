package tenants

import (
	"fmt"
	"regexp"
	"strconv"
	"time"
)

// DefaultRetention is how long a tenant's events are kept when neither the
// tenant nor the file says: the upper end of the 6–12 months the business
// asks for.
const DefaultRetention = "12mo"

// Retention is how long a tenant's events are kept: whole calendar months
// or whole days, counted back from the tenant's local midnight.
type Retention struct {
	Months, Days int
}

var reRetention = regexp.MustCompile(`^([1-9][0-9]{0,3})(mo|d|y)$`)

// ParseRetention reads "6mo", "12mo", "1y" or "180d".
func ParseRetention(s string) (Retention, error) {
	m := reRetention.FindStringSubmatch(s)
	if m == nil {
		return Retention{}, fmt.Errorf("must be a whole number of months, years or days such as 6mo, 1y or 180d, got %q", s)
	}
	n, _ := strconv.Atoi(m[1])
	switch m[2] {
	case "mo":
		return Retention{Months: n}, nil
	case "y":
		return Retention{Months: 12 * n}, nil
	}
	return Retention{Days: n}, nil
}

func (r Retention) String() string {
	if r.Months > 0 {
		return strconv.Itoa(r.Months) + "mo"
	}
	return strconv.Itoa(r.Days) + "d"
}

// Cutoff is the first instant still kept at now: local midnight in loc of
// the day r before today. Months are calendar months; a day the earlier
// month lacks (31 August − 6 months) is clamped to that month's last day,
// so the cutoff is never later than a calendar reading would make it and
// nothing goes early.
func (r Retention) Cutoff(now time.Time, loc *time.Location) time.Time {
	y, mo, d := now.In(loc).Date()
	if r.Months == 0 {
		return time.Date(y, mo, d-r.Days, 0, 0, 0, 0, loc)
	}
	total := y*12 + int(mo) - 1 - r.Months
	ty, tm := total/12, time.Month(total%12+1)
	if last := time.Date(ty, tm+1, 0, 0, 0, 0, 0, loc).Day(); d > last {
		d = last
	}
	return time.Date(ty, tm, d, 0, 0, 0, 0, loc)
}

// MaxSpan is the longest time r can reach back from any moment: the
// longest run of r's calendar months (or r's days) plus the part of today
// already past local midnight, plus an hour for a daylight-saving shift.
// Loki's fixed retention periods are rounded up from it so that Loki never
// deletes what Elasticsearch still keeps.
func (r Retention) MaxSpan() time.Duration {
	days := r.Days
	if r.Months > 0 {
		// The leap-year pattern repeats within 400 years; 2000–2031 holds a
		// leap century and ordinary leap years, enough for spans in days.
		end := time.Date(2032, 1, 1, 0, 0, 0, 0, time.UTC)
		for d := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC); d.Before(end); d = d.AddDate(0, 0, 1) {
			if n := int(d.Sub(r.Cutoff(d, time.UTC)).Hours() / 24); n > days {
				days = n
			}
		}
	}
	return time.Duration(days)*24*time.Hour + 25*time.Hour
}
