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
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/assistlog/assistlog/internal/crm"
	"github.com/assistlog/assistlog/internal/elastic"
	"github.com/assistlog/assistlog/internal/errpolicy"
	"github.com/assistlog/assistlog/internal/kafka"
	"github.com/assistlog/assistlog/internal/loki"
	"github.com/assistlog/assistlog/internal/pii"
	"github.com/assistlog/assistlog/internal/program"
)

const usage = `shipper — Kafka → Bitrix24 CRM ids → Elasticsearch and Loki, masked, acknowledged.

Usage:
  shipper --config shipper.yaml          run (several instances share the partitions)
  shipper --config shipper.yaml --check  validate the configuration and exit
  shipper dlq replay --config shipper.yaml [--reason R] [--dry-run]
                                         re-drive dead letters after a fix

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
	return program.Run(program.Spec[Config]{Name: "shipper", Usage: usage, Load: LoadConfig,
		Log: func(c Config) program.Log { return c.Log }, Serve: serve}, args, stderr)
}

func serve(ctx context.Context, cfg Config, log *slog.Logger) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	es, err := elastic.New(cfg.Elasticsearch, log, reg)
	if err != nil {
		return err
	}
	lk, err := loki.New(cfg.Loki.Config, log, reg)
	if err != nil {
		return err
	}
	// One producer for dead letters and CRM link records; the balancer keeps
	// a conversation's link records on one partition.
	pcfg := cfg.Kafka.ProducerConfig
	pcfg.Balancer = crm.Balancer()
	dlq, err := kafka.NewProducer(pcfg, log, reg)
	if err != nil {
		return err
	}
	defer dlq.Close()
	masker, err := pii.New(cfg.PII.HashSecret)
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
	p := &pipeline{es: es, loki: lk, dlq: dlq, dlqTopic: cfg.Kafka.DeadLetterTopic, masker: masker,
		lokiLabels: cfg.Loki.Labels, log: log, m: m}
	policy, err := errpolicy.New(errpolicy.DefaultConfig(), log, reg)
	if err != nil {
		return err
	}
	var crmStage *crmStage
	if cfg.CRM.Enabled {
		if crmStage, err = newCRMStage(ctx, cfg, dlq, es, policy, log, reg); err != nil {
			return err
		}
		p.crm = crmStage.linker
	}
	cons, err := newConsumer(cfg, p, log, reg)
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.HTTP.Listen)
	if err != nil {
		return fmt.Errorf("listen http.listen %s: %w", cfg.HTTP.Listen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := es.Ping(r.Context()); err != nil {
			http.Error(w, "elasticsearch: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	log.Info("shipper started", "topic", cfg.Kafka.Topic, "group", cfg.Kafka.GroupID,
		"elasticsearch", cfg.Elasticsearch.URLs, "alias", cfg.Elasticsearch.Alias, "loki", cfg.Loki.URL, "http", cfg.HTTP.Listen)

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server", "err", err)
		}
	}()
	crmCtx, stopCRM := context.WithCancel(context.WithoutCancel(ctx))
	crmDone := make(chan struct{})
	if crmStage != nil {
		go func() { defer close(crmDone); crmStage.run(crmCtx) }()
	} else {
		close(crmDone)
	}
	runErr := cons.Run(ctx)
	// The CRM worker stops after the consumer: its records are committed
	// one by one, so whatever it was doing is simply taken up again.
	stopCRM()
	<-crmDone
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutCtx)
	wg.Wait()
	if runErr != nil {
		log.Error("shipper stopped", "err", runErr)
		return runErr
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
