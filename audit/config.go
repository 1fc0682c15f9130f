package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/assistlog/assistlog/internal/archive"
	"github.com/assistlog/assistlog/internal/bitrix24"
	"github.com/assistlog/assistlog/internal/config"
	"github.com/assistlog/assistlog/internal/elastic"
	"github.com/assistlog/assistlog/internal/tenants"
)

// Config is audit's configuration; audit.example.yaml documents every
// field.
type Config struct {
	// Elasticsearch is read with the same settings as the shipper's.
	Elasticsearch elastic.Config `yaml:"elasticsearch"`
	// Mirrors are the other stores the shipper writes (its mirrors:);
	// `audit retention apply` and `audit erase` delete there too. Other
	// commands read elasticsearch only.
	Mirrors []elastic.Config `yaml:"mirrors"`
	// TenantsFile lists the tenants and their time zones (relative paths
	// are read from the config file's directory).
	TenantsFile string `yaml:"tenants_file"`
	// LowConfidence is the confidence below which a turn counts as low.
	LowConfidence float64 `yaml:"low_confidence"`
	// ReviewsIndex holds imported review labels.
	ReviewsIndex string `yaml:"reviews_index"`
	// ConversationURL links a conversation in reports and discrepancy
	// files; {tenant} and {session_id} are replaced.
	ConversationURL string `yaml:"conversation_url"`
	// CRM is the Bitrix24 portal reconcile reads.
	CRM CRMConfig `yaml:"crm"`
	// PII keys the phone hash the same way as the shipper, so CRM phone
	// numbers can be matched to stored events without storing numbers.
	PII struct {
		HashSecret string `yaml:"hash_secret"`
	} `yaml:"pii"`
	// Loki, Kafka and Archive are, with the mirrors, the other places a
	// person's data lives; `audit erase` removes it from each one
	// configured (erase_config.go).
	Loki    EraseLokiConfig    `yaml:"loki"`
	Kafka   EraseKafkaConfig   `yaml:"kafka"`
	Archive EraseArchiveConfig `yaml:"archive"`

	// crmErr is why the crm or pii secrets could not be expanded.
	crmErr error
}

// CRMError says why the CRM section's secrets are missing, or nil.
func (c Config) CRMError() error { return c.crmErr }

// CRMConfig is the portal and how the assistant's leads are marked.
type CRMConfig struct {
	Bitrix24 bitrix24.Config `yaml:"bitrix24"`
	// SourceID is the SOURCE_ID the shipper gives the assistant's leads.
	SourceID string `yaml:"source_id"`
	// LeadURL links a lead in transcripts; {crm_id} is replaced. Empty:
	// the portal's lead page, derived from bitrix24.webhook_url.
	LeadURL string `yaml:"lead_url"`
}

// DefaultConfig points at the local stack.
func DefaultConfig() Config {
	return Config{
		Elasticsearch:   elastic.DefaultConfig(),
		LowConfidence:   0.6,
		ReviewsIndex:    "assistant-reviews",
		ConversationURL: "http://127.0.0.1:5601/app/discover#/?_a=(query:(language:lucene,query:'tenant:\"{tenant}\" AND session_id:\"{session_id}\"'))",
		CRM:             CRMConfig{Bitrix24: bitrix24.DefaultConfig(), SourceID: "WEB"},
		Loki:            defaultEraseLoki(),
		Kafka:           defaultEraseKafka(),
		Archive:         EraseArchiveConfig{S3: archive.DefaultStoreConfig()},
	}
}

// LoadConfig reads path over the defaults ("" keeps the defaults), takes
// Elasticsearch credentials from ASSISTLOG_ES_USERNAME/PASSWORD when the
// file has none, expands ${VAR} secrets and validates, naming the field.
func LoadConfig(path string) (Config, error) {
	cfg := DefaultConfig()
	if path != "" {
		if err := config.Load(path, &cfg); err != nil {
			return cfg, err
		}
		if cfg.TenantsFile != "" && !filepath.IsAbs(cfg.TenantsFile) {
			cfg.TenantsFile = filepath.Join(filepath.Dir(path), cfg.TenantsFile)
		}
	}
	if cfg.Elasticsearch.Username == "" && cfg.Elasticsearch.APIKey == "" {
		cfg.Elasticsearch.Username = os.Getenv("ASSISTLOG_ES_USERNAME")
		cfg.Elasticsearch.Password = os.Getenv("ASSISTLOG_ES_PASSWORD")
	}
	var errs []error
	for _, s := range []struct {
		field string
		v     *string
	}{
		{"elasticsearch.password", &cfg.Elasticsearch.Password},
		{"elasticsearch.api_key", &cfg.Elasticsearch.APIKey},
	} {
		errs = append(errs, config.Expand(s.field, s.v))
	}
	for i := range cfg.Mirrors {
		m := &cfg.Mirrors[i]
		// As in the shipper: a mirror keeps the primary's alias unless it says.
		if m.Alias == "" {
			m.Alias = cfg.Elasticsearch.Alias
		}
		if m.FlushBytes == 0 {
			m.FlushBytes = cfg.Elasticsearch.FlushBytes
		}
		errs = append(errs, config.Expand(fmt.Sprintf("mirrors[%d].password", i), &m.Password),
			config.Expand(fmt.Sprintf("mirrors[%d].api_key", i), &m.APIKey))
	}
	if err := errors.Join(errs...); err != nil {
		return cfg, err
	}
	// The CRM's and the phone key's secrets are needed by reconcile (and
	// the report's CRM line) only: an unset variable there must not stop
	// a conversation replay, so it is kept and reported by those that use it.
	var crmErrs []error
	for _, s := range []struct {
		field string
		v     *string
	}{
		{"crm.bitrix24.webhook_url", &cfg.CRM.Bitrix24.WebhookURL},
		{"crm.bitrix24.access_token", &cfg.CRM.Bitrix24.AccessToken},
		{"pii.hash_secret", &cfg.PII.HashSecret},
	} {
		crmErrs = append(crmErrs, config.Expand(s.field, s.v))
	}
	cfg.crmErr = errors.Join(crmErrs...)
	return cfg, cfg.Validate()
}

// Validate names the field at fault. The CRM section is checked by the
// command that uses it.
func (c Config) Validate() error {
	var errs []error
	errs = append(errs, config.Prefixed("elasticsearch.", c.Elasticsearch.Validate())...)
	for i, m := range c.Mirrors {
		errs = append(errs, config.Prefixed(fmt.Sprintf("mirrors[%d].", i), m.Validate())...)
	}
	if c.LowConfidence <= 0 || c.LowConfidence > 1 {
		errs = append(errs, fmt.Errorf("low_confidence: must be in (0, 1], got %g", c.LowConfidence))
	}
	if c.ReviewsIndex == "" {
		errs = append(errs, errors.New("reviews_index: required"))
	}
	return errors.Join(errs...)
}

// Tenants loads the tenants file; commands that count days or weeks need it.
func (c Config) Tenants() (*tenants.Set, error) {
	if c.TenantsFile == "" {
		return nil, errors.New("tenants_file: not set in --config; days and weeks are counted in each tenant's time zone, so audit needs the tenants file")
	}
	return tenants.Load(c.TenantsFile)
}
