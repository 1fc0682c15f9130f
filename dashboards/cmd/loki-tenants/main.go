// Command loki-tenants renders, from the tenants file, what readers of a
// Loki with one tenant per business need (docs/loki-tenants.md): the
// Grafana data sources (one per business, and the operators' reader of
// every tenant) and the content alert rules placed in each tenant's
// directory of the ruler.
//
//	go run ./dashboards/cmd/loki-tenants --tenants demo/tenants.yaml \
//	    --loki-url http://loki:3100 --datasources out/assistlog-tenants.yaml \
//	    [--rules-dir /loki/rules] [--grafana-org salon-aurora=2 ...]
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/assistlog/assistlog/alerts"
	"github.com/assistlog/assistlog/dashboards"
	"github.com/assistlog/assistlog/internal/loki"
	"github.com/assistlog/assistlog/internal/tenants"
)

const usage = `loki-tenants — Grafana data sources and Loki ruler rules for a Loki with one tenant per business.

Usage:
  loki-tenants --tenants FILE --datasources FILE [--loki-url URL] [--rules-dir DIR] [--rules FILE] [--grafana-org NAME=N ...]

Each business's Loki tenant is its loki_tenant in the tenants file (default:
its name), as the shipper with loki.tenancy: per_tenant pushes it.

  --datasources  written: the repository's Grafana data sources, with the
                 Loki one reading every tenant ("a|b|c") and one Loki data
                 source per business sending only its X-Scope-OrgID.
  --grafana-org  NAME=N puts NAME's data source in Grafana organization N
                 (created beforehand) under the dashboards' uid, so its
                 staff see the same dashboards with only its data.
  --rules-dir    the ruler's local rules directory: the content alert rules
                 go to DIR/<loki tenant>/assistlog-content.yaml.
  --rules        the rules file to place (default: the repository's
                 alerts/loki/assistlog.rules.yaml).

Example:
  go run ./dashboards/cmd/loki-tenants --tenants demo/tenants.yaml \
      --loki-url http://127.0.0.1:13100 --datasources build/loki-tenants/datasources.yaml \
      --rules-dir build/loki-tenants/rules --grafana-org salon-aurora=2
`

type orgFlags map[string]int

func (o orgFlags) String() string { return fmt.Sprint(map[string]int(o)) }

func (o orgFlags) Set(v string) error {
	name, n, ok := strings.Cut(v, "=")
	id, err := strconv.Atoi(n)
	if !ok || err != nil || id < 2 {
		return fmt.Errorf("want NAME=N with N >= 2 (1 is the operators' organization), got %q", v)
	}
	o[name] = id
	return nil
}

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "loki-tenants:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("loki-tenants", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	tenantsFile := fs.String("tenants", "", "the tenants file")
	lokiURL := fs.String("loki-url", "http://127.0.0.1:13100", "Loki as Grafana's server reaches it")
	out := fs.String("datasources", "", "where to write the Grafana data sources")
	rulesDir := fs.String("rules-dir", "", "the Loki ruler's local rules directory")
	rulesFile := fs.String("rules", "", "the rules file to place")
	orgs := orgFlags{}
	fs.Var(orgs, "grafana-org", "NAME=N: the business's Grafana organization")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *tenantsFile == "" || *out == "" {
		fs.Usage()
		return errors.New("--tenants and --datasources are required")
	}
	set, err := tenants.Load(*tenantsFile)
	if err != nil {
		return err
	}
	ids, err := loki.OrgIDs(set)
	if err != nil {
		return fmt.Errorf("%s: %w", *tenantsFile, err)
	}
	r := dashboards.LokiReaders{URL: *lokiURL}
	var orgIDs []string
	for _, name := range set.Names() {
		t, _ := set.Get(name)
		r.Tenants = append(r.Tenants, dashboards.LokiReader{Name: name, Title: t.Title, OrgID: ids[name], GrafanaOrg: orgs[name]})
		orgIDs = append(orgIDs, ids[name])
		delete(orgs, name)
	}
	for name := range orgs {
		return fmt.Errorf("--grafana-org %s: not in %s", name, *tenantsFile)
	}
	b, err := dashboards.RenderLokiDataSources(r)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(*out, b, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s: %d per-tenant Loki data sources and the operators' (all tenants)\n", *out, len(r.Tenants))
	if *rulesDir == "" {
		return nil
	}
	var rules []byte
	if *rulesFile != "" {
		rules, err = os.ReadFile(*rulesFile)
	} else {
		rules, err = alerts.Files.ReadFile(alerts.LokiRules)
	}
	if err != nil {
		return err
	}
	written, err := dashboards.PlaceLokiRules(rules, dashboards.LokiRulesFile, orgIDs, *rulesDir)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote the content rules for %d Loki tenants under %s\n", len(written), *rulesDir)
	return nil
}
