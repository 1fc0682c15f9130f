package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/assistlog/assistlog/internal/deadletter"
	"github.com/assistlog/assistlog/internal/event"
	"github.com/assistlog/assistlog/internal/kafka"
)

const dlqUsage = `shipper dlq replay — re-drive dead letters after a fix.

Usage:
  shipper dlq replay --config shipper.yaml [--reason R] [--source S] [--tenant T] [--dry-run]

Reads the whole dead-letter topic and produces every matching record whose
bytes are (now) a valid event back to the events topic, keyed as the
collector keys it. Replays are idempotent: the event_id makes Elasticsearch
skip what it has and Loki drop what it stored. Records that still do not
validate are listed with the reason and stay where they are.

Flags:
`

// dlqMain runs "shipper dlq replay".
func dlqMain(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "replay" {
		fmt.Fprint(stderr, dlqUsage)
		return errors.New(`dlq: the only command is "replay"`)
	}
	fs := flag.NewFlagSet("shipper dlq replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "shipper configuration (its kafka section is used)")
	reason := fs.String("reason", "", "only records with this reason (e.g. elasticsearch_rejected)")
	source := fs.String("source", "", "only records from this source (a file path, webhook, shipper:…)")
	tenant := fs.String("tenant", "", "only records of this tenant")
	dry := fs.Bool("dry-run", false, "list what would be replayed, produce nothing")
	fs.Usage = func() { fmt.Fprint(stderr, dlqUsage); fs.PrintDefaults() }
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *cfgPath == "" {
		fs.Usage()
		return errors.New("--config is required")
	}
	cfg, err := LoadConfig(*cfgPath)
	if err != nil {
		return err
	}
	ctx := context.Background()
	recs, err := readAll(ctx, cfg.Kafka.Brokers[0], cfg.Kafka.DeadLetterTopic)
	if err != nil {
		return err
	}
	var msgs []kafkago.Message
	skipped, invalid := 0, 0
	for _, r := range recs {
		if (*reason != "" && r.Reason != *reason) || (*source != "" && r.Source != *source) || (*tenant != "" && r.Tenant != *tenant) {
			skipped++
			continue
		}
		e, err := event.Parse(r.Raw)
		if err != nil {
			invalid++
			fmt.Fprintf(stdout, "still invalid  %s offset %d (%s): %v\n", r.Source, r.Offset, r.Reason, err)
			continue
		}
		fmt.Fprintf(stdout, "replay         %s  %s  (was %s: %.120s)\n", e.EventID, e.Type, r.Reason, r.Error)
		msgs = append(msgs, kafkago.Message{Topic: cfg.Kafka.Topic, Key: e.Key(), Value: r.Raw})
	}
	fmt.Fprintf(stdout, "%d dead letters: %d to replay, %d still invalid, %d not matching the filters\n",
		len(recs), len(msgs), invalid, skipped)
	if *dry || len(msgs) == 0 {
		return nil
	}
	p, err := kafka.NewProducer(cfg.Kafka.ProducerConfig, slog.New(slog.NewJSONHandler(os.Stderr, nil)), prometheus.NewRegistry())
	if err != nil {
		return err
	}
	defer p.Close()
	sctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if err := p.Send(sctx, msgs); err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	fmt.Fprintf(stdout, "replayed %d events to %s\n", len(msgs), cfg.Kafka.Topic)
	return nil
}

// readAll reads every record of the dead-letter topic, all partitions.
func readAll(ctx context.Context, broker, topic string) ([]deadletter.Record, error) {
	conn, err := kafkago.DialContext(ctx, "tcp", broker)
	if err != nil {
		return nil, fmt.Errorf("dial kafka: %w", err)
	}
	parts, err := conn.ReadPartitions(topic)
	conn.Close()
	if err != nil {
		return nil, fmt.Errorf("partitions of %s: %w", topic, err)
	}
	var out []deadletter.Record
	for _, p := range parts {
		r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: []string{broker}, Topic: topic, Partition: p.ID, MaxBytes: 16 << 20})
		lc, err := kafkago.DialLeader(ctx, "tcp", broker, topic, p.ID)
		if err != nil {
			r.Close()
			return nil, err
		}
		first, last, err := lc.ReadOffsets()
		lc.Close()
		if err != nil {
			r.Close()
			return nil, err
		}
		if err := r.SetOffset(first); err != nil {
			r.Close()
			return nil, err
		}
		for off := first; off < last; {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				r.Close()
				return nil, fmt.Errorf("read %s/%d at %d: %w", topic, p.ID, off, err)
			}
			out = append(out, deadletter.FromMessage(m))
			off = m.Offset + 1
		}
		r.Close()
	}
	return out, nil
}
