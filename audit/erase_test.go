package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/assistlog/assistlog/demo"
	"github.com/assistlog/assistlog/internal/archive"
	"github.com/assistlog/assistlog/internal/errpolicy"
	"github.com/assistlog/assistlog/internal/event"
	"github.com/assistlog/assistlog/internal/pipelinetest"
	"github.com/assistlog/assistlog/internal/proctest"
	"github.com/assistlog/assistlog/internal/stacktest"
)

// pipelineSecret is pipelinetest's pii.hash_secret (the shipper's key).
const pipelineSecret = "pipelinetest-secret-0123456789"

// eraseEnv is one shipment for the erasure test: generated dialogues
// through the real shipper (with the CRM worker against the Bitrix24 fake,
// OpenSearch as mirror, Loki) and the real archiver.
type eraseEnv struct {
	evs                    []event.Event
	run, alias, links      string
	reviews                string
	es, os, loki           string
	archive                *archive.Store
	config                 string // the audit config erase runs with
	tenant                 string
	phone, hash            string
	sessions               []string // the person's conversations
	mine                   map[string]bool
	personEvents           int
	othersBySession        map[string]int // tenant/session → events, everyone else
	deployment             string
	first                  time.Time
	lokiFrom               time.Time
	archiveWant            int
	personArchive          int
	personLinkKeysBefore   []string
	otherLiveLinkKeysCount int
}

// newEraseEnv ships n generated dialogues after giving one customer a
// second conversation (the same number in two sessions of one tenant).
func newEraseEnv(t *testing.T, n int) *eraseEnv {
	ep := stacktest.Require(t, stacktest.Kafka, stacktest.Elasticsearch, stacktest.OpenSearch, stacktest.Loki, stacktest.S3)
	cfg := demo.DefaultConfig()
	cfg.End = time.Now().UTC().Truncate(time.Minute)
	evs, _, err := demo.FromShared(n, cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := &eraseEnv{es: ep.ElasticsearchURL, os: ep.OpenSearchURL, loki: ep.LokiURL}

	// The person: the first two conversations of one tenant that both got
	// a phone number; the second is given the first one's number.
	phoneOf := map[string]string{} // tenant/session → number
	var order []string
	for _, ev := range evs {
		k := ev.Tenant + "/" + ev.SessionID
		if ev.UserPhone != "" && phoneOf[k] == "" {
			phoneOf[k] = ev.UserPhone
			order = append(order, k)
		}
	}
	var first, second string
	for i, a := range order {
		for _, b := range order[i+1:] {
			if strings.SplitN(a, "/", 2)[0] == strings.SplitN(b, "/", 2)[0] {
				first, second = a, b
				break
			}
		}
		if first != "" {
			break
		}
	}
	if first == "" {
		t.Fatal("no tenant with two conversations that gave a number: generate more dialogues")
	}
	e.tenant = strings.SplitN(first, "/", 2)[0]
	e.phone = phoneOf[first]
	for i := range evs {
		if evs[i].Tenant+"/"+evs[i].SessionID == second && evs[i].UserPhone != "" {
			evs[i].UserPhone = e.phone
		}
	}
	e.sessions = []string{strings.SplitN(first, "/", 2)[1], strings.SplitN(second, "/", 2)[1]}
	sort.Strings(e.sessions)
	e.mine = map[string]bool{first: true, second: true}
	mac := hmac.New(sha256.New, []byte(pipelineSecret))
	mac.Write([]byte("+" + digitsOf(e.phone)))
	e.hash = hex.EncodeToString(mac.Sum(nil))

	// Ground truth from the generated events, by a plain loop.
	e.othersBySession = map[string]int{}
	for _, ev := range evs {
		k := ev.Tenant + "/" + ev.SessionID
		if e.mine[k] {
			e.personEvents++
			if e.first.IsZero() || ev.Time().Before(e.first) {
				e.first = ev.Time()
			}
		} else {
			e.othersBySession[k]++
		}
	}
	e.evs = evs

	e.run = fmt.Sprintf("erase%d", time.Now().UnixNano()%1e9)
	topic, dlq := "test-"+e.run, "test-dlq-"+e.run
	e.alias, e.links, e.reviews = "test-"+e.run, "test-links-"+e.run, "test-reviews-"+e.run
	e.deployment = e.run
	stacktest.CreateTopics(t, ep.KafkaBrokers, map[string]int{topic: 3, dlq: 1, e.links: 3})
	produce(t, ep.KafkaBrokers, topic, evs)

	dir := t.TempDir()
	_, crmYAML := pipelinetest.FakeCRM(t, dir, 25, e.links, e.run)
	tenantsFile, _ := filepath.Abs("../demo/tenants.yaml")
	prefix := "test/" + e.run
	archiveListen := proctest.FreeAddr(t)
	archiveYAML := fmt.Sprintf(`archive:
  s3: {endpoint: %q, region: %s, bucket: %s, prefix: %s, access_key: %s, secret_key: %s, path_style: true}
  group_id: %s-archiver
  tenants_file: %s
  roll_interval: 2s
  listen: %s
`, ep.S3.URL, ep.S3.Region, ep.S3.Bucket, prefix, ep.S3.AccessKey, ep.S3.SecretKey, e.run, tenantsFile, archiveListen)
	startMirroredShipper(t, ep, dir, topic, dlq, e.run, e.alias, crmYAML+archiveYAML)
	ap := proctest.Start(t, proctest.Build(t, filepath.Join(pipelinetest.Root, "shipper")),
		[]string{"archive", "--config", filepath.Join(dir, "shipper.yaml")}, filepath.Join(dir, "archiver.log"), "http://"+archiveListen+"/readyz")
	t.Cleanup(ap.Kill)
	t.Cleanup(func() {
		req, _ := http.NewRequest(http.MethodDelete, ep.ElasticsearchURL+"/"+e.reviews, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	})

	audCfg := fmt.Sprintf(`reviews_index: %s
mirrors:
  - urls: [%q]
    store: opensearch
pii:
  hash_secret: %s
loki:
  url: %s
  labels: {app: assistlog-test, deployment: %s}
kafka:
  brokers: [%q]
  links_topic: %s
archive:
  s3: {endpoint: %q, region: %s, bucket: %s, prefix: %s, access_key: %s, secret_key: %s, path_style: true}
`, e.reviews, ep.OpenSearchURL, pipelineSecret, ep.LokiURL, e.deployment, ep.KafkaBrokers, e.links,
		ep.S3.URL, ep.S3.Region, ep.S3.Bucket, prefix, ep.S3.AccessKey, ep.S3.SecretKey)
	e.config = writeConfig(t, ep.ElasticsearchURL, e.alias, audCfg)
	pol, err := errpolicy.New(errpolicy.DefaultConfig(), discardLogger(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if e.archive, err = archive.NewStore(archive.StoreConfig{Endpoint: ep.S3.URL, Region: ep.S3.Region, Bucket: ep.S3.Bucket,
		Prefix: prefix, AccessKey: ep.S3.AccessKey, SecretKey: ep.S3.SecretKey, PathStyle: true, PartSize: 16 << 20}, pol); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		keys, _ := e.archive.List(context.Background(), e.archive.Key(""))
		for _, k := range keys {
			e.archive.Delete(context.Background(), k)
		}
	})

	// Everything shipped: both stores, every CRM link answered, the
	// archive whole, Loki holding what it accepts.
	waitStored(t, stacktest.SearchStores(t), e.alias, len(evs))
	stacktest.Eventually(t, 3*time.Minute, "CRM links answered", func() error {
		http.Post(e.es+"/"+e.alias+"/_refresh", "application/json", nil)
		if n := count(t, e.es, e.alias, "crm_status:pending"); n > 0 {
			return fmt.Errorf("%d events still pending", n)
		}
		return nil
	})
	stacktest.Eventually(t, 3*time.Minute, "archive", func() error {
		if n := len(e.archiveRows(t)); n != len(evs) {
			return fmt.Errorf("%d of %d rows", n, len(evs))
		}
		return nil
	})
	e.lokiFrom = time.Now().Add(-7*24*time.Hour + time.Hour)
	return e
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func digitsOf(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// archiveRows reads every row of the test's archive prefix.
func (e *eraseEnv) archiveRows(t *testing.T) []archive.Row {
	t.Helper()
	ctx := context.Background()
	keys, err := e.archive.List(ctx, e.archive.Key(""))
	if err != nil {
		t.Fatal(err)
	}
	var rows []archive.Row
	for _, k := range keys {
		if !strings.HasSuffix(k, ".parquet") {
			continue
		}
		b, err := e.archive.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		rs, err := archive.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, rs...)
	}
	return rows
}

// personLucene matches the person in a store, as an auditor would search.
func (e *eraseEnv) personLucene() string {
	return fmt.Sprintf(`tenant:%q AND (session_id:(%q OR %q) OR user_phone_hash:%q)`, e.tenant, e.sessions[0], e.sessions[1], e.hash)
}

// lokiQuery is the deployment's lines of the person's conversations.
func (e *eraseEnv) lokiPerson() string {
	return fmt.Sprintf("sum(count_over_time({deployment=%q, tenant=%q} | session_id=~`%s|%s` [7d]))", e.deployment, e.tenant, e.sessions[0], e.sessions[1])
}

// lokiBySession counts the deployment's Loki lines per tenant/session.
func (e *eraseEnv) lokiBySession(t *testing.T) map[string]int {
	t.Helper()
	q := fmt.Sprintf("sum by (tenant, session_id) (count_over_time({deployment=%q} [7d]))", e.deployment)
	resp, err := http.Get(e.loki + "/loki/api/v1/query?" + url.Values{"query": {q}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || r.Status != "success" {
		t.Fatalf("loki %s: %v %s", q, err, r.Status)
	}
	out := map[string]int{}
	for _, s := range r.Data.Result {
		var n int
		fmt.Sscan(fmt.Sprint(s.Value[1]), &n)
		out[s.Metric["tenant"]+"/"+s.Metric["session_id"]] = n
	}
	return out
}

// storeBySession counts a store's documents per tenant/session.
func storeBySession(t *testing.T, es, alias string) map[string]int {
	t.Helper()
	body := `{"size":0,"aggs":{"t":{"terms":{"field":"tenant","size":100},"aggs":{"s":{"terms":{"field":"session_id","size":10000}}}}}}`
	http.Post(es+"/"+alias+"/_refresh", "application/json", nil)
	resp, err := http.Post(es+"/"+alias+"/_search", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Aggregations struct {
			T struct {
				Buckets []struct {
					Key string `json:"key"`
					S   struct {
						Buckets []struct {
							Key   string `json:"key"`
							Count int    `json:"doc_count"`
						} `json:"buckets"`
					} `json:"s"`
				} `json:"buckets"`
			} `json:"t"`
		} `json:"aggregations"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, tb := range r.Aggregations.T.Buckets {
		for _, sb := range tb.S.Buckets {
			out[tb.Key+"/"+sb.Key] = sb.Count
		}
	}
	return out
}

// linkState reads the links topic: the latest record per key (true: a
// tombstone) and the tenant/session header of each key.
func (e *eraseEnv) linkState(t *testing.T) (map[string]bool, map[string]string) {
	t.Helper()
	tomb, sess := map[string]bool{}, map[string]string{}
	for _, m := range stacktest.ReadTopic(t, stacktest.Require(t, stacktest.Kafka).KafkaBrokers, e.links) {
		tomb[string(m.Key)] = m.Value == nil
		for _, h := range m.Headers {
			if h.Key == "assistlog-session" {
				sess[string(m.Key)] = string(h.Value)
			}
		}
	}
	return tomb, sess
}

// personKeys are the link keys of the person's conversations.
func (e *eraseEnv) personKeys(sess map[string]string) []string {
	var out []string
	for k, s := range sess {
		if e.mine[s] {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func (e *eraseEnv) erase(t *testing.T, args ...string) (*Receipt, string, error) {
	t.Helper()
	dir := t.TempDir()
	rp := filepath.Join(dir, "receipt.json")
	all := append([]string{"erase", "--config", e.config, "--tenant", e.tenant, "--operator", "test-dpo", "--receipt", rp, "--format", "json"}, args...)
	stdout, stderr, err := runAudit(t, all...)
	t.Logf("audit %s\nstderr:\n%s", strings.Join(all, " "), stderr)
	if err != nil {
		return nil, stderr, err
	}
	rec, jerr := readReceipt([]byte(stdout))
	if jerr != nil {
		t.Fatalf("stdout is not a receipt: %v\n%s", jerr, stdout)
	}
	file, ferr := os.ReadFile(rp)
	if ferr != nil || !bytes.Equal(bytes.TrimSpace(file), bytes.TrimSpace([]byte(stdout))) {
		t.Errorf("--receipt file differs from stdout (%v)", ferr)
	}
	md, merr := os.ReadFile(filepath.Join(dir, "receipt.md"))
	if merr != nil || !strings.Contains(string(md), rec.RequestID) {
		t.Errorf("markdown receipt: %v", merr)
	}
	if !rec.DryRun {
		t.Logf("receipt.md:\n%s", md)
	}
	for _, out := range []string{stdout, string(md), stderr} {
		for _, raw := range []string{e.phone, digitsOf(e.phone)} {
			if strings.Contains(out, raw) {
				t.Errorf("the raw number %s is in the output or receipt", raw)
			}
		}
	}
	return rec, stderr, nil
}

// TestEraseByPhone: a customer with two conversations is erased by phone
// number from Elasticsearch, OpenSearch, the reviews index, Loki, the CRM
// links topic and the Parquet archive; afterwards neither the project's
// own commands nor the stores' APIs find anything of theirs, everyone
// else's data is exactly as shipped, and the dry run before counted the
// same and deleted nothing.
func TestEraseByPhone(t *testing.T) {
	e := newEraseEnv(t, 40)
	t.Logf("person: tenant %s, sessions %v, %d events, hash %s", e.tenant, e.sessions, e.personEvents, e.hash)
	other := ""
	for k := range e.othersBySession {
		if strings.HasPrefix(k, e.tenant+"/") {
			other = strings.SplitN(k, "/", 2)[1]
			break
		}
	}
	mapping, _ := json.Marshal(reviewIndexMapping)
	req, _ := http.NewRequest(http.MethodPut, e.es+"/"+e.reviews, bytes.NewReader(mapping))
	req.Header.Set("Content-Type", "application/json")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode >= 300 {
		t.Fatalf("reviews index: %v %v", err, resp.Status)
	} else {
		resp.Body.Close()
	}
	for _, s := range []string{e.sessions[0], other} {
		id := url.PathEscape("2026-W48/" + e.tenant + "/" + s)
		req, _ := http.NewRequest(http.MethodPut, e.es+"/"+e.reviews+"/_doc/"+id+"?refresh=true",
			strings.NewReader(fmt.Sprintf(`{"week":"2026-W48","tenant":%q,"session_id":%q,"cause":"nlp_miss"}`, e.tenant, s)))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode >= 300 {
			t.Fatalf("review label: %v %v", err, resp.Status)
		}
		resp.Body.Close()
	}

	// Before: what the stores hold, measured.
	stores := stacktest.SearchStores(t)
	for _, st := range stores {
		if n := count(t, st.URL, e.alias, e.personLucene()); n != e.personEvents {
			t.Fatalf("%s holds %d of the person's events before, generated %d", st.Name, n, e.personEvents)
		}
	}
	lokiBefore := e.lokiBySession(t)
	lokiPerson := 0
	for k, n := range lokiBefore {
		if e.mine[k] {
			lokiPerson += n
		}
	}
	if lokiPerson == 0 {
		t.Fatal("Loki holds none of the person's lines: the test would prove nothing")
	}
	tombBefore, sess := e.linkState(t)
	keys := e.personKeys(sess)
	if len(keys) < 2 {
		t.Fatalf("links topic holds %d keys of the person's conversations; want at least one per conversation", len(keys))
	}
	archiveBefore := 0
	for _, r := range e.archiveRows(t) {
		if e.mine[e.tenant+"/"+r.SessionID] {
			archiveBefore++
		}
	}
	if archiveBefore != e.personEvents {
		t.Fatalf("archive holds %d of the person's events, generated %d", archiveBefore, e.personEvents)
	}

	// Dry run: counts, deletes nothing.
	phone := "8" + digitsOf(e.phone)[1:] // the domestic form: the same number to the shipper
	dry, _, err := e.erase(t, "--phone", phone, "--dry-run")
	if err != nil {
		t.Fatal(err)
	}
	if !dry.DryRun {
		t.Error("dry-run receipt not marked dry_run")
	}
	e.checkCounts(t, "dry run", dry, lokiPerson, len(keys))
	for _, st := range stores {
		if n := count(t, st.URL, e.alias, e.personLucene()); n != e.personEvents {
			t.Errorf("dry run deleted from %s: %d of %d left", st.Name, n, e.personEvents)
		}
	}
	if n := stacktest.LokiScalar(t, e.loki, e.lokiPerson()); n != lokiPerson {
		t.Errorf("dry run changed Loki: %d of %d lines", n, lokiPerson)
	}
	tombDry, _ := e.linkState(t)
	for _, k := range keys {
		if tombDry[k] {
			t.Errorf("dry run wrote a tombstone for %s", k)
		}
	}
	if req := lokiRequests(t, e.loki, e.deployment); req != 0 {
		t.Errorf("dry run made %d Loki deletion request(s)", req)
	}

	// The erasure.
	rec, _, err := e.erase(t, "--phone", e.phone, "--wait", "4m")
	if err != nil {
		t.Fatal(err)
	}
	if rec.DryRun {
		t.Error("receipt marked dry run")
	}
	e.checkCounts(t, "erasure", rec, lokiPerson, len(keys))
	if !equalStrings(rec.Subject.Sessions, e.sessions) || !equalStrings(rec.Subject.PhoneHashes, []string{e.hash}) {
		t.Errorf("receipt subject %+v; want sessions %v, hash %s", rec.Subject, e.sessions, e.hash)
	}
	for i, s := range rec.Stores {
		d := dry.Stores[i]
		if s.Matched != d.Matched || s.What != d.What || s.Store != d.Store {
			t.Errorf("store %d: dry run %+v, erasure %+v", i, d, s)
		}
		if s.Deleted != s.Matched || s.Remaining != 0 {
			t.Errorf("%s %s: matched %d, deleted %d, remaining %d", s.Store, s.Index, s.Matched, s.Deleted, s.Remaining)
		}
	}
	if dry.Loki.Lines != rec.Loki.Lines || len(dry.Links.Keys) != len(rec.Links.Keys) || dry.Archive.Rows != rec.Archive.Rows {
		t.Errorf("dry run counted loki %d, links %d, archive %d; erasure %d, %d, %d", dry.Loki.Lines, len(dry.Links.Keys),
			dry.Archive.Rows, rec.Loki.Lines, len(rec.Links.Keys), rec.Archive.Rows)
	}
	if rec.Loki.RequestID == "" || rec.Loki.Status != "processed" {
		t.Errorf("loki request %q status %q; want processed within the wait", rec.Loki.RequestID, rec.Loki.Status)
	}
	if rec.Bitrix24.Touched || len(rec.Bitrix24.CRMIDs) == 0 {
		t.Errorf("bitrix24 note %+v: untouched, listing the person's leads", rec.Bitrix24)
	}

	// Nothing of theirs through the stores' APIs.
	for _, st := range stores {
		if n := count(t, st.URL, e.alias, e.personLucene()); n != 0 {
			t.Errorf("%s still holds %d of the person's events", st.Name, n)
		}
		if n := count(t, st.URL, e.alias, fmt.Sprintf("user_phone_hash:%q", e.hash)); n != 0 {
			t.Errorf("%s still holds the phone hash in %d events", st.Name, n)
		}
	}
	if n := count(t, e.es, e.reviews, fmt.Sprintf("session_id:%q", e.sessions[0])); n != 0 {
		t.Errorf("the person's review label is still there (%d)", n)
	}
	if n := count(t, e.es, e.reviews, fmt.Sprintf("session_id:%q", other)); n != 1 {
		t.Errorf("another conversation's review label: %d, want 1", n)
	}
	stacktest.Eventually(t, 3*time.Minute, "Loki hides the person's lines", func() error {
		if n := stacktest.LokiScalar(t, e.loki, e.lokiPerson()); n != 0 {
			return fmt.Errorf("%d lines still found", n)
		}
		return nil
	})
	tombAfter, _ := e.linkState(t)
	for _, k := range keys {
		if !tombAfter[k] {
			t.Errorf("the latest record of link %s is not a tombstone", k)
		}
	}
	for k, was := range tombBefore {
		if !was && !contains(keys, k) && tombAfter[k] {
			t.Errorf("link %s of someone else got a tombstone", k)
		}
	}
	archiveOthers := map[string]int{}
	for _, r := range e.archiveRows(t) {
		if e.mine[e.tenant+"/"+r.SessionID] {
			t.Errorf("archive still holds %s of %s", r.EventID, r.SessionID)
			continue
		}
		archiveOthers[r.SessionID]++
	}

	// Everyone else: exactly as generated.
	for _, st := range stores {
		got := storeBySession(t, st.URL, e.alias)
		if !equalCounts(got, e.othersBySession) {
			t.Errorf("%s: other people's events per conversation changed:\n got %v\nwant %v", st.Name, got, e.othersBySession)
		}
	}
	lokiAfter := e.lokiBySession(t)
	for k, n := range lokiBefore {
		if !e.mine[k] && lokiAfter[k] != n {
			t.Errorf("loki: %s had %d lines, now %d", k, n, lokiAfter[k])
		}
	}
	wantArchive := map[string]int{}
	for k, n := range e.othersBySession {
		wantArchive[strings.SplitN(k, "/", 2)[1]] += n
	}
	if !equalCounts(archiveOthers, wantArchive) {
		t.Errorf("archive: other people's rows per conversation changed:\n got %v\nwant %v", archiveOthers, wantArchive)
	}

	// Nothing through the project's own commands.
	from, to := e.first.Add(-48*time.Hour).Format(time.RFC3339), time.Now().Add(time.Hour).Format(time.RFC3339)
	for _, st := range stores {
		for _, s := range e.sessions {
			r := auditJSON(t, "conversation", "--es", st.URL, "--alias", e.alias, "--from", from, "--to", to, "--session", s)
			if r.Total != 0 {
				t.Errorf("audit query conversation %s on %s: %d events", s, st.Name, r.Total)
			}
		}
	}
	for _, s := range e.sessions {
		if out, _, err := runAudit(t, "conversation", "--config", e.config, "--tenant", e.tenant, s); err == nil {
			t.Errorf("audit conversation %s still replays:\n%s", s, out)
		}
		out, _, err := runAudit(t, "consent", "--config", e.config, "--tenant", e.tenant, "--session", s, "--format", "json")
		if err == nil && strings.Contains(out, s) {
			t.Errorf("audit consent --session %s still finds it:\n%s", s, out)
		}
	}
	out, _, err := runAudit(t, "export", "events", "--config", e.config, "--tenant", e.tenant, "--last", "8d", "--format", "json")
	if err != nil {
		t.Fatal(err)
	}
	var exported []map[string]any
	if err := json.Unmarshal([]byte(out), &exported); err != nil {
		t.Fatalf("export: %v", err)
	}
	wantTenant := 0
	for k, n := range e.othersBySession {
		if strings.HasPrefix(k, e.tenant+"/") {
			wantTenant += n
		}
	}
	if len(exported) != wantTenant {
		t.Errorf("audit export events of %s: %d rows, want the others' %d", e.tenant, len(exported), wantTenant)
	}
	for _, needle := range append([]string{e.hash}, e.sessions...) {
		if strings.Contains(out, needle) {
			t.Errorf("audit export events still has %s", needle)
		}
	}

	// Again: nothing left to find is its own answer.
	if _, _, err := e.erase(t, "--phone", e.phone); exitCode(err) != exitNothingFound {
		t.Errorf("second erasure: %v (exit %d); want exit %d, nothing found", err, exitCode(err), exitNothingFound)
	}

	// A conversation given by id, in another tenant, without a number.
	var pick []string
	for k := range e.othersBySession {
		if !strings.HasPrefix(k, e.tenant+"/") {
			pick = append(pick, k)
		}
	}
	sort.Strings(pick)
	tenant2, session2, _ := strings.Cut(pick[0], "/")
	out, stderr, err := runAudit(t, "erase", "--config", e.config, "--tenant", tenant2, "--session", session2, "--operator", "test-dpo")
	t.Logf("audit erase --tenant %s --session %s\n%s%s", tenant2, session2, out, stderr)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "not touched") {
		t.Errorf("the summary does not say Bitrix24 was not touched:\n%s", out)
	}
	rest := map[string]int{}
	for k, n := range e.othersBySession {
		if k != pick[0] {
			rest[k] = n
		}
	}
	for _, st := range stores {
		if got := storeBySession(t, st.URL, e.alias); !equalCounts(got, rest) {
			t.Errorf("%s after erasing %s: got %v\nwant %v", st.Name, pick[0], got, rest)
		}
	}
	for _, r := range e.archiveRows(t) {
		if r.SessionID == session2 {
			t.Errorf("archive still holds %s of %s", r.EventID, session2)
		}
	}
}

// checkCounts compares a receipt's counts with the ground truth.
func (e *eraseEnv) checkCounts(t *testing.T, what string, rec *Receipt, lokiLines, linkKeys int) {
	t.Helper()
	var events, reviews int
	for _, s := range rec.Stores {
		switch s.What {
		case "events":
			events++
			if s.Matched != e.personEvents {
				t.Errorf("%s: %s matched %d events, generated %d", what, s.Store, s.Matched, e.personEvents)
			}
		case "review labels":
			if s.Store == "elasticsearch" {
				reviews += s.Matched
			}
		}
	}
	if events != 2 {
		t.Errorf("%s: %d event stores in the receipt, want elasticsearch and opensearch", what, events)
	}
	if reviews != 1 {
		t.Errorf("%s: %d review labels, want 1", what, reviews)
	}
	if rec.Loki.Lines != lokiLines {
		t.Errorf("%s: loki %d lines, Loki held %d", what, rec.Loki.Lines, lokiLines)
	}
	if len(rec.Links.Keys) != linkKeys {
		t.Errorf("%s: %d link keys %v, the topic has %d", what, len(rec.Links.Keys), rec.Links.Keys, linkKeys)
	}
	if rec.Archive.Rows != e.personEvents {
		t.Errorf("%s: archive %d rows, generated %d", what, rec.Archive.Rows, e.personEvents)
	}
}

// lokiRequests counts Loki deletion requests naming the deployment.
func lokiRequests(t *testing.T, base, deployment string) int {
	t.Helper()
	resp, err := http.Get(base + "/loki/api/v1/delete")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.Count(string(b), deployment)
}

// TestEraseRefusals: an unknown tenant, a number nobody has and an unknown
// conversation are errors with their own exit status; nothing is asked of
// the stores for the first.
func TestEraseRefusals(t *testing.T) {
	ep := stacktest.Require(t, stacktest.Elasticsearch)
	p := writeConfig(t, ep.ElasticsearchURL, "test-erase-none", "pii:\n  hash_secret: "+pipelineSecret+"\n")
	_, _, err := runAudit(t, "erase", "--config", p, "--tenant", "salon-nowhere", "--phone", "+79161234567", "--operator", "x")
	if err == nil || !strings.Contains(err.Error(), `unknown tenant "salon-nowhere"`) {
		t.Errorf("unknown tenant: %v", err)
	}
	_, _, err = runAudit(t, "erase", "--config", p, "--tenant", "salon-aurora", "--phone", "+79160000000", "--operator", "x")
	if exitCode(err) != exitNothingFound || !strings.Contains(err.Error(), "nothing of the phone number given found in tenant salon-aurora") {
		t.Errorf("no such person: %v (exit %d)", err, exitCode(err))
	}
	_, _, err = runAudit(t, "erase", "--config", p, "--tenant", "salon-aurora", "--session", "sgd-x_404", "--operator", "x")
	if exitCode(err) != exitNothingFound || !strings.Contains(err.Error(), "sgd-x_404") {
		t.Errorf("unknown session: %v (exit %d)", err, exitCode(err))
	}
	_, _, err = runAudit(t, "erase", "--config", p, "--tenant", "salon-aurora", "--phone", "12", "--operator", "x")
	if err == nil || !strings.Contains(err.Error(), "not a phone number") {
		t.Errorf("bad number: %v", err)
	}
	_, _, err = runAudit(t, "erase", "--config", p, "--phone", "+79161234567")
	if err == nil || !strings.Contains(err.Error(), "--tenant is required") {
		t.Errorf("no tenant: %v", err)
	}
}

// TestEraseExampleConfig: the example's erase sections load and validate.
func TestEraseExampleConfig(t *testing.T) {
	t.Setenv("ASSISTLOG_PII_SECRET", "0123456789abcdef0123")
	cfg, err := LoadConfig("audit.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.eraseSettings(); err != nil {
		t.Fatal(err)
	}
	if cfg.Kafka.LinksTopic != "assistant.crm-links" || cfg.Loki.Labels["app"] != "assistlog" {
		t.Errorf("defaults: %+v %+v", cfg.Kafka, cfg.Loki)
	}
	bad := cfg
	bad.Loki.URL, bad.Loki.Labels = "127.0.0.1:13100", map[string]string{"tenant": "x"}
	bad.Kafka = EraseKafkaConfig{Brokers: []string{"127.0.0.1:19092"}}
	err = bad.eraseSettings()
	for _, want := range []string{"loki.url: must be http(s)", "loki.labels: tenant is set per request", "kafka.links_topic: required"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q in %v", want, err)
		}
	}
}

func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if err != nil {
		return 1
	}
	return 0
}

func equalStrings(a, b []string) bool {
	return strings.Join(a, "\x00") == strings.Join(b, "\x00")
}

func equalCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
