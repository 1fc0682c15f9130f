package dashboards_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/assistlog/assistlog/demo"
	"github.com/assistlog/assistlog/internal/event"
	"github.com/assistlog/assistlog/internal/pipelinetest"
	"github.com/assistlog/assistlog/internal/stacktest"
	"github.com/assistlog/assistlog/stack"
)

// TestPanelQueries runs the real pipeline (collector → Kafka → shipper with
// Bitrix24 sync → Elasticsearch and Loki, both programs scraped by the real
// Prometheus) over generated conversations, then runs every panel's query
// of every dashboard, variables substituted as Grafana would, against the
// real Loki and Prometheus: each returns data of the panel's shape.
func TestPanelQueries(t *testing.T) {
	ep := stacktest.Require(t, stacktest.Kafka, stacktest.Elasticsearch, stacktest.Loki, stacktest.Prometheus)
	l, err := stack.LayoutFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	run := fmt.Sprintf("dash%d", time.Now().UnixNano()%1e9)
	topic, dlq, links := "test-"+run, "test-dlq-"+run, "test-links-"+run
	stacktest.CreateTopics(t, ep.KafkaBrokers, map[string]int{topic: 3, dlq: 1, links: 3})

	// Conversations, written as the assistant would, plus one broken line
	// (the dead-letter panel needs one).
	gcfg := demo.DefaultConfig()
	gcfg.End = time.Now().UTC().Truncate(time.Minute)
	gcfg.FollowUpShare, gcfg.NoShowShare = 0.9, 0.3 // enough attended and no-show for the no-show panel
	evs, truth, err := demo.FromShared(200, gcfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []event.Type{event.LeadCreated, event.AppointmentConfirmed, event.AppointmentNoShow, event.ManagerJoined, event.Error} {
		if truth.ByType[string(typ)] == 0 {
			t.Fatalf("the generated data has no %s; the panels on it would prove nothing", typ)
		}
	}
	var session string
	for _, e := range evs {
		if e.Confidence != nil && *e.Confidence < 0.6 {
			session = e.SessionID
			break
		}
	}
	logs := filepath.Join(dir, "logs")
	os.MkdirAll(logs, 0o755)

	_, crmSection := pipelinetest.FakeCRM(t, dir, 50, links, run)

	// The programs listen where the stack's Prometheus scrapes them.
	pipelinetest.StartCollector(t, ep, pipelinetest.Collector{Dir: dir, Topic: topic, DLQ: dlq,
		Include: []string{filepath.Join(logs, "*.jsonl")}, Listen: fmt.Sprintf("127.0.0.1:%d", l.Ports.Collector)})
	pipelinetest.StartShipper(t, ep, pipelinetest.Shipper{Dir: dir, Topic: topic, DLQ: dlq, Group: run, Alias: "test-" + run,
		Labels: "{app: assistlog, deployment: " + run + "}", Listen: fmt.Sprintf("127.0.0.1:%d", l.Ports.Shipper),
		ExtraYAML: crmSection})
	pipelinetest.DropIndicesAtCleanup(t, ep, "test-"+run)
	// Scraped once before the traffic, so that rate() sees it grow.
	stacktest.Eventually(t, time.Minute, "Prometheus scraping both programs", func() error {
		r, err := promQuery(ep.PrometheusURL, `sum(up{job=~"collector|shipper"})`, true)
		if err != nil {
			return err
		}
		if r.firstValue() != 2 {
			return fmt.Errorf("not both up yet")
		}
		return nil
	})
	time.Sleep(6 * time.Second) // one more scrape interval
	f, _ := os.Create(filepath.Join(logs, "assistant.jsonl"))
	for i := range evs {
		evs[i].EventID = run + "-" + evs[i].EventID
		b, _ := evs[i].Marshal()
		f.Write(append(b, '\n'))
	}
	f.WriteString("{this is not json\n")
	f.Close()

	stacktest.Eventually(t, 3*time.Minute, "events in Loki", func() error {
		r, err := lokiQuery(ep.LokiURL, fmt.Sprintf(`sum(count_over_time({deployment=%q}[8d]))`, run), true)
		if err != nil {
			return err
		}
		if n := r.firstValue(); n != len(evs) {
			return fmt.Errorf("%d of %d", n, len(evs))
		}
		return nil
	})
	// Two scrapes at least after the traffic, for rate(): of the events, and
	// of the series born during it (the dead letter, the CRM calls).
	stacktest.Eventually(t, time.Minute, "Prometheus scraping the programs", func() error {
		r, err := promQuery(ep.PrometheusURL, `sum(rate(assistlog_shipper_events_total[1m])) > 0 and sum(rate(assistlog_collector_events_total[1m])) > 0`+
			` and count(increase(assistlog_collector_dead_letters_total[1m])) > 0 and count(rate(assistlog_crm_calls_total[1m])) > 0`, true)
		if err != nil {
			return err
		}
		if len(r.Result) == 0 {
			return fmt.Errorf("no rate yet")
		}
		return nil
	})

	// Variables as Grafana substitutes them; and every Loki selector scoped
	// to this run's streams, so the queries read this run's data and not
	// whatever else the shared Loki holds (demo runs: 8 days of it, slow).
	vars := strings.NewReplacer("$tenant", ".+", "$channel", ".+", "$session_id", session,
		"$__interval", "1h", "$__range", "8d", "$__rate_interval", "1m",
		`app="assistlog"`, `app="assistlog", deployment="`+run+`"`)
	byLabels := regexp.MustCompile(`^sum by \(([^)]*)\)`)
	n := 0
	for f, d := range loadDashboards(t) {
		for _, p := range d.Panels {
			for _, tg := range p.Targets {
				expr := vars.Replace(tg.Expr)
				var r *result
				var err error
				switch tg.Datasource.Type {
				case "loki":
					r, err = lokiQuery(ep.LokiURL, expr, tg.Instant)
				case "prometheus":
					r, err = promQuery(ep.PrometheusURL, expr, tg.Instant)
				case "elasticsearch", "__expr__":
					// The KPI panels: audit's TestDashboardKPIsAgree runs them
					// as Grafana would and compares them with audit kpi.
					continue
				default:
					t.Fatalf("%s: panel %q: no runner for %s", f, p.Title, tg.Datasource.Type)
				}
				where := fmt.Sprintf("%s: panel %q query %s: %s", f, p.Title, tg.RefID, expr)
				if err != nil {
					t.Errorf("%s: %v", where, err)
					continue
				}
				want := "matrix"
				switch {
				case p.Type == "logs":
					want = "streams"
				case tg.Instant:
					want = "vector"
				}
				if r.ResultType != want || len(r.Result) == 0 {
					t.Errorf("%s: %s with %d results, want %s with some", where, r.ResultType, len(r.Result), want)
					continue
				}
				if m := byLabels.FindStringSubmatch(tg.Expr); m != nil {
					for _, label := range strings.Split(m[1], ",") {
						if label = strings.TrimSpace(label); r.Result[0].Metric[label] == "" {
							t.Errorf("%s: series without %q: %v", where, label, r.Result[0].Metric)
						}
					}
				}
				n++
			}
		}
	}
	t.Logf("%d panel queries returned data of their panel's shape (session %s for the transcript)", n, session)

	// The variables' own queries list values.
	for _, label := range []string{"tenant", "channel"} {
		resp, err := http.Get(ep.LokiURL + "/loki/api/v1/label/" + label + "/values?" + url.Values{"query": {`{app="assistlog"}`},
			"start": {strconv.FormatInt(time.Now().Add(-8*24*time.Hour).UnixNano(), 10)}}.Encode())
		if err != nil {
			t.Fatal(err)
		}
		var v struct{ Data []string }
		json.NewDecoder(resp.Body).Decode(&v)
		resp.Body.Close()
		if len(v.Data) == 0 {
			t.Errorf("variable %s: no values", label)
		}
	}
}

type result struct {
	ResultType string `json:"resultType"`
	Result     []struct {
		Metric map[string]string `json:"metric"`
		Stream map[string]string `json:"stream"`
		Value  []any             `json:"value"`
	} `json:"result"`
}

func (r *result) firstValue() int {
	if len(r.Result) == 0 || len(r.Result[0].Value) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(fmt.Sprint(r.Result[0].Value[1]))
	return n
}

func get(u string) (*result, error) {
	resp, err := http.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var r struct {
		Status string `json:"status"`
		Data   result `json:"data"`
	}
	if err := json.Unmarshal(b, &r); err != nil || resp.StatusCode != http.StatusOK || r.Status != "success" {
		return nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, b)
	}
	return &r.Data, nil
}

// lokiQuery runs a LogQL query as Grafana's Loki data source does: instant
// at now, or over the dashboards' 7 days (plus a day) in 1 h steps.
func lokiQuery(base, expr string, instant bool) (*result, error) {
	now := time.Now()
	if instant {
		return get(base + "/loki/api/v1/query?" + url.Values{"query": {expr}, "time": {strconv.FormatInt(now.UnixNano(), 10)}}.Encode())
	}
	return get(base + "/loki/api/v1/query_range?" + url.Values{"query": {expr}, "limit": {"100"}, "step": {"3600"},
		"start": {strconv.FormatInt(now.Add(-8*24*time.Hour).UnixNano(), 10)}, "end": {strconv.FormatInt(now.UnixNano(), 10)}}.Encode())
}

// promQuery runs PromQL over the last 15 minutes in 15 s steps, or at now.
func promQuery(base, expr string, instant bool) (*result, error) {
	now := time.Now()
	if instant {
		return get(base + "/api/v1/query?" + url.Values{"query": {expr}}.Encode())
	}
	return get(base + "/api/v1/query_range?" + url.Values{"query": {expr}, "step": {"15"},
		"start": {strconv.FormatInt(now.Add(-15*time.Minute).Unix(), 10)}, "end": {strconv.FormatInt(now.Unix(), 10)}}.Encode())
}
