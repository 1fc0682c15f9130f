package main

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/assistlog/assistlog/internal/crm"
	"github.com/assistlog/assistlog/internal/kafka"
)

// LinksErasure is the CRM links part of the receipt.
type LinksErasure struct {
	Configured bool   `json:"configured"`
	Topic      string `json:"topic,omitempty"`
	// Keys are the link records of the conversations (sessions and their
	// appointments) whose latest value was not a tombstone yet.
	Keys []string `json:"keys"`
	// Tombstones is how many were written (0 in a dry run); Verified says
	// the topic was read again and each key's latest value is a tombstone.
	Tombstones int    `json:"tombstones"`
	Verified   bool   `json:"verified"`
	Note       string `json:"note,omitempty"`
}

// linkRecord is the latest record of a key in the links topic.
type linkRecord struct {
	partition int
	session   []byte // the HeaderSession header, kept on the tombstone
	tombstone bool
}

// eraseLinks writes a tombstone for every link key of the conversations:
// session/<tenant>/<id>, appointment/<tenant>/<id> of their appointments,
// and any key whose record names one of them in its session header. Only
// keys and headers are read, never the record's value.
func (er *eraser) eraseLinks(ctx context.Context, p *person, rec *Receipt) error {
	k := er.cfg.Kafka
	rec.Links = LinksErasure{Configured: len(k.Brokers) > 0, Topic: k.LinksTopic, Keys: []string{}}
	if len(k.Brokers) == 0 {
		rec.Links.Note = "kafka.brokers not set: CRM links not erased"
		return nil
	}
	want := map[string]bool{}
	headers := map[string]bool{}
	for _, s := range p.sessions {
		want[crm.SessionKey(er.tenant.Name, s)] = true
		headers[er.tenant.Name+"/"+s] = true
	}
	for _, a := range p.appts {
		want[crm.AppointmentKey(er.tenant.Name, a)] = true
	}
	er.progress("reading the links topic %s", k.LinksTopic)
	latest, err := readLinks(ctx, k.Brokers, k.LinksTopic)
	if err != nil {
		return err
	}
	var msgs []kafkago.Message
	partitions := map[string]int{}
	for key, r := range latest {
		if !want[key] && !headers[string(r.session)] {
			continue
		}
		if r.tombstone {
			continue
		}
		rec.Links.Keys = append(rec.Links.Keys, key)
		partitions[key] = r.partition
		msg := kafkago.Message{Topic: k.LinksTopic, Key: []byte(key), Value: nil}
		if r.session != nil {
			msg.Headers = []kafkago.Header{{Key: crm.HeaderSession, Value: r.session}}
		}
		msgs = append(msgs, msg)
	}
	rec.Links.Keys = uniq(rec.Links.Keys)
	if er.dry || len(msgs) == 0 {
		rec.Links.Verified = len(msgs) == 0
		return nil
	}
	// Each tombstone goes to the partition holding its key: compaction is
	// per partition, so one anywhere else would hide nothing.
	cfg := kafka.DefaultProducerConfig()
	cfg.Brokers = k.Brokers
	cfg.Balancer = pinned(partitions)
	prod, err := kafka.NewProducer(cfg, er.pol, er.log, prometheus.NewRegistry())
	if err != nil {
		return err
	}
	defer prod.Close()
	er.progress("writing %d tombstone(s) to %s", len(msgs), k.LinksTopic)
	if err := prod.Send(ctx, msgs); err != nil {
		return fmt.Errorf("tombstones: %w", err)
	}
	rec.Links.Tombstones = len(msgs)
	after, err := readLinks(ctx, k.Brokers, k.LinksTopic)
	if err != nil {
		return fmt.Errorf("read back: %w", err)
	}
	var left []string
	for _, key := range rec.Links.Keys {
		if r, ok := after[key]; ok && !r.tombstone {
			left = append(left, key)
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("after the tombstones, %d key(s) still end in a record: %v (a shipper writing them again?)", len(left), left)
	}
	rec.Links.Verified = true
	return nil
}

// pinned sends each message to the partition its key was found in.
type pinned map[string]int

func (p pinned) Balance(msg kafkago.Message, partitions ...int) int {
	if n, ok := p[string(msg.Key)]; ok {
		return n
	}
	return crm.Balancer().Balance(msg, partitions...)
}

// readLinks reads every partition of topic from its first offset to its
// end and returns the latest record of each key.
func readLinks(ctx context.Context, brokers []string, topic string) (map[string]linkRecord, error) {
	conn, err := kafkago.DialContext(ctx, "tcp", brokers[0])
	if err != nil {
		return nil, fmt.Errorf("read links: %w", err)
	}
	parts, err := conn.ReadPartitions(topic)
	conn.Close()
	if err != nil {
		return nil, fmt.Errorf("read links: partitions of %s: %w", topic, err)
	}
	if len(parts) == 0 {
		return nil, fmt.Errorf("read links: no topic %s", topic)
	}
	out := map[string]linkRecord{}
	for _, p := range parts {
		lc, err := kafkago.DialLeader(ctx, "tcp", brokers[0], topic, p.ID)
		if err != nil {
			return nil, fmt.Errorf("read links %s/%d: %w", topic, p.ID, err)
		}
		first, last, err := lc.ReadOffsets()
		lc.Close()
		if err != nil {
			return nil, fmt.Errorf("read links %s/%d: offsets: %w", topic, p.ID, err)
		}
		if last <= first {
			continue
		}
		r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: brokers, Topic: topic, Partition: p.ID,
			MaxBytes: 16 << 20, MaxWait: 100 * time.Millisecond})
		if err := r.SetOffset(first); err != nil {
			r.Close()
			return nil, err
		}
		for off := first; off < last; {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				r.Close()
				return nil, fmt.Errorf("read links %s/%d at %d: %w", topic, p.ID, off, err)
			}
			lr := linkRecord{partition: p.ID, tombstone: m.Value == nil}
			for _, h := range m.Headers {
				if h.Key == crm.HeaderSession {
					lr.session = h.Value
				}
			}
			out[string(m.Key)] = lr
			off = m.Offset + 1
		}
		r.Close()
	}
	return out, nil
}
