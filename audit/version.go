package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/assistlog/assistlog/internal/program"
)

// runVersion prints the build, like the collector's and shipper's version.
func runVersion(_ context.Context, a *app, _ []string) error {
	program.PrintVersion(a.stdout, "audit")
	return nil
}

const checkUsage = `audit check — load and validate an audit configuration, then exit.

Usage:
  audit check --config audit.yaml

audit runs no server (its commands run and exit, e.g. as CronJobs), so it has
no health command; this is what an image's smoke test or a CI step runs.

Flags:
`

// runCheck validates a configuration the way every command loads it.
func runCheck(_ context.Context, a *app, args []string) error {
	fs := flag.NewFlagSet("audit check", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	cfgPath := fs.String("config", "", "path to the audit configuration (required)")
	fs.Usage = func() { fmt.Fprint(a.stderr, checkUsage); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cfgPath == "" {
		fs.Usage()
		return errors.New("check: --config is required")
	}
	if _, err := LoadConfig(*cfgPath); err != nil {
		return err
	}
	fmt.Fprintln(a.stderr, "configuration OK")
	return nil
}
