package kafka_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/assistlog/assistlog/internal/certs"
	"github.com/assistlog/assistlog/internal/kafka"
)

// TestClientConfigNamesTheField: each mistake in the tls/sasl block is
// reported at start with the field at fault, and a valid block builds.
func TestClientConfigNamesTheField(t *testing.T) {
	dir := t.TempDir()
	ca, err := certs.NewCA("test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ca.Server("client", time.Hour, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	files, err := ca.WriteFiles(dir, "client", pair)
	if err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	ok := kafka.ClientConfig{Brokers: []string{"127.0.0.1:1"},
		TLS:  kafka.TLSConfig{Enabled: true, CAFile: files.CA, CertFile: files.Cert, KeyFile: files.Key},
		SASL: kafka.SASLConfig{Mechanism: "SCRAM-SHA-512", Username: "u", Password: "p"}}
	if _, err := kafka.NewConnector(ok, nil); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	for name, c := range map[string]struct {
		mutate func(*kafka.ClientConfig)
		field  string
	}{
		"no brokers":         {func(c *kafka.ClientConfig) { c.Brokers = nil }, "brokers:"},
		"ca without tls":     {func(c *kafka.ClientConfig) { c.TLS.Enabled = false; c.TLS.CertFile, c.TLS.KeyFile = "", "" }, "tls.ca_file:"},
		"missing ca":         {func(c *kafka.ClientConfig) { c.TLS.CAFile = filepath.Join(dir, "absent.pem") }, "tls.ca_file:"},
		"ca not pem":         {func(c *kafka.ClientConfig) { c.TLS.CAFile = notPEM }, "tls.ca_file:"},
		"cert without key":   {func(c *kafka.ClientConfig) { c.TLS.KeyFile = "" }, "tls.cert_file, tls.key_file:"},
		"bad key":            {func(c *kafka.ClientConfig) { c.TLS.KeyFile = notPEM }, "tls.cert_file, tls.key_file:"},
		"unknown mechanism":  {func(c *kafka.ClientConfig) { c.SASL.Mechanism = "PLAIN" }, "sasl.mechanism:"},
		"no password":        {func(c *kafka.ClientConfig) { c.SASL.Password = "" }, "sasl.username, sasl.password:"},
		"user, no mechanism": {func(c *kafka.ClientConfig) { c.SASL.Mechanism = "" }, "sasl.mechanism:"},
	} {
		cfg := ok
		c.mutate(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: error %v does not name %s", name, err, c.field)
		}
		if _, err := kafka.NewConnector(cfg, nil); err == nil {
			t.Errorf("%s: connector built", name)
		}
	}
}
