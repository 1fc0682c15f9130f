package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/assistlog/assistlog/internal/deadletter"
	"github.com/assistlog/assistlog/internal/event"
	"github.com/assistlog/assistlog/internal/kafka"
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
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
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

	e.topic = topic
	e.lokiURL = lk.URL
	e.batching = "  batch_messages: 50\n  batch_wait: 200ms\n  batches_in_flight: 4\n"
	e.start()

	start := time.Now()
	// Committed: every batch is through Elasticsearch and Loki, and what
	// Loki refused is in the dead-letter topic.
	client := &kafkago.Client{Addr: kafkago.TCP(e.ep.KafkaBrokers), Timeout: 10 * time.Second}
	stacktest.Eventually(t, 3*time.Minute, "the backfill committed", func() error {
		parts, err := kafka.GroupOffsets(ctx, client, topic, "group-"+e.run)
		if err != nil {
			return err
		}
		for _, p := range parts {
			if p.Committed < p.Last {
				return fmt.Errorf("partition %d committed to %d of %d", p.Partition, p.Committed, p.Last)
			}
		}
		return nil
	})
	t.Logf("all %d shipped and committed after %s", len(evs), time.Since(start).Round(time.Millisecond))
	q := fmt.Sprintf(`sum(count_over_time({deployment=%q}[8d]))`, e.run)
	if dead := stacktest.ReadTopic(t, e.ep.KafkaBrokers, e.dlq); len(dead) > 0 {
		reasons := map[string]int{}
		var example string
		for _, m := range dead {
			rec := deadletter.FromMessage(m)
			reasons[rec.Reason]++
			example = rec.Error
		}
		t.Fatalf("%d of %d events dead-lettered (%v), e.g. %q", len(dead), len(evs), reasons, example)
	}
	// Loki answers for entries older than query_ingesters_within (3h) only
	// from flushed chunks, which an idle stream gets after chunk_idle_period
	// plus a flush check (about 2 minutes here, more under load): flushed
	// now, so the count does not wait on that.
	if resp, err := http.Post(lk.URL+"/flush", "", nil); err == nil {
		resp.Body.Close()
	} else {
		t.Fatal(err)
	}
	// Counted at the newest event (a follow-up may be minutes ahead of now).
	at := evs[len(evs)-1].Time().Add(time.Second)
	var inLoki int
	defer func() {
		if t.Failed() && inLoki < len(evs) {
			lokiShortfall(t, lk.URL, e.run, evs, at)
		}
	}()
	stacktest.Eventually(t, 2*time.Minute, "events in Loki", func() error {
		if inLoki, err = stacktest.LokiInstant(ctx, lk.URL, "", q, at); err != nil || inLoki != len(evs) {
			return fmt.Errorf("%d of %d (%v)", inLoki, len(evs), err)
		}
		return nil
	})
	if n, _ := e.esSearch("*", 0); n != len(evs) {
		t.Fatalf("Elasticsearch holds %d of %d", n, len(evs))
	}
	t.Logf("%d events spanning %s in batches of 50, 4 in flight: all in Loki after %s, none dead-lettered", len(evs), span.Round(time.Hour),
		time.Since(start).Round(time.Millisecond))
}

// TestIdleTopicShipsPartialBatch: a few events on a topic that then stays
// quiet are shipped once no more come (batch_linger), not when batch_wait
// runs out. batch_wait is set to a minute so the two cannot be confused:
// the events must be committed, in Elasticsearch and in Loki well before.
// Waiting out batch_wait for a batch that could not fill added up to half a
// second (the default) to every event's latency (bench row 5).
func TestIdleTopicShipsPartialBatch(t *testing.T) {
	e := newEnv(t)
	evs, _ := e.generate(2)
	for i := range evs { // a live assistant's events: Loki answers for them from its ingester at once
		evs[i].Timestamp = time.Now().UTC().Add(time.Duration(i-len(evs)) * time.Millisecond).Format(time.RFC3339Nano)
	}
	const wait = time.Minute
	e.batching = fmt.Sprintf("  batch_messages: 1000\n  batch_wait: %s\n", wait)
	e.start()
	produced := time.Now()
	e.produce(evs)
	stacktest.Eventually(t, wait/2, "the partial batch committed", func() error {
		if n, err := e.committed(); err != nil || n != int64(len(evs)) {
			return fmt.Errorf("%d of %d committed (%v)", n, len(evs), err)
		}
		return nil
	})
	took := time.Since(produced)
	e.waitShipped(len(evs), wait/2-took)
	t.Logf("%d events committed %s after they were produced, stored in both sinks after %s (batch_wait %s)",
		len(evs), took.Round(time.Millisecond), time.Since(produced).Round(time.Millisecond), wait)
}

// lokiShortfall tells a failing test which events Loki does not return and
// whether they appear once Loki flushed its chunks: not yet readable (an
// old entry still in an ingester's memory is read only after the flush,
// query_ingesters_within) or lost.
func lokiShortfall(t *testing.T, base, run string, evs []event.Event, at time.Time) {
	t.Helper()
	missing := func() []event.Event {
		v := url.Values{"query": {fmt.Sprintf(`sum by (event_id) (count_over_time({deployment=%q}[8d]))`, run)},
			"time": {strconv.FormatInt(at.UnixNano(), 10)}}
		resp, err := http.Get(base + "/loki/api/v1/query?" + v.Encode())
		if err != nil {
			t.Log(err)
			return nil
		}
		defer resp.Body.Close()
		var r struct {
			Data struct {
				Result []struct {
					Metric map[string]string `json:"metric"`
				} `json:"result"`
			} `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			t.Log(err)
			return nil
		}
		have := map[string]bool{}
		for _, s := range r.Data.Result {
			have[s.Metric["event_id"]] = true
		}
		var out []event.Event
		for _, e := range evs {
			if !have[e.EventID] {
				out = append(out, e)
			}
		}
		return out
	}
	gone := missing()
	for i, e := range gone {
		if i == 10 {
			t.Logf("... %d more", len(gone)-i)
			break
		}
		t.Logf("not in Loki: %s %s %s/%s/%s/%s", e.EventID, e.Timestamp, e.Tenant, e.Channel, e.Type, e.Level)
	}
	if resp, err := http.Post(base+"/flush", "", nil); err == nil {
		resp.Body.Close()
	}
	for wait := 0; wait < 6 && len(gone) > 0; wait++ {
		time.Sleep(10 * time.Second)
		gone = missing()
		t.Logf("%ds after Loki's /flush: %d not in Loki", 10*(wait+1), len(gone))
	}
}
