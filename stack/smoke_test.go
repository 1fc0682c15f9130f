package stack_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esutil"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/assistlog/assistlog/internal/kafka"
	"github.com/assistlog/assistlog/internal/stacktest"
	"github.com/assistlog/assistlog/stack"
)

func unique(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano())
}

func createTopic(t *testing.T, broker, name string, partitions int) {
	t.Helper()
	client := &kafkago.Client{Addr: kafkago.TCP(broker), Timeout: 30 * time.Second}
	resp, err := client.CreateTopics(context.Background(), &kafkago.CreateTopicsRequest{
		Topics: []kafkago.TopicConfig{{Topic: name, NumPartitions: partitions, ReplicationFactor: 1}},
	})
	if err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
	if err := resp.Errors[name]; err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
}

// kafkaTool runs one of Kafka's own command-line main classes.
func kafkaTool(ctx context.Context, ep stack.Endpoints, main string, args ...string) *exec.Cmd {
	full := append([]string{"-Xmx256m", "-cp", ep.KafkaClasspath, main}, args...)
	return exec.CommandContext(ctx, ep.Java, full...)
}

// TestKafkaGoToConsoleConsumer proves the pinned Kafka accepts kafka-go's
// producer: what kafka-go writes, Kafka's own console consumer reads.
func TestKafkaGoToConsoleConsumer(t *testing.T) {
	ep := stacktest.Require(t, stacktest.Kafka)
	topic := unique("smoke-kafkago-produce")
	createTopic(t, ep.KafkaBrokers, topic, 3)

	w := &kafkago.Writer{Addr: kafkago.TCP(ep.KafkaBrokers), Topic: topic, Balancer: &kafkago.Hash{},
		RequiredAcks: kafkago.RequireAll, Compression: kafkago.Snappy}
	defer w.Close()
	var want []string
	var msgs []kafkago.Message
	for i := 0; i < 50; i++ {
		k, v := fmt.Sprintf("tenant/s-%d", i%7), fmt.Sprintf(`{"n":%d,"text":"привет %d"}`, i, i)
		want = append(want, k+"|"+v)
		msgs = append(msgs, kafkago.Message{Key: []byte(k), Value: []byte(v)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("kafka-go produce: %v", err)
	}
	out, err := kafkaTool(ctx, ep, "org.apache.kafka.tools.consumer.ConsoleConsumer",
		"--bootstrap-server", ep.KafkaBrokers, "--topic", topic, "--from-beginning",
		"--max-messages", strconv.Itoa(len(want)), "--timeout-ms", "60000",
		"--formatter-property", "print.key=true", "--formatter-property", "key.separator=|").Output()
	if err != nil {
		t.Fatalf("console consumer: %v\n%s", err, out)
	}
	got := strings.Split(strings.TrimSpace(string(out)), "\n")
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("console consumer read %d records, want %d:\n%v", len(got), len(want), got)
	}
}

// TestConsoleProducerToKafkaGoGroup proves the other direction, and that
// kafka-go's consumer groups (JoinGroup/SyncGroup/OffsetCommit) work on the
// pinned Kafka: the shipper depends on them.
func TestConsoleProducerToKafkaGoGroup(t *testing.T) {
	ep := stacktest.Require(t, stacktest.Kafka)
	topic := unique("smoke-console-produce")
	createTopic(t, ep.KafkaBrokers, topic, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	var input bytes.Buffer
	want := map[string]string{}
	for i := 0; i < 40; i++ {
		k, v := fmt.Sprintf("k%d", i), fmt.Sprintf("value-%d", i)
		want[k] = v
		fmt.Fprintf(&input, "%s|%s\n", k, v)
	}
	prod := kafkaTool(ctx, ep, "org.apache.kafka.tools.ConsoleProducer",
		"--bootstrap-server", ep.KafkaBrokers, "--topic", topic,
		"--reader-property", "parse.key=true", "--reader-property", "key.separator=|",
		"--producer-property", "acks=all")
	prod.Stdin = &input
	if out, err := prod.CombinedOutput(); err != nil {
		t.Fatalf("console producer: %v\n%s", err, out)
	}

	group := unique("smoke-group")
	read := func(n int) map[string]string {
		r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: []string{ep.KafkaBrokers}, GroupID: group, Topic: topic,
			StartOffset: kafkago.FirstOffset})
		defer r.Close()
		got := map[string]string{}
		for len(got) < n {
			m, err := r.FetchMessage(ctx)
			if err != nil {
				t.Fatalf("kafka-go group read after %d records: %v", len(got), err)
			}
			got[string(m.Key)] = string(m.Value)
			if err := r.CommitMessages(ctx, m); err != nil {
				t.Fatalf("commit: %v", err)
			}
		}
		return got
	}
	got := read(len(want))
	for k, v := range want {
		if got[k] != v {
			t.Errorf("key %s: got %q, want %q", k, got[k], v)
		}
	}
	// The committed offsets must hold: the same group sees nothing old.
	conn, err := kafkago.DialLeader(ctx, "tcp", ep.KafkaBrokers, topic, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	client := &kafkago.Client{Addr: kafkago.TCP(ep.KafkaBrokers)}
	off, err := client.OffsetFetch(ctx, &kafkago.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: {0, 1, 2}}})
	if err != nil {
		t.Fatalf("offset fetch: %v", err)
	}
	var committed int64
	for _, p := range off.Topics[topic] {
		committed += p.CommittedOffset
	}
	if committed != int64(len(want)) {
		t.Errorf("group committed %d offsets in total, want %d", committed, len(want))
	}
}

// TestPipelineTopicsExist checks that the stack created the pipeline's
// topics with their layout (auto-creation is off on the broker).
func TestPipelineTopicsExist(t *testing.T) {
	ep := stacktest.Require(t, stacktest.Kafka)
	client := &kafkago.Client{Addr: kafkago.TCP(ep.KafkaBrokers), Timeout: 20 * time.Second}
	var names []string
	for _, s := range kafka.Topics() {
		names = append(names, s.Name)
	}
	md, err := client.Metadata(context.Background(), &kafkago.MetadataRequest{Topics: names})
	if err != nil {
		t.Fatal(err)
	}
	for _, spec := range kafka.Topics() {
		var found bool
		for _, tp := range md.Topics {
			if tp.Name == spec.Name {
				found = true
				if tp.Error != nil {
					t.Errorf("topic %s: %v", spec.Name, tp.Error)
				}
				if len(tp.Partitions) != spec.Partitions {
					t.Errorf("topic %s has %d partitions, want %d", spec.Name, len(tp.Partitions), spec.Partitions)
				}
			}
		}
		if !found {
			t.Errorf("topic %s missing", spec.Name)
		}
	}
	// A write to a topic that does not exist must fail, not create it.
	w := &kafkago.Writer{Addr: kafkago.TCP(ep.KafkaBrokers), Topic: unique("no-such-topic"), MaxAttempts: 1,
		RequiredAcks: kafkago.RequireAll, AllowAutoTopicCreation: true}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, kafkago.Message{Value: []byte("x")}); err == nil {
		t.Error("producing to an unknown topic succeeded; auto-creation should be off")
	}
}

// TestElasticsearchBulkAndSearch proves go-elasticsearch passes its product
// check against the integ-test distribution and can bulk-index and search.
func TestElasticsearchBulkAndSearch(t *testing.T) {
	ep := stacktest.Require(t, stacktest.Elasticsearch)
	es, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{ep.ElasticsearchURL}})
	if err != nil {
		t.Fatal(err)
	}
	index := unique("smoke-bulk")
	t.Cleanup(func() { _, _ = es.Indices.Delete([]string{index}) })
	ctx := context.Background()

	bi, err := esutil.NewBulkIndexer(esutil.BulkIndexerConfig{Client: es, Index: index, Refresh: "wait_for"})
	if err != nil {
		t.Fatal(err)
	}
	var failed []string
	for i := 0; i < 100; i++ {
		kind := "message.sent"
		if i%10 == 0 {
			kind = "appointment.confirmed"
		}
		doc := fmt.Sprintf(`{"event_type":%q,"n":%d}`, kind, i)
		err := bi.Add(ctx, esutil.BulkIndexerItem{Action: "index", DocumentID: fmt.Sprintf("e-%d", i),
			Body: strings.NewReader(doc),
			OnFailure: func(_ context.Context, it esutil.BulkIndexerItem, r esutil.BulkIndexerResponseItem, err error) {
				failed = append(failed, fmt.Sprintf("%s: %v %s", it.DocumentID, err, r.Error.Reason))
			}})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := bi.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if st := bi.Stats(); st.NumIndexed != 100 || len(failed) > 0 {
		t.Fatalf("bulk indexed %d, failed %v", st.NumIndexed, failed)
	}
	res, err := es.Search(es.Search.WithIndex(index),
		es.Search.WithBody(strings.NewReader(`{"query":{"term":{"event_type.keyword":"appointment.confirmed"}},"track_total_hits":true}`)))
	if err != nil {
		t.Fatalf("search (a product-check failure shows here): %v", err)
	}
	defer res.Body.Close()
	if res.IsError() {
		t.Fatalf("search: %s", res.String())
	}
	var body struct {
		Hits struct {
			Total struct{ Value int } `json:"total"`
		} `json:"hits"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if body.Hits.Total.Value != 10 {
		t.Errorf("search found %d appointment.confirmed, want 10", body.Hits.Total.Value)
	}
}

// lokiPush pushes lines to one stream through Loki's JSON push API.
func lokiPush(t *testing.T, ep stack.Endpoints, labels map[string]string, lines []string) {
	t.Helper()
	now := time.Now()
	var values [][2]string
	for i, l := range lines {
		values = append(values, [2]string{strconv.FormatInt(now.Add(time.Duration(i)*time.Millisecond).UnixNano(), 10), l})
	}
	body, _ := json.Marshal(map[string]any{"streams": []any{map[string]any{"stream": labels, "values": values}}})
	resp, err := http.Post(ep.LokiURL+"/loki/api/v1/push", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("loki push: %s: %s", resp.Status, b)
	}
}

func TestLokiPushAndQuery(t *testing.T) {
	ep := stacktest.Require(t, stacktest.Loki)
	run := unique("smoke")
	lines := []string{
		`{"event_type":"appointment.confirmed","session_id":"s1"}`,
		`{"event_type":"message.sent","session_id":"s1"}`,
		`{"event_type":"appointment.confirmed","session_id":"s2"}`,
	}
	lokiPush(t, ep, map[string]string{"app": "assistlog-smoke", "run": run}, lines)
	q := fmt.Sprintf(`{run=%q} | json | event_type="appointment.confirmed"`, run)
	stacktest.Eventually(t, time.Minute, "loki query", func() error {
		v := url.Values{"query": {q}, "start": {strconv.FormatInt(time.Now().Add(-time.Hour).UnixNano(), 10)}, "limit": {"100"}}
		resp, err := http.Get(ep.LokiURL + "/loki/api/v1/query_range?" + v.Encode())
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var r struct {
			Data struct {
				Result []struct {
					Values [][2]string `json:"values"`
				} `json:"result"`
			} `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			return err
		}
		var got []string
		for _, s := range r.Data.Result {
			for _, v := range s.Values {
				got = append(got, v[1])
			}
		}
		slices.Sort(got)
		want := []string{lines[0], lines[2]}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			return fmt.Errorf("query %s returned %q", q, got)
		}
		return nil
	})
}

// TestLokiRuleFiresIntoAlertmanager drops a LogQL alerting rule into the
// ruler's directory, pushes matching lines and waits until the real
// Alertmanager lists the alert.
func TestLokiRuleFiresIntoAlertmanager(t *testing.T) {
	ep := stacktest.Require(t, stacktest.Loki, stacktest.Alertmanager)
	run := strings.ReplaceAll(unique("smoke"), "-", "_")
	alert := "AssistlogSmoke_" + run
	rule := fmt.Sprintf(`groups:
  - name: %s
    interval: 10s
    rules:
      - alert: %s
        expr: sum(count_over_time({run=%q} |= "error" [5m])) > 2
        labels:
          severity: info
          run: %s
        annotations:
          summary: smoke test alert
`, run, alert, run, run)
	path := filepath.Join(ep.LokiRulesDir, "smoke-"+run+".yaml")
	if err := os.WriteFile(path, []byte(rule), 0o644); err != nil {
		t.Fatalf("write rule into %s: %v", ep.LokiRulesDir, err)
	}
	t.Cleanup(func() { os.Remove(path) })
	lokiPush(t, ep, map[string]string{"app": "assistlog-smoke", "run": run},
		[]string{"level=error a", "level=error b", "level=error c", "level=error d"})

	stacktest.Eventually(t, 3*time.Minute, "alert "+alert+" listed by Alertmanager", func() error {
		resp, err := http.Get(ep.AlertmanagerURL + "/api/v2/alerts?filter=" + url.QueryEscape("alertname="+alert))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var alerts []struct {
			Labels map[string]string      `json:"labels"`
			Status struct{ State string } `json:"status"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&alerts); err != nil {
			return err
		}
		for _, a := range alerts {
			if a.Labels["alertname"] == alert && a.Labels["run"] == run && a.Labels["severity"] == "info" {
				return nil
			}
		}
		return fmt.Errorf("not listed yet (%d alerts match the filter)", len(alerts))
	})
}

// TestPrometheusConfigAndScrape checks the stack's Prometheus configuration
// with promtool and that the running server scrapes (itself, at least).
func TestPrometheusConfigAndScrape(t *testing.T) {
	ep := stacktest.Require(t, stacktest.Prometheus)
	l, err := stack.LayoutFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(ep.Promtool, "check", "config", l.PrometheusConfigPath()).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check config: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "SUCCESS") {
		t.Fatalf("promtool check config did not report success:\n%s", out)
	}
	stacktest.Eventually(t, time.Minute, "prometheus scraping itself", func() error {
		r, err := stacktest.PromInstant(ep.PrometheusURL, `up{job="prometheus"}`)
		if err != nil {
			return err
		}
		if len(r) != 1 || r[0].Value != "1" {
			return fmt.Errorf("up{job=\"prometheus\"} = %+v", r)
		}
		return nil
	})
}

// TestAlertmanagerConfig checks the running Alertmanager's configuration
// with amtool, Alertmanager's own loader.
func TestAlertmanagerConfig(t *testing.T) {
	ep := stacktest.Require(t, stacktest.Alertmanager)
	l, err := stack.LayoutFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(ep.Amtool, "check-config", l.AlertmanagerConfigPath()).CombinedOutput()
	if err != nil {
		t.Fatalf("amtool check-config: %v\n%s", err, out)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if strings.Contains(sc.Text(), "SUCCESS") {
			return
		}
	}
	t.Fatalf("amtool did not report success:\n%s", out)
}
