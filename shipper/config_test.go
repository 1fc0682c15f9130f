package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExampleConfigLoads(t *testing.T) {
	t.Setenv("ASSISTLOG_PII_SECRET", "a-secret-of-sixteen+")
	t.Setenv("ASSISTLOG_PII_KEY_2026", "0123456789abcdef0123456789abcdef0123456789abcdef")
	t.Setenv("BITRIX24_WEBHOOK_URL", "https://yourco.bitrix24.ru/rest/1/abc123/")
	cfg, err := LoadConfig("shipper.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if m, err := cfg.PII.masker(); err != nil || m.Ring() == nil || cfg.PII.CurrentKey != "k2026" {
		t.Errorf("pii keys: %+v, %v", cfg.PII.KeysConfig, err)
	}
	if cfg.PII.HashSecret != "a-secret-of-sixteen+" || cfg.Elasticsearch.Alias != "assistant-events" || cfg.Loki.Labels["app"] != "assistlog" {
		t.Errorf("unexpected values: %+v", cfg)
	}
}

func TestExampleArchiveConfigLoads(t *testing.T) {
	t.Setenv("ASSISTLOG_PII_SECRET", "a-secret-of-sixteen+")
	t.Setenv("ASSISTLOG_PII_KEY_2026", "0123456789abcdef0123456789abcdef0123456789abcdef")
	t.Setenv("ASSISTLOG_S3_ACCESS_KEY", "AKIAEXAMPLE")
	t.Setenv("ASSISTLOG_S3_SECRET_KEY", "secret-example")
	cfg, err := LoadArchiveConfig("shipper.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Archive
	if a.S3.Endpoint != "http://127.0.0.1:19900" || a.S3.Bucket != "assistlog-archive" || a.S3.Prefix != "events" ||
		!a.S3.PathStyle || a.S3.AccessKey != "AKIAEXAMPLE" || a.S3.SecretKey != "secret-example" ||
		a.GroupID != "assistlog-archiver" || a.RollInterval.Minutes() != 10 || a.MaxRecords != 200000 {
		t.Errorf("unexpected archive section: %+v", a)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("pii: {hash_secret: a-secret-of-sixteen+}\narchive:\n  s3: {endpoint: s3.amazonaws.com, part_size: 1024, access_key: x}\n  max_records: 0\n"), 0o644)
	_, err = LoadArchiveConfig(bad)
	for _, want := range []string{`archive.s3.endpoint: must be an http(s) URL, got "s3.amazonaws.com"`, "archive.s3.bucket: is required",
		"archive.s3.access_key, secret_key: set both or neither", "archive.s3.part_size: must be at least 5 MiB",
		"archive.tenants_file: is required", "archive.max_records"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestBadConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(path, []byte(`
kafka:
  group_id: ""
  batch_linger: 2s
  tls: {ca_file: /etc/assistlog/kafka-ca.pem}
  sasl: {username: shipper, password: secret}
elasticsearch:
  alias: Assistant Events
loki:
  url: 127.0.0.1:3100
  labels: {tenant: x}
pii:
  hash_secret: short
  keys: [{id: k1, key: too-short}]
  current_key: k2
crm:
  enabled: true
  links_topic: assistant.events
  bitrix24:
    webhook_url: http://yourco.bitrix24.ru/rest/1/abc/
`), 0o644)
	_, err := LoadConfig(path)
	for _, want := range []string{"kafka.group_id: is required", `elasticsearch.alias: must be a lower-case index name, got "Assistant Events"`,
		`loki.url: must be http(s)://host:port, got "127.0.0.1:3100"`, `loki.labels: "tenant" is set per event`,
		"pii.hash_secret: is required, at least 16 characters", "crm.bitrix24.webhook_url: must be https",
		"pii.keys[0].key: must be at least 32 characters", `pii.current_key: "k2" is not one of keys[].id`,
		"crm.links_topic: must differ from kafka.topic", "kafka.tls.ca_file: set while tls.enabled is false",
		"kafka.sasl.mechanism: required when sasl.username or sasl.password is set",
		"kafka.batch_linger: must be positive and at most batch_wait (500ms), got 2s"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}
