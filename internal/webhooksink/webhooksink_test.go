package webhooksink

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/assistlog/assistlog/internal/errpolicy"
	"github.com/assistlog/assistlog/internal/event"
)

// example is the worked example of docs/sheets/README.md.
type example struct{ secret, timestamp, body, signature string }

func docExample(t *testing.T) example {
	t.Helper()
	b, err := os.ReadFile("../../docs/sheets/README.md")
	if err != nil {
		t.Fatal(err)
	}
	get := func(name string) string {
		m := regexp.MustCompile(`(?m)^` + name + `:\s+(\S.*)$`).FindStringSubmatch(string(b))
		if m == nil {
			t.Fatalf("docs/sheets/README.md: worked example lacks %q", name)
		}
		return m[1]
	}
	return example{get("secret"), get("timestamp"), get("body"), get("signature")}
}

// TestWorkedExample: the signature the docs show is the one the sink
// computes, and the body is the one the sink renders for that event.
func TestWorkedExample(t *testing.T) {
	ex := docExample(t)
	var ts int64
	fmt.Sscan(ex.timestamp, &ts)
	if got := Sign(ex.secret, ts, []byte(ex.body)); got != ex.signature {
		t.Errorf("Sign(doc example) = %s, the docs say %s", got, ex.signature)
	}
	// An independent HMAC of the documented message, so Sign itself is checked.
	mac := hmac.New(sha256.New, []byte(ex.secret))
	mac.Write([]byte(ex.timestamp + "." + ex.body))
	if want := "v1=" + hex.EncodeToString(mac.Sum(nil)); want != ex.signature {
		t.Errorf("HMAC-SHA256(secret, ts.body) = %s, the docs say %s", want, ex.signature)
	}
	e := &event.Event{EventID: "sgd-1_00000-0013", Timestamp: "2026-11-20T10:16:14.400+03:00", Tenant: "salon-aurora",
		Channel: "whatsapp", SessionID: "sgd-1_00000", UserPhone: "+7 9** ***-**-67", Type: event.LeadCreated, Level: "info",
		Payload: map[string]any{"source": "chatbot", "name": "Анна"}, SchemaVersion: 1}
	body, err := Body([]Item{{Event: e, PhoneHash: "5b2c0f4e"}})
	if err != nil {
		t.Fatal(err)
	}
	if string(body) != ex.body {
		t.Errorf("Body renders\n%s\nthe docs show\n%s", body, ex.body)
	}
	var back struct{ Events []map[string]any }
	if err := json.Unmarshal(body, &back); err != nil || back.Events[0]["payload"].(map[string]any)["name"] != "Анна" {
		t.Errorf("the ASCII body does not decode to the same text: %v %v", back, err)
	}
}

// TestAppsScriptSigns runs the Apps Script's own sign/verify under Node,
// with Utilities shimmed as Apps Script documents it (UTF-8 bytes in,
// signed bytes out), and checks it agrees with Sign: on the worked example
// it keeps (testSignature), and on a body with Cyrillic text.
func TestAppsScriptSigns(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed")
	}
	gs, err := os.ReadFile("../../docs/sheets/assistlog-webhook.gs")
	if err != nil {
		t.Fatal(err)
	}
	ex := docExample(t)
	body, _ := Body([]Item{{Event: &event.Event{EventID: "x-1", Type: event.AppointmentConfirmed, Tenant: "клиника",
		Payload: map[string]any{"service": "стрижка «люкс» 🙂"}, SchemaVersion: 1}}})
	const secret, ts = "another-secret-with-ü-0123", int64(1764000000)
	harness := `
const crypto = require('crypto');
const signed = buf => Array.from(buf, b => (b > 127 ? b - 256 : b));
var Utilities = {
  newBlob: s => ({ getBytes: () => signed(Buffer.from(s, 'utf8')) }),
  computeHmacSha256Signature: (value, key) => signed(crypto.createHmac('sha256', Buffer.from(key.map(b => b & 255)))
    .update(Buffer.from(value.map(b => b & 255))).digest()),
};
var Logger = { log: s => console.error(s) };
` + string(gs) + `
const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
testSignature();
console.log(JSON.stringify({
  example: [EXAMPLE.secret, EXAMPLE.timestamp, EXAMPLE.body, EXAMPLE.signature],
  sig: sign(input.secret, input.ts, input.body),
  ok: verify(input.secret, input.ts, input.body, input.want),
  tampered: verify(input.secret, input.ts, input.body + ' ', input.want),
}));
`
	path := filepath.Join(t.TempDir(), "harness.js")
	os.WriteFile(path, []byte(harness), 0o644)
	in, _ := json.Marshal(map[string]any{"secret": secret, "ts": fmt.Sprint(ts), "body": string(body), "want": Sign(secret, ts, body)})
	cmd := exec.Command(node, path)
	cmd.Stdin = strings.NewReader(string(in))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("the Apps Script under node: %v\n%s", err, out)
	}
	var res struct {
		Example      []string
		Sig          string
		OK, Tampered bool
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if want := []string{ex.secret, ex.timestamp, ex.body, ex.signature}; strings.Join(res.Example, "\n") != strings.Join(want, "\n") {
		t.Errorf("the script's EXAMPLE differs from the docs':\n%q\n%q", res.Example, want)
	}
	if res.Sig != Sign(secret, ts, body) || !res.OK || res.Tampered {
		t.Errorf("script sign = %s, sink %s; verify ok=%v, tampered accepted=%v", res.Sig, Sign(secret, ts, body), res.OK, res.Tampered)
	}
}

// hookServer answers with the statuses in order, then 200, recording the
// event ids of each request.
type hookServer struct {
	mu       sync.Mutex
	statuses []int
	refuse   string // event id answered 422 whenever present
	requests [][]string
}

func (h *hookServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	var body struct{ Events []map[string]any }
	json.Unmarshal(b, &body)
	var ids []string
	for _, e := range body.Events {
		ids = append(ids, fmt.Sprint(e["event_id"]))
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.requests = append(h.requests, ids)
	if len(h.statuses) > 0 {
		code := h.statuses[0]
		h.statuses = h.statuses[1:]
		http.Error(w, "status "+fmt.Sprint(code), code)
		return
	}
	for _, id := range ids {
		if id == h.refuse {
			http.Error(w, "no such service", http.StatusUnprocessableEntity)
			return
		}
	}
}

func newSink(t *testing.T, url string, batch int) (*Sink, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pol, err := errpolicy.New(errpolicy.Config{RetryMin: 10 * time.Millisecond, RetryMax: 20 * time.Millisecond, PauseInterval: 30 * time.Millisecond}, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Enabled, cfg.URL, cfg.Secret, cfg.BatchEvents = true, url, "unit-test-secret-0123", batch
	s, err := New(cfg, pol, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	return s, reg
}

func items(ids ...string) []Item {
	var out []Item
	for _, id := range ids {
		out = append(out, Item{Event: &event.Event{EventID: id, Type: event.LeadCreated, SchemaVersion: 1}, Ref: id})
	}
	return out
}

// TestSendFollowsThePolicy: 401/403 pause (and resume), 429/503 retry,
// a 4xx refusal splits the batch and comes back for the one event at fault.
func TestSendFollowsThePolicy(t *testing.T) {
	h := &hookServer{statuses: []int{401, 403, 429, 503}, refuse: "b"}
	srv := httptest.NewServer(h)
	defer srv.Close()
	s, reg := newSink(t, srv.URL, 2)
	rej, err := s.Send(context.Background(), items("a", "b", "c"))
	if err != nil {
		t.Fatal(err)
	}
	if len(rej) != 1 || rej[0].Item.Ref != "b" || !strings.Contains(rej[0].Reason, "HTTP 422: no such service") {
		t.Fatalf("rejections %+v, want b with the receiver's reason", rej)
	}
	// 4 failures on [a b], its 422, then a and b alone, then [c].
	want := "[a b] [a b] [a b] [a b] [a b] [a] [b] [c]"
	if got := strings.TrimPrefix(fmt.Sprint(h.requests), "["); strings.TrimSuffix(got, "]") != want {
		t.Errorf("requests %v, want %s", h.requests, want)
	}
	count := func(series string, labels ...string) float64 { return metric(reg, series, labels...) }
	if p := count("assistlog_destination_retries_total", "destination", "webhook", "action", "pause"); p != 2 {
		t.Errorf("pauses = %v, want 2 (401, 403)", p)
	}
	if r := count("assistlog_destination_retries_total", "destination", "webhook", "action", "retry"); r != 2 {
		t.Errorf("retries = %v, want 2 (429, 503)", r)
	}
	if g := count("assistlog_destination_paused", "destination", "webhook"); g != 0 {
		t.Errorf("paused gauge %v after the receiver accepted again, want 0", g)
	}
	if n := testutil.ToFloat64(s.m.sent); n != 2 {
		t.Errorf("sent %v, want 2 (a, c)", n)
	}
}

// TestSendPausedGauge: while the receiver answers 401 the paused gauge is
// 1, and Send returns only with ctx's error: nothing taken as delivered.
func TestSendPausedGauge(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "bad token", http.StatusUnauthorized)
	}))
	defer srv.Close()
	s, reg := newSink(t, srv.URL, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := s.Send(ctx, items("a"))
	if err == nil || ctx.Err() == nil {
		t.Fatalf("Send returned %v before ctx ended", err)
	}
	if v := metric(reg, "assistlog_destination_paused", "destination", Destination); v != 1 {
		t.Errorf("paused gauge %v, want 1", v)
	}
}

// metric is the value of the series with these label pairs; -1 if absent.
func metric(reg *prometheus.Registry, series string, labels ...string) float64 {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != series {
			continue
		}
		for _, m := range mf.Metric {
			ok := true
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, l := range m.Label {
					found = found || (l.GetName() == labels[i] && l.GetValue() == labels[i+1])
				}
				ok = ok && found
			}
			if ok {
				if m.Counter != nil {
					return m.Counter.GetValue()
				}
				return m.Gauge.GetValue()
			}
		}
	}
	return -1
}

func TestValidate(t *testing.T) {
	c := DefaultConfig()
	c.URL, c.Secret = "http://127.0.0.1:8080/x", "0123456789abcdef"
	if err := c.Validate(); err != nil {
		t.Errorf("loopback http refused: %v", err)
	}
	c.URL = "http://hooks.example.com/x"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "url: must be https") {
		t.Errorf("plain http to another host: %v", err)
	}
	c.URL, c.Tenants = "https://hook.eu1.make.com/abc", []string{"salon-aurora"}
	if !c.Selects(&event.Event{Type: event.LeadCreated, Tenant: "salon-aurora"}) ||
		c.Selects(&event.Event{Type: event.LeadCreated, Tenant: "other"}) ||
		c.Selects(&event.Event{Type: event.MessageReceived, Tenant: "salon-aurora"}) {
		t.Error("Selects: wrong selection by type and tenant")
	}
}
