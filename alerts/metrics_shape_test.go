package alerts_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"

	"github.com/assistlog/assistlog/demo"
	"github.com/assistlog/assistlog/internal/event"
	"github.com/assistlog/assistlog/internal/pipelinetest"
	"github.com/assistlog/assistlog/internal/proctest"
	"github.com/assistlog/assistlog/internal/stacktest"
)

// targetLabels are added by Prometheus's scrape, not by the programs.
var targetLabels = map[string]bool{"job": true, "instance": true}

// metricShapes is, per series name in a /metrics scrape, the label names it
// carries (histograms as _bucket with le, _sum, _count).
type metricShapes map[string]map[string]bool

func (s metricShapes) add(name string, labels []string) {
	if s[name] == nil {
		s[name] = map[string]bool{}
	}
	for _, l := range labels {
		s[name][l] = true
	}
}

func parseScrape(t *testing.T, b []byte, into metricShapes) {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName())
			}
			switch f.GetType() {
			case dto.MetricType_HISTOGRAM:
				into.add(name+"_bucket", append(labels, "le"))
				into.add(name+"_sum", labels)
				into.add(name+"_count", labels)
			case dto.MetricType_SUMMARY:
				into.add(name, append(labels, "quantile"))
				into.add(name+"_sum", labels)
				into.add(name+"_count", labels)
			default:
				into.add(name, labels)
			}
		}
	}
}

var (
	seriesRef = regexp.MustCompile(`\b(assistlog_[a-zA-Z0-9_]+|up)\b(\{[^}]*\})?`)
	matcher   = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"`)
	grouping  = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
)

// ruleUses is what one pipeline rule's expression refers to.
type ruleUses struct {
	alert    string
	metrics  map[string][]string // metric → label names in its matchers
	grouping []string
}

func pipelineRuleUses(t *testing.T) []ruleUses {
	t.Helper()
	var out []ruleUses
	for _, g := range readRules(t, "prometheus/pipeline.rules.yaml").Groups {
		for _, r := range g.Rules {
			u := ruleUses{alert: r.Alert, metrics: map[string][]string{}}
			for _, m := range seriesRef.FindAllStringSubmatch(r.Expr, -1) {
				var labels []string
				for _, l := range matcher.FindAllStringSubmatch(m[2], -1) {
					labels = append(labels, l[1])
				}
				u.metrics[m[1]] = append(u.metrics[m[1]], labels...)
			}
			for _, m := range grouping.FindAllStringSubmatch(r.Expr, -1) {
				for _, l := range strings.Split(m[1], ",") {
					if l = strings.TrimSpace(l); l != "" {
						u.grouping = append(u.grouping, l)
					}
				}
			}
			out = append(out, u)
		}
	}
	return out
}

// promtoolSeries returns every input series of the promtool unit tests.
func promtoolSeries(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("prometheus/pipeline.rules.test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Tests []struct {
			Name        string `yaml:"name"`
			InputSeries []struct {
				Series string `yaml:"series"`
			} `yaml:"input_series"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, tc := range f.Tests {
		for _, s := range tc.InputSeries {
			out = append(out, s.Series)
		}
	}
	return out
}

// shapeProblems compares the rules and the promtool input series with what
// the real programs expose; it returns one line per mismatch.
func shapeProblems(real metricShapes, rules []ruleUses, series []string) []string {
	var out []string
	known := func(metric, label string) bool {
		if targetLabels[label] || label == "__name__" {
			return true
		}
		return real[metric][label]
	}
	for _, r := range rules {
		for metric, labels := range r.metrics {
			if metric == "up" {
				continue // made by Prometheus per target
			}
			if real[metric] == nil {
				out = append(out, fmt.Sprintf("rule %s: %s is not exposed by the collector or the shipper", r.alert, metric))
				continue
			}
			for _, l := range labels {
				if !known(metric, l) {
					out = append(out, fmt.Sprintf("rule %s: %s has no label %q (it has %v)", r.alert, metric, l, keys(real[metric])))
				}
			}
		}
		for _, l := range r.grouping {
			found := false
			for metric := range r.metrics {
				if known(metric, l) || metric == "up" && targetLabels[l] {
					found = true
				}
			}
			if !found {
				out = append(out, fmt.Sprintf("rule %s: groups by %q, which none of its metrics carries", r.alert, l))
			}
		}
	}
	for _, s := range series {
		m := seriesRef.FindStringSubmatch(s)
		if m == nil || m[0] != strings.TrimSpace(s) {
			out = append(out, fmt.Sprintf("promtool series %s: not an assistlog metric or up", s))
			continue
		}
		if m[1] == "up" {
			continue
		}
		if real[m[1]] == nil {
			out = append(out, fmt.Sprintf("promtool series %s: %s is not exposed by the collector or the shipper", s, m[1]))
			continue
		}
		have := map[string]bool{}
		for _, l := range matcher.FindAllStringSubmatch(m[2], -1) {
			if !targetLabels[l[1]] {
				have[l[1]] = true
			}
		}
		if want := real[m[1]]; !sameSet(have, want) {
			out = append(out, fmt.Sprintf("promtool series %s: labels %v, the real %s has %v (plus job, instance)", s, keys(have), m[1], keys(want)))
		}
	}
	sort.Strings(out)
	return out
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sameSet(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// TestRulesMatchRealMetrics runs the real collector and shipper (with the
// Bitrix24 fake, an invalid line and an event Elasticsearch refuses, so the
// labelled counters exist), scrapes their /metrics, and checks that every
// metric and label the pipeline rules use, and every series the promtool
// unit tests feed, has the shape the programs really expose: the unit
// tests must not restate the rules over series that never exist.
func TestRulesMatchRealMetrics(t *testing.T) {
	ep := stacktest.Require(t, stacktest.Kafka, stacktest.Elasticsearch, stacktest.Loki)
	run := fmt.Sprintf("shape%d", time.Now().UnixNano()%1e9)
	topic, dlq, links, alias := "test-events-"+run, "test-dlq-"+run, "test-links-"+run, "test-"+run
	stacktest.CreateTopics(t, ep.KafkaBrokers, map[string]int{topic: 3, dlq: 1, links: 1})
	pipelinetest.DropIndicesAtCleanup(t, ep, alias)
	dir := t.TempDir()
	logs := filepath.Join(dir, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		t.Fatal(err)
	}

	cfg := demo.DefaultConfig()
	cfg.End = time.Now().UTC().Truncate(time.Minute)
	evs, _, err := demo.FromShared(5, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var file bytes.Buffer
	for i := range evs {
		evs[i].EventID = run + "-" + evs[i].EventID
		b, _ := evs[i].Marshal()
		file.Write(append(b, '\n'))
	}
	refused := evs[0]
	refused.EventID = run + "-refused"
	refused.Type, refused.Level = event.AppointmentConfirmed, "info"
	refused.Payload = map[string]any{"appointment_id": "a-refused", "starts_at": "next Friday"} // Elasticsearch's date mapping refuses it
	b, _ := refused.Marshal()
	file.Write(append(b, '\n'))
	file.WriteString("{not json\n")
	if err := os.WriteFile(filepath.Join(logs, "assistant.jsonl"), file.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	col := pipelinetest.Collector{Dir: dir, Topic: topic, DLQ: dlq, Include: []string{filepath.Join(logs, "*.jsonl")}}
	col.Listen = proctest.FreeAddr(t)
	pipelinetest.StartCollector(t, ep, col)
	_, crmYAML := pipelinetest.FakeCRM(t, dir, 25, links, run)
	sh := pipelinetest.Shipper{Dir: dir, Topic: topic, DLQ: dlq, Group: "shipper-" + run, Alias: alias,
		Labels: "{app: assistlog-test, deployment: " + run + "}", Listen: proctest.FreeAddr(t), ExtraYAML: crmYAML}
	pipelinetest.StartShipper(t, ep, sh)

	rules, series := pipelineRuleUses(t), promtoolSeries(t)
	if len(rules) == 0 || len(series) == 0 {
		t.Fatalf("%d rules, %d promtool series read", len(rules), len(series))
	}
	var problems []string
	// Labelled counters appear once the work they count happened: wait
	// for the scrape to settle on a verdict.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		real := metricShapes{}
		for _, addr := range []string{col.Listen, sh.Listen} {
			parseScrape(t, scrape(t, addr), real)
		}
		problems = shapeProblems(real, rules, series)
		if len(problems) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Second)
	}
	for _, p := range problems {
		t.Error(p)
	}
}

func scrape(t *testing.T, addr string) []byte {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
