package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/assistlog/assistlog/internal/elastic"
	"github.com/assistlog/assistlog/internal/esread"
	"github.com/assistlog/assistlog/internal/output"
	"github.com/assistlog/assistlog/internal/retention"
	"github.com/assistlog/assistlog/internal/tenants"
)

const retentionHelp = `audit retention — delete what is past each tenant's retention.

Usage: audit retention apply [--dry-run] [--tenant NAME] [--format table|csv|json]
       audit retention loki-config [--overrides] [--max 744h] [--tenants-file FILE]

Each tenant's retention is in the tenants file (tenants_file in --config): retention: 6mo,
12mo, 1y or 180d per tenant, and a file-level default (12 months unless set). Months are
calendar months counted back from the tenant's local midnight: with 6mo, on 27 November in
Ufa everything before 27 May 00:00 Ufa time is past retention.

apply deletes, from Elasticsearch (elasticsearch:) and every store under mirrors: (an
OpenSearch the shipper also writes), the events past retention: a monthly index (<alias>-YYYY.MM)
whose every tenant is past its retention is deleted whole; otherwise each tenant's old
documents are deleted by id. Review labels (reviews_index) go once their whole week is past
the tenant's retention. A tenant found in a store but not in the tenants file gets the
file's default, counted in UTC. It prints one row per store, index and tenant: the cutoff,
how many documents the server counted past it and how many it answered deleted. --dry-run
counts and deletes nothing. Progress goes to stderr. Run it daily (the Helm chart's
retention CronJob does).

loki-config prints Loki's limits_config retention from the same file: retention_period
(the default) and one retention_stream rule {tenant="…"} per tenant, in hours, rounded UP
from the longest span the calendar retention can reach (Loki counts hours back from now), so
Loki never deletes what Elasticsearch still keeps; Loki's minimum is 24h. Loki applies it in
its compactor (compactor.retention_enabled: true). --max caps every period, for a Loki kept
shorter than any tenant's retention (e.g. a month as the operations view): then only tenants
with a shorter retention get a shorter period. --overrides prints a runtime-config overrides
file instead, for a Loki with auth_enabled and one Loki tenant per business.

Kafka's topic retention is fixed (docs/retention.md): the events topic keeps 7 days, the
dead letters 30, the CRM links topic is compacted.

Examples:
  audit retention apply --dry-run
  audit retention apply --tenant salon-aurora --format json
  audit retention apply --format csv > retention.csv
  audit retention loki-config > loki-retention.yaml
  audit retention loki-config --max 744h
  audit retention loki-config --tenants-file demo/tenants.yaml --overrides

Flags:
`

func runRetention(ctx context.Context, a *app, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(a.stderr, retentionHelp)
		if len(args) == 0 {
			return errors.New("retention: say apply or loki-config")
		}
		return nil
	}
	switch args[0] {
	case "apply":
		return runRetentionApply(ctx, a, args[1:])
	case "loki-config":
		return runRetentionLoki(a, args[1:])
	}
	fmt.Fprint(a.stderr, retentionHelp)
	return fmt.Errorf("retention: unknown subcommand %q (apply or loki-config)", args[0])
}

func runRetentionApply(ctx context.Context, a *app, args []string) error {
	var c common
	fs := flag.NewFlagSet("retention apply", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	formats := []string{"table", "csv", "json"}
	c.flags(fs, false, formats)
	dryRun := fs.Bool("dry-run", false, "count what is past retention, delete nothing")
	fs.Usage = func() { fmt.Fprint(a.stderr, retentionHelp); fs.PrintDefaults() }
	pos, help, err := parse(fs, args)
	if help {
		return nil
	}
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("retention apply: unexpected argument %q", pos[0])
	}
	if err := output.CheckFormat(c.format, formats); err != nil {
		return err
	}
	e, err := c.load(true)
	if err != nil {
		return err
	}
	pol := retention.Policy{Tenants: e.tenants, Only: c.tenant, Now: a.now()}
	stores := append([]elastic.Config{e.cfg.Elasticsearch}, e.cfg.Mirrors...)
	t := &output.Table{Columns: []string{"store", "index", "tenant", "retention", "cutoff", "past_retention", "deleted", "action"}}
	var total, deleted int64
	for i, sc := range stores {
		name := storeName(ctx, i, sc)
		progress := func(format string, args ...any) { fmt.Fprintf(a.stderr, format+"\n", args...) }
		progress("%s %s: reading the indices of %s …", name, sc.URLs[0], sc.Alias)
		rows, err := retention.Apply(ctx, retention.Target{Name: name, Config: sc, ReviewsIndex: e.cfg.ReviewsIndex}, pol, *dryRun, progress)
		for _, r := range rows {
			zone := time.UTC
			if tn, err := e.tenants.Get(r.Tenant); err == nil {
				zone = tn.Location()
			}
			t.Add(r.Store, r.Index, r.Tenant, r.Retention.String(), r.Cutoff.In(zone).Format(time.RFC3339),
				strconv.FormatInt(r.Past, 10), strconv.FormatInt(r.Deleted, 10), r.Action)
			total += r.Past
			deleted += r.Deleted
		}
		if err != nil {
			// What was deleted before the failure is still reported.
			_ = t.Write(a.stdout, c.format)
			return fmt.Errorf("retention on %s %s: %w", name, sc.URLs[0], err)
		}
	}
	if *dryRun {
		fmt.Fprintf(a.stderr, "dry run: %d documents past retention, nothing deleted\n", total)
	} else {
		fmt.Fprintf(a.stderr, "%d documents past retention, %d deleted\n", total, deleted)
	}
	return t.Write(a.stdout, c.format)
}

// storeName labels a store in the report: its kind (asked from the
// server when the config does not say) and, for a mirror, its place.
func storeName(ctx context.Context, i int, sc elastic.Config) string {
	name := sc.Store
	if name == "" {
		name = "store"
		if r, err := esread.New(sc, nil); err == nil {
			if s, err := r.Store(ctx); err == nil {
				name = s
			}
		}
	}
	if i > 0 {
		name = fmt.Sprintf("%s (mirrors[%d])", name, i-1)
	}
	return name
}

func runRetentionLoki(a *app, args []string) error {
	fs := flag.NewFlagSet("retention loki-config", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	configPath := fs.String("config", os.Getenv("ASSISTLOG_AUDIT_CONFIG"), "audit config file whose tenants_file is read")
	file := fs.String("tenants-file", "", "read this tenants file instead of --config's tenants_file")
	overrides := fs.Bool("overrides", false, "print a runtime-config overrides file (a Loki tenant per business) instead of limits_config")
	limit := fs.Duration("max", 0, "cap every period at this (e.g. 744h: a Loki kept as a month's operations view keeps no tenant longer)")
	fs.Usage = func() { fmt.Fprint(a.stderr, retentionHelp); fs.PrintDefaults() }
	_, help, err := parse(fs, args)
	if help {
		return nil
	}
	if err != nil {
		return err
	}
	var set *tenants.Set
	if *file != "" {
		set, err = tenants.Load(*file)
	} else {
		var cfg Config
		if cfg, err = LoadConfig(*configPath); err == nil {
			set, err = cfg.Tenants()
		}
	}
	if err != nil {
		return err
	}
	if *overrides {
		_, err = fmt.Fprint(a.stdout, retention.LokiOverrides(set, *limit))
		return err
	}
	_, err = fmt.Fprint(a.stdout, "limits_config:\n"+retention.LokiLimits(set, *limit))
	return err
}
