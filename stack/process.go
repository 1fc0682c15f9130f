package stack

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// process is one server started by the stack. The pid file is the only
// record of what `up` started, so `down` never touches a process it did not
// start: the pid must be alive and its command line must still mention the
// component's directory (a recycled pid will not).
type process struct {
	name    string
	dir     string // component directory, also the marker in the command line
	logPath string
	pidPath string
}

func newProcess(l Layout, name string) process {
	dir := l.componentDir(name)
	return process{
		name:    name,
		dir:     dir,
		logPath: filepath.Join(dir, name+".log"),
		pidPath: filepath.Join(dir, name+".pid"),
	}
}

// start launches cmd detached in its own session (so it outlives the stack
// command and can be stopped as a group), output appended to the log.
func (p process) start(cmd *exec.Cmd) (int, error) {
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return 0, err
	}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, fmt.Errorf("open log %s: %w", p.logPath, err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "\n==== assistlog stack: starting %s at %s\n==== %s\n", p.name, time.Now().Format(time.RFC3339), strings.Join(cmd.Args, " "))
	cmd.Stdout, cmd.Stderr, cmd.Stdin = logf, logf, nil
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setsid = true
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start %s: %w", p.name, err)
	}
	pid := cmd.Process.Pid
	if err := writeFileAtomic(p.pidPath, []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		return 0, err
	}
	// Reap the child in the background so a crash right after start shows
	// as "not running" rather than as a zombie that still looks alive.
	go func() { _ = cmd.Wait() }()
	return pid, nil
}

// pid returns the recorded pid if that process is alive and is ours.
func (p process) pid() (int, bool) {
	b, err := os.ReadFile(p.pidPath)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	if !p.owns(pid) {
		return 0, false
	}
	return pid, true
}

// owns reports whether pid is alive and its command line refers to this
// component's directory.
func (p process) owns(pid int) bool {
	if !alive(pid) {
		return false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	return bytes.Contains(cmdline, []byte(p.dir))
}

// alive reports whether pid exists and has not exited (a zombie, state Z,
// has).
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')')
	return i > 0 && i+2 < len(stat) && stat[i+2] != 'Z'
}

// stop sends SIGTERM to the process group, waits up to grace, then SIGKILLs.
func (p process) stop(grace time.Duration) (bool, error) {
	pid, ok := p.pid()
	if !ok {
		_ = os.Remove(p.pidPath)
		return false, nil
	}
	if err := syscall.Kill(-pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return true, fmt.Errorf("signal %s (pid %d): %w", p.name, pid, err)
	}
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if !p.owns(pid) && !groupAlive(pid) {
			_ = os.Remove(p.pidPath)
			return true, nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	time.Sleep(300 * time.Millisecond)
	_ = os.Remove(p.pidPath)
	return true, nil
}

// groupAlive reports whether any process of the group pgid remains.
func groupAlive(pgid int) bool {
	return syscall.Kill(-pgid, 0) == nil
}

// writeFileAtomic writes to a temp file, fsyncs it and renames it over path.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), perm); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// tailFile returns the last n lines of a file.
func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
