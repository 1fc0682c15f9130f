package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/assistlog/assistlog/internal/access"
)

const accessUsage = `audit access roles — the Elasticsearch roles for the shipper, ops and each
tenant's auditors, rendered from the tenants file (docs/access.md).

Usage:
  audit access roles --config audit.yaml [--alias assistant-events] [--reviews-index assistant-reviews]

Prints a roles.yml for the file realm (config/roles.yml on every node). The same
role bodies, as JSON, go to PUT /_security/role/<name> where the native realm is
available. The shipper writes and may not delete; ops read every tenant; the
auditors of a tenant search its filtered aliases only: <alias>-tenant-<name> of the
events (the shipper adds it to every monthly index when its elasticsearch.tenants_file
is set) and <reviews_index>-tenant-<name> of the review labels (audit review import
adds it). Re-render and reload after adding a tenant.

Examples:
  audit access roles --config audit.yaml > roles.yml
  audit access roles --config audit.yaml --alias 'assistant-events*' --reviews-index 'assistant-reviews*'   # test stacks

Flags:
`

// runAccess prints the rendered roles.
func runAccess(_ context.Context, a *app, args []string) error {
	if len(args) == 0 || args[0] != "roles" {
		fmt.Fprint(a.stderr, accessUsage)
		if len(args) == 0 || (args[0] != "-h" && args[0] != "--help" && args[0] != "help") {
			return errors.New("access: say what to print: roles")
		}
		return nil
	}
	fs := flag.NewFlagSet("audit access roles", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	cfgPath := fs.String("config", "", "audit configuration (its tenants_file and elasticsearch.alias)")
	alias := fs.String("alias", "", "the events alias (default: elasticsearch.alias of --config)")
	reviews := fs.String("reviews-index", "", "the review labels' index (default: reviews_index of --config)")
	fs.Usage = func() { fmt.Fprint(a.stderr, accessUsage); fs.PrintDefaults() }
	if _, help, err := parse(fs, args[1:]); err != nil || help {
		return err
	}
	cfg, err := LoadConfig(*cfgPath)
	if err != nil {
		return err
	}
	ts, err := cfg.Tenants()
	if err != nil {
		return err
	}
	if *alias == "" {
		*alias = cfg.Elasticsearch.Alias
	}
	if *reviews == "" {
		*reviews = cfg.ReviewsIndex
	}
	roles, err := access.Roles(*alias, *reviews, ts.Names())
	if err != nil {
		return err
	}
	_, err = fmt.Fprint(a.stdout, roles)
	return err
}
