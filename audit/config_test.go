package main

import (
	"os"
	"strings"
	"testing"
)

func TestExampleConfigLoads(t *testing.T) {
	t.Setenv("BITRIX24_WEBHOOK_URL", "https://example.bitrix24.ru/rest/1/abc/")
	t.Setenv("ASSISTLOG_PII_SECRET", "0123456789abcdef0123")
	cfg, err := LoadConfig("audit.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	set, err := cfg.Tenants()
	if err != nil {
		t.Fatal(err)
	}
	if a, err := set.Get("salon-aurora"); err != nil || a.TZ != "Asia/Yekaterinburg" {
		t.Errorf("salon-aurora: %+v %v", a, err)
	}
	if cfg.CRM.Bitrix24.WebhookURL != "https://example.bitrix24.ru/rest/1/abc/" {
		t.Errorf("webhook_url not expanded: %q", cfg.CRM.Bitrix24.WebhookURL)
	}
}

func TestUnknownTenantFails(t *testing.T) {
	p := writeConfig(t, "http://127.0.0.1:1", "assistant-events", "")
	_, _, err := runAudit(t, "query", "--help")
	if err != nil {
		t.Fatal(err)
	}
	var c common
	c.configPath, c.tenant = p, "salon-nowhere"
	if _, err := c.load(true); err == nil || !strings.Contains(err.Error(), `unknown tenant "salon-nowhere"`) {
		t.Errorf("unknown tenant: %v", err)
	}
	if _, _, err := runAudit(t, "nonsense"); err == nil || !strings.Contains(err.Error(), `unknown command "nonsense"`) {
		t.Errorf("unknown command: %v", err)
	}
}

// TestCRMSecretsOnlyWhereUsed: an unset CRM secret does not stop a command
// that does not talk to the CRM, and reconcile names it.
func TestCRMSecretsOnlyWhereUsed(t *testing.T) {
	t.Setenv("ASSISTLOG_TEST_UNSET_HOOK", "")
	os.Unsetenv("ASSISTLOG_TEST_UNSET_HOOK")
	p := writeConfig(t, "http://127.0.0.1:1", "assistant-events", "crm:\n  bitrix24:\n    webhook_url: \"${ASSISTLOG_TEST_UNSET_HOOK}\"\n")
	cfg, err := LoadConfig(p)
	if err != nil {
		t.Fatalf("config with an unset CRM secret: %v", err)
	}
	if err := cfg.CRMError(); err == nil || !strings.Contains(err.Error(), "crm.bitrix24.webhook_url: environment variable ASSISTLOG_TEST_UNSET_HOOK is not set") {
		t.Errorf("CRMError: %v", err)
	}
	_, _, err = runAudit(t, "reconcile", "--config", p, "--week", "2026-W47")
	if err == nil || !strings.Contains(err.Error(), "ASSISTLOG_TEST_UNSET_HOOK") {
		t.Errorf("reconcile with an unset webhook: %v", err)
	}
}
