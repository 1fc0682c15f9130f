package crm

import (
	"context"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"
)

// TestNewLeadsDrainInBatches: a backlog of new conversations is drained
// with batch requests, about two per 50 conversations (a look-up by
// ORIGIN_ID and an add), not two per conversation, counted by the fake
// portal itself; every conversation gets exactly one lead although
// commands inside the batches fail on their own (QUERY_LIMIT_EXCEEDED and
// OPERATION_TIME_LIMIT in result_error under HTTP 200), a whole batch is
// refused by the rate limit, and the reply to a batch of adds the portal
// carried out is lost. ASSISTLOG_CRM_DRAIN_LEADS sets the backlog
// (default 300).
func TestNewLeadsDrainInBatches(t *testing.T) {
	n := 300
	if v, err := strconv.Atoi(os.Getenv("ASSISTLOG_CRM_DRAIN_LEADS")); err == nil && v > 0 {
		n = v
	}
	r := newRig(t, true)
	ctx := context.Background()
	r.fake.FailNext("crm.lead.list", 3, http.StatusServiceUnavailable, "QUERY_LIMIT_EXCEEDED", "Too many requests")
	r.fake.FailNext("crm.lead.add", 5, http.StatusServiceUnavailable, "QUERY_LIMIT_EXCEEDED", "Too many requests")
	r.fake.LoseNextReplies("crm.lead.add", 1, 0, "", "")
	r.fake.FailNext("batch", 1, http.StatusServiceUnavailable, "QUERY_LIMIT_EXCEEDED", "Too many requests")
	r.fake.BlockMethod("crm.lead.add", 500*time.Millisecond)

	var keys []string
	var ls []Link
	for i := 0; i < n; i++ {
		l := pendingSession(i)
		keys, ls = append(keys, l.Key()), append(ls, l)
	}
	before := r.fake.Requests()
	start := time.Now()
	if err := r.store.PutAll(ctx, ls); err != nil {
		t.Fatal(err)
	}
	r.waitAll(t, keys, StateLinked)
	took := time.Since(start)
	r.exactlyOnce(t, keys, nil)
	requests := r.fake.Requests() - before
	// Two requests per 50 conversations; the faults above cost a few
	// rounds more, and groups are not always full.
	ideal := 2 * ((n + 49) / 50) // batch takes at most 50 commands
	if limit := ideal + 12; requests > limit {
		t.Errorf("%d conversations took %d requests to the portal, want at most %d (ideal %d; one call per conversation would be %d)",
			n, requests, limit, ideal, 2*n)
	}
	for _, m := range []string{"crm.lead.list", "crm.lead.add", "batch"} {
		if left := r.fake.Faults(m); left != 0 {
			t.Fatalf("%d faults of %s never happened", left, m)
		}
	}
	t.Logf("%d new conversations linked with %d requests (ideal %d, one by one %d) in %s; crm.lead.add ran %d times, crm.lead.list %d",
		n, requests, ideal, 2*n, took.Round(time.Millisecond), r.fake.Calls("crm.lead.add"), r.fake.Calls("crm.lead.list"))
}
