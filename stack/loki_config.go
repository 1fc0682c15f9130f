package stack

import (
	"fmt"
	"strings"
)

// lokiOptions shape one Loki's configuration: the stack's own and the
// extra instances tests start (StartLoki).
type lokiOptions struct {
	HTTPPort, GRPCPort, AlertmanagerPort int
	Dir, RulesDir                        string
	// AuthEnabled makes Loki multi-tenant: every request names its tenant
	// in X-Scope-OrgID, and a request without one is refused (401).
	AuthEnabled bool
	// MultiTenantQueries lets one reader name several tenants at once
	// ("a|b"), as an operator reading everything does.
	MultiTenantQueries bool
	// Limits are extra lines under limits_config (two-space indented
	// YAML), e.g. retention_stream rules.
	Limits string
	// RuntimeConfig is a runtime-config file Loki re-reads every
	// RuntimeReload (per-tenant overrides change without a restart).
	RuntimeConfig string
	RuntimeReload string
	// CompactionInterval, RetentionDeleteDelay and DeleteCancelPeriod are
	// the compactor's clocks: the stack's are short so retention and
	// deletion requests take effect within minutes rather than a day.
	CompactionInterval, RetentionDeleteDelay, DeleteCancelPeriod string
}

func (o lokiOptions) withDefaults() lokiOptions {
	if o.CompactionInterval == "" {
		o.CompactionInterval = "1m"
	}
	if o.RetentionDeleteDelay == "" {
		o.RetentionDeleteDelay = "1m"
	}
	if o.DeleteCancelPeriod == "" {
		o.DeleteCancelPeriod = "1m"
	}
	if o.RuntimeReload == "" {
		o.RuntimeReload = "5s"
	}
	return o
}

func lokiConfig(o lokiOptions) string {
	o = o.withDefaults()
	auth := `auth_enabled: false   # one Loki tenant ("fake"); assistlog's tenants are a label`
	if o.AuthEnabled {
		auth = "auth_enabled: true    # one Loki tenant per business (X-Scope-OrgID)"
	}
	var extra strings.Builder
	if o.RuntimeConfig != "" {
		fmt.Fprintf(&extra, "runtime_config:\n  file: %s\n  period: %s\n", o.RuntimeConfig, o.RuntimeReload)
	}
	// Loki asks its ingesters only about the last 3 h by default: a
	// backfilled entry older than that is unreadable until its chunk is
	// flushed (about 2 min idle here, longer under load), which made counts
	// of a backfill a race with the flush. 0 asks them about every range.
	extra.WriteString("querier:\n  query_ingesters_within: 0\n")
	if o.MultiTenantQueries {
		extra.WriteString("  multi_tenant_queries_enabled: true\n")
	}
	limits := strings.TrimRight(o.Limits, "\n")
	if limits != "" {
		limits += "\n"
	}
	return fmt.Sprintf(lokiTemplate, o.HTTPPort, o.GRPCPort, o.Dir, o.RulesDir, o.AlertmanagerPort,
		auth, o.CompactionInterval, o.RetentionDeleteDelay, o.DeleteCancelPeriod, limits, extra.String())
}

const lokiTemplate = `# Written by assistlog's stack: single binary, filesystem storage, tsdb v13.
%[6]s
server:
  http_listen_address: 127.0.0.1
  http_listen_port: %[1]d
  grpc_listen_address: 127.0.0.1
  grpc_listen_port: %[2]d
  # Loki's default 30 s cut a heavy read off mid-answer (the client saw
  # EOF, not an error): a week's count over a stack that has carried a day
  # of runs, or a test's read while the demo loads the same Loki. With 2 m
  # the query's own limit (limits_config.query_timeout, 1 m) decides, and
  # a read that takes too long gets Loki's error instead of a cut reply.
  http_server_write_timeout: 2m
  log_level: warn
common:
  instance_addr: 127.0.0.1
  path_prefix: %[3]s
  storage:
    filesystem:
      chunks_directory: %[3]s/chunks
      rules_directory: %[4]s
  replication_factor: 1
  ring:
    kvstore:
      store: inmemory
schema_config:
  configs:
    - from: 2024-01-01
      store: tsdb
      object_store: filesystem
      schema: v13
      index: {prefix: index_, period: 24h}
compactor:
  working_directory: %[3]s/compactor
  retention_enabled: true
  delete_request_store: filesystem
  compaction_interval: %[7]s
  retention_delete_delay: %[8]s
  delete_request_cancel_period: %[9]s
distributor:
  # Small enough that a test can exceed it with a few large entries (Loki
  # then answers 413 and the client splits the push); a shipper batch of
  # ordinary events is far below it.
  max_recv_msg_size: 4194304
limits_config:
  retention_period: 744h
  # Tests count lines per event_id over a whole run (one series each) to
  # prove nothing is stored twice; the default 500 would refuse that.
  max_query_series: 100000
  allow_structured_metadata: true
  # Loki's default 4 MB/s per tenant capped the shipper in the benchmarks
  # (429 "ingestion rate limit exceeded"); the stack's one tenant carries
  # every test and benchmark at once.
  ingestion_rate_mb: 64
  ingestion_burst_size_mb: 128
  per_stream_rate_limit: 32MB
  per_stream_rate_limit_burst: 64MB
  # Erasure requests (audit erase) go through Loki's deletion API.
  deletion_mode: filter-and-delete
%[10]singester:
  # Flush quickly so queries over fresh data hit chunks a restart keeps.
  chunk_idle_period: 1m
  # Loki refuses an entry older than the newest of its stream by more than
  # max_chunk_age/2 ("entry too far behind"). Events of one stream arrive
  # interleaved from several Kafka partitions, and a backfill (the demo
  # loads a week) spans days, so the window is widened to 7 days.
  max_chunk_age: 336h
  wal:
    dir: %[3]s/wal
ruler:
  alertmanager_url: http://127.0.0.1:%[5]d
  enable_api: true
  enable_alertmanager_v2: true
  storage:
    type: local
    local:
      directory: %[4]s
  rule_path: %[3]s/rules-temp
  ring:
    kvstore:
      store: inmemory
  # Short intervals so rule files and alerts show up within seconds in tests.
  poll_interval: 10s
  evaluation_interval: 10s
  for_grace_period: 0s
  resend_delay: 5s
analytics:
  reporting_enabled: false
%[11]s`
