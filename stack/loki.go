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
			conf := lokiConfig(lokiOptions{HTTPPort: p.Loki, GRPCPort: p.LokiGRPC, Dir: dir, RulesDir: rules, AlertmanagerPort: p.Alertmanager})
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
