package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/assistlog/assistlog/internal/deadletter"
	"github.com/assistlog/assistlog/internal/pipelinetest"
	"github.com/assistlog/assistlog/internal/stacktest"
)

// TestShipperAcceptsNeighbourMinors is docs/schema-evolution.md's rolling
// upgrade check: the shipper of this version stores events as the previous
// collector wrote them (no seq, no schema_minor) and as a collector of the
// next minor would (schema_minor 3 with a field this version does not
// know), while an unknown field without a newer minor is still refused.
func TestShipperAcceptsNeighbourMinors(t *testing.T) {
	ep := stacktest.Require(t, stacktest.Kafka, stacktest.Elasticsearch, stacktest.Loki)
	run := fmt.Sprintf("minor%d", time.Now().UnixNano()%1e9)
	topic, dlq, alias := "test-events-"+run, "test-dlq-"+run, "test-"+run
	stacktest.CreateTopics(t, ep.KafkaBrokers, map[string]int{topic: 1, dlq: 1})
	line := func(id, extra string) string {
		return `{"event_id":"` + id + `","timestamp":"2026-11-27T10:00:00+05:00","tenant":"salon-aurora","channel":"telegram","session_id":"s-` + run +
			`","event_type":"message.received","level":"info","payload":{"text":"Здравствуйте"},"schema_version":1` + extra + `}`
	}
	sent := map[string]string{
		run + "-prev":  line(run+"-prev", ""),                                                       // the previous collector: no seq
		run + "-cur":   line(run+"-cur", `,"seq":2,"schema_minor":2,"pii_masked":["payload.text"]`), // this version
		run + "-next":  line(run+"-next", `,"seq":3,"schema_minor":3,"sentiment":"ok"`),             // the next minor
		run + "-typo":  line(run+"-typo", `,"sesion_id":"x"`),                                       // a typo, not a minor
		run + "-typo1": line(run+"-typo1", `,"schema_minor":2,"sentiment":"ok"`),                    // unknown to its own minor
	}
	w := &kafkago.Writer{Addr: kafkago.TCP(ep.KafkaBrokers), Topic: topic, RequiredAcks: kafkago.RequireAll}
	var msgs []kafkago.Message
	for _, v := range sent {
		msgs = append(msgs, kafkago.Message{Key: []byte("salon-aurora/s-" + run), Value: []byte(v)})
	}
	if err := w.WriteMessages(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
	w.Close()
	pipelinetest.StartShipper(t, ep, pipelinetest.Shipper{Dir: t.TempDir(), Topic: topic, DLQ: dlq, Group: run, Alias: alias,
		Labels: "{app: assistlog-test, deployment: " + run + "}"})
	pipelinetest.DropIndicesAtCleanup(t, ep, alias)

	stored := map[string]map[string]any{}
	stacktest.Eventually(t, 2*time.Minute, "three events stored, two dead-lettered", func() error {
		http.Post(ep.ElasticsearchURL+"/"+alias+"/_refresh", "application/json", nil)
		resp, err := http.Get(ep.ElasticsearchURL + "/" + alias + "/_search?size=20")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var sr struct {
			Hits struct {
				Hits []struct {
					ID     string         `json:"_id"`
					Source map[string]any `json:"_source"`
				} `json:"hits"`
			} `json:"hits"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&sr); err != nil {
			return err
		}
		for _, h := range sr.Hits.Hits {
			stored[h.ID] = h.Source
		}
		if n := len(stacktest.ReadTopic(t, ep.KafkaBrokers, dlq)); len(stored) < 3 || n < 2 {
			return fmt.Errorf("%d stored, %d dead-lettered", len(stored), n)
		}
		return nil
	})
	for _, id := range []string{run + "-prev", run + "-cur", run + "-next"} {
		if stored[id] == nil {
			t.Errorf("%s not stored", id)
		}
	}
	if len(stored) != 3 {
		t.Errorf("stored %d events, want 3: %v", len(stored), stored)
	}
	if next := stored[run+"-next"]; next != nil && (next["seq"] != 3.0 || next["schema_minor"] != 3.0) {
		t.Errorf("next-minor event stored as %v", next)
	}
	dead := map[string]string{}
	for _, m := range stacktest.ReadTopic(t, ep.KafkaBrokers, dlq) {
		r := deadletter.FromMessage(m)
		var v struct {
			ID string `json:"event_id"`
		}
		_ = json.Unmarshal(r.Raw, &v)
		dead[v.ID] = r.Error
	}
	if dead[run+"-typo"] == "" || dead[run+"-typo1"] == "" || len(dead) != 2 {
		t.Errorf("dead letters %v; want the typo and the field unknown to its own minor", dead)
	}
}
