package main

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/assistlog/assistlog/demo"
	"github.com/assistlog/assistlog/internal/bitrix24/bitrix24test"
	"github.com/assistlog/assistlog/internal/event"
	"github.com/assistlog/assistlog/internal/period"
	"github.com/assistlog/assistlog/internal/stacktest"
	"github.com/assistlog/assistlog/internal/tenants"
)

// portal is the Bitrix24 fake the shipper made leads in, with what the
// audit config needs to reach it.
type portal struct {
	*bitrix24test.Server
	caFile string
}

// shippedWithCRM is shipped with the CRM sync on: the real shipper and its
// CRM worker make a lead per conversation with lead.created in a fake
// portal whose bucket holds limit requests and drains drain per second
// (the shipper's client runs a little below). It returns once every lead
// exists and no stored event is still pending.
func shippedWithCRM(t *testing.T, n int, drain, limit float64) ([]event.Event, []stacktest.SearchStore, string, portal) {
	t.Helper()
	ep := stacktest.Require(t, stacktest.Kafka, stacktest.Elasticsearch, stacktest.Loki)
	cfg := demo.DefaultConfig()
	cfg.End = time.Now().UTC().Truncate(time.Minute)
	evs, _, err := demo.FromShared(n, cfg)
	if err != nil {
		t.Fatal(err)
	}
	run := fmt.Sprintf("recon%d", time.Now().UnixNano()%1e9)
	topic, dlq, links, alias := "test-"+run, "test-dlq-"+run, "test-links-"+run, "test-"+run
	stacktest.CreateTopics(t, ep.KafkaBrokers, map[string]int{topic: 3, dlq: 1, links: 3})
	fake := bitrix24test.New(bitrix24test.Config{Drain: drain, Limit: limit})
	t.Cleanup(fake.Close)
	dir := t.TempDir()
	ca := filepath.Join(dir, "bitrix24-ca.pem")
	if err := os.WriteFile(ca, fake.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	section := fmt.Sprintf(`crm:
  enabled: true
  sync: true
  bitrix24:
    webhook_url: %q
    ca_file: %s
    rate_per_second: %g
    burst: %d
    retry_backoff_max: 2s
    max_operating_wait: 1m
  links_topic: %s
  worker_group_id: crm-%s
  source_id: WEB
  conversation_url: "http://kibana.example/app/discover#/?session={session_id}"
`, fake.WebhookURL(), ca, drain*0.8, int(limit/2), links, run)
	produce(t, ep.KafkaBrokers, topic, evs)
	stores := stacktest.SearchStores(t)
	shipper := startMirroredShipper(t, ep, dir, topic, dlq, run, alias, section)
	withLead := map[string]bool{}
	for _, e := range evs {
		if e.Type == event.LeadCreated {
			withLead[e.Tenant+"/"+e.SessionID] = true
		}
	}
	stacktest.Eventually(t, 4*time.Minute, "events stored, a lead per conversation, nothing pending", func() error {
		if n := len(fake.Leads()); n != len(withLead) {
			return fmt.Errorf("%d leads for %d conversations", n, len(withLead))
		}
		for _, st := range stores {
			http.Post(st.URL+"/"+alias+"/_refresh", "application/json", nil)
			if n := count(t, st.URL, alias, "*"); n != len(evs) {
				return fmt.Errorf("%s: %d of %d events stored", st.Name, n, len(evs))
			}
			if n := count(t, st.URL, alias, "crm_status:pending"); n > 0 {
				return fmt.Errorf("%s: %d events pending", st.Name, n)
			}
		}
		return nil
	})
	// The worker goes on with comments and to-dos after the leads; stopped,
	// it leaves the portal's bucket and request counts to the reconcile
	// alone (it once took 10 of the 20 requests a run counted).
	shipper.Stop(30 * time.Second)
	return evs, stores, alias, portal{fake, ca}
}

// conv is a conversation with lead.created, as the test sees it from the
// generated events.
type conv struct {
	tenant, session, phone string
	at                     time.Time
}

// TestReconcileCountsWhatWasDoneToThePortal ships generated conversations
// with the CRM sync on, so the real worker makes the leads, then changes
// the portal as people and delays would: leads deleted, one re-made by hand
// with the customer's number written differently, a second lead for two
// conversations, a lead made days late, an orphan with the assistant's
// ORIGIN_ID, one just outside the period, a lead of an earlier
// conversation made inside it, 200 hand-made leads with the assistant's
// source (enough for several pages) and some with another source. Every
// number of the report is compared with what the test did, counted from
// the generated events. The portal's bucket holds 5 requests (the run
// takes about 10 pages): it never refuses one, because the client waits.
func TestReconcileCountsWhatWasDoneToThePortal(t *testing.T) {
	evs, stores, alias, fake := shippedWithCRM(t, 100, 10, 5)
	set, err := tenants.Load("../demo/tenants.yaml")
	if err != nil {
		t.Fatal(err)
	}
	zone := func(tenant string) *time.Location {
		tt, err := set.Get(tenant)
		if err != nil {
			t.Fatal(err)
		}
		return tt.Location()
	}
	// The period: the three whole days before today (UTC), in each tenant's
	// zone. The generator fills the six local days up to the tenant's
	// today, which after 17:00 UTC is already tomorrow in Novosibirsk and
	// after 19:00 in Ufa; a period of four days then left no day before it
	// (CI at 21:40 UTC: "0 before it"). Three leave at least one.
	now := time.Now().UTC()
	d1, d2 := now.AddDate(0, 0, -3).Format("2006-01-02"), now.AddDate(0, 0, -1).Format("2006-01-02")
	window := func(tenant string) (time.Time, time.Time) {
		from, _ := time.ParseInLocation("2006-01-02", d1, zone(tenant))
		to, _ := time.ParseInLocation("2006-01-02", d2, zone(tenant))
		return from, to.AddDate(0, 0, 1)
	}
	convs := map[string]*conv{}
	for _, e := range evs {
		if e.Type != event.LeadCreated {
			continue
		}
		k := e.Tenant + "/" + e.SessionID
		if c := convs[k]; c == nil || e.Time().Before(c.at) {
			convs[k] = &conv{tenant: e.Tenant, session: e.SessionID, phone: e.UserPhone, at: e.Time()}
		}
	}
	customers := map[string]int{} // phone → conversations
	for _, c := range convs {
		customers[c.phone]++
	}
	var in, before []*conv
	for _, c := range convs {
		from, to := window(c.tenant)
		switch {
		case !c.at.Before(from) && c.at.Before(to):
			in = append(in, c)
		case c.at.Before(from):
			before = append(before, c)
		}
	}
	sort.Slice(in, func(i, j int) bool { return in[i].tenant+in[i].session < in[j].tenant+in[j].session })
	sort.Slice(before, func(i, j int) bool { return before[i].at.Before(before[j].at) })
	if len(in) < 20 || len(before) == 0 {
		t.Fatalf("%d conversations in the period, %d before it: the generated data does not cover the test", len(in), len(before))
	}
	leadOf := map[string]int64{} // ORIGIN_ID → the worker's lead
	for id, l := range fake.Leads() {
		leadOf[fmt.Sprint(l["ORIGIN_ID"])] = id
	}
	origin := func(c *conv) string { return "assistlog:" + c.tenant + "/" + c.session }
	// Leads are made as the conversation happens, not when the test ran.
	for _, c := range convs {
		if !fake.SetLeadCreated(leadOf[origin(c)], c.at.Add(30*time.Second)) {
			t.Fatalf("no lead for %s", origin(c))
		}
	}
	// Pick conversations of the period with a number no other
	// conversation has, so a phone match can only mean one of them.
	var pick []*conv
	for _, c := range in {
		if c.phone != "" && customers[c.phone] == 1 {
			pick = append(pick, c)
		}
	}
	if len(pick) < 7 {
		t.Fatalf("only %d conversations with a unique number", len(pick))
	}
	lost1, lost2, byPhone, dupPhone, dupOrigin, late := pick[0], pick[1], pick[2], pick[3], pick[4], pick[5]
	// Lost: the lead deleted.
	fake.DeleteLead(leadOf[origin(lost1)])
	fake.DeleteLead(leadOf[origin(lost2)])
	// Re-made by hand: no ORIGIN_ID, the number as a manager types it.
	fake.DeleteLead(leadOf[origin(byPhone)])
	domestic := "8 (" + byPhone.phone[2:5] + ") " + byPhone.phone[5:8] + "-" + byPhone.phone[8:10] + "-" + byPhone.phone[10:]
	fake.AddLead(map[string]any{"TITLE": "Перезвонить", "SOURCE_ID": "WEB",
		"PHONE": []any{map[string]any{"VALUE": domestic, "VALUE_TYPE": "MOBILE"}}}, byPhone.at.Add(3*time.Hour))
	// Duplicates: a hand-made lead with the number of a customer whose
	// lead exists, and a second lead with a conversation's ORIGIN_ID.
	dupPhoneID := fake.AddLead(map[string]any{"TITLE": "Дубль", "SOURCE_ID": "WEB",
		"PHONE": []any{map[string]any{"VALUE": dupPhone.phone, "VALUE_TYPE": "WORK"}}}, dupPhone.at.Add(time.Hour))
	dupOriginID := fake.AddLead(map[string]any{"TITLE": "Chatbot", "SOURCE_ID": "WEB", "ORIGIN_ID": origin(dupOrigin)}, dupOrigin.at.Add(time.Minute))
	// Late: made three days after the period (outside the window read).
	_, lateTo := window(late.tenant)
	fake.SetLeadCreated(leadOf[origin(late)], lateTo.Add(72*time.Hour))
	// Orphans: the assistant's ORIGIN_ID, no such conversation; one in the
	// period, one just after it (another period's).
	orphanTenant := in[0].tenant
	of, ot := window(orphanTenant)
	orphanID := fake.AddLead(map[string]any{"TITLE": "Chatbot", "SOURCE_ID": "WEB", "ORIGIN_ID": "assistlog:" + orphanTenant + "/ghost-1"}, of.Add(26*time.Hour))
	fake.AddLead(map[string]any{"TITLE": "Chatbot", "SOURCE_ID": "WEB", "ORIGIN_ID": "assistlog:" + orphanTenant + "/ghost-2"}, ot.Add(2*time.Hour))
	// A conversation logged before the period whose lead was made inside
	// it: another period's, not an orphan.
	early := before[len(before)-1]
	ef, _ := window(early.tenant)
	fake.SetLeadCreated(leadOf[origin(early)], ef.Add(time.Hour))
	// Hand-made leads with the assistant's source and numbers no customer
	// has: unattributed. With another source: not read at all.
	unattributed := map[string]bool{}
	for i := 0; i < 200; i++ {
		id := fake.AddLead(map[string]any{"TITLE": "Звонок", "SOURCE_ID": "WEB",
			"PHONE": []any{map[string]any{"VALUE": fmt.Sprintf("+7000%07d", i), "VALUE_TYPE": "WORK"}}}, of.Add(time.Duration(i)*time.Minute))
		unattributed[strconv.FormatInt(id, 10)] = true
		fake.AddLead(map[string]any{"TITLE": "Звонок", "SOURCE_ID": "CALL",
			"PHONE": []any{map[string]any{"VALUE": in[i%len(in)].phone, "VALUE_TYPE": "WORK"}}}, of.Add(time.Duration(i)*time.Minute))
	}

	// Expected, per tenant, from the conversations and the changes above.
	type row struct{ logged, inCRM, matched, byOrigin, byPhone, lost, orphans, dups, late int }
	want := map[string]*row{}
	for _, name := range set.Names() {
		want[name] = &row{}
	}
	for _, c := range in {
		r := want[c.tenant]
		r.logged++
		switch c {
		case lost1, lost2:
			r.lost++
		case byPhone:
			r.matched++
			r.byPhone++
			r.inCRM++
		default:
			r.matched++
			r.byOrigin++
			r.inCRM++
		}
		if c == dupPhone || c == dupOrigin {
			r.dups++
			r.inCRM++
		}
		if c == late {
			r.late++
		}
	}
	want[orphanTenant].orphans++
	want[orphanTenant].inCRM++

	onStores(t, stores, func(t *testing.T, es string) {
		cfgPath := writeConfig(t, es, alias, fmt.Sprintf(`conversation_url: "http://kibana.example/c/{tenant}/{session_id}"
crm:
  bitrix24:
    webhook_url: %q
    ca_file: %s
    rate_per_second: 6
    burst: 3
    retry_backoff_max: 2s
  source_id: WEB
pii:
  hash_secret: pipelinetest-secret-0123456789
`, fake.WebhookURL(), fake.caFile))

		// Let the bucket drain of the shipper's last calls, so what is
		// measured below is this run's own pacing (the portal allows 5 at once).
		time.Sleep(2 * time.Second)
		reqs, lists := fake.Requests(), fake.Calls("crm.lead.list")
		disc := filepath.Join(t.TempDir(), "disc.csv")
		out, stderr, err := runAudit(t, "reconcile", "--config", cfgPath, "--from", d1, "--to", d2, "--format", "json", "--discrepancies", disc)
		if err != nil {
			t.Fatalf("reconcile: %v\n%s", err, stderr)
		}
		t.Logf("stderr:\n%s", stderr)

		// Rate: every page was served (no 503), and the pages are exactly what
		// a full export of the filtered leads takes.
		lo, hi := time.Time{}, time.Time{}
		for _, name := range set.Names() {
			f, to := window(name)
			if lo.IsZero() || f.Before(lo) {
				lo = f
			}
			if to.After(hi) {
				hi = to
			}
		}
		lo, hi = lo.Add(-24*time.Hour), hi.Add(24*time.Hour)
		byOrigin, bySource := 0, 0
		for _, l := range fake.Leads() {
			created, _ := time.Parse(time.RFC3339, fmt.Sprint(l["DATE_CREATE"]))
			if created.Before(lo) || !created.Before(hi) {
				continue
			}
			if strings.HasPrefix(fmt.Sprint(l["ORIGIN_ID"]), "assistlog:") {
				byOrigin++
			}
			if l["SOURCE_ID"] == "WEB" {
				bySource++
			}
		}
		wantPages := byOrigin/50 + 1 + bySource/50 + 1 + 1 // + one look-up page for the conversations without a lead in the window
		gotReqs, gotLists := fake.Requests()-reqs, fake.Calls("crm.lead.list")-lists
		if gotLists != wantPages || gotReqs != gotLists {
			t.Errorf("%d requests, %d crm.lead.list calls; want %d pages (%d by origin, %d by source in the window) and no refused request",
				gotReqs, gotLists, wantPages, byOrigin, bySource)
		}
		for _, line := range []string{fmt.Sprintf("(ORIGIN_ID assistlog:…): страниц %d, лидов %d\n", byOrigin/50+1, byOrigin),
			fmt.Sprintf("(SOURCE_ID WEB): страниц %d, лидов %d\n", bySource/50+1, bySource),
			"(по ORIGIN_ID 1–4 из 4 разговоров без лида в окне): страниц 1, лидов 1\n"} {
			if !strings.Contains(stderr, line) {
				t.Errorf("no progress line %q", line)
			}
		}

		var rows []map[string]string
		if err := json.Unmarshal([]byte(out), &rows); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		got := map[string]map[string]string{}
		for _, r := range rows {
			got[r["tenant"]] = r
		}
		total := &row{}
		for name, w := range want {
			for _, f := range []struct {
				col string
				v   int
				tot *int
			}{{"logged", w.logged, &total.logged}, {"in_crm", w.inCRM, &total.inCRM}, {"matched", w.matched, &total.matched},
				{"by_origin", w.byOrigin, &total.byOrigin}, {"by_phone", w.byPhone, &total.byPhone}, {"lost", w.lost, &total.lost},
				{"orphans", w.orphans, &total.orphans}, {"duplicates", w.dups, &total.dups}, {"late", w.late, &total.late},
				{"pending", 0, new(int)}, {"failed", 0, new(int)}} {
				*f.tot += f.v
				if got[name][f.col] != strconv.Itoa(f.v) {
					t.Errorf("%s %s = %q, want %d", name, f.col, got[name][f.col], f.v)
				}
			}
		}
		tot := got["всего"]
		for col, v := range map[string]int{"logged": total.logged, "in_crm": total.inCRM, "matched": total.matched, "by_origin": total.byOrigin,
			"by_phone": total.byPhone, "lost": 2, "orphans": 1, "duplicates": 2, "late": 1, "pending": 0, "failed": 0, "unattributed": 200} {
			if tot[col] != strconv.Itoa(v) {
				t.Errorf("total %s = %q, want %d", col, tot[col], v)
			}
		}
		if want := strconv.FormatFloat(200/float64(total.logged), 'f', 1, 64); tot["lost_pct"] != want {
			t.Errorf("lost_pct %q, want %s (2 of %d)", tot["lost_pct"], want, total.logged)
		}

		// The owner's report reads the same reconciliation through its hook.
		{
			c := common{configPath: cfgPath, period: period.Spec{From: d1, To: d2}}
			e, err := c.load(true)
			if err != nil {
				t.Fatal(err)
			}
			ws, err := c.windows(e, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			sum, err := reportReconcile(t.Context(), e, ws)
			if err != nil || sum == nil || sum.Logged != int64(total.logged) || sum.Lost != 2 || sum.InCRM != int64(total.inCRM) {
				t.Errorf("report's reconciliation %+v (%v), want logged %d, in CRM %d, lost 2", sum, err, total.logged, total.inCRM)
			}
		}

		// The discrepancy file: each item, with the conversation's link.
		f, err := os.Open(disc)
		if err != nil {
			t.Fatal(err)
		}
		recs, err := csv.NewReader(f).ReadAll()
		f.Close()
		if err != nil || len(recs) == 0 || strings.Join(recs[0], ",") != "kind,tenant,session_id,lead_id,created,crm_status,origin_id,conversation_url" {
			t.Fatalf("discrepancies: %v %v", err, recs)
		}
		kinds := map[string][]string{}
		for _, r := range recs[1:] {
			key := r[1] + "/" + r[2]
			if r[0] == "orphan" || r[0] == "duplicate" || r[0] == "unattributed" {
				key = r[3]
			}
			kinds[r[0]] = append(kinds[r[0]], key)
			if r[2] != "" && r[7] != "http://kibana.example/c/"+r[1]+"/"+r[2] {
				t.Errorf("%s %s: link %q", r[0], r[2], r[7])
			}
		}
		for _, k := range kinds {
			sort.Strings(k)
		}
		key := func(c *conv) string { return c.tenant + "/" + c.session }
		id := func(n int64) string { return strconv.FormatInt(n, 10) }
		lostWant := []string{key(lost1), key(lost2)}
		sort.Strings(lostWant)
		dupWant := []string{id(dupPhoneID), id(dupOriginID)}
		sort.Strings(dupWant)
		for kind, w := range map[string][]string{"lost": lostWant, "orphan": {id(orphanID)}, "duplicate": dupWant, "late": {key(late)}} {
			if strings.Join(kinds[kind], " ") != strings.Join(w, " ") {
				t.Errorf("%s items %v, want %v", kind, kinds[kind], w)
			}
		}
		if len(kinds["unattributed"]) != 200 {
			t.Errorf("%d unattributed items, want 200", len(kinds["unattributed"]))
		}
		for _, k := range kinds["unattributed"] {
			if !unattributed[k] {
				t.Errorf("lead %s listed as unattributed", k)
			}
		}
		if len(kinds) != 5 {
			t.Errorf("item kinds %v", kinds)
		}

		// --max-loss: over it exits 3, at or under it does not.
		lostPct := 200 / float64(total.logged)
		_, _, err = runAudit(t, "reconcile", "--config", cfgPath, "--from", d1, "--to", d2, "--max-loss", strconv.FormatFloat(lostPct-0.1, 'f', 2, 64))
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != 3 {
			t.Errorf("loss %.2f%% over --max-loss %.2f: %v, want exit code 3", lostPct, lostPct-0.1, err)
		}
		if _, _, err = runAudit(t, "reconcile", "--config", cfgPath, "--from", d1, "--to", d2, "--max-loss", strconv.FormatFloat(lostPct+0.1, 'f', 2, 64)+"%"); err != nil {
			t.Errorf("loss under --max-loss: %v", err)
		}
		// One tenant: only its numbers.
		out, _, err = runAudit(t, "reconcile", "--config", cfgPath, "--from", d1, "--to", d2, "--tenant", orphanTenant, "--format", "csv")
		if err != nil {
			t.Fatal(err)
		}
		recs, _ = csv.NewReader(strings.NewReader(out)).ReadAll()
		w := want[orphanTenant]
		if len(recs) != 3 || recs[1][0] != orphanTenant || recs[1][2] != strconv.Itoa(w.logged) || recs[1][9] != strconv.Itoa(w.orphans) || recs[1][7] != strconv.Itoa(w.lost) {
			t.Errorf("--tenant %s: %v, want logged %d, lost %d, orphans %d", orphanTenant, recs, w.logged, w.lost, w.orphans)
		}
	})
}

// TestReconcileCommandLine: unknown tenant or week, a bad --max-loss and a
// missing CRM section are clear errors, before anything is read.
func TestReconcileCommandLine(t *testing.T) {
	cfg := writeConfig(t, "http://127.0.0.1:1", "nothing", `crm:
  bitrix24:
    webhook_url: https://portal.example/rest/1/x/
pii:
  hash_secret: pipelinetest-secret-0123456789
`)
	noCRM := writeConfig(t, "http://127.0.0.1:1", "nothing", "")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--config", cfg, "--week", "2026-W47", "--tenant", "nope"}, `nope`},
		{[]string{"--config", cfg, "--week", "2026-W60"}, "--week"},
		{[]string{"--config", cfg}, "a period is required"},
		{[]string{"--config", cfg, "--week", "2026-W47", "--max-loss", "lots"}, "--max-loss"},
		{[]string{"--config", cfg, "--week", "2026-W47", "--format", "xml"}, "--format"},
		{[]string{"--config", noCRM, "--week", "2026-W47"}, "crm.bitrix24.webhook_url"},
	} {
		_, _, err := runAudit(t, append([]string{"reconcile"}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error naming %q", c.args, err, c.want)
		}
	}
}
