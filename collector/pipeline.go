package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/assistlog/assistlog/internal/deadletter"
	"github.com/assistlog/assistlog/internal/event"
	"github.com/assistlog/assistlog/internal/kafka"
	"github.com/assistlog/assistlog/internal/mapping"
	"github.com/assistlog/assistlog/internal/pii"
	"github.com/assistlog/assistlog/internal/tail"
)

// Message headers the collector adds to every event, for tracing a record
// in Kafka back to where it was read.
const (
	HeaderSource = "source"
	HeaderOffset = "offset"
)

// sender is what the pipeline needs from Kafka.
type sender interface {
	Send(ctx context.Context, msgs []kafkago.Message) error
}

// pipeline decodes input into Kafka messages: valid events to the events
// topic, everything else to the dead-letter topic with the reason.
type pipeline struct {
	topic, dlqTopic string
	out             sender
	m               pipelineMetrics
	// files maps file paths to their mapping (files.mappings).
	files []compiledFileMapping
	// protect is the edge step (pii:): every event is masked and its
	// number sealed before it is produced; nil: events go as received.
	protect *pii.Masker
}

type pipelineMetrics struct {
	events      *prometheus.CounterVec
	deadLetters *prometheus.CounterVec
	skipped     *prometheus.CounterVec
}

func newPipeline(topic, dlqTopic string, out sender, reg prometheus.Registerer) (*pipeline, error) {
	m := pipelineMetrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "assistlog_collector_events_total",
			Help: "Valid events acknowledged by Kafka, by source (file, webhook)."}, []string{"source"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "assistlog_collector_dead_letters_total",
			Help: "Rejected inputs written to the dead-letter topic, by source and reason."}, []string{"source", "reason"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "assistlog_collector_lines_skipped_total",
			Help: "Lines that carry no event (blank lines)."}, []string{"reason"}),
	}
	for _, c := range []prometheus.Collector{m.events, m.deadLetters, m.skipped} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register pipeline metrics: %w", err)
		}
	}
	// Both sources exist from the start at 0, so rate() and increase()
	// see the first events rather than a series appearing already full.
	m.events.WithLabelValues("file")
	m.events.WithLabelValues("webhook")
	return &pipeline{topic: topic, dlqTopic: dlqTopic, out: out, m: m}, nil
}

// fileEventID derives an id for a line without one: the same line at the
// same offset of the same file always yields the same id, so a re-read
// after a crash creates no new event downstream; the hash of the line
// makes two different lines differ even when their files share a first
// line (and so a fingerprint) and the lines an offset.
func fileEventID(fingerprint string, offset int64, line []byte) string {
	fp := fingerprint
	if len(fp) > 16 {
		fp = fp[:16]
	}
	sum := sha256.Sum256(line)
	return "f-" + fp + "-" + strconv.FormatInt(offset, 10) + "-" + hex.EncodeToString(sum[:8])
}

// webhookEventID derives an id from the tenant and the exact bytes, so a
// client retrying the same request produces the same ids.
func webhookEventID(tenant string, raw []byte) string {
	h := sha256.New()
	h.Write([]byte(tenant))
	h.Write([]byte{0})
	h.Write(raw)
	return "w-" + hex.EncodeToString(h.Sum(nil)[:12])
}

// decoded is the outcome of one input: a message for Kafka and, when it was
// rejected, the dead-letter record.
type decoded struct {
	msg      kafkago.Message
	rejected *deadletter.Record
	event    *event.Event
}

// ReasonMapping is the dead-letter reason of input a mapping could not
// turn into an event (the record's step header says which step failed);
// input mapped but then invalid carries the validator's reason (schema).
const ReasonMapping = "mapping"

// decode turns one line or webhook element into a message; m, when not
// nil, maps the input into an event first. defaultID derives the id of an
// input without one; it is called only then (it hashes the input).
func (p *pipeline) decode(raw []byte, defaultID func() string, rec deadletter.Record, m *mapping.Mapping) decoded {
	if m != nil {
		return p.decodeMapped(raw, defaultID(), rec, m)
	}
	derived := false
	e, err := event.ParseWithIDFunc(raw, func() string {
		derived = true
		return defaultID()
	})
	if err != nil {
		rec.Reason, rec.Error, rec.Raw = string(event.KindOf(err)), err.Error(), raw
		if rec.Tenant == "" { // a webhook knows it from the credentials
			rec.Tenant = deadletter.TenantOf(raw)
		}
		return p.rejected(rec)
	}
	value := raw
	if derived {
		// The id was derived: write the event with it.
		if value, err = e.Marshal(); err != nil {
			rec.Reason, rec.Error, rec.Raw = "encode", err.Error(), raw
			return p.rejected(rec)
		}
	}
	return decoded{event: e, msg: p.eventMessage(e, value, rec)}
}

// decodeMapped is decode through a mapping: the dead letter keeps the
// original input and names the step that failed.
func (p *pipeline) decodeMapped(raw []byte, defaultID string, rec deadletter.Record, m *mapping.Mapping) decoded {
	e, value, err := m.Apply(raw, mapping.Input{DefaultID: defaultID, Tenant: rec.Tenant})
	if err != nil {
		rec.Reason, rec.Error, rec.Raw, rec.Step = ReasonMapping, err.Error(), raw, mapping.StepOf(err)
		if k := event.KindOf(err); k != "" {
			rec.Reason = string(k)
		}
		if rec.Tenant == "" {
			rec.Tenant = deadletter.TenantOf(raw)
		}
		return p.rejected(rec)
	}
	return decoded{event: e, msg: p.eventMessage(e, value, rec)}
}

// rejected is the outcome of input refused as rec says. Its own copy of
// rec: taking the address of decode's parameter would put that on the
// heap for every line, valid ones too.
func (p *pipeline) rejected(rec deadletter.Record) decoded {
	return decoded{msg: rec.Message(p.dlqTopic), rejected: &rec}
}

// eventMessage is the events-topic message of a valid event: through the
// edge step when configured (every source ends here: files, the webhook,
// the channel hooks), so no raw number or e-mail is written to Kafka.
func (p *pipeline) eventMessage(e *event.Event, value []byte, rec deadletter.Record) kafkago.Message {
	if p.protect != nil {
		e = p.protect.Protect(e)
		// An event that was parsed re-encodes: Marshal cannot fail on it.
		value, _ = e.Marshal()
	}
	return kafkago.Message{Topic: p.topic, Key: e.Key(), Value: value, Headers: []kafkago.Header{
		{Key: HeaderSource, Value: []byte(rec.Source)},
		{Key: HeaderOffset, Value: []byte(strconv.FormatInt(rec.Offset, 10))},
	}}
}

// handleBatch is the file source's handler: it returns once every line of
// the batch is acknowledged by Kafka, as an event or a dead letter.
func (p *pipeline) handleBatch(ctx context.Context, b tail.Batch) error {
	msgs := make([]kafkago.Message, 0, len(b.Lines))
	events, blank := 0, 0
	var dead []string
	m := mappingFor(p.files, b.Path)
	for _, l := range b.Lines {
		rec := deadletter.Record{Source: b.Path, Fingerprint: b.Fingerprint, Offset: l.Offset}
		if l.TooLong {
			rec.Reason = deadletter.ReasonLineTooLong
			rec.Error = fmt.Sprintf("line is %d bytes, the limit is %d (files.max_line_bytes); its first %d bytes are kept",
				l.Length, len(l.Data), len(l.Data))
			rec.Raw, rec.RawLength, rec.Tenant = l.Data, l.Length, deadletter.TenantOf(l.Data)
			msgs = append(msgs, rec.Message(p.dlqTopic))
			dead = append(dead, rec.Reason)
			continue
		}
		if len(bytes.TrimSpace(l.Data)) == 0 {
			blank++
			continue
		}
		d := p.decode(l.Data, func() string { return fileEventID(b.Fingerprint, l.Offset, l.Data) }, rec, m)
		msgs = append(msgs, d.msg)
		if d.rejected != nil {
			dead = append(dead, d.rejected.Reason)
		} else {
			events++
		}
	}
	if len(msgs) > 0 {
		if err := p.out.Send(ctx, msgs); err != nil {
			return err
		}
	}
	p.m.events.WithLabelValues("file").Add(float64(events))
	p.m.skipped.WithLabelValues("blank").Add(float64(blank))
	for _, r := range dead {
		p.m.deadLetters.WithLabelValues("file", r).Inc()
	}
	return nil
}

var _ sender = (*kafka.Producer)(nil)
