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
	"os"
	"os/signal"
	"syscall"
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
}

// Run parses --config and --check, loads and validates the configuration,
// and either reports it valid (--check) or serves until SIGINT or SIGTERM.
func Run[C any](s Spec[C], args []string, stderr io.Writer) error {
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
