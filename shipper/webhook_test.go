package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/assistlog/assistlog/internal/deadletter"
	"github.com/assistlog/assistlog/internal/event"
	"github.com/assistlog/assistlog/internal/pii"
	"github.com/assistlog/assistlog/internal/pipelinetest"
	"github.com/assistlog/assistlog/internal/proctest"
	"github.com/assistlog/assistlog/internal/stacktest"
)

// receiver is an owner's webhook endpoint: a real HTTP server that checks
// each request's signature on its own (not with the sink's code) and
// records the events it accepted.
type receiver struct {
	secret string
	mu     sync.Mutex
	// failFirst answers the first requests 503; down answers all 503;
	// refuse answers 400 to any request holding that event_id.
	failFirst int
	down      bool
	refuse    string
	failed    int // 503s answered
	downSaw   map[string]bool
	badSig    []string
	bodies    [][]byte
	got       map[string]int // event_id → times accepted
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bodies = append(r.bodies, body)
	ts := req.Header.Get("X-Assistlog-Timestamp")
	q := req.URL.Query()
	mac := hmac.New(sha256.New, []byte(r.secret))
	mac.Write([]byte(ts + "." + string(body)))
	want := "v1=" + hex.EncodeToString(mac.Sum(nil))
	sec, _ := strconv.ParseInt(ts, 10, 64)
	switch {
	case req.Header.Get("X-Assistlog-Signature") != want, q.Get("assistlog_sig") != want, q.Get("assistlog_ts") != ts:
		r.badSig = append(r.badSig, "signature mismatch")
	case time.Since(time.Unix(sec, 0)).Abs() > 5*time.Minute:
		r.badSig = append(r.badSig, "stale timestamp "+ts)
	case q.Get("sheet") != "leads":
		r.badSig = append(r.badSig, "the configured query parameter was lost: "+req.URL.RawQuery)
	}
	var b struct {
		Schema string           `json:"schema"`
		Events []map[string]any `json:"events"`
	}
	if err := json.Unmarshal(body, &b); err != nil || b.Schema != "assistlog.webhook.v1" {
		http.Error(w, fmt.Sprintf("bad body: %v", err), http.StatusBadRequest)
		return
	}
	if r.failFirst > 0 || r.down {
		r.failFirst--
		r.failed++
		for _, e := range b.Events {
			r.downSaw[fmt.Sprint(e["event_id"])] = true
		}
		http.Error(w, "receiver busy", http.StatusServiceUnavailable)
		return
	}
	for _, e := range b.Events {
		if e["event_id"] == r.refuse {
			http.Error(w, "row rejected: the sheet refuses "+r.refuse, http.StatusBadRequest)
			return
		}
	}
	for _, e := range b.Events {
		if e["idempotency_key"] != e["event_id"] {
			r.badSig = append(r.badSig, fmt.Sprintf("idempotency_key %v for event %v", e["idempotency_key"], e["event_id"]))
		}
		r.got[fmt.Sprint(e["event_id"])]++
	}
	fmt.Fprintln(w, `{"ok":true}`)
}

// accepted is the set of event ids the receiver took.
func (r *receiver) accepted() map[string]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]bool{}
	for id := range r.got {
		out[id] = true
	}
	return out
}

func sameSet(got, want map[string]bool) error {
	var missing, extra []string
	for id := range want {
		if !got[id] {
			missing = append(missing, id)
		}
	}
	for id := range got {
		if !want[id] {
			extra = append(extra, id)
		}
	}
	if len(missing)+len(extra) > 0 {
		sort.Strings(missing)
		sort.Strings(extra)
		return fmt.Errorf("%d of %d missing (%.3v…), %d unexpected (%.3v…)", len(missing), len(want), missing, len(extra), extra)
	}
	return nil
}

// TestWebhookSink runs the real shipper with the webhook sink against a
// local receiver: exactly the selected events (by type and tenant) arrive,
// every request is signed over its exact body, no phone number leaves
// unmasked, 503s are retried, an event the receiver refuses (400) is
// dead-lettered with its reason and costs no other event, and while the
// receiver is down nothing is committed: a restarted shipper posts those
// events again.
func TestWebhookSink(t *testing.T) {
	e := newEnv(t)
	const secret = "webhook-secret-for-tests-0123"
	t.Setenv("TEST_WEBHOOK_SECRET", secret)
	evs, truth := e.generate(60)

	// The selection, computed here from the generated events: two types,
	// every tenant but one.
	var tenants []string
	for _, ev := range evs {
		if !slices.Contains(tenants, ev.Tenant) {
			tenants = append(tenants, ev.Tenant)
		}
	}
	sort.Strings(tenants)
	if len(tenants) < 2 {
		t.Fatalf("generated events of %d tenants; the tenant filter needs two", len(tenants))
	}
	allowed := tenants[1:]
	selected := func(evs []event.Event) map[string]bool {
		out := map[string]bool{}
		for _, ev := range evs {
			if (ev.Type == "lead.created" || ev.Type == "appointment.confirmed") && slices.Contains(allowed, ev.Tenant) {
				out[ev.EventID] = true
			}
		}
		return out
	}
	want := selected(evs)
	if len(want) < 5 {
		t.Fatalf("only %d selected events generated", len(want))
	}
	ids := make([]string, 0, len(want))
	for id := range want {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	refused := ids[0]

	rcv := &receiver{secret: secret, failFirst: 3, refuse: refused, got: map[string]int{}, downSaw: map[string]bool{}}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	hook := fmt.Sprintf(`retry: {max_backoff: 1s, pause_interval: 2s}
webhook:
  enabled: true
  url: %s/hook?sheet=leads
  secret: ${TEST_WEBHOOK_SECRET}
  event_types: [lead.created, appointment.confirmed]
  tenants: [%s]
  batch_events: 50
`, srv.URL, strings.Join(allowed, ", "))
	shipper := func(name string) (pipelinetest.Shipper, *proctest.Process) {
		s := pipelinetest.Shipper{Dir: e.dir, Name: name, Topic: e.topic, DLQ: e.dlq, Group: "group-" + e.run, Alias: e.alias,
			Labels: fmt.Sprintf("{app: assistlog-test, deployment: %s}", e.run), Listen: proctest.FreeAddr(t), ExtraYAML: hook}
		return s, pipelinetest.StartShipper(t, e.ep, s)
	}
	s, proc := shipper("shipper-1")
	e.produce(evs)

	delivered := map[string]bool{}
	for id := range want {
		if id != refused {
			delivered[id] = true
		}
	}
	stacktest.Eventually(t, 3*time.Minute, "the selected events at the receiver", func() error {
		return sameSet(rcv.accepted(), delivered)
	})
	// The refused event, read back from the real dead-letter topic.
	stacktest.Eventually(t, time.Minute, "the refused event dead-lettered", func() error {
		var found []deadletter.Record
		for _, m := range stacktest.ReadTopic(t, e.ep.KafkaBrokers, e.dlq) {
			found = append(found, deadletter.FromMessage(m))
		}
		if len(found) != 1 {
			return fmt.Errorf("%d dead letters, want 1: %+v", len(found), found)
		}
		r := found[0]
		ev, err := event.Parse(r.Raw)
		if err != nil || ev.EventID != refused || r.Reason != ReasonWebhook || !strings.Contains(r.Error, "HTTP 400: row rejected") {
			t.Fatalf("dead letter %+v (event %v, %v), want %s for %s with the receiver's reason", r, ev, err, ReasonWebhook, refused)
		}
		return nil
	})
	stacktest.Eventually(t, time.Minute, "the batch committed", func() error {
		if n, err := e.committed(); err != nil || n != int64(len(evs)) {
			return fmt.Errorf("committed %d of %d (%v)", n, len(evs), err)
		}
		return nil
	})
	rcv.mu.Lock()
	if rcv.failed != 3 {
		t.Errorf("receiver answered 503 %d times, want 3 (then accepted)", rcv.failed)
	}
	rcv.mu.Unlock()
	if v := metricValue(t, s.Listen, `assistlog_destination_retries_total{action="retry",destination="webhook"}`); v < 3 {
		t.Errorf("retries of the webhook = %v, want at least 3", v)
	}
	if v := metricValue(t, s.Listen, "assistlog_webhook_sent_events_total"); v != float64(len(delivered)) {
		t.Errorf("assistlog_webhook_sent_events_total = %v, want %d", v, len(delivered))
	}
	if v := metricValue(t, s.Listen, "assistlog_webhook_rejected_events_total"); v != 1 {
		t.Errorf("assistlog_webhook_rejected_events_total = %v, want 1", v)
	}
	if v := metricValue(t, s.Listen, `assistlog_shipper_dead_letters_total{reason="webhook_rejected"}`); v != 1 {
		t.Errorf(`assistlog_shipper_dead_letters_total{reason="webhook_rejected"} = %v, want 1 (the dead-letter alert reads it)`, v)
	}
	if v := metricValue(t, s.Listen, `assistlog_destination_paused{destination="webhook"}`); v != 0 {
		t.Errorf(`assistlog_destination_paused{destination="webhook"} = %v, want 0 (declared, not paused)`, v)
	}

	// The receiver goes down: the next events are tried, not committed;
	// after a kill -9 and a restart they are posted again.
	rcv.mu.Lock()
	rcv.down = true
	rcv.mu.Unlock()
	more, _ := e.generate(20)
	for i := range more {
		more[i].EventID = "second-" + more[i].EventID
	}
	want2 := selected(more)
	e.produce(more)
	stacktest.Eventually(t, 2*time.Minute, "the receiver asked while down", func() error {
		rcv.mu.Lock()
		defer rcv.mu.Unlock()
		for id := range want2 {
			if rcv.downSaw[id] {
				return nil
			}
		}
		return fmt.Errorf("none of %d new selected events posted yet", len(want2))
	})
	time.Sleep(3 * time.Second) // several retries: none may commit
	total := int64(len(evs) + len(more))
	if n, err := e.committed(); err != nil || n >= total {
		t.Fatalf("committed %d of %d while the receiver was down (%v)", n, total, err)
	}
	if v := metricValue(t, s.Listen, "assistlog_webhook_sent_events_total"); v != float64(len(delivered)) {
		t.Errorf("sent counter moved to %v while the receiver was down", v)
	}
	proc.Kill()
	rcv.mu.Lock()
	rcv.down = false
	rcv.mu.Unlock()
	shipper("shipper-2")
	for id := range want2 {
		delivered[id] = true
	}
	stacktest.Eventually(t, 3*time.Minute, "the events posted again after the restart", func() error {
		return sameSet(rcv.accepted(), delivered)
	})
	stacktest.Eventually(t, time.Minute, "everything committed", func() error {
		if n, err := e.committed(); err != nil || n != total {
			return fmt.Errorf("committed %d of %d (%v)", n, total, err)
		}
		return nil
	})

	// The receiver fixed, the dead letter is re-driven as the docs say
	// and reaches it.
	rcv.mu.Lock()
	rcv.refuse = ""
	rcv.mu.Unlock()
	var out bytes.Buffer
	if err := dlqMain([]string{"replay", "--config", filepath.Join(e.dir, "shipper-2.yaml"), "--reason", ReasonWebhook, "--format", "json"}, &out, io.Discard); err != nil {
		t.Fatalf("dlq replay: %v\n%s", err, out.String())
	}
	var rep replayReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil || rep.Redriven != 1 {
		t.Fatalf("dlq replay report %s (%v), want 1 re-driven", out.String(), err)
	}
	delivered[refused] = true
	stacktest.Eventually(t, 2*time.Minute, "the re-driven event at the receiver", func() error {
		return sameSet(rcv.accepted(), delivered)
	})

	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if len(rcv.badSig) > 0 {
		t.Errorf("%d requests failed the receiver's checks: %v", len(rcv.badSig), rcv.badSig)
	}
	// Nothing raw: no generated phone number, in any form, in any body.
	digitRun := regexp.MustCompile(`\d[\d\s\-()]{8,}\d`)
	all := string(slicesJoin(rcv.bodies))
	for _, p := range truth.Phones {
		if strings.Contains(all, p) {
			t.Fatalf("raw phone number %s posted to the webhook", p)
		}
		digits := pii.Digits(p)
		for _, m := range digitRun.FindAllString(all, -1) {
			if strings.Contains(pii.Digits(m), digits[1:]) {
				t.Fatalf("raw phone number %s posted to the webhook as %q", p, m)
			}
		}
	}
	if !strings.Contains(all, `"user_phone":"+7 9`) && !strings.Contains(all, `"user_phone":"+`) {
		t.Errorf("no masked user_phone in the bodies: the check above proved nothing")
	}
	t.Logf("%d + %d selected events, %d requests, %d phone numbers checked", len(want), len(want2), len(rcv.bodies), len(truth.Phones))
}

func slicesJoin(bs [][]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
		out = append(out, '\n')
	}
	return out
}

// TestConfigWebhook: the example's webhook section loads once enabled,
// and every bad field is named.
func TestConfigWebhook(t *testing.T) {
	t.Setenv("ASSISTLOG_PII_SECRET", "a-secret-of-sixteen+")
	t.Setenv("ASSISTLOG_PII_KEY_2026", "0123456789abcdef0123456789abcdef0123456789abcdef")
	t.Setenv("ASSISTLOG_WEBHOOK_URL", "https://script.google.com/macros/s/abc/exec")
	t.Setenv("ASSISTLOG_WEBHOOK_SECRET", "webhook-secret-0123456789")
	b, err := os.ReadFile("shipper.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	on := strings.Replace(string(b), "webhook:\n", "webhook:\n  enabled: true\n", 1)
	on = strings.Replace(on, "  enabled: false\n  # https", "  # https", 1)
	path := filepath.Join(t.TempDir(), "on.yaml")
	os.WriteFile(path, []byte(on), 0o644)
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	w := cfg.Webhook
	if !w.Enabled || w.URL != "https://script.google.com/macros/s/abc/exec" || w.Secret != "webhook-secret-0123456789" ||
		!slices.Equal(w.EventTypes, []string{"lead.created", "appointment.confirmed"}) || w.BatchEvents != 100 || w.Timeout != 30*time.Second {
		t.Errorf("webhook section: %+v", w)
	}

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte(`
pii:
  hash_secret: a-secret-of-sixteen+
webhook:
  enabled: true
  url: http://example.com/hook
  secret: short
  event_types: [lead.created, lead.won]
  tenants: [""]
  batch_events: 0
  timeout: 0s
`), 0o644)
	_, err = LoadConfig(bad)
	for _, want := range []string{`webhook.url: must be https`, "webhook.secret: is required, at least 16", `webhook.event_types: unknown event type "lead.won"`,
		"webhook.tenants: empty tenant name", "webhook.batch_events: must be at least 1", "webhook.timeout: must be positive"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	// Off, the ${…} of the example need not be set.
	os.Unsetenv("ASSISTLOG_WEBHOOK_URL")
	if _, err := LoadConfig("shipper.example.yaml"); err != nil {
		t.Errorf("example with the webhook off: %v", err)
	}
}
