package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// collectorRun is one collector with the program's defaults except where
// the benchmark must say (topic, files, a webhook).
type collectorRun struct {
	name     string // log and config file names
	dir      string
	topic    string
	include  []string
	extra    string // appended YAML (webhook:)
	readFrom string
}

func (e *env) startCollector(ctx context.Context, c collectorRun) (*proc, error) {
	listen, err := freeAddr()
	if err != nil {
		return nil, err
	}
	if c.name == "" {
		c.name = "collector"
	}
	if c.readFrom == "" {
		c.readFrom = "beginning"
	}
	var inc []string
	for _, g := range c.include {
		inc = append(inc, fmt.Sprintf("%q", g))
	}
	cfg := fmt.Sprintf(`kafka:
  brokers: [%q]
  topic: %s
  dead_letter_topic: %s-dlq
  compression: snappy
files:
  include: [%s]
  scan_interval: 200ms
  read_from: %s
positions:
  path: %s
http:
  listen: %s
log:
  level: warn
%s`, e.ep.KafkaBrokers, c.topic, c.topic, strings.Join(inc, ", "), c.readFrom, filepath.Join(c.dir, c.name+"-positions.json"), listen, c.extra)
	path := filepath.Join(c.dir, c.name+".yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	return e.start(ctx, c.name, c.dir, e.collector, []string{"--config", path}, "http://"+listen+"/readyz")
}

// shipperRun is one shipper instance with the program's defaults.
type shipperRun struct {
	name         string
	dir          string
	topic, group string
	alias, app   string // Elasticsearch alias, Loki label app
	extra        string
}

func (e *env) startShipper(ctx context.Context, s shipperRun) (*proc, error) {
	listen, err := freeAddr()
	if err != nil {
		return nil, err
	}
	if s.name == "" {
		s.name = "shipper"
	}
	cfg := fmt.Sprintf(`kafka:
  brokers: [%q]
  topic: %s
  dead_letter_topic: %s-dlq
  group_id: %s
  batches_in_flight: 4 # the default, stated so the rows do not move with it
elasticsearch:
  urls: [%q]
  alias: %s
loki:
  url: %s
  labels: {app: %s}
  # The stack's Loki limits (stack/loki_config.go).
  max_chunk_age: 336h
  per_stream_rate_limit: 33554432
  per_stream_rate_limit_burst: 67108864
pii:
  hash_secret: bench-secret-0123456789abcdef
http:
  listen: %s
log:
  level: warn
%s`, e.ep.KafkaBrokers, s.topic, s.topic, s.group, e.ep.ElasticsearchURL, s.alias, e.ep.LokiURL, s.app, listen, s.extra)
	path := filepath.Join(s.dir, s.name+".yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	return e.start(ctx, s.name, s.dir, e.shipper, []string{"--config", path}, "http://"+listen+"/readyz")
}
