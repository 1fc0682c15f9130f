package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/assistlog/assistlog/internal/deadletter"
	"github.com/assistlog/assistlog/internal/elastic"
	"github.com/assistlog/assistlog/internal/event"
	"github.com/assistlog/assistlog/internal/loki"
	"github.com/assistlog/assistlog/internal/pii"
	"github.com/assistlog/assistlog/internal/webhooksink"
)

// Dead-letter reasons of the shipper.
const (
	ReasonDecode        = "shipper_decode"
	ReasonElasticsearch = "elasticsearch_rejected"
	ReasonLoki          = "loki_rejected"
	ReasonWebhook       = "webhook_rejected"
	// ReasonPIIKey: the event's number was sealed with a key this shipper
	// lacks (the error names it); replay after adding the key to pii.keys.
	ReasonPIIKey = "pii_key"
)

// Sinks the pipeline writes to; the real ones in production and tests.
type esSink interface {
	WriteReport(ctx context.Context, docs []elastic.Doc) (elastic.Report, error)
	IndexFor(t time.Time) string
}

type lokiSink interface {
	Push(ctx context.Context, entries []loki.Entry) ([]loki.Rejection, error)
	Stored(ctx context.Context, entries []loki.Entry, key string) (map[string]bool, error)
}

type webhookSink interface {
	Selects(e *event.Event) bool
	Send(ctx context.Context, items []webhooksink.Item) ([]webhooksink.Rejection, error)
}

type dlqSink interface {
	Send(ctx context.Context, msgs []kafkago.Message) error
}

// pipeline turns a batch of Kafka messages into Elasticsearch documents and
// Loki lines, masked, and returns once both sinks acknowledged every event
// (or it was dead-lettered with the reason).
type pipeline struct {
	es         esSink
	loki       lokiSink
	webhook    webhookSink // nil: no webhook configured
	dlq        dlqSink
	dlqTopic   string
	masker     *pii.Masker
	crm        *linker // nil: CRM enrichment off
	lokiLabels map[string]string
	log        *slog.Logger
	m          pipelineMetrics
}

type pipelineMetrics struct {
	consumed    prometheus.Counter
	shipped     prometheus.Counter
	replayed    *prometheus.CounterVec
	deadLetters *prometheus.CounterVec
	batch       prometheus.Histogram
}

func newPipelineMetrics(reg prometheus.Registerer) (pipelineMetrics, error) {
	m := pipelineMetrics{
		consumed: prometheus.NewCounter(prometheus.CounterOpts{Name: "assistlog_shipper_consumed_total",
			Help: "Messages read from Kafka (a batch read again after a restart counts again)."}),
		shipped: prometheus.NewCounter(prometheus.CounterOpts{Name: "assistlog_shipper_events_total",
			Help: "Events acknowledged by Elasticsearch and Loki."}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "assistlog_shipper_dead_letters_total",
			Help: "Events sent to the dead-letter topic, by reason."}, []string{"reason"}),
		replayed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "assistlog_shipper_replayed_events_total",
			Help: "Events shipped again that a sink already held (after a crash, a rebalance, or a duplicate in Kafka), by sink; none is stored twice."},
			[]string{"sink"}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "assistlog_shipper_batch_seconds",
			Help: "Time from a batch's fetch to its commit.", Buckets: prometheus.ExponentialBuckets(0.01, 2, 14)}),
	}
	for _, c := range []prometheus.Collector{m.consumed, m.shipped, m.replayed, m.deadLetters, m.batch} {
		if err := reg.Register(c); err != nil {
			return m, fmt.Errorf("register shipper metrics: %w", err)
		}
	}
	return m, nil
}

// item is one message on its way through the batch.
type item struct {
	msg    kafkago.Message
	raw    *event.Event // before masking: the CRM requests need the number
	masked pii.Masked
	// status is the crm_status stored; ownCRMID: the event came with it.
	status   string
	ownCRMID bool
}

// document renders the masked event as stored in Elasticsearch: the
// event's own JSON object with the stored-only fields appended. The event
// has none of these keys; decoding it into a map to add them and encoding
// the map again took a third of the shipper's CPU (bench/NOTES.md).
func document(m pii.Masked, crmStatus string, ingested time.Time) ([]byte, error) {
	b, err := m.Event.Marshal()
	if err != nil {
		return nil, err
	}
	if len(b) < 2 || b[0] != '{' || b[len(b)-1] != '}' {
		return nil, fmt.Errorf("document of %s: the event is not a JSON object", m.Event.EventID)
	}
	doc := make([]byte, 0, len(b)+256)
	doc = append(doc, b[:len(b)-1]...)
	add := func(key string, v any) error {
		val, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("document of %s: %s: %w", m.Event.EventID, key, err)
		}
		if len(doc) > 1 {
			doc = append(doc, ',')
		}
		doc = append(doc, '"')
		doc = append(doc, key...)
		doc = append(doc, '"', ':')
		doc = append(doc, val...)
		return nil
	}
	fields := []struct {
		key string
		v   any
		on  bool
	}{
		{"@timestamp", m.Event.Timestamp, true},
		{"ingested_at", ingested.UTC().Format(time.RFC3339Nano), true},
		{"user_phone_hash", m.PhoneHash, m.PhoneHash != ""},
		{"pii_masked", m.Fields, len(m.Fields) > 0},
		{"crm_status", crmStatus, crmStatus != ""},
		{"crm_status", crmResolved, crmStatus == "" && m.Event.CRMID != ""},
	}
	for _, f := range fields {
		if f.on {
			if err := add(f.key, f.v); err != nil {
				return nil, err
			}
		}
	}
	return append(doc, '}'), nil
}

// lokiEntry is the Loki line of a masked event: low-cardinality labels,
// the masked event JSON as the line, ids as structured metadata. Loki's
// copy is immutable, so it holds the event as it came, never the CRM
// enrichment: a replay after the link resolved renders the same bytes
// (Elasticsearch is where the lead id is filled in).
func (p *pipeline) lokiEntry(it *item) (loki.Entry, error) {
	asCame := *it.masked.Event
	if !it.ownCRMID {
		asCame.CRMID = ""
	}
	e := &asCame
	line, err := e.Marshal()
	if err != nil {
		return loki.Entry{}, err
	}
	labels := map[string]string{"tenant": e.Tenant, "channel": e.Channel, "event_type": string(e.Type), "level": e.Level}
	for k, v := range p.lokiLabels {
		labels[k] = v
	}
	md := map[string]string{"session_id": e.SessionID, "event_id": e.EventID}
	if e.Intent != "" {
		md["intent"] = e.Intent
	}
	if e.CRMID != "" {
		md["crm_id"] = e.CRMID
	}
	return loki.Entry{Labels: labels, Stream: loki.Selector(labels), Time: e.Time(), Line: string(line), Metadata: md, Ref: it}, nil
}

func (p *pipeline) deadLetter(msg kafkago.Message, reason, errText, tenant string) kafkago.Message {
	rec := deadletter.Record{Reason: reason, Error: errText, Source: "shipper:" + msg.Topic + "/" + strconv.Itoa(msg.Partition),
		Offset: msg.Offset, Tenant: tenant, Raw: msg.Value}
	return rec.Message(p.dlqTopic)
}

// lokiTurn puts the Loki writes of batches shipped side by side in fetch
// order where Loki needs it: batches register their streams in fetch order
// (each waits for the batch before to have registered), and a stream's
// push waits for the earlier pushes of the same stream that it could get
// refused (streamOrder). Loki refuses an entry more than its out-of-order
// window (max_chunk_age/2, 1 h by default) behind the newest of its
// stream, and a backfill's batches are hours apart: pushed in the order
// their Elasticsearch writes happened to finish, a later batch landing
// first got the earlier one's entries refused as "entry too far behind"
// (TestBackfillInFlightReachesLoki). Live batches, seconds apart, push at
// once (TestStreamOrderWaitsOnlyWhereLokiWouldRefuse); Elasticsearch
// writes stay concurrent.
type lokiTurn struct {
	prev    <-chan struct{} // closed once the batch before has registered; nil: no batch before
	done    chan struct{}   // closed once this batch has; nil: no batch after
	streams *streamOrder    // nil: no ordering (one batch at a time)
}

// wait blocks until it is this batch's turn to register, or ctx ends.
func (t *lokiTurn) wait(ctx context.Context) error {
	if t.prev == nil {
		return nil
	}
	select {
	case <-t.prev:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for the batch before to reach loki: %w", ctx.Err())
	}
}

// finish hands the turn to the next batch; a batch that fails before its
// push hands it on too, so no batch waits for ever.
func (t *lokiTurn) finish() {
	if t.done != nil {
		close(t.done)
		t.done = nil
	}
}

// orderMargin keeps a push behind earlier ones whose oldest entry is
// nearly a window behind its newest.
const orderMargin = 5 * time.Minute

// streamOrder holds, per Loki stream, the pushes under way: their oldest
// entry, and a channel closed once the push returned.
type streamOrder struct {
	window  time.Duration
	mu      sync.Mutex
	pending map[string][]*streamPush
}

type streamPush struct {
	oldest time.Time
	done   chan struct{}
}

func newStreamOrder(window time.Duration) *streamOrder {
	return &streamOrder{window: window, pending: map[string][]*streamPush{}}
}

// register adds a push of a stream's entries from oldest to newest and
// returns the earlier pushes it must wait for: those with an entry Loki
// would refuse once it holds newest.
func (o *streamOrder) register(key string, oldest, newest time.Time) ([]<-chan struct{}, *streamPush) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var wait []<-chan struct{}
	for _, p := range o.pending[key] {
		if p.oldest.Before(newest.Add(-o.window + orderMargin)) {
			wait = append(wait, p.done)
		}
	}
	mine := &streamPush{oldest: oldest, done: make(chan struct{})}
	o.pending[key] = append(o.pending[key], mine)
	return wait, mine
}

// done releases the stream's later pushes waiting for this one.
func (o *streamOrder) done(key string, mine *streamPush) {
	o.mu.Lock()
	defer o.mu.Unlock()
	close(mine.done)
	ps := slices.DeleteFunc(o.pending[key], func(p *streamPush) bool { return p == mine })
	if len(ps) == 0 {
		delete(o.pending, key)
	} else {
		o.pending[key] = ps
	}
}

// pushInOrder pushes a batch's entries once the earlier pushes of its
// streams that need to land first have (lokiTurn), in one Push: the client
// sends the streams Loki cannot refuse in one request, the others alone.
func (p *pipeline) pushInOrder(ctx context.Context, turn *lokiTurn, entries []loki.Entry) ([]loki.Rejection, error) {
	if err := turn.wait(ctx); err != nil {
		return nil, err
	}
	if turn.streams == nil {
		turn.finish()
		return p.loki.Push(ctx, entries)
	}
	type span struct{ oldest, newest time.Time }
	var keys []string
	spans := map[string]*span{}
	for _, e := range entries {
		k := e.StreamSelector()
		s, ok := spans[k]
		if !ok {
			spans[k] = &span{e.Time, e.Time}
			keys = append(keys, k)
			continue
		}
		if e.Time.Before(s.oldest) {
			s.oldest = e.Time
		}
		if e.Time.After(s.newest) {
			s.newest = e.Time
		}
	}
	var waits []<-chan struct{}
	mine := make([]*streamPush, len(keys))
	for i, k := range keys {
		var w []<-chan struct{}
		w, mine[i] = turn.streams.register(k, spans[k].oldest, spans[k].newest)
		waits = append(waits, w...)
	}
	turn.finish()
	defer func() {
		for i, k := range keys {
			turn.streams.done(k, mine[i])
		}
	}()
	for _, w := range waits {
		select {
		case <-w:
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for an earlier batch to push to loki: %w", ctx.Err())
		}
	}
	return p.loki.Push(ctx, entries)
}

// ship processes one batch; it returns nil once every message is in both
// sinks or dead-lettered, and an error only when ctx ended first (then no
// offset may be committed). Its Loki writes wait for turn.
func (p *pipeline) ship(ctx context.Context, msgs []kafkago.Message, turn lokiTurn) error {
	defer turn.finish()
	p.m.consumed.Add(float64(len(msgs)))
	now := time.Now()
	var items []*item
	var dead []kafkago.Message
	var docs []elastic.Doc
	var entries []loki.Entry
	reasons := map[string]int{}
	for _, msg := range msgs {
		e, err := event.Parse(msg.Value)
		if err != nil {
			// The collector validates; this guards against other producers.
			dead = append(dead, p.deadLetter(msg, ReasonDecode, err.Error(), deadletter.TenantOf(msg.Value)))
			reasons[ReasonDecode]++
			continue
		}
		// The collector's sealed number is opened for the CRM and the
		// hash (and ids that are numbers become tokens, as at the edge).
		if e, err = p.masker.Reveal(e); err != nil {
			dead = append(dead, p.deadLetter(msg, ReasonPIIKey, err.Error(), deadletter.TenantOf(msg.Value)))
			reasons[ReasonPIIKey]++
			continue
		}
		it := &item{msg: msg, raw: e, ownCRMID: e.CRMID != ""}
		if p.crm != nil {
			it.status = p.crm.enrich(e)
		}
		it.masked = p.masker.Apply(e)
		body, err := document(it.masked, it.status, now)
		if err != nil {
			dead = append(dead, p.deadLetter(msg, ReasonDecode, err.Error(), e.Tenant))
			reasons[ReasonDecode]++
			continue
		}
		entry, err := p.lokiEntry(it)
		if err != nil {
			dead = append(dead, p.deadLetter(msg, ReasonDecode, err.Error(), e.Tenant))
			reasons[ReasonDecode]++
			continue
		}
		doc := elastic.Doc{Action: "create", Index: p.es.IndexFor(e.Time()), ID: e.EventID, Body: body}
		if !it.ownCRMID && it.status != "" && it.status != crmPending {
			// Stored before as pending, and the CRM answered since: a replay
			// brings the stored copy up to date rather than leave it pending.
			fill := map[string]any{"crm_status": it.status}
			if e.CRMID != "" {
				fill["crm_id"] = e.CRMID
			}
			doc.OnExists, _ = json.Marshal(map[string]any{"doc": fill})
		}
		items = append(items, it)
		docs = append(docs, doc)
		entries = append(entries, entry)
	}

	// Elasticsearch first: its create tells which events were stored
	// before, and only those need Loki asked whether it holds their line
	// (Loki drops an identical entry only while it is still in the head
	// chunk, so a replay after a flush would show the line twice).
	rep, err := p.es.WriteReport(ctx, docs)
	if err != nil {
		return fmt.Errorf("ship batch of %d: elasticsearch: %w", len(msgs), err)
	}
	byID := map[string]*item{}
	for _, it := range items {
		byID[it.masked.Event.EventID] = it
	}
	refused := map[*item]bool{}
	for _, f := range rep.Failures {
		if it := byID[f.Doc.ID]; it != nil {
			refused[it] = true
			p.log.Warn("elasticsearch rejected an event", "event_id", f.Doc.ID, "type", f.Type, "reason", f.Reason)
			dead = append(dead, p.deadLetter(it.msg, ReasonElasticsearch, f.Type+": "+f.Reason, it.masked.Event.Tenant))
			reasons[ReasonElasticsearch]++
		}
	}
	var push, seen []loki.Entry
	for i, it := range items {
		switch {
		case refused[it]: // dead-lettered whole; a replay of it ships to both
		case rep.Existing[it.masked.Event.EventID]:
			seen = append(seen, entries[i])
		default:
			push = append(push, entries[i])
		}
	}
	p.m.replayed.WithLabelValues("elasticsearch").Add(float64(len(rep.Existing)))
	if len(seen) > 0 {
		stored, err := p.loki.Stored(ctx, seen, "event_id")
		if err != nil {
			return fmt.Errorf("ship batch of %d: %w", len(msgs), err)
		}
		missing := 0
		for _, en := range seen {
			if stored[en.Metadata["event_id"]] {
				p.m.replayed.WithLabelValues("loki").Inc()
				continue
			}
			missing++
			push = append(push, en)
		}
		p.log.Info("events shipped before: Elasticsearch held them, Loki is sent only what it lacks",
			"events", len(seen), "loki_lacking", missing)
	}
	lokiRejections, err := p.pushInOrder(ctx, &turn, push)
	if err != nil {
		return fmt.Errorf("ship batch of %d: loki: %w", len(msgs), err)
	}
	lokiRefused := map[*item]bool{}
	for _, r := range lokiRejections {
		it := r.Entry.Ref.(*item)
		p.log.Warn("loki rejected an event", "event_id", it.masked.Event.EventID, "reason", r.Reason)
		dead = append(dead, p.deadLetter(it.msg, ReasonLoki, r.Reason, it.masked.Event.Tenant))
		reasons[ReasonLoki]++
		lokiRefused[it] = true
	}
	if p.webhook != nil {
		// Every selected event of the batch, also those stored before: a
		// crash may have come between the post and the commit, and the
		// receiver drops what it has by idempotency_key (at least once).
		// An event a sink dead-lettered is posted when it is replayed.
		var hook []webhooksink.Item
		for _, it := range items {
			if !refused[it] && !lokiRefused[it] && p.webhook.Selects(it.masked.Event) {
				hook = append(hook, webhooksink.Item{Event: it.masked.Event, PhoneHash: it.masked.PhoneHash, Ref: it})
			}
		}
		rejections, err := p.webhook.Send(ctx, hook)
		if err != nil {
			return fmt.Errorf("ship batch of %d: webhook: %w", len(msgs), err)
		}
		for _, r := range rejections {
			it := r.Item.Ref.(*item)
			dead = append(dead, p.deadLetter(it.msg, ReasonWebhook, r.Reason, it.masked.Event.Tenant))
			reasons[ReasonWebhook]++
		}
	}
	if len(dead) > 0 {
		if err := p.dlq.Send(ctx, dead); err != nil {
			return fmt.Errorf("dead-letter %d events: %w", len(dead), err)
		}
	}
	for r, n := range reasons {
		p.m.deadLetters.WithLabelValues(r).Add(float64(n))
	}
	if p.crm != nil {
		// Asked only now: the events are in Elasticsearch, so the id the
		// answer brings is filled into them too.
		var stored []*item
		for _, it := range items {
			if !refused[it] {
				stored = append(stored, it)
			}
		}
		if err := p.crm.request(ctx, stored); err != nil {
			return fmt.Errorf("ask the crm about %d events: %w", len(stored), err)
		}
	}
	p.m.shipped.Add(float64(len(items) - len(rep.Failures)))
	return nil
}
