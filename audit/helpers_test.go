package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

// writeConfig writes an audit config for the events in alias on es, with
// the demo's tenants file; extra is appended YAML (e.g. a crm: section).
func writeConfig(t *testing.T, es, alias, extra string) string {
	t.Helper()
	tenantsFile, err := filepath.Abs("../demo/tenants.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "audit.yaml")
	y := "elasticsearch:\n  urls: [\"" + es + "\"]\n  alias: " + alias + "\ntenants_file: " + tenantsFile + "\n" + extra
	if err := os.WriteFile(p, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// runAudit runs audit with args and returns stdout and stderr.
func runAudit(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), err
}
