package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/assistlog/assistlog/internal/deadletter"
	"github.com/assistlog/assistlog/internal/proctest"
	"github.com/assistlog/assistlog/internal/stacktest"
	"github.com/assistlog/assistlog/stack"
)

// TestBackfillInFlightReachesLoki ships a backfill (six days of generated
// events, in time order, as a replayed log is) with several small batches
// in flight into a Loki with its default out-of-order window
// (max_chunk_age 2h: an entry more than 1 h behind the newest of its stream
// is refused, "entry too far behind"). Every event must be readable in Loki
// and none dead-lettered. Batches shipped side by side used to reach Loki
// in whatever order their Elasticsearch writes finished, so a later batch
// (hours newer) could land first and get the earlier one refused.
func TestBackfillInFlightReachesLoki(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// The shared Loki's window is widened to 7 days (stack/loki_config.go);
	// this one has Loki's default, as a fresh installation does.
	lk, err := stack.StartLoki(ctx, stack.ExtraLokiConfig{Name: "ship-backfill", HTTPPort: 13161, GRPCPort: 19161,
		Args: []string{"-ingester.max-chunk-age=2h"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lk.Stop)

	evs, _ := e.generate(300)
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].Time().Before(evs[j].Time()) })
	span := evs[len(evs)-1].Time().Sub(evs[0].Time())
	if span < 24*time.Hour {
		t.Fatalf("the backfill spans %s; the test needs days", span)
	}
	// One partition: the topic holds the backfill in time order, so a
	// shipper keeping that order gives Loki every stream in order.
	topic := e.topic + "-one"
	stacktest.CreateTopics(t, e.ep.KafkaBrokers, map[string]int{topic: 1})
	produceEvents(t, e.ep.KafkaBrokers, topic, evs)

	addr := proctest.FreeAddr(t)
	cfg := fmt.Sprintf(`kafka:
  brokers: [%q]
  topic: %s
  dead_letter_topic: %s
  group_id: group-%s
  batch_messages: 50
  batch_wait: 200ms
  batches_in_flight: 4
retry: {max_backoff: 2s, pause_interval: 2s}
elasticsearch:
  urls: [%q]
  alias: %s
loki:
  url: %s
  labels: {app: assistlog-test, deployment: %s}
pii:
  hash_secret: %q
http:
  listen: %s
`, e.ep.KafkaBrokers, topic, e.dlq, e.run, e.ep.ElasticsearchURL, e.alias, lk.URL, e.run, testSecret, addr)
	path := filepath.Join(e.dir, "shipper-backfill.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	e.procs = append(e.procs, proctest.Start(t, proctest.Build(t, "."), []string{"--config", path},
		filepath.Join(e.dir, "shipper-backfill.log"), "http://"+addr+"/readyz"))

	start := time.Now()
	// Elasticsearch is written first: once it holds every event the Loki
	// pushes are done or under way; a refused entry is dead-lettered.
	stacktest.Eventually(t, 3*time.Minute, "events in Elasticsearch", func() error {
		if n, _ := e.esSearch("*", 0); n != len(evs) {
			return fmt.Errorf("%d of %d", n, len(evs))
		}
		return nil
	})
	t.Logf("all %d in Elasticsearch after %s", len(evs), time.Since(start).Round(time.Millisecond))
	q := fmt.Sprintf(`sum(count_over_time({deployment=%q}[8d]))`, e.run)
	var inLoki int
	stacktest.Eventually(t, 2*time.Minute, "events in Loki, none dead-lettered", func() error {
		if dead := stacktest.ReadTopic(t, e.ep.KafkaBrokers, e.dlq); len(dead) > 0 {
			reasons := map[string]int{}
			var example string
			for _, m := range dead {
				rec := deadletter.FromMessage(m)
				reasons[rec.Reason]++
				example = rec.Error
			}
			t.Fatalf("%d of %d events dead-lettered (%v), e.g. %q; %d in Loki", len(dead), len(evs), reasons, example,
				stacktest.LokiScalar(t, lk.URL, q))
		}
		if inLoki = stacktest.LokiScalar(t, lk.URL, q); inLoki != len(evs) {
			return fmt.Errorf("%d of %d", inLoki, len(evs))
		}
		return nil
	})
	t.Logf("%d events spanning %s in batches of 50, 4 in flight: all in Loki after %s, none dead-lettered", len(evs), span.Round(time.Hour),
		time.Since(start).Round(time.Millisecond))
}
