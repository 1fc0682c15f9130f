// Command gen turns the shared SGD booking dialogues into assistant event
// logs (schema v1) for demos, tests and benchmarks.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/assistlog/assistlog/demo"
	"github.com/assistlog/assistlog/internal/event"
)

const usage = `gen — assistant event logs from real booking dialogues.

Usage:
  gen files  [flags] --out DIR         write DIR/assistant-N.jsonl and DIR/truth.json
  gen stream [flags] --out FILE        append events to FILE at --rate events/s
  gen kafka  [flags] --brokers H:P     produce events to the assistant.events topic
  gen truth  [flags] --out FILE        write only the ground truth

The input is shared/data/sgd-services (found above the working directory, or
ASSISTLOG_SGD_DIR). Output is deterministic for --seed and --end. docs/demo.md
describes how dialogues become events.

Examples:
  gen files --out /tmp/logs --files 3 --rotate-bytes 5MB
  gen stream --out /var/log/assistant/a.jsonl --rate 200 --rounds 10
  gen kafka --brokers 127.0.0.1:19092

Flags:
`

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fs := flags(demo.DefaultConfig(), new(opts))
		fs.SetOutput(stderr)
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
		if len(args) == 0 {
			return errors.New("no command given")
		}
		return nil
	}
	mode := args[0]
	cfg := demo.DefaultConfig()
	var o opts
	fs := flags(cfg, &o)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if err := o.apply(&cfg); err != nil {
		return err
	}
	dir := o.data
	if dir == "" {
		var err error
		if dir, err = demo.FindDataDir(); err != nil {
			return err
		}
	}
	dialogues, err := demo.LoadDialogues(dir)
	if err != nil {
		return err
	}
	evs, truth, err := demo.Generate(dialogues, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "generated %d events in %d sessions from %d dialogues (%d appointment.confirmed)\n",
		truth.Events, truth.Sessions, truth.Dialogues, truth.ByType[string(event.AppointmentConfirmed)])

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	switch mode {
	case "files":
		if o.out == "" {
			return errors.New("files: --out DIR is required")
		}
		paths, err := demo.WriteFiles(evs, demo.FileOptions{Dir: o.out, Files: o.files, RotateBytes: int64(o.rotate)})
		if err != nil {
			return err
		}
		tp := o.truth
		if tp == "" {
			tp = filepath.Join(o.out, "truth.json")
		}
		if err := truth.WriteFile(tp); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %d files to %s, ground truth in %s\n", len(paths), o.out, tp)
	case "stream":
		if o.out == "" {
			return errors.New("stream: --out FILE is required")
		}
		if o.count > 0 && o.count < len(evs) {
			evs = evs[:o.count]
		}
		if o.truth != "" {
			if err := demo.NewTruth(evs, truth.Dialogues, cfg).WriteFile(o.truth); err != nil {
				return err
			}
		}
		n, err := demo.Stream(ctx, evs, o.out, o.rate, o.live, func(n int) {
			fmt.Fprintf(stderr, "\rstreamed %d/%d events", n, len(evs))
		})
		fmt.Fprintf(stderr, "\rstreamed %d/%d events\n", n, len(evs))
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
	case "kafka":
		if o.brokers == "" {
			return errors.New("kafka: --brokers is required")
		}
		if o.truth != "" {
			if err := truth.WriteFile(o.truth); err != nil {
				return err
			}
		}
		start := time.Now()
		err := demo.Produce(ctx, strings.Split(o.brokers, ","), evs, func(n int) {
			fmt.Fprintf(stderr, "\rproduced %d/%d events", n, len(evs))
		})
		fmt.Fprintln(stderr)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "produced %d events to Kafka in %s\n", len(evs), time.Since(start).Round(time.Millisecond))
	case "truth":
		if o.out == "" {
			return errors.New("truth: --out FILE is required")
		}
		return truth.WriteFile(o.out)
	default:
		fs.Usage()
		return fmt.Errorf("unknown command %q", mode)
	}
	return nil
}

type opts struct {
	data, out, truth, brokers, end string
	files, count                   int
	rotate                         byteSize
	rate                           float64
	live                           bool
	seed                           uint64
	days, rounds                   int
	low, errRate, handoff, compl   float64
	followUp, noShow               float64
}

func flags(cfg demo.Config, o *opts) *flag.FlagSet {
	fs := flag.NewFlagSet("gen", flag.ContinueOnError)
	fs.StringVar(&o.data, "data", "", "dialogue directory (default: shared/data/sgd-services above the working directory)")
	fs.StringVar(&o.out, "out", "", "output directory (files), file (stream, truth)")
	fs.StringVar(&o.truth, "truth", "", "where to write the ground truth (files: DIR/truth.json)")
	fs.StringVar(&o.brokers, "brokers", "", "Kafka brokers, comma-separated (kafka)")
	fs.StringVar(&o.end, "end", "", "end of the time window, RFC 3339 (default: now, truncated to the hour)")
	fs.IntVar(&o.files, "files", 1, "number of log files sessions are spread over (files)")
	fs.Var(&o.rotate, "rotate-bytes", "rotate each file logrotate-style past this size, e.g. 5MB (files; 0 = never)")
	fs.Float64Var(&o.rate, "rate", 100, "events per second (stream)")
	fs.IntVar(&o.count, "count", 0, "stop after this many events (stream; 0 = all)")
	fs.BoolVar(&o.live, "live", true, "stamp each event with the time it is written (stream)")
	fs.Uint64Var(&o.seed, "seed", cfg.Seed, "random seed")
	fs.IntVar(&o.days, "days", cfg.Days, "length of the time window in days (keep < 7 for Loki)")
	fs.IntVar(&o.rounds, "rounds", cfg.Rounds, "replay the dialogues this many times as new sessions")
	fs.Float64Var(&o.low, "low-confidence", cfg.LowConfidenceShare, "share of classified turns with confidence < 0.6")
	fs.Float64Var(&o.errRate, "error-rate", cfg.ErrorRate, "chance of an error event before an assistant turn")
	fs.Float64Var(&o.handoff, "handoff-rate", cfg.HandoffRate, "share of sessions handed to a manager")
	fs.Float64Var(&o.compl, "complaint-rate", cfg.ComplaintRate, "share of sessions with a complaint")
	fs.Float64Var(&o.followUp, "follow-up", cfg.FollowUpShare, "share of past appointments later marked attended or no-show")
	fs.Float64Var(&o.noShow, "no-show", cfg.NoShowShare, "share of followed-up appointments that are no-shows")
	return fs
}

func (o *opts) apply(cfg *demo.Config) error {
	cfg.Seed, cfg.Days, cfg.Rounds = o.seed, o.days, o.rounds
	cfg.LowConfidenceShare, cfg.ErrorRate, cfg.HandoffRate, cfg.ComplaintRate = o.low, o.errRate, o.handoff, o.compl
	cfg.FollowUpShare, cfg.NoShowShare = o.followUp, o.noShow
	if o.end != "" {
		t, err := time.Parse(time.RFC3339, o.end)
		if err != nil {
			return fmt.Errorf("--end: %w", err)
		}
		cfg.End = t
	}
	return nil
}

// byteSize parses sizes such as 512KB, 5MB, 1GB or a plain byte count.
type byteSize int64

func (b *byteSize) String() string { return fmt.Sprint(int64(*b)) }

func (b *byteSize) Set(s string) error {
	mult := int64(1)
	u := strings.ToUpper(strings.TrimSpace(s))
	for _, suf := range []struct {
		s string
		m int64
	}{{"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(u, suf.s) {
			mult, u = suf.m, strings.TrimSuffix(u, suf.s)
			break
		}
	}
	var n int64
	if _, err := fmt.Sscan(u, &n); err != nil || n < 0 {
		return fmt.Errorf("not a size: %q", s)
	}
	*b = byteSize(n * mult)
	return nil
}
