package loki

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/assistlog/assistlog/internal/stacktest"
	"github.com/assistlog/assistlog/stack"
)

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
	lk, err := stack.StartLoki(ctx, stack.ExtraLokiConfig{Name: "streams-client", HTTPPort: freePort(t), GRPCPort: freePort(t),
		Args: []string{"-ingester.max-chunk-age=2h"}})
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Stop()
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
