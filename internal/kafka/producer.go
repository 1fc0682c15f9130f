package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"

	"github.com/assistlog/assistlog/internal/errpolicy"
)

// Destination names Kafka in the error policy's metrics.
const Destination = "kafka"

// refusesEverything are the broker's answers that no retry of the same
// request can change: the topic does not exist (auto-creation is off on
// purpose) or this client may not write to it. The stream pauses until an
// operator creates the topic or grants the ACL.
var refusesEverything = map[kafkago.Error]bool{
	kafkago.UnknownTopicOrPartition:            true,
	kafkago.InvalidTopic:                       true,
	kafkago.TopicAuthorizationFailed:           true,
	kafkago.ClusterAuthorizationFailed:         true,
	kafkago.GroupAuthorizationFailed:           true,
	kafkago.TransactionalIDAuthorizationFailed: true,
	kafkago.SASLAuthenticationFailed:           true,
}

// Classify applies the error policy to a kafka-go error: see
// refusesEverything; everything else (leader changes, timeouts, network,
// not enough replicas) is passing and retried.
func Classify(err error) error {
	var ke kafkago.Error
	if errors.As(err, &ke) && refusesEverything[ke] {
		return errpolicy.Mark(errpolicy.Pause, err)
	}
	var we kafkago.WriteErrors
	if errors.As(err, &we) {
		for _, e := range we {
			if e != nil && errors.As(e, &ke) && refusesEverything[ke] {
				return errpolicy.Mark(errpolicy.Pause, err)
			}
		}
	}
	return err
}

// ProducerConfig configures a Producer. Acknowledgement by all in-sync
// replicas is not configurable: a position advances on it.
type ProducerConfig struct {
	// ClientConfig (brokers, tls, sasl) is shared with the program's
	// other Kafka clients.
	ClientConfig `yaml:",inline"`
	Compression  string        `yaml:"compression"`   // none, gzip, snappy, lz4, zstd
	BatchSize    int           `yaml:"batch_size"`    // messages per produce request
	BatchBytes   int64         `yaml:"batch_bytes"`   // bytes per produce request
	BatchTimeout time.Duration `yaml:"batch_timeout"` // how long a partial batch waits
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// Balancer picks a message's partition; nil hashes the key, so one
	// key always lands on one partition.
	Balancer kafkago.Balancer `yaml:"-"`
	// Topics, when set, are the only topics the producer writes: its
	// metadata cache then holds these alone. Unset, kafka-go caches every
	// topic of the cluster and refreshes it every few seconds — on the
	// stack's 3,000 topics a few MiB live and tens of MiB of garbage a
	// minute, the collector's memory growing with other people's topics.
	Topics []string `yaml:"-"`
}

// DefaultProducerConfig favours throughput with a small added latency.
func DefaultProducerConfig() ProducerConfig {
	return ProducerConfig{
		ClientConfig: ClientConfig{Brokers: []string{"127.0.0.1:19092"}}, Compression: "snappy",
		BatchSize: 1000, BatchBytes: 4 << 20, BatchTimeout: 20 * time.Millisecond,
		WriteTimeout: 10 * time.Second,
	}
}

var codecs = map[string]compress.Codec{
	"none": nil, "gzip": kafkago.Gzip.Codec(), "snappy": kafkago.Snappy.Codec(),
	"lz4": kafkago.Lz4.Codec(), "zstd": kafkago.Zstd.Codec(),
}

// Validate names the field at fault.
func (c ProducerConfig) Validate() error {
	var errs []error
	if err := c.ClientConfig.Validate(); err != nil {
		// Each part on its own, so a caller's prefix ("kafka.") names
		// every field.
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			errs = append(errs, j.Unwrap()...)
		} else {
			errs = append(errs, err)
		}
	}
	if _, ok := codecs[c.Compression]; !ok {
		errs = append(errs, fmt.Errorf("compression: must be one of none, gzip, snappy, lz4, zstd, got %q", c.Compression))
	}
	if c.BatchSize < 1 || c.BatchBytes < 1 {
		errs = append(errs, fmt.Errorf("batch_size/batch_bytes: must be positive"))
	}
	if c.BatchTimeout <= 0 || c.WriteTimeout <= 0 {
		errs = append(errs, fmt.Errorf("batch_timeout, write_timeout: must be positive"))
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
	pol     *errpolicy.Policy
	log     *slog.Logger
	healthy atomic.Bool
	m       producerMetrics
}

type producerMetrics struct {
	produced *prometheus.CounterVec
	failures prometheus.Counter
	latency  prometheus.Histogram
}

// NewProducer builds a producer; messages carry their own topic. Failures
// follow pol.
func NewProducer(cfg ProducerConfig, pol *errpolicy.Policy, log *slog.Logger, reg prometheus.Registerer) (*Producer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("kafka config: %w", err)
	}
	if pol == nil || log == nil || reg == nil {
		return nil, errors.New("kafka producer: an error policy, a logger and a metrics registry are required")
	}
	var comp kafkago.Compression
	if c := codecs[cfg.Compression]; c != nil {
		comp = kafkago.Compression(c.Code())
	}
	conn, err := NewConnector(cfg.ClientConfig, log)
	if err != nil {
		return nil, err
	}
	if len(cfg.Topics) > 0 {
		// Set before the transport's first request, which starts its cache.
		conn.Transport().MetadataTopics = slices.Clone(cfg.Topics)
	}
	balancer := cfg.Balancer
	if balancer == nil {
		balancer = &kafkago.Hash{}
	}
	p := &Producer{cfg: cfg, pol: pol, log: log, w: &kafkago.Writer{
		Addr:                   kafkago.TCP(cfg.Brokers...),
		Transport:              conn.Transport(),
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
	pol.Declare(Destination)
	p.healthy.Store(true)
	return p, nil
}

// Healthy reports whether the last send succeeded.
func (p *Producer) Healthy() bool { return p.healthy.Load() }

// Send produces msgs and returns nil once all are acknowledged. On failure
// it retries only the messages that failed, under the error policy (a
// missing topic or a refused ACL pauses rather than spins), until ctx ends.
func (p *Producer) Send(ctx context.Context, msgs []kafkago.Message) error {
	if len(p.cfg.Topics) > 0 {
		for _, m := range msgs {
			if !slices.Contains(p.cfg.Topics, m.Topic) {
				// Outside the metadata cache it would read as a missing
				// topic and pause forever: a mistake in the program.
				return fmt.Errorf("kafka: topic %q is not one of the producer's topics %v", m.Topic, p.cfg.Topics)
			}
		}
	}
	start := time.Now()
	pending := msgs
	att := p.pol.Start(Destination)
	for {
		err := p.w.WriteMessages(ctx, pending...)
		if err == nil {
			att.Done()
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
		err = Classify(err)
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
		if werr := att.Wait(ctx, fmt.Errorf("produce %d messages: %w", len(pending), err)); werr != nil {
			return fmt.Errorf("kafka: %w", werr)
		}
	}
}

func (p *Producer) count(msgs []kafkago.Message) {
	for _, m := range msgs {
		p.m.produced.WithLabelValues(m.Topic).Inc()
	}
}

// Close flushes and closes the writer.
func (p *Producer) Close() error { return p.w.Close() }
