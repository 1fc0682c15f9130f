package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/assistlog/assistlog/internal/proctest"
)

// TestHealthCommand: `shipper health` (the check images with no shell run)
// exits 0 against a running, ready shipper, asked through its
// configuration or a URL, and non-zero with the reason once it stopped.
func TestHealthCommand(t *testing.T) {
	e := newEnv(t)
	p := e.start()
	cfg, addr := filepath.Join(e.dir, "shipper-0.yaml"), e.addrs[0]
	bin := proctest.Build(t, ".")
	health := func(args ...string) proctest.Exited {
		return proctest.RunToExit(t, bin, append([]string{"health"}, args...), filepath.Join(t.TempDir(), "health.log"), time.Minute)
	}
	for _, args := range [][]string{{"--config", cfg}, {"--url", "http://" + addr + "/readyz"}} {
		if out := health(args...); out.Code != 0 || !strings.Contains(out.Log, "ready") {
			t.Errorf("health %v against a ready shipper: exit %d, want 0; output:\n%s", args, out.Code, out.Log)
		}
	}
	p.Stop(time.Minute)
	if out := health("--config", cfg); out.Code == 0 || !strings.Contains(out.Log, "not ready") || !strings.Contains(out.Log, addr) {
		t.Errorf("health against a stopped shipper: exit %d, want non-zero saying why; output:\n%s", out.Code, out.Log)
	}
}
