package main

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/assistlog/assistlog/demo"
	"github.com/assistlog/assistlog/internal/bitrix24/bitrix24test"
	"github.com/assistlog/assistlog/internal/crm"
	"github.com/assistlog/assistlog/internal/event"
	"github.com/assistlog/assistlog/internal/pipelinetest"
	"github.com/assistlog/assistlog/internal/stacktest"
)

// withCRM links the deployment to a Bitrix24 fake (the contract-faithful
// HTTPS server, reached over the network with its certificate trusted
// through crm.bitrix24.ca_file) with lead sync on. rate is the portal's
// leaky-bucket drain per second, and the client's rate.
func (e *env) withCRM(rate float64) *bitrix24test.Server {
	e.t.Helper()
	links := "test-links-" + e.run
	stacktest.CreateTopics(e.t, e.ep.KafkaBrokers, map[string]int{links: 6})
	fake, section := pipelinetest.FakeCRM(e.t, e.dir, rate, links, e.run)
	e.crm = section
	return fake
}

// sessionsWithLead maps tenant/session of every conversation that has a
// lead.created event.
func sessionsWithLead(evs []event.Event) map[string]bool {
	m := map[string]bool{}
	for _, ev := range evs {
		if ev.Type == event.LeadCreated {
			m[ev.Tenant+"/"+ev.SessionID] = true
		}
	}
	return m
}

// checkLinks waits until every stored event of a conversation with a lead
// carries that lead's id, and checks the fake CRM: exactly one lead per such
// conversation, found by its ORIGIN_ID, exactly one to-do on that lead for
// every confirmed appointment (the worker looks it up with
// crm.activity.list before adding it again), and no other activity.
func (e *env) checkLinks(fake *bitrix24test.Server, evs []event.Event, timeout time.Duration) {
	e.t.Helper()
	withLead := sessionsWithLead(evs)
	appts := map[string]string{} // appointment id → tenant/session
	for _, ev := range evs {
		if ev.Type == event.AppointmentConfirmed && withLead[ev.Tenant+"/"+ev.SessionID] {
			appts[fmt.Sprint(ev.Payload["appointment_id"])] = ev.Tenant + "/" + ev.SessionID
		}
	}
	leadOf := func() map[string]string { // ORIGIN_ID → lead id
		m := map[string]string{}
		for id, l := range fake.Leads() {
			origin := fmt.Sprint(l["ORIGIN_ID"])
			if _, dup := m[origin]; dup {
				e.t.Fatalf("two leads for conversation %s", origin)
			}
			m[origin] = strconv.FormatInt(id, 10)
		}
		return m
	}
	repeated := 0
	stacktest.Eventually(e.t, timeout, "crm ids on every event of a conversation with a lead", func() error {
		leads := leadOf()
		if len(leads) != len(withLead) {
			return fmt.Errorf("%d leads in the CRM for %d conversations with lead.created", len(leads), len(withLead))
		}
		if n, _ := e.esSearch("crm_status:pending", 0); n > 0 {
			return fmt.Errorf("%d events still pending", n)
		}
		_, docs := e.esSearch("*", 10000)
		for _, d := range docs {
			key := fmt.Sprint(d["tenant"], "/", d["session_id"])
			want := ""
			if withLead[key] {
				want = leads[crm.OriginID(fmt.Sprint(d["tenant"]), fmt.Sprint(d["session_id"]))]
			}
			if got, _ := d["crm_id"].(string); got != want {
				return fmt.Errorf("event %v of %s has crm_id %q, want %q", d["event_id"], key, got, want)
			}
			if want != "" && d["crm_status"] != crmResolved {
				return fmt.Errorf("event %v has crm_status %v", d["event_id"], d["crm_status"])
			}
		}
		found := map[string]int{}
		acts := fake.Activities()
		for _, a := range acts {
			desc := fmt.Sprint(a["DESCRIPTION"])
			for id, key := range appts {
				tenant, session, _ := strings.Cut(key, "/")
				if strings.Contains(desc, crm.TodoMarker(id)) && fmt.Sprint(a["OWNER_ID"]) == leads[crm.OriginID(tenant, session)] {
					found[id]++
				}
			}
		}
		repeated = 0
		for id := range appts {
			if found[id] == 0 {
				return fmt.Errorf("appointment %s has no activity on its lead", id)
			}
			repeated += found[id] - 1
		}
		if repeated > 0 || len(acts) != len(appts) {
			return fmt.Errorf("%d activities for %d appointments, %d repeated", len(acts), len(appts), repeated)
		}
		return nil
	})
	e.t.Logf("%d conversations with a lead: one lead each, every event carries its id; %d confirmed appointments with an activity (%d repeated)",
		len(withLead), len(appts), repeated)
}

// TestCRMEndToEnd: generated assistant log files through the real
// collector, Kafka and the shipper with lead sync: Elasticsearch holds
// exactly the input set, Loki every event, the ground truth's confirmed
// appointments; one lead per conversation with lead.created (with source,
// channel and a link to the conversation), the lead's id on every one of
// its events (those before lead.created included) and an activity per
// confirmed appointment.
func TestCRMEndToEnd(t *testing.T) {
	e := newEnv(t)
	fake := e.withCRM(25)
	evs, truth := e.generate(80)
	logs := filepath.Join(e.dir, "logs")
	if _, err := demo.WriteFiles(evs, demo.FileOptions{Dir: logs, Files: 2, RotateBytes: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	pipelinetest.StartCollector(t, e.ep, pipelinetest.Collector{Dir: e.dir, Topic: e.topic, DLQ: e.dlq,
		Include: []string{filepath.Join(logs, "*.jsonl"), filepath.Join(logs, "*.jsonl.[0-9]*")}})
	e.start()
	e.waitShipped(len(evs), 3*time.Minute)

	e.exactSet(evs)
	confirmed := truth.ByType[string(event.AppointmentConfirmed)]
	if n, _ := e.esSearch("event_type:appointment.confirmed", 0); n != confirmed {
		t.Errorf("appointment.confirmed in Elasticsearch = %d, ground truth %d", n, confirmed)
	}
	if n := e.lokiCount(`, event_type="appointment.confirmed"`); n != confirmed {
		t.Errorf("appointment.confirmed in Loki = %d, ground truth %d", n, confirmed)
	}
	if len(sessionsWithLead(evs)) != truth.Leads || truth.Leads == 0 {
		t.Fatalf("generator: %d conversations with a lead, truth says %d", len(sessionsWithLead(evs)), truth.Leads)
	}
	e.checkLinks(fake, evs, 3*time.Minute)
	for _, l := range fake.Leads() {
		origin := fmt.Sprint(l["ORIGIN_ID"])
		if l["SOURCE_ID"] != "WEB" || !strings.HasPrefix(fmt.Sprint(l["SOURCE_DESCRIPTION"]), "assistlog ") ||
			!strings.Contains(fmt.Sprint(l["COMMENTS"]), "session="+origin[strings.LastIndex(origin, "/")+1:]) {
			t.Fatalf("lead without source, channel or link to its conversation: %v", l)
		}
	}
	if n, _ := e.esSearch("crm_status:no_lead OR crm_status:failed", 0); n != 0 {
		t.Errorf("%d events whose CRM lookup failed or found nothing", n)
	}
}

// TestCRMFaults: faults aimed at the two calls that create something —
// 503 bursts and a 429 block of crm.lead.add, its reply cut after the lead
// was made; 503s to crm.activity.todo.add and its reply lost (500) after
// the to-do was made — while the shipper is killed with SIGKILL several
// times: nothing lost, exactly one lead per conversation and one to-do per
// confirmed appointment, every id filled in, every fault met.
func TestCRMFaults(t *testing.T) {
	e := newEnv(t)
	fake := e.withCRM(5)
	// Enough conversations that leads, made 50 to a batch request, are
	// still being made across the kills and meet the faults set after
	// the second start.
	evs, _ := e.generate(200)
	fake.FailNext("crm.lead.add", 20, http.StatusServiceUnavailable, "QUERY_LIMIT_EXCEEDED", "Too many requests")
	fake.BlockMethod("crm.lead.add", 5*time.Second)
	fake.FailNext("crm.activity.todo.add", 3, http.StatusServiceUnavailable, "QUERY_LIMIT_EXCEEDED", "Too many requests")
	fake.LoseNextReplies("crm.activity.todo.add", 1, http.StatusInternalServerError, "INTERNAL_SERVER_ERROR", "Internal server error")
	e.produce(evs)
	// Each instance is killed once the CRM worker is making leads, so
	// kills land between a lead.add and its link record. The worker adds
	// leads in batches, so an instance may make every lead left at once:
	// then there is nothing more to wait for.
	wantLeads := map[string]bool{}
	for _, ev := range evs {
		if ev.Type == event.LeadCreated {
			wantLeads[ev.Tenant+"/"+ev.SessionID] = true
		}
	}
	for i := 0; i < 3; i++ {
		p := e.start()
		adds := fake.Calls("crm.lead.add")
		stacktest.Eventually(t, 2*time.Minute, "leads being created", func() error {
			if n := fake.Calls("crm.lead.add"); n < adds+3 && len(fake.Leads()) < len(wantLeads) {
				return fmt.Errorf("%d lead.add calls, %d of %d leads", n, len(fake.Leads()), len(wantLeads))
			}
			return nil
		})
		if i == 1 {
			fake.LoseNextReplies("crm.lead.add", 1, 0, "", "")
			fake.FailNext("crm.lead.add", 10, http.StatusServiceUnavailable, "QUERY_LIMIT_EXCEEDED", "Too many requests")
		}
		time.Sleep(time.Duration(100+300*i) * time.Millisecond)
		p.Kill()
	}
	e.start()
	e.waitShipped(len(evs), 4*time.Minute)
	e.checkLinks(fake, evs, 4*time.Minute)
	for _, m := range []string{"crm.lead.add", "crm.activity.todo.add"} {
		if n := fake.Faults(m); n != 0 {
			t.Errorf("%d faults aimed at %s never happened", n, m)
		}
	}
}

// TestCRMOutage: with the CRM refusing everything, shipping goes on and
// events are stored as pending; when it answers again, the ids are filled
// into the stored events, in Elasticsearch and in OpenSearch alike.
func TestCRMOutage(t *testing.T) {
	e := newEnv(t)
	e.withOpenSearch()
	fake := e.withCRM(25)
	evs, _ := e.generate(30)
	fake.SetDown(true)
	e.start()
	e.produce(evs)
	e.waitShipped(len(evs), 3*time.Minute)
	e.onEachStore(func(store string) {
		if n, _ := e.esSearch("crm_status:pending", 0); n == 0 {
			t.Fatalf("%s: no event is marked pending during the outage", store)
		}
		if n, _ := e.esSearch("crm_id:*", 0); n != 0 {
			t.Fatalf("%s: %d events have a crm id though the CRM never answered", store, n)
		}
	})
	fake.SetDown(false) // the CRM is back
	e.onEachStore(func(string) { e.checkLinks(fake, evs, 4*time.Minute) })
}

// metric reads one series from instance i's /metrics; ok is false when the
// series is not there.
func (e *env) metric(i int, series string) (float64, bool) {
	e.t.Helper()
	resp, err := http.Get("http://" + e.addrs[i] + "/metrics")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, err == nil
		}
	}
	return 0, false
}

// TestCRMCredentialsPause: the portal starts refusing the webhook mid-run
// (blocked: 401 INVALID_CREDENTIALS on every call): shipping goes on, no
// link is failed for good, and the shipper's /metrics says the CRM is
// paused; once the webhook works again every conversation gets its lead
// and every appointment its to-do, exactly once, and the gauge is 0.
func TestCRMCredentialsPause(t *testing.T) {
	e := newEnv(t)
	fake := e.withCRM(25)
	evs, _ := e.generate(30)
	e.start()
	paused := `assistlog_destination_paused{destination="bitrix24"}`
	if v, ok := e.metric(0, paused); !ok || v != 0 {
		t.Fatalf("%s = %v (present: %v) before anything happened, want 0", paused, v, ok)
	}
	// Half the events, then the webhook refused, then the rest: the CRM
	// has work left when it starts refusing.
	e.produce(evs[:len(evs)/2])
	stacktest.Eventually(t, 2*time.Minute, "leads being created", func() error {
		if n := fake.Calls("crm.lead.add"); n < 3 {
			return fmt.Errorf("%d lead.add calls", n)
		}
		return nil
	})
	fake.BlockWebhook(true)
	e.produce(evs[len(evs)/2:])
	stacktest.Eventually(t, time.Minute, "the CRM worker paused", func() error {
		if v, _ := e.metric(0, paused); v != 1 {
			return fmt.Errorf("%s = %v", paused, v)
		}
		return nil
	})
	e.waitShipped(len(evs), 3*time.Minute) // shipping does not wait for the CRM
	for _, kind := range []string{crm.KindSession, crm.KindAppointment} {
		if v, _ := e.metric(0, `assistlog_crm_links_total{kind="`+kind+`",outcome="failed"}`); v != 0 {
			t.Fatalf("%v %s links failed while the webhook was refused", v, kind)
		}
	}
	if n, _ := e.esSearch("crm_status:failed", 0); n != 0 {
		t.Fatalf("%d events stored as crm_status failed while the webhook was refused", n)
	}
	if v, _ := e.metric(0, paused); v != 1 {
		t.Fatalf("%s = %v while the webhook is refused", paused, v)
	}
	fake.BlockWebhook(false)
	e.checkLinks(fake, evs, 4*time.Minute)
	if v, _ := e.metric(0, paused); v != 0 {
		t.Errorf("%s = %v after the webhook works again", paused, v)
	}
}
