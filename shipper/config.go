package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/assistlog/assistlog/internal/config"
	"github.com/assistlog/assistlog/internal/elastic"
	"github.com/assistlog/assistlog/internal/errpolicy"
	"github.com/assistlog/assistlog/internal/kafka"
	"github.com/assistlog/assistlog/internal/loki"
	"github.com/assistlog/assistlog/internal/pii"
	"github.com/assistlog/assistlog/internal/program"
	"github.com/assistlog/assistlog/internal/webhooksink"
)

// Config is the shipper's configuration; shipper.example.yaml documents
// every field.
type Config struct {
	Kafka         KafkaConfig    `yaml:"kafka"`
	Elasticsearch elastic.Config `yaml:"elasticsearch"`
	// Mirrors are more search stores written with the same guarantees
	// (e.g. OpenSearch beside Elasticsearch while moving to a managed
	// OpenSearch): a batch is committed only once every store acknowledged
	// it. alias and flush_bytes default to elasticsearch's.
	Mirrors []elastic.Config `yaml:"mirrors"`
	Loki    LokiConfig       `yaml:"loki"`
	PII     PIIConfig        `yaml:"pii"`
	CRM     CRMConfig        `yaml:"crm"`
	// Webhook posts selected masked events to an owner's Sheets, Make or
	// Zapier; a batch commits only once it acknowledged too.
	Webhook webhooksink.Config `yaml:"webhook"`
	// Archive is read by `shipper archive` only.
	Archive ArchiveConfig `yaml:"archive"`
	HTTP    program.HTTP  `yaml:"http"`
	Log     program.Log   `yaml:"log"`
	// Retry is the one error policy's waits, for Kafka, Elasticsearch,
	// Loki and Bitrix24 alike.
	Retry errpolicy.Config `yaml:"retry"`
	// ShutdownTimeout bounds how long SIGTERM waits for the batch in
	// flight to be acknowledged by both sinks and committed.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
}

// KafkaConfig is where events come from and dead letters go.
type KafkaConfig struct {
	kafka.ProducerConfig `yaml:",inline"`
	Topic                string `yaml:"topic"`
	DeadLetterTopic      string `yaml:"dead_letter_topic"`
	// GroupID is shared by every shipper instance: they split partitions.
	GroupID string `yaml:"group_id"`
	// BatchSize and BatchWait bound one batch: it is shipped when full,
	// when BatchWait passed since its first message, or as soon as no
	// message came for BatchLinger (the topic has nothing more for now):
	// waiting out BatchWait for a batch that cannot fill added up to half a
	// second to every event's way to search (bench row 5, bench/NOTES.md).
	BatchSize   int           `yaml:"batch_messages"`
	BatchWait   time.Duration `yaml:"batch_wait"`
	BatchLinger time.Duration `yaml:"batch_linger"`
	// BatchesInFlight is how many batches are shipped at once; offsets are
	// still committed in order, each only after every batch before it
	// (issue 14: one batch at a time left the sinks idle in turn), and
	// their Loki pushes go in fetch order too (lokiTurn), so Loki sees a
	// partition's entries in the order one batch at a time would give it.
	// With crm.enabled it is 1: a batch's enrichment reads the links the
	// previous batch's requests wrote.
	BatchesInFlight int `yaml:"batches_in_flight"`
}

// LokiConfig adds the static labels every stream carries.
type LokiConfig struct {
	loki.Config `yaml:",inline"`
	// Labels are added to every stream, e.g. {env: prod}. The per-event
	// labels are tenant, channel, event_type and level; session and user
	// ids are structured metadata, never labels.
	Labels map[string]string `yaml:"labels"`
}

// PIIConfig keys the phone hash and seals what Kafka keeps.
type PIIConfig struct {
	// HashSecret keys HMAC-SHA256 of phone numbers (at least 16
	// characters). Write it as ${ENV_VAR}; changing it breaks searches by
	// number over older events.
	HashSecret string `yaml:"hash_secret"`
	// KeysConfig (keys, current_key; optional) is the AES-256-GCM ring the
	// collector shares: it opens numbers the collector sealed and seals
	// dead letters and pending CRM links.
	pii.KeysConfig `yaml:",inline"`
}

// masker is the masking step, with the key ring when keys are configured.
func (c PIIConfig) masker() (*pii.Masker, error) {
	if c.KeysConfig.IsZero() {
		return pii.New(c.HashSecret)
	}
	ring, err := pii.NewRing(c.KeysConfig)
	if err != nil {
		return nil, fmt.Errorf("pii: %w", err)
	}
	return pii.NewWithKeys(c.HashSecret, ring)
}

// DefaultConfig is what an empty file means (but pii.hash_secret, which
// has no default).
func DefaultConfig() Config {
	return Config{
		Kafka: KafkaConfig{ProducerConfig: kafka.DefaultProducerConfig(), Topic: kafka.EventsTopic,
			DeadLetterTopic: kafka.DeadLetterTopic, GroupID: "assistlog-shipper", BatchSize: 1000, BatchWait: 500 * time.Millisecond, BatchLinger: 10 * time.Millisecond,
			BatchesInFlight: 4},
		Elasticsearch:   elastic.DefaultConfig(),
		Loki:            LokiConfig{Config: loki.DefaultConfig(), Labels: map[string]string{"app": "assistlog"}},
		CRM:             defaultCRMConfig(),
		Webhook:         webhooksink.DefaultConfig(),
		Archive:         defaultArchiveConfig(),
		HTTP:            program.HTTP{Listen: "127.0.0.1:19102"},
		Log:             program.Log{Level: "info"},
		Retry:           errpolicy.DefaultConfig(),
		ShutdownTimeout: 30 * time.Second,
	}
}

// LoadConfig reads path strictly over the defaults, expands secrets and
// validates.
func LoadConfig(path string) (Config, error) {
	cfg := DefaultConfig()
	if err := config.Load(path, &cfg); err != nil {
		return cfg, err
	}
	var errs []error
	for _, s := range []struct {
		field string
		v     *string
	}{{"pii.hash_secret", &cfg.PII.HashSecret}, {"elasticsearch.password", &cfg.Elasticsearch.Password},
		{"elasticsearch.api_key", &cfg.Elasticsearch.APIKey}} {
		errs = append(errs, config.Expand(s.field, s.v))
	}
	for i := range cfg.PII.Keys {
		errs = append(errs, config.Expand(fmt.Sprintf("pii.keys[%d].key", i), &cfg.PII.Keys[i].Key))
	}
	errs = append(errs, cfg.Kafka.ExpandSecrets("kafka."))
	for i := range cfg.Mirrors {
		m := &cfg.Mirrors[i]
		if m.Alias == "" {
			m.Alias = cfg.Elasticsearch.Alias
		}
		if m.FlushBytes == 0 {
			m.FlushBytes = cfg.Elasticsearch.FlushBytes
		}
		if m.TenantsFile == "" {
			m.TenantsFile = cfg.Elasticsearch.TenantsFile
		}
		errs = append(errs, config.Expand(fmt.Sprintf("mirrors[%d].password", i), &m.Password),
			config.Expand(fmt.Sprintf("mirrors[%d].api_key", i), &m.APIKey))
	}
	if cfg.CRM.Enabled { // the example's ${BITRIX24_WEBHOOK_URL} need not be set when off
		errs = append(errs, config.Expand("crm.bitrix24.webhook_url", &cfg.CRM.Bitrix24.WebhookURL),
			config.Expand("crm.bitrix24.access_token", &cfg.CRM.Bitrix24.AccessToken))
	}
	if cfg.Webhook.Enabled { // likewise ${ASSISTLOG_WEBHOOK_URL} and its secret
		errs = append(errs, config.Expand("webhook.url", &cfg.Webhook.URL),
			config.Expand("webhook.secret", &cfg.Webhook.Secret))
	}
	if err := errors.Join(errs...); err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Validate checks the configuration; every error names its field.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	errs = append(errs, config.Prefixed("kafka.", c.Kafka.ProducerConfig.Validate())...)
	if c.Kafka.Topic == "" || c.Kafka.DeadLetterTopic == "" || c.Kafka.Topic == c.Kafka.DeadLetterTopic {
		add("kafka.topic, kafka.dead_letter_topic: both required and different")
	}
	if c.Kafka.GroupID == "" {
		add("kafka.group_id: is required")
	}
	if c.Kafka.BatchSize < 1 || c.Kafka.BatchWait <= 0 {
		add("kafka.batch_messages, kafka.batch_wait: must be positive")
	}
	if c.Kafka.BatchLinger <= 0 || c.Kafka.BatchLinger > c.Kafka.BatchWait {
		add("kafka.batch_linger: must be positive and at most batch_wait (%s), got %s", c.Kafka.BatchWait, c.Kafka.BatchLinger)
	}
	if c.Kafka.BatchesInFlight < 1 {
		add("kafka.batches_in_flight: must be at least 1, got %d", c.Kafka.BatchesInFlight)
	}
	errs = append(errs, config.Prefixed("retry.", c.Retry.Validate())...)
	errs = append(errs, config.Prefixed("elasticsearch.", c.Elasticsearch.Validate())...)
	for i, m := range c.Mirrors {
		errs = append(errs, config.Prefixed(fmt.Sprintf("mirrors[%d].", i), m.Validate())...)
	}
	errs = append(errs, config.Prefixed("loki.", c.Loki.Config.Validate())...)
	for k := range c.Loki.Labels {
		switch k {
		case "tenant", "channel", "event_type", "level":
			add("loki.labels: %q is set per event", k)
		}
	}
	errs = append(errs, c.CRM.validate()...)
	if c.CRM.Enabled && c.CRM.LinksTopic == c.Kafka.Topic {
		add("crm.links_topic: must differ from kafka.topic")
	}
	if c.Webhook.Enabled {
		errs = append(errs, config.Prefixed("webhook.", c.Webhook.Validate())...)
	}
	if len(c.PII.HashSecret) < 16 {
		add("pii.hash_secret: is required, at least 16 characters (write it as ${ENV_VAR})")
	}
	errs = append(errs, config.Prefixed("pii.", c.PII.KeysConfig.Validate())...)
	if c.HTTP.Listen == "" {
		add("http.listen: is required")
	}
	if err := c.Log.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.ShutdownTimeout <= 0 {
		add("shutdown_timeout: must be positive")
	}
	return errors.Join(errs...)
}
