package stack

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestStopLeavesForeignProcessAlone: a pid file that points at a process
// the stack did not start (a recycled pid) must not get it signalled.
func TestStopLeavesForeignProcessAlone(t *testing.T) {
	l := Layout{Dir: t.TempDir()}
	p := newProcess(l, "kafka")
	foreign := exec.Command("sleep", "30")
	if err := foreign.Start(); err != nil {
		t.Fatal(err)
	}
	defer foreign.Process.Kill()
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.pidPath, []byte(strconv.Itoa(foreign.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	stopped, err := p.stop(time.Second)
	if err != nil || stopped {
		t.Fatalf("stop() = %v, %v; want false, nil", stopped, err)
	}
	if !alive(foreign.Process.Pid) {
		t.Fatal("a process the stack did not start was killed")
	}
}

// TestStartAndStopOwnProcess: what start launched, stop ends, together
// with its children (the process group).
func TestStartAndStopOwnProcess(t *testing.T) {
	l := Layout{Dir: t.TempDir()}
	p := newProcess(l, "loki")
	script := filepath.Join(p.dir, "run.sh")
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// A parent that ignores nothing and a child that would outlive it.
	if err := os.WriteFile(script, []byte("#!/bin/sh\nsleep 60 &\necho started\nwait\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	pid, err := p.start(exec.Command(script))
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := p.pid(); !ok || got != pid {
		t.Fatalf("pid() = %d, %v; want %d, true", got, ok, pid)
	}
	stopped, err := p.stop(5 * time.Second)
	if err != nil || !stopped {
		t.Fatalf("stop() = %v, %v", stopped, err)
	}
	if groupAlive(pid) {
		t.Fatal("a process of the group survived stop")
	}
	if _, err := os.Stat(p.pidPath); !os.IsNotExist(err) {
		t.Fatal("pid file left behind")
	}
}
