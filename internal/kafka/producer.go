package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"
)

// ProducerConfig configures a Producer. Acknowledgement by all in-sync
// replicas is not configurable: a position advances on it.
type ProducerConfig struct {
	Brokers      []string      `yaml:"brokers"`
	Compression  string        `yaml:"compression"`   // none, gzip, snappy, lz4, zstd
	BatchSize    int           `yaml:"batch_size"`    // messages per produce request
	BatchBytes   int64         `yaml:"batch_bytes"`   // bytes per produce request
	BatchTimeout time.Duration `yaml:"batch_timeout"` // how long a partial batch waits
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// RetryBackoffMax caps the wait between retries of a failed send; the
	// send itself is retried until it succeeds or its context ends.
	RetryBackoffMax time.Duration `yaml:"retry_backoff_max"`
	// Balancer picks a message's partition; nil hashes the key, so one
	// key always lands on one partition.
	Balancer kafkago.Balancer `yaml:"-"`
}

// DefaultProducerConfig favours throughput with a small added latency.
func DefaultProducerConfig() ProducerConfig {
	return ProducerConfig{
		Brokers: []string{"127.0.0.1:19092"}, Compression: "snappy",
		BatchSize: 1000, BatchBytes: 4 << 20, BatchTimeout: 20 * time.Millisecond,
		WriteTimeout: 10 * time.Second, RetryBackoffMax: 10 * time.Second,
	}
}

var codecs = map[string]compress.Codec{
	"none": nil, "gzip": kafkago.Gzip.Codec(), "snappy": kafkago.Snappy.Codec(),
	"lz4": kafkago.Lz4.Codec(), "zstd": kafkago.Zstd.Codec(),
}

// Validate names the field at fault.
func (c ProducerConfig) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("brokers: at least one broker is required"))
	}
	if _, ok := codecs[c.Compression]; !ok {
		errs = append(errs, fmt.Errorf("compression: must be one of none, gzip, snappy, lz4, zstd, got %q", c.Compression))
	}
	if c.BatchSize < 1 || c.BatchBytes < 1 {
		errs = append(errs, fmt.Errorf("batch_size/batch_bytes: must be positive"))
	}
	if c.BatchTimeout <= 0 || c.WriteTimeout <= 0 || c.RetryBackoffMax <= 0 {
		errs = append(errs, fmt.Errorf("batch_timeout, write_timeout, retry_backoff_max: must be positive"))
	}
	return errors.Join(errs...)
}

// Producer sends messages and returns only once Kafka acknowledged every
// one of them (acks from all in-sync replicas), retrying failed ones with
// backoff for as long as its context allows. Nothing is dropped after a
// number of attempts: a caller that gets an error keeps its data.
type Producer struct {
	w       *kafkago.Writer
	cfg     ProducerConfig
	log     *slog.Logger
	healthy atomic.Bool
	m       producerMetrics
}

type producerMetrics struct {
	produced *prometheus.CounterVec
	failures prometheus.Counter
	latency  prometheus.Histogram
}

// NewProducer builds a producer; messages carry their own topic.
func NewProducer(cfg ProducerConfig, log *slog.Logger, reg prometheus.Registerer) (*Producer, error) {
	if reg == nil {
		return nil, errors.New("kafka producer: a metrics registry is required")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("kafka config: %w", err)
	}
	var comp kafkago.Compression
	if c := codecs[cfg.Compression]; c != nil {
		comp = kafkago.Compression(c.Code())
	}
	balancer := cfg.Balancer
	if balancer == nil {
		balancer = &kafkago.Hash{}
	}
	p := &Producer{cfg: cfg, log: log, w: &kafkago.Writer{
		Addr:                   kafkago.TCP(cfg.Brokers...),
		Balancer:               balancer,
		RequiredAcks:           kafkago.RequireAll,
		Compression:            comp,
		BatchSize:              cfg.BatchSize,
		BatchBytes:             cfg.BatchBytes,
		BatchTimeout:           cfg.BatchTimeout,
		WriteTimeout:           cfg.WriteTimeout,
		ReadTimeout:            cfg.WriteTimeout,
		MaxAttempts:            3,
		WriteBackoffMin:        100 * time.Millisecond,
		WriteBackoffMax:        time.Second,
		AllowAutoTopicCreation: false,
	}}
	p.m = producerMetrics{
		produced: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "assistlog_kafka_messages_produced_total",
			Help: "Messages acknowledged by Kafka, by topic."}, []string{"topic"}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "assistlog_kafka_produce_errors_total",
			Help: "Failed produce attempts (each is retried)."}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "assistlog_kafka_produce_seconds",
			Help: "Time from send to acknowledgement of a batch, retries included.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}),
	}
	for _, c := range []prometheus.Collector{p.m.produced, p.m.failures, p.m.latency} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register kafka metrics: %w", err)
		}
	}
	p.healthy.Store(true)
	return p, nil
}

// Healthy reports whether the last send succeeded.
func (p *Producer) Healthy() bool { return p.healthy.Load() }

// Send produces msgs and returns nil once all are acknowledged. On failure
// it retries only the messages that failed, with backoff, until ctx ends.
func (p *Producer) Send(ctx context.Context, msgs []kafkago.Message) error {
	start := time.Now()
	pending := msgs
	backoff := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := p.w.WriteMessages(ctx, pending...)
		if err == nil {
			p.healthy.Store(true)
			p.count(pending)
			p.m.latency.Observe(time.Since(start).Seconds())
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("produce %d messages: %w", len(pending), ctx.Err())
		}
		p.healthy.Store(false)
		p.m.failures.Inc()
		var werrs kafkago.WriteErrors
		if errors.As(err, &werrs) && len(werrs) == len(pending) {
			var failed, ok []kafkago.Message
			for i, e := range werrs {
				if e != nil {
					failed = append(failed, pending[i])
				} else {
					ok = append(ok, pending[i])
				}
			}
			p.count(ok)
			pending = failed
		}
		p.log.Warn("kafka produce failed; retrying", "attempt", attempt, "messages", len(pending), "backoff", backoff, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("produce %d messages: %w", len(pending), ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, p.cfg.RetryBackoffMax)
	}
}

func (p *Producer) count(msgs []kafkago.Message) {
	for _, m := range msgs {
		p.m.produced.WithLabelValues(m.Topic).Inc()
	}
}

// Close flushes and closes the writer.
func (p *Producer) Close() error { return p.w.Close() }
