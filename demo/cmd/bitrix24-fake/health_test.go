package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/assistlog/assistlog/internal/proctest"
)

// TestHealth: `bitrix24-fake health` (the compose demo profile's health
// check) exits 0 while the fake serves TLS with the certificate it wrote,
// and non-zero with the reason once it is gone.
func TestHealth(t *testing.T) {
	dir := t.TempDir()
	bin := proctest.Build(t, ".")
	addr, ca := proctest.FreeAddr(t), filepath.Join(dir, "ca.pem")
	p := proctest.Started(t, bin, []string{"--listen", addr, "--cert-out", ca}, filepath.Join(dir, "fake.log"))
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if b, _ := os.ReadFile(p.LogPath); strings.Contains(string(b), "/rest/") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("fake did not start; log:\n%s", p.LogTail(20))
		}
	}
	health := func() proctest.Exited {
		return proctest.RunToExit(t, bin, []string{"health", "--addr", addr, "--ca", ca}, filepath.Join(t.TempDir(), "health.log"), time.Minute)
	}
	if out := health(); out.Code != 0 || !strings.Contains(out.Log, "ready") {
		t.Errorf("health against the running fake: exit %d; output:\n%s", out.Code, out.Log)
	}
	p.Kill()
	if out := health(); out.Code == 0 || !strings.Contains(out.Log, "not ready") {
		t.Errorf("health against a stopped fake: exit %d, want non-zero; output:\n%s", out.Code, out.Log)
	}
}
