// Package pipelinetest runs the real collector and shipper programs for
// integration tests: it writes their configuration the way an operator
// would and starts them as processes (so tests can kill -9 them).
package pipelinetest

import (
	"cmp"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/assistlog/assistlog/internal/bitrix24/bitrix24test"
	"github.com/assistlog/assistlog/internal/proctest"
	"github.com/assistlog/assistlog/stack"
)

// Root is the repository root as seen from a test's package directory
// (every test package sits one level down).
const Root = ".."

// Collector settings; Listen defaults to a free port.
type Collector struct {
	Dir          string // configuration, positions and log go here
	Topic, DLQ   string
	Include      []string
	Listen       string
	ExtraYAML    string // appended to the configuration
	PositionsDir string // defaults to Dir
}

// StartCollector writes the collector's configuration and starts it,
// waiting for /readyz; the test's cleanup kills it.
func StartCollector(t testing.TB, ep stack.Endpoints, c Collector) *proctest.Process {
	t.Helper()
	if c.Listen == "" {
		c.Listen = proctest.FreeAddr(t)
	}
	if c.PositionsDir == "" {
		c.PositionsDir = c.Dir
	}
	include := ""
	for _, g := range c.Include {
		include += fmt.Sprintf("%q, ", g)
	}
	cfg := fmt.Sprintf(`kafka:
  brokers: [%q]
  topic: %s
  dead_letter_topic: %s
files:
  include: [%s]
  scan_interval: 200ms
positions:
  path: %s
http:
  listen: %s
%s`, ep.KafkaBrokers, c.Topic, c.DLQ, include, filepath.Join(c.PositionsDir, "positions.json"), c.Listen, c.ExtraYAML)
	path := filepath.Join(c.Dir, "collector.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := proctest.Start(t, proctest.Build(t, filepath.Join(Root, "collector")), []string{"--config", path},
		filepath.Join(c.Dir, "collector.log"), "http://"+c.Listen+"/readyz")
	t.Cleanup(p.Kill)
	return p
}

// HashSecret is the shipper's pii.hash_secret (a collector's edge step
// uses the same).
const HashSecret = "pipelinetest-secret-0123456789"

// Shipper settings; Listen defaults to a free port, Labels to
// {app: assistlog-test}.
type Shipper struct {
	Dir               string
	Name              string // file names: <Name>.yaml, <Name>.log (default "shipper")
	Topic, DLQ, Group string
	Alias             string
	Labels            string // the loki.labels flow mapping, e.g. {app: assistlog, deployment: x}
	Listen            string
	ExtraYAML         string // appended: crm:, batch settings ...
	// ESURL replaces the stack's Elasticsearch and ESExtra is added inside
	// elasticsearch: (e.g. username, password, ca_file, tenants_file for
	// the secured node).
	ESURL, ESExtra string
	PII            string // more lines of the pii: section (each indented two spaces), e.g. keys
}

// ShipperConfig writes the shipper's configuration and returns its path.
func ShipperConfig(t testing.TB, ep stack.Endpoints, s *Shipper) string {
	t.Helper()
	if s.Listen == "" {
		s.Listen = proctest.FreeAddr(t)
	}
	if s.Labels == "" {
		s.Labels = "{app: assistlog-test}"
	}
	if s.Name == "" {
		s.Name = "shipper"
	}
	cfg := fmt.Sprintf(`kafka:
  brokers: [%q]
  topic: %s
  dead_letter_topic: %s
  group_id: %s
elasticsearch:
  urls: [%q]
  alias: %s
%sloki:
  url: %s
  labels: %s
pii:
  hash_secret: %s
%shttp:
  listen: %s
%s`, ep.KafkaBrokers, s.Topic, s.DLQ, s.Group, cmp.Or(s.ESURL, ep.ElasticsearchURL), s.Alias, s.ESExtra, ep.LokiURL, s.Labels, HashSecret, s.PII, s.Listen, s.ExtraYAML)
	path := filepath.Join(s.Dir, s.Name+".yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// StartShipper writes the configuration and starts the shipper, waiting
// for /readyz; the test's cleanup kills it.
func StartShipper(t testing.TB, ep stack.Endpoints, s Shipper) *proctest.Process {
	t.Helper()
	path := ShipperConfig(t, ep, &s)
	p := proctest.Start(t, proctest.Build(t, filepath.Join(Root, "shipper")), []string{"--config", path},
		filepath.Join(s.Dir, s.Name+".log"), "http://"+s.Listen+"/readyz")
	t.Cleanup(p.Kill)
	return p
}

// DropIndicesAtCleanup deletes the alias's monthly indices when the test
// ends.
func DropIndicesAtCleanup(t testing.TB, ep stack.Endpoints, alias string) {
	t.Cleanup(func() {
		req, _ := http.NewRequest(http.MethodDelete, ep.ElasticsearchURL+"/"+alias+"-*", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	})
}

// FakeCRM starts the contract-faithful Bitrix24 fake (HTTPS; its
// certificate written to dir for crm.bitrix24.ca_file) with the leaky bucket
// draining rate requests/s, and returns it with the shipper's crm: section:
// lead sync on, the client at the same rate, links on linksTopic, workers in
// group crm-<run>. The links topic is the caller's to create.
func FakeCRM(t testing.TB, dir string, rate float64, linksTopic, run string) (*bitrix24test.Server, string) {
	t.Helper()
	fake := bitrix24test.New(bitrix24test.Config{Drain: rate, Limit: 50})
	t.Cleanup(fake.Close)
	ca := filepath.Join(dir, "bitrix24-ca.pem")
	if err := os.WriteFile(ca, fake.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	return fake, fmt.Sprintf(`crm:
  enabled: true
  sync: true
  bitrix24:
    webhook_url: %q
    ca_file: %s
    rate_per_second: %g
    retry_backoff_max: 2s
    max_operating_wait: 1m
  links_topic: %s
  worker_group_id: crm-%s
  source_id: WEB
  conversation_url: "http://kibana.example/app/discover#/?session={session_id}"
`, fake.WebhookURL(), ca, rate, linksTopic, run)
}
