package crm

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/assistlog/assistlog/internal/bitrix24"
	"github.com/assistlog/assistlog/internal/bitrix24/bitrix24test"
	"github.com/assistlog/assistlog/internal/errpolicy"
	"github.com/assistlog/assistlog/internal/kafka"
	"github.com/assistlog/assistlog/internal/pii"
	"github.com/assistlog/assistlog/internal/stacktest"
)

type rig struct {
	store  *Store
	worker *Worker
	fake   *bitrix24test.Server
	client *bitrix24.Client // the worker's, for a test's own calls (a lead made by a manager)
	reg    *prometheus.Registry
	linked chan Link
}

// testToken is the OAuth token of the rigs that call the fake with one.
const testToken = "oauth-token-for-tests"

// newRig runs a store and a worker on a fresh links topic of the real
// Kafka, against the contract-faithful Bitrix24 fake (over a webhook).
func newRig(t *testing.T, sync bool) *rig { return newRigAuth(t, sync, false) }

// newRigAuth is newRig; oauth calls the portal with an access token
// instead of a webhook.
func newRigAuth(t *testing.T, sync, oauth bool) *rig { return newRigWith(t, sync, oauth, nil) }

// newRigWith is newRigAuth with a store that protects numbers with m
// (nil: as before).
func newRigWith(t *testing.T, sync, oauth bool, m *pii.Masker) *rig {
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
	fake := bitrix24test.New(bitrix24test.Config{AccessToken: testToken})
	bcfg := bitrix24.DefaultConfig()
	bcfg.WebhookURL, bcfg.RetryBackoffMax = fake.WebhookURL(), 200*time.Millisecond
	if oauth {
		bcfg.WebhookURL, bcfg.OAuthURL, bcfg.AccessToken = "", fake.OAuthURL(), testToken
	}
	reg := prometheus.NewRegistry()
	client, err := bitrix24.New(bcfg, fake.Client(), reg)
	if err != nil {
		t.Fatal(err)
	}
	policy, err := errpolicy.New(errpolicy.Config{RetryMin: 50 * time.Millisecond, RetryMax: 500 * time.Millisecond,
		PauseInterval: 300 * time.Millisecond}, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	store := NewStore([]string{ep.KafkaBrokers}, topic, prod, log)
	if m != nil {
		store.Protect(m)
	}
	if err := store.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	w, err := NewWorker(WorkerConfig{Brokers: []string{ep.KafkaBrokers}, Topic: topic, GroupID: topic + "-worker", Sync: sync,
		SourceID: "WEB", ConversationURL: "http://kibana/app/discover#/?_a=(query:(query:'session_id:\"{session_id}\"'))"},
		store, client, policy, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{store: store, worker: w, fake: fake, client: client, reg: reg, linked: make(chan Link, 1000)}
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
		last := r.latest(t)
		for _, k := range keys {
			if l := last[k]; l.State != state {
				return fmt.Errorf("%s is %q", k, l.State)
			}
		}
		return nil
	})
}

// latest reads the links topic as every instance does and returns each
// key's last record (the view keeps no answered appointments).
func (r *rig) latest(t *testing.T) map[string]Link {
	t.Helper()
	out := map[string]Link{}
	for _, m := range stacktest.ReadTopic(t, r.store.brokers[0], r.store.topic) {
		var l Link
		if err := json.Unmarshal(m.Value, &l); err != nil {
			t.Fatalf("link record %s: %v", m.Key, err)
		}
		out[string(m.Key)] = l
	}
	return out
}

func pendingSession(i int) Link {
	return Link{Kind: KindSession, State: StatePending, Tenant: "salon-aurora", SessionID: fmt.Sprintf("s-%d", i),
		Channel: "whatsapp", Phone: fmt.Sprintf("+7916000%04d", i), CreateLead: true}
}

// pendingAppointment is a confirmed appointment of l's conversation.
func pendingAppointment(l Link, n int) Link {
	return Link{Kind: KindAppointment, State: StatePending, Tenant: l.Tenant, SessionID: l.SessionID,
		AppointmentID: fmt.Sprintf("%s-a%d", l.SessionID, n), StartsAt: "2026-11-27T14:00:00+03:00", Service: "haircut"}
}

// exactlyOnce checks the fake CRM: one lead per conversation of keys (by
// ORIGIN_ID, and the link names it), one to-do per appointment of appts
// on its conversation's lead (by the marker), and nothing else.
func (r *rig) exactlyOnce(t *testing.T, keys, appts []string) {
	t.Helper()
	leads := r.fake.Leads()
	origins := map[string]int{}
	for _, l := range leads {
		origins[fmt.Sprint(l["ORIGIN_ID"])]++
	}
	if len(leads) != len(keys) || len(origins) != len(keys) {
		t.Errorf("%d leads for %d conversations (origins %v)", len(leads), len(keys), origins)
	}
	for _, k := range keys {
		l, _ := r.store.Get(k)
		tenant, session, _ := strings.Cut(strings.TrimPrefix(k, KindSession+"/"), "/")
		lead := leads[mustID(t, l.CRMID)]
		if lead == nil || lead["ORIGIN_ID"] != OriginID(tenant, session) {
			t.Errorf("%s linked to %q, which is not its lead", k, l.CRMID)
		}
	}
	acts := r.fake.Activities()
	if len(acts) != len(appts) {
		t.Errorf("%d to-dos for %d appointments", len(acts), len(appts))
	}
	for _, k := range appts {
		id := k[strings.LastIndex(k, "/")+1:]
		n := 0
		for _, a := range acts {
			if strings.Contains(fmt.Sprint(a["DESCRIPTION"]), TodoMarker(id)) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("appointment %s has %d to-dos, want exactly 1", id, n)
		}
	}
}

// TestLeadsCreatedOnce: pending conversations become leads and confirmed
// appointments to-dos, exactly once each, though the pending records
// arrive twice (a replay) and the CRM answers 503 bursts to crm.lead.add
// and crm.activity.todo.add, blocks lead.add with a 429, cuts the reply
// to a lead.add it carried out, and loses (500) the reply to a todo.add
// it carried out.
func TestLeadsCreatedOnce(t *testing.T) {
	r := newRig(t, true)
	ctx := context.Background()
	r.fake.FailNext("crm.lead.add", 4, http.StatusServiceUnavailable, "QUERY_LIMIT_EXCEEDED", "Too many requests")
	r.fake.LoseNextReplies("crm.lead.add", 1, 0, "", "")
	r.fake.FailNext("crm.activity.todo.add", 3, http.StatusServiceUnavailable, "QUERY_LIMIT_EXCEEDED", "Too many requests")
	r.fake.LoseNextReplies("crm.activity.todo.add", 1, http.StatusInternalServerError, "INTERNAL_SERVER_ERROR", "reply lost")
	r.fake.LoseNextReplies("crm.activity.todo.add", 1, 0, "", "")
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
			a := pendingAppointment(l, 1)
			appts = append(appts, a.Key())
			if err := r.store.Put(ctx, a); err != nil {
				t.Fatal(err)
			}
		}
	}
	r.waitAll(t, keys, StateLinked)
	r.waitAll(t, appts, StateDone)
	for _, m := range []string{"crm.lead.add", "crm.activity.todo.add"} {
		if n := r.fake.Faults(m); n != 0 {
			t.Fatalf("%d faults of %s never happened", n, m)
		}
	}
	r.exactlyOnce(t, keys, appts)
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

// TestAppointmentAskedAgain: an appointment asked about again after its
// to-do was made (a replayed batch; the view no longer holds answered
// appointments) is found in the CRM, not added twice.
func TestAppointmentAskedAgain(t *testing.T) {
	r := newRig(t, true)
	ctx := context.Background()
	l := pendingSession(1)
	a := pendingAppointment(l, 1)
	r.store.PutAll(ctx, []Link{l, a})
	r.waitAll(t, []string{a.Key()}, StateDone)
	lists := r.fake.Calls("crm.activity.list")
	a.Updated = time.Time{}
	r.store.Put(ctx, a)
	stacktest.Eventually(t, time.Minute, "the appointment answered again", func() error {
		if got, _ := r.store.Get(a.Key()); got.State == StatePending || r.fake.Calls("crm.activity.list") == lists || r.latest(t)[a.Key()].State != StateDone {
			return fmt.Errorf("still pending")
		}
		return nil
	})
	r.exactlyOnce(t, []string{l.Key()}, []string{a.Key()})
}

// paused reads assistlog_destination_paused{destination="bitrix24"} from
// the registry the policy registered on, as /metrics shows it.
func (r *rig) paused(t *testing.T) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "assistlog_destination_paused" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "destination" && lp.GetValue() == bitrix24.Destination {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatal("no assistlog_destination_paused{destination=\"bitrix24\"} in the registry")
	return 0
}

// TestTokenExpiryPauses: the OAuth token expires mid-run (401
// expired_token on every call): nothing is marked failed, the worker
// pauses (the paused gauge is 1) and retries slowly; once the token works
// again every conversation gets its lead and every appointment its to-do,
// exactly once, and the gauge is back to 0.
func TestTokenExpiryPauses(t *testing.T) {
	r := newRigAuth(t, true, true)
	ctx := context.Background()
	if v := r.paused(t); v != 0 {
		t.Fatalf("paused gauge %v before anything happened", v)
	}
	var keys, appts []string
	put := func(from, to int) {
		for i := from; i < to; i++ {
			l := pendingSession(i)
			a := pendingAppointment(l, 1)
			keys, appts = append(keys, l.Key()), append(appts, a.Key())
			if err := r.store.PutAll(ctx, []Link{l, a}); err != nil {
				t.Fatal(err)
			}
		}
	}
	put(0, 3)
	r.waitAll(t, keys, StateLinked)
	r.waitAll(t, appts, StateDone)
	r.fake.ExpireToken(true)
	put(3, 8)
	refused := r.fake.Requests()
	stacktest.Eventually(t, time.Minute, "the worker paused", func() error {
		if v := r.paused(t); v != 1 {
			return fmt.Errorf("paused gauge %v", v)
		}
		return nil
	})
	// Refused and retried slowly for a while: nothing given up.
	time.Sleep(2 * time.Second)
	if n := r.fake.Requests() - refused; n < 2 {
		t.Errorf("%d calls while paused: the worker should keep trying, slowly", n)
	}
	for k, l := range r.latest(t) {
		if l.State == StateFailed {
			t.Fatalf("%s marked failed while the token was expired: %s", k, l.Error)
		}
	}
	if v := r.paused(t); v != 1 {
		t.Fatalf("paused gauge %v while the token is expired", v)
	}
	r.fake.ExpireToken(false)
	r.waitAll(t, keys, StateLinked)
	r.waitAll(t, appts, StateDone)
	r.exactlyOnce(t, keys, appts)
	if v := r.paused(t); v != 0 {
		t.Errorf("paused gauge %v after the token works again", v)
	}
}

// TestStoreHoldsOpenWorkOnly: the view holds pending records and one small
// answer per conversation; answered appointments and repeated requests
// take no room, and Pending counts exactly what waits for the CRM.
func TestStoreHoldsOpenWorkOnly(t *testing.T) {
	r := newRig(t, true)
	ctx := context.Background()
	const convs, perConv = 4, 5
	var keys, appts []string
	for i := 0; i < convs; i++ {
		l := pendingSession(i)
		keys = append(keys, l.Key())
		batch := []Link{l, l}
		for j := 0; j < perConv; j++ {
			a := pendingAppointment(l, j)
			appts = append(appts, a.Key())
			batch = append(batch, a)
		}
		if err := r.store.PutAll(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	r.waitAll(t, keys, StateLinked)
	r.waitAll(t, appts, StateDone)
	r.exactlyOnce(t, keys, appts)
	if p, n := r.store.Pending(), r.store.Len(); p != 0 || n != convs {
		t.Errorf("after every answer: %d pending, %d entries; want 0 and one per conversation (%d)", p, n, convs)
	}
	// A later event of a finished conversation still gets its lead id.
	if l, ok := r.store.Get(keys[2]); !ok || l.State != StateLinked || l.CRMID == "" {
		t.Errorf("a finished conversation's answer: %+v, %v", l, ok)
	}
	// What a second store reads from the topic is as small.
	again := NewStore(r.store.brokers, r.store.topic, r.store.out, r.store.log)
	if err := again.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if p, n := again.Pending(), again.Len(); p != 0 || n != convs {
		t.Errorf("loaded from the topic: %d pending, %d entries; want 0 and %d", p, n, convs)
	}

	// Pending counts requests, not answers: a store whose records no worker
	// answers.
	quiet := NewStore(r.store.brokers, r.store.topic+"-none", r.store.out, r.store.log)
	s1, s2 := pendingSession(100), pendingSession(101)
	s1.Tenant, s2.Tenant = "other", "other"
	quiet.apply(s1.Key(), s1)
	quiet.apply(s2.Key(), s2)
	quiet.apply(s1.Key(), s1) // asked again
	quiet.apply(pendingAppointment(s1, 1).Key(), pendingAppointment(s1, 1))
	if p := quiet.Pending(); p != 3 {
		t.Errorf("2 conversations and an appointment asked about: Pending %d", p)
	}
	linked := s1
	linked.State, linked.CRMID = StateLinked, "4711"
	quiet.apply(s1.Key(), linked)
	quiet.apply(s1.Key(), s1) // a request does not hide the answer
	noLead := s2
	noLead.State = StateNoLead
	quiet.apply(s2.Key(), noLead)
	if p, n := quiet.Pending(), quiet.Len(); p != 1 || n != 3 {
		t.Errorf("answers for both conversations: Pending %d, %d entries; want 1 (the appointment) and 3", p, n)
	}
	create := s2
	create.CreateLead = true
	quiet.apply(s2.Key(), create) // a lead asked for: reopened
	done := pendingAppointment(s1, 1)
	done.State = StateDone
	quiet.apply(done.Key(), done)
	if p, n := quiet.Pending(), quiet.Len(); p != 1 || n != 2 {
		t.Errorf("a no-lead conversation asked to create one, the appointment done: Pending %d, %d entries; want 1 and 2", p, n)
	}
	if l, _ := quiet.Get(s1.Key()); l.State != StateLinked || l.CRMID != "4711" {
		t.Errorf("the linked conversation reads %+v", l)
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
