package stack

import (
	"context"
	"errors"
	"fmt"

	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// ExtraLoki is a second, short-lived Loki for tests that must change what
// the shared one cannot: multi-tenancy (auth_enabled), per-tenant retention
// rules, compactor clocks. It runs the binary the stack built, from its own
// directory and ports.
type ExtraLoki struct {
	URL string
	// RuntimeConfig is the runtime-config file it re-reads (SetRuntimeConfig).
	RuntimeConfig string
	// RulesDir is the ruler's local rules directory (<RulesDir>/<tenant>/*.yaml).
	RulesDir string
	dir      string
	proc     process
	pid      int
	args     []string // the command line, for Restart
}

// ExtraLokiConfig names the instance and what differs from the stack's.
type ExtraLokiConfig struct {
	// Name keeps two instances apart (a directory under the stack directory).
	Name string
	// HTTPPort and GRPCPort must be free.
	HTTPPort, GRPCPort int
	AuthEnabled        bool
	MultiTenantQueries bool
	// Limits: extra lines under limits_config, two-space indented.
	Limits string
	// RuntimeConfig is the initial runtime-config file's content (per-tenant
	// overrides); it is re-read every 2 s.
	RuntimeConfig string
	// Compactor clocks; empty keeps the stack's (1m).
	CompactionInterval, RetentionDeleteDelay, DeleteCancelPeriod string
	// Args are extra command-line flags (they override the config file),
	// e.g. -ingester.wal-enabled=false.
	Args []string
}

// StartLoki starts the instance and waits until it is ready. The stack
// must have been brought up once (it builds Loki).
func StartLoki(ctx context.Context, cfg ExtraLokiConfig) (*ExtraLoki, error) {
	if cfg.Name == "" || cfg.HTTPPort == 0 || cfg.GRPCPort == 0 {
		return nil, errors.New("extra loki: name, http and grpc ports are required")
	}
	l, err := LayoutFromEnv()
	if err != nil {
		return nil, err
	}
	bin := l.lokiBinary()
	if !exists(bin) {
		return nil, fmt.Errorf("extra loki: %s is not built (run `stack up loki` first)", bin)
	}
	name := "loki-" + cfg.Name
	dir := l.componentDir(name)
	_ = os.RemoveAll(dir)
	rules := filepath.Join(dir, "rules")
	if err := os.MkdirAll(rules, 0o755); err != nil {
		return nil, err
	}
	runtime := filepath.Join(dir, "runtime.yaml")
	if err := os.WriteFile(runtime, []byte(cfg.RuntimeConfig+"\n"), 0o644); err != nil {
		return nil, err
	}
	conf := lokiConfig(lokiOptions{
		HTTPPort: cfg.HTTPPort, GRPCPort: cfg.GRPCPort, AlertmanagerPort: l.Ports.Alertmanager,
		Dir: dir, RulesDir: rules, AuthEnabled: cfg.AuthEnabled, MultiTenantQueries: cfg.MultiTenantQueries,
		Limits: cfg.Limits, RuntimeConfig: runtime, RuntimeReload: "2s",
		CompactionInterval: cfg.CompactionInterval, RetentionDeleteDelay: cfg.RetentionDeleteDelay,
		DeleteCancelPeriod: cfg.DeleteCancelPeriod,
	})
	path := filepath.Join(dir, "loki.yaml")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	s := &ExtraLoki{URL: fmt.Sprintf("http://127.0.0.1:%d", cfg.HTTPPort), RuntimeConfig: runtime, RulesDir: rules, dir: dir, proc: newProcess(l, name)}
	s.args = append([]string{bin, "-config.file=" + path}, cfg.Args...)
	cmd := exec.Command(s.args[0], s.args[1:]...)
	cmd.Dir = dir
	if s.pid, err = s.proc.start(cmd); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := httpReady(rctx, s.URL+"/ready")
		cancel()
		if err == nil {
			return s, nil
		}
		if !alive(s.pid) || time.Now().After(deadline) || ctx.Err() != nil {
			s.Stop()
			return nil, fmt.Errorf("extra loki %s did not start (%v); log:\n%s", cfg.Name, err, tailFile(s.proc.logPath, 30))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// SetRuntimeConfig replaces the runtime-config file (per-tenant limits);
// Loki applies it within a few seconds.
func (s *ExtraLoki) SetRuntimeConfig(content string) error {
	tmp := s.RuntimeConfig + ".tmp"
	if err := os.WriteFile(tmp, []byte(content+"\n"), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, s.RuntimeConfig)
}

// Log is the instance's log file, for a failing test to show.
func (s *ExtraLoki) Log() string { return s.proc.logPath }

// Stop kills the instance and removes its directory.
func (s *ExtraLoki) Stop() {
	if _, err := s.proc.stop(15 * time.Second); err != nil && !errors.Is(err, os.ErrNotExist) {
		_ = syscall.Kill(-s.pid, syscall.SIGKILL)
	}
	_ = os.RemoveAll(s.dir)
}
