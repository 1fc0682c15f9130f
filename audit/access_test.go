package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/assistlog/assistlog/demo"
	"github.com/assistlog/assistlog/internal/access"
	"github.com/assistlog/assistlog/internal/elastic"
	"github.com/assistlog/assistlog/internal/errpolicy"
	"github.com/assistlog/assistlog/internal/esread"
	"github.com/assistlog/assistlog/internal/event"
	"github.com/assistlog/assistlog/internal/pipelinetest"
	"github.com/assistlog/assistlog/internal/stacktest"
	"github.com/assistlog/assistlog/stack"
)

// securedConfig writes an audit config for the secured node: https URL,
// the stack's CA (unless caFile is "-"), user and password.
func securedConfig(t *testing.T, sec stack.ESSecureEndpoints, url, alias, user, password, caFile string) string {
	t.Helper()
	if caFile == "" {
		caFile = sec.CAFile
	}
	ca := "  ca_file: " + caFile + "\n"
	if caFile == "-" {
		ca = ""
	}
	return writeConfig(t, url, alias+"\n  store: elasticsearch\n  username: "+user+"\n  password: "+password+"\n"+strings.TrimSuffix(ca, "\n"), "")
}

// TestTenantAuditorReadsOnlyItsTenant runs the real shipper into the stack's
// secured Elasticsearch over HTTPS as the shipper user (roles rendered from
// the tenants file, the shipper adding each tenant's filtered alias), then
// reads as tenant A's auditor through audit itself: A's events and KPIs
// exactly, nothing of B, and again after a new month's index appeared.
// Every other way round is refused: the concrete index, B's alias, reads by
// id and _mget (which ignore alias filters), writes, a wrong password, no
// CA, plain HTTP; `*` and `_all` resolve to A's alias and return A's
// documents only. The shipper user may not delete; ops read both tenants.
// (_delete_by_query is in the reindex module, which this distribution
// lacks: it answers 400 to everyone.)
func TestTenantAuditorReadsOnlyItsTenant(t *testing.T) {
	ep := stacktest.Require(t, stacktest.Kafka, stacktest.Loki, stacktest.ElasticsearchSecure)
	sec := ep.ESSecure
	ctx := context.Background()
	cfg := demo.DefaultConfig()
	cfg.End = time.Now().UTC().Truncate(time.Minute)
	evs, _, err := demo.FromShared(150, cfg)
	if err != nil {
		t.Fatal(err)
	}
	byTenant := map[string][]event.Event{}
	for _, e := range evs {
		byTenant[e.Tenant] = append(byTenant[e.Tenant], e)
	}
	names := make([]string, 0, len(byTenant))
	for n := range byTenant {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return len(byTenant[names[i]]) > len(byTenant[names[j]]) })
	if len(names) < 2 {
		t.Fatalf("the events have %d tenants: two are needed", len(names))
	}
	a, b := names[0], names[1]
	if len(byTenant[a]) <= esread.PageSize {
		t.Fatalf("tenant %s has %d events: they do not fill two pages of the reader", a, len(byTenant[a]))
	}
	t.Logf("tenant A %s (%d events), tenant B %s (%d events), %d in all", a, len(byTenant[a]), b, len(byTenant[b]), len(evs))

	run := fmt.Sprintf("acc%d", time.Now().UnixNano()%1e9)
	// Under the pattern the stack's roles are rendered for.
	alias := "assistant-events-" + run
	aliasA, aliasB := access.TenantAlias(alias, a), access.TenantAlias(alias, b)
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
	t.Cleanup(func() {
		admin(http.MethodDelete, "/"+alias+"-*", "")
		admin(http.MethodDelete, "/_index_template/"+alias, "")
	})

	// The real shipper, over HTTPS with the CA, as the shipper user.
	tenantsFile, _ := filepath.Abs("../demo/tenants.yaml")
	topic, dlq := "test-"+run, "test-dlq-"+run
	stacktest.CreateTopics(t, ep.KafkaBrokers, map[string]int{topic: 3, dlq: 1})
	produce(t, ep.KafkaBrokers, topic, evs)
	pipelinetest.StartShipper(t, ep, pipelinetest.Shipper{Dir: t.TempDir(), Topic: topic, DLQ: dlq, Group: run, Alias: alias,
		Labels: "{app: assistlog-test, deployment: " + run + "}", ESURL: sec.URL,
		ESExtra: fmt.Sprintf("  username: %s\n  password: %s\n  ca_file: %s\n  tenants_file: %s\n", sec.ShipperUser, sec.ShipperPassword, sec.CAFile, tenantsFile)})
	stacktest.Eventually(t, 3*time.Minute, "every event stored on the secured node", func() error {
		admin(http.MethodPost, "/"+alias+"/_refresh", "")
		code, body := admin(http.MethodGet, "/"+alias+"/_count", "")
		var c struct{ Count int }
		_ = json.Unmarshal([]byte(body), &c)
		if code != http.StatusOK || c.Count != len(evs) {
			return fmt.Errorf("HTTP %d: %d of %d events: %.200s", code, c.Count, len(evs), body)
		}
		return nil
	})
	if n := len(stacktest.ReadTopic(t, ep.KafkaBrokers, dlq)); n != 0 {
		t.Fatalf("%d events dead-lettered", n)
	}

	first, last := evs[0].Time(), evs[0].Time()
	for _, e := range evs {
		if e.Time().Before(first) {
			first = e.Time()
		}
		if e.Time().After(last) {
			last = e.Time()
		}
	}
	from, to := first.UTC().AddDate(0, 0, -1).Format("2006-01-02"), last.UTC().AddDate(0, 0, 1).Format("2006-01-02")
	cols, zs := documentedColumns(t), zones(t)

	// Auditor A through audit: A's events exactly, nothing of anyone else,
	// with no --tenant; A's KPIs equal to what the test computes.
	cfgA := securedConfig(t, sec, sec.URL, aliasA, stack.ESSecureAuditor(a), sec.AuditorPassword, "")
	out, stderr, err := runAudit(t, "export", "events", "--config", cfgA, "--from", from, "--to", to)
	if err != nil {
		t.Fatalf("auditor %s: audit export: %v\n%s", a, err, stderr)
	}
	checkRows(t, parseCSV(t, out, cols), byTenant[a], zs)
	k := auditKPI(t, "--config", cfgA, "--from", from, "--to", to, "--tenant", a)
	sameRow(t, "auditor A's KPIs", k.Total, truthRow(byTenant[a]))
	kb := auditKPI(t, "--config", cfgA, "--from", from, "--to", to, "--tenant", b)
	if kb.Total["sessions"] != float64(0) {
		t.Errorf("auditor %s sees %v sessions of %s, want 0", a, kb.Total["sessions"], b)
	}

	// Ops read both tenants (through a point in time).
	cfgOps := securedConfig(t, sec, sec.URL, alias, sec.OpsUser, sec.OpsPassword, "")
	out, stderr, err = runAudit(t, "export", "events", "--config", cfgOps, "--from", from, "--to", to)
	if err != nil {
		t.Fatalf("ops: audit export: %v\n%s", err, stderr)
	}
	checkRows(t, parseCSV(t, out, cols), evs, zs)
	sameRow(t, "ops' KPIs of B", auditKPI(t, "--config", cfgOps, "--from", from, "--to", to, "--tenant", b).Total, truthRow(byTenant[b]))

	if code, body := as(sec.OpsUser, sec.OpsPassword, http.MethodGet, "/"+alias+"-"+byTenant[b][0].Time().UTC().Format("2006.01")+"/_doc/"+byTenant[b][0].EventID, ""); code != http.StatusOK {
		t.Errorf("ops get a document by id: HTTP %d %.300s", code, body)
	}

	// The ways round, as auditor A.
	idA, idB := byTenant[a][0].EventID, byTenant[b][0].EventID
	index := alias + "-" + byTenant[b][0].Time().UTC().Format("2006.01")
	refused := []struct{ what, method, path, body string }{
		{"search the concrete monthly index", http.MethodPost, "/" + index + "/_search", `{}`},
		{"count the concrete monthly index", http.MethodPost, "/" + index + "/_count", `{}`},
		{"search B's alias", http.MethodPost, "/" + aliasB + "/_search", `{}`},
		{"count B's alias", http.MethodPost, "/" + aliasB + "/_count", `{}`},
		{"get B's document by id through A's alias", http.MethodGet, "/" + aliasA + "/_doc/" + idB, ""},
		{"get B's document by id through the index", http.MethodGet, "/" + index + "/_doc/" + idB, ""},
		{"_mget B's document through A's alias", http.MethodPost, "/" + aliasA + "/_mget", `{"ids":["` + idB + `"]}`},
		{"_mget B's document through the index", http.MethodPost, "/_mget", `{"docs":[{"_index":"` + index + `","_id":"` + idB + `"}]}`},
		{"get A's own document by id", http.MethodGet, "/" + aliasA + "/_doc/" + idA, ""},
		{"write through A's alias", http.MethodPost, "/" + aliasA + "/_doc", `{"tenant":"` + a + `"}`},
		{"delete A's document", http.MethodDelete, "/" + index + "/_doc/" + idA, ""},
		{"open a point in time", http.MethodPost, "/" + aliasA + "/_pit?keep_alive=1m", ""},
	}
	for _, r := range refused {
		if code, body := auditorA(r.method, r.path, r.body); code != http.StatusForbidden {
			t.Errorf("auditor %s may %s: HTTP %d %.300s, want 403", a, r.what, code, body)
		}
	}
	// `*`, `_all` and no index at all resolve to what the user may read:
	// A's alias, with its filter.
	for _, path := range []string{"/*/_search", "/_all/_search", "/_search", "/" + alias + "*/_search"} {
		code, body := auditorA(http.MethodPost, path, `{"size":1000,"track_total_hits":true}`)
		var r struct {
			Hits struct {
				Total struct{ Value int }
				Hits  []struct {
					Source struct{ Tenant string } `json:"_source"`
				}
			}
		}
		_ = json.Unmarshal([]byte(body), &r)
		if code != http.StatusOK || r.Hits.Total.Value != len(byTenant[a]) {
			t.Errorf("auditor %s: %s: HTTP %d, %d hits, want only A's %d: %.300s", a, path, code, r.Hits.Total.Value, len(byTenant[a]), body)
		}
		for _, h := range r.Hits.Hits {
			if h.Source.Tenant != a {
				t.Fatalf("auditor %s: %s returned a document of %s", a, path, h.Source.Tenant)
			}
		}
	}
	if code, body := as(stack.ESSecureAuditor(a), "wrong-password", http.MethodPost, "/"+aliasA+"/_count", ""); code != http.StatusUnauthorized {
		t.Errorf("a wrong password: HTTP %d %.200s, want 401", code, body)
	}
	// Through audit: B's alias, no CA file, plain HTTP, wrong password.
	for _, c := range []struct{ what, cfg, want string }{
		{"B's alias", securedConfig(t, sec, sec.URL, aliasB, stack.ESSecureAuditor(a), sec.AuditorPassword, ""), "HTTP 403"},
		{"no ca_file", securedConfig(t, sec, sec.URL, aliasA, stack.ESSecureAuditor(a), sec.AuditorPassword, "-"), "certificate"},
		{"plain http", securedConfig(t, sec, strings.Replace(sec.URL, "https:", "http:", 1), aliasA, stack.ESSecureAuditor(a), sec.AuditorPassword, ""), ""},
		{"a wrong password", securedConfig(t, sec, sec.URL, aliasA, stack.ESSecureAuditor(a), "wrong", ""), "HTTP 401"},
	} {
		out, stderr, err := runAudit(t, "export", "events", "--config", c.cfg, "--from", from, "--to", to)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(out, idA) {
			t.Errorf("auditor %s with %s: %v (stdout %d bytes)\n%s, want an error naming %q", a, c.what, err, len(out), stderr, c.want)
		} else {
			t.Logf("with %s: %v", c.what, err)
		}
	}

	// The shipper user writes and may not delete or read by id.
	for _, r := range []struct{ what, method, path, body string }{
		{"delete the index", http.MethodDelete, "/" + index, ""},
		{"delete a document", http.MethodDelete, "/" + index + "/_doc/" + idA, ""},
		{"get a document by id", http.MethodGet, "/" + index + "/_doc/" + idA, ""},
	} {
		if code, body := as(sec.ShipperUser, sec.ShipperPassword, r.method, r.path, r.body); code != http.StatusForbidden {
			t.Errorf("the shipper user may %s: HTTP %d %.300s, want 403", r.what, code, body)
		}
	}

	// A new month's index, created by a write of the shipper user (the
	// writer over TLS with the CA): the template gives it the tenant
	// aliases, and auditor A reads A's new event and nothing of B's.
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pol, err := errpolicy.New(errpolicy.Config{RetryMin: 100 * time.Millisecond, RetryMax: time.Second, PauseInterval: time.Second}, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	wcfg := elastic.DefaultConfig()
	wcfg.URLs, wcfg.Alias, wcfg.Username, wcfg.Password, wcfg.CAFile = []string{sec.URL}, alias, sec.ShipperUser, sec.ShipperPassword, sec.CAFile
	w, err := elastic.New(wcfg, pol, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	month := first.UTC().AddDate(0, -2, 0)
	newIndex := w.IndexFor(month)
	if code, _ := admin(http.MethodGet, "/"+newIndex, ""); code != http.StatusNotFound {
		t.Fatalf("%s exists before the write (HTTP %d)", newIndex, code)
	}
	var extra []event.Event
	var docs []elastic.Doc
	for _, tenant := range []string{a, b} {
		for _, e := range byTenant[tenant] {
			if e.UserPhone == "" && e.Intent == "" {
				e.EventID = "new-month-" + e.EventID
				e.Timestamp = month.Add(time.Duration(len(extra)) * time.Hour).Format(time.RFC3339Nano)
				body, _ := json.Marshal(map[string]any{"@timestamp": e.Timestamp, "event_id": e.EventID, "event_type": e.Type,
					"tenant": e.Tenant, "channel": e.Channel, "session_id": e.SessionID, "outcome": e.Outcome})
				docs = append(docs, elastic.Doc{Action: "create", Index: newIndex, ID: e.EventID, Body: body})
				extra = append(extra, e)
				break
			}
		}
	}
	if len(extra) != 2 {
		t.Fatalf("no plain event of each tenant to copy into a new month: %d", len(extra))
	}
	if f, err := w.Write(ctx, docs); err != nil || len(f) > 0 {
		t.Fatalf("the shipper user writes a new month: %v %v", f, err)
	}
	admin(http.MethodPost, "/"+alias+"/_refresh", "")
	if code, body := admin(http.MethodGet, "/"+newIndex+"/_alias/"+aliasA, ""); code != http.StatusOK {
		t.Fatalf("the new index %s has no alias %s: HTTP %d %s", newIndex, aliasA, code, body)
	}
	out, stderr, err = runAudit(t, "export", "events", "--config", cfgA, "--from", month.AddDate(0, 0, -1).Format("2006-01-02"), "--to", to)
	if err != nil {
		t.Fatalf("auditor %s after the new month: %v\n%s", a, err, stderr)
	}
	rows := parseCSV(t, out, cols)
	var ids []string
	for id := range rows {
		ids = append(ids, id)
	}
	want := []string{extra[0].EventID}
	for _, e := range byTenant[a] {
		want = append(want, e.EventID)
	}
	sort.Strings(ids)
	sort.Strings(want)
	if !slices.Equal(ids, want) {
		t.Errorf("auditor %s after the new month reads %d events, want A's %d (A's new one %s included, B's %s not)", a, len(ids), len(want), extra[0].EventID, extra[1].EventID)
	}
}
