package main

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/assistlog/assistlog/internal/stacktest"
)

// resetGroup moves a consumer group with no member back to offset 0 on
// every partition of topic: what an operator does with
// kafka-consumer-groups --reset-offsets to re-drive a topic.
func resetGroup(t *testing.T, broker, group, topic string, partitions int) {
	t.Helper()
	var commits []kafkago.OffsetCommit
	for p := 0; p < partitions; p++ {
		commits = append(commits, kafkago.OffsetCommit{Partition: p, Offset: 0})
	}
	c := &kafkago.Client{Addr: kafkago.TCP(broker), Timeout: 30 * time.Second}
	stacktest.Eventually(t, time.Minute, "reset the group's offsets", func() error {
		resp, err := c.OffsetCommit(context.Background(), &kafkago.OffsetCommitRequest{GroupID: group, GenerationID: -1,
			Topics: map[string][]kafkago.OffsetCommit{topic: commits}})
		if err != nil {
			return err
		}
		for _, ps := range resp.Topics {
			for _, p := range ps {
				if p.Error != nil {
					return p.Error // e.g. the departed member's session has not expired yet
				}
			}
		}
		return nil
	})
}

// lokiOnce returns how many distinct event_ids this deployment's Loki lines
// carry and how many of them are on more than one line (aggregated in
// Loki: a per-event answer would exceed its series limit on large runs).
func (e *env) lokiOnce() (distinct, repeated int) {
	e.t.Helper()
	per := fmt.Sprintf(`sum by (event_id) (count_over_time({deployment=%q}[8d]))`, e.run)
	return stacktest.LokiScalar(e.t, e.ep.LokiURL, "count("+per+")"), stacktest.LokiScalar(e.t, e.ep.LokiURL, "count("+per+" > 1)")
}

// checkLokiOnce fails unless Loki holds every one of want event ids on
// exactly one line.
func (e *env) checkLokiOnce(want int) {
	e.t.Helper()
	if distinct, repeated := e.lokiOnce(); distinct != want || repeated != 0 {
		e.t.Fatalf("loki holds %d event ids of %d, %d of them on more than one line", distinct, want, repeated)
	}
}

// TestReplayStoresNothingTwice ships a topic, flushes Loki's chunks (Loki
// drops an identical entry only while it is still in the head chunk), then
// re-drives the same offsets through the same consumer group, as after a
// crash before the commit or a commit refused by a rebalance. Elasticsearch,
// OpenSearch (written by the same shipper) and Loki must each hold every
// event exactly once: Loki's line count per
// event_id is 1 for every event. Before, the replay pushed every line again
// and Loki kept both copies once the first had been flushed.
func TestReplayStoresNothingTwice(t *testing.T) {
	e := newEnv(t)
	e.withOpenSearch()
	evs, _ := e.generate(4)
	e.produce(evs)
	first := e.start()
	e.waitShipped(len(evs), 2*time.Minute)
	first.Stop(20 * time.Second)

	resp, err := http.Post(e.ep.LokiURL+"/flush", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusOK {
		t.Fatalf("loki /flush: %s", resp.Status)
	}
	time.Sleep(3 * time.Second) // the flush runs in the background

	resetGroup(t, e.ep.KafkaBrokers, "group-"+e.run, e.topic, 6)
	second := e.start()
	addr := e.addrs[len(e.addrs)-1]
	// Every event is found in Elasticsearch (409) and then in Loki, so
	// none is pushed again; then both sinks acknowledged the whole topic.
	for _, sink := range []string{"elasticsearch", "loki"} {
		series := fmt.Sprintf(`assistlog_shipper_replayed_events_total{sink=%q}`, sink)
		stacktest.Eventually(t, 2*time.Minute, "the replay reaches the end of the topic", func() error {
			if v := metricValue(t, addr, series); int(v) != len(evs) {
				return fmt.Errorf("%s = %v, want %d; log:\n%s", series, v, len(evs), second.LogTail(5))
			}
			return nil
		})
	}
	stacktest.Eventually(t, time.Minute, "the replay is acknowledged", func() error {
		if v := metricValue(t, addr, "assistlog_shipper_events_total"); int(v) != len(evs) {
			return fmt.Errorf("shipped %v of %d", v, len(evs))
		}
		return nil
	})
	time.Sleep(2 * time.Second)
	e.checkLokiOnce(len(evs))
	e.onEachStore(func(store string) { e.exactSet(evs) })
}

// TestReplayAfterTheLeadResolved is the replay the issue names: events
// shipped while their conversation's lead was unknown (the CRM down), the
// lead found since, then the same offsets shipped again. Loki must still
// hold exactly one line per event_id (its copy never carries the
// enrichment, so the replayed line is the same bytes and is not pushed
// again), and every stored document of a conversation with a lead must be
// resolved with the lead's id. Before, the replay rendered the Loki line
// with the crm_id (a second, different line per event) and the
// Elasticsearch create answered 409, leaving any document still pending.
func TestReplayAfterTheLeadResolved(t *testing.T) {
	e := newEnv(t)
	fake := e.withCRM(25)
	evs, _ := e.generate(12)
	fake.SetDown(true)
	first := e.start()
	e.produce(evs)
	e.waitShipped(len(evs), 3*time.Minute)
	if n, _ := e.esSearch("crm_status:pending", 0); n == 0 {
		t.Fatal("no event was stored pending while the CRM was down: the replay would not test anything")
	}
	fake.SetDown(false)
	e.checkLinks(fake, evs, 4*time.Minute)
	first.Stop(20 * time.Second)

	resetGroup(t, e.ep.KafkaBrokers, "group-"+e.run, e.topic, 6)
	second := e.start()
	addr := e.addrs[len(e.addrs)-1]
	// The replay is over when every event went through both sinks again.
	series := `assistlog_shipper_events_total`
	stacktest.Eventually(t, 2*time.Minute, "the replay reaches the end of the topic", func() error {
		if v := metricValue(t, addr, series); int(v) != len(evs) {
			return fmt.Errorf("%s = %v, want %d; log:\n%s", series, v, len(evs), second.LogTail(5))
		}
		return nil
	})
	time.Sleep(2 * time.Second)
	e.checkLokiOnce(len(evs))
	e.checkLinks(fake, evs, time.Minute)
}
