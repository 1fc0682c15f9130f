package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/assistlog/assistlog/internal/pipelinetest"
	"github.com/assistlog/assistlog/internal/proctest"
	"github.com/assistlog/assistlog/internal/stacktest"
	"github.com/assistlog/assistlog/stack"
)

// TestSecuredKafkaEndToEnd runs the real collector and shipper against a
// broker whose only listener is SASL_SSL (SCRAM-SHA-512 for the collector,
// SCRAM-SHA-256 for the shipper; the passwords come from ${VAR}). Both start
// while the broker still holds other passwords for them: neither moves
// (the collector is not ready and says why; the shipper stores nothing and
// says why, and the shipper's assistlog_destination_paused{destination="kafka"}
// is 1); once the operator sets the passwords they expect, each goes
// on by itself and every event written to the file ends in Elasticsearch.
func TestSecuredKafkaEndToEnd(t *testing.T) {
	ep := stacktest.Require(t, stacktest.Kafka, stacktest.Elasticsearch, stacktest.Loki)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	k, err := stack.StartSecuredKafka(ctx, stack.SecuredKafkaConfig{Name: "e2e", BrokerPort: 19192, ControllerPort: 19193,
		Users: map[string]string{"collector": "not-the-collectors", "shipper": "not-the-shippers"}})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Stop()
	run := fmt.Sprintf("sec%d", time.Now().UnixNano()%1e9)
	topic, dlq, alias := "test-events-"+run, "test-dlq-"+run, "test-"+run
	links := "test-links-" + run
	if err := k.CreateTopics(ctx, map[string]int{topic: 2, dlq: 1, links: 1}); err != nil {
		t.Fatal(err)
	}
	pipelinetest.DropIndicesAtCleanup(t, ep, alias)
	t.Setenv("ASSISTLOG_TEST_COLLECTOR_KAFKA_PASSWORD", "collector-pw")
	t.Setenv("ASSISTLOG_TEST_SHIPPER_KAFKA_PASSWORD", "shipper-pw")

	dir := t.TempDir()
	const n = 20
	var lines strings.Builder
	for i := range n {
		fmt.Fprintf(&lines, `{"event_id":"%s-%d","timestamp":"2026-11-27T10:00:%02d+05:00","tenant":"salon-aurora","channel":"telegram","session_id":"s-%s","event_type":"message.received","level":"info","payload":{"text":"Здравствуйте"},"schema_version":1}`+"\n",
			run, i, i, run)
	}
	lines.WriteString(`{"not":"an event"}` + "\n") // dead-lettered, for `dlq replay`
	if err := os.WriteFile(filepath.Join(dir, "a.jsonl"), []byte(lines.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	security := func(mech, env string) string {
		return fmt.Sprintf("  tls: {enabled: true, ca_file: %q}\n  sasl: {mechanism: %s, username: %s, password: \"${%s}\"}\n",
			k.CAFile, mech, map[string]string{"SCRAM-SHA-512": "collector", "SCRAM-SHA-256": "shipper"}[mech], env)
	}
	collHTTP, shipHTTP := proctest.FreeAddr(t), proctest.FreeAddr(t)
	collCfg := filepath.Join(dir, "collector.yaml")
	writeSecuredFile(t, collCfg, fmt.Sprintf("kafka:\n  brokers: [%q]\n  topic: %s\n  dead_letter_topic: %s\n%sfiles:\n  include: [%q]\n  scan_interval: 200ms\npositions:\n  path: %s\nhttp:\n  listen: %s\n",
		k.Brokers, topic, dlq, security("SCRAM-SHA-512", "ASSISTLOG_TEST_COLLECTOR_KAFKA_PASSWORD"), filepath.Join(dir, "*.jsonl"),
		filepath.Join(dir, "positions.json"), collHTTP))
	shipCfg := filepath.Join(dir, "shipper.yaml")
	writeSecuredFile(t, shipCfg, fmt.Sprintf("kafka:\n  brokers: [%q]\n  topic: %s\n  dead_letter_topic: %s\n  group_id: %s\n%selasticsearch:\n  urls: [%q]\n  alias: %s\nloki:\n  url: %s\n  labels: {app: assistlog-test, deployment: %s}\npii:\n  hash_secret: pipelinetest-secret-0123456789\nretry:\n  pause_interval: 1s\nhttp:\n  listen: %s\n",
		k.Brokers, topic, dlq, run, security("SCRAM-SHA-256", "ASSISTLOG_TEST_SHIPPER_KAFKA_PASSWORD"), ep.ElasticsearchURL, alias, ep.LokiURL, run, shipHTTP))

	coll := proctest.Started(t, proctest.Build(t, "."), []string{"--config", collCfg}, filepath.Join(dir, "collector.log"))
	ship := proctest.Start(t, proctest.Build(t, filepath.Join(pipelinetest.Root, "shipper")), []string{"--config", shipCfg},
		filepath.Join(dir, "shipper.log"), "http://"+shipHTTP+"/readyz")
	t.Cleanup(ship.Kill)

	refused := func(p *proctest.Process, who string) {
		stacktest.Eventually(t, time.Minute, who+" says its password was refused", func() error {
			if !strings.Contains(p.LogTail(200), "SASL Authentication Failed") {
				return fmt.Errorf("log:\n%s", p.LogTail(10))
			}
			return nil
		})
	}
	refused(coll, "the collector")
	refused(ship, "the shipper")
	kafkaPaused := func(want string) {
		stacktest.Eventually(t, time.Minute, "shipper's kafka paused gauge "+want, func() error {
			resp, err := http.Get("http://" + shipHTTP + "/metrics")
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if line := `assistlog_destination_paused{destination="kafka"} ` + want; !strings.Contains(string(b), line+"\n") {
				return fmt.Errorf("no %s; log:\n%s", line, ship.LogTail(5))
			}
			return nil
		})
	}
	kafkaPaused("1")
	if code := httpStatusOf("http://" + collHTTP + "/readyz"); code == http.StatusOK {
		t.Fatal("the collector is ready while Kafka refuses its password")
	}
	if got := len(readSecured(t, ctx, k, topic, 2)); got != 0 {
		t.Fatalf("%d events in Kafka before the collector's password was accepted", got)
	}

	// The operator sets the collector's password: it starts collecting.
	if err := k.SetPassword(ctx, "collector", "collector-pw"); err != nil {
		t.Fatal(err)
	}
	stacktest.Eventually(t, time.Minute, "all lines in Kafka", func() error {
		if got, dead := len(readSecured(t, ctx, k, topic, 2)), len(readSecured(t, ctx, k, dlq, 1)); got != n || dead != 1 {
			return fmt.Errorf("%d of %d events in Kafka, %d of 1 dead letters", got, n, dead)
		}
		return nil
	})
	if code := httpStatusOf("http://" + collHTTP + "/readyz"); code != http.StatusOK {
		t.Fatalf("collector /readyz = %d once its password was accepted", code)
	}
	// The shipper is still refused: nothing is stored.
	time.Sleep(3 * time.Second)
	if got := securedStored(t, ep, alias); got != 0 {
		t.Fatalf("%d events stored while Kafka refused the shipper's password", got)
	}

	// The shipper's password is set: it resumes without a restart.
	if err := k.SetPassword(ctx, "shipper", "shipper-pw"); err != nil {
		t.Fatal(err)
	}
	stacktest.Eventually(t, 2*time.Minute, "every event stored", func() error {
		if got := securedStored(t, ep, alias); got != n {
			return fmt.Errorf("%d of %d events stored; shipper log:\n%s", got, n, ship.LogTail(15))
		}
		return nil
	})
	kafkaPaused("0")

	// The other Kafka clients of the shipper take the same settings: the
	// dead-letter replay reads the topic, and a shipper with the CRM stage
	// loads and follows the links topic (it is ready only once loaded).
	bin := proctest.Build(t, filepath.Join(pipelinetest.Root, "shipper"))
	replay := proctest.RunToExit(t, bin, []string{"dlq", "replay", "--config", shipCfg, "--dry-run", "--format", "json"},
		filepath.Join(dir, "replay.log"), time.Minute)
	if replay.Code != 0 || !regexp.MustCompile(`"read":\s*1\b`).MatchString(replay.Log) ||
		!regexp.MustCompile(`"still_invalid":\s*1\b`).MatchString(replay.Log) {
		t.Fatalf("dlq replay over SASL_SSL: exit %d:\n%s", replay.Code, replay.Log)
	}
	_, crmYAML := pipelinetest.FakeCRM(t, dir, 50, links, run)
	alias2, crmHTTP := "test-crm"+run, proctest.FreeAddr(t) // not alias-*: index templates must not overlap
	pipelinetest.DropIndicesAtCleanup(t, ep, alias2)
	crmCfg := filepath.Join(dir, "shipper-crm.yaml")
	writeSecuredFile(t, crmCfg, fmt.Sprintf("kafka:\n  brokers: [%q]\n  topic: %s\n  dead_letter_topic: %s\n  group_id: %s-crm\n%selasticsearch:\n  urls: [%q]\n  alias: %s\nloki:\n  url: %s\n  labels: {app: assistlog-test, deployment: %s-crm}\npii:\n  hash_secret: pipelinetest-secret-0123456789\nhttp:\n  listen: %s\n%s",
		k.Brokers, topic, dlq, run, security("SCRAM-SHA-256", "ASSISTLOG_TEST_SHIPPER_KAFKA_PASSWORD"), ep.ElasticsearchURL, alias2, ep.LokiURL, run, crmHTTP, crmYAML))
	crmShip := proctest.Start(t, bin, []string{"--config", crmCfg}, filepath.Join(dir, "shipper-crm.log"), "http://"+crmHTTP+"/readyz")
	t.Cleanup(crmShip.Kill)
	stacktest.Eventually(t, 2*time.Minute, "every event stored by the shipper with the CRM stage", func() error {
		if got := securedStored(t, ep, alias2); got != n {
			return fmt.Errorf("%d of %d events stored; log:\n%s", got, n, crmShip.LogTail(10))
		}
		return nil
	})
	if strings.Contains(crmShip.LogTail(500), "SASL") || strings.Contains(crmShip.LogTail(500), "x509") {
		t.Fatalf("the shipper with the CRM stage had a TLS or SASL failure:\n%s", crmShip.LogTail(40))
	}
}

func writeSecuredFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func httpStatusOf(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// readSecured reads every message of topic (all partitions) as the admin.
func readSecured(t *testing.T, ctx context.Context, k *stack.SecuredKafka, topic string, partitions int) []kafkago.Message {
	t.Helper()
	conn, err := k.AdminConnector()
	if err != nil {
		t.Fatal(err)
	}
	var out []kafkago.Message
	for p := range partitions {
		lc, err := conn.DialLeader(ctx, topic, p)
		if err != nil {
			t.Fatal(err)
		}
		first, last, err := lc.ReadOffsets()
		lc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if last == first {
			continue
		}
		r := conn.Reader(kafkago.ReaderConfig{Topic: topic, Partition: p, MaxWait: 200 * time.Millisecond})
		if err := r.SetOffset(first); err != nil {
			t.Fatal(err)
		}
		for off := first; off < last; {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				r.Close()
				t.Fatal(err)
			}
			out = append(out, m)
			off = m.Offset + 1
		}
		r.Close()
	}
	return out
}

// countStored is how many documents the alias holds (0 before it exists).
func securedStored(t *testing.T, ep stack.Endpoints, alias string) int {
	t.Helper()
	if resp, err := http.Post(ep.ElasticsearchURL+"/"+alias+"/_refresh", "application/json", nil); err == nil {
		resp.Body.Close()
	}
	resp, err := http.Get(ep.ElasticsearchURL + "/" + alias + "/_count")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return 0
	}
	var c struct {
		Count int `json:"count"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		t.Fatal(err)
	}
	return c.Count
}
