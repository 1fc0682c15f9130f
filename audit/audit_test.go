package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/assistlog/assistlog/dashboards"
	"github.com/assistlog/assistlog/demo"
	"github.com/assistlog/assistlog/internal/event"
	"github.com/assistlog/assistlog/internal/pipelinetest"
	"github.com/assistlog/assistlog/internal/proctest"
	"github.com/assistlog/assistlog/internal/stacktest"
	"github.com/assistlog/assistlog/stack"
)

// shipped generates events from n dialogues and ships them with the real
// shipper into a fresh alias, once, on Elasticsearch and on OpenSearch
// (mirrors:); it returns the events, the generator's truth, the stores and
// the alias. Tests run their checks on each store (onStores): every audit
// command reads either the same way (issue 16).
func shipped(t *testing.T, n int) ([]event.Event, *demo.Truth, []stacktest.SearchStore, string) {
	t.Helper()
	ep := stacktest.Require(t, stacktest.Kafka, stacktest.Elasticsearch, stacktest.OpenSearch, stacktest.Loki)
	stores := stacktest.SearchStores(t)
	cfg := demo.DefaultConfig()
	cfg.End = time.Now().UTC().Truncate(time.Minute)
	evs, truth, err := demo.FromShared(n, cfg)
	if err != nil {
		t.Fatal(err)
	}
	run := fmt.Sprintf("audit%d", time.Now().UnixNano()%1e9)
	topic, dlq, alias := "test-"+run, "test-dlq-"+run, "test-"+run
	stacktest.CreateTopics(t, ep.KafkaBrokers, map[string]int{topic: 3, dlq: 1})
	produce(t, ep.KafkaBrokers, topic, evs)
	startMirroredShipper(t, ep, t.TempDir(), topic, dlq, run, alias, "")
	waitStored(t, stores, alias, len(evs))
	return evs, truth, stores, alias
}

// produce writes evs to topic keyed by conversation, acknowledged by every
// in-sync replica.
func produce(t *testing.T, brokers, topic string, evs []event.Event) {
	t.Helper()
	w := &kafkago.Writer{Addr: kafkago.TCP(brokers), Topic: topic, Balancer: &kafkago.Hash{}, RequiredAcks: kafkago.RequireAll}
	defer w.Close()
	msgs := make([]kafkago.Message, 0, len(evs))
	for i := range evs {
		b, _ := evs[i].Marshal()
		msgs = append(msgs, kafkago.Message{Key: evs[i].Key(), Value: b})
	}
	if err := w.WriteMessages(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
}

// startMirroredShipper runs the real shipper from topic into alias on
// Elasticsearch with OpenSearch as its mirror (plus extraYAML), and drops
// both stores' indices at cleanup.
func startMirroredShipper(t *testing.T, ep stack.Endpoints, dir, topic, dlq, run, alias, extraYAML string) *proctest.Process {
	t.Helper()
	p := pipelinetest.StartShipper(t, ep, pipelinetest.Shipper{Dir: dir, Topic: topic, DLQ: dlq, Group: run, Alias: alias,
		Labels:    "{app: assistlog-test, deployment: " + run + "}",
		ExtraYAML: extraYAML + fmt.Sprintf("mirrors:\n  - urls: [%q]\n    store: opensearch\n", ep.OpenSearchURL)})
	pipelinetest.DropIndicesAtCleanup(t, ep, alias)
	t.Cleanup(func() {
		req, _ := http.NewRequest(http.MethodDelete, ep.OpenSearchURL+"/"+alias+"-*", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	})
	return p
}

// waitStored waits until every store holds want documents in alias.
func waitStored(t *testing.T, stores []stacktest.SearchStore, alias string, want int) {
	t.Helper()
	for _, st := range stores {
		stacktest.Eventually(t, 3*time.Minute, "events in "+st.Name, func() error {
			http.Post(st.URL+"/"+alias+"/_refresh", "application/json", nil)
			if n := count(t, st.URL, alias, "*"); n != want {
				return fmt.Errorf("%d of %d", n, want)
			}
			return nil
		})
	}
}

// onStores runs a test's checks once per store, as a subtest named after
// it, with that store's URL.
func onStores(t *testing.T, stores []stacktest.SearchStore, checks func(t *testing.T, es string)) {
	for _, st := range stores {
		t.Run(st.Name, func(t *testing.T) { checks(t, st.URL) })
	}
}

// count runs a Lucene string through Elasticsearch's query_string query, as
// Kibana does with a saved search.
func count(t *testing.T, es, alias, lucene string) int {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": map[string]any{"query_string": map[string]any{"query": lucene}}})
	var resp *http.Response
	// A monthly index the shipper has just created answers 503
	// no_shard_available until its primary shard is started (seen under
	// the full suite's load): asked again for a while, not failed.
	for attempt := 0; ; attempt++ {
		var err error
		resp, err = http.Post(es+"/"+alias+"/_count", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusServiceUnavailable || attempt == 60 {
			break
		}
		resp.Body.Close()
		time.Sleep(500 * time.Millisecond)
	}
	defer resp.Body.Close()
	var r struct {
		Count int `json:"count"`
	}
	if resp.StatusCode == http.StatusNotFound {
		return 0
	}
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &r); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("count %q: HTTP %d %s", lucene, resp.StatusCode, b)
	}
	return r.Count
}

// auditJSON runs the command and decodes its JSON output.
func auditJSON(t *testing.T, args ...string) Result {
	t.Helper()
	var out, errOut bytes.Buffer
	if err := run(context.Background(), append([]string{"query"}, append(args, "--format", "json")...), &out, &errOut); err != nil {
		t.Fatalf("audit %v: %v\n%s", args, err, errOut.String())
	}
	var r Result
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("audit %v: %v\n%s", args, err, out.String())
	}
	return r
}

// TestSavedQueriesMatchGroundTruth: every saved search of the Kibana file,
// run as Kibana would (query_string on the alias) and through `audit
// query`, counts exactly what the generator made.
func TestSavedQueriesMatchGroundTruth(t *testing.T) {
	evs, truth, stores, alias := shipped(t, 150)
	onStores(t, stores, func(t *testing.T, es string) {
		session := evs[0].SessionID
		inSession := 0
		for _, e := range evs {
			if e.SessionID == session && e.Tenant == evs[0].Tenant {
				inSession++
			}
		}
		want := map[string]int{
			"appointments-confirmed": truth.ByType[string(event.AppointmentConfirmed)],
			"leads-created":          truth.ByType[string(event.LeadCreated)],
			"errors":                 truth.ByLevel["error"],
			"complaints":             truth.ByType[string(event.ComplaintReceived)],
			"low-confidence":         truth.LowConfidence,
			"conversation":           inSession,
		}
		all, err := dashboards.SavedSearches()
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != len(want) {
			t.Fatalf("%d saved searches, the test knows %d", len(all), len(want))
		}
		from, to := truth.First.Add(-time.Minute).Format(time.RFC3339), truth.Last.Add(time.Minute).Format(time.RFC3339)
		for _, s := range all {
			exp, ok := want[s.Name]
			if !ok {
				t.Errorf("saved search %s has no expected count", s.Name)
				continue
			}
			if exp == 0 {
				t.Errorf("%s: the generated data has none; the test would prove nothing", s.Name)
			}
			lucene, err := s.QueryWith(map[string]string{"session_id": session})
			if err != nil {
				t.Fatal(err)
			}
			if n := count(t, es, alias, lucene); n != exp {
				t.Errorf("Kibana's %s (%s) counts %d, ground truth %d", s.Name, lucene, n, exp)
			}
			r := auditJSON(t, s.Name, "--es", es, "--alias", alias, "--from", from, "--to", to, "--session", session, "--limit", "10000")
			if r.Total != exp || len(r.Events) != exp {
				t.Errorf("audit query %s: total %d, %d events; ground truth %d", s.Name, r.Total, len(r.Events), exp)
			}
			t.Logf("%-24s %-38s %d", s.Name, lucene, exp)
		}

		// One tenant, one day: the filters of the command, against the data.
		var last event.Event
		for _, e := range evs {
			if e.Type == event.AppointmentConfirmed && e.Time().After(last.Time()) {
				last = e
			}
		}
		tenant, day := last.Tenant, last.Time().UTC()
		lo := time.Date(day.Year(), day.Month(), day.Day(), 0, 0, 0, 0, time.UTC)
		exp := 0
		for _, e := range evs {
			if e.Tenant == tenant && e.Type == event.AppointmentConfirmed && !e.Time().Before(lo) && e.Time().Before(lo.AddDate(0, 0, 1)) {
				exp++
			}
		}
		r := auditJSON(t, "appointments-confirmed", "--es", es, "--alias", alias, "--tenant", tenant,
			"--from", lo.Format("2006-01-02"), "--to", lo.Format("2006-01-02"))
		if r.Total != exp || exp == 0 {
			t.Errorf("%s on %s: %d confirmed, the data has %d", tenant, lo.Format("2006-01-02"), r.Total, exp)
		}
		for _, ev := range r.Events {
			if ev["tenant"] != tenant || ev["event_type"] != "appointment.confirmed" {
				t.Fatalf("a row outside the filter: %v", ev)
			}
		}

		// The other formats carry the same rows.
		var out bytes.Buffer
		args := []string{"query", "complaints", "--es", es, "--alias", alias, "--from", from, "--to", to}
		if err := run(context.Background(), append(args, "--format", "csv"), &out, io.Discard); err != nil {
			t.Fatal(err)
		}
		rows, err := csv.NewReader(&out).ReadAll()
		if err != nil || len(rows) != want["complaints"]+1 || rows[0][0] != "@timestamp" {
			t.Errorf("csv: %d rows (%v), want a header and %d", len(rows), err, want["complaints"])
		}
		out.Reset()
		if err := run(context.Background(), args, &out, io.Discard); err != nil {
			t.Fatal(err)
		}
		if lines := strings.Count(out.String(), "\n"); lines != want["complaints"]+1 {
			t.Errorf("table: %d lines, want %d\n%s", lines, want["complaints"]+1, out.String())
		}
	})
}

func TestCommandLine(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"query", "--list"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"appointments-confirmed", "leads-created", "low-confidence", "errors", "complaints", "conversation"} {
		if !strings.Contains(out.String(), name) {
			t.Errorf("--list lacks %s", name)
		}
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"query", "nope", "--from", "2026-11-01", "--to", "2026-11-02"}, `no saved query "nope"`},
		{[]string{"query", "conversation", "--from", "2026-11-01", "--to", "2026-11-02"}, "needs --session"},
		{[]string{"query", "errors", "--from", "yesterday", "--to", "2026-11-02"}, "--from:"},
		{[]string{"query", "errors", "--from", "2026-11-02", "--to", "2026-11-01"}, "--to must be after --from"},
		{[]string{"query", "errors"}, "--from and --to are required"},
	} {
		err := run(context.Background(), c.args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
}
