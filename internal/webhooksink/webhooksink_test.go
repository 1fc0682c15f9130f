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
	"github.com/assistlog/assistlog/internal/stacktest"
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
	node := requireNode(t)
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

// appsScriptShim stands in for the Google services the script calls, as
// Apps Script documents them: script properties, a lock, a spreadsheet
// whose sheets are arrays of rows, and ContentService's text output.
const appsScriptShim = `
const crypto = require('crypto');
const signed = buf => Array.from(buf, b => (b > 127 ? b - 256 : b));
var Utilities = {
  newBlob: s => ({ getBytes: () => signed(Buffer.from(s, 'utf8')) }),
  computeHmacSha256Signature: (value, key) => signed(crypto.createHmac('sha256', Buffer.from(key.map(b => b & 255)))
    .update(Buffer.from(value.map(b => b & 255))).digest()),
};
var Logger = { log: s => console.error(s) };
var input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
var PropertiesService = { getScriptProperties: () => ({ getProperty: k => (k === 'ASSISTLOG_WEBHOOK_SECRET' ? input.secret : null) }) };
var LockService = { getScriptLock: () => ({ waitLock: () => {}, releaseLock: () => {} }) };
var ContentService = { MimeType: { JSON: 'json' }, createTextOutput: s => ({ s: s, setMimeType() { return this; } }) };
function Sheet() { this.rows = []; }
Sheet.prototype.appendRow = function (r) { this.rows.push(r.slice()); };
Sheet.prototype.setFrozenRows = function () {};
Sheet.prototype.getLastRow = function () { return this.rows.length; };
Sheet.prototype.getRange = function (row, col, nrows, ncols) {
  const sh = this;
  return {
    createTextFinder: text => ({
      matchEntireCell() { return this; },
      findNext() {
        for (let i = row - 1; i < Math.min(row - 1 + nrows, sh.rows.length); i++)
          for (let j = col - 1; j < col - 1 + (ncols || 1); j++) if (String(sh.rows[i][j]) === text) return {};
        return null;
      },
    }),
    setValues: vals => vals.forEach((v, k) => { sh.rows[row - 1 + k] = v.slice(); }),
  };
};
var sheets = {};
var SpreadsheetApp = { getActiveSpreadsheet: () => ({ getSheetByName: n => sheets[n] || null, insertSheet: n => (sheets[n] = new Sheet()) }) };
`

// TestAppsScriptReceives runs the Apps Script's doPost under Node on
// requests signed by the sink: a valid batch is appended, its repeat is
// skipped, and a wrong signature, a stale timestamp and a body that is not
// JSON are refused with the status the sink then acts on (401 pauses, 400
// dead-letters).
func TestAppsScriptReceives(t *testing.T) {
	node := requireNode(t)
	gs, err := os.ReadFile("../../docs/sheets/assistlog-webhook.gs")
	if err != nil {
		t.Fatal(err)
	}
	const secret = "sheet-secret-0123456789"
	conf := 0.93
	evs := []Item{
		{Event: &event.Event{EventID: "e-1", Timestamp: "2026-11-20T10:16:14.400+05:00", Tenant: "salon-aurora", Channel: "whatsapp",
			SessionID: "s-1", UserPhone: "+7 9** ***-**-67", Type: event.LeadCreated, Level: "info", Confidence: &conf,
			Payload: map[string]any{"source": "chatbot"}, SchemaVersion: 1}, PhoneHash: strings.Repeat("ab", 32)},
		{Event: &event.Event{EventID: "e-2", Timestamp: "2026-11-20T10:16:20.000+05:00", Tenant: "salon-aurora", Channel: "whatsapp",
			SessionID: "s-1", Type: event.AppointmentConfirmed, Level: "info", Outcome: "booked",
			Payload: map[string]any{"service": "стрижка"}, SchemaVersion: 1}},
	}
	body, _ := Body(evs)
	now := time.Now().Unix()
	type req struct{ Body, TS, Sig string }
	sign := func(ts int64, b []byte) req { return req{string(b), fmt.Sprint(ts), Sign(secret, ts, b)} }
	bad := sign(now, body)
	bad.Sig = Sign("another-secret-0123456789", now, body)
	notJSON := []byte("rows=1")
	reqs := []req{sign(now, body), sign(now+1, body), bad, sign(now-3600, body), sign(now, notJSON)}
	harness := appsScriptShim + string(gs) + `
const replies = input.reqs.map(r => JSON.parse(doPost({ postData: { contents: r.Body }, parameter: { assistlog_ts: r.TS, assistlog_sig: r.Sig } }).s));
console.log(JSON.stringify({ replies: replies, rows: (sheets[SHEET_NAME] || { rows: [] }).rows }));
`
	path := filepath.Join(t.TempDir(), "doPost.js")
	os.WriteFile(path, []byte(harness), 0o644)
	in, _ := json.Marshal(map[string]any{"secret": secret, "reqs": reqs})
	cmd := exec.Command(node, path)
	cmd.Stdin = strings.NewReader(string(in))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("doPost under node: %v\n%s", err, out)
	}
	var res struct {
		Replies []json.RawMessage
		Rows    [][]any
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	wantStatus := []int{200, 200, 401, 401, 400}
	for i, r := range res.Replies {
		if got := answered(200, string(r)); got != wantStatus[i] {
			t.Errorf("request %d: reply %s counts as %d, want %d", i, r, got, wantStatus[i])
		}
	}
	if !strings.Contains(string(res.Replies[0]), `"appended":2`) || !strings.Contains(string(res.Replies[1]), `"skipped_repeats":2`) {
		t.Errorf("replies to a batch and its repeat: %s, %s", res.Replies[0], res.Replies[1])
	}
	if len(res.Rows) != 3 {
		t.Fatalf("sheet rows %v, want a header and 2 events", res.Rows)
	}
	header := fmt.Sprint(res.Rows[0])
	if header != "[received_at idempotency_key timestamp tenant channel session_id event_type intent outcome crm_id user_phone user_phone_hash payload]" {
		t.Errorf("header %s", header)
	}
	r1, r2 := res.Rows[1], res.Rows[2]
	if r1[1] != "e-1" || r1[6] != "lead.created" || r1[10] != "+7 9** ***-**-67" || r1[11] != strings.Repeat("ab", 32) || r1[12] != `{"source":"chatbot"}` {
		t.Errorf("row 1 %v", r1)
	}
	if r2[1] != "e-2" || r2[8] != "booked" || r2[12] != `{"service":"стрижка"}` {
		t.Errorf("row 2 %v", r2)
	}
}

// TestAppsScriptRedirect: a web app answers a POST with a 302 to the
// script's output, fetched with GET; that output is the answer.
func TestAppsScriptRedirect(t *testing.T) {
	var mu sync.Mutex
	reply := `{"ok":true}`
	mux := http.NewServeMux()
	mux.HandleFunc("POST /macros/s/x/exec", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/macros/echo?user_content_key=k", http.StatusFound)
	})
	mux.HandleFunc("GET /macros/echo", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprint(w, reply)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	s, reg := newSink(t, srv.URL+"/macros/s/x/exec", 10)
	if rej, err := s.Send(context.Background(), items("a")); err != nil || len(rej) != 0 {
		t.Fatalf("ok answer after the redirect: %v %v", rej, err)
	}
	mu.Lock()
	reply = `{"ok":false,"status":400,"error":"body is not JSON"}`
	mu.Unlock()
	rej, err := s.Send(context.Background(), items("b"))
	if err != nil || len(rej) != 1 || !strings.Contains(rej[0].Reason, "body is not JSON") {
		t.Fatalf("refusal after the redirect: %v %v", rej, err)
	}
	mu.Lock()
	reply = `{"ok":false,"status":401,"error":"bad signature"}`
	mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := s.Send(ctx, items("c")); err == nil {
		t.Fatal("a bad-signature answer was taken as delivered")
	}
	if v := metric(reg, "assistlog_destination_paused", "destination", Destination); v != 1 {
		t.Errorf("paused gauge %v after the script's 401, want 1", v)
	}
}

// requireNode finds Node.js, which runs the Apps Script; under make test
// (installed by the stack's prerequisites) its absence fails the test.
func requireNode(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		if stacktest.Required() {
			t.Fatal("node is not installed (Debian package nodejs; stack up installs it as root)")
		}
		t.Skip("node not installed")
	}
	return node
}
