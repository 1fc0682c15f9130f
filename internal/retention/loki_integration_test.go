package retention_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/assistlog/assistlog/internal/retention"
	"github.com/assistlog/assistlog/internal/stacktest"
	"github.com/assistlog/assistlog/internal/tenants"
	"github.com/assistlog/assistlog/stack"
)

// TestLokiAppliesRenderedRetention starts a private Loki with the
// retention rules `audit retention loki-config` renders from a tenants
// file, pushes tenant a's entries older than a's retention, younger ones,
// and tenant b's equally old ones (b keeps longer), and reads back through
// LogQL that Loki's compactor deleted a's old entries and kept the rest.
//
// What it takes for the compactor to see fresh data: the compactor works
// on the uploaded index only, and Loki's ingester builds and uploads its
// index every 15 minutes of wall clock (not configurable), keeping the
// previous period's in-memory index queryable for 15 more. So the test
// flushes the chunks (POST /flush), restarts Loki (a graceful stop builds
// and uploads the index; with the ingester's WAL off nothing is replayed
// and flushed again), and lets the querier re-read the compacted index
// every few seconds instead of every 5 minutes.
func TestLokiAppliesRenderedRetention(t *testing.T) {
	stacktest.Require(t, stacktest.Loki)
	set, err := tenants.Parse([]byte("retention: 12mo\ntenants:\n  - {name: a, tz: Asia/Yekaterinburg, retention: 2d}\n  - {name: b, tz: Asia/Yekaterinburg, retention: 30d}\n"))
	if err != nil {
		t.Fatal(err)
	}
	// The stack's config sets retention_period (the default) itself; the
	// test pushes entries days old, which Loki refuses by default.
	limits := retention.LokiStreams(set, 0) + "  reject_old_samples: false\n"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	l, err := stack.StartLoki(ctx, stack.ExtraLokiConfig{Name: "retention", HTTPPort: 13121, GRPCPort: 19121,
		Limits: limits, CompactionInterval: "10s", RetentionDeleteDelay: "10s",
		Args: []string{"-ingester.wal-enabled=false", "-tsdb.shipper.resync-interval=5s", "-store.index-cache-validity=5s"}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			b, _ := os.ReadFile(l.Log())
			t.Logf("loki log:\n%s", tail(string(b), 60))
		}
		l.Stop()
	}()

	// a keeps 2 days (Loki: 72h, rounded up); 10 days is past it, 1 day is
	// not; b keeps 30 days (768h).
	now := time.Now()
	const n = 5
	streams := []struct {
		tenant, age string
		at          time.Time
	}{
		{"a", "old", now.Add(-10 * 24 * time.Hour)},
		{"a", "young", now.Add(-24 * time.Hour)},
		{"b", "old", now.Add(-10 * 24 * time.Hour)},
	}
	for _, s := range streams {
		var vals []string
		for i := 0; i < n; i++ {
			vals = append(vals, fmt.Sprintf(`["%d","%s %s line %d"]`, s.at.Add(time.Duration(i)*time.Second).UnixNano(), s.tenant, s.age, i))
		}
		body := fmt.Sprintf(`{"streams":[{"stream":{"tenant":%q,"age":%q},"values":[%s]}]}`, s.tenant, s.age, strings.Join(vals, ","))
		if code := post(t, ctx, l.URL+"/loki/api/v1/push", body); code != http.StatusNoContent {
			t.Fatalf("push %s %s: HTTP %d", s.tenant, s.age, code)
		}
	}
	// Each stream is counted at its own time (an instant query at its
	// entries, so the store answers, not the ingester's memory).
	counts := func() (string, error) {
		var parts []string
		for _, s := range streams {
			c, err := stacktest.LokiInstant(ctx, l.URL, "", fmt.Sprintf(`sum(count_over_time({tenant=%q, age=%q}[10m]))`, s.tenant, s.age), s.at.Add(5*time.Minute))
			if err != nil {
				return "", err
			}
			parts = append(parts, fmt.Sprintf("%s %s %d", s.tenant, s.age, c))
		}
		return strings.Join(parts, ", "), nil
	}
	expect := func(timeout time.Duration, what, want string) {
		t.Helper()
		stacktest.Eventually(t, timeout, what, func() error {
			got, err := counts()
			if err != nil {
				return err
			}
			if got != want {
				return fmt.Errorf("%s, want %s", got, want)
			}
			return nil
		})
	}
	if code := post(t, ctx, l.URL+"/flush", ""); code != http.StatusNoContent {
		t.Fatalf("flush: HTTP %d", code)
	}
	expect(2*time.Minute, "every entry stored before retention", fmt.Sprintf("a old %d, a young %d, b old %d", n, n, n))
	if err := l.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	expect(5*time.Minute, "a's old entries deleted, the rest kept", fmt.Sprintf("a old 0, a young %d, b old %d", n, n))
	t.Logf("retention applied %s after the restart", time.Since(start).Round(time.Second))
}

func post(t *testing.T, ctx context.Context, u, body string) int {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
