package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/assistlog/assistlog/internal/errpolicy"
	"github.com/assistlog/assistlog/internal/kafka"
)

// consumer reads the events topic in a consumer group and commits, per
// partition, only offsets whose messages both sinks acknowledged: a batch is
// fetched, shipped, and then committed as a whole (commit by mark, never by
// time).
type consumer struct {
	r        *kafkago.Reader
	p        *pipeline
	size     int
	wait     time.Duration
	linger   time.Duration // a batch is shipped once no message came for this long
	inFlight int           // batches shipped at once
	// lokiWindow is how far behind its stream's newest Loki still takes
	// an entry (max_chunk_age/2): the span within which batches' Loki
	// pushes need no order (streamOrder).
	lokiWindow time.Duration
	shutdown   time.Duration
	log        *slog.Logger
	// pol waits out fetches that fail: a refused password or ACL pauses
	// (assistlog_destination_paused{destination="kafka"}), the rest retry.
	pol *errpolicy.Policy
	lag prometheus.Gauge
	// lagFrom computes the group's lag from what the brokers say, every
	// lagEvery, independently of shipping.
	lagFrom *kafkago.Client
	group   string
	topic   string
}

func newConsumer(cfg Config, p *pipeline, pol *errpolicy.Policy, log *slog.Logger, reg prometheus.Registerer) (*consumer, error) {
	if reg == nil || pol == nil {
		return nil, errors.New("consumer: a metrics registry and an error policy are required")
	}
	kc, err := kafka.NewConnector(cfg.Kafka.ClientConfig, log)
	if err != nil {
		return nil, err
	}
	r := kc.Reader(kafkago.ReaderConfig{
		GroupID:        cfg.Kafka.GroupID,
		Topic:          cfg.Kafka.Topic,
		MinBytes:       1,
		MaxBytes:       16 << 20,
		MaxWait:        250 * time.Millisecond,
		CommitInterval: 0, // synchronous commits, after the sinks acknowledged
		StartOffset:    kafkago.FirstOffset,
		// A departed instance's partitions move quickly to the others.
		SessionTimeout:    10 * time.Second,
		HeartbeatInterval: 2 * time.Second,
		RebalanceTimeout:  15 * time.Second,
	})
	lag := prometheus.NewGauge(prometheus.GaugeOpts{Name: "assistlog_shipper_consumer_lag",
		Help:        "Messages of the topic not yet committed by the consumer group (the end of each partition minus the group's committed offset), measured every 5s.",
		ConstLabels: prometheus.Labels{"group": cfg.Kafka.GroupID, "topic": cfg.Kafka.Topic}})
	if err := reg.Register(lag); err != nil {
		return nil, fmt.Errorf("register consumer metrics: %w", err)
	}
	inFlight := cfg.Kafka.BatchesInFlight
	if cfg.CRM.Enabled {
		// A batch's enrichment reads the links the batch before asked for
		// (its status, its requests): CRM batches go one at a time.
		inFlight = 1
	}
	return &consumer{r: r, p: p, pol: pol, size: cfg.Kafka.BatchSize, inFlight: max(inFlight, 1), lokiWindow: cfg.Loki.OutOfOrderWindow(), wait: cfg.Kafka.BatchWait, linger: cfg.Kafka.BatchLinger, shutdown: cfg.ShutdownTimeout, log: log, lag: lag,
		lagFrom: kc.Client(10 * time.Second),
		group:   cfg.Kafka.GroupID, topic: cfg.Kafka.Topic}, nil
}

// lagEvery is how often the group's lag is measured.
const lagEvery = 5 * time.Second

// watchLag sets the lag gauge every lagEvery until ctx ends. It is measured
// from the brokers (ListOffsets against the group's OffsetFetch), not from
// the batches shipped, so it keeps growing while shipping is stuck, which
// is when the lag alert must fire. A failed measurement keeps the last
// value and is logged: Kafka away is the consumer's failure to report.
func (c *consumer) watchLag(ctx context.Context) error {
	t := time.NewTicker(lagEvery)
	defer t.Stop()
	for {
		if lag, err := c.groupLag(ctx); err == nil {
			c.lag.Set(float64(lag))
		} else if ctx.Err() == nil {
			c.log.Warn("measure consumer lag", "group", c.group, "topic", c.topic, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// groupLag is the sum over the topic's partitions of the end minus the
// group's committed offset.
func (c *consumer) groupLag(ctx context.Context) (int64, error) {
	parts, err := kafka.GroupOffsets(ctx, c.lagFrom, c.topic, c.group)
	if err != nil {
		return 0, err
	}
	var lag int64
	for _, p := range parts {
		lag += max(p.Last-p.Committed, 0)
	}
	return lag, nil
}

// fetch collects up to size messages, waiting at most wait after the
// first. While the topic is caught up (every partition's last message in
// the batch was the end of that partition when it was fetched) it waits
// at most linger for each next one: what a live topic holds now is
// shipped now. Behind, with more already in Kafka, it fills the batch:
// cutting a backlog into small batches at every pause of the fetches would
// multiply the sink requests (each batch's Loki push waits for the one
// before) and fall further behind.
func (c *consumer) fetch(ctx context.Context) ([]kafkago.Message, error) {
	first, err := c.r.FetchMessage(ctx)
	if err != nil {
		return nil, err
	}
	batch := []kafkago.Message{first}
	deadline := time.Now().Add(c.wait)
	behind := map[int]bool{} // partition → more was in Kafka after its last message here
	lagging := 0             // partitions behind
	note := func(m kafkago.Message) {
		was, now := behind[m.Partition], m.Offset+1 < m.HighWaterMark
		behind[m.Partition] = now
		switch {
		case now && !was:
			lagging++
		case was && !now:
			lagging--
		}
	}
	note(first)
	for len(batch) < c.size {
		gap := time.Until(deadline)
		if lagging == 0 {
			gap = min(gap, c.linger)
		}
		if gap <= 0 {
			break
		}
		fctx, cancel := context.WithTimeout(ctx, gap)
		m, err := c.r.FetchMessage(fctx)
		cancel()
		if err != nil {
			break // caught up and idle, the wait ran out, or shutdown: ship what we have
		}
		batch = append(batch, m)
		note(m)
	}
	return batch, nil
}

// flight is one batch being shipped; done receives ship's result.
type flight struct {
	batch []kafkago.Message
	start time.Time
	done  chan error
}

// Run consumes until ctx ends. Up to inFlight batches are shipped at once
// (the sinks work on one while the next is prepared or sent), each Loki
// stream pushed in fetch order (lokiTurn), and their
// offsets are committed strictly in fetch order, each only after every
// batch before it was acknowledged and committed: a batch that fails holds
// back every later one. When ctx ends, the batches in flight get up to the
// shutdown timeout to be acknowledged and committed.
func (c *consumer) Run(ctx context.Context) error {
	defer c.r.Close()
	var refused *errpolicy.Attempts // fetches failing in a row
	// Shipping and committing outlive ctx by the shutdown timeout, so a
	// SIGTERM finishes the batches rather than throwing them away.
	sendCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(c.shutdown, cancel) })
	defer stop()
	// fetchCtx also ends when the committer gave up.
	fetchCtx, abort := context.WithCancel(ctx)
	defer abort()

	var lokiDone <-chan struct{} // the last batch's turn at Loki (lokiTurn)
	streams := newStreamOrder(c.lokiWindow)
	slots := make(chan struct{}, c.inFlight)
	queue := make(chan *flight, c.inFlight)
	committed := make(chan error, 1)
	go func() { committed <- c.commitInOrder(sendCtx, queue, slots, abort) }()

	for {
		select {
		case slots <- struct{}{}:
		case <-fetchCtx.Done():
		}
		if fetchCtx.Err() != nil {
			break
		}
		batch, err := c.fetch(fetchCtx)
		if err != nil {
			<-slots
			if fetchCtx.Err() != nil {
				break
			}
			// The reader keeps its place and tries again by itself: a
			// password the brokers refuse, or a group coordinator not yet
			// elected, is waited out rather than a reason to exit.
			if refused == nil {
				refused = c.pol.Start(kafka.Destination)
			}
			if refused.Wait(fetchCtx, fmt.Errorf("fetch from kafka: %w", kafka.Classify(err))) != nil {
				break
			}
			continue
		}
		if refused != nil {
			refused.Done()
			refused = nil
		}
		f := &flight{batch: batch, start: time.Now(), done: make(chan error, 1)}
		turn := lokiTurn{prev: lokiDone, done: make(chan struct{}), streams: streams}
		lokiDone = turn.done
		go func() { f.done <- c.p.ship(sendCtx, f.batch, turn) }()
		queue <- f
	}
	close(queue)
	err := <-committed
	switch {
	case err != nil && ctx.Err() != nil:
		c.log.Warn("shutdown before every batch was acknowledged; the rest will be shipped again", "err", err)
		return nil
	case err != nil:
		return err
	}
	return nil
}

// commitInOrder takes the batches in fetch order, waits for each to be
// shipped and commits it, freeing its slot. After a failure it commits
// nothing more (later batches are shipped again by the next owner), stops
// the fetching and returns the first error once every batch is done.
func (c *consumer) commitInOrder(ctx context.Context, queue <-chan *flight, slots <-chan struct{}, abort func()) error {
	var first error
	for f := range queue {
		err := <-f.done
		if err == nil && first == nil {
			err = c.commit(ctx, f.batch)
		}
		if err == nil && first == nil {
			c.p.m.batch.Observe(time.Since(f.start).Seconds())
		}
		if err != nil && first == nil {
			first = err
			abort()
		}
		<-slots
	}
	return first
}

// commit stores the batch's offsets. A commit refused because the group
// rebalanced is not fatal: the new owner ships those messages again, which
// the sinks absorb (create-if-absent by event_id; Loki deduplicates).
func (c *consumer) commit(ctx context.Context, batch []kafkago.Message) error {
	err := c.r.CommitMessages(ctx, batch...)
	if err == nil {
		return nil
	}
	if errors.Is(err, kafkago.RebalanceInProgress) || errors.Is(err, kafkago.IllegalGeneration) ||
		errors.Is(err, kafkago.UnknownMemberId) || errors.Is(err, kafkago.NotCoordinatorForGroup) {
		c.log.Warn("commit refused by a rebalance; the messages will be shipped again by their new owner", "messages", len(batch), "err", err)
		return nil
	}
	return fmt.Errorf("commit offsets: %w", err)
}
