package main

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/assistlog/assistlog/internal/archive"
	"github.com/assistlog/assistlog/internal/config"
	"github.com/assistlog/assistlog/internal/kafka"
)

// EraseLokiConfig is the Loki the shipper writes to, for its deletion API.
// An empty url means no Loki: the receipt says it was not erased there.
type EraseLokiConfig struct {
	URL string `yaml:"url"`
	// TenantID is sent as X-Scope-OrgID (Loki with auth enabled).
	TenantID    string `yaml:"tenant_id"`
	Username    string `yaml:"username"`
	Password    string `yaml:"password"`
	BearerToken string `yaml:"bearer_token"`
	// Labels are the shipper's static loki.labels (e.g. {app: assistlog}):
	// the deletion selects {tenant="T", these…}, so another deployment
	// sharing the Loki is never touched.
	Labels  map[string]string `yaml:"labels"`
	Timeout time.Duration     `yaml:"timeout"`
}

func defaultEraseLoki() EraseLokiConfig {
	return EraseLokiConfig{Labels: map[string]string{"app": "assistlog"}, Timeout: 30 * time.Second}
}

// EraseKafkaConfig is where the CRM links live. No brokers: the receipt
// says the links topic was not erased.
type EraseKafkaConfig struct {
	Brokers []string `yaml:"brokers"`
	// LinksTopic is the shipper's crm.links_topic.
	LinksTopic string `yaml:"links_topic"`
}

func defaultEraseKafka() EraseKafkaConfig {
	return EraseKafkaConfig{LinksTopic: kafka.CRMLinksTopic}
}

// EraseArchiveConfig is the shipper's archive.s3 section. No endpoint: no
// archive, and the receipt says so.
type EraseArchiveConfig struct {
	S3 archive.StoreConfig `yaml:"s3"`
}

// eraseSettings expands the secrets of the sections erase uses and checks
// them, naming the field; the other commands never need them.
func (c *Config) eraseSettings() error {
	var errs []error
	l := &c.Loki
	if l.URL != "" {
		errs = append(errs, config.Expand("loki.password", &l.Password), config.Expand("loki.bearer_token", &l.BearerToken))
		if !strings.HasPrefix(l.URL, "http://") && !strings.HasPrefix(l.URL, "https://") {
			errs = append(errs, fmt.Errorf("loki.url: must be http(s)://host:port, got %q", l.URL))
		}
		if l.BearerToken != "" && l.Username != "" {
			errs = append(errs, errors.New("loki.bearer_token, loki.username: set one way to authenticate, not both"))
		}
		if l.Timeout <= 0 {
			errs = append(errs, errors.New("loki.timeout: must be positive"))
		}
		for k := range l.Labels {
			if k == "tenant" {
				errs = append(errs, errors.New("loki.labels: tenant is set per request (--tenant)"))
			}
		}
	}
	if len(c.Kafka.Brokers) > 0 && c.Kafka.LinksTopic == "" {
		errs = append(errs, errors.New("kafka.links_topic: required when kafka.brokers is set"))
	}
	if c.Archive.S3.Endpoint != "" {
		errs = append(errs, config.Expand("archive.s3.access_key", &c.Archive.S3.AccessKey),
			config.Expand("archive.s3.secret_key", &c.Archive.S3.SecretKey))
		errs = append(errs, config.Prefixed("archive.s3.", c.Archive.S3.Validate())...)
	}
	return errors.Join(errs...)
}

// authorize adds Loki's tenant and credentials to a request.
func (l EraseLokiConfig) authorize(req *http.Request) {
	if l.TenantID != "" {
		req.Header.Set("X-Scope-OrgID", l.TenantID)
	}
	switch {
	case l.BearerToken != "":
		req.Header.Set("Authorization", "Bearer "+l.BearerToken)
	case l.Username != "":
		req.SetBasicAuth(l.Username, l.Password)
	}
}
