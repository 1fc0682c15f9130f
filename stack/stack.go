package stack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// component is one server of the stack and everything needed to run it.
type component struct {
	name    string
	version string
	// install fetches or builds into the cache; a no-op when cached.
	install func(ctx context.Context, in installer) error
	// prepare writes configuration and one-time state (e.g. formatting).
	prepare func(ctx context.Context, s *Stack) error
	command func(s *Stack) (*exec.Cmd, error)
	// ready probes once; nil means ready.
	ready func(ctx context.Context, s *Stack) error
	// afterReady runs each time the component was found or made ready.
	afterReady   func(ctx context.Context, s *Stack) error
	endpoint     func(Layout) string
	readyTimeout time.Duration
	stopGrace    time.Duration
}

// Stack runs the local components.
type Stack struct {
	layout     Layout
	components []*component
	out        io.Writer
	mu         sync.Mutex // serialises progress lines from parallel work
}

// New returns a stack for the layout; progress lines go to out.
func New(l Layout, out io.Writer) *Stack {
	return &Stack{
		layout: l,
		out:    out,
		components: []*component{
			kafkaComponent(),
			elasticsearchComponent(),
			lokiComponent(),
			prometheusComponent(),
			alertmanagerComponent(),
			opensearchComponent(),
			s3Component(),
			esSecureComponent(),
		},
	}
}

// Names lists the component names in start order.
func (s *Stack) Names() []string {
	var n []string
	for _, c := range s.components {
		n = append(n, c.name)
	}
	return n
}

func (s *Stack) logf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(s.out, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func (s *Stack) pick(names []string) ([]*component, error) {
	if len(names) == 0 {
		return s.components, nil
	}
	var out []*component
	for _, n := range names {
		var found *component
		for _, c := range s.components {
			if c.name == n {
				found = c
			}
		}
		if found == nil {
			return nil, fmt.Errorf("unknown component %q (have: %s)", n, strings.Join(s.Names(), ", "))
		}
		out = append(out, found)
	}
	return out, nil
}

// Install fetches and builds the named components (all when none named)
// into the cache, in parallel, under a lock so two runs never build at once.
func (s *Stack) Install(ctx context.Context, names ...string) error {
	comps, err := s.pick(names)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.layout.CacheDir, 0o755); err != nil {
		return err
	}
	unlock, err := lockFile(filepath.Join(s.layout.CacheDir, ".lock"))
	if err != nil {
		return err
	}
	defer unlock()
	if err := s.ensurePrerequisites(ctx); err != nil {
		return err
	}
	in := installer{layout: s.layout, log: s.logf}
	var wg sync.WaitGroup
	errs := make([]error, len(comps))
	for i, c := range comps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			if err := c.install(ctx, in); err != nil {
				errs[i] = fmt.Errorf("install %s %s: %w", c.name, c.version, err)
				return
			}
			if d := time.Since(start); d > 2*time.Second {
				s.logf("%s %s installed in %s", c.name, c.version, d.Round(time.Second))
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Up installs what is missing, starts what is not running and waits until
// every named component is ready. Running components are left alone, so Up
// is idempotent.
func (s *Stack) Up(ctx context.Context, names ...string) error {
	comps, err := s.pick(names)
	if err != nil {
		return err
	}
	if err := s.Install(ctx, names...); err != nil {
		return err
	}
	if err := os.MkdirAll(s.layout.Dir, 0o755); err != nil {
		return err
	}
	// Elasticsearch runs as another user and must be able to enter Dir.
	_ = os.Chmod(s.layout.Dir, 0o755)
	var wg sync.WaitGroup
	errs := make([]error, len(comps))
	for i, c := range comps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.upOne(ctx, c)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (s *Stack) upOne(ctx context.Context, c *component) error {
	p := newProcess(s.layout, c.name)
	if pid, ok := p.pid(); ok {
		if err := c.ready(ctx, s); err == nil {
			s.logf("%s already running (pid %d) at %s", c.name, pid, c.endpoint(s.layout))
			return s.after(ctx, c, p)
		}
		// Started earlier but not answering: wait for it as for a fresh start.
		return s.waitReady(ctx, c, p, pid)
	}
	if err := c.prepare(ctx, s); err != nil {
		return fmt.Errorf("%s: prepare: %w", c.name, err)
	}
	cmd, err := c.command(s)
	if err != nil {
		return fmt.Errorf("%s: %w", c.name, err)
	}
	pid, err := p.start(cmd)
	if err != nil {
		return err
	}
	s.logf("%s %s started (pid %d), waiting until ready", c.name, c.version, pid)
	return s.waitReady(ctx, c, p, pid)
}

func (s *Stack) waitReady(ctx context.Context, c *component, p process, pid int) error {
	start := time.Now()
	deadline := start.Add(c.readyTimeout)
	var last error
	for time.Now().Before(deadline) {
		if !alive(pid) {
			return fmt.Errorf("%s exited during start-up; log %s:\n%s", c.name, p.logPath, tailFile(p.logPath, 25))
		}
		if last = c.ready(ctx, s); last == nil {
			s.logf("%s ready at %s after %s", c.name, c.endpoint(s.layout), time.Since(start).Round(100*time.Millisecond))
			return s.after(ctx, c, p)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not ready after %s: %v; log %s:\n%s", c.name, c.readyTimeout, last, p.logPath, tailFile(p.logPath, 25))
}

func (s *Stack) after(ctx context.Context, c *component, p process) error {
	if c.afterReady == nil {
		return nil
	}
	if err := c.afterReady(ctx, s); err != nil {
		return fmt.Errorf("%s: %w (log %s)", c.name, err, p.logPath)
	}
	return nil
}

// Down stops the named components (all when none named) that Up started.
func (s *Stack) Down(ctx context.Context, names ...string) error {
	comps, err := s.pick(names)
	if err != nil {
		return err
	}
	var errs []error
	// Reverse order: consumers of a component stop before it.
	for i := len(comps) - 1; i >= 0; i-- {
		c := comps[i]
		stopped, err := newProcess(s.layout, c.name).stop(c.stopGrace)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if stopped {
			s.logf("%s stopped", c.name)
		}
	}
	return errors.Join(errs...)
}

// Status describes one component for `stack status`.
type Status struct {
	Name, Version, Endpoint, Log string
	PID                          int
	Running, Ready               bool
	Detail                       string
}

// Status reports every component.
func (s *Stack) Status(ctx context.Context) []Status {
	var out []Status
	for _, c := range s.components {
		p := newProcess(s.layout, c.name)
		st := Status{Name: c.name, Version: c.version, Endpoint: c.endpoint(s.layout), Log: p.logPath}
		st.PID, st.Running = p.pid()
		if err := c.ready(ctx, s); err == nil {
			st.Ready = true
		} else if st.Running {
			st.Detail = err.Error()
		}
		out = append(out, st)
	}
	return out
}

// LogPath returns where a component writes its output.
func (s *Stack) LogPath(name string) (string, error) {
	comps, err := s.pick([]string{name})
	if err != nil {
		return "", err
	}
	return newProcess(s.layout, comps[0].name).logPath, nil
}

// Layout returns the stack's layout.
func (s *Stack) Layout() Layout { return s.layout }

// lockFile takes an exclusive flock, waiting for another holder.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
