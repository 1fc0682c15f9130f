// Command shipper consumes assistant events from Kafka, masks personal
// data, and writes every event to Elasticsearch and Grafana Loki, committing
// a Kafka offset only after both acknowledged the events before it.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/assistlog/assistlog/internal/crm"
	"github.com/assistlog/assistlog/internal/deadletter"
	"github.com/assistlog/assistlog/internal/elastic"
	"github.com/assistlog/assistlog/internal/errpolicy"
	"github.com/assistlog/assistlog/internal/kafka"
	"github.com/assistlog/assistlog/internal/loki"
	"github.com/assistlog/assistlog/internal/program"
	"github.com/assistlog/assistlog/internal/webhooksink"
)

const usage = `shipper — Kafka → Bitrix24 CRM ids → Elasticsearch and Loki (and an owner's webhook), masked, acknowledged.

Usage:
  shipper --config shipper.yaml          run (several instances share the partitions)
  shipper --config shipper.yaml --check  validate the configuration and exit
  shipper health --config shipper.yaml   exit 0 when the running shipper's /readyz says ready (or --url URL)
  shipper version                        print the version, commit and Go version
  shipper dlq replay --config shipper.yaml [--reason R] [--dry-run] [--format table|json]
                                         re-drive dead letters after a fix (each once:
                                         the run is recorded in a consumer group)
  shipper archive --config shipper.yaml  archive every event as masked Parquet in S3 (own
                                         consumer group; see shipper archive --help)

Every field is documented in shipper/shipper.example.yaml; pii.hash_secret is
best written as ${ENV_VAR}.

Endpoints (http.listen): /metrics, /healthz, /readyz.

Flags:
`

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "shipper:", err)
		os.Exit(1)
	}
}

func run(args []string, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "dlq" {
		return dlqMain(args[1:], os.Stdout, stderr)
	}
	if len(args) > 0 && args[0] == "archive" {
		return archiveMain(args[1:], os.Stdout, stderr)
	}
	return program.Run(program.Spec[Config]{Name: "shipper", Usage: usage, Load: LoadConfig,
		Log: func(c Config) program.Log { return c.Log }, Serve: serve,
		HTTP: func(c Config) program.HTTP { return c.HTTP }}, args, stderr)
}

func serve(ctx context.Context, cfg Config, log *slog.Logger) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	pol, err := errpolicy.New(cfg.Retry, log, reg)
	if err != nil {
		return err
	}
	writers := make([]*elastic.Writer, 0, 1+len(cfg.Mirrors))
	for _, c := range append([]elastic.Config{cfg.Elasticsearch}, cfg.Mirrors...) {
		w, err := elastic.New(c, pol, log, reg)
		if err != nil {
			return err
		}
		writers = append(writers, w)
	}
	es, err := elastic.NewStores(writers...)
	if err != nil {
		return err
	}
	lk, err := loki.New(cfg.Loki.Config, pol, log, reg)
	if err != nil {
		return err
	}
	// One producer for dead letters and CRM link records; the balancer keeps
	// a conversation's link records on one partition.
	pcfg := cfg.Kafka.ProducerConfig
	pcfg.Balancer = crm.Balancer()
	// Only these two: the client would otherwise cache and refresh the
	// metadata of every topic of the cluster (bench/NOTES.md, row 6).
	pcfg.Topics = []string{cfg.Kafka.DeadLetterTopic, cfg.CRM.LinksTopic}
	dlq, err := kafka.NewProducer(pcfg, pol, log, reg)
	if err != nil {
		return err
	}
	defer dlq.Close()
	masker, err := cfg.PII.masker()
	if err != nil {
		return err
	}
	// The template must exist before the first index is created.
	if err := untilOK(ctx, log, "waiting for Elasticsearch to install the index template", es.Setup); err != nil {
		return err
	}
	m, err := newPipelineMetrics(reg)
	if err != nil {
		return err
	}
	// Dead letters are sealed on their way out (pii.keys): their raw bytes
	// are the events as they came, which may hold numbers.
	p := &pipeline{es: es, loki: lk, dlq: deadletter.SealingSender{Out: dlq, Topic: cfg.Kafka.DeadLetterTopic, Ring: masker.Ring()}, dlqTopic: cfg.Kafka.DeadLetterTopic, masker: masker,
		lokiLabels: cfg.Loki.Labels, log: log, m: m}
	if cfg.Webhook.Enabled {
		hook, err := webhooksink.New(cfg.Webhook, pol, log, reg)
		if err != nil {
			return err
		}
		p.webhook = hook
	}
	var crmStage *crmStage
	if cfg.CRM.Enabled {
		if crmStage, err = newCRMStage(ctx, cfg, dlq, es, pol, log, reg); err != nil {
			return err
		}
		p.crm = crmStage.linker
	}
	cons, err := newConsumer(cfg, p, pol, log, reg)
	if err != nil {
		return err
	}

	ln, err := program.Listen("http.listen", cfg.HTTP.Listen)
	if err != nil {
		return err
	}
	defer ln.Close()
	mux := program.OpsMux(reg, func(r *http.Request) error {
		if err := es.Ping(r.Context()); err != nil {
			return fmt.Errorf("elasticsearch: %w", err)
		}
		return nil
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	log.Info("shipper started", "topic", cfg.Kafka.Topic, "group", cfg.Kafka.GroupID,
		"elasticsearch", cfg.Elasticsearch.URLs, "alias", cfg.Elasticsearch.Alias, "loki", cfg.Loki.URL, "http", cfg.HTTP.Listen)

	// One run group: a part that fails stops the shipper, naming itself.
	g, _ := program.NewGroup(ctx)
	g.Go("http server ("+cfg.HTTP.Listen+")", func(ctx context.Context) error {
		return program.ServeHTTP(ctx, srv, ln, 5*time.Second)
	})
	consumed := make(chan struct{})
	g.Go("consumer of "+cfg.Kafka.Topic, func(ctx context.Context) error {
		defer close(consumed)
		return cons.Run(ctx)
	})
	g.Go("consumer lag gauge", cons.watchLag)
	if crmStage != nil {
		g.Go("crm stage (links follower, worker)", func(ctx context.Context) error {
			// The CRM stage stops after the consumer: its records are
			// committed one by one, so whatever it was doing is simply
			// taken up again.
			crmCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
			defer stop()
			go func() {
				<-ctx.Done()
				<-consumed
				stop()
			}()
			crmStage.run(crmCtx)
			if ctx.Err() == nil {
				return errors.New("stopped on its own")
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		log.Error("shipper part failed; stopped", "err", err)
		return err
	}
	log.Info("shipper stopped")
	return nil
}

// untilOK runs f until it succeeds, waiting with backoff and saying why in
// the log: a dependency that starts after the shipper is waited for, not a
// reason to exit.
func untilOK(ctx context.Context, log *slog.Logger, waiting string, f func(context.Context) error) error {
	for backoff := time.Second; ; backoff = min(backoff*2, 15*time.Second) {
		err := f(ctx)
		if err == nil {
			return nil
		}
		log.Warn(waiting, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
	}
}
