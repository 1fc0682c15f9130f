package crm

import (
	"context"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/assistlog/assistlog/internal/bitrix24"
	"github.com/assistlog/assistlog/internal/errpolicy"
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

// TestCommandAction: a command's error inside a batch (HTTP 200) is judged
// as the same reply to the method called alone.
func TestCommandAction(t *testing.T) {
	for _, c := range []struct {
		code, descr string
		want        errpolicy.Action
	}{
		{"QUERY_LIMIT_EXCEEDED", "Too many requests", errpolicy.Retry},
		{"OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit.", errpolicy.Retry},
		{"INTERNAL_SERVER_ERROR", "", errpolicy.Retry},
		{"ERROR_CORE", "Invalid e-mail address in the E-mail field", errpolicy.DeadLetter},
		{"", "Not found", errpolicy.DeadLetter},
		{"", "Access denied.", errpolicy.Pause},
		{"expired_token", "The access token provided has expired.", errpolicy.Pause},
	} {
		e := &bitrix24.Error{HTTPStatus: http.StatusOK, Code: c.code, Description: c.descr}
		if got := commandAction(e); got != c.want {
			t.Errorf("%q %q in a batch: %v, want %v", c.code, c.descr, got, c.want)
		}
	}
}
