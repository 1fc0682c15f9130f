package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestVersionAndCheck: audit runs no server, so its image's smoke test is
// `audit version` and `audit check --config` (the example passes, a broken
// configuration fails naming the field).
func TestVersionAndCheck(t *testing.T) {
	out, _, err := runAudit(t, "version")
	if err != nil || !strings.HasPrefix(out, "audit ") || !strings.Contains(out, "go1.") {
		t.Errorf("audit version: %q, %v", out, err)
	}
	t.Setenv("BITRIX24_WEBHOOK_URL", "https://example.invalid/rest/1/0123456789abcdef/")
	if _, errOut, err := runAudit(t, "check", "--config", "audit.example.yaml"); err != nil || !strings.Contains(errOut, "configuration OK") {
		t.Errorf("audit check of the example: %v; stderr %q", err, errOut)
	}
	bad := filepath.Join(t.TempDir(), "audit.yaml")
	if err := os.WriteFile(bad, []byte("elasticsearch:\n  urls: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runAudit(t, "check", "--config", bad); err == nil || !strings.Contains(err.Error(), "elasticsearch") {
		t.Errorf("audit check of a configuration without Elasticsearch: %v, want an error naming it", err)
	}
	if _, _, err := runAudit(t, "check"); err == nil || !strings.Contains(err.Error(), "--config") {
		t.Errorf("audit check without --config: %v", err)
	}
}
