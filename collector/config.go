package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/assistlog/assistlog/internal/config"
	"github.com/assistlog/assistlog/internal/errpolicy"
	"github.com/assistlog/assistlog/internal/program"

	"github.com/assistlog/assistlog/internal/kafka"
	"github.com/assistlog/assistlog/internal/mapping"
	"github.com/assistlog/assistlog/internal/pii"
	"github.com/assistlog/assistlog/internal/tail"
)

// Config is the collector's configuration; collector.example.yaml documents
// every field.
type Config struct {
	Kafka     KafkaConfig     `yaml:"kafka"`
	Files     FilesConfig     `yaml:"files"`
	Positions PositionsConfig `yaml:"positions"`
	Webhook   WebhookConfig   `yaml:"webhook"`
	// PII is the edge step: with it, no phone number or e-mail reaches
	// Kafka raw (events masked and their number sealed, dead letters
	// sealed). Without it events go to Kafka as received.
	PII  PIIConfig    `yaml:"pii"`
	HTTP program.HTTP `yaml:"http"`
	Log  program.Log  `yaml:"log"`
	// Retry is the one error policy's waits (Kafka).
	Retry errpolicy.Config `yaml:"retry"`
	// ShutdownTimeout bounds how long SIGTERM waits for in-flight batches
	// to be acknowledged and positions to be saved.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
}

// KafkaConfig says where events and dead letters go.
type KafkaConfig struct {
	kafka.ProducerConfig `yaml:",inline"`
	Topic                string `yaml:"topic"`
	DeadLetterTopic      string `yaml:"dead_letter_topic"`
}

// FilesConfig is the file source. Its zero Include disables it.
type FilesConfig struct {
	Include       []string      `yaml:"include"`
	Exclude       []string      `yaml:"exclude"`
	ScanInterval  time.Duration `yaml:"scan_interval"`
	PollInterval  time.Duration `yaml:"poll_interval"`
	CloseInactive time.Duration `yaml:"close_inactive"`
	MaxLineBytes  int           `yaml:"max_line_bytes"`
	BatchLines    int           `yaml:"batch_lines"`
	BatchBytes    int           `yaml:"batch_bytes"`
	MaxInFlight   int           `yaml:"max_in_flight"` // batches of one file sent at once
	ReadFrom      string        `yaml:"read_from"`
	// Mappings turn files that are not schema v1 into events; a file takes
	// the first entry one of whose globs matches its path.
	Mappings []FileMapping `yaml:"mappings"`
}

// FileMapping is the mapping of the files matching Match.
type FileMapping struct {
	Match   []string       `yaml:"match"`
	Mapping mapping.Config `yaml:"mapping"`
}

// PositionsConfig is where read positions are kept.
type PositionsConfig struct {
	Path         string        `yaml:"path"`
	SyncInterval time.Duration `yaml:"sync_interval"`
	// ForgetAfter drops positions of files not seen on disk for this long.
	ForgetAfter time.Duration `yaml:"forget_after"`
}

// WebhookConfig is the HTTP source. An empty Listen disables it.
type WebhookConfig struct {
	Listen         string         `yaml:"listen"`
	MaxBodyBytes   int64          `yaml:"max_body_bytes"`
	MaxInFlight    int            `yaml:"max_in_flight"`
	ProduceTimeout time.Duration  `yaml:"produce_timeout"`
	Tenants        []TenantConfig `yaml:"tenants"`
	// Hooks are the channel webhooks at /v1/hooks/<name>.
	Hooks []HookConfig `yaml:"hooks"`
	// TLS serves the webhook over HTTPS; empty cert_file: plain HTTP.
	TLS WebhookTLSConfig `yaml:"tls"`
}

// WebhookTLSConfig is the webhook's certificate, read again when the files
// change (a renewed certificate needs no restart).
type WebhookTLSConfig struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFile, when set, makes clients present a certificate signed
	// by one of its CAs (mutual TLS) besides their token or signature.
	ClientCAFile string `yaml:"client_ca_file"`
}

// validate names the field at fault; it reads the files, so a wrong path
// or a key that does not match is reported by --check.
func (t WebhookTLSConfig) validate() []error {
	if t.CertFile == "" && t.KeyFile == "" {
		if t.ClientCAFile != "" {
			return []error{errors.New("webhook.tls.client_ca_file: needs webhook.tls.cert_file and key_file")}
		}
		return nil
	}
	if t.CertFile == "" || t.KeyFile == "" {
		return []error{errors.New("webhook.tls.cert_file, webhook.tls.key_file: set both or neither")}
	}
	var errs []error
	if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
		errs = append(errs, fmt.Errorf("webhook.tls.cert_file, webhook.tls.key_file: %w", err))
	}
	if t.ClientCAFile != "" {
		if _, err := certPool(t.ClientCAFile); err != nil {
			errs = append(errs, fmt.Errorf("webhook.tls.client_ca_file: %w", err))
		}
	}
	return errs
}

// certPool reads a PEM bundle of CA certificates.
func certPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

// PIIConfig is the edge step's secrets, the same as the shipper's pii
// section: the phone-hash secret (ids that are numbers become the same
// tokens the shipper makes) and the AES-256-GCM keys (numbers sealed for
// the shipper's CRM lookup, dead letters sealed for `dlq replay`).
type PIIConfig struct {
	HashSecret     string `yaml:"hash_secret"`
	pii.KeysConfig `yaml:",inline"`
}

// enabled reports whether the edge step is configured.
func (c PIIConfig) enabled() bool { return c.HashSecret != "" || !c.KeysConfig.IsZero() }

// masker builds the edge step (nil when it is off).
func (c PIIConfig) masker() (*pii.Masker, error) {
	if !c.enabled() {
		return nil, nil
	}
	ring, err := pii.NewRing(c.KeysConfig)
	if err != nil {
		return nil, err
	}
	return pii.NewWithKeys(c.HashSecret, ring)
}

// TenantConfig holds one tenant's credentials. Values may be written as
// ${ENV_VAR} so secrets stay out of the file.
type TenantConfig struct {
	Tenant     string   `yaml:"tenant"`
	Tokens     []string `yaml:"tokens"`
	HMACSecret string   `yaml:"hmac_secret"`
	// Mapping applies to this tenant's POST /v1/events (none: v1 only).
	Mapping mapping.Config `yaml:"mapping"`
}

// DefaultConfig is what an empty file means.
func DefaultConfig() Config {
	pc := kafka.DefaultProducerConfig()
	// A file batch is spread over the partitions, so no partition's share
	// fills a produce request: each waits batch_timeout, which with 20ms
	// was a third of the old one-batch-at-a-time run (see files.max_in_flight).
	pc.BatchTimeout = 5 * time.Millisecond
	return Config{
		Kafka: KafkaConfig{ProducerConfig: pc,
			Topic: kafka.EventsTopic, DeadLetterTopic: kafka.DeadLetterTopic},
		Files: FilesConfig{
			Exclude:      []string{"*.gz", "*.zip", "*.bz2", "*.xz"},
			ScanInterval: time.Second, PollInterval: 250 * time.Millisecond, CloseInactive: 5 * time.Minute,
			MaxLineBytes: 256 << 10, BatchLines: 1000, BatchBytes: 2 << 20, MaxInFlight: 4, ReadFrom: "beginning",
		},
		Positions: PositionsConfig{Path: "/var/lib/assistlog/collector/positions.json", SyncInterval: time.Second,
			ForgetAfter: 7 * 24 * time.Hour},
		Webhook:         WebhookConfig{MaxBodyBytes: 5 << 20, MaxInFlight: 64, ProduceTimeout: 15 * time.Second},
		HTTP:            program.HTTP{Listen: "127.0.0.1:19101"},
		Log:             program.Log{Level: "info"},
		Retry:           errpolicy.DefaultConfig(),
		ShutdownTimeout: 15 * time.Second,
	}
}

// LoadConfig reads path strictly over the defaults (unknown keys are
// errors), expands ${VAR} in credentials, and validates.
func LoadConfig(path string) (Config, error) {
	cfg := DefaultConfig()
	if err := config.Load(path, &cfg); err != nil {
		return cfg, err
	}
	if err := cfg.expandSecrets(); err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

func (c *Config) expandSecrets() error {
	var errs []error
	errs = append(errs, config.Expand("pii.hash_secret", &c.PII.HashSecret))
	for i := range c.PII.Keys {
		errs = append(errs, config.Expand(fmt.Sprintf("pii.keys[%d].key", i), &c.PII.Keys[i].Key))
	}
	errs = append(errs, c.Kafka.ExpandSecrets("kafka."))
	for i := range c.Webhook.Tenants {
		t := &c.Webhook.Tenants[i]
		for j := range t.Tokens {
			errs = append(errs, config.Expand(fmt.Sprintf("webhook.tenants[%d].tokens[%d]", i, j), &t.Tokens[j]))
		}
		errs = append(errs, config.Expand(fmt.Sprintf("webhook.tenants[%d].hmac_secret", i), &t.HMACSecret))
	}
	for i := range c.Webhook.Hooks {
		h := &c.Webhook.Hooks[i]
		for j := range h.Tokens {
			errs = append(errs, config.Expand(fmt.Sprintf("webhook.hooks[%d].tokens[%d]", i, j), &h.Tokens[j]))
		}
		for _, f := range []struct {
			name string
			v    *string
		}{{"hmac_secret", &h.HMACSecret}, {"secret_token", &h.SecretToken}, {"app_secret", &h.AppSecret}, {"verify_token", &h.VerifyToken}} {
			errs = append(errs, config.Expand(fmt.Sprintf("webhook.hooks[%d].%s", i, f.name), f.v))
		}
	}
	return errors.Join(errs...)
}

// tailConfig maps the file section onto the tail package's config.
func (c Config) tailConfig() tail.Config {
	f := c.Files
	return tail.Config{Include: f.Include, Exclude: f.Exclude, ScanInterval: f.ScanInterval,
		PollInterval: f.PollInterval, CloseInactive: f.CloseInactive, MaxLineBytes: f.MaxLineBytes,
		BatchLines: f.BatchLines, BatchBytes: f.BatchBytes, ReadFrom: f.ReadFrom, DrainTimeout: c.ShutdownTimeout,
		ForgetAfter: c.Positions.ForgetAfter, MaxInFlight: f.MaxInFlight}
}

var reTenant = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// Validate checks rules across fields; each error names its field.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	errs = append(errs, config.Prefixed("kafka.", c.Kafka.ProducerConfig.Validate())...)
	errs = append(errs, config.Prefixed("retry.", c.Retry.Validate())...)
	if c.Kafka.Topic == "" {
		add("kafka.topic: is required")
	}
	if c.Kafka.DeadLetterTopic == "" || c.Kafka.DeadLetterTopic == c.Kafka.Topic {
		add("kafka.dead_letter_topic: is required and must differ from kafka.topic")
	}
	if len(c.Files.Include) == 0 && c.Webhook.Listen == "" {
		add("files.include, webhook.listen: nothing to collect; configure files, the webhook or both")
	}
	if len(c.Files.Include) > 0 {
		for _, err := range config.Prefixed("files.", c.tailConfig().Validate()) {
			// forget_after lives in the positions section.
			if strings.HasPrefix(err.Error(), "files.forget_after") {
				err = fmt.Errorf("positions.%s", strings.TrimPrefix(err.Error(), "files."))
			}
			errs = append(errs, err)
		}
		for i, fm := range c.Files.Mappings {
			if len(fm.Match) == 0 {
				add("files.mappings[%d].match: at least one glob is required", i)
			}
			for j, g := range fm.Match {
				if _, err := filepath.Match(g, ""); err != nil {
					add("files.mappings[%d].match[%d]: bad glob %q: %v", i, j, g, err)
				}
			}
			if _, err := mapping.Compile(fm.Mapping); err != nil {
				errs = append(errs, config.Prefixed(fmt.Sprintf("files.mappings[%d].mapping.", i), err)...)
			}
		}
		if c.Positions.Path == "" {
			add("positions.path: is required when files are collected")
		}
		if c.Positions.SyncInterval <= 0 {
			add("positions.sync_interval: must be positive")
		}
	}
	if c.Webhook.Listen != "" {
		w := c.Webhook
		if w.MaxBodyBytes < 1024 {
			add("webhook.max_body_bytes: must be at least 1024, got %d", w.MaxBodyBytes)
		}
		if w.MaxInFlight < 1 {
			add("webhook.max_in_flight: must be positive, got %d", w.MaxInFlight)
		}
		if w.ProduceTimeout <= 0 {
			add("webhook.produce_timeout: must be positive")
		}
		if len(w.Tenants) == 0 && len(w.Hooks) == 0 {
			add("webhook.tenants, webhook.hooks: at least one tenant with a token or an HMAC secret, or one hook, is required")
		}
		for i, t := range w.Tenants {
			if _, err := mapping.Compile(t.Mapping); err != nil && !t.Mapping.IsZero() {
				errs = append(errs, config.Prefixed(fmt.Sprintf("webhook.tenants[%d].mapping.", i), err)...)
			}
		}
		errs = append(errs, validateHooks(w.Hooks)...)
		errs = append(errs, w.TLS.validate()...)
		seen := map[string]bool{}
		for i, t := range w.Tenants {
			if !reTenant.MatchString(t.Tenant) {
				add("webhook.tenants[%d].tenant: must be a tenant name (lower-case letters, digits, -), got %q", i, t.Tenant)
			}
			if seen[t.Tenant] {
				add("webhook.tenants[%d].tenant: %q listed twice", i, t.Tenant)
			}
			seen[t.Tenant] = true
			if len(t.Tokens) == 0 && t.HMACSecret == "" {
				add("webhook.tenants[%d]: needs tokens or hmac_secret", i)
			}
			for j, tok := range t.Tokens {
				if len(tok) < 16 {
					add("webhook.tenants[%d].tokens[%d]: must be at least 16 characters", i, j)
				}
			}
			if t.HMACSecret != "" && len(t.HMACSecret) < 16 {
				add("webhook.tenants[%d].hmac_secret: must be at least 16 characters", i)
			}
		}
	}
	if c.PII.enabled() {
		if len(c.PII.HashSecret) < 16 {
			add("pii.hash_secret: is required with pii.keys, at least 16 characters, the shipper's pii.hash_secret (write it as ${ENV_VAR})")
		}
		if len(c.PII.Keys) == 0 {
			add("pii.keys: at least one key is required with pii.hash_secret (a secret of at least 32 characters as ${ENV_VAR})")
		}
		errs = append(errs, config.Prefixed("pii.", c.PII.KeysConfig.Validate())...)
	}
	if c.HTTP.Listen == "" {
		add("http.listen: is required (metrics and health)")
	}
	if err := c.Log.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.ShutdownTimeout <= 0 {
		add("shutdown_timeout: must be positive")
	}
	return errors.Join(errs...)
}

// fileMappings compiles files.mappings (validated by LoadConfig).
func (c Config) fileMappings() ([]compiledFileMapping, error) {
	var out []compiledFileMapping
	for i, fm := range c.Files.Mappings {
		m, err := mapping.Compile(fm.Mapping)
		if err != nil {
			return nil, fmt.Errorf("files.mappings[%d].mapping: %w", i, err)
		}
		out = append(out, compiledFileMapping{match: fm.Match, m: m})
	}
	return out, nil
}

type compiledFileMapping struct {
	match []string
	m     *mapping.Mapping
}

// mappingFor returns the mapping of the file at path, or nil (v1 as written).
func mappingFor(ms []compiledFileMapping, path string) *mapping.Mapping {
	for _, fm := range ms {
		if globsMatch(fm.match, path) {
			return fm.m
		}
	}
	return nil
}

// globsMatch reports whether a glob matches the path or its base name.
func globsMatch(globs []string, path string) bool {
	for _, g := range globs {
		if ok, _ := filepath.Match(g, path); ok {
			return true
		}
		if ok, _ := filepath.Match(g, filepath.Base(path)); ok {
			return true
		}
	}
	return false
}
