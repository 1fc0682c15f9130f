package loki

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/assistlog/assistlog/internal/errpolicy"
	"github.com/assistlog/assistlog/internal/stacktest"
)

func newClient(t *testing.T) (*Client, string) {
	t.Helper()
	ep := stacktest.Require(t, stacktest.Loki)
	cfg := DefaultConfig()
	cfg.URL = ep.LokiURL
	c, _ := newClientWith(t, cfg)
	return c, ep.LokiURL
}

// newClientWith builds a client with its own policy and registry, returned
// so a test can read the policy's metrics the way Prometheus would.
func newClientWith(t *testing.T, cfg Config) (*Client, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pol, err := errpolicy.New(errpolicy.Config{RetryMin: 100 * time.Millisecond, RetryMax: time.Second, PauseInterval: 500 * time.Millisecond}, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(cfg, pol, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	return c, reg
}

// query runs LogQL over the last 3 hours and returns the lines, sorted.
func query(t *testing.T, base, q string) []string {
	t.Helper()
	v := url.Values{"query": {q}, "limit": {"5000"}, "start": {strconv.FormatInt(time.Now().Add(-3*time.Hour).UnixNano(), 10)},
		"end": {strconv.FormatInt(time.Now().Add(time.Minute).UnixNano(), 10)}}
	resp, err := http.Get(base + "/loki/api/v1/query_range?" + v.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Data struct {
			Result []struct {
				Values [][2]string `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range r.Data.Result {
		for _, v := range s.Values {
			out = append(out, v[1])
		}
	}
	sort.Strings(out)
	return out
}

func eventually(t *testing.T, base, q string, want int) []string {
	t.Helper()
	var got []string
	stacktest.Eventually(t, time.Minute, "loki query "+q, func() error {
		if got = query(t, base, q); len(got) != want {
			return fmt.Errorf("%d lines, want %d", len(got), want)
		}
		return nil
	})
	return got
}

func TestPushAcknowledgedAndQueryable(t *testing.T) {
	c, base := newClient(t)
	run := fmt.Sprintf("r%d", time.Now().UnixNano())
	now := time.Now()
	var entries []Entry
	for i := 0; i < 20; i++ {
		typ := "message.received"
		if i%5 == 0 {
			typ = "appointment.confirmed"
		}
		entries = append(entries, Entry{
			Labels:   map[string]string{"app": "assistlog-test", "tenant": run, "event_type": typ, "level": "info"},
			Time:     now.Add(time.Duration(i-20) * time.Second),
			Line:     fmt.Sprintf(`{"event_id":"%s-%d","session_id":"s%d","event_type":%q}`, run, i, i%3, typ),
			Metadata: map[string]string{"session_id": fmt.Sprintf("s%d", i%3), "event_id": fmt.Sprintf("%s-%d", run, i)},
		})
	}
	if rej, err := c.Push(context.Background(), entries); err != nil || len(rej) != 0 {
		t.Fatalf("push: %v %v", rej, err)
	}
	eventually(t, base, fmt.Sprintf(`{tenant=%q}`, run), 20)
	eventually(t, base, fmt.Sprintf(`{tenant=%q, event_type="appointment.confirmed"}`, run), 4)
	// Structured metadata is filterable without being a label.
	eventually(t, base, fmt.Sprintf(`{tenant=%q} | session_id="s1"`, run), 7)
	// A replay (a crash before the Kafka commit) shows every line once.
	if _, err := c.Push(context.Background(), entries); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if got := query(t, base, fmt.Sprintf(`{tenant=%q}`, run)); len(got) != 20 {
		t.Errorf("after a replay the query returns %d lines, want 20", len(got))
	}
}

func TestRejectionsDoNotDropTheRest(t *testing.T) {
	c, base := newClient(t)
	run := fmt.Sprintf("r%d", time.Now().UnixNano())
	labels := map[string]string{"app": "assistlog-test", "tenant": run}
	now := time.Now()
	entries := []Entry{
		{Labels: labels, Time: now.Add(-time.Second), Line: "good 1", Ref: "g1"},
		{Labels: labels, Time: now.Add(-8 * 24 * time.Hour), Line: "too old", Ref: "old"},
		{Labels: labels, Time: now.Add(-time.Second), Line: strings.Repeat("x", 300<<10), Ref: "long"},
		{Labels: labels, Time: now.Add(time.Hour), Line: "future", Ref: "future"},
		{Labels: labels, Time: now, Line: "good 2", Ref: "g2"},
	}
	rej, err := c.Push(context.Background(), entries)
	if err != nil {
		t.Fatal(err)
	}
	refs := map[any]string{}
	for _, r := range rej {
		refs[r.Entry.Ref] = r.Reason
	}
	if len(rej) != 3 || refs["old"] == "" || refs["long"] == "" || refs["future"] == "" {
		t.Fatalf("rejections = %v", refs)
	}
	// Loki's own verdict on one stream of a batch (a label value over its
	// 2048-character limit): found by re-pushing one by one.
	badLabels := map[string]string{"app": "assistlog-test", "tenant": run, "bad": strings.Repeat("v", 3000)}
	mixed := []Entry{
		{Labels: badLabels, Time: now, Line: "bad stream", Ref: "badlabel"},
		{Labels: labels, Time: now.Add(time.Millisecond), Line: "good 3", Ref: "g3"},
	}
	rej, err = c.Push(context.Background(), mixed)
	if err != nil {
		t.Fatal(err)
	}
	if len(rej) != 1 || rej[0].Entry.Ref != "badlabel" || !strings.Contains(rej[0].Reason, "label value") {
		t.Fatalf("rejections = %+v", rej)
	}
	got := eventually(t, base, fmt.Sprintf(`{tenant=%q}`, run), 3)
	if strings.Join(got, ",") != "good 1,good 2,good 3" {
		t.Errorf("stored %v", got)
	}
}

// TestPushWaitsOutAnOutage stops the real Loki while a push is pending.
func TestPushWaitsOutAnOutage(t *testing.T) {
	c, base := newClient(t)
	run := fmt.Sprintf("r%d", time.Now().UnixNano())
	stacktest.DuringOutage(t, "loki", func() error {
		_, err := c.Push(context.Background(), []Entry{{Labels: map[string]string{"tenant": run}, Time: time.Now(), Line: "during the outage"}})
		return err
	})
	eventually(t, base, fmt.Sprintf(`{tenant=%q}`, run), 1)
}

// TestOversizedPushIsSplit pushes more than the real Loki takes in one
// request, both ways Loki says so: a body over the distributor's
// max_recv_msg_size (4 MiB in the stack) answers 413; a body under it that
// decodes to more than the gRPC limit between distributor and ingester
// (4 MiB, Loki's default) answers 500 ResourceExhausted. Either way the
// client splits the push until the parts fit, storing every entry once and
// rejecting none. (Before, both were retried as they were, forever.)
func TestOversizedPushIsSplit(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name string
		line func(i int) string
		// the encoded body is over (true) or under the 4 MiB HTTP limit
		bodyOver bool
	}{
		{"body over the HTTP limit: 413", func(int) string {
			raw := make([]byte, 180<<10)
			for j := range raw {
				raw[j] = byte(rnd.IntN(256))
			}
			return base64.StdEncoding.EncodeToString(raw) // 240 KiB snappy cannot shrink
		}, true},
		{"decoded over the gRPC limit: 500", func(i int) string {
			return strings.Repeat(fmt.Sprintf("line %d of a long, repetitive message; ", i), 6000) // ~240 KiB, compresses well
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, base := newClient(t)
			run := fmt.Sprintf("r%d", time.Now().UnixNano())
			now := time.Now()
			var entries []Entry
			raw := 0
			for i := 0; i < 24; i++ {
				line := tc.line(i)
				raw += len(line)
				entries = append(entries, Entry{Labels: map[string]string{"app": "assistlog-test", "tenant": run, "part": strconv.Itoa(i % 6)},
					Time: now.Add(time.Duration(i) * time.Millisecond), Line: line, Ref: i})
			}
			body, err := encode(entries)
			if err != nil {
				t.Fatal(err)
			}
			if (len(body) > 4<<20) != tc.bodyOver || raw <= 4<<20 {
				t.Fatalf("the test push (%d bytes encoded, %d raw) does not exercise this limit", len(body), raw)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			rej, err := c.Push(ctx, entries)
			if err != nil || len(rej) != 0 {
				t.Fatalf("push of %d bytes: rejected %d, err %v", len(body), len(rej), err)
			}
			stacktest.Eventually(t, time.Minute, "every large entry stored once", func() error {
				n := stacktest.LokiScalar(t, base, fmt.Sprintf(`sum(count_over_time({tenant=%q}[1h]))`, run))
				if n != len(entries) {
					return fmt.Errorf("%d lines stored, want %d", n, len(entries))
				}
				return nil
			})
		})
	}
}

// authProxy is what guards a Loki reachable from other hosts: a reverse
// proxy in front of the real Loki that takes one basic-auth password.
type authProxy struct {
	password atomic.Value
	proxy    *httputil.ReverseProxy
}

func (p *authProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if u, pw, ok := r.BasicAuth(); !ok || u != "assistlog" || pw != p.password.Load().(string) {
		http.Error(w, "invalid credentials", http.StatusUnauthorized)
		return
	}
	p.proxy.ServeHTTP(w, r)
}

// TestRefusedCredentialsPause: while Loki's proxy refuses the shipper's
// password, the push is neither given up nor reported as rejected entries
// (which would dead-letter the stream): the paused gauge is 1 and the
// client keeps trying slowly. Once the password is accepted, the same call
// returns with everything stored and the gauge back at 0.
func TestRefusedCredentialsPause(t *testing.T) {
	ep := stacktest.Require(t, stacktest.Loki)
	target, _ := url.Parse(ep.LokiURL)
	ap := &authProxy{proxy: httputil.NewSingleHostReverseProxy(target)}
	ap.password.Store("rotated")
	srv := httptest.NewServer(ap)
	defer srv.Close()
	cfg := DefaultConfig()
	cfg.URL, cfg.Username, cfg.Password = srv.URL, "assistlog", "old-password"
	c, reg := newClientWith(t, cfg)
	run := fmt.Sprintf("r%d", time.Now().UnixNano())
	entries := []Entry{
		{Labels: map[string]string{"tenant": run}, Time: time.Now(), Line: "one"},
		{Labels: map[string]string{"tenant": run}, Time: time.Now().Add(time.Millisecond), Line: "two"},
	}
	type result struct {
		rej []Rejection
		err error
	}
	done := make(chan result, 1)
	go func() {
		rej, err := c.Push(context.Background(), entries)
		done <- result{rej, err}
	}()
	stacktest.Eventually(t, 30*time.Second, "loki paused", func() error {
		if v := gaugeValue(t, reg, "assistlog_destination_paused", "loki"); v != 1 {
			return fmt.Errorf("assistlog_destination_paused{destination=\"loki\"} = %v", v)
		}
		return nil
	})
	select {
	case r := <-done:
		t.Fatalf("push returned while Loki refused the credentials: rejected %d, err %v", len(r.rej), r.err)
	default:
	}
	ap.password.Store("old-password") // the operator restores the credentials
	select {
	case r := <-done:
		if r.err != nil || len(r.rej) != 0 {
			t.Fatalf("push after the fix: rejected %+v, err %v", r.rej, r.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("push did not resume after the credentials were fixed")
	}
	if v := gaugeValue(t, reg, "assistlog_destination_paused", "loki"); v != 0 {
		t.Fatalf("paused gauge after resuming = %v", v)
	}
	eventually(t, ep.LokiURL, fmt.Sprintf(`{tenant=%q}`, run), 2)
}

// gaugeValue reads one series of a gauge vector from the registry.
func gaugeValue(t *testing.T, reg *prometheus.Registry, name, dest string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "destination" && l.GetValue() == dest {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatalf("%s{destination=%q} not registered", name, dest)
	return 0
}

// TestStored: of the entries asked about, exactly those pushed before are
// reported, by their event_id, also for events days old (Loki's querier
// asks its ingesters only about ranges near now) and across several query
// windows; an entry too old for Loki is not asked about.
func TestStored(t *testing.T) {
	c, base := newClient(t)
	c.storedWindow = 12 * time.Hour // the 87 hours below take 8 queries
	run := fmt.Sprintf("r%d", time.Now().UnixNano())
	now := time.Now()
	var entries []Entry
	for i := 0; i < 30; i++ {
		id := fmt.Sprintf("%s-e%d", run, i)
		entries = append(entries, Entry{Labels: map[string]string{"app": "assistlog-test", "tenant": run, "channel": []string{"whatsapp", "telegram"}[i%2]},
			Time: now.Add(-time.Duration(i) * 3 * time.Hour), Line: `{"event_id":"` + id + `"}`, Metadata: map[string]string{"event_id": id}})
	}
	if rej, err := c.Push(context.Background(), entries[:20]); err != nil || len(rej) != 0 {
		t.Fatalf("push: %v %v", rej, err)
	}
	// Flushed chunks, not only the ingester's head, must be found.
	resp, err := http.Post(base+"/flush", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	time.Sleep(3 * time.Second)
	tooOld := Entry{Labels: entries[0].Labels, Time: now.Add(-8 * 24 * time.Hour), Line: "old", Metadata: map[string]string{"event_id": run + "-old"}}
	got, err := c.Stored(context.Background(), append(entries, tooOld), "event_id")
	if err != nil {
		t.Fatal(err)
	}
	if got[run+"-old"] {
		t.Error("an entry older than Loki accepts is reported stored")
	}
	for i, e := range entries {
		if want := i < 20; got[e.Metadata["event_id"]] != want {
			t.Errorf("%s (%s ago): stored = %v, want %v", e.Metadata["event_id"], now.Sub(e.Time), got[e.Metadata["event_id"]], want)
		}
	}
}

// TestStoredLargeEntries: the replay lookup of entries whose lines
// together exceed Loki's 4 MiB gRPC limit (20 of 240 KiB, flushed) answers
// which are stored. Before, the query returned the lines themselves: Loki
// answered 500 ResourceExhausted, retried until the context ended, and a
// shipper replaying such a batch after a crash stalled.
func TestStoredLargeEntries(t *testing.T) {
	c, base := newClient(t)
	run := fmt.Sprintf("r%d", time.Now().UnixNano())
	rnd := rand.New(rand.NewPCG(5, 6))
	now := time.Now()
	var entries []Entry
	for i := 0; i < 20; i++ {
		raw := make([]byte, 180<<10)
		for j := range raw {
			raw[j] = byte(rnd.IntN(256))
		}
		id := fmt.Sprintf("%s-e%d", run, i)
		entries = append(entries, Entry{Labels: map[string]string{"app": "assistlog-test", "tenant": run}, Time: now.Add(time.Duration(i-20) * time.Second),
			Line: base64.StdEncoding.EncodeToString(raw), Metadata: map[string]string{"event_id": id}})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if rej, err := c.Push(ctx, entries); err != nil || len(rej) > 0 {
		t.Fatalf("push: %v %v", rej, err)
	}
	resp, err := http.Post(base+"/flush", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	time.Sleep(3 * time.Second)
	got, err := c.Stored(ctx, entries, "event_id")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !got[e.Metadata["event_id"]] {
			t.Errorf("%s: not reported stored", e.Metadata["event_id"])
		}
	}
}
