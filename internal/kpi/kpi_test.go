package kpi

import (
	"strings"
	"testing"
	"time"
)

func TestMeanMedian(t *testing.T) {
	ms := func(v ...int64) []int64 { return v }
	for _, c := range []struct {
		in           []int64
		mean, median time.Duration
	}{
		{ms(5), 5 * time.Millisecond, 5 * time.Millisecond},
		{ms(3, 1, 2), 2 * time.Millisecond, 2 * time.Millisecond},
		// An even count: the mean of the two middle values.
		{ms(4, 1, 3, 2), 2500 * time.Microsecond, 2500 * time.Microsecond},
		{ms(1, 1, 1, 100), 25750 * time.Microsecond, time.Millisecond},
		// A mean that is not a whole number of nanoseconds rounds.
		{ms(1, 1, 0), 666667 * time.Nanosecond, time.Millisecond},
	} {
		if m := Mean(c.in); m == nil || *m != c.mean {
			t.Errorf("Mean(%v) = %v, want %v", c.in, m, c.mean)
		}
		if m := Median(c.in); m == nil || *m != c.median {
			t.Errorf("Median(%v) = %v, want %v", c.in, m, c.median)
		}
	}
	if Mean(nil) != nil || Median(nil) != nil {
		t.Error("no samples must give nil, shown as —")
	}
	in := ms(3, 1, 2)
	Median(in)
	if in[0] != 3 {
		t.Error("Median sorted its argument")
	}
}

func TestRatio(t *testing.T) {
	if _, ok := (Ratio{Num: 0, Den: 0}).Value(); ok {
		t.Error("0/0 has a value")
	}
	if _, ok := (Ratio{Num: 3, Den: 0}).Value(); ok {
		t.Error("3/0 has a value")
	}
	if v, ok := (Ratio{Num: 1, Den: 4}).Value(); !ok || v != 0.25 {
		t.Errorf("1/4 = %v %v", v, ok)
	}
}

func TestValidateNamesTheField(t *testing.T) {
	utc := time.UTC
	t0 := time.Date(2026, 11, 16, 0, 0, 0, 0, utc)
	for _, c := range []struct {
		r    Request
		want string
	}{
		{Request{}, "no windows"},
		{Request{Windows: []Window{{Loc: utc, From: t0, To: t0.Add(time.Hour)}}}, "windows[0].Tenant"},
		{Request{Windows: []Window{{Tenant: "a", From: t0, To: t0.Add(time.Hour)}}}, "windows[0].Loc"},
		{Request{Windows: []Window{{Tenant: "a", Loc: utc, From: t0, To: t0}}}, "not after"},
		{Request{Windows: []Window{{Tenant: "a", Loc: utc, From: t0, To: t0.Add(time.Hour)}}, By: "year"}, "--by"},
	} {
		if err := c.r.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.r, err, c.want)
		}
	}
}
