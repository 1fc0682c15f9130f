// Command lokirules renders alerts/loki/assistlog.rules.yaml from
// alerts/loki/thresholds.yaml (defaults and per-tenant overrides).
//
//	go run ./alerts/cmd/lokirules [--thresholds FILE] [--out FILE]
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/assistlog/assistlog/alerts"
)

func main() {
	in := flag.String("thresholds", "alerts/loki/thresholds.yaml", "the thresholds file")
	out := flag.String("out", "alerts/loki/assistlog.rules.yaml", "where to write the Loki ruler rules")
	flag.Parse()
	if err := run(*in, *out); err != nil {
		fmt.Fprintln(os.Stderr, "lokirules:", err)
		os.Exit(1)
	}
}

func run(in, out string) error {
	b, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	t, err := alerts.ParseThresholds(b)
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	rules, err := alerts.RenderLokiRules(t)
	if err != nil {
		return err
	}
	if err := os.WriteFile(out, rules, 0o644); err != nil {
		return err
	}
	fmt.Printf("wrote %s from %s (%d tenants with their own thresholds)\n", out, in, len(t.Tenants))
	return nil
}
