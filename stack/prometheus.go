package stack

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/assistlog/assistlog/alerts"
)

func prometheusComponent() *component {
	return &component{
		name:         "prometheus",
		version:      Versions.Prometheus,
		readyTimeout: 60 * time.Second,
		stopGrace:    20 * time.Second,
		endpoint:     func(l Layout) string { return l.Endpoints().PrometheusURL },
		install: func(ctx context.Context, in installer) error {
			bin := in.layout.prometheusBin()
			if exists(filepath.Join(bin, "prometheus")) && exists(filepath.Join(bin, "promtool")) {
				return nil
			}
			in.log("prometheus: building prometheus and promtool %s from the Go module proxy (about 10 minutes cold)", Versions.Prometheus)
			return in.goInstall(ctx, bin,
				"github.com/prometheus/prometheus/cmd/prometheus@"+Versions.Prometheus,
				"github.com/prometheus/prometheus/cmd/promtool@"+Versions.Prometheus)
		},
		prepare: func(ctx context.Context, s *Stack) error {
			dir := s.layout.componentDir("prometheus")
			// The repository's pipeline rules, as shipped.
			if err := installAlertsFile(alerts.PrometheusRules, filepath.Join(s.layout.Endpoints().PrometheusRulesDir, "assistlog-pipeline.yaml")); err != nil {
				return err
			}
			return writeFileAtomic(filepath.Join(dir, "prometheus.yml"), []byte(prometheusConfig(s.layout)), 0o644)
		},
		command: func(s *Stack) (*exec.Cmd, error) {
			dir := s.layout.componentDir("prometheus")
			cmd := exec.Command(filepath.Join(s.layout.prometheusBin(), "prometheus"),
				"--config.file="+filepath.Join(dir, "prometheus.yml"),
				"--storage.tsdb.path="+filepath.Join(dir, "data"),
				fmt.Sprintf("--web.listen-address=127.0.0.1:%d", s.layout.Ports.Prometheus),
				"--web.enable-lifecycle", // POST /-/reload after rule files change
				"--log.level=warn",
			)
			cmd.Dir = dir
			return cmd, nil
		},
		ready: func(ctx context.Context, s *Stack) error {
			return httpReady(ctx, s.layout.Endpoints().PrometheusURL+"/-/ready")
		},
	}
}

// prometheusConfig scrapes the pipeline programs and itself, loads rule
// files from the stack's rules directory and alerts the local Alertmanager.
func prometheusConfig(l Layout) string {
	p := l.Ports
	return fmt.Sprintf(`# Written by assistlog's stack.
global:
  scrape_interval: 5s
  evaluation_interval: 5s
rule_files:
  - %[1]s/*.yaml
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["127.0.0.1:%[2]d"]
scrape_configs:
  - job_name: collector
    static_configs:
      - targets: ["127.0.0.1:%[3]d"]
  - job_name: shipper
    static_configs:
      - targets: ["127.0.0.1:%[4]d"]
  - job_name: prometheus
    static_configs:
      - targets: ["127.0.0.1:%[5]d"]
  - job_name: archiver
    static_configs:
      - targets: ["127.0.0.1:%[6]d"]
`, l.Endpoints().PrometheusRulesDir, p.Alertmanager, p.Collector, p.Shipper, p.Prometheus, p.Archiver)
}

func alertmanagerComponent() *component {
	return &component{
		name:         "alertmanager",
		version:      Versions.Alertmanager,
		readyTimeout: 60 * time.Second,
		stopGrace:    20 * time.Second,
		endpoint:     func(l Layout) string { return l.Endpoints().AlertmanagerURL },
		install: func(ctx context.Context, in installer) error {
			bin := in.layout.alertmanagerBin()
			if exists(filepath.Join(bin, "alertmanager")) && exists(filepath.Join(bin, "amtool")) {
				return nil
			}
			in.log("alertmanager: building alertmanager and amtool %s from the Go module proxy", Versions.Alertmanager)
			return in.goInstall(ctx, bin,
				"github.com/prometheus/alertmanager/cmd/alertmanager@"+Versions.Alertmanager,
				"github.com/prometheus/alertmanager/cmd/amtool@"+Versions.Alertmanager)
		},
		prepare: func(ctx context.Context, s *Stack) error {
			return installAlertmanagerConfig(s.layout)
		},
		command: func(s *Stack) (*exec.Cmd, error) {
			dir := s.layout.componentDir("alertmanager")
			cmd := exec.Command(filepath.Join(s.layout.alertmanagerBin(), "alertmanager"),
				"--config.file="+filepath.Join(dir, "alertmanager.yml"),
				"--storage.path="+filepath.Join(dir, "data"),
				fmt.Sprintf("--web.listen-address=127.0.0.1:%d", s.layout.Ports.Alertmanager),
				"--cluster.listen-address=", // empty: no HA gossip on 0.0.0.0:9094
				"--log.level=warn",
			)
			cmd.Dir = dir
			return cmd, nil
		},
		ready: func(ctx context.Context, s *Stack) error {
			return httpReady(ctx, s.layout.Endpoints().AlertmanagerURL+"/-/ready")
		},
	}
}

// installAlertmanagerConfig writes the repository's Alertmanager
// configuration and templates, with its secret files under the stack
// directory: the on-call webhook goes to 127.0.0.1:<OnCallWebhook>/alerts,
// Telegram and e-mail get placeholders (no network here; their delivery
// fails and is logged, which does not hold up the webhook).
func installAlertmanagerConfig(l Layout) error {
	dir := l.componentDir("alertmanager")
	secrets := filepath.Join(dir, "secrets")
	tmpl := filepath.Join(dir, "templates")
	if err := os.MkdirAll(secrets, 0o755); err != nil {
		return err
	}
	for name, v := range map[string]string{
		"oncall-webhook-url": fmt.Sprintf("http://127.0.0.1:%d/alerts", l.Ports.OnCallWebhook),
		"telegram-bot-token": "123456:stack-placeholder-no-telegram-here",
		"smtp-password":      "stack-placeholder",
	} {
		if err := writeFileAtomic(filepath.Join(secrets, name), []byte(v), 0o600); err != nil {
			return err
		}
	}
	entries, err := alerts.Files.ReadDir(alerts.AlertmanagerTmpl)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := installAlertsFile(alerts.AlertmanagerTmpl+"/"+e.Name(), filepath.Join(tmpl, e.Name())); err != nil {
			return err
		}
	}
	conf, err := alerts.Files.ReadFile(alerts.AlertmanagerConfig)
	if err != nil {
		return err
	}
	conf = bytes.ReplaceAll(conf, []byte(alerts.SecretsDir), []byte(secrets))
	return writeFileAtomic(filepath.Join(dir, "alertmanager.yml"), conf, 0o644)
}

// installAlertsFile writes one of the repository's alerting files (as the
// alerts package embeds it) to dst, creating dst's directory.
func installAlertsFile(name, dst string) error {
	b, err := alerts.Files.ReadFile(name)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return writeFileAtomic(dst, b, 0o644)
}
