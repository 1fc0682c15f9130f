package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/assistlog/assistlog/demo"
	"github.com/assistlog/assistlog/internal/event"
	"github.com/assistlog/assistlog/internal/pii"
)

// documentedColumns is the column list of docs/exports.md's table.
func documentedColumns(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../docs/exports.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i := strings.Index(doc, "## Columns")
	if i < 0 {
		t.Fatal("docs/exports.md has no ## Columns section")
	}
	section := doc[i:]
	if j := strings.Index(section[3:], "\n## "); j >= 0 {
		section = section[:j+3]
	}
	var cols []string
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\|").FindAllStringSubmatch(section, -1) {
		cols = append(cols, m[1])
	}
	if len(cols) < 10 {
		t.Fatalf("docs/exports.md lists %d columns: %v", len(cols), cols)
	}
	return cols
}

// zones reads the demo tenants file's zones with the standard library.
func zones(t *testing.T) map[string]*time.Location {
	t.Helper()
	set, err := demo.Tenants()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*time.Location{}
	for _, name := range set.Names() {
		tn, _ := set.Get(name)
		if out[name], err = time.LoadLocation(tn.TZ); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// parseCSV reads an export, checking the header against the docs and that
// each event appears once; rows by event_id.
func parseCSV(t *testing.T, out string, cols []string) map[string]map[string]string {
	t.Helper()
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatalf("export is not CSV: %v\n%.500s", err, out)
	}
	if !slices.Equal(recs[0], cols) {
		t.Fatalf("header\n%v\ndocs/exports.md lists\n%v", recs[0], cols)
	}
	rows := map[string]map[string]string{}
	prev := ""
	for _, r := range recs[1:] {
		m := map[string]string{}
		for i, c := range cols {
			m[c] = r[i]
		}
		if rows[m["event_id"]] != nil {
			t.Fatalf("event %s exported twice", m["event_id"])
		}
		if m["timestamp_utc"] < prev {
			t.Fatalf("rows out of time order at %s", m["event_id"])
		}
		prev = m["timestamp_utc"]
		rows[m["event_id"]] = m
	}
	return rows
}

// checkRows compares exported rows with the generated events expected
// in them, field by field where the generator knows the value.
func checkRows(t *testing.T, rows map[string]map[string]string, want []event.Event, zs map[string]*time.Location) {
	t.Helper()
	if len(rows) != len(want) {
		t.Errorf("%d rows exported, the generated events of the window are %d", len(rows), len(want))
	}
	for i := range want {
		ev := &want[i]
		r := rows[ev.EventID]
		if r == nil {
			t.Fatalf("event %s (%s %s) missing from the export", ev.EventID, ev.Tenant, ev.Timestamp)
		}
		local := ev.Time().In(zs[ev.Tenant]).Format("2006-01-02 15:04:05")
		if r["tenant"] != ev.Tenant || r["session_id"] != ev.SessionID || r["event_type"] != string(ev.Type) ||
			r["channel"] != ev.Channel || r["local_time"] != local || r["time_zone"] != zs[ev.Tenant].String() ||
			r["intent"] != ev.Intent || r["outcome"] != ev.Outcome {
			t.Fatalf("row %v\nfor event %+v (local time %s)", r, ev, local)
		}
		if ev.UserPhone != "" && (r["user_phone"] == ev.UserPhone || !strings.Contains(r["user_phone"], "*") || len(r["user_phone_hash"]) != 64) {
			t.Fatalf("user_phone %q / hash %q for %s: not masked", r["user_phone"], r["user_phone_hash"], ev.UserPhone)
		}
	}
}

// noRawPhone fails if any generated number appears in out, in any
// spelling.
func noRawPhone(t *testing.T, out string, phones []string) {
	t.Helper()
	runs := regexp.MustCompile(`\d[\d\s\-()]{8,}\d`).FindAllString(out, -1)
	for _, p := range phones {
		if strings.Contains(out, p) {
			t.Fatalf("raw phone number %s in the export", p)
		}
		d := pii.Digits(p)
		for _, m := range runs {
			if strings.Contains(pii.Digits(m), d[1:]) {
				t.Fatalf("raw phone number %s in the export as %q", p, m)
			}
		}
	}
}

// TestExportEvents: the export of a period holds exactly the generated
// events of that period in each tenant's zone (every page of them), with
// the documented columns, masked; --tenant and --type narrow it; --excel
// starts with the BOM; JSON carries the same rows.
func TestExportEvents(t *testing.T) {
	evs, truth, stores, alias := shipped(t, 150)
	onStores(t, stores, func(t *testing.T, es string) {
		cfg := writeConfig(t, es, alias, "")
		cols := documentedColumns(t)
		zs := zones(t)

		// Everything: the UTC days around the first and last event cover every
		// zone's local days.
		from, to := truth.First.UTC().AddDate(0, 0, -1).Format("2006-01-02"), truth.Last.UTC().AddDate(0, 0, 1).Format("2006-01-02")
		out, stderr, err := runAudit(t, "export", "events", "--config", cfg, "--from", from, "--to", to)
		if err != nil {
			t.Fatalf("%v\n%s", err, stderr)
		}
		if strings.HasPrefix(out, "\ufeff") {
			t.Error("BOM without --excel")
		}
		if len(evs) <= 2000 {
			t.Fatalf("%d events do not fill two pages of the reader", len(evs))
		}
		checkRows(t, parseCSV(t, out, cols), evs, zs)
		noRawPhone(t, out, truth.Phones)

		// export kpi: audit kpi's CSV, with the BOM on --excel; its leads are
		// the generated lead.created events of the window.
		kout, stderr, err := runAudit(t, "export", "kpi", "--config", cfg, "--from", from, "--to", to, "--excel")
		if err != nil {
			t.Fatalf("export kpi: %v\n%s", err, stderr)
		}
		plain, _, err := runAudit(t, "kpi", "--config", cfg, "--from", from, "--to", to, "--format", "csv")
		if err != nil || kout != "\ufeff"+plain {
			t.Errorf("export kpi --excel is not BOM + audit kpi --format csv (%v):\n%q\n%q", err, kout, plain)
		}
		recs, err := csv.NewReader(strings.NewReader(strings.TrimPrefix(kout, "\ufeff"))).ReadAll()
		if err != nil || len(recs) < 2 {
			t.Fatalf("export kpi csv: %v %q", err, kout)
		}
		leadsCol := slices.Index(recs[0], "leads")
		last := recs[len(recs)-1]
		if leadsCol < 0 || last[0] != "total" || last[leadsCol] != strconv.Itoa(truth.ByType["lead.created"]) {
			t.Errorf("export kpi total leads: header %v, row %v; want %d", recs[0], last, truth.ByType["lead.created"])
		}

		// One tenant, two types, two local days.
		counts := map[string]int{}
		for _, ev := range evs {
			counts[ev.Tenant]++
		}
		tenant := ""
		for name, n := range counts {
			if tenant == "" || n > counts[tenant] || (n == counts[tenant] && name < tenant) {
				tenant = name
			}
		}
		loc := zs[tenant]
		day := truth.Last.In(loc).AddDate(0, 0, -3)
		d1 := time.Date(day.Year(), day.Month(), day.Day(), 0, 0, 0, 0, loc)
		d2 := d1.AddDate(0, 0, 2) // --to's day included: [d1, d1+2d)
		var want []event.Event
		for _, ev := range evs {
			ts := ev.Time()
			if ev.Tenant == tenant && (ev.Type == event.LeadCreated || ev.Type == event.AppointmentConfirmed) && !ts.Before(d1) && ts.Before(d2) {
				want = append(want, ev)
			}
		}
		if len(want) == 0 {
			t.Fatalf("no lead.created/appointment.confirmed of %s on %s–%s: pick another window", tenant, d1, d2)
		}
		args := []string{"export", "events", "--config", cfg, "--tenant", tenant, "--type", "lead.created, appointment.confirmed",
			"--from", d1.Format("2006-01-02"), "--to", d1.AddDate(0, 0, 1).Format("2006-01-02")}
		out, stderr, err = runAudit(t, append(args, "--excel")...)
		if err != nil {
			t.Fatalf("%v\n%s", err, stderr)
		}
		if !strings.HasPrefix(out, "\ufeff") {
			t.Errorf("--excel: no UTF-8 byte order mark; starts %q", out[:min(len(out), 10)])
		}
		checkRows(t, parseCSV(t, strings.TrimPrefix(out, "\ufeff"), cols), want, zs)

		out, stderr, err = runAudit(t, append(args, "--format", "json")...)
		if err != nil {
			t.Fatalf("%v\n%s", err, stderr)
		}
		var objs []map[string]string
		if err := json.Unmarshal([]byte(out), &objs); err != nil {
			t.Fatalf("--format json: %v", err)
		}
		var gotIDs, wantIDs []string
		for _, o := range objs {
			gotIDs = append(gotIDs, o["event_id"])
			if len(o) != len(cols) {
				t.Fatalf("json object has %d keys, want the %d columns: %v", len(o), len(cols), o)
			}
		}
		for _, ev := range want {
			wantIDs = append(wantIDs, ev.EventID)
		}
		sort.Strings(gotIDs)
		sort.Strings(wantIDs)
		if !slices.Equal(gotIDs, wantIDs) {
			t.Errorf("json ids %v, want %v", gotIDs, wantIDs)
		}
		t.Logf("%d events exported; %s: %d in %s–%s", len(evs), tenant, len(want), d1.Format(time.DateOnly), d2.Format(time.DateOnly))
	})
}

// TestExportRefuses: clear errors for what cannot be exported.
func TestExportRefuses(t *testing.T) {
	cfg := writeConfig(t, "http://127.0.0.1:1", "assistant-events", "")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"export", "kpi", "--config", cfg, "--week", "2026-W47", "--tenant", "nobody"}, `unknown tenant "nobody"`},
		{[]string{"export", "events", "--config", cfg, "--week", "2026-W47", "--tenant", "nobody"}, "nobody"},
		{[]string{"export", "events", "--config", cfg, "--week", "2026-W47", "--type", "lead.won"}, `unknown event type "lead.won"`},
		{[]string{"export", "events", "--config", cfg, "--week", "2026-W47", "--format", "json", "--excel"}, "--excel: only with --format csv"},
		{[]string{"export", "events", "--config", cfg, "--format", "md", "--week", "2026-W47"}, "--format"},
		{[]string{"export", "events", "--config", cfg}, "a period is required"},
		{[]string{"export", "sessions"}, `unknown export "sessions"`},
	} {
		_, stderr, err := runAudit(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("audit %s: %v (want %q)\n%s", strings.Join(c.args, " "), err, c.want, stderr)
		}
	}
	var help bytes.Buffer
	_, stderr, err := runAudit(t, "export", "events", "--help")
	help.WriteString(stderr)
	if err != nil || !strings.Contains(help.String(), "docs/exports.md") || !strings.Contains(help.String(), "-excel") {
		t.Errorf("--help: %v\n%s", err, help.String())
	}
}
