package elastic

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/assistlog/assistlog/internal/errpolicy"
	"github.com/assistlog/assistlog/internal/stacktest"
)

func testPolicy(t *testing.T) *errpolicy.Policy {
	t.Helper()
	p, err := errpolicy.New(errpolicy.Config{RetryMin: 100 * time.Millisecond, RetryMax: time.Second, PauseInterval: time.Second},
		slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// eachStore runs a test against a fresh alias on Elasticsearch and on
// OpenSearch: the writer must behave the same on both (issue 16).
func eachStore(t *testing.T, test func(*testing.T, *Writer)) {
	for _, st := range stacktest.SearchStores(t) {
		t.Run(st.Name, func(t *testing.T) { test(t, storeWriter(t, st.URL, st.Name)) })
	}
}

func newWriter(t *testing.T) *Writer {
	t.Helper()
	ep := stacktest.Require(t, stacktest.Elasticsearch)
	return storeWriter(t, ep.ElasticsearchURL, StoreElasticsearch)
}

func storeWriter(t *testing.T, url, store string) *Writer {
	t.Helper()
	cfg := DefaultConfig()
	cfg.URLs, cfg.Store = []string{url}, store
	cfg.Alias = fmt.Sprintf("test-events-%d", time.Now().UnixNano())
	w, err := New(cfg, testPolicy(t), slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Setup(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.es.Indices.Delete([]string{cfg.Alias + "-*"})
		w.es.Indices.DeleteIndexTemplate(cfg.Alias)
	})
	return w
}

func doc(w *Writer, id, ts, extra string) Doc {
	tm, _ := time.Parse(time.RFC3339, ts)
	return Doc{Action: "create", Index: w.IndexFor(tm), ID: id,
		Body: []byte(`{"@timestamp":"` + ts + `","event_id":"` + id + `","event_type":"appointment.confirmed","tenant":"salon-aurora"` + extra + `}`)}
}

// search runs a query_string query through the alias and returns the ids.
func search(t *testing.T, w *Writer, q string) []string {
	t.Helper()
	if err := w.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`{"size":1000,"query":{"query_string":{"query":%q}}}`, q)
	res, err := w.es.Search(w.es.Search.WithIndex(w.Alias()), w.es.Search.WithBody(strings.NewReader(body)))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.IsError() {
		t.Fatalf("search: %s", res.String())
	}
	var r struct {
		Hits struct {
			Hits []struct {
				ID    string `json:"_id"`
				Index string `json:"_index"`
			} `json:"hits"`
		} `json:"hits"`
	}
	json.NewDecoder(res.Body).Decode(&r)
	var ids []string
	for _, h := range r.Hits.Hits {
		ids = append(ids, h.ID)
	}
	sort.Strings(ids)
	return ids
}

func TestWriteIsIdempotentAndMonthly(t *testing.T) { eachStore(t, testWriteIsIdempotentAndMonthly) }

func testWriteIsIdempotentAndMonthly(t *testing.T, w *Writer) {
	ctx := context.Background()
	docs := []Doc{
		doc(w, "e1", "2026-10-31T23:30:00+03:00", ""), // October in Moscow, still October in UTC
		doc(w, "e2", "2026-11-01T01:30:00+03:00", ""), // November in Moscow, October in UTC
		doc(w, "e3", "2026-11-20T10:00:00+03:00", ""),
	}
	if f, err := w.Write(ctx, docs); err != nil || len(f) != 0 {
		t.Fatalf("write: %v %v", f, err)
	}
	// A replay (a crash before the Kafka commit) writes nothing twice.
	if f, err := w.Write(ctx, docs); err != nil || len(f) != 0 {
		t.Fatalf("replay: %v %v", f, err)
	}
	ids := search(t, w, "event_type:appointment.confirmed AND tenant:salon-aurora")
	if len(ids) != 3 {
		t.Fatalf("alias holds %v, want e1 e2 e3 once each", ids)
	}
	if got := search(t, w, "event.action:appointment.confirmed"); len(got) != 3 {
		t.Errorf("ECS alias event.action finds %d", len(got))
	}
	res, _ := w.es.Cat.Indices(w.es.Cat.Indices.WithIndex(w.Alias()+"-*"), w.es.Cat.Indices.WithH("index"))
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, want := range []string{w.Alias() + "-2026.10", w.Alias() + "-2026.11"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("index %s missing; have %s", want, b)
		}
	}
}

// TestMappingConflictIsReturned: a document Elasticsearch cannot parse
// comes back with its reason; the rest of the batch is written.
func TestMappingConflictIsReturned(t *testing.T) { eachStore(t, testMappingConflictIsReturned) }

func testMappingConflictIsReturned(t *testing.T, w *Writer) {
	docs := []Doc{
		doc(w, "ok1", "2026-11-20T10:00:00+03:00", `,"payload":{"starts_at":"2026-11-22T14:00:00+03:00"}`),
		doc(w, "bad", "2026-11-20T10:00:01+03:00", `,"payload":{"starts_at":"next Friday"}`),
		doc(w, "ok2", "2026-11-20T10:00:02+03:00", `,"confidence":0.4`),
	}
	f, err := w.Write(context.Background(), docs)
	if err != nil {
		t.Fatal(err)
	}
	if len(f) != 1 || f[0].Doc.ID != "bad" || f[0].Status != 400 || !strings.Contains(f[0].Reason, "payload.starts_at") {
		t.Fatalf("failures = %+v", f)
	}
	if ids := search(t, w, "*"); len(ids) != 2 {
		t.Errorf("indexed %v, want ok1 and ok2", ids)
	}
}

func TestUpdateFillsFields(t *testing.T) { eachStore(t, testUpdateFillsFields) }

func testUpdateFillsFields(t *testing.T, w *Writer) {
	d := doc(w, "u1", "2026-11-20T10:00:00+03:00", `,"crm_status":"unresolved"`)
	if _, err := w.Write(context.Background(), []Doc{d}); err != nil {
		t.Fatal(err)
	}
	upd := Doc{Action: "update", Index: d.Index, ID: "u1", Body: []byte(`{"doc":{"crm_id":"4711","crm_status":"resolved"}}`)}
	if f, err := w.Write(context.Background(), []Doc{upd}); err != nil || len(f) != 0 {
		t.Fatalf("update: %v %v", f, err)
	}
	if ids := search(t, w, "crm_id:4711 AND crm_status:resolved"); len(ids) != 1 {
		t.Errorf("updated document not found: %v", ids)
	}
	missing := Doc{Action: "update", Index: d.Index, ID: "nope", Body: []byte(`{"doc":{"crm_id":"1"}}`)}
	if f, _ := w.Write(context.Background(), []Doc{missing}); len(f) != 1 || f[0].Status != 404 {
		t.Errorf("update of a missing document: %+v", f)
	}
}

// TestFillSession: the documents of one conversation that lack the CRM id
// get it (across monthly indices); other conversations and documents that
// have one are left alone.
func TestFillSession(t *testing.T) { eachStore(t, testFillSession) }

func testFillSession(t *testing.T, w *Writer) {
	docs := []Doc{
		doc(w, "f1", "2026-10-31T23:59:00+03:00", `,"session_id":"s1"`),
		doc(w, "f2", "2026-11-01T10:00:00+03:00", `,"session_id":"s1"`),
		doc(w, "f3", "2026-11-01T10:01:00+03:00", `,"session_id":"s1","crm_id":"9"`),
		doc(w, "f4", "2026-11-01T10:02:00+03:00", `,"session_id":"s2"`),
	}
	if _, err := w.Write(context.Background(), docs); err != nil {
		t.Fatal(err)
	}
	n, err := w.FillSession(context.Background(), "salon-aurora", "s1", "crm_id", map[string]any{"crm_id": "4711", "crm_status": "resolved"})
	if err != nil || n != 2 {
		t.Fatalf("filled %d (%v), want 2", n, err)
	}
	if ids := search(t, w, "crm_id:4711 AND crm_status:resolved"); len(ids) != 2 {
		t.Errorf("filled documents: %v, want f1 f2", ids)
	}
	if ids := search(t, w, "crm_id:9 OR (session_id:s2 AND NOT crm_id:*)"); len(ids) != 2 {
		t.Errorf("documents that should be untouched: %v, want f3 f4", ids)
	}
	if n, err := w.FillSession(context.Background(), "salon-aurora", "s1", "crm_id", map[string]any{"crm_id": "4711"}); err != nil || n != 0 {
		t.Errorf("a second fill updated %d (%v), want 0", n, err)
	}
}

// TestWriteWaitsOutAnOutage stops the real Elasticsearch while a write is
// pending and starts it again: the write completes, nothing is lost.
func TestWriteWaitsOutAnOutage(t *testing.T) {
	w := newWriter(t)
	stacktest.DuringOutage(t, "elasticsearch", func() error {
		f, err := w.Write(context.Background(), []Doc{doc(w, "o1", "2026-11-20T10:00:00+03:00", ""), doc(w, "o2", "2026-11-20T10:00:01+03:00", "")})
		if err == nil && len(f) > 0 {
			err = fmt.Errorf("failures: %v", f)
		}
		return err
	})
	if ids := search(t, w, "*"); len(ids) != 2 {
		t.Errorf("after the outage the index holds %v", ids)
	}
}

// TestReplayedCreateFillsEnrichment: an event stored as crm_status pending
// and shipped again after its conversation's lead was found (a crash or a
// rebalance before the commit) is reported as existing, and its OnExists
// update brings the stored copy to resolved. Before, the create's 409
// counted as written and the document stayed pending for good.
func TestReplayedCreateFillsEnrichment(t *testing.T) { eachStore(t, testReplayedCreateFillsEnrichment) }

func testReplayedCreateFillsEnrichment(t *testing.T, w *Writer) {
	first := doc(w, "r1", "2026-11-20T10:00:00+03:00", `,"session_id":"s1","crm_status":"pending"`)
	other := doc(w, "r2", "2026-11-20T10:00:01+03:00", `,"session_id":"s1","crm_status":"pending"`)
	rep, err := w.WriteReport(context.Background(), []Doc{first, other})
	if err != nil || len(rep.Failures) != 0 || len(rep.Existing) != 0 {
		t.Fatalf("first write: %+v %v", rep, err)
	}
	replay := doc(w, "r1", "2026-11-20T10:00:00+03:00", `,"session_id":"s1","crm_status":"resolved","crm_id":"4711"`)
	replay.OnExists = []byte(`{"doc":{"crm_id":"4711","crm_status":"resolved"}}`)
	fresh := doc(w, "r3", "2026-11-20T10:00:02+03:00", `,"session_id":"s1","crm_status":"resolved","crm_id":"4711"`)
	fresh.OnExists = replay.OnExists
	rep, err = w.WriteReport(context.Background(), []Doc{replay, fresh})
	if err != nil || len(rep.Failures) != 0 {
		t.Fatalf("replay: %+v %v", rep, err)
	}
	if len(rep.Existing) != 1 || !rep.Existing["r1"] {
		t.Fatalf("existing = %v, want only r1", rep.Existing)
	}
	if ids := search(t, w, "crm_status:resolved AND crm_id:4711"); strings.Join(ids, ",") != "r1,r3" {
		t.Fatalf("resolved documents = %v, want r1 (filled on replay) and r3", ids)
	}
	if ids := search(t, w, "crm_status:pending"); strings.Join(ids, ",") != "r2" {
		t.Fatalf("pending documents = %v, want r2 (not replayed)", ids)
	}
}

// TestAttachmentsAreSearchable: the template maps a media message's
// attachments (schema v1), so an auditor finds voice notes by kind.
func TestAttachmentsAreSearchable(t *testing.T) { eachStore(t, testAttachmentsAreSearchable) }

func testAttachmentsAreSearchable(t *testing.T, w *Writer) {
	d := doc(w, "m1", "2026-11-20T10:00:00+03:00", `,"payload":{"attachments":[{"kind":"audio","id":"1234567890123456","mime_type":"audio/ogg; codecs=opus","caption":"голосовое"}]}`)
	if f, err := w.Write(context.Background(), []Doc{d, doc(w, "m2", "2026-11-20T10:00:01+03:00", `,"payload":{"text":"hi"}`)}); err != nil || len(f) != 0 {
		t.Fatalf("write: %v %v", f, err)
	}
	for q, want := range map[string]string{"payload.attachments.kind:audio": "m1", `payload.attachments.mime_type:"audio/ogg; codecs=opus"`: "m1",
		"payload.attachments.caption:голосовое": "m1"} {
		if ids := search(t, w, q); strings.Join(ids, ",") != want {
			t.Errorf("%s finds %v, want %s", q, ids, want)
		}
	}
}

// TestStoresWriteBoth: one write reaches Elasticsearch and OpenSearch,
// each under its own alias; a replay reports every event as existing and
// stores nothing twice; a document one store refuses comes back once.
func TestStoresWriteBoth(t *testing.T) {
	st := stacktest.SearchStores(t)
	es, os := storeWriter(t, st[0].URL, StoreElasticsearch), storeWriter(t, st[1].URL, StoreOpenSearch)
	both, err := NewStores(es, os)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	docs := []Doc{doc(es, "b1", "2026-11-20T10:00:00+03:00", ""), doc(es, "b2", "2026-12-01T10:00:00+03:00", ""),
		doc(es, "bad", "2026-11-20T10:00:01+03:00", `,"payload":{"starts_at":"next Friday"}`)}
	rep, err := both.WriteReport(ctx, docs)
	if err != nil || len(rep.Existing) != 0 || len(rep.Failures) != 1 || rep.Failures[0].Doc.ID != "bad" {
		t.Fatalf("first write: %+v %v, want only bad refused", rep, err)
	}
	rep, err = both.WriteReport(ctx, docs[:2])
	if err != nil || len(rep.Existing) != 2 {
		t.Fatalf("replay: %+v %v, want both existing", rep, err)
	}
	for _, w := range []*Writer{es, os} {
		if ids := search(t, w, "*"); strings.Join(ids, ",") != "b1,b2" {
			t.Errorf("%s alias %s holds %v, want b1,b2 once", w.Destination(), w.Alias(), ids)
		}
	}
}
