// Package alerts holds assistlog's alerting: Loki ruler rules (loki/),
// Prometheus rules with their unit tests (prometheus/), and the
// Alertmanager configuration with its templates (alertmanager/). The files
// are the product; this package embeds them so the local stack installs
// exactly what is in the repository. The tests prove them with the real
// tools: promtool, amtool, the Loki ruler and Alertmanager.
package alerts

import "embed"

// Files holds loki/*.yaml, prometheus/*.yaml and alertmanager/.
//
//go:embed loki/*.yaml prometheus/pipeline.rules.yaml alertmanager/alertmanager.yml alertmanager/templates/*.tmpl
var Files embed.FS

// Paths inside Files.
const (
	LokiRules          = "loki/assistlog.rules.yaml"
	PrometheusRules    = "prometheus/pipeline.rules.yaml"
	AlertmanagerConfig = "alertmanager/alertmanager.yml"
	AlertmanagerTmpl   = "alertmanager/templates"
	// SecretsDir is where alertmanager.yml expects its secret files.
	SecretsDir = "/etc/assistlog/secrets"
)
