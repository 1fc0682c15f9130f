package bitrix24

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/assistlog/assistlog/internal/bitrix24/bitrix24test"
	"github.com/assistlog/assistlog/internal/errpolicy"
)

func newPair(t *testing.T, fc bitrix24test.Config, mut func(*Config)) (*Client, *bitrix24test.Server) {
	t.Helper()
	srv := bitrix24test.New(fc)
	t.Cleanup(srv.Close)
	cfg := DefaultConfig()
	cfg.WebhookURL = srv.WebhookURL()
	cfg.RetryBackoffMax = 200 * time.Millisecond
	if mut != nil {
		mut(&cfg)
	}
	c, err := New(cfg, srv.Client(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return c, srv
}

func TestLeadLifecycle(t *testing.T) {
	c, srv := newPair(t, bitrix24test.Config{}, nil)
	ctx := context.Background()
	if ids, err := c.FindLeadsByPhone(ctx, "+79161234567"); err != nil || len(ids) != 0 {
		t.Fatalf("findbycomm with no match = %v, %v (the portal answers [])", ids, err)
	}
	id, err := c.LeadAdd(ctx, Lead{Title: "Chatbot: salon-aurora", SourceID: "WEB", OriginID: "salon-aurora/s-1",
		Phone: []Multifield{{Value: "+79161234567", ValueType: "MOBILE"}}})
	if err != nil || id == 0 {
		t.Fatalf("lead.add = %v, %v", id, err)
	}
	l, err := c.LeadGet(ctx, id)
	if err != nil || l.ID != id || l.OriginID != "salon-aurora/s-1" || len(l.Phone) != 1 || l.Phone[0].Value != "+79161234567" {
		t.Fatalf("lead.get (ids as strings) = %+v, %v", l, err)
	}
	ids, err := c.FindLeadsByPhone(ctx, "+79161234567")
	if err != nil || len(ids) != 1 || ids[0] != id {
		t.Fatalf("findbycomm = %v, %v", ids, err)
	}
	byOrigin, err := c.LeadsByOrigin(ctx, "salon-aurora/s-1")
	if err != nil || len(byOrigin) != 1 || byOrigin[0].ID != id {
		t.Fatalf("lead.list by ORIGIN_ID = %+v, %v", byOrigin, err)
	}
	if none, err := c.LeadsByOrigin(ctx, "salon-aurora/other"); err != nil || len(none) != 0 {
		t.Fatalf("lead.list with no match = %+v, %v", none, err)
	}
	todo, err := c.TodoAdd(ctx, Todo{LeadID: id, Deadline: time.Date(2026, 11, 24, 14, 0, 0, 0, time.UTC), Title: "Appointment: haircut"})
	if err != nil || todo == 0 || len(srv.Activities()) != 1 {
		t.Fatalf("todo.add = %v, %v", todo, err)
	}
}

func TestLegacyErrorsHaveEmptyCodes(t *testing.T) {
	c, srv := newPair(t, bitrix24test.Config{}, nil)
	_, err := c.LeadGet(context.Background(), 999999)
	var e *Error
	if !errors.As(err, &e) || e.HTTPStatus != http.StatusBadRequest || e.Code != "" || !IsNotFound(err) {
		t.Fatalf("missing lead: %v (want HTTP 400, empty code, not found)", err)
	}
	if errpolicy.Classify(err) != errpolicy.DeadLetter || srv.Calls("crm.lead.get") != 1 {
		t.Errorf("a not-found error was retried (%d calls)", srv.Calls("crm.lead.get"))
	}
	_, err = c.TodoAdd(context.Background(), Todo{LeadID: 999999, Deadline: time.Now(), Title: "x"})
	if !IsNotFound(err) {
		t.Errorf("todo on a missing lead: %v, want OWNER_NOT_FOUND as not-found", err)
	}
}

func TestRetriesOn503And5xx(t *testing.T) {
	c, srv := newPair(t, bitrix24test.Config{}, nil)
	srv.FailNext("crm.lead.list", 3, http.StatusServiceUnavailable, "QUERY_LIMIT_EXCEEDED", "Too many requests")
	srv.FailNext("crm.lead.list", 1, http.StatusInternalServerError, "INTERNAL_SERVER_ERROR", "boom")
	if _, err := c.LeadsByOrigin(context.Background(), "x"); err != nil {
		t.Fatalf("lead.list after 503s and a 500: %v", err)
	}
	if srv.Requests() != 5 {
		t.Errorf("requests %d, want 5", srv.Requests())
	}
	// A lead.add refused by the rate limit did not run: retried.
	srv.FailNext("crm.lead.add", 2, http.StatusServiceUnavailable, "QUERY_LIMIT_EXCEEDED", "Too many requests")
	if _, err := c.LeadAdd(context.Background(), Lead{Title: "x"}); err != nil || len(srv.Leads()) != 1 {
		t.Fatalf("lead.add after 503s: %v, %d leads", err, len(srv.Leads()))
	}
}

// TestAmbiguousFailureIsNotRetried: after a 500 the portal may have created
// the lead; retrying blindly could make a second one.
func TestAmbiguousFailureIsNotRetried(t *testing.T) {
	c, srv := newPair(t, bitrix24test.Config{}, nil)
	srv.FailNext("crm.lead.add", 1, http.StatusInternalServerError, "INTERNAL_SERVER_ERROR", "boom")
	_, err := c.LeadAdd(context.Background(), Lead{Title: "x", OriginID: "t/s"})
	if !errors.Is(err, ErrMaybeApplied) || srv.Requests() != 1 {
		t.Fatalf("lead.add after a 500: %v after %d requests; want ErrMaybeApplied after 1", err, srv.Requests())
	}
	// The connection cut after the portal made the to-do: ambiguous too,
	// and retried by the caller (the policy), who looks first.
	id, err := c.LeadAdd(context.Background(), Lead{Title: "owner"})
	if err != nil {
		t.Fatal(err)
	}
	srv.LoseNextReplies("crm.activity.todo.add", 1, 0, "", "")
	_, err = c.TodoAdd(context.Background(), Todo{LeadID: id, Deadline: time.Now(), Title: "t", Description: "x (appointment a-1)"})
	if !errors.Is(err, ErrMaybeApplied) || errpolicy.Classify(err) != errpolicy.Retry || len(srv.Activities()) != 1 {
		t.Fatalf("todo.add with its reply lost: %v (%s), %d activities; want ErrMaybeApplied, retry, 1", err, errpolicy.Classify(err), len(srv.Activities()))
	}
	found, err := c.LeadTodos(context.Background(), id, "(appointment a-1)")
	if err != nil || len(found) != 1 || found[0].OwnerID != id || found[0].Completed != "N" {
		t.Fatalf("the lost to-do looked up: %+v, %v", found, err)
	}
}

// TestLeadTodos: crm.activity.list finds a lead's to-do by the marker in
// its description, and only that lead's; a near miss of the LIKE filter is
// not taken for it.
func TestLeadTodos(t *testing.T) {
	c, _ := newPair(t, bitrix24test.Config{}, nil)
	ctx := context.Background()
	a, _ := c.LeadAdd(ctx, Lead{Title: "a"})
	b, _ := c.LeadAdd(ctx, Lead{Title: "b"})
	for _, td := range []Todo{{LeadID: a, Description: "Booked (appointment apt-1)"}, {LeadID: a, Description: "Booked (appointment apt-10)"},
		{LeadID: b, Description: "Booked (appointment apt-1)"}} {
		td.Deadline, td.Title = time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC), "Appointment"
		if _, err := c.TodoAdd(ctx, td); err != nil {
			t.Fatal(err)
		}
	}
	got, err := c.LeadTodos(ctx, a, "(appointment apt-1)")
	if err != nil || len(got) != 1 || got[0].OwnerID != a || got[0].Description != "Booked (appointment apt-1)" {
		t.Fatalf("to-dos of lead %d with apt-1: %+v, %v", a, got, err)
	}
	if none, err := c.LeadTodos(ctx, a, "(appointment apt-2)"); err != nil || len(none) != 0 {
		t.Fatalf("no to-do for apt-2: %+v, %v", none, err)
	}
}

// TestErrorActions: what the portal answers is classified for the one
// error policy: refused credentials pause, rate limits and server errors
// retry, a record the portal rejects is dead-lettered.
func TestErrorActions(t *testing.T) {
	ctx := context.Background()
	srv := bitrix24test.New(bitrix24test.Config{AccessToken: "oauth-token-1"})
	defer srv.Close()
	cfg := DefaultConfig()
	cfg.OAuthURL, cfg.AccessToken, cfg.MaxRetries = srv.OAuthURL(), "oauth-token-1", 0
	c, err := New(cfg, srv.Client(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	srv.ExpireToken(true)
	_, err = c.LeadsByOrigin(ctx, "x")
	var e *Error
	if !errors.As(err, &e) || e.Code != "expired_token" || e.HTTPStatus != http.StatusUnauthorized || errpolicy.Classify(err) != errpolicy.Pause {
		t.Fatalf("expired token: %v (%s), want 401 expired_token, pause", err, errpolicy.Classify(err))
	}
	if _, err := c.LeadAdd(ctx, Lead{Title: "x"}); errors.Is(err, ErrMaybeApplied) || errpolicy.Classify(err) != errpolicy.Pause || len(srv.Leads()) != 0 {
		t.Fatalf("lead.add with an expired token: %v; want pause, not ambiguous, no lead", err)
	}
	srv.ExpireToken(false)
	if _, err := c.LeadsByOrigin(ctx, "x"); err != nil {
		t.Fatalf("after the token was renewed: %v", err)
	}
	for _, tc := range []struct {
		status      int
		code, descr string
		want        errpolicy.Action
	}{
		{401, "INVALID_CREDENTIALS", "Invalid request credentials", errpolicy.Pause},
		{403, "insufficient_scope", "", errpolicy.Pause},
		{403, "ACCESS_DENIED", "REST API is available only on commercial plans", errpolicy.Pause},
		{400, "", "Access denied.", errpolicy.Pause},
		{404, "ERROR_METHOD_NOT_FOUND", "Method not found!", errpolicy.Pause},
		{503, "QUERY_LIMIT_EXCEEDED", "Too many requests", errpolicy.Retry},
		{429, "OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit.", errpolicy.Retry},
		{503, "OVERLOAD_LIMIT", "REST API is blocked due to overload", errpolicy.Retry},
		{500, "INTERNAL_SERVER_ERROR", "", errpolicy.Retry},
		{400, "ERROR_CORE", "Invalid e-mail address", errpolicy.DeadLetter},
		{400, "", "ID is not defined or invalid.", errpolicy.DeadLetter},
		{400, "WRONG_DATETIME_FORMAT", "Wrong datetime format", errpolicy.DeadLetter},
	} {
		srv.FailNext("crm.lead.get", 1, tc.status, tc.code, tc.descr)
		_, err := c.LeadGet(ctx, 1)
		if got := errpolicy.Classify(err); got != tc.want {
			t.Errorf("%d %q %q: %s, want %s", tc.status, tc.code, tc.descr, got, tc.want)
		}
	}
	if _, err := c.TodoAdd(ctx, Todo{LeadID: 999999, Deadline: time.Now(), Title: "x"}); errpolicy.Classify(err) != errpolicy.DeadLetter {
		t.Errorf("to-do on a missing lead: %v, want dead-letter", err)
	}
}

// TestLeakyBucket: another app on the same portal has filled the shared
// bucket; the client meets real 503s from it, backs off, paces itself with
// its own limiter and gets every call through.
func TestLeakyBucket(t *testing.T) {
	c, srv := newPair(t, bitrix24test.Config{Drain: 20, Limit: 10}, func(cfg *Config) {
		cfg.RatePerSecond, cfg.Burst, cfg.MaxRetries = 10, 5, 20
	})
	other := srv.Client()
	for i := 0; i < 12; i++ { // the other app's burst
		resp, err := other.Post(srv.WebhookURL()+"crm.lead.list.json", "application/json", strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	var wg sync.WaitGroup
	errs := make(chan error, 30)
	for i := 0; i < 30; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.LeadAdd(context.Background(), Lead{Title: "burst"}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("call lost to rate limiting: %v", err)
	}
	if got := len(srv.Leads()); got != 30 {
		t.Errorf("%d leads, want 30", got)
	}
	if srv.Requests() <= 12+30 {
		t.Errorf("the bucket never answered 503 (%d requests)", srv.Requests())
	}
}

// TestOperationTimeLimit: a 429 waits for operating_reset_at instead of
// hammering the blocked method.
func TestOperationTimeLimit(t *testing.T) {
	c, srv := newPair(t, bitrix24test.Config{}, nil)
	srv.BlockMethod("crm.lead.add", 1500*time.Millisecond)
	if _, err := c.LeadAdd(context.Background(), Lead{Title: "after the block"}); err != nil {
		t.Fatal(err)
	}
	if n := srv.Requests(); n > 3 {
		t.Errorf("%d requests while the method was blocked; the client should wait for operating_reset_at", n)
	}
}

func TestAuthAndConfig(t *testing.T) {
	srv := bitrix24test.New(bitrix24test.Config{AccessToken: "oauth-token-1"})
	defer srv.Close()
	cfg := DefaultConfig()
	cfg.WebhookURL = strings.Replace(srv.WebhookURL(), "8g9l071eismy9q2l", "wrong-secret", 1)
	c, _ := New(cfg, srv.Client(), prometheus.NewRegistry())
	_, err := c.LeadAdd(context.Background(), Lead{Title: "x"})
	var e *Error
	if !errors.As(err, &e) || e.HTTPStatus != http.StatusUnauthorized || errpolicy.Classify(err) != errpolicy.Pause || srv.Requests() != 1 {
		t.Fatalf("wrong webhook secret: %v after %d requests", err, srv.Requests())
	}
	cfg = DefaultConfig()
	cfg.OAuthURL, cfg.AccessToken = srv.OAuthURL(), "oauth-token-1"
	c, _ = New(cfg, srv.Client(), prometheus.NewRegistry())
	if _, err := c.LeadAdd(context.Background(), Lead{Title: "via oauth"}); err != nil {
		t.Fatalf("OAuth call: %v", err)
	}
	bad := DefaultConfig()
	bad.WebhookURL = "http://portal.example/rest/1/x/"
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "webhook_url: must be https") {
		t.Errorf("plain http accepted: %v", err)
	}
}

func TestBatch(t *testing.T) {
	c, _ := newPair(t, bitrix24test.Config{}, nil)
	res, err := c.Batch(context.Background(), map[string]string{
		"a": "crm.lead.add?fields%5BTITLE%5D=Batch%20lead&fields%5BORIGIN_ID%5D=t%2Fs",
		"b": "crm.lead.get?id=424242",
		"c": "crm.duplicate.findbycomm?type=PHONE&values%5B0%5D=%2B70000000000&entity_type=LEAD",
	}, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := res.Result["a"]; !ok || string(res.Result["c"]) != "[]" {
		t.Errorf("results = %v", res.Result)
	}
	if e := res.Errors["b"]; e == nil || !IsNotFound(e) {
		t.Errorf("result_error[b] = %v", res.Errors["b"])
	}
	empty, err := c.Batch(context.Background(), map[string]string{"x": "crm.lead.get?id=1"}, true)
	if err != nil || len(empty.Result) != 0 || len(empty.Errors) != 1 {
		t.Errorf("batch with only a failure (result: []) = %+v, %v", empty, err)
	}
}

// TestTodoCommands: the batch forms of TodoAdd and LeadTodos do what the
// single calls do (a to-do on the lead, with its deadline, found again by
// its marker and only on its lead), an add on a missing lead fails alone
// in result_error, and a look-up matching more than a page reports the
// next page's offset (result_next).
func TestTodoCommands(t *testing.T) {
	c, srv := newPair(t, bitrix24test.Config{}, nil)
	ctx := context.Background()
	a, _ := c.LeadAdd(ctx, Lead{Title: "a"})
	b, _ := c.LeadAdd(ctx, Lead{Title: "b"})
	at := time.Date(2026, 12, 2, 11, 0, 0, 0, time.UTC)
	cmds := map[string]string{"m": TodoAddCommand(Todo{LeadID: 999999, Deadline: at, Title: "x", Description: "(appointment apt-0)"})}
	for i := 0; i < 49; i++ { // with "m", the 50 a batch may hold
		cmds[fmt.Sprintf("d%02d", i)] = TodoAddCommand(Todo{LeadID: a, Deadline: at, Title: "Appointment: haircut & wash",
			Description: fmt.Sprintf("Booked by the assistant (appointment apt-%d) [many]", i)})
	}
	added, err := c.BatchWrite(ctx, cmds, false)
	if err != nil {
		t.Fatal(err)
	}
	if e := added.Errors["m"]; e == nil || e.Code != "OWNER_NOT_FOUND" {
		t.Errorf("a to-do on a missing lead: %v, want OWNER_NOT_FOUND in result_error", e)
	}
	id, err := TodoAdded(added.Result["d07"])
	if err != nil || len(added.Result) != 49 {
		t.Fatalf("%d results; d07 %s: %v", len(added.Result), added.Result["d07"], err)
	}
	for i := 49; i < 55; i++ { // more to-dos on lead a than a page holds
		if _, err := c.TodoAdd(ctx, Todo{LeadID: a, Deadline: at, Title: "y", Description: fmt.Sprintf("(appointment apt-%d) [many]", i)}); err != nil {
			t.Fatal(err)
		}
	}
	found, err := c.Batch(ctx, map[string]string{"one": LeadTodosCommand(a, "(appointment apt-7)"), "other": LeadTodosCommand(b, "(appointment apt-7)"),
		"many": LeadTodosCommand(a, "[many]")}, false)
	if err != nil {
		t.Fatal(err)
	}
	var one, other, many []Activity
	for k, v := range map[string]*[]Activity{"one": &one, "other": &other, "many": &many} {
		if err := json.Unmarshal(found.Result[k], v); err != nil {
			t.Fatalf("%s: %s: %v", k, found.Result[k], err)
		}
	}
	if one = WithMarker(one, "(appointment apt-7)"); len(one) != 1 || one[0].ID != id {
		t.Errorf("apt-7 on lead a: %+v, want to-do %d", one, id)
	}
	if len(other) != 0 {
		t.Errorf("apt-7 on lead b: %+v, want none", other)
	}
	if len(many) != 50 || found.Next["many"] != 50 {
		t.Errorf("55 matches: a page of %d, next %v; want 50 and 50", len(many), found.Next)
	}
	if _, ok := found.Next["one"]; ok {
		t.Errorf("a one-row look-up has a next page: %v", found.Next)
	}
	acts := srv.Activities()
	for _, x := range acts {
		if x["DESCRIPTION"] == "Booked by the assistant (appointment apt-7) [many]" &&
			(x["SUBJECT"] != "Appointment: haircut & wash" || x["DEADLINE"] != "2026-12-02T11:00:00+00:00") {
			t.Errorf("apt-7's to-do as stored: %v", x)
		}
	}
}
