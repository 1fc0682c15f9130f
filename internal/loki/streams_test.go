package loki

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/assistlog/assistlog/internal/stacktest"
	"github.com/assistlog/assistlog/stack"
)

// privateLoki starts a Loki of the test's own (stopped at its end), with
// extra command-line flags.
func privateLoki(ctx context.Context, t *testing.T, name string, args ...string) *stack.ExtraLoki {
	t.Helper()
	lk, err := stack.StartLoki(ctx, stack.ExtraLokiConfig{Name: name, HTTPPort: freePort(t), GRPCPort: freePort(t), Args: args})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lk.Stop)
	return lk
}

// TestStreamRefusalIsReported: a push holding two streams, the first with
// an entry Loki refuses (more than its out-of-order window, max_chunk_age/2
// = 1 h here, behind the newest of its stream), the second fine. The refused
// entry must come back as a rejection, the rest be stored. Loki answers a
// request with its last stream's verdict only, so the whole push used to be
// acknowledged (204) and the entry was lost without a trace: the shipper
// neither stored nor dead-lettered it.
func TestStreamRefusalIsReported(t *testing.T) {
	stacktest.Require(t, stacktest.Loki)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	lk := privateLoki(ctx, t, "streams-client", "-ingester.max-chunk-age=2h")
	cfg := DefaultConfig()
	cfg.URL = lk.URL
	c, _ := newClientWith(t, cfg)

	run := fmt.Sprintf("r%d", time.Now().UnixNano())
	first := map[string]string{"app": "assistlog-test", "tenant": run, "level": "info"}
	second := map[string]string{"app": "assistlog-test", "tenant": run, "level": "warn"}
	now := time.Now()
	if rej, err := c.Push(ctx, []Entry{{Labels: first, Time: now, Line: "newest", Ref: "newest"}}); err != nil || len(rej) > 0 {
		t.Fatalf("push the newest entry: %v %+v", err, rej)
	}
	rej, err := c.Push(ctx, []Entry{
		{Labels: first, Time: now.Add(-3 * time.Hour), Line: "too far behind", Ref: "behind"},
		{Labels: second, Time: now, Line: "fine", Ref: "fine"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rej) != 1 || rej[0].Entry.Ref != "behind" {
		t.Fatalf("rejections %+v, want the entry 3 h behind its stream's newest", rej)
	}
	t.Logf("refused: %s", rej[0].Reason)
	if got := eventually(t, lk.URL, fmt.Sprintf(`{tenant=%q}`, run), 2); fmt.Sprint(got) != "[fine newest]" {
		t.Errorf("stored %v", got)
	}
}

// lokiPushRequests is the number of push requests a Loki has acknowledged
// (204), by its own metrics: a retried failure does not count.
func lokiPushRequests(t *testing.T, base string) int {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "loki_request_duration_seconds_count{") || !strings.Contains(line, `route="loki_api_v1_push"`) || !strings.Contains(line, `status_code="204"`) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.Atoi(f[len(f)-1])
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		n += v
	}
	return n
}

// TestLiveStreamsShareARequest: entries Loki cannot refuse (new, and far
// from their streams' rate limits) go in one request whatever the number
// of streams, and all are stored. Before, each stream was a request of its
// own: 40 requests for this batch, 500 a second for the shipper at 5k
// events/s.
func TestLiveStreamsShareARequest(t *testing.T) {
	stacktest.Require(t, stacktest.Loki)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	lk := privateLoki(ctx, t, "streams-shared")
	cfg := DefaultConfig()
	cfg.URL = lk.URL
	c, _ := newClientWith(t, cfg)

	run := fmt.Sprintf("r%d", time.Now().UnixNano())
	now := time.Now()
	var entries []Entry
	for i := range 400 {
		labels := map[string]string{"app": "assistlog-test", "tenant": run, "stream": strconv.Itoa(i % 40)}
		entries = append(entries, Entry{Labels: labels, Time: now.Add(time.Duration(i) * time.Millisecond), Line: fmt.Sprintf("line %d", i)})
	}
	before := lokiPushRequests(t, lk.URL)
	if rej, err := c.Push(ctx, entries); err != nil || len(rej) > 0 {
		t.Fatalf("push: %v %+v", err, rej)
	}
	if n := lokiPushRequests(t, lk.URL) - before; n != 1 {
		t.Errorf("40 streams took %d push requests, want 1", n)
	}
	eventually(t, lk.URL, fmt.Sprintf(`{tenant=%q}`, run), 400)
}

// TestStreamNearItsRateLimitGoesAlone: a stream that has used its Loki
// rate budget goes in a request of its own, so Loki's 429 for it is seen
// and the push retried until Loki takes it. Shared with a stream after it,
// the request was answered 204 (the last stream's verdict) and the
// stream's entries were lost.
func TestStreamNearItsRateLimitGoesAlone(t *testing.T) {
	stacktest.Require(t, stacktest.Loki)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	lk := privateLoki(ctx, t, "streams-rate", "-ingester.per-stream-rate-limit=64KB", "-ingester.per-stream-rate-limit-burst=128KB")
	cfg := DefaultConfig()
	cfg.URL = lk.URL
	cfg.PerStreamRateLimit, cfg.PerStreamRateLimitBurst = 64<<10, 128<<10
	c, _ := newClientWith(t, cfg)

	run := fmt.Sprintf("r%d", time.Now().UnixNano())
	big := map[string]string{"app": "assistlog-test", "tenant": run, "stream": "big"}
	small := map[string]string{"app": "assistlog-test", "tenant": run, "stream": "small"}
	pad := strings.Repeat("x", 1000)
	batch := func(round int) []Entry {
		now := time.Now()
		var es []Entry
		for i := range 100 { // 100 KB: within the burst once, not twice
			es = append(es, Entry{Labels: big, Time: now.Add(time.Duration(i) * time.Microsecond), Line: fmt.Sprintf("%d-%d %s", round, i, pad)})
		}
		return append(es, Entry{Labels: small, Time: now, Line: fmt.Sprintf("small %d", round)})
	}
	for round := range 2 {
		if rej, err := c.Push(ctx, batch(round)); err != nil || len(rej) > 0 {
			t.Fatalf("push %d: %v %+v", round, err, rej)
		}
	}
	eventually(t, lk.URL, fmt.Sprintf(`{tenant=%q, stream="big"}`, run), 200)
	eventually(t, lk.URL, fmt.Sprintf(`{tenant=%q, stream="small"}`, run), 2)
}

// TestSelectorRendersLabels: the selector is {name="value", ...} with the
// names sorted and values quoted as Go (and LogQL) quote them, for any
// number of labels and any value.
func TestSelectorRendersLabels(t *testing.T) {
	reference := func(labels map[string]string) string {
		names := make([]string, 0, len(labels))
		for k := range labels {
			names = append(names, k)
		}
		sort.Strings(names)
		parts := make([]string, len(names))
		for i, k := range names {
			parts[i] = fmt.Sprintf("%s=%q", k, labels[k])
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
	cases := []map[string]string{
		{},
		{"app": "assistlog"},
		{"tenant": "salon-aurora", "app": "assistlog", "level": "info", "channel": "whatsapp", "event_type": "message.sent"},
		{"b": `quote " and \ backslash`, "a": "юникод ✓", "c": "tab\tnewline\n", "d": ""},
	}
	many := map[string]string{}
	for i := range 20 { // more than the selector's fixed array
		many[fmt.Sprintf("l%02d", 19-i)] = strconv.Itoa(i)
	}
	cases = append(cases, many)
	for _, labels := range cases {
		if got, want := Selector(labels), reference(labels); got != want {
			t.Errorf("Selector(%v) = %s, want %s", labels, got, want)
		}
	}
	if got := Selector(map[string]string{"tenant": "a", "app": "b"}); got != `{app="b", tenant="a"}` {
		t.Errorf("got %s", got)
	}
}
