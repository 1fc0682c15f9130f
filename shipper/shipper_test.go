package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/assistlog/assistlog/demo"
	"github.com/assistlog/assistlog/internal/deadletter"
	"github.com/assistlog/assistlog/internal/event"
	"github.com/assistlog/assistlog/internal/pii"
	"github.com/assistlog/assistlog/internal/proctest"
	"github.com/assistlog/assistlog/internal/stacktest"
	"github.com/assistlog/assistlog/stack"
)

const testSecret = "pii-secret-for-tests-0123"

// env is one shipper deployment under test: its own topics, consumer
// group, Elasticsearch alias and Loki label.
type env struct {
	t          *testing.T
	ep         stack.Endpoints
	dir        string
	run        string // unique: topic suffix, alias, Loki "deployment" label
	topic, dlq string
	alias      string
	procs      []*proctest.Process
	addrs      []string
	crm        string // the crm: section, when the deployment links to a CRM
	// esURL and esAuth replace the stack's Elasticsearch (e.g. a node with
	// security on, and the username/password lines for it).
	esURL, esAuth string
	// mirrorOS also writes the deployment to the stack's OpenSearch
	// (mirrors:); searchURL is the store esSearch reads (default
	// Elasticsearch), switched by onEachStore.
	mirrorOS  bool
	searchURL string
	// batching replaces the kafka: section's batch lines (default 500
	// messages, 200ms); lokiURL replaces the stack's Loki.
	batching, lokiURL string
}

// withOpenSearch makes the deployment write both stores, so the same test
// proves the same guarantees on Elasticsearch and on OpenSearch (issue 16)
// without shipping twice.
func (e *env) withOpenSearch() {
	e.t.Helper()
	stacktest.Require(e.t, stacktest.OpenSearch)
	e.mirrorOS = true
	e.t.Cleanup(func() {
		req, _ := http.NewRequest(http.MethodDelete, e.ep.OpenSearchURL+"/"+e.alias+"-*", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	})
}

// stores lists the search stores this deployment writes: name → URL.
func (e *env) stores() [][2]string {
	s := [][2]string{{"elasticsearch", e.ep.ElasticsearchURL}}
	if e.mirrorOS {
		s = append(s, [2]string{"opensearch", e.ep.OpenSearchURL})
	}
	return s
}

// onEachStore runs checks once per store, esSearch reading that store.
func (e *env) onEachStore(checks func(store string)) {
	e.t.Helper()
	defer func() { e.searchURL = "" }()
	for _, st := range e.stores() {
		e.searchURL = st[1]
		checks(st[0])
	}
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ep := stacktest.Require(t, stacktest.Kafka, stacktest.Elasticsearch, stacktest.Loki)
	run := fmt.Sprintf("s%d", time.Now().UnixNano()%1e12)
	e := &env{t: t, ep: ep, dir: t.TempDir(), run: run, topic: "test-events-" + run, dlq: "test-dlq-" + run, alias: "test-" + run}
	stacktest.CreateTopics(t, ep.KafkaBrokers, map[string]int{e.topic: 6, e.dlq: 1})
	t.Cleanup(func() {
		for _, p := range e.procs {
			p.Kill()
		}
		req, _ := http.NewRequest(http.MethodDelete, ep.ElasticsearchURL+"/"+e.alias+"-*", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	})
	return e
}

// start runs one more shipper instance of this deployment.
func (e *env) start() *proctest.Process {
	e.t.Helper()
	addr := proctest.FreeAddr(e.t)
	cfg := fmt.Sprintf(`kafka:
  brokers: [%q]
  topic: %s
  dead_letter_topic: %s
  group_id: group-%s
%sretry: {max_backoff: 2s, pause_interval: 2s}
elasticsearch:
  urls: [%q]
  alias: %s
%s%sloki:
  url: %s
  labels: {app: assistlog-test, deployment: %s}
pii:
  hash_secret: %q
http:
  listen: %s
shutdown_timeout: 20s
%s`, e.ep.KafkaBrokers, e.topic, e.dlq, e.run, cmp.Or(e.batching, "  batch_messages: 500\n  batch_wait: 200ms\n"),
		cmp.Or(e.esURL, e.ep.ElasticsearchURL), e.alias, e.esAuth, e.mirrors(), cmp.Or(e.lokiURL, e.ep.LokiURL), e.run, testSecret, addr, e.crm)
	path := filepath.Join(e.dir, fmt.Sprintf("shipper-%d.yaml", len(e.procs)))
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		e.t.Fatal(err)
	}
	p := proctest.Start(e.t, proctest.Build(e.t, "."), []string{"--config", path},
		filepath.Join(e.dir, fmt.Sprintf("shipper-%d.log", len(e.procs))), "http://"+addr+"/readyz")
	e.procs = append(e.procs, p)
	e.addrs = append(e.addrs, addr)
	return p
}

// mirrors is the mirrors: section.
func (e *env) mirrors() string {
	if !e.mirrorOS {
		return ""
	}
	return fmt.Sprintf("mirrors:\n  - urls: [%q]\n    store: opensearch\n", e.ep.OpenSearchURL)
}

// generate makes events from the first n dialogues, ids unique to this run.
func (e *env) generate(n int) ([]event.Event, *demo.Truth) {
	e.t.Helper()
	cfg := demo.DefaultConfig()
	cfg.End = time.Now().UTC().Truncate(time.Minute)
	evs, truth, err := demo.FromShared(n, cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	for i := range evs {
		evs[i].EventID = e.run + "-" + evs[i].EventID
	}
	return evs, truth
}

func (e *env) produce(evs []event.Event) {
	e.t.Helper()
	w := &kafkago.Writer{Addr: kafkago.TCP(e.ep.KafkaBrokers), Topic: e.topic, Balancer: &kafkago.Hash{}, RequiredAcks: kafkago.RequireAll}
	defer w.Close()
	var msgs []kafkago.Message
	for i := range evs {
		b, _ := evs[i].Marshal()
		msgs = append(msgs, kafkago.Message{Key: evs[i].Key(), Value: b})
	}
	if err := w.WriteMessages(context.Background(), msgs...); err != nil {
		e.t.Fatal(err)
	}
}

// esSearch runs a query_string query on the alias and returns hit count
// and sources (up to size).
func (e *env) esSearch(q string, size int) (int, []map[string]any) {
	e.t.Helper()
	base := cmp.Or(e.searchURL, e.ep.ElasticsearchURL)
	http.Post(base+"/"+e.alias+"/_refresh", "application/json", nil)
	body := fmt.Sprintf(`{"size":%d,"track_total_hits":true,"query":{"query_string":{"query":%q}}}`, size, q)
	resp, err := http.Post(base+"/"+e.alias+"/_search", "application/json", strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Hits struct {
			Total struct{ Value int }
			Hits  []struct {
				Source map[string]any `json:"_source"`
			}
		}
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusNotFound {
		return 0, nil // no index yet
	}
	if err := json.Unmarshal(b, &r); err != nil {
		e.t.Fatalf("search: %s", b)
	}
	var out []map[string]any
	for _, h := range r.Hits.Hits {
		out = append(out, h.Source)
	}
	return r.Hits.Total.Value, out
}

// lokiCount counts lines of this deployment matching a selector suffix.
func (e *env) lokiCount(extra string) int {
	e.t.Helper()
	return stacktest.LokiScalar(e.t, e.ep.LokiURL, fmt.Sprintf(`sum(count_over_time({deployment=%q%s}[8d]))`, e.run, extra))
}

// waitShipped waits until Elasticsearch (and OpenSearch, when mirrored)
// holds want events and Loki as many.
func (e *env) waitShipped(want int, timeout time.Duration) {
	e.t.Helper()
	stacktest.Eventually(e.t, timeout, "events in the search stores and Loki", func() error {
		defer func() { e.searchURL = "" }()
		for _, st := range e.stores() {
			e.searchURL = st[1]
			if n, _ := e.esSearch("*", 0); n != want {
				return fmt.Errorf("%s %d, want %d", st[0], n, want)
			}
		}
		if lk := e.lokiCount(""); lk != want {
			return fmt.Errorf("loki %d, want %d", lk, want)
		}
		return nil
	})
}

// TestEndToEnd: generated conversations through Kafka → shipper → every
// sink: exactly the input set in Elasticsearch and in OpenSearch (one
// shipper writing both), every event in Loki,
// the ground truth's counts, and no raw phone number anywhere.
func TestEndToEnd(t *testing.T) {
	e := newEnv(t)
	e.withOpenSearch()
	evs, truth := e.generate(150)
	e.start()
	e.produce(evs)
	e.waitShipped(len(evs), 3*time.Minute)

	confirmed := truth.ByType[string(event.AppointmentConfirmed)]
	var docs []map[string]any
	e.onEachStore(func(store string) {
		docs = append(docs, e.exactSet(evs)...)
		if n, _ := e.esSearch("event_type:appointment.confirmed", 0); n != confirmed {
			t.Errorf("appointment.confirmed in %s = %d, ground truth %d", store, n, confirmed)
		}
	})
	if n := e.lokiCount(`, event_type="appointment.confirmed"`); n != confirmed {
		t.Errorf("appointment.confirmed in Loki = %d, ground truth %d", n, confirmed)
	}

	// No raw phone number in either sink; the keyed hash finds a customer.
	raw, _ := json.Marshal(docs)
	lokiLines := e.lokiLines(5000)
	re := regexp.MustCompile(`\d[\d\s\-()]{8,}\d`)
	for _, p := range truth.Phones {
		digits := pii.Digits(p)
		for _, hay := range []string{string(raw), lokiLines} {
			for _, m := range re.FindAllString(hay, -1) {
				if strings.Contains(pii.Digits(m), digits[1:]) {
					t.Fatalf("raw phone number %s found in a sink: %q", p, m)
				}
			}
		}
	}
	m, _ := pii.New(testSecret)
	e.onEachStore(func(store string) {
		if n, _ := e.esSearch("user_phone_hash:"+m.HashPhone(truth.Phones[0]), 0); n == 0 {
			t.Errorf("%s: no event found by the hash of %s", store, truth.Phones[0])
		}
		if n, _ := e.esSearch(`pii_masked:"payload.text"`, 0); n == 0 {
			t.Errorf("%s: no event records that its text was masked", store)
		}
	})
	t.Logf("%d events, %d appointment.confirmed, %d phone numbers checked", len(evs), confirmed, len(truth.Phones))
}

// exactSet checks that Elasticsearch holds exactly the events' ids, each
// once, and returns the documents.
func (e *env) exactSet(evs []event.Event) []map[string]any {
	e.t.Helper()
	total, docs := e.esSearch("*", 10000)
	ids := map[string]bool{}
	for _, d := range docs {
		ids[fmt.Sprint(d["event_id"])] = true
	}
	for i := range evs {
		if !ids[evs[i].EventID] {
			e.t.Fatalf("event %s missing from Elasticsearch", evs[i].EventID)
		}
	}
	if total != len(evs) || len(ids) != len(evs) {
		e.t.Fatalf("Elasticsearch holds %d documents (%d ids) for %d events", total, len(ids), len(evs))
	}
	return docs
}

func (e *env) lokiLines(limit int) string {
	v := url.Values{"query": {fmt.Sprintf(`{deployment=%q}`, e.run)}, "limit": {strconv.Itoa(limit)},
		"start": {strconv.FormatInt(time.Now().Add(-8*24*time.Hour).UnixNano(), 10)}}
	resp, err := http.Get(e.ep.LokiURL + "/loki/api/v1/query_range?" + v.Encode())
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// killsFromEnv reads ASSISTLOG_SHIPPER_KILLS (def when unset); a bad value
// fails the test: a typo must not mean zero kills and a green run.
func killsFromEnv(t *testing.T, def int) int {
	t.Helper()
	v, ok := os.LookupEnv("ASSISTLOG_SHIPPER_KILLS")
	if !ok {
		return def
	}
	n, err := parseKills(v)
	if err != nil {
		t.Fatalf("ASSISTLOG_SHIPPER_KILLS: %v", err)
	}
	return n
}

// parseKills accepts a positive number of kills, nothing else.
func parseKills(v string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%q is not a positive number of kills", v)
	}
	return n, nil
}

// TestParseKills: typos and non-positive counts are refused.
func TestParseKills(t *testing.T) {
	for _, v := range []string{"", "six", "6x", "1e2", "0", "-3", "2.5"} {
		if n, err := parseKills(v); err == nil {
			t.Errorf("parseKills(%q) = %d, want an error", v, n)
		}
	}
	if n, err := parseKills(" 25 "); err != nil || n != 25 {
		t.Errorf("parseKills(\" 25 \") = %d, %v", n, err)
	}
}

// committed is how many messages of the events topic the deployment's
// group has committed (the topic is fresh: offsets count from 0).
func (e *env) committed() (int64, error) {
	client := &kafkago.Client{Addr: kafkago.TCP(e.ep.KafkaBrokers), Timeout: 10 * time.Second}
	resp, err := client.OffsetFetch(context.Background(), &kafkago.OffsetFetchRequest{GroupID: "group-" + e.run,
		Topics: map[string][]int{e.topic: {0, 1, 2, 3, 4, 5}}})
	if err == nil && resp.Error != nil {
		err = resp.Error
	}
	if err != nil {
		return 0, err
	}
	var n int64
	for _, p := range resp.Topics[e.topic] {
		if p.Error != nil {
			return 0, p.Error
		}
		n += max(p.CommittedOffset, 0)
	}
	return n, nil
}

// TestKillLoop: kill -9 the shipper repeatedly while it ships; afterwards
// Elasticsearch holds exactly the input set and Loki every event once.
// Each kill is made while shipping is under way (the group's commits moved
// since the start), and is proven to have hit uncommitted work: the
// committed offsets read back right after it are behind what was
// produced, and at least one kill left events in Elasticsearch that the
// group had not committed (shipped again after the restart).
func TestKillLoop(t *testing.T) {
	kills := killsFromEnv(t, 6)
	e := newEnv(t)
	// Small batches: with 4 in flight a backlog of 2,000 in batches of 500
	// was sometimes all committed before the kill landed.
	e.batching = "  batch_messages: 100\n  batch_wait: 200ms\n"
	evs, _ := e.generate(500)
	// The topic is fed in chunks so that every restart finds a backlog of
	// several batches: a kill made as soon as the commits move then always
	// lands in the middle of shipping, however fast the machine.
	const backlog, chunk = 2000, 1000
	var produced, last int64
	aheadOfCommits := 0
	for i := 0; i < kills; i++ {
		for produced-last < backlog && produced < int64(len(evs)) {
			next := min(produced+chunk, int64(len(evs)))
			e.produce(evs[produced:next])
			produced = next
		}
		p := e.start()
		deadline := time.Now().Add(2 * time.Minute)
		for {
			n, err := e.committed()
			if err == nil && n > last {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("kill %d: commits did not move after the restart (committed %d, err %v)", i+1, n, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(time.Duration(i%3) * 50 * time.Millisecond) // vary where in a batch the kill lands
		p.Kill()
		n, err := e.committed()
		if err != nil {
			t.Fatal(err)
		}
		inES, _ := e.esSearch("*", 0)
		t.Logf("kill %d: %d of %d produced committed, %d in Elasticsearch", i+1, n, produced, inES)
		if n >= produced {
			t.Fatalf("kill %d hit no uncommitted work: %d of %d messages were committed already", i+1, n, produced)
		}
		if int64(inES) > n {
			aheadOfCommits++
		}
		last = n
	}
	if produced < int64(len(evs)) {
		e.produce(evs[produced:])
	}
	if aheadOfCommits == 0 {
		t.Errorf("no kill left shipped but uncommitted events behind: the replay path after a crash was not exercised")
	}
	e.start()
	e.waitShipped(len(evs), 4*time.Minute)
	e.checkLokiOnce(len(evs))
	t.Logf("%d kill -9 restarts (%d with shipped, uncommitted events): Elasticsearch and Loki each hold exactly %d events, one Loki line per event_id", kills, aheadOfCommits, len(evs))
}

// TestTwoInstances: two shippers in one group split the partitions; the
// result is still exact.
func TestTwoInstances(t *testing.T) {
	e := newEnv(t)
	evs, _ := e.generate(300)
	e.start()
	e.start()
	// Both must own partitions before the load arrives: ask the group
	// coordinator, as an operator would.
	client := &kafkago.Client{Addr: kafkago.TCP(e.ep.KafkaBrokers)}
	stacktest.Eventually(t, time.Minute, "two members with partitions", func() error {
		resp, err := client.DescribeGroups(context.Background(), &kafkago.DescribeGroupsRequest{GroupIDs: []string{"group-" + e.run}})
		if err != nil {
			return err
		}
		owners := 0
		for _, g := range resp.Groups {
			for _, m := range g.Members {
				for _, tp := range m.MemberAssignments.Topics {
					if tp.Topic == e.topic && len(tp.Partitions) > 0 {
						owners++
					}
				}
			}
		}
		if owners != 2 {
			return fmt.Errorf("%d members own partitions", owners)
		}
		return nil
	})
	e.produce(evs)
	e.waitShipped(len(evs), 3*time.Minute)
	for i, addr := range e.addrs {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m := regexp.MustCompile(`assistlog_shipper_events_total (\d+)`).FindStringSubmatch(string(b))
		if m == nil || m[1] == "0" {
			t.Errorf("instance %d shipped nothing: %v", i, m)
		} else {
			t.Logf("instance %d shipped %s events", i, m[1])
		}
	}
}

// TestMappingConflictDeadLettered: an event Elasticsearch cannot index goes
// to the dead-letter topic with Elasticsearch's reason; the rest arrive.
func TestMappingConflictDeadLettered(t *testing.T) {
	e := newEnv(t)
	evs, _ := e.generate(20)
	bad := evs[len(evs)-1]
	bad.EventID = e.run + "-bad"
	bad.Type, bad.Level = event.AppointmentConfirmed, "info"
	bad.Payload = map[string]any{"appointment_id": "a-bad", "starts_at": "next Friday"}
	e.start()
	e.produce(append(evs, bad))
	stacktest.Eventually(t, 2*time.Minute, "the dead letter", func() error {
		msgs := stacktest.ReadTopic(t, e.ep.KafkaBrokers, e.dlq)
		if len(msgs) != 1 {
			return fmt.Errorf("%d dead letters", len(msgs))
		}
		r := deadletter.FromMessage(msgs[0])
		if r.Reason != ReasonElasticsearch || !strings.Contains(r.Error, "payload.starts_at") || !strings.Contains(string(r.Raw), bad.EventID) {
			t.Fatalf("dead letter = %+v", r)
		}
		return nil
	})
	stacktest.Eventually(t, time.Minute, "the other events", func() error {
		if n, _ := e.esSearch("*", 0); n != len(evs) {
			return fmt.Errorf("%d in Elasticsearch, want %d", n, len(evs))
		}
		return nil
	})
}

// TestSinkOutages stops the real Elasticsearch and then the real Loki for
// 30 s each while events keep coming: nothing is lost.
func TestSinkOutages(t *testing.T) {
	e := newEnv(t)
	evs, _ := e.generate(300)
	layout, err := stack.LayoutFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	s := stack.New(layout, io.Discard)
	ctx := context.Background()
	t.Cleanup(func() { _ = s.Up(ctx, "elasticsearch", "loki") })
	e.start()
	third := len(evs) / 3
	parts := [][]event.Event{evs[:third], evs[third : 2*third], evs[2*third:]}
	e.produce(parts[0])
	for i, c := range []string{"elasticsearch", "loki"} {
		if err := s.Down(ctx, c); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Second)
		e.produce(parts[i+1]) // arrives while the sink is down
		time.Sleep(25 * time.Second)
		if err := s.Up(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	e.waitShipped(len(evs), 4*time.Minute)
}

// TestDLQReplay: after a fix, "shipper dlq replay" re-drives dead letters
// whose bytes are a valid event and records what it did in its consumer
// group: a second run re-drives nothing, and an event that fails again
// downstream (dead-lettered again by the shipper) is not re-driven, so it is
// not appended again.
func TestDLQReplay(t *testing.T) {
	e := newEnv(t)
	evs, _ := e.generate(3)
	good, _ := evs[0].Marshal()
	// Valid per the schema, but Elasticsearch's date mapping refuses it:
	// it fails again after every replay.
	bad := evs[1]
	bad.EventID = e.run + "-still-bad"
	bad.Type, bad.Level = event.AppointmentConfirmed, "info"
	bad.Payload = map[string]any{"appointment_id": "a-bad", "starts_at": "next Friday"}
	badRaw, _ := bad.Marshal()
	w := &kafkago.Writer{Addr: kafkago.TCP(e.ep.KafkaBrokers), Topic: e.dlq, RequiredAcks: kafkago.RequireAll}
	defer w.Close()
	recs := []deadletter.Record{
		{Reason: ReasonElasticsearch, Error: "mapper_parsing_exception: …", Source: "shipper:x/0", Raw: good, Tenant: evs[0].Tenant},
		{Reason: "invalid_json", Error: "invalid JSON", Source: "/var/log/a.jsonl", Raw: []byte(`{"broken"`)},
		{Reason: ReasonElasticsearch, Error: "mapper_parsing_exception: …", Source: "shipper:x/1", Raw: badRaw, Tenant: bad.Tenant},
	}
	for _, r := range recs {
		m := r.Message("")
		m.Topic = ""
		if err := w.WriteMessages(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	e.start()
	// Replay gets every broker of the configuration, a dead one first: it
	// must use the others, not only brokers[0].
	b, err := os.ReadFile(filepath.Join(e.dir, "shipper-0.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dead := proctest.FreeAddr(t)
	cfgPath := filepath.Join(e.dir, "replay.yaml")
	withDead := strings.Replace(string(b), fmt.Sprintf("brokers: [%q]", e.ep.KafkaBrokers), fmt.Sprintf("brokers: [%q, %q]", dead, e.ep.KafkaBrokers), 1)
	if withDead == string(b) {
		t.Fatal("brokers line not found in the shipper's configuration")
	}
	if err := os.WriteFile(cfgPath, []byte(withDead), 0o644); err != nil {
		t.Fatal(err)
	}
	replay := func() replayReport {
		t.Helper()
		var out strings.Builder
		if err := dlqMain([]string{"replay", "--config", cfgPath, "--format", "json"}, &out, io.Discard); err != nil {
			t.Fatalf("replay: %v\n%s", err, out.String())
		}
		var rep replayReport
		if err := json.Unmarshal([]byte(out.String()), &rep); err != nil {
			t.Fatalf("replay report %q: %v", out.String(), err)
		}
		return rep
	}

	first := replay()
	if first.Read != 3 || first.Redriven != 2 || first.StillInvalid != 1 || first.FailedAgain != 0 || !first.Committed {
		t.Fatalf("first replay: %+v, want 3 read, 2 re-driven, 1 still invalid, committed", first)
	}
	stacktest.Eventually(t, time.Minute, "the replayed event in Elasticsearch", func() error {
		if n, _ := e.esSearch("event_id:\""+evs[0].EventID+"\"", 0); n != 1 {
			return fmt.Errorf("%d documents", n)
		}
		return nil
	})
	// The shipper dead-letters the still-bad event again.
	stacktest.Eventually(t, time.Minute, "the still-bad event dead-lettered again", func() error {
		if n := len(stacktest.ReadTopic(t, e.ep.KafkaBrokers, e.dlq)); n != 4 {
			return fmt.Errorf("%d dead letters, want 4", n)
		}
		return nil
	})
	if n := len(stacktest.ReadTopic(t, e.ep.KafkaBrokers, e.topic)); n != 2 {
		t.Fatalf("events topic holds %d messages after the first replay, want the 2 re-driven", n)
	}

	second := replay()
	if second.Read != 1 || second.Redriven != 0 || second.FailedAgain != 1 || !second.Committed {
		t.Fatalf("second replay: %+v, want only the new dead letter read, nothing re-driven, it counted as failing again", second)
	}
	if n := len(stacktest.ReadTopic(t, e.ep.KafkaBrokers, e.topic)); n != 2 {
		t.Fatalf("events topic holds %d messages after the second replay, want still 2", n)
	}
	// Nothing was re-driven, so nothing can come back: give the shipper
	// time to have done so, then count the dead letters again.
	time.Sleep(5 * time.Second)
	if n := len(stacktest.ReadTopic(t, e.ep.KafkaBrokers, e.dlq)); n != 4 {
		t.Fatalf("%d dead letters after the second replay, want still 4", n)
	}
	third := replay()
	if third.Read != 0 || third.Redriven != 0 {
		t.Fatalf("third replay: %+v, want nothing to read", third)
	}
}
