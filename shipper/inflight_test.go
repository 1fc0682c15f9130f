package main

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/assistlog/assistlog/internal/elastic"
	"github.com/assistlog/assistlog/internal/errpolicy"
	"github.com/assistlog/assistlog/internal/event"
	"github.com/assistlog/assistlog/internal/kafka"
	"github.com/assistlog/assistlog/internal/loki"
	"github.com/assistlog/assistlog/internal/pii"
	"github.com/assistlog/assistlog/internal/stacktest"
)

// heldFirst passes every write to the real Elasticsearch, holding the
// first batch's until released, and counts the writes under way at once.
type heldFirst struct {
	esSink
	release chan struct{}
	mu      sync.Mutex
	calls   int
	now     int
	most    int
	ids     map[string]bool // the held batch's event ids
}

func (h *heldFirst) WriteReport(ctx context.Context, docs []elastic.Doc) (elastic.Report, error) {
	h.mu.Lock()
	h.calls++
	first := h.calls == 1
	if first {
		h.ids = map[string]bool{}
		for _, d := range docs {
			h.ids[d.ID] = true
		}
	}
	h.now++
	h.most = max(h.most, h.now)
	h.mu.Unlock()
	defer func() { h.mu.Lock(); h.now--; h.mu.Unlock() }()
	if first {
		<-h.release
	}
	return h.esSink.WriteReport(ctx, docs)
}

func (h *heldFirst) seen() (calls, most int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls, h.most
}

// TestBatchesInFlightCommitInOrder runs the consumer and pipeline on the
// real Kafka, Elasticsearch and Loki with the first batch's Elasticsearch
// write held back: the later batches must be shipped meanwhile (several in
// flight, issue 14) and yet nothing may be committed past the held batch;
// once it is released every event is stored and committed. Before
// batches_in_flight the shipper waited on the held batch alone.
func TestBatchesInFlightCommitInOrder(t *testing.T) {
	e := newEnv(t)
	evs, _ := e.generate(40)
	e.produce(evs)
	group := "group-" + e.run

	cfg := DefaultConfig()
	cfg.Kafka.Brokers, cfg.Kafka.Topic, cfg.Kafka.DeadLetterTopic, cfg.Kafka.GroupID = []string{e.ep.KafkaBrokers}, e.topic, e.dlq, group
	cfg.Kafka.BatchSize, cfg.Kafka.BatchWait, cfg.Kafka.BatchesInFlight = 100, 200*time.Millisecond, 4
	cfg.Elasticsearch.URLs, cfg.Elasticsearch.Alias = []string{e.ep.ElasticsearchURL}, e.alias
	cfg.Loki.URL = e.ep.LokiURL
	cfg.Loki.Labels = map[string]string{"app": "assistlog-test", "deployment": e.run}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	reg := prometheus.NewRegistry()
	pol, err := errpolicy.New(cfg.Retry, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	w, err := elastic.New(cfg.Elasticsearch, pol, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	es, err := elastic.NewStores(w)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := es.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	lk, err := loki.New(cfg.Loki.Config, pol, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	dlq, err := kafka.NewProducer(cfg.Kafka.ProducerConfig, pol, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	defer dlq.Close()
	masker, err := pii.New(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	m, err := newPipelineMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	held := &heldFirst{esSink: es, release: make(chan struct{})}
	p := &pipeline{es: held, loki: lk, dlq: dlq, dlqTopic: e.dlq, masker: masker, lokiLabels: cfg.Loki.Labels, log: log, m: m}
	cons, err := newConsumer(cfg, p, pol, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cons.Run(ctx) }()

	client := &kafkago.Client{Addr: kafkago.TCP(e.ep.KafkaBrokers), Timeout: 10 * time.Second}
	offsets := func() []kafka.PartitionOffsets {
		parts, err := kafka.GroupOffsets(ctx, client, e.topic, group)
		if err != nil {
			t.Fatal(err)
		}
		return parts
	}
	committed := func() int64 {
		var n int64
		for _, p := range offsets() {
			n += p.Committed - p.First
		}
		return n
	}
	// While the first batch is held, the next ones reach Elasticsearch ...
	deadline := time.Now().Add(time.Minute)
	for calls, _ := held.seen(); calls < cfg.Kafka.BatchesInFlight; calls, _ = held.seen() {
		if time.Now().After(deadline) {
			t.Fatalf("only %d batch(es) reached Elasticsearch while the first was held: batches are not shipped side by side", calls)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // ... and are through both sinks, waiting to be committed
	// Where the held batch starts in each partition: no commit may pass it
	// (batches fetched before it may be committed, none after).
	heldFrom := map[int]int64{}
	for _, m := range stacktest.ReadTopic(t, e.ep.KafkaBrokers, e.topic) {
		ev, err := event.Parse(m.Value)
		if err != nil {
			t.Fatal(err)
		}
		if from, ok := heldFrom[m.Partition]; held.ids[ev.EventID] && (!ok || m.Offset < from) {
			heldFrom[m.Partition] = m.Offset
		}
	}
	if len(heldFrom) == 0 {
		t.Fatal("the held batch's events are not in the topic")
	}
	for _, p := range offsets() {
		if from, ok := heldFrom[p.Partition]; ok && p.Committed > from {
			t.Fatalf("partition %d committed to %d past the held batch, which starts at %d", p.Partition, p.Committed, from)
		}
	}
	close(held.release)
	deadline = time.Now().Add(2 * time.Minute)
	for committed() < int64(len(evs)) {
		if time.Now().After(deadline) {
			t.Fatalf("committed %d of %d after the release", committed(), len(evs))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, most := held.seen(); most < 2 {
		t.Fatalf("at most %d batch in Elasticsearch at once", most)
	}
	e.waitShipped(len(evs), time.Minute) // each event once in Elasticsearch and in Loki
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
