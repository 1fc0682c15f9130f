package stack

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// PromtailVersion is the Loki module Promtail is built from for the
// benchmark's file → Loki row (issue 14). Promtail left Loki's module after
// the 3.5 line (the stack's Loki, Versions.Loki, no longer has
// clients/cmd/promtail), so the last Loki release that ships it is used;
// its push protocol is the one the stack's Loki serves.
const PromtailVersion = "v3.5.7"

func (l Layout) promtailBinary() string {
	return filepath.Join(l.CacheDir, "bin", "promtail-"+PromtailVersion)
}

// InstallPromtail builds Promtail from the Go module proxy's copy of Loki
// into the cache (once; about as long as Loki's own build cold) and returns
// the binary. It is not part of `stack up`: only `make bench` needs it.
func InstallPromtail(ctx context.Context, l Layout, out io.Writer) (string, error) {
	bin := l.promtailBinary()
	if exists(bin) {
		return bin, nil
	}
	in := installer{layout: l, log: func(format string, args ...any) { fmt.Fprintf(out, "stack: "+format+"\n", args...) }}
	mod := "github.com/grafana/loki/v3@" + PromtailVersion
	in.log("promtail: building %s/clients/cmd/promtail from the Go module proxy (10-20 minutes cold on 2 cores; cached afterwards)", mod)
	src, err := in.goModDir(ctx, mod)
	if err != nil {
		return "", err
	}
	work := filepath.Join(l.CacheDir, "src", "promtail-"+PromtailVersion)
	_ = os.RemoveAll(work)
	if err := copyTree(src, work); err != nil {
		return "", fmt.Errorf("copy loki module: %w", err)
	}
	// As for Loki (loki.go): the nested ./pkg/push module is not in the
	// module zip; the pinned version Loki requires is on the proxy.
	gomod := filepath.Join(work, "go.mod")
	b, err := os.ReadFile(gomod)
	if err != nil {
		return "", err
	}
	var kept [][]byte
	for _, line := range bytes.Split(b, []byte("\n")) {
		if !bytes.Contains(line, []byte("=> ./pkg/push")) {
			kept = append(kept, line)
		}
	}
	if err := os.WriteFile(gomod, bytes.Join(kept, []byte("\n")), 0o644); err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", err
	}
	tmp := bin + ".partial"
	env := []string{"GOFLAGS=-mod=mod -buildvcs=false", "GOWORK=off", "CGO_ENABLED=0"}
	logPath := filepath.Join(l.CacheDir, "logs", "install-promtail.log")
	// Promtail's journal target needs cgo (systemd headers); without the
	// tag it is left out, which a file-tailing benchmark does not use.
	if err := in.run(ctx, logPath, work, env, "go", "build", "-o", tmp, "./clients/cmd/promtail"); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", err
	}
	return bin, os.RemoveAll(work)
}
