package main

import (
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
