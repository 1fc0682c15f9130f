package crm

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/assistlog/assistlog/internal/bitrix24"
	"github.com/assistlog/assistlog/internal/errpolicy"
	"github.com/assistlog/assistlog/internal/stacktest"
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

// TestTodosDrainInBatches: the to-dos of a backlog of confirmed
// appointments go to the portal in batch requests, counted by the fake
// portal itself: with their new conversations about three requests per 50
// conversations (a look-up of the leads, their adds, the to-dos' adds: a lead
// made a moment ago holds no to-do to look for), and, asked about again
// (a replay after a crash, the view holding no answered appointments),
// one look-up per 50 appointments that finds every to-do and adds none.
// One by one this is two requests per appointment each time.
// ASSISTLOG_CRM_DRAIN_LEADS sets the backlog (default 100 conversations,
// one appointment each).
func TestTodosDrainInBatches(t *testing.T) {
	n := 100
	if v, err := strconv.Atoi(os.Getenv("ASSISTLOG_CRM_DRAIN_LEADS")); err == nil && v > 0 {
		n = v
	}
	r := newRig(t, true)
	ctx := context.Background()
	var keys, appts []string
	var ls, as []Link
	for i := 0; i < n; i++ {
		l := pendingSession(i)
		a := pendingAppointment(l, 1)
		keys, appts = append(keys, l.Key()), append(appts, a.Key())
		ls, as = append(ls, l, a), append(as, a)
	}
	before := r.fake.Requests()
	if err := r.store.PutAll(ctx, ls); err != nil {
		t.Fatal(err)
	}
	r.waitAll(t, keys, StateLinked)
	r.waitAll(t, appts, StateDone)
	r.exactlyOnce(t, keys, appts)
	requests := r.fake.Requests() - before
	ideal := 3 * ((n + 49) / 50) // batch takes at most 50 commands
	if limit := ideal + 12; requests > limit {
		t.Errorf("%d conversations with an appointment each took %d requests to the portal, want at most %d (ideal %d; to-dos one by one would be %d more)",
			n, requests, limit, ideal, 2*n)
	}
	t.Logf("%d conversations and %d to-dos with %d requests (ideal %d); crm.activity.todo.add ran %d times, crm.activity.list %d",
		n, n, requests, ideal, r.fake.Calls("crm.activity.todo.add"), r.fake.Calls("crm.activity.list"))

	// Every appointment asked about again: found, none added.
	adds, before := r.fake.Calls("crm.activity.todo.add"), r.fake.Requests()
	again := make([]Link, len(as))
	for i, a := range as {
		a.Updated = time.Time{}
		again[i] = a
	}
	if err := r.store.PutAll(ctx, again); err != nil {
		t.Fatal(err)
	}
	lists := r.fake.Calls("crm.activity.list") + n // each appointment's to-do looked up once more
	stacktest.Eventually(t, 2*time.Minute, "every appointment answered again", func() error {
		if got := r.fake.Calls("crm.activity.list"); got < lists {
			return fmt.Errorf("%d of %d looked up", got, lists)
		}
		last := r.latest(t)
		for _, k := range appts {
			if last[k].State != StateDone {
				return fmt.Errorf("%s is %q", k, last[k].State)
			}
		}
		return nil
	})
	r.exactlyOnce(t, keys, appts)
	if got := r.fake.Calls("crm.activity.todo.add"); got != adds {
		t.Errorf("asked again, crm.activity.todo.add ran %d more times", got-adds)
	}
	requests = r.fake.Requests() - before
	ideal = (n + 49) / 50
	if limit := ideal + 6; requests > limit {
		t.Errorf("%d appointments asked again took %d requests, want at most %d (ideal %d; one by one %d)", n, requests, limit, ideal, n)
	}
}

// TestTodoCommandsFailAlone: inside the to-do batches some commands fail
// on their own (QUERY_LIMIT_EXCEEDED in result_error under HTTP 200, for
// look-ups and adds), one is refused for good (OWNER_NOT_FOUND: its lead
// was deleted by a manager), and the reply to a batch of adds the portal
// carried out is cut. The refused appointment alone is answered as
// failed, the others are done, the failed commands are tried again, and
// no appointment gets two to-dos; crm.activity.todo.add runs once per
// appointment (a whole batch is not sent again for one command's error).
func TestTodoCommandsFailAlone(t *testing.T) {
	const n = 40
	r := newRig(t, true)
	ctx := context.Background()
	var keys []string
	var ls []Link
	for i := 0; i < n; i++ {
		l := pendingSession(i)
		keys, ls = append(keys, l.Key()), append(ls, l)
	}
	if err := r.store.PutAll(ctx, ls); err != nil {
		t.Fatal(err)
	}
	r.waitAll(t, keys, StateLinked)
	// The appointments come later, to leads made before: looked up first.
	gone, _ := r.store.Get(keys[7])
	if !r.fake.DeleteLead(mustID(t, gone.CRMID)) {
		t.Fatalf("no lead %s to delete", gone.CRMID)
	}
	r.fake.FailNext("crm.activity.list", 3, http.StatusServiceUnavailable, "QUERY_LIMIT_EXCEEDED", "Too many requests")
	r.fake.FailNext("crm.activity.todo.add", 4, http.StatusServiceUnavailable, "QUERY_LIMIT_EXCEEDED", "Too many requests")
	r.fake.LoseNextReplies("crm.activity.todo.add", 1, 0, "", "")
	var appts, liveKeys []string
	var as []Link
	for i, l := range ls {
		a := pendingAppointment(l, 1)
		as = append(as, a)
		if i == 7 {
			continue
		}
		appts, liveKeys = append(appts, a.Key()), append(liveKeys, l.Key())
	}
	before := r.fake.Requests()
	if err := r.store.PutAll(ctx, as); err != nil {
		t.Fatal(err)
	}
	r.waitAll(t, appts, StateDone)
	r.waitAll(t, []string{as[7].Key()}, StateFailed)
	if got := r.latest(t)[as[7].Key()]; !strings.Contains(got.Error, "OWNER_NOT_FOUND") {
		t.Errorf("the appointment of the deleted lead failed with %q, want OWNER_NOT_FOUND", got.Error)
	}
	for _, m := range []string{"crm.activity.list", "crm.activity.todo.add"} {
		if left := r.fake.Faults(m); left != 0 {
			t.Fatalf("%d faults of %s never happened", left, m)
		}
	}
	r.exactlyOnce(t, liveKeys, appts)
	// Each live appointment's add ran once (each run on a live lead makes
	// a to-do, and exactlyOnce counted one each), the deleted lead's add
	// was refused once, or twice when the cut reply was its batch's (the
	// fake counts a method that ran and answered an error; not a command a
	// FailNext fault answered).
	if got := r.fake.Calls("crm.activity.todo.add"); got < len(appts)+1 || got > len(appts)+2 {
		t.Errorf("crm.activity.todo.add ran %d times for %d to-dos and one refused", got, len(appts))
	}
	requests := r.fake.Requests() - before
	if limit := 16; requests > limit {
		t.Errorf("%d appointments took %d requests with the faults, want at most %d (one by one: %d)", n, requests, limit, 2*n)
	}
	t.Logf("%d appointments, faults inside the batches: %d requests, crm.activity.list ran %d times", n, requests, r.fake.Calls("crm.activity.list"))
}

// TestAppointmentBeforeItsLeadRequest: the shipper asked about a
// conversation (without a lead to make: its number is not in the CRM) and
// its appointment, and asks to make the lead only later (lead.created
// reached it after appointment.confirmed), while the worker is still
// looking the number up. The appointment is not answered as lead-less: the
// lead asked for is made first, and the appointment's to-do goes on it.
func TestAppointmentBeforeItsLeadRequest(t *testing.T) {
	r := newRig(t, true)
	ctx := context.Background()
	const busy = 4
	r.fake.FailNext("crm.duplicate.findbycomm", busy, http.StatusServiceUnavailable, "QUERY_LIMIT_EXCEEDED", "Too many requests")
	s := pendingSession(1)
	s.CreateLead = false
	a := pendingAppointment(s, 1)
	if err := r.store.PutAll(ctx, []Link{s, a}); err != nil {
		t.Fatal(err)
	}
	stacktest.Eventually(t, time.Minute, "the worker looking the number up", func() error {
		if r.fake.Faults("crm.duplicate.findbycomm") == busy {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	create := pendingSession(1) // lead.created stored: make the lead
	if err := r.store.Put(ctx, create); err != nil {
		t.Fatal(err)
	}
	if r.fake.Faults("crm.duplicate.findbycomm") == 0 {
		t.Fatal("the look-up ended before the request to make the lead was written; the test proves nothing")
	}
	r.waitAll(t, []string{s.Key()}, StateLinked)
	stacktest.Eventually(t, 2*time.Minute, "the appointment answered", func() error {
		if l := r.latest(t)[a.Key()]; l.State == StatePending {
			return fmt.Errorf("still pending")
		}
		return nil
	})
	if l := r.latest(t)[a.Key()]; l.State != StateDone {
		t.Fatalf("the appointment is %q (%s), want done on the lead made for its conversation", l.State, l.Error)
	}
	r.exactlyOnce(t, []string{s.Key()}, []string{a.Key()})
}
