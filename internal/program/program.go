// Package program is what assistlog's long-running programs (collector,
// shipper) do the same way: flags, configuration, logging, signals, and
// the operations endpoint's shape.
package program

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
)

// HTTP is the operations endpoint: /metrics, /healthz, /readyz.
type HTTP struct {
	Listen string `yaml:"listen"`
}

// Log sets the slog level: debug, info, warn or error.
type Log struct {
	Level string `yaml:"level"`
}

// Validate names the field at fault.
func (l Log) Validate() error {
	switch l.Level {
	case "debug", "info", "warn", "error":
		return nil
	}
	return fmt.Errorf("log.level: must be debug, info, warn or error, got %q", l.Level)
}

// Logger writes JSON lines to w at the configured level.
func (l Log) Logger(w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(l.Level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
}

// Spec describes one program to Run.
type Spec[C any] struct {
	Name  string
	Usage string // printed before the flags
	Load  func(path string) (C, error)
	Log   func(C) Log
	Serve func(ctx context.Context, cfg C, log *slog.Logger) error
	HTTP  func(C) HTTP // the operations endpoint, which `NAME health` asks
}

// Run parses --config and --check, loads and validates the configuration,
// and either reports it valid (--check) or serves until SIGINT or SIGTERM.
// `NAME version` prints the build and `NAME health` asks a running
// instance's /readyz, for images with no shell to run curl in.
func Run[C any](s Spec[C], args []string, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "version":
			PrintVersion(os.Stdout, s.Name)
			return nil
		case "health":
			listenOf := func(path string) (string, error) {
				cfg, err := s.Load(path)
				if err != nil {
					return "", err
				}
				return s.HTTP(cfg).Listen, nil
			}
			return health(context.Background(), s.Name, listenOf, args[1:], os.Stdout, stderr)
		}
	}
	fs := flag.NewFlagSet(s.Name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "path to the YAML configuration (required)")
	check := fs.Bool("check", false, "validate the configuration and exit")
	fs.Usage = func() { fmt.Fprint(stderr, s.Usage); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cfgPath == "" {
		fs.Usage()
		return errors.New("--config is required")
	}
	cfg, err := s.Load(*cfgPath)
	if err != nil {
		return err
	}
	if *check {
		fmt.Fprintln(stderr, "configuration OK")
		return nil
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return s.Serve(ctx, cfg, s.Log(cfg).Logger(os.Stderr))
}

// Group runs a program's long-running parts (readers, servers, consumers)
// as one unit: the first part to fail, or to stop before it was asked to,
// stops every other part, and Wait returns that part's error with its name.
// A program that lost a part must exit non-zero, not limp on without it.
type Group struct {
	g   *errgroup.Group
	ctx context.Context
}

// NewGroup returns a group whose parts run until ctx ends or one of them
// fails; the returned context is the one the parts see.
func NewGroup(ctx context.Context) (*Group, context.Context) {
	g, gctx := errgroup.WithContext(ctx)
	return &Group{g: g, ctx: gctx}, gctx
}

// Go starts part. It is expected to run until its context ends; returning
// earlier, even without an error, counts as failing.
func (g *Group) Go(part string, run func(ctx context.Context) error) {
	g.g.Go(func() error {
		err := run(g.ctx)
		switch {
		case err != nil && g.ctx.Err() != nil && errors.Is(err, context.Canceled):
			return nil // stopping because it was asked to
		case err != nil:
			return fmt.Errorf("%s: %w", part, err)
		case g.ctx.Err() == nil:
			return fmt.Errorf("%s: stopped on its own", part)
		}
		return nil
	})
}

// Wait waits for every part and returns the first failure.
func (g *Group) Wait() error { return g.g.Wait() }

// Listen binds addr for the HTTP endpoint configured at field (e.g.
// "http.listen"); a port that cannot be bound is an error naming the field.
func Listen(field, addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: cannot listen on %s: %w", field, addr, err)
	}
	return ln, nil
}

// ServeHTTP serves on ln until ctx ends, then shuts the server down, giving
// requests being answered up to grace to finish. A server that stops
// serving on its own is an error.
func ServeHTTP(ctx context.Context, srv *http.Server, ln net.Listener, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	err := srv.Shutdown(shutCtx)
	<-errc // http.ErrServerClosed once Shutdown began
	if err != nil {
		return fmt.Errorf("shut down %s: %w", ln.Addr(), err)
	}
	return nil
}
