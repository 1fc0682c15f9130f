package main

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/assistlog/assistlog/internal/proctest"
)

// TestHealthCommand: `collector health` (the check images with no shell
// run) exits 0 against a running, ready collector, asked through its
// configuration (a wildcard http.listen is asked on loopback) or a URL,
// and non-zero with the reason once the collector has stopped.
func TestHealthCommand(t *testing.T) {
	dir := t.TempDir()
	addr := proctest.FreeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	// ":PORT", as a container listens: health must still find it.
	cfg := lifecycleConfig(t, dir, dir, ":"+port, "")
	bin := proctest.Build(t, ".")
	p := proctest.Start(t, bin, []string{"--config", cfg}, filepath.Join(dir, "collector.log"), "http://"+addr+"/readyz")
	t.Cleanup(p.Kill)

	health := func(args ...string) proctest.Exited {
		return proctest.RunToExit(t, bin, append([]string{"health"}, args...), filepath.Join(t.TempDir(), "health.log"), time.Minute)
	}
	for _, args := range [][]string{{"--config", cfg}, {"--url", "http://" + addr}, {"--url", "http://" + addr + "/readyz"}} {
		if out := health(args...); out.Code != 0 || !strings.Contains(out.Log, "ready") {
			t.Errorf("health %v against a ready collector: exit %d, want 0; output:\n%s", args, out.Code, out.Log)
		}
	}

	p.Stop(30 * time.Second)
	out := health("--config", cfg)
	if out.Code == 0 || !strings.Contains(out.Log, "not ready") || !strings.Contains(out.Log, port) {
		t.Errorf("health against a stopped collector: exit %d, want non-zero saying why; output:\n%s", out.Code, out.Log)
	}
	if out := health(); out.Code == 0 || !strings.Contains(out.Log, "--config") {
		t.Errorf("health with neither --config nor --url: exit %d, want non-zero naming the flags; output:\n%s", out.Code, out.Log)
	}
}

// TestVersionCommand: `collector version` prints the name, the version the
// linker set (the image build sets it) and the Go version.
func TestVersionCommand(t *testing.T) {
	out := proctest.RunToExit(t, proctest.Build(t, "."), []string{"version"}, filepath.Join(t.TempDir(), "version.log"), time.Minute)
	if out.Code != 0 || !strings.HasPrefix(out.Log, "collector ") || !strings.Contains(out.Log, "go1.") {
		t.Errorf("collector version: exit %d, output %q", out.Code, out.Log)
	}
}
