// Command collector tails assistant JSON-lines logs and takes webhook
// events into Kafka, losing nothing: a file position advances only after
// Kafka acknowledged the lines before it, and input that is not a valid
// event goes to the dead-letter topic with the reason.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/assistlog/assistlog/internal/deadletter"
	"github.com/assistlog/assistlog/internal/errpolicy"
	"github.com/assistlog/assistlog/internal/kafka"
	"github.com/assistlog/assistlog/internal/positions"
	"github.com/assistlog/assistlog/internal/program"
	"github.com/assistlog/assistlog/internal/tail"
)

const usage = `collector — tail assistant logs and take webhooks into Kafka.

Usage:
  collector --config collector.yaml          run
  collector --config collector.yaml --check  validate the configuration and exit
  collector health --config collector.yaml   exit 0 when the running collector's /readyz says ready (or --url URL)
  collector version                          print the version, commit and Go version
  collector mapping test --config collector.yaml SAMPLES
                                             show the mapped event or the error per sample line

Every field is documented in collector/collector.example.yaml. Secrets in
webhook.tenants may be written as ${ENV_VAR}.

Endpoints (http.listen): /metrics, /healthz, /readyz.
Webhook (webhook.listen, HTTPS with webhook.tls): POST /v1/events — one JSON event or NDJSON;
202 after Kafka acknowledged, 400 per-event errors, 401/403, 413, 429/503.
Channel webhooks (webhook.hooks): POST /v1/hooks/<name> (json, telegram,
whatsapp, instagram), GET for Meta's verification handshake; docs/ingest.md.

Flags:
`

func main() {
	if len(os.Args) > 1 && os.Args[1] == "mapping" {
		os.Exit(mappingCommand(os.Args[2:], os.Stdout, os.Stderr))
	}
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "collector:", err)
		os.Exit(1)
	}
}

func run(args []string, stderr io.Writer) error {
	return program.Run(program.Spec[Config]{Name: "collector", Usage: usage, Load: LoadConfig,
		Log: func(c Config) program.Log { return c.Log }, Serve: serve,
		HTTP: func(c Config) program.HTTP { return c.HTTP }}, args, stderr)
}

// serve wires the components and runs them until ctx ends.
func serve(ctx context.Context, cfg Config, log *slog.Logger) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	pol, err := errpolicy.New(cfg.Retry, log, reg)
	if err != nil {
		return err
	}
	pcfg := cfg.Kafka.ProducerConfig
	// Every source writes to these two alone (events, dead letters).
	pcfg.Topics = []string{cfg.Kafka.Topic, cfg.Kafka.DeadLetterTopic}
	producer, err := kafka.NewProducer(pcfg, pol, log, reg)
	if err != nil {
		return err
	}
	defer producer.Close()
	protect, err := cfg.PII.masker()
	if err != nil {
		return fmt.Errorf("pii: %w", err)
	}
	var out sender = producer
	if protect != nil {
		// Every dead letter is sealed on its way out, whichever source wrote it.
		out = deadletter.SealingSender{Out: producer, Topic: cfg.Kafka.DeadLetterTopic, Ring: protect.Ring()}
	} else {
		log.Warn("pii is not configured: events and dead letters go to Kafka with phone numbers and e-mails as received")
	}
	pl, err := newPipeline(cfg.Kafka.Topic, cfg.Kafka.DeadLetterTopic, out, reg)
	if err != nil {
		return err
	}
	pl.protect = protect
	if pl.files, err = cfg.fileMappings(); err != nil {
		return err
	}

	var pos *positions.Store
	var tailer *tail.Tailer
	if len(cfg.Files.Include) > 0 {
		if pos, err = positions.Open(cfg.Positions.Path); err != nil {
			return err
		}
		if tailer, err = tail.New(cfg.tailConfig(), pos, pl.handleBatch, log, reg); err != nil {
			return err
		}
	}

	// Readiness: Kafka answered at start and the last send succeeded.
	kc, err := kafka.NewConnector(cfg.Kafka.ClientConfig, log)
	if err != nil {
		return err
	}
	if err := waitForKafka(ctx, kc, log); err != nil {
		return err
	}

	opsLn, err := program.Listen("http.listen", cfg.HTTP.Listen)
	if err != nil {
		return err
	}
	defer opsLn.Close()
	ops := &http.Server{Handler: opsMux(reg, producer), ReadHeaderTimeout: 5 * time.Second}

	var hookSrv *http.Server
	var hookLn net.Listener
	if cfg.Webhook.Listen != "" {
		if hookLn, err = program.Listen("webhook.listen", cfg.Webhook.Listen); err != nil {
			return err
		}
		defer hookLn.Close()
		if cfg.Webhook.TLS.CertFile != "" {
			tc, err := webhookTLS(cfg.Webhook.TLS, log, reg)
			if err != nil {
				return err
			}
			hookLn = tls.NewListener(hookLn, tc)
		}
		wh, err := newWebhook(cfg.Webhook, pl, log, reg)
		if err != nil {
			return err
		}
		// Refused handshakes (an unknown CA, plain HTTP) go to the JSON log.
		hookSrv = &http.Server{Handler: wh.routes(), ReadHeaderTimeout: 10 * time.Second,
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	}
	log.Info("collector started", "files", cfg.Files.Include, "webhook", cfg.Webhook.Listen, "webhook_tls", cfg.Webhook.TLS.CertFile != "", "http", cfg.HTTP.Listen,
		"topic", cfg.Kafka.Topic, "dead_letter_topic", cfg.Kafka.DeadLetterTopic)

	// One run group: a part that fails stops the collector, naming itself.
	g, gctx := program.NewGroup(ctx)
	g.Go("http server ("+cfg.HTTP.Listen+")", func(ctx context.Context) error {
		return program.ServeHTTP(ctx, ops, opsLn, cfg.ShutdownTimeout)
	})
	if hookSrv != nil {
		g.Go("webhook server ("+cfg.Webhook.Listen+")", func(ctx context.Context) error {
			return program.ServeHTTP(ctx, hookSrv, hookLn, cfg.ShutdownTimeout) // waits for requests being answered
		})
	}
	if tailer != nil {
		g.Go("file tailer", tailer.Run)
		g.Go("positions saver", func(ctx context.Context) error {
			return savePositions(ctx, pos, cfg.Positions.SyncInterval)
		})
	}
	<-gctx.Done()
	if ctx.Err() != nil {
		log.Info("shutting down: finishing in-flight batches", "timeout", cfg.ShutdownTimeout)
	}
	runErr := g.Wait()
	if runErr != nil {
		log.Error("collector part failed; stopped", "err", runErr)
	}
	if pos != nil {
		if err := pos.Save(); err != nil {
			log.Error("final positions save failed", "err", err)
			return errors.Join(runErr, fmt.Errorf("final positions save: %w", err))
		}
	}
	if runErr == nil {
		log.Info("collector stopped")
	}
	return runErr
}

// savePositions writes what changed besides acknowledged batches (which
// the tailer saves at once), such as files seen on disk, every interval;
// the final save happens in serve after every reader has stopped. A save
// that fails is the part failing: a collector that cannot record its
// progress would re-read everything since at its next start, so it stops
// and says so.
func savePositions(ctx context.Context, pos *positions.Store, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := pos.Save(); err != nil {
				return fmt.Errorf("save positions: %w", err)
			}
		}
	}
}

// waitForKafka blocks until a broker answers a metadata request, so a
// collector started before Kafka waits instead of reading into a void. A
// refused password or certificate is waited out the same way, saying so,
// until an operator fixes it.
func waitForKafka(ctx context.Context, kc *kafka.Connector, log *slog.Logger) error {
	backoff := 500 * time.Millisecond
	for {
		conn, err := kc.Dial(ctx)
		if err == nil {
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			_, err = conn.Brokers()
			conn.Close()
			if err == nil {
				return nil
			}
		}
		log.Warn("waiting for Kafka", "brokers", kc.Brokers(), "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

func opsMux(reg *prometheus.Registry, producer *kafka.Producer) http.Handler {
	return program.OpsMux(reg, func(*http.Request) error {
		if !producer.Healthy() {
			return errors.New("kafka: last produce failed")
		}
		return nil
	})
}
