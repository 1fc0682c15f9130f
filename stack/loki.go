package stack

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/assistlog/assistlog/alerts"
)

func lokiComponent() *component {
	return &component{
		name:         "loki",
		version:      Versions.Loki,
		readyTimeout: 120 * time.Second,
		stopGrace:    30 * time.Second,
		endpoint:     func(l Layout) string { return l.Endpoints().LokiURL },
		install: func(ctx context.Context, in installer) error {
			bin := in.layout.lokiBinary()
			if exists(bin) {
				return nil
			}
			// `go install …/cmd/loki@v` refuses a module with replace
			// directives, so build a copy of Loki's own module, keeping its
			// replaces except the one pointing at ./pkg/push: that nested
			// module is not in the module zip, and the pinned pseudo-version
			// Loki requires is on the proxy.
			mod := "github.com/grafana/loki/v3@" + Versions.Loki
			in.log("loki: building %s from the Go module proxy (about 15 minutes cold on 2 cores; cached afterwards)", mod)
			src, err := in.goModDir(ctx, mod)
			if err != nil {
				return err
			}
			work := filepath.Join(in.layout.CacheDir, "src", "loki-"+Versions.Loki)
			_ = os.RemoveAll(work)
			if err := copyTree(src, work); err != nil {
				return fmt.Errorf("copy loki module: %w", err)
			}
			gomod := filepath.Join(work, "go.mod")
			b, err := os.ReadFile(gomod)
			if err != nil {
				return err
			}
			var kept [][]byte
			for _, line := range bytes.Split(b, []byte("\n")) {
				if bytes.Contains(line, []byte("=> ./pkg/push")) {
					continue
				}
				kept = append(kept, line)
			}
			if err := os.WriteFile(gomod, bytes.Join(kept, []byte("\n")), 0o644); err != nil {
				return err
			}
			tmp := bin + ".partial"
			env := []string{"GOFLAGS=-mod=mod -buildvcs=false", "GOWORK=off", "CGO_ENABLED=0"}
			logPath := filepath.Join(in.layout.CacheDir, "logs", "install-loki.log")
			if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
				return err
			}
			if err := in.run(ctx, logPath, work, env, "go", "build", "-o", tmp, "./cmd/loki"); err != nil {
				return err
			}
			if err := os.Rename(tmp, bin); err != nil {
				return err
			}
			// The source copy is 100+ MB and not needed once built.
			return os.RemoveAll(work)
		},
		prepare: func(ctx context.Context, s *Stack) error {
			dir := s.layout.componentDir("loki")
			rules := filepath.Join(dir, "rules")
			// The repository's content alerts, as shipped, for the ruler.
			if err := installAlertsFile(alerts.LokiRules, filepath.Join(s.layout.Endpoints().LokiRulesDir, "assistlog-content.yaml")); err != nil {
				return err
			}
			p := s.layout.Ports
			conf := fmt.Sprintf(`# Written by assistlog's stack: single binary, filesystem storage, tsdb v13.
auth_enabled: false   # one Loki tenant ("fake"); assistlog's tenants are a label
server:
  http_listen_address: 127.0.0.1
  http_listen_port: %[1]d
  grpc_listen_address: 127.0.0.1
  grpc_listen_port: %[2]d
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
ingester:
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
`, p.Loki, p.LokiGRPC, dir, rules, p.Alertmanager)
			return writeFileAtomic(filepath.Join(dir, "loki.yaml"), []byte(conf), 0o644)
		},
		command: func(s *Stack) (*exec.Cmd, error) {
			dir := s.layout.componentDir("loki")
			cmd := exec.Command(s.layout.lokiBinary(), "-config.file="+filepath.Join(dir, "loki.yaml"))
			cmd.Dir = dir
			return cmd, nil
		},
		ready: func(ctx context.Context, s *Stack) error {
			return httpReady(ctx, s.layout.Endpoints().LokiURL+"/ready")
		},
	}
}
