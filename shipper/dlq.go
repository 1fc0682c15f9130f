package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/assistlog/assistlog/internal/deadletter"
	"github.com/assistlog/assistlog/internal/errpolicy"
	"github.com/assistlog/assistlog/internal/event"
	"github.com/assistlog/assistlog/internal/kafka"
)

const dlqUsage = `shipper dlq replay — re-drive dead letters after a fix.

Usage:
  shipper dlq replay --config shipper.yaml [--reason R] [--source S] [--tenant T]
                     [--group G] [--dry-run] [--format table|json]

Reads the dead-letter topic from where the previous replay of the same
group stopped to its current end, and produces every matching record whose
bytes are (now) a valid event back to the events topic, keyed as the
collector keys it. The group (default <kafka.group_id>.dlq-replay plus the
filters) records what was handled: its offsets are committed only after the
events topic acknowledged the re-driven events, so a second run re-drives
nothing, and an interrupted run (SIGINT, SIGTERM) is simply done again.
Records that still do not validate, and dead letters of events an earlier
replay already re-drove (they failed again downstream), are counted as still
failing and not re-driven again; replay them with a new --group after the
next fix. Replays are idempotent downstream: the event_id makes
Elasticsearch skip what it has and Loki drop what it stored.

Sealed dead letters (key_id header) are opened with pii.keys; a record
sealed with a key the config lacks stops the run with an error naming the
key id, before anything is produced or recorded. With pii.keys, re-driven
events are written in the collector's edge form (masked, number sealed).

Flags:
`

// replayReport is what a replay did, per record read.
type replayReport struct {
	Group        string `json:"group"`
	Read         int    `json:"read"`
	Redriven     int    `json:"redriven"`
	StillInvalid int    `json:"still_invalid"`
	FailedAgain  int    `json:"failed_again"` // re-driven by an earlier run, dead-lettered again
	Duplicates   int    `json:"duplicates"`   // same event_id as one re-driven in this run
	Skipped      int    `json:"skipped"`      // not matching the filters
	DryRun       bool   `json:"dry_run"`
	Committed    bool   `json:"committed"`
}

// replayFilter selects dead letters; empty fields match everything.
type replayFilter struct{ reason, source, tenant string }

func (f replayFilter) match(r deadletter.Record) bool {
	return (f.reason == "" || r.Reason == f.reason) && (f.source == "" || r.Source == f.source) &&
		(f.tenant == "" || r.Tenant == f.tenant)
}

// groupSuffix keeps replays with different filters apart: each has its own
// record of what it handled, so a filtered run never hides other records
// from a later run with other filters.
func (f replayFilter) groupSuffix() string {
	var parts []string
	for _, kv := range [][2]string{{"reason", f.reason}, {"source", f.source}, {"tenant", f.tenant}} {
		if kv[1] != "" {
			parts = append(parts, kv[0]+"="+kv[1])
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "." + strings.Join(parts, ",")
}

// dlqMain runs "shipper dlq replay".
func dlqMain(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "replay" {
		fmt.Fprint(stderr, dlqUsage)
		return errors.New(`dlq: the only command is "replay"`)
	}
	fs := flag.NewFlagSet("shipper dlq replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "shipper configuration (its kafka section is used)")
	var f replayFilter
	fs.StringVar(&f.reason, "reason", "", "only records with this reason (e.g. elasticsearch_rejected)")
	fs.StringVar(&f.source, "source", "", "only records from this source (a file path, webhook, shipper:…)")
	fs.StringVar(&f.tenant, "tenant", "", "only records of this tenant")
	group := fs.String("group", "", "consumer group recording what was replayed (default <kafka.group_id>.dlq-replay[.filters])")
	dry := fs.Bool("dry-run", false, "list what would be replayed; produce and record nothing")
	format := fs.String("format", "table", "report format: table or json")
	fs.Usage = func() { fmt.Fprint(stderr, dlqUsage); fs.PrintDefaults() }
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *cfgPath == "" {
		fs.Usage()
		return errors.New("--config is required")
	}
	if *format != "table" && *format != "json" {
		return fmt.Errorf("--format: must be table or json, got %q", *format)
	}
	cfg, err := LoadConfig(*cfgPath)
	if err != nil {
		return err
	}
	if *group == "" {
		*group = cfg.Kafka.GroupID + ".dlq-replay" + f.groupSuffix()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := replay(ctx, cfg, f, *group, *dry, stdout, *format == "table")
	if rep != nil {
		if *format == "json" {
			_ = json.NewEncoder(stdout).Encode(rep)
		} else {
			tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintf(tw, "group\t%s\nread\t%d\nre-driven\t%d\nstill failing\t%d\t(%d invalid, %d failed again after an earlier replay)\nduplicates\t%d\nskipped by filter\t%d\ncommitted\t%v\n",
				rep.Group, rep.Read, rep.Redriven, rep.StillInvalid+rep.FailedAgain, rep.StillInvalid, rep.FailedAgain,
				rep.Duplicates, rep.Skipped, rep.Committed)
			tw.Flush()
		}
	}
	return err
}

// dlqPartition is one dead-letter partition's range for this run: from the
// group's committed offset (or the start) to the end seen when it began.
type dlqPartition struct {
	id                   int
	first, from, through int64 // through: exclusive end
}

// replay does one run; the report is returned also with an error, saying
// how far it got.
func replay(ctx context.Context, cfg Config, f replayFilter, group string, dry bool, list io.Writer, listing bool) (*replayReport, error) {
	kc, err := kafka.NewConnector(cfg.Kafka.ClientConfig, nil)
	if err != nil {
		return nil, err
	}
	client := kc.Client(30 * time.Second)
	topic := cfg.Kafka.DeadLetterTopic
	parts, err := dlqRanges(ctx, client, topic, group)
	if err != nil {
		return nil, err
	}
	masker, err := cfg.PII.masker()
	if err != nil {
		return nil, err
	}
	ring := masker.Ring() // nil without pii.keys: sealed records cannot be opened
	rep := &replayReport{Group: group, DryRun: dry}
	// Events re-driven by earlier runs of this group: a dead letter of one
	// of them appended since is that event failing again downstream.
	earlier := map[string]bool{}
	now := map[string]bool{}
	var msgs []kafkago.Message
	for _, p := range parts {
		err := readRange(ctx, kc, topic, p.id, p.first, p.from, func(r deadletter.Record) error {
			if f.match(r) {
				if err := r.Open(ring); err != nil {
					return err
				}
				if e, err := event.Parse(r.Raw); err == nil {
					earlier[e.EventID] = true
				}
			}
			return nil
		})
		if err != nil {
			return rep, err
		}
		err = readRange(ctx, kc, topic, p.id, p.from, p.through, func(r deadletter.Record) error {
			rep.Read++
			if !f.match(r) {
				rep.Skipped++
				return nil
			}
			if err := r.Open(ring); err != nil {
				return err
			}
			e, err := event.Parse(r.Raw)
			switch {
			case err != nil:
				rep.StillInvalid++
				if listing {
					fmt.Fprintf(list, "still invalid  %s offset %d (%s): %v\n", r.Source, r.Offset, r.Reason, err)
				}
			case earlier[e.EventID]:
				rep.FailedAgain++
				if listing {
					fmt.Fprintf(list, "failed again   %s  %s  (%s: %.120s)\n", e.EventID, e.Type, r.Reason, r.Error)
				}
			case now[e.EventID]:
				rep.Duplicates++
			default:
				now[e.EventID] = true
				rep.Redriven++
				if listing {
					fmt.Fprintf(list, "replay         %s  %s  (was %s: %.120s)\n", e.EventID, e.Type, r.Reason, r.Error)
				}
				value := r.Raw
				if ring != nil {
					// Back on the events topic in the collector's edge
					// form: the opened bytes may hold the raw number.
					e = masker.Protect(e)
					if value, err = e.Marshal(); err != nil {
						return fmt.Errorf("re-encode %s: %w", e.EventID, err)
					}
				}
				msgs = append(msgs, kafkago.Message{Topic: cfg.Kafka.Topic, Key: e.Key(), Value: value})
			}
			return nil
		})
		if err != nil {
			return rep, err
		}
	}
	if dry {
		return rep, nil
	}
	if len(msgs) > 0 {
		log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
		reg := prometheus.NewRegistry()
		pol, err := errpolicy.New(cfg.Retry, log, reg)
		if err != nil {
			return rep, err
		}
		pcfg := cfg.Kafka.ProducerConfig
		pcfg.Topics = []string{cfg.Kafka.Topic} // replays go back to the events topic only
		p, err := kafka.NewProducer(pcfg, pol, log, reg)
		if err != nil {
			return rep, err
		}
		defer p.Close()
		if err := p.Send(ctx, msgs); err != nil {
			rep.Redriven = 0
			return rep, fmt.Errorf("re-drive to %s (nothing recorded; run again): %w", cfg.Kafka.Topic, err)
		}
	}
	// Only now, with every re-driven event acknowledged, is the run
	// recorded.
	commit := map[string][]kafkago.OffsetCommit{}
	for _, p := range parts {
		if p.through > p.from {
			commit[topic] = append(commit[topic], kafkago.OffsetCommit{Partition: p.id, Offset: p.through})
		}
	}
	if len(commit) > 0 {
		resp, err := client.OffsetCommit(ctx, &kafkago.OffsetCommitRequest{GroupID: group, GenerationID: -1, Topics: commit})
		if err != nil {
			return rep, fmt.Errorf("record the replay in group %s (the events were re-driven; a new run re-drives them again): %w", group, err)
		}
		for _, ps := range resp.Topics {
			for _, p := range ps {
				if p.Error != nil {
					return rep, fmt.Errorf("record the replay of %s/%d in group %s: %w", topic, p.Partition, group, p.Error)
				}
			}
		}
	}
	rep.Committed = true
	return rep, nil
}

// dlqRanges asks the brokers for the dead-letter topic's partitions, their
// ends, and what the group has handled.
func dlqRanges(ctx context.Context, client *kafkago.Client, topic, group string) ([]dlqPartition, error) {
	parts, err := kafka.GroupOffsets(ctx, client, topic, group)
	if err != nil {
		return nil, err
	}
	out := make([]dlqPartition, 0, len(parts))
	for _, p := range parts {
		out = append(out, dlqPartition{id: p.Partition, first: p.First, from: min(p.Committed, p.Last), through: p.Last})
	}
	return out, nil
}

// readRange hands each record of topic/partition in [from, through) to f,
// stopping at f's first error.
func readRange(ctx context.Context, kc *kafka.Connector, topic string, partition int, from, through int64, f func(deadletter.Record) error) error {
	if from >= through {
		return nil
	}
	r := kc.Reader(kafkago.ReaderConfig{Topic: topic, Partition: partition, MaxBytes: 16 << 20,
		MaxWait: 500 * time.Millisecond})
	defer r.Close()
	if err := r.SetOffset(from); err != nil {
		return fmt.Errorf("seek %s/%d to %d: %w", topic, partition, from, err)
	}
	for off := from; off < through; {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			return fmt.Errorf("read %s/%d at %d: %w", topic, partition, off, err)
		}
		if m.Offset >= through {
			return nil
		}
		if err := f(deadletter.FromMessage(m)); err != nil {
			return fmt.Errorf("%s/%d at %d: %w", topic, partition, m.Offset, err)
		}
		off = m.Offset + 1
	}
	return nil
}
