// Package stack starts the real components assistlog is tested and demoed
// against (Kafka, Elasticsearch, Loki, Prometheus, Alertmanager) on this
// machine, without Docker, from package registries only.
//
// Downloads and builds are cached outside the clone (Layout.CacheDir) so a
// second run is fast; data, configs, logs and pid files live under one
// directory (Layout.Dir). Every server listens on 127.0.0.1 only.
package stack

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// Versions pins every component in one place. `stack status` prints them.
var Versions = struct {
	Kafka         string
	Elasticsearch string
	Loki          string
	Prometheus    string // Go module version of github.com/prometheus/prometheus (v0.316.0 is Prometheus 3.16.0)
	Alertmanager  string
	OpenSearch    string
}{
	Kafka:         "4.4.0",
	Elasticsearch: "8.19.21",
	Loki:          "v3.7.8",
	Prometheus:    "v0.316.0",
	Alertmanager:  "v0.31.1",
	OpenSearch:    "2.19.6",
}

// Ports used on 127.0.0.1. They sit away from the usual defaults so the stack
// does not collide with a Kafka or Elasticsearch a developer already runs.
type Ports struct {
	Kafka, KafkaController     int
	Elasticsearch, ESTransport int
	Loki, LokiGRPC             int
	Prometheus                 int
	Alertmanager               int
	// Collector, Shipper and Archiver (shipper archive) are where
	// Prometheus expects the pipeline programs' /metrics.
	Collector, Shipper, Archiver int
	// OnCallWebhook is where the stack's Alertmanager delivers the on-call
	// webhook (alerts/alertmanager.yml's oncall-webhook receiver): the
	// end-to-end alert tests listen there.
	OnCallWebhook int
	// OpenSearch runs beside Elasticsearch as the second store (issue 16).
	OpenSearch, OSTransport int
	// ESSecure is the secured Elasticsearch node (HTTPS, users, roles).
	ESSecure, ESSecureTransport int
}

// DefaultPorts are the ports the stack uses unless told otherwise.
var DefaultPorts = Ports{
	Kafka: 19092, KafkaController: 19093,
	Elasticsearch: 19200, ESTransport: 19300,
	Loki: 13100, LokiGRPC: 19095,
	Prometheus:   19090,
	Alertmanager: 19094,
	Collector:    19101, Shipper: 19102, Archiver: 19103,
	OnCallWebhook: 19099,
	OpenSearch:    19201, OSTransport: 19301,
	ESSecure: 19210, ESSecureTransport: 19310,
}

// Layout says where things are.
type Layout struct {
	// CacheDir holds downloads and builds; it survives clones and runs.
	CacheDir string
	// Dir holds data, configs, logs and pid files of one running stack.
	// It must be readable by the unprivileged Elasticsearch user, so the
	// default is under /tmp rather than a home directory.
	Dir   string
	Ports Ports
}

// Environment variables that override the layout.
const (
	EnvCacheDir = "ASSISTLOG_CACHE"
	EnvDir      = "ASSISTLOG_STACK_DIR"
)

// LayoutFromEnv returns the default layout with environment overrides.
func LayoutFromEnv() (Layout, error) {
	l := Layout{Ports: DefaultPorts}
	l.CacheDir = os.Getenv(EnvCacheDir)
	if l.CacheDir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return l, fmt.Errorf("find cache dir (set %s): %w", EnvCacheDir, err)
		}
		l.CacheDir = filepath.Join(base, "assistlog")
	}
	l.Dir = os.Getenv(EnvDir)
	if l.Dir == "" {
		l.Dir = filepath.Join(os.TempDir(), "assistlog-stack")
	}
	var err error
	if l.CacheDir, err = filepath.Abs(l.CacheDir); err != nil {
		return l, err
	}
	if l.Dir, err = filepath.Abs(l.Dir); err != nil {
		return l, err
	}
	return l, nil
}

// Endpoints are the addresses clients use. Tests read them from the
// environment (see Endpoints.Env) so they follow whatever the stack chose.
type Endpoints struct {
	KafkaBrokers     string // host:port
	ElasticsearchURL string
	LokiURL          string
	PrometheusURL    string
	AlertmanagerURL  string
	// LokiRulesDir is the ruler's directory for the single Loki tenant
	// ("fake", since auth is off): rule files dropped here are loaded.
	LokiRulesDir string
	// KafkaClasspath runs Kafka's own tools (console consumer/producer).
	KafkaClasspath string
	Java           string
	Promtool       string
	Amtool         string
	// PrometheusRulesDir is where Prometheus loads rule files from.
	PrometheusRulesDir string
	// S3 is the S3-compatible server holding the archive (stack/s3.go).
	S3            S3Endpoints
	OpenSearchURL string
	// ESSecure is the secured Elasticsearch node (stack/elasticsearch_secure.go).
	ESSecure ESSecureEndpoints
}

// Endpoints derives the client addresses from the layout.
func (l Layout) Endpoints() Endpoints {
	return Endpoints{
		KafkaBrokers:       "127.0.0.1:" + strconv.Itoa(l.Ports.Kafka),
		ElasticsearchURL:   "http://127.0.0.1:" + strconv.Itoa(l.Ports.Elasticsearch),
		LokiURL:            "http://127.0.0.1:" + strconv.Itoa(l.Ports.Loki),
		PrometheusURL:      "http://127.0.0.1:" + strconv.Itoa(l.Ports.Prometheus),
		AlertmanagerURL:    "http://127.0.0.1:" + strconv.Itoa(l.Ports.Alertmanager),
		LokiRulesDir:       filepath.Join(l.Dir, "loki", "rules", "fake"),
		KafkaClasspath:     filepath.Join(l.kafkaHome(), "libs") + "/*",
		Java:               javaBinary(),
		Promtool:           filepath.Join(l.prometheusBin(), "promtool"),
		Amtool:             filepath.Join(l.alertmanagerBin(), "amtool"),
		PrometheusRulesDir: filepath.Join(l.Dir, "prometheus", "rules"),
		S3:                 l.S3(),
		OpenSearchURL:      "http://127.0.0.1:" + strconv.Itoa(l.Ports.OpenSearch),
		ESSecure:           l.ESSecure(),
	}
}

// Env lists the endpoints as NAME=value pairs, the form tests read.
func (e Endpoints) Env() [][2]string {
	return append([][2]string{
		{"ASSISTLOG_KAFKA_BROKERS", e.KafkaBrokers},
		{"ASSISTLOG_ELASTICSEARCH_URL", e.ElasticsearchURL},
		{"ASSISTLOG_LOKI_URL", e.LokiURL},
		{"ASSISTLOG_PROMETHEUS_URL", e.PrometheusURL},
		{"ASSISTLOG_ALERTMANAGER_URL", e.AlertmanagerURL},
		{"ASSISTLOG_LOKI_RULES_DIR", e.LokiRulesDir},
		{"ASSISTLOG_PROMETHEUS_RULES_DIR", e.PrometheusRulesDir},
		{"ASSISTLOG_KAFKA_CLASSPATH", e.KafkaClasspath},
		{"ASSISTLOG_JAVA", e.Java},
		{"ASSISTLOG_PROMTOOL", e.Promtool},
		{"ASSISTLOG_AMTOOL", e.Amtool},
		{"ASSISTLOG_OPENSEARCH_URL", e.OpenSearchURL},
	}, append(e.S3.env(), e.ESSecure.env()...)...)
}

// EndpointsFromEnv reads what Env wrote, falling back to the default layout
// for anything unset, so `go test` works against a stack started by hand.
func EndpointsFromEnv() (Endpoints, error) {
	l, err := LayoutFromEnv()
	if err != nil {
		return Endpoints{}, err
	}
	e := l.Endpoints()
	fields := map[string]*string{
		"ASSISTLOG_KAFKA_BROKERS":        &e.KafkaBrokers,
		"ASSISTLOG_ELASTICSEARCH_URL":    &e.ElasticsearchURL,
		"ASSISTLOG_LOKI_URL":             &e.LokiURL,
		"ASSISTLOG_PROMETHEUS_URL":       &e.PrometheusURL,
		"ASSISTLOG_ALERTMANAGER_URL":     &e.AlertmanagerURL,
		"ASSISTLOG_LOKI_RULES_DIR":       &e.LokiRulesDir,
		"ASSISTLOG_PROMETHEUS_RULES_DIR": &e.PrometheusRulesDir,
		"ASSISTLOG_KAFKA_CLASSPATH":      &e.KafkaClasspath,
		"ASSISTLOG_JAVA":                 &e.Java,
		"ASSISTLOG_PROMTOOL":             &e.Promtool,
		"ASSISTLOG_AMTOOL":               &e.Amtool,
		"ASSISTLOG_OPENSEARCH_URL":       &e.OpenSearchURL,
	}
	for name, p := range fields {
		if v := os.Getenv(name); v != "" {
			*p = v
		}
	}
	e.S3.fromEnv()
	e.ESSecure.fromEnv()
	return e, nil
}

func (l Layout) kafkaHome() string {
	return filepath.Join(l.CacheDir, "kafka-"+Versions.Kafka)
}

func (l Layout) prometheusBin() string {
	return filepath.Join(l.CacheDir, "bin", "prometheus-"+Versions.Prometheus)
}

func (l Layout) alertmanagerBin() string {
	return filepath.Join(l.CacheDir, "bin", "alertmanager-"+Versions.Alertmanager)
}

func (l Layout) lokiBinary() string {
	return filepath.Join(l.CacheDir, "bin", "loki-"+Versions.Loki)
}

func (l Layout) esZip() string {
	return filepath.Join(l.CacheDir, "elasticsearch-"+Versions.Elasticsearch+".zip")
}

// componentDir is where one component keeps its config, data, log and pid.
func (l Layout) componentDir(name string) string {
	return filepath.Join(l.Dir, name)
}

// PrometheusConfigPath is the configuration the stack's Prometheus runs with.
func (l Layout) PrometheusConfigPath() string {
	return filepath.Join(l.componentDir("prometheus"), "prometheus.yml")
}

// AlertmanagerConfigPath is the configuration the stack's Alertmanager runs with.
func (l Layout) AlertmanagerConfigPath() string {
	return filepath.Join(l.componentDir("alertmanager"), "alertmanager.yml")
}
