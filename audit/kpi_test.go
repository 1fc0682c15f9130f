package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/assistlog/assistlog/internal/elastic"
	"github.com/assistlog/assistlog/internal/errpolicy"
	"github.com/assistlog/assistlog/internal/event"
	"github.com/assistlog/assistlog/internal/stacktest"
	"github.com/assistlog/assistlog/internal/tenants"
)

// kpiOut is `audit kpi --format json`.
type kpiOut struct {
	Period string           `json:"period"`
	Groups []map[string]any `json:"groups"`
	Total  map[string]any   `json:"total"`
}

func auditKPI(t *testing.T, args ...string) kpiOut {
	t.Helper()
	out, errOut, err := runAudit(t, append(append([]string{"kpi"}, args...), "--format", "json")...)
	if err != nil {
		t.Fatalf("audit kpi %v: %v\n%s", args, err, errOut)
	}
	var k kpiOut
	if err := json.Unmarshal([]byte(out), &k); err != nil {
		t.Fatalf("audit kpi %v: %v\n%s", args, err, out)
	}
	return k
}

// truthRow is what the test itself makes of a set of events, written out
// from docs/kpis.md's definitions without the kpi package: the JSON keys
// and values `audit kpi` must print.
func truthRow(evs []event.Event) map[string]any {
	n := map[event.Type]int64{}
	var booked int64
	var resp, wait []float64
	for _, e := range evs {
		n[e.Type]++
		if e.Type == event.SessionEnded && e.Outcome == "booked" {
			booked++
		}
		if e.Type == event.MessageSent && e.LatencyMS != nil {
			resp = append(resp, float64(*e.LatencyMS))
		}
		if e.Type == event.ManagerJoined && e.LatencyMS != nil {
			wait = append(wait, float64(*e.LatencyMS))
		}
	}
	share := func(a, b int64) any {
		if b == 0 {
			return nil
		}
		return float64(a) / float64(b)
	}
	mean := func(v []float64) any {
		if len(v) == 0 {
			return nil
		}
		s := 0.0
		for _, x := range v {
			s += x
		}
		return s / float64(len(v))
	}
	median := func(v []float64) any {
		if len(v) == 0 {
			return nil
		}
		s := append([]float64(nil), v...)
		sort.Float64s(s)
		if len(s)%2 == 1 {
			return s[len(s)/2]
		}
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return map[string]any{
		"sessions": n[event.SessionStarted], "contact_requested": n[event.ContactRequested], "leads": n[event.LeadCreated],
		"booked": booked, "confirmed": n[event.AppointmentConfirmed], "attended": n[event.AppointmentAttended],
		"no_shows": n[event.AppointmentNoShow], "handoffs": n[event.HandoffRequested], "managers_joined": n[event.ManagerJoined],
		"responses":              int64(len(resp)),
		"conversion":             share(booked, n[event.LeadCreated]),
		"confirmed_share":        share(booked, n[event.SessionStarted]),
		"no_show_rate":           share(n[event.AppointmentNoShow], n[event.AppointmentAttended]+n[event.AppointmentNoShow]),
		"response_mean_ms":       mean(resp),
		"response_median_ms":     median(resp),
		"manager_wait_mean_ms":   mean(wait),
		"manager_wait_median_ms": median(wait),
	}
}

// sameRow compares a printed row with the truth: counts exactly, shares
// and times to a nanosecond (times are printed in milliseconds).
func sameRow(t *testing.T, where string, got, want map[string]any) {
	t.Helper()
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("%s: no %s in the output", where, k)
			continue
		}
		if w == nil || g == nil {
			if w != g {
				t.Errorf("%s: %s = %v, want %v", where, k, g, w)
			}
			continue
		}
		gf, _ := g.(float64)
		var wf float64
		switch v := w.(type) {
		case int64:
			wf = float64(v)
		case float64:
			wf = v
		}
		if math.Abs(gf-wf) > 1e-6 {
			t.Errorf("%s: %s = %v, want %v", where, k, g, w)
		}
	}
}

// TestKPIsMatchTheEvents: on generated conversations shipped by the real
// shipper, every KPI of `audit kpi`, in total and per day, week, month,
// channel and tenant, equals what the test computes from the generated
// events, each tenant's days read in its own zone.
func TestKPIsMatchTheEvents(t *testing.T) {
	evs, _, stores, alias := shipped(t, 400)
	onStores(t, stores, func(t *testing.T, es string) {
		cfg := writeConfig(t, es, alias, "")
		ts, err := tenants.Load("../demo/tenants.yaml")
		if err != nil {
			t.Fatal(err)
		}
		first, last := evs[0].Time(), evs[0].Time()
		for _, e := range evs {
			if e.Time().Before(first) {
				first = e.Time()
			}
			if e.Time().After(last) {
				last = e.Time()
			}
		}
		// Whole days inside the data, so the window cuts conversations off at
		// both ends.
		fromDay, toDay := first.UTC().AddDate(0, 0, 1).Format("2006-01-02"), last.UTC().AddDate(0, 0, -1).Format("2006-01-02")
		zone := map[string]*time.Location{}
		for _, name := range ts.Names() {
			tn, _ := ts.Get(name)
			zone[name] = tn.Location()
		}
		inWindow := func(e event.Event) bool {
			loc := zone[e.Tenant]
			lo, _ := time.ParseInLocation("2006-01-02", fromDay, loc)
			hi, _ := time.ParseInLocation("2006-01-02", toDay, loc)
			hi = hi.AddDate(0, 0, 1)
			return !e.Time().Before(lo) && e.Time().Before(hi)
		}
		keyOf := map[string]func(event.Event) string{
			"day":   func(e event.Event) string { return e.Time().In(zone[e.Tenant]).Format("2006-01-02") },
			"month": func(e event.Event) string { return e.Time().In(zone[e.Tenant]).Format("2006-01") },
			"week": func(e event.Event) string {
				y, w := e.Time().In(zone[e.Tenant]).ISOWeek()
				return fmt.Sprintf("%d-W%02d", y, w)
			},
			"channel": func(e event.Event) string { return e.Channel },
			"tenant":  func(e event.Event) string { return e.Tenant },
		}
		var window []event.Event
		for _, e := range evs {
			if inWindow(e) {
				window = append(window, e)
			}
		}
		total := truthRow(window)
		for _, k := range []string{"no_shows", "attended", "managers_joined", "booked", "leads"} {
			if total[k].(int64) == 0 {
				t.Fatalf("the window %s..%s has no %s: the test would prove nothing", fromDay, toDay, k)
			}
		}
		if len(window) == len(evs) {
			t.Fatal("the window holds every event: it would not prove the boundaries")
		}
		period := []string{"--config", cfg, "--from", fromDay, "--to", toDay}
		got := auditKPI(t, period...)
		sameRow(t, "total", got.Total, total)
		t.Logf("%s..%s: %v", fromDay, toDay, got.Total)
		for by, key := range keyOf {
			parts := map[string][]event.Event{}
			for _, e := range window {
				parts[key(e)] = append(parts[key(e)], e)
			}
			got := auditKPI(t, append(period, "--by", by)...)
			sameRow(t, by+" total", got.Total, total)
			if len(got.Groups) != len(parts) {
				t.Errorf("--by %s: %d groups, the events make %d", by, len(got.Groups), len(parts))
			}
			for _, g := range got.Groups {
				k, _ := g["key"].(string)
				sameRow(t, "--by "+by+" "+k, g, truthRow(parts[k]))
			}
		}

		// One tenant, one channel.
		tenant, channel := window[0].Tenant, window[0].Channel
		var some []event.Event
		for _, e := range window {
			if e.Tenant == tenant && e.Channel == channel {
				some = append(some, e)
			}
		}
		got = auditKPI(t, append(period, "--tenant", tenant, "--channel", channel)...)
		sameRow(t, tenant+"/"+channel, got.Total, truthRow(some))

		// CSV: the same numbers, a record per group and the total last.
		csvOut, errOut, err := runAudit(t, append([]string{"kpi"}, append(period, "--by", "channel", "--format", "csv")...)...)
		if err != nil {
			t.Fatalf("%v\n%s", err, errOut)
		}
		recs, err := csv.NewReader(strings.NewReader(csvOut)).ReadAll()
		if err != nil || len(recs) < 3 || recs[0][0] != "key" || recs[len(recs)-1][0] != "total" {
			t.Fatalf("csv: %v\n%s", err, csvOut)
		}
		col := map[string]int{}
		for i, c := range recs[0] {
			col[c] = i
		}
		if recs[len(recs)-1][col["leads"]] != fmt.Sprint(total["leads"]) {
			t.Errorf("csv total leads %s, want %v", recs[len(recs)-1][col["leads"]], total["leads"])
		}
	})
}

// craftedAlias stores evs with the real writer in store st (the shipper's
// template and monthly indices) in a fresh alias, as the shipper would.
func craftedAlias(t *testing.T, evs []event.Event, st stacktest.SearchStore) (es, alias string) {
	t.Helper()
	cfg := elastic.DefaultConfig()
	cfg.URLs, cfg.Store = []string{st.URL}, st.Name
	cfg.Alias = fmt.Sprintf("test-kpi-%d", time.Now().UnixNano()%1e9)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pol, err := errpolicy.New(errpolicy.Config{RetryMin: 100 * time.Millisecond, RetryMax: time.Second, PauseInterval: time.Second}, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	w, err := elastic.New(cfg, pol, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := w.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.Client().Indices.Delete([]string{cfg.Alias + "-*"})
		w.Client().Indices.DeleteIndexTemplate(cfg.Alias)
	})
	var docs []elastic.Doc
	for _, e := range evs {
		b, _ := e.Marshal()
		var m map[string]any
		json.Unmarshal(b, &m)
		m["@timestamp"] = e.Timestamp
		body, _ := json.Marshal(m)
		docs = append(docs, elastic.Doc{Action: "create", Index: w.IndexFor(e.Time()), ID: e.EventID, Body: body})
	}
	if failed, err := w.Write(ctx, docs); err != nil || len(failed) > 0 {
		t.Fatalf("write: %v %v", failed, err)
	}
	if err := w.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	return st.URL, cfg.Alias
}

func crafted(id, ts, tenant string, typ event.Type, outcome string) event.Event {
	return event.Event{EventID: id, Timestamp: ts, Tenant: tenant, Channel: "telegram", SessionID: "s-" + id,
		Type: typ, Level: "info", Outcome: outcome, SchemaVersion: 1}
}

// TestKPIEdges: a week with only no-shows reads 100 % with the other
// shares empty ("—" in the table and CSV, null in JSON, never NaN); a
// period with nothing at all is all "—"; an event at 20:30 UTC counts on
// the next day in Ufa (UTC+5), and one at 20:30 UTC on Sunday falls in the
// next ISO week there.
func TestKPIEdges(t *testing.T) {
	evs := []event.Event{
		// salon-aurora (Ufa): W46 has three no-shows and nothing else.
		crafted("ns1", "2026-11-10T06:00:00Z", "salon-aurora", event.AppointmentNoShow, "no_show"),
		crafted("ns2", "2026-11-11T07:00:00Z", "salon-aurora", event.AppointmentNoShow, "no_show"),
		crafted("ns3", "2026-11-15T12:00:00Z", "salon-aurora", event.AppointmentNoShow, "no_show"),
		// W47: Wednesday 20:30 UTC is Thursday 01:30 in Ufa.
		crafted("late", "2026-11-18T20:30:00Z", "salon-aurora", event.SessionStarted, ""),
		// Sunday 22 November 20:30 UTC is Monday of W48 in Ufa.
		crafted("sun", "2026-11-22T20:30:00Z", "salon-aurora", event.SessionStarted, ""),
		// salon-bellezza, W48: one conversation books twice (two bookings,
		// one booked conversation), another ends without a booking.
		crafted("b1", "2026-11-24T05:00:00Z", "salon-bellezza", event.SessionStarted, ""),
		crafted("b2", "2026-11-24T05:01:00Z", "salon-bellezza", event.LeadCreated, ""),
		crafted("b3", "2026-11-24T05:02:00Z", "salon-bellezza", event.AppointmentConfirmed, "booked"),
		crafted("b4", "2026-11-24T05:03:00Z", "salon-bellezza", event.AppointmentConfirmed, "booked"),
		crafted("b5", "2026-11-24T05:04:00Z", "salon-bellezza", event.SessionEnded, "booked"),
		crafted("c1", "2026-11-24T06:00:00Z", "salon-bellezza", event.SessionStarted, ""),
		crafted("c2", "2026-11-24T06:04:00Z", "salon-bellezza", event.SessionEnded, "no_booking"),
	}
	for _, st := range stacktest.SearchStores(t) {
		t.Run(st.Name, func(t *testing.T) {
			es, alias := craftedAlias(t, evs, st)
			cfg := writeConfig(t, es, alias, "")

			w46 := auditKPI(t, "--config", cfg, "--week", "2026-W46", "--tenant", "salon-aurora")
			sameRow(t, "W46", w46.Total, truthRow(evs[:3]))
			if w46.Total["no_show_rate"] != 1.0 || w46.Total["conversion"] != nil || w46.Total["manager_wait_median_ms"] != nil {
				t.Errorf("W46: no_show_rate %v conversion %v wait %v, want 1, null, null", w46.Total["no_show_rate"], w46.Total["conversion"], w46.Total["manager_wait_median_ms"])
			}
			for _, format := range []string{"table", "csv", "md"} {
				out, errOut, err := runAudit(t, "kpi", "--config", cfg, "--week", "2026-W46", "--tenant", "salon-aurora", "--format", format)
				if err != nil {
					t.Fatalf("%s: %v\n%s", format, err, errOut)
				}
				if strings.Contains(out, "NaN") || strings.Contains(out, "Inf") || !strings.Contains(out, "—") {
					t.Errorf("--format %s: want \"—\" for empty shares, no NaN/Inf:\n%s", format, out)
				}
				if want := map[string]string{"csv": ",1,", "table": "100,0 %", "md": "100,0 %"}[format]; !strings.Contains(out, want) {
					t.Errorf("--format %s: no-show rate is not %q:\n%s", format, want, out)
				}
			}

			two := auditKPI(t, "--config", cfg, "--week", "2026-W48", "--tenant", "salon-bellezza")
			sameRow(t, "two bookings", two.Total, truthRow(evs[5:]))
			if two.Total["confirmed"] != 2.0 || two.Total["booked"] != 1.0 || two.Total["conversion"] != 1.0 || two.Total["confirmed_share"] != 0.5 {
				t.Errorf("two bookings in one conversation: %v, want confirmed 2, booked 1, conversion 1, confirmed share 0.5", two.Total)
			}

			// A tenant without a single event that week.
			empty := auditKPI(t, "--config", cfg, "--week", "2026-W46", "--tenant", "dental-care")
			for _, k := range []string{"conversion", "confirmed_share", "no_show_rate", "response_mean_ms", "response_median_ms", "manager_wait_mean_ms"} {
				if empty.Total[k] != nil {
					t.Errorf("empty week: %s = %v, want null", k, empty.Total[k])
				}
			}

			days := auditKPI(t, "--config", cfg, "--week", "2026-W47", "--tenant", "salon-aurora", "--by", "day")
			if len(days.Groups) != 1 || days.Groups[0]["key"] != "2026-11-19" || days.Groups[0]["sessions"] != 1.0 {
				t.Errorf("W47 by day in Ufa: %v, want the 20:30 UTC session on 2026-11-19 and the Sunday one in W48", days.Groups)
			}
			weeks := auditKPI(t, "--config", cfg, "--from", "2026-11-09", "--to", "2026-11-29", "--tenant", "salon-aurora", "--by", "week")
			var keys []string
			for _, g := range weeks.Groups {
				keys = append(keys, fmt.Sprintf("%s:%v/%v", g["key"], g["sessions"], g["no_shows"]))
			}
			if got := strings.Join(keys, " "); got != "2026-W46:0/3 2026-W47:1/0 2026-W48:1/0" {
				t.Errorf("by week in Ufa: %s", got)
			}
		})
	}
}

// TestKPICommandLine: usage errors name the flag.
func TestKPICommandLine(t *testing.T) {
	cfg := writeConfig(t, "http://127.0.0.1:1", "nothing", "")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"kpi", "--config", cfg, "--week", "2026-W47", "--by", "year"}, "--by: one of"},
		{[]string{"kpi", "--config", cfg}, "a period is required"},
		{[]string{"kpi", "--config", cfg, "--week", "2026-W47", "--tenant", "nope"}, "nope"},
		{[]string{"kpi", "--config", cfg, "--week", "2026-W47", "--format", "xml"}, "--format"},
	} {
		_, _, err := runAudit(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
	if _, errOut, err := runAudit(t, "kpi", "--help"); err != nil || !strings.Contains(errOut, "audit kpi --week 2026-W47") {
		t.Errorf("--help: %v\n%s", err, errOut)
	}
}
