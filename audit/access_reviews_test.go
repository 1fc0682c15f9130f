package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/assistlog/assistlog/demo"
	"github.com/assistlog/assistlog/internal/access"
	"github.com/assistlog/assistlog/internal/stacktest"
	"github.com/assistlog/assistlog/stack"
)

// TestTenantAuditorReadsOnlyItsReviews: on the stack's secured
// Elasticsearch over HTTPS, review labels of two tenants are stored by
// audit review import's own code as the admin — first with no tenants
// file (the index made without tenant aliases), then with it, as an index
// made before its tenants were listed — and tenant A's auditor reads them
// through audit's own reader with reviews_index set to A's reviews alias:
// A's causes exactly, nothing of B's. The concrete reviews index, B's
// reviews alias, reads by id and _mget are refused (403); a wildcard search
// over the index's name returns A's labels only. Ops read both tenants.
func TestTenantAuditorReadsOnlyItsReviews(t *testing.T) {
	ep := stacktest.Require(t, stacktest.ElasticsearchSecure)
	sec := ep.ESSecure
	ctx := context.Background()
	ts, err := demo.Tenants()
	if err != nil {
		t.Fatal(err)
	}
	names := ts.Names()
	if len(names) < 2 {
		t.Fatalf("the demo has %d tenants: two are needed", len(names))
	}
	a, b := names[0], names[1]

	run := fmt.Sprintf("rev%d", time.Now().UnixNano()%1e9)
	// Under the events pattern the running secured node's roles were
	// rendered for ("assistant-events*", whose auditor grant is
	// "assistant-events*-tenant-<name>"), so the test reads through the
	// roles that node has whichever access.Roles it started with;
	// TestAccessRoles checks the reviews alias is granted by name.
	events := "assistant-events-" + run
	reviews := events + "-reviews"
	aliasA, aliasB := access.TenantAlias(reviews, a), access.TenantAlias(reviews, b)
	as := func(user, password, method, path, body string) (int, string) {
		t.Helper()
		return stacktest.ESSecureDo(t, sec, user, password, method, path, body)
	}
	admin := func(method, path, body string) (int, string) {
		return as(sec.AdminUser, sec.AdminPassword, method, path, body)
	}
	auditorA := func(method, path, body string) (int, string) {
		return as(stack.ESSecureAuditor(a), sec.AuditorPassword, method, path, body)
	}
	t.Cleanup(func() { admin(http.MethodDelete, "/"+reviews, "") })

	// The labels: three of A's conversations, two of B's, in one week.
	week := "2026-W47"
	var labels []reviewLabel
	want := map[string]map[string]int{} // tenant → cause → labels
	for i, l := range []struct{ tenant, cause string }{{a, "nlp_miss"}, {a, "nlp_miss"}, {a, "bad_scenario"}, {b, "technical_failure"}, {b, "other"}} {
		labels = append(labels, reviewLabel{Week: week, WeekStart: time.Date(2026, 11, 16, 0, 0, 0, 0, time.UTC), Tenant: l.tenant,
			SessionID: fmt.Sprintf("telegram:%s-%d", run, i), Channel: "telegram", Cause: l.cause, Note: "test", Intent: "book",
			Intents: []string{"book"}, LowTurns: 1, MinConfidence: 0.3, Threshold: 0.6, ImportedAt: time.Now().UTC(),
			SourceFile: "review.csv", SourceLine: i + 2})
		if want[l.tenant] == nil {
			want[l.tenant] = map[string]int{}
		}
		want[l.tenant][l.cause]++
	}
	adminCfg := securedConfig(t, sec, sec.URL, events, sec.AdminUser, sec.AdminPassword, "")
	c := common{configPath: adminCfg}
	e, err := c.load(true)
	if err != nil {
		t.Fatal(err)
	}
	e.cfg.ReviewsIndex = reviews
	// An index made before the tenants file was set: no tenant aliases.
	noTenants := *e
	noTenants.tenants = nil
	if _, _, err := storeLabels(ctx, &noTenants, labels[:1]); err != nil {
		t.Fatalf("store a label with no tenants file: %v", err)
	}
	if code, body := admin(http.MethodGet, "/"+reviews+"/_alias/"+aliasA, ""); code != http.StatusNotFound {
		t.Fatalf("with no tenants file the reviews index has an alias %s: HTTP %d %s", aliasA, code, body)
	}
	// The import with the tenants file adds every tenant's alias.
	if _, _, err := storeLabels(ctx, e, labels); err != nil {
		t.Fatalf("store the labels: %v", err)
	}
	for _, tenant := range names {
		if code, body := admin(http.MethodGet, "/"+reviews+"/_alias/"+access.TenantAlias(reviews, tenant), ""); code != http.StatusOK {
			t.Errorf("the reviews index has no alias for %s: HTTP %d %s", tenant, code, body)
		}
	}

	// Auditor A through audit's reader: A's causes exactly, none of B's.
	read := func(user, password, index, tenant string) (map[string]map[string]int, error) {
		t.Helper()
		cc := common{configPath: securedConfig(t, sec, sec.URL, access.TenantAlias(events, a), user, password, "")}
		ea, err := cc.load(true)
		if err != nil {
			t.Fatal(err)
		}
		ea.cfg.ReviewsIndex = index
		return reviewCauses(ctx, ea, []string{week}, tenant)
	}
	got, err := read(stack.ESSecureAuditor(a), sec.AuditorPassword, aliasA, "")
	if err != nil {
		t.Fatalf("auditor %s reads %s: %v", a, aliasA, err)
	}
	if !reflect.DeepEqual(got[week], want[a]) {
		t.Errorf("auditor %s reads causes %v, want A's %v only", a, got[week], want[a])
	}
	if got, err := read(stack.ESSecureAuditor(a), sec.AuditorPassword, aliasA, b); err != nil || len(got[week]) != 0 {
		t.Errorf("auditor %s asking for %s's causes: %v, %v; want none", a, b, got, err)
	}
	if _, err := read(stack.ESSecureAuditor(a), sec.AuditorPassword, aliasB, ""); err == nil {
		t.Errorf("auditor %s read %s's reviews alias %s", a, b, aliasB)
	} else {
		t.Logf("B's reviews alias: %v", err)
	}
	// Ops read every tenant's labels.
	if got, err := read(sec.OpsUser, sec.OpsPassword, reviews, b); err != nil || !reflect.DeepEqual(got[week], want[b]) {
		t.Errorf("ops read %s's causes %v, %v; want %v", b, got, err, want[b])
	}

	// The ways round, as auditor A.
	idA, idB := reviewID(week, a, labels[0].SessionID), reviewID(week, b, labels[3].SessionID)
	for _, r := range []struct{ what, method, path, body string }{
		{"search the concrete reviews index", http.MethodPost, "/" + reviews + "/_search", `{}`},
		{"search B's reviews alias", http.MethodPost, "/" + aliasB + "/_search", `{}`},
		{"get B's label by id through A's alias", http.MethodGet, "/" + aliasA + "/_doc/" + url.PathEscape(idB), ""},
		{"get A's label by id", http.MethodGet, "/" + reviews + "/_doc/" + url.PathEscape(idA), ""},
		{"_mget B's label through A's alias", http.MethodPost, "/" + aliasA + "/_mget", `{"ids":["` + idB + `"]}`},
		{"write a label through A's alias", http.MethodPost, "/" + aliasA + "/_doc", `{"tenant":"` + a + `"}`},
	} {
		if code, body := auditorA(r.method, r.path, r.body); code != http.StatusForbidden {
			t.Errorf("auditor %s may %s: HTTP %d %.300s, want 403", a, r.what, code, body)
		}
	}
	code, body := auditorA(http.MethodPost, "/"+reviews+"*/_search", `{"size":100,"track_total_hits":true}`)
	var res struct {
		Hits struct {
			Hits []struct {
				ID     string                  `json:"_id"`
				Source struct{ Tenant string } `json:"_source"`
			}
		}
	}
	_ = json.Unmarshal([]byte(body), &res)
	var ids, wantIDs []string
	for _, h := range res.Hits.Hits {
		ids = append(ids, h.ID)
	}
	for _, l := range labels {
		if l.Tenant == a {
			wantIDs = append(wantIDs, reviewID(l.Week, l.Tenant, l.SessionID))
		}
	}
	sort.Strings(ids)
	sort.Strings(wantIDs)
	if code != http.StatusOK || !reflect.DeepEqual(ids, wantIDs) {
		t.Errorf("auditor %s: %s*/_search: HTTP %d, labels %v; want A's %v only: %.300s", a, reviews, code, ids, wantIDs, body)
	}
}
