package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
	_ "time/tzdata" // tenants' zones must load in images without zoneinfo

	"github.com/assistlog/assistlog/internal/esread"
	"github.com/assistlog/assistlog/internal/output"
	"github.com/assistlog/assistlog/internal/period"
	"github.com/assistlog/assistlog/internal/tenants"
)

// app is one run of the audit command.
type app struct {
	stdout, stderr io.Writer
	now            func() time.Time
}

// command is a subcommand: audit NAME ...
type command struct {
	name, summary string
	run           func(ctx context.Context, a *app, args []string) error
}

// commands lists every subcommand; each lives in its own file.
func commands() []command {
	return []command{
		{"query", "run a saved search (the Kibana saved searches)", func(ctx context.Context, a *app, args []string) error {
			return runQuery(ctx, args, a.stdout, a.stderr)
		}},
		{"consent", "prove each lead's consent: consent.given before the contact data; --proof FILE, verify FILE", runConsent},
		{"conversation", "replay one conversation with its integrity verdict (gaps, repeats, start, end)", runConversation},
		{"review", "the weekly low-confidence review: sample a sheet, import the labels, summarise the causes", runReview},
		{"visits", "confirmed appointments against attended / no-show: the unmarked ones to chase", runVisits},
		{"reconcile", "the assistant's leads in the logs against Bitrix24: lost, orphans, duplicates (exit 3 over --max-loss)", runReconcile},
		{"kpi", "owners' KPIs, exact: conversion, confirmed share, no-shows, response and manager times", runKPI},
		{"report", "the weekly owner report: HTML with charts, or text for Telegram", func(ctx context.Context, a *app, args []string) error {
			return runReport(ctx, a, args, wiredReportHooks())
		}},
		{"erase", "erase one person's data on request (by phone or session) everywhere, with a receipt; --dry-run counts", runErase},
		{"export", "events as CSV (Excel, Google Sheets, Looker Studio) or JSON, masked", runExport},
		{"retention", "delete what is past each tenant's retention (apply [--dry-run]); Loki's retention rules (loki-config)", runRetention},
		{"version", "print the version, commit and Go version", runVersion},
		{"check", "validate an audit configuration (--config) and exit", runCheck},
		{"access", "the Elasticsearch roles: shipper writes, ops read all, each tenant's auditors read that tenant only", runAccess},
	}
}

// exitError carries an exit code other than 1 (e.g. reconcile's 3 when the
// loss is over --max-loss).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func (a *app) run(ctx context.Context, args []string) error {
	cmds := commands()
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].name < cmds[j].name })
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		a.usage(cmds)
		return nil
	}
	for _, c := range cmds {
		if c.name == args[0] {
			return c.run(ctx, a, args[1:])
		}
	}
	a.usage(cmds)
	return fmt.Errorf("unknown command %q", args[0])
}

func (a *app) usage(cmds []command) {
	fmt.Fprint(a.stderr, `audit — the auditors' and owners' tool over assistlog's complete record
(Elasticsearch) and the Bitrix24 CRM.

Usage: audit COMMAND [flags]   (audit COMMAND --help for its flags and examples)

Commands:
`)
	tw := tabwriter.NewWriter(a.stderr, 0, 4, 2, ' ', 0)
	for _, c := range cmds {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	tw.Flush()
	fmt.Fprint(a.stderr, `
Common flags: --config FILE (or ASSISTLOG_AUDIT_CONFIG; see audit/audit.example.yaml),
--tenant NAME (default: all), a period as --week 2026-W47, --from 2026-11-16 --to 2026-11-22
(days included), --month 2026-11 or --last 7d, read in each tenant's time zone from the
tenants file, and --format table|csv|json|md.
`)
}

// common is the flags every command shares.
type common struct {
	configPath string
	tenant     string
	format     string
	period     period.Spec
}

// flags registers --config, --tenant and --format, and the period flags
// when withPeriod.
func (c *common) flags(fs *flag.FlagSet, withPeriod bool, formats []string) {
	fs.StringVar(&c.configPath, "config", os.Getenv("ASSISTLOG_AUDIT_CONFIG"), "audit config file (see audit/audit.example.yaml)")
	fs.StringVar(&c.tenant, "tenant", "", "only this tenant (default: all in the tenants file)")
	if formats == nil {
		formats = output.Formats
	}
	fs.StringVar(&c.format, "format", "table", strings.Join(formats, ", "))
	if withPeriod {
		fs.StringVar(&c.period.Week, "week", "", "an ISO week, e.g. 2026-W47 (Monday–Sunday in the tenant's zone)")
		fs.StringVar(&c.period.From, "from", "", "first day, e.g. 2026-11-16 (or an RFC 3339 instant)")
		fs.StringVar(&c.period.To, "to", "", "last day, included (or an RFC 3339 instant, excluded)")
		fs.StringVar(&c.period.Month, "month", "", "a calendar month, e.g. 2026-11")
		fs.StringVar(&c.period.Last, "last", "", "up to now, e.g. 7d, 2w, 24h")
	}
}

// parse parses args with fs; --help is not an error. Flags may come
// after positional arguments (audit conversation ID --format md).
func parse(fs *flag.FlagSet, args []string) (positional []string, help bool, err error) {
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, true, nil
			}
			return nil, false, err
		}
		if fs.NArg() == 0 {
			return positional, false, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// env is what a command works with once its flags are read.
type env struct {
	cfg     Config
	es      *esread.Reader
	tenants *tenants.Set // nil when the config names no tenants file
}

// load reads the config, connects the reader and, when needTenants, loads
// the tenants file and checks --tenant against it.
func (c *common) load(needTenants bool) (*env, error) {
	cfg, err := LoadConfig(c.configPath)
	if err != nil {
		return nil, err
	}
	es, err := esread.New(cfg.Elasticsearch, nil)
	if err != nil {
		return nil, err
	}
	e := &env{cfg: cfg, es: es}
	if cfg.TenantsFile != "" || needTenants {
		if e.tenants, err = cfg.Tenants(); err != nil {
			return nil, err
		}
		if c.tenant != "" {
			if _, err := e.tenants.Get(c.tenant); err != nil {
				return nil, err
			}
		}
	}
	return e, nil
}

// loadWindows is load(true) and windows: what every command over a period
// starts with.
func (c *common) loadWindows(now time.Time) (*env, []Window, error) {
	e, err := c.load(true)
	if err != nil {
		return nil, nil, err
	}
	ws, err := c.windows(e, now)
	if err != nil {
		return nil, nil, err
	}
	return e, ws, nil
}

// Window is one tenant's period.
type Window struct {
	Tenant tenants.Tenant
	period.Range
}

// windows resolves the period in each selected tenant's own zone.
func (c *common) windows(e *env, now time.Time) ([]Window, error) {
	if e.tenants == nil {
		return nil, errors.New("tenants_file: not set in --config")
	}
	if err := c.period.Validate(); err != nil {
		return nil, err
	}
	ts, err := e.tenants.Select(c.tenant)
	if err != nil {
		return nil, err
	}
	out := make([]Window, 0, len(ts))
	for _, t := range ts {
		r, err := c.period.In(t.Location(), now)
		if err != nil {
			return nil, err
		}
		out = append(out, Window{Tenant: t, Range: r})
	}
	return out, nil
}

// windowFilter matches events of the windows' tenants, each in its own
// window: (tenant A and A's week) or (tenant B and B's week) …
func windowFilter(ws []Window, field string) map[string]any {
	if field == "" {
		field = "@timestamp"
	}
	should := make([]any, 0, len(ws))
	for _, w := range ws {
		should = append(should, map[string]any{"bool": map[string]any{"filter": []any{
			map[string]any{"term": map[string]any{"tenant": w.Tenant.Name}},
			map[string]any{"range": map[string]any{field: map[string]any{
				"gte": w.From.UTC().Format(time.RFC3339Nano), "lt": w.To.UTC().Format(time.RFC3339Nano)}}},
		}}})
	}
	return map[string]any{"bool": map[string]any{"should": should, "minimum_should_match": 1}}
}

// and combines queries.
func and(qs ...map[string]any) map[string]any {
	f := make([]any, 0, len(qs))
	for _, q := range qs {
		if q != nil {
			f = append(f, q)
		}
	}
	return map[string]any{"bool": map[string]any{"filter": f}}
}

// terms matches field against any of values.
func terms(field string, values ...string) map[string]any {
	return map[string]any{"terms": map[string]any{field: values}}
}

// conversationLink fills the configured conversation URL.
func (e *env) conversationLink(tenant, session string) string {
	return strings.NewReplacer("{tenant}", tenant, "{session_id}", session).Replace(e.cfg.ConversationURL)
}

// run is one audit invocation with its output streams (tests call it).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return (&app{stdout: stdout, stderr: stderr, now: time.Now}).run(ctx, args)
}
