package crm

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/assistlog/assistlog/internal/bitrix24"
	"github.com/assistlog/assistlog/internal/bitrix24/bitrix24test"
	"github.com/assistlog/assistlog/internal/errpolicy"
	"github.com/assistlog/assistlog/internal/kafka"
	"github.com/assistlog/assistlog/internal/stacktest"
)

type rig struct {
	store  *Store
	worker *Worker
	fake   *bitrix24test.Server
	client *bitrix24.Client // the worker's, for a test's own calls (a lead made by a manager)
	linked chan Link
}

// newRig runs a store and a worker on a fresh links topic of the real
// Kafka, against the contract-faithful Bitrix24 fake.
func newRig(t *testing.T, sync bool) *rig {
	t.Helper()
	ep := stacktest.Require(t, stacktest.Kafka)
	topic := fmt.Sprintf("test-links-%d", time.Now().UnixNano())
	stacktest.CreateTopics(t, ep.KafkaBrokers, map[string]int{topic: 3})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pcfg := kafka.DefaultProducerConfig()
	pcfg.Brokers, pcfg.Balancer = []string{ep.KafkaBrokers}, Balancer()
	pol, err := errpolicy.New(errpolicy.Config{RetryMin: 100 * time.Millisecond, RetryMax: time.Second, PauseInterval: time.Second}, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	prod, err := kafka.NewProducer(pcfg, pol, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	fake := bitrix24test.New(bitrix24test.Config{})
	bcfg := bitrix24.DefaultConfig()
	bcfg.WebhookURL, bcfg.RetryBackoffMax = fake.WebhookURL(), 200*time.Millisecond
	client, err := bitrix24.New(bcfg, fake.Client(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	store := NewStore([]string{ep.KafkaBrokers}, topic, prod, log)
	if err := store.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	w, err := NewWorker(WorkerConfig{Brokers: []string{ep.KafkaBrokers}, Topic: topic, GroupID: topic + "-worker", Sync: sync,
		SourceID: "WEB", ConversationURL: "http://kibana/app/discover#/?_a=(query:(query:'session_id:\"{session_id}\"'))",
		RetryBackoffMax: 500 * time.Millisecond}, store, client, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{store: store, worker: w, fake: fake, client: client, linked: make(chan Link, 1000)}
	w.OnLinked = func(_ context.Context, l Link) error { r.linked <- l; return nil }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { store.Run(ctx); done <- struct{}{} }()
	go func() { w.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done; prod.Close(); fake.Close() })
	return r
}

func (r *rig) waitAll(t *testing.T, keys []string, state string) {
	t.Helper()
	stacktest.Eventually(t, 2*time.Minute, "links "+state, func() error {
		for _, k := range keys {
			if l, _ := r.store.Get(k); l.State != state {
				return fmt.Errorf("%s is %q", k, l.State)
			}
		}
		return nil
	})
}

func pendingSession(i int) Link {
	return Link{Kind: KindSession, State: StatePending, Tenant: "salon-aurora", SessionID: fmt.Sprintf("s-%d", i),
		Channel: "whatsapp", Phone: fmt.Sprintf("+7916000%04d", i), CreateLead: true}
}

// TestLeadsCreatedOnce: pending conversations become leads, once each,
// though their pending records arrive twice (a replay) and the CRM
// answers 503 bursts, a 429 and a reply lost after the lead was made.
func TestLeadsCreatedOnce(t *testing.T) {
	r := newRig(t, true)
	ctx := context.Background()
	r.fake.FailNext(8, http.StatusServiceUnavailable, "QUERY_LIMIT_EXCEEDED", "Too many requests")
	r.fake.LoseNextReply(http.StatusInternalServerError, "INTERNAL_SERVER_ERROR", "reply lost")
	r.fake.BlockMethod("crm.lead.add", time.Second)
	var keys, appts []string
	for i := 0; i < 12; i++ {
		l := pendingSession(i)
		keys = append(keys, l.Key())
		if err := r.store.Put(ctx, l); err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			if err := r.store.Put(ctx, l); err != nil { // the same conversation again
				t.Fatal(err)
			}
			a := Link{Kind: KindAppointment, State: StatePending, Tenant: l.Tenant, SessionID: l.SessionID,
				AppointmentID: l.SessionID + "-a1", StartsAt: "2026-11-27T14:00:00+03:00", Service: "haircut"}
			appts = append(appts, a.Key())
			if err := r.store.Put(ctx, a); err != nil {
				t.Fatal(err)
			}
		}
	}
	r.waitAll(t, keys, StateLinked)
	r.waitAll(t, appts, StateDone)
	leads := r.fake.Leads()
	origins := map[string]int{}
	for _, l := range leads {
		origins[fmt.Sprint(l["ORIGIN_ID"])]++
	}
	if len(leads) != 12 || len(origins) != 12 {
		t.Fatalf("%d leads for 12 conversations (origins %v)", len(leads), origins)
	}
	for _, k := range keys {
		l, _ := r.store.Get(k)
		lead := leads[mustID(t, l.CRMID)]
		if lead == nil || lead["ORIGIN_ID"] != OriginID(l.Tenant, l.SessionID) {
			t.Errorf("%s linked to %s, which is not its lead", k, l.CRMID)
		}
	}
	if acts := r.fake.Activities(); len(acts) != len(appts) {
		t.Errorf("%d activities for %d appointments", len(acts), len(appts))
	}
	if len(r.linked) < 12 {
		t.Errorf("OnLinked ran %d times for 12 conversations", len(r.linked))
	}

	// Asked again about a linked conversation (the shipper stored more of
	// its events without the id): no CRM call, the documents get filled.
	for len(r.linked) > 0 {
		<-r.linked
	}
	adds := r.fake.Calls("crm.lead.add")
	again := pendingSession(4)
	if err := r.store.Put(ctx, again); err != nil {
		t.Fatal(err)
	}
	select {
	case l := <-r.linked:
		if l.Key() != again.Key() || l.State != StateLinked || l.CRMID == "" {
			t.Errorf("OnLinked ran for %+v", l)
		}
	case <-time.After(time.Minute):
		t.Fatal("a request for a linked conversation did not fill its documents")
	}
	if got, _ := r.store.Get(again.Key()); got.State != StateLinked {
		t.Errorf("the view lost the answer: %+v", got)
	}
	if n := r.fake.Calls("crm.lead.add"); n != adds {
		t.Errorf("crm.lead.add called %d more times for a linked conversation", n-adds)
	}
}

// TestCRMIDFromEvent: a conversation whose events carry crm_id is linked to
// it without asking the CRM, and its appointments go to that lead.
func TestCRMIDFromEvent(t *testing.T) {
	r := newRig(t, true)
	ctx := context.Background()
	id, err := r.client.LeadAdd(ctx, bitrix24.Lead{Title: "made by the assistant's own integration"})
	if err != nil {
		t.Fatal(err)
	}
	l := pendingSession(3)
	l.CRMID, l.CreateLead = id.String(), true
	a := Link{Kind: KindAppointment, State: StatePending, Tenant: l.Tenant, SessionID: l.SessionID, AppointmentID: "a-3", Service: "manicure"}
	r.store.Put(ctx, l)
	r.store.Put(ctx, a)
	r.waitAll(t, []string{l.Key()}, StateLinked)
	r.waitAll(t, []string{a.Key()}, StateDone)
	if n := len(r.fake.Leads()); n != 1 {
		t.Errorf("%d leads, want only the one the event named", n)
	}
	acts := r.fake.Activities()
	if len(acts) != 1 || fmt.Sprint(acts[0]["OWNER_ID"]) != id.String() {
		t.Errorf("activities %v, want one on lead %s", acts, id)
	}
}

// TestAppointmentWithoutLead: an appointment in a conversation that never
// got a lead is answered as failed, and does not hold up the partition.
func TestAppointmentWithoutLead(t *testing.T) {
	r := newRig(t, true)
	ctx := context.Background()
	a := Link{Kind: KindAppointment, State: StatePending, Tenant: "salon-aurora", SessionID: "no-lead", AppointmentID: "a-x",
		Updated: time.Now().Add(-time.Hour)}
	r.store.Put(ctx, a)
	l := pendingSession(5)
	r.store.Put(ctx, l)
	r.waitAll(t, []string{a.Key()}, StateFailed)
	r.waitAll(t, []string{l.Key()}, StateLinked)
}

// TestLookupByPhone: without sync, a conversation is linked to the lead
// that holds its number, or marked as having none.
func TestLookupByPhone(t *testing.T) {
	r := newRig(t, false)
	ctx := context.Background()
	id, err := r.client.LeadAdd(ctx, bitrix24.Lead{Title: "made by a manager", Phone: []bitrix24.Multifield{{Value: "+79160000001", ValueType: "MOBILE"}}})
	if err != nil {
		t.Fatal(err)
	}
	known, unknown := pendingSession(1), pendingSession(2)
	known.CreateLead, unknown.CreateLead = false, false
	r.store.Put(ctx, known)
	r.store.Put(ctx, unknown)
	r.waitAll(t, []string{known.Key()}, StateLinked)
	r.waitAll(t, []string{unknown.Key()}, StateNoLead)
	if l, _ := r.store.Get(known.Key()); l.CRMID != id.String() {
		t.Errorf("linked to %s, want %s", l.CRMID, id)
	}
	if n := len(r.fake.Leads()); n != 1 {
		t.Errorf("lookup made leads: %d", n)
	}
}

// TestStoreSurvivesRestart: a new store loads what an earlier one wrote.
func TestStoreSurvivesRestart(t *testing.T) {
	r := newRig(t, true)
	ctx := context.Background()
	l := pendingSession(7)
	r.store.Put(ctx, l)
	r.waitAll(t, []string{l.Key()}, StateLinked)
	again := NewStore(r.store.brokers, r.store.topic, r.store.out, r.store.log)
	if err := again.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := again.Get(l.Key()); got.State != StateLinked || got.CRMID == "" {
		t.Errorf("after a restart the link is %+v", got)
	}
}

func mustID(t *testing.T, s string) int64 {
	var id bitrix24.ID
	if err := id.UnmarshalJSON([]byte(s)); err != nil {
		t.Fatal(err)
	}
	return int64(id)
}
