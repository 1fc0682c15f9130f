// Package proctest runs one of assistlog's programs as a real process in
// tests, so fault tests can kill -9 it and restart it.
package proctest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	mu     sync.Mutex
	builds = map[string]string{}
)

// Build compiles the main package in dir (relative to the test's package,
// e.g. ".") once per test run and returns the binary.
func Build(t testing.TB, dir string) string {
	t.Helper()
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if bin, ok := builds[abs]; ok {
		return bin
	}
	// One place per package directory, rebuilt each run: no pile-up of
	// binaries in the temp directory.
	sum := sha256.Sum256([]byte(abs))
	out := filepath.Join(os.TempDir(), "assistlog-test-bin", hex.EncodeToString(sum[:6]))
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(out, filepath.Base(abs))
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = abs
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", abs, err, b)
	}
	builds[abs] = bin
	return bin
}

// FreeAddr returns a loopback address nothing listens on right now.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Process is a running program.
type Process struct {
	t       testing.TB
	cmd     *exec.Cmd
	exited  chan struct{}
	LogPath string
}

// Start runs bin with args, output appended to logPath, and waits until
// readyURL answers 200 (or the process exits, which fails the test).
func Start(t testing.TB, bin string, args []string, logPath, readyURL string) *Process {
	t.Helper()
	p := startProcess(t, bin, args, logPath)
	deadline := time.Now().Add(90 * time.Second)
	for {
		if resp, err := http.Get(readyURL); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case <-p.exited:
			t.Fatalf("%s exited during start-up; log:\n%s", filepath.Base(bin), p.LogTail(40))
		default:
		}
		if time.Now().After(deadline) {
			p.Kill()
			t.Fatalf("%s not ready after 90s; log:\n%s", filepath.Base(bin), p.LogTail(40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Kill ends the process with SIGKILL: no flush, no goodbye.
func (p *Process) Kill() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// Stop sends SIGTERM and fails the test unless the process exits cleanly
// within timeout.
func (p *Process) Stop(timeout time.Duration) {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(timeout):
		p.Kill()
		p.t.Fatalf("no exit within %s of SIGTERM; log:\n%s", timeout, p.LogTail(40))
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		p.t.Errorf("exit code %d after SIGTERM; log:\n%s", code, p.LogTail(40))
	}
}

// LogTail returns the last n lines of the process's output.
func (p *Process) LogTail(n int) string {
	b, _ := os.ReadFile(p.LogPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// String names the process for messages.
func (p *Process) String() string { return fmt.Sprintf("pid %d", p.cmd.Process.Pid) }

// Exited is how a process that ran to its end finished.
type Exited struct {
	Code int
	Log  string // its whole output
}

// RunToExit runs bin with args, output to logPath, and waits up to timeout
// for it to exit on its own (a process still running then is killed and
// fails the test). For programs expected to stop: bad start-up, a part
// failing.
func RunToExit(t testing.TB, bin string, args []string, logPath string, timeout time.Duration) Exited {
	t.Helper()
	p := startProcess(t, bin, args, logPath)
	select {
	case <-p.exited:
	case <-time.After(timeout):
		p.Kill()
		t.Fatalf("%s still running after %s; log:\n%s", filepath.Base(bin), timeout, p.LogTail(40))
	}
	b, _ := os.ReadFile(logPath)
	return Exited{Code: p.cmd.ProcessState.ExitCode(), Log: string(b)}
}

// Started runs bin with args, output appended to logPath, without waiting
// for anything; the test's cleanup kills it.
func Started(t testing.TB, bin string, args []string, logPath string) *Process {
	t.Helper()
	p := startProcess(t, bin, args, logPath)
	t.Cleanup(p.Kill)
	return p
}

// Wait waits up to timeout for the process to exit on its own and returns
// how it did; one still running fails the test.
func (p *Process) Wait(timeout time.Duration) Exited {
	p.t.Helper()
	select {
	case <-p.exited:
	case <-time.After(timeout):
		p.Kill()
		p.t.Fatalf("still running after %s; log:\n%s", timeout, p.LogTail(40))
	}
	b, _ := os.ReadFile(p.LogPath)
	return Exited{Code: p.cmd.ProcessState.ExitCode(), Log: string(b)}
}

func startProcess(t testing.TB, bin string, args []string, logPath string) *Process {
	t.Helper()
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logf.Close()
	p := &Process{t: t, cmd: cmd, exited: make(chan struct{}), LogPath: logPath}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	return p
}
