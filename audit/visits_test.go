package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/assistlog/assistlog/demo"
	"github.com/assistlog/assistlog/internal/event"
	"github.com/assistlog/assistlog/internal/period"
	"github.com/assistlog/assistlog/internal/pipelinetest"
	"github.com/assistlog/assistlog/internal/proctest"
	"github.com/assistlog/assistlog/internal/stacktest"
	"github.com/assistlog/assistlog/internal/tenants"
)

// generated is the generator's events of n dialogues ending now.
func generated(t *testing.T, n int) []event.Event {
	t.Helper()
	cfg := demo.DefaultConfig()
	cfg.End = time.Now().UTC().Truncate(time.Minute)
	evs, _, err := demo.FromShared(n, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// shipEvents ships evs with the real shipper into a fresh alias, like
// shipped; crm are sent as a CRM would send them: NDJSON through the real
// collector's webhook (POST /v1/events, a bearer token per tenant), the
// route docs/visits.md documents.
func shipEvents(t *testing.T, evs, crm []event.Event) (stores []stacktest.SearchStore, alias string) {
	t.Helper()
	ep := stacktest.Require(t, stacktest.Kafka, stacktest.Elasticsearch, stacktest.OpenSearch, stacktest.Loki)
	stores = stacktest.SearchStores(t)
	for i := range evs {
		if err := evs[i].Validate(); err != nil {
			t.Fatalf("event %s: %v", evs[i].EventID, err)
		}
	}
	run := fmt.Sprintf("auditv%d", time.Now().UnixNano()%1e9)
	topic, dlq := "test-"+run, "test-dlq-"+run
	alias = "test-" + run
	stacktest.CreateTopics(t, ep.KafkaBrokers, map[string]int{topic: 3, dlq: 1})
	produce(t, ep.KafkaBrokers, topic, evs)

	// The CRM's events, per tenant, through the webhook.
	byTenant := map[string][]event.Event{}
	for _, e := range crm {
		byTenant[e.Tenant] = append(byTenant[e.Tenant], e)
	}
	token := func(tenant string) string { return "crm-token-" + tenant + "-0123456789abcdef0123456789" }
	hook := proctest.FreeAddr(t)
	creds := ""
	for tenant := range byTenant {
		creds += fmt.Sprintf("    - tenant: %s\n      tokens: [%q]\n", tenant, token(tenant))
	}
	dir := t.TempDir()
	pipelinetest.StartCollector(t, ep, pipelinetest.Collector{Dir: dir, Topic: topic, DLQ: dlq,
		Include: []string{filepath.Join(dir, "none-*.jsonl")}, ExtraYAML: "webhook:\n  listen: " + hook + "\n  tenants:\n" + creds})
	for tenant, list := range byTenant {
		var body bytes.Buffer
		for i := range list {
			b, _ := list[i].Marshal()
			body.Write(append(b, '\n'))
		}
		req, _ := http.NewRequest(http.MethodPost, "http://"+hook+"/v1/events", &body)
		req.Header.Set("Authorization", "Bearer "+token(tenant))
		req.Header.Set("Content-Type", "application/x-ndjson")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var r struct {
			Accepted int   `json:"accepted"`
			Rejected []any `json:"rejected"`
		}
		json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted || r.Accepted != len(list) {
			t.Fatalf("webhook for %s: HTTP %d, %d of %d accepted, rejected %v", tenant, resp.StatusCode, r.Accepted, len(list), r.Rejected)
		}
	}

	startMirroredShipper(t, ep, t.TempDir(), topic, dlq, run, alias, "")
	waitStored(t, stores, alias, len(evs)+len(crm))
	return stores, alias
}

// runAt runs audit with a fixed now.
func runAt(t *testing.T, now time.Time, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := (&app{stdout: &out, stderr: &errOut, now: func() time.Time { return now }}).run(context.Background(), args)
	return out.String(), errOut.String(), err
}

// wantAppt is the test's own record of one appointment.
type wantAppt struct {
	tenant, channel, session, id string
	startsAt, confirmedAt        time.Time
	status                       string // attended, no_show, cancelled, or "" (no outcome)
}

type tally struct{ due, attended, noShow, cancelled, unmarked, upcoming int }

func (a tally) plus(b tally) tally {
	return tally{a.due + b.due, a.attended + b.attended, a.noShow + b.noShow, a.cancelled + b.cancelled, a.unmarked + b.unmarked, a.upcoming + b.upcoming}
}

type visitsJSON struct {
	Period  string              `json:"period"`
	Summary []map[string]string `json:"summary"`
	Chase   []map[string]string `json:"chase"`
}

// TestVisitsMatchGroundTruth: the generator's confirmations and marks, plus
// a CRM's cancellation, two moves and a mark for an appointment the
// assistant never booked, shipped through the real pipeline; every count
// and the list to chase equal what the test works out from the events
// itself.
func TestVisitsMatchGroundTruth(t *testing.T) {
	evs := generated(t, 400)
	now := time.Now().UTC()

	// The truth from the generated events: every confirmed appointment,
	// its time and its mark.
	appts := map[string]*wantAppt{}
	for _, e := range evs {
		if e.Type != event.AppointmentConfirmed {
			continue
		}
		st, err := time.Parse(time.RFC3339, e.Payload["starts_at"].(string))
		if err != nil {
			t.Fatal(err)
		}
		id := e.Payload["appointment_id"].(string)
		appts[e.Tenant+"/"+id] = &wantAppt{tenant: e.Tenant, channel: e.Channel, session: e.SessionID, id: id, startsAt: st, confirmedAt: e.Time()}
	}
	for _, e := range evs {
		if e.Type == event.AppointmentAttended || e.Type == event.AppointmentNoShow {
			appts[e.Tenant+"/"+e.Payload["appointment_id"].(string)].status = e.Outcome
		}
	}
	keys := make([]string, 0, len(appts))
	for k := range appts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var unmarkedDue, upcoming []*wantAppt
	for _, k := range keys {
		a := appts[k]
		switch {
		case a.startsAt.After(now):
			upcoming = append(upcoming, a)
		case a.status == "":
			unmarkedDue = append(unmarkedDue, a)
		}
	}
	if len(unmarkedDue) < 4 || len(upcoming) < 2 {
		t.Fatalf("the data has %d unmarked due and %d upcoming appointments; the test needs 3 and 2", len(unmarkedDue), len(upcoming))
	}

	// What a CRM sends through the webhook afterwards.
	var fromCRM []event.Event
	crm := func(ref *wantAppt, typ event.Type, at time.Time, payload map[string]any, outcome string) {
		payload["appointment_id"] = ref.id
		fromCRM = append(fromCRM, event.Event{EventID: fmt.Sprintf("crm-%s-%d", ref.id, len(fromCRM)), Timestamp: at.Format(time.RFC3339),
			Tenant: ref.tenant, Channel: ref.channel, SessionID: ref.session, Type: typ, Level: "info",
			Payload: payload, Outcome: outcome, SchemaVersion: 1})
	}
	cancelled, movedOut, movedIn, remarked := unmarkedDue[0], unmarkedDue[1], upcoming[0], unmarkedDue[2]
	crm(cancelled, event.AppointmentCancelled, cancelled.startsAt.Add(-3*time.Hour), map[string]any{"reason": "customer cancelled by phone"}, "cancelled")
	cancelled.status = "cancelled"
	newTime := now.Add(72 * time.Hour).Truncate(time.Hour)
	crm(movedOut, event.AppointmentRescheduled, movedOut.startsAt.Add(-5*time.Hour), map[string]any{"starts_at": newTime.Format(time.RFC3339)}, "")
	movedOut.startsAt = newTime
	// Moved to an earlier time that has passed, then marked attended.
	earlier := now.Add(-26 * time.Hour).Truncate(time.Hour)
	crm(movedIn, event.AppointmentRescheduled, movedIn.confirmedAt.Add(time.Minute), map[string]any{"starts_at": earlier.Format(time.RFC3339)}, "")
	crm(movedIn, event.AppointmentAttended, now.Add(-time.Minute), map[string]any{}, "attended")
	movedIn.startsAt, movedIn.status = earlier, "attended"
	// No-show first, then corrected to attended: the latest mark counts.
	crm(remarked, event.AppointmentNoShow, remarked.startsAt.Add(time.Hour), map[string]any{}, "no_show")
	crm(remarked, event.AppointmentAttended, remarked.startsAt.Add(2*time.Hour), map[string]any{}, "attended")
	remarked.status = "attended"
	// A mark for an appointment the assistant never booked is not a visit
	// of its bookings.
	crm(&wantAppt{tenant: cancelled.tenant, channel: cancelled.channel, session: cancelled.session, id: "walk-in-1"},
		event.AppointmentAttended, now.Add(-time.Hour), map[string]any{}, "attended")

	stores, alias := shipEvents(t, evs, fromCRM)
	onStores(t, stores, func(t *testing.T, es string) {
		cfg := writeConfig(t, es, alias, "conversation_url: \"https://kibana.example/s/{tenant}/{session_id}\"\n")
		set, err := tenants.Load("../demo/tenants.yaml")
		if err != nil {
			t.Fatal(err)
		}

		// expect counts the appointments in [from, to) of each tenant's zone.
		expect := func(win func(tenant string) (time.Time, time.Time), keep func(*wantAppt) bool) (map[string]tally, map[string]bool) {
			got, chase := map[string]tally{}, map[string]bool{}
			for _, a := range appts {
				from, to := win(a.tenant)
				if a.startsAt.Before(from) || !a.startsAt.Before(to) || !keep(a) {
					continue
				}
				c := got[a.tenant]
				if a.startsAt.After(now) {
					c.upcoming++
				} else {
					c.due++
					switch a.status {
					case "attended":
						c.attended++
					case "no_show":
						c.noShow++
					case "cancelled":
						c.cancelled++
					default:
						c.unmarked++
						chase[a.tenant+"/"+a.id] = true
					}
				}
				got[a.tenant] = c
			}
			return got, chase
		}
		check := func(name string, out string, want map[string]tally, chase map[string]bool, key string) {
			t.Helper()
			var r visitsJSON
			if err := json.Unmarshal([]byte(out), &r); err != nil {
				t.Fatalf("%s: %v\n%s", name, err, out)
			}
			var total tally
			seen := 0
			for _, row := range r.Summary {
				n := func(k string) int { v, _ := strconv.Atoi(row[k]); return v }
				got := tally{n("due"), n("attended"), n("no_show"), n("cancelled"), n("unmarked"), n("upcoming")}
				if row[key] == "total" {
					if got != total {
						t.Errorf("%s: total row %+v, the rows add up to %+v", name, got, total)
					}
					continue
				}
				seen++
				if w := want[row[key]]; got != w {
					t.Errorf("%s: %s: %+v, ground truth %+v", name, row[key], got, w)
				}
				total = total.plus(got)
			}
			if seen != len(want) {
				t.Errorf("%s: %d summary rows, ground truth has %d groups", name, seen, len(want))
			}
			got := map[string]bool{}
			for _, row := range r.Chase {
				got[row["tenant"]+"/"+row["appointment_id"]] = true
				a := appts[row["tenant"]+"/"+row["appointment_id"]]
				if a == nil {
					t.Errorf("%s: chase lists %v, not an appointment of the data", name, row)
					continue
				}
				loc, _ := set.Get(a.tenant)
				if row["starts_at"] != a.startsAt.In(loc.Location()).Format(time.RFC3339) || row["session_id"] != a.session ||
					row["conversation_url"] != "https://kibana.example/s/"+a.tenant+"/"+a.session {
					t.Errorf("%s: chase row %v; want starts_at %s in %s, session %s", name, row, a.startsAt.In(loc.Location()).Format(time.RFC3339), loc.TZ, a.session)
				}
			}
			if len(got) != len(chase) || len(r.Chase) != len(chase) {
				t.Errorf("%s: chase lists %d (%d distinct), ground truth %d", name, len(r.Chase), len(got), len(chase))
			}
			for k := range chase {
				if !got[k] {
					t.Errorf("%s: %s has no outcome and is not on the list to chase", name, k)
				}
			}
		}

		// Everything: a window wider than the data.
		from, to := now.Add(-30*24*time.Hour), now.Add(30*24*time.Hour)
		wide := func(string) (time.Time, time.Time) { return from, to }
		all := func(*wantAppt) bool { return true }
		want, chase := expect(wide, all)
		out, errOut, err := runAt(t, now, "visits", "--config", cfg, "--from", from.Format(time.RFC3339), "--to", to.Format(time.RFC3339), "--format", "json")
		if err != nil {
			t.Fatalf("%v\n%s", err, errOut)
		}
		check("all", out, want, chase, "tenant")
		if chase[cancelled.tenant+"/"+cancelled.id] || chase[movedOut.tenant+"/"+movedOut.id] || !chase[unmarkedDue[3].tenant+"/"+unmarkedDue[3].id] {
			t.Fatal("the test's own truth is wrong")
		}
		t.Logf("all: %+v; %d to chase", want, len(chase))

		// One tenant's ISO week, in its own zone (Novosibirsk is UTC+7, so a
		// UTC week would move appointments at the edges).
		counts := map[string]int{}
		for _, a := range appts {
			counts[a.tenant]++
		}
		busiest := "clinic-zdorovie" // Novosibirsk, UTC+7
		if counts[busiest] < 3 {
			for k, n := range counts {
				if n > counts[busiest] {
					busiest = k
				}
			}
		}
		tn, _ := set.Get(busiest)
		week := period.WeekOf(now.Add(-48*time.Hour), tn.Location())
		wr, _ := period.Week(week, tn.Location())
		want, chase = expect(func(string) (time.Time, time.Time) { return wr.From, wr.To }, func(a *wantAppt) bool { return a.tenant == busiest })
		out, errOut, err = runAt(t, now, "visits", "--config", cfg, "--week", week, "--tenant", busiest, "--format", "json")
		if err != nil {
			t.Fatalf("%v\n%s", err, errOut)
		}
		check(busiest+" "+week, out, want, chase, "tenant")

		// By channel, one channel.
		ch := unmarkedDue[3].channel
		want, chase = expect(wide, func(a *wantAppt) bool { return a.channel == ch })
		byCh := map[string]tally{}
		for _, c := range want {
			byCh[ch] = byCh[ch].plus(c)
		}
		out, errOut, err = runAt(t, now, "visits", "--config", cfg, "--from", from.Format(time.RFC3339), "--to", to.Format(time.RFC3339),
			"--channel", ch, "--by", "channel", "--format", "json")
		if err != nil {
			t.Fatalf("%v\n%s", err, errOut)
		}
		check("channel "+ch, out, byCh, chase, "channel")

		// The list to chase as CSV: a header and one row each.
		out, _, err = runAt(t, now, "visits", "--config", cfg, "--from", from.Format(time.RFC3339), "--to", to.Format(time.RFC3339), "--list", "--format", "csv")
		if err != nil {
			t.Fatal(err)
		}
		_, allChase := expect(wide, all)
		rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
		if err != nil || len(rows) != len(allChase)+1 || rows[0][3] != "appointment_id" {
			t.Errorf("--list csv: %d rows (%v), want a header and %d", len(rows), err, len(allChase))
		}
		// The terminal table has both parts.
		out, _, err = runAt(t, now, "visits", "--config", cfg, "--from", from.Format(time.RFC3339), "--to", to.Format(time.RFC3339))
		if err != nil || !strings.Contains(out, "UNMARKED") || !strings.Contains(out, unmarkedDue[3].id) {
			t.Errorf("table: %v\n%s", err, out)
		}
	})
}

func TestVisitsCommandLine(t *testing.T) {
	p := writeConfig(t, "http://127.0.0.1:1", "assistant-events", "")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"visits", "--config", p}, "a period is required"},
		{[]string{"visits", "--config", p, "--week", "2026-W47", "--tenant", "salon-nowhere"}, `unknown tenant "salon-nowhere"`},
		{[]string{"visits", "--config", p, "--week", "2026-W54"}, "--week: 2026 has no week 54"},
		{[]string{"visits", "--config", p, "--week", "2026-W47", "--by", "service"}, "--by: tenant or channel"},
		{[]string{"visits", "--config", p, "--week", "2026-W47", "--format", "xml"}, "--format"},
	} {
		_, _, err := runAudit(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
	_, errOut, err := runAudit(t, "visits", "--help")
	if err != nil || !strings.Contains(errOut, "audit visits --week 2026-W47") {
		t.Errorf("--help: %v\n%s", err, errOut)
	}
}
