package main

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestExampleConfigLoads(t *testing.T) {
	t.Setenv("SALON_AURORA_TOKEN", "token-of-at-least-16-chars")
	t.Setenv("SALON_AURORA_HMAC_SECRET", "secret-of-at-least-16-chars")
	t.Setenv("PANEL_HOOK_TOKEN", "panel-token-0123456789")
	t.Setenv("AURORA_TELEGRAM_SECRET", "tg-secret-0123456789")
	t.Setenv("META_APP_SECRET", "meta-app-secret-0123456789")
	t.Setenv("META_VERIFY_TOKEN", "meta-verify-token-0123")
	t.Setenv("ASSISTLOG_PII_SECRET", "a-secret-of-sixteen+")
	t.Setenv("ASSISTLOG_PII_KEY_2026", "0123456789abcdef0123456789abcdef0123456789abcdef")
	cfg, err := LoadConfig("collector.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Webhook.Tenants[0].Tokens[0]; got != "token-of-at-least-16-chars" {
		t.Errorf("token not taken from the environment: %q", got)
	}
	if cfg.Kafka.Topic != "assistant.events" || cfg.Files.MaxLineBytes != 262144 {
		t.Errorf("unexpected values: %+v", cfg)
	}
	if cfg.PII.CurrentKey != "k2026" || len(cfg.PII.Keys) != 1 || cfg.PII.Keys[0].Key != "0123456789abcdef0123456789abcdef0123456789abcdef" {
		t.Errorf("pii keys not loaded: %+v", cfg.PII)
	}
	if m, err := cfg.PII.masker(); err != nil || m == nil {
		t.Errorf("the example's edge step does not build: %v", err)
	}
	if len(cfg.Files.Mappings) != 2 || len(cfg.Webhook.Hooks) != 4 || cfg.Webhook.Hooks[2].AppSecret != "meta-app-secret-0123456789" {
		t.Errorf("mappings and hooks not loaded: %+v %+v", cfg.Files.Mappings, cfg.Webhook.Hooks)
	}
}

// TestBadConfigs: each testdata/*.bad.yaml fails with messages naming the
// fields at fault.
func TestBadConfigs(t *testing.T) {
	want := map[string][]string{
		"unknown-key.bad.yaml": {"field compresion not found"},
		"bad-values.bad.yaml": {
			`kafka.compression: must be one of none, gzip, snappy, lz4, zstd, got "brotli"`,
			"kafka.dead_letter_topic: is required and must differ from kafka.topic",
			`files.read_from: must be beginning or end, got "middle"`,
			"files.max_line_bytes: must be at least 1024, got 10",
			"files.max_in_flight: must be at least 1, got 0",
			"positions.forget_after: must be positive, got 0s",
			`log.level: must be debug, info, warn or error, got "verbose"`,
		},
		"webhook-weak-token.bad.yaml": {
			`webhook.tenants[0].tenant: must be a tenant name (lower-case letters, digits, -), got "Salon"`,
			"webhook.tenants[0].tokens[0]: must be at least 16 characters",
		},
		"nothing.bad.yaml": {"files.include, webhook.listen: nothing to collect"},
		"mapping.bad.yaml": {
			`files.mappings[0].match[0]: bad glob "/var/log/bot/[a-.jsonl"`,
			`files.mappings[0].mapping.fields.sesion_id: unknown target field "sesion_id"`,
			`files.mappings[0].mapping.fields.payload.text: conflicts with fields.payload`,
			`files.mappings[0].mapping.fields.payload.text[0]: path "message..text": empty key`,
			`files.mappings[0].mapping.defaults.level: must be one of info, warning, error, got "verbose"`,
			`files.mappings[0].mapping.time_zone: unknown IANA time zone "Ufa"`,
			`files.mappings[1].match: at least one glob is required`,
			`files.mappings[1].mapping.profile: unknown profile "bitrix" (built in: business)`,
			`webhook.hooks[0].secret_token: is required for kind telegram`,
			`webhook.hooks[0].app_secret: is not used by kind telegram; remove it`,
			`webhook.hooks[1].name: "tg" listed twice`,
			`webhook.hooks[1].kind: must be json, telegram, whatsapp or instagram, got "viber"`,
			`webhook.hooks[2].app_secret: must be at least 16 characters`,
			`webhook.hooks[2].mapping.values.channel.WA: maps to "whatsap"`,
		},
		"pii.bad.yaml": {
			"pii.hash_secret: is required with pii.keys, at least 16 characters",
			`pii.keys[0].id: must be 1-32 letters, digits, '.', '_' or '-', got "k 1"`,
			"pii.keys[0].key: must be at least 32 characters",
			`pii.current_key: "k3" is not one of keys[].id`,
		},
		"kafka-tls.bad.yaml": {
			"kafka.tls.ca_file: open /nonexistent/ca.pem",
			`kafka.sasl.mechanism: must be SCRAM-SHA-256 or SCRAM-SHA-512, got "PLAIN"`,
			"webhook.tls.cert_file, webhook.tls.key_file: set both or neither",
		},
		"missing-env.bad.yaml": {"webhook.tenants[0].tokens[0]: environment variable ASSISTLOG_TEST_UNSET_TOKEN is not set"},
	}
	files, _ := filepath.Glob("testdata/*.bad.yaml")
	if len(files) != len(want) {
		t.Fatalf("%d bad configs in testdata, %d expectations", len(files), len(want))
	}
	for _, f := range files {
		_, err := LoadConfig(f)
		if err == nil {
			t.Errorf("%s: loaded without error", f)
			continue
		}
		for _, w := range want[filepath.Base(f)] {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error does not contain %q:\n%v", f, w, err)
			}
		}
	}
}
