package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/assistlog/assistlog/dashboards"
	"github.com/assistlog/assistlog/internal/elastic"
	"github.com/assistlog/assistlog/internal/event"
	"github.com/assistlog/assistlog/internal/pipelinetest"
	"github.com/assistlog/assistlog/internal/stacktest"
)

// shipMore ships evs through another real shipper into alias and the
// Loki streams of run (shipped's), so both stores hold them.
func shipMore(t *testing.T, alias, run string, evs []event.Event) {
	t.Helper()
	ep := stacktest.Require(t, stacktest.Kafka, stacktest.Elasticsearch, stacktest.Loki)
	more := run + "more"
	topic, dlq := "test-"+more, "test-dlq-"+more
	stacktest.CreateTopics(t, ep.KafkaBrokers, map[string]int{topic: 1, dlq: 1})
	for i := range evs {
		if err := evs[i].Validate(); err != nil {
			t.Fatalf("crafted %s: %v", evs[i].EventID, err)
		}
	}
	produce(t, ep.KafkaBrokers, topic, evs)
	pipelinetest.StartShipper(t, ep, pipelinetest.Shipper{Dir: t.TempDir(), Topic: topic, DLQ: dlq, Group: more, Alias: alias,
		Labels: "{app: assistlog-test, deployment: " + run + "}"})
}

// The overview dashboard as far as its KPI panels go.
type gTarget struct {
	RefID      string `json:"refId"`
	Hide       bool   `json:"hide"`
	Datasource struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	Expr    string `json:"expr"`  // Loki
	Query   string `json:"query"` // Elasticsearch: Lucene
	Metrics []struct {
		ID    string `json:"id"`
		Type  string `json:"type"`
		Field string `json:"field"`
	} `json:"metrics"`
	BucketAggs []struct {
		ID    string `json:"id"`
		Type  string `json:"type"`
		Field string `json:"field"`
	} `json:"bucketAggs"`
	TimeField  string `json:"timeField"`
	Type       string `json:"type"` // expression: reduce, math
	Expression string `json:"expression"`
	Reducer    string `json:"reducer"`
}

type gPanel struct {
	ID          int       `json:"id"`
	Title       string    `json:"title"`
	Type        string    `json:"type"`
	Description string    `json:"description"`
	Targets     []gTarget `json:"targets"`
	Options     struct {
		ReduceOptions struct {
			Calcs []string `json:"calcs"`
		} `json:"reduceOptions"`
	} `json:"options"`
}

// grafana runs panels as Grafana would send them: Elasticsearch targets
// as the data source's search (Lucene in a query_string query, the time
// filter, the date histogram with the metric), Loki targets as an instant
// query at the range's end over $__range, server-side expressions (reduce,
// math) in float64 as Grafana's expression engine does, and the stat's
// calculation over the shown query.
type grafana struct {
	es, alias, loki string
	lokiSelector    string // replaces app="assistlog": this run's streams
	timeField       string
	tenant, channel string // "" is All
	from, to        time.Time
}

// series is what a query gave: its values (one per bucket or sample).
type series []float64

func (g *grafana) vars(s string) string {
	esc := regexp.MustCompile(`[\\^$*+?.()|[\]{}/]`)
	tenantRe, tenantLoki, channelRe, channelLoki := ".+", ".+", ".+", ".+"
	if g.tenant != "" {
		tenantRe, tenantLoki = esc.ReplaceAllString(g.tenant, `\$0`), g.tenant
	}
	if g.channel != "" {
		channelRe, channelLoki = esc.ReplaceAllString(g.channel, `\$0`), g.channel
	}
	rangeS := int64(math.Round(float64(g.to.Sub(g.from).Milliseconds()) / 1000))
	return strings.NewReplacer("${tenant:regex}", tenantRe, "${channel:regex}", channelRe,
		"$tenant", tenantLoki, "$channel", channelLoki, "$__range", fmt.Sprintf("%ds", rangeS), "$__interval", "1h",
		`app="assistlog"`, g.lokiSelector).Replace(s)
}

func (g *grafana) panel(t *testing.T, p gPanel) (float64, bool) {
	t.Helper()
	results := map[string]series{}
	var shown []string
	for _, tg := range p.Targets {
		var s series
		switch tg.Datasource.Type {
		case "elasticsearch":
			s = g.search(t, p, tg)
		case "loki":
			s = g.lokiInstant(t, p, tg)
		case "__expr__":
			s = g.expression(t, p, tg, results)
		default:
			t.Fatalf("panel %q: no runner for %s", p.Title, tg.Datasource.Type)
		}
		results[tg.RefID] = s
		if !tg.Hide {
			shown = append(shown, tg.RefID)
		}
	}
	if len(shown) != 1 || len(p.Options.ReduceOptions.Calcs) != 1 {
		t.Fatalf("panel %q: %d shown queries and calcs %v; a KPI stat shows one value", p.Title, len(shown), p.Options.ReduceOptions.Calcs)
	}
	vals := results[shown[0]]
	switch calc := p.Options.ReduceOptions.Calcs[0]; calc {
	case "sum":
		sum := 0.0
		for _, v := range vals {
			sum += v
		}
		return sum, !math.IsNaN(sum)
	case "lastNotNull":
		for i := len(vals) - 1; i >= 0; i-- {
			if !math.IsNaN(vals[i]) && !math.IsInf(vals[i], 0) {
				return vals[i], true
			}
		}
		return 0, false // "No data": the panel's noValue, "—"
	default:
		t.Fatalf("panel %q: calculation %s unknown to the test", p.Title, calc)
	}
	return 0, false
}

func (g *grafana) search(t *testing.T, p gPanel, tg gTarget) series {
	t.Helper()
	if len(tg.Metrics) != 1 || len(tg.BucketAggs) != 1 || tg.BucketAggs[0].Type != "date_histogram" {
		t.Fatalf("panel %q %s: want one metric over a date histogram", p.Title, tg.RefID)
	}
	from, to := g.from.UnixMilli(), g.to.UnixMilli()
	tf := tg.TimeField
	if tf == "" {
		tf = g.timeField
	}
	hist := map[string]any{"date_histogram": map[string]any{"field": tg.BucketAggs[0].Field, "min_doc_count": 0,
		"extended_bounds": map[string]any{"min": from, "max": to}, "format": "epoch_millis", "fixed_interval": "1h"}}
	m := tg.Metrics[0]
	switch m.Type {
	case "count":
	case "sum", "avg", "min", "max":
		hist["aggs"] = map[string]any{m.ID: map[string]any{m.Type: map[string]any{"field": m.Field}}}
	default:
		t.Fatalf("panel %q %s: metric %s unknown to the test", p.Title, tg.RefID, m.Type)
	}
	body := map[string]any{"size": 0,
		"query": map[string]any{"bool": map[string]any{"filter": []any{
			map[string]any{"range": map[string]any{tf: map[string]any{"gte": from, "lte": to, "format": "epoch_millis"}}},
			map[string]any{"query_string": map[string]any{"analyze_wildcard": true, "query": g.vars(tg.Query)}},
		}}},
		"aggs": map[string]any{tg.BucketAggs[0].ID: hist}}
	b, _ := json.Marshal(body)
	resp, err := http.Post(g.es+"/"+g.alias+"/_search", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var r struct {
		Aggregations map[string]struct {
			Buckets []map[string]json.RawMessage `json:"buckets"`
		} `json:"aggregations"`
	}
	if err := json.Unmarshal(raw, &r); err != nil || resp.StatusCode != 200 {
		t.Fatalf("panel %q %s: HTTP %d %s", p.Title, tg.RefID, resp.StatusCode, raw)
	}
	var s series
	for _, bk := range r.Aggregations[tg.BucketAggs[0].ID].Buckets {
		var v float64
		if m.Type == "count" {
			json.Unmarshal(bk["doc_count"], &v)
		} else {
			var mv struct{ Value *float64 }
			json.Unmarshal(bk[m.ID], &mv)
			v = math.NaN()
			if mv.Value != nil {
				v = *mv.Value
			}
		}
		s = append(s, v)
	}
	return s
}

func (g *grafana) lokiInstant(t *testing.T, p gPanel, tg gTarget) series {
	t.Helper()
	q := url.Values{"query": {g.vars(tg.Expr)}, "time": {strconv.FormatInt(g.to.UnixNano(), 10)}}
	resp, err := http.Get(g.loki + "/loki/api/v1/query?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var r struct {
		Data struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Value []any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(raw, &r); err != nil || resp.StatusCode != 200 {
		t.Fatalf("panel %q %s: HTTP %d %s", p.Title, tg.RefID, resp.StatusCode, raw)
	}
	if len(r.Data.Result) > 1 {
		t.Fatalf("panel %q %s: %d series, a stat of one KPI wants one", p.Title, tg.RefID, len(r.Data.Result))
	}
	var s series
	for _, x := range r.Data.Result {
		v, err := strconv.ParseFloat(fmt.Sprint(x.Value[1]), 64)
		if err != nil {
			t.Fatal(err)
		}
		s = append(s, v)
	}
	return s
}

// expression evaluates reduce (strict: a NaN stays NaN) and math over
// numbers: + - * / and parentheses on $refs, in float64.
func (g *grafana) expression(t *testing.T, p gPanel, tg gTarget, results map[string]series) series {
	t.Helper()
	switch tg.Type {
	case "reduce":
		in, ok := results[strings.TrimPrefix(tg.Expression, "$")]
		if !ok || tg.Reducer != "sum" {
			t.Fatalf("panel %q %s: reduce %s of %q unknown to the test", p.Title, tg.RefID, tg.Reducer, tg.Expression)
		}
		sum := 0.0
		for _, v := range in {
			sum += v
		}
		return series{sum}
	case "math":
		v, err := evalMath(tg.Expression, func(ref string) (float64, error) {
			s, ok := results[ref]
			if !ok || len(s) != 1 {
				return 0, fmt.Errorf("$%s is not a number (%v)", ref, s)
			}
			return s[0], nil
		})
		if err != nil {
			t.Fatalf("panel %q %s: %v", p.Title, tg.RefID, err)
		}
		return series{v}
	}
	t.Fatalf("panel %q %s: expression type %q unknown to the test", p.Title, tg.RefID, tg.Type)
	return nil
}

// evalMath is a recursive-descent reader of sums of products of factors.
func evalMath(expr string, ref func(string) (float64, error)) (float64, error) {
	toks := regexp.MustCompile(`\$[A-Za-z_][A-Za-z0-9_]*|[0-9.]+|[-+*/()]`).FindAllString(expr, -1)
	if strings.Join(toks, "") != strings.ReplaceAll(expr, " ", "") {
		return 0, fmt.Errorf("math %q: unsupported syntax", expr)
	}
	i := 0
	var sum, product, factor func() (float64, error)
	factor = func() (float64, error) {
		if i >= len(toks) {
			return 0, fmt.Errorf("math %q: ends early", expr)
		}
		tok := toks[i]
		i++
		switch {
		case tok == "(":
			v, err := sum()
			if err != nil {
				return 0, err
			}
			if i >= len(toks) || toks[i] != ")" {
				return 0, fmt.Errorf("math %q: unbalanced", expr)
			}
			i++
			return v, nil
		case tok == "-":
			v, err := factor()
			return -v, err
		case strings.HasPrefix(tok, "$"):
			return ref(tok[1:])
		}
		return strconv.ParseFloat(tok, 64)
	}
	product = func() (float64, error) {
		v, err := factor()
		for err == nil && i < len(toks) && (toks[i] == "*" || toks[i] == "/") {
			op := toks[i]
			i++
			var w float64
			if w, err = factor(); op == "*" {
				v *= w
			} else {
				v /= w
			}
		}
		return v, err
	}
	sum = func() (float64, error) {
		v, err := product()
		for err == nil && i < len(toks) && (toks[i] == "+" || toks[i] == "-") {
			op := toks[i]
			i++
			var w float64
			if w, err = product(); op == "+" {
				v += w
			} else {
				v -= w
			}
		}
		return v, err
	}
	v, err := sum()
	if err == nil && i != len(toks) {
		err = fmt.Errorf("math %q: trailing %q", expr, toks[i])
	}
	return v, err
}

// kpiPanels are the overview's stat panels, each with the `audit kpi` key
// its description names.
func kpiPanels(t *testing.T) map[string]gPanel {
	t.Helper()
	b, err := dashboards.Files.ReadFile("grafana/assistlog-overview.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct{ Panels []gPanel }
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("KPI `([a-z_]+)` of `audit kpi`")
	out := map[string]gPanel{}
	for _, p := range d.Panels {
		if p.Type != "stat" {
			continue
		}
		m := re.FindStringSubmatch(p.Description)
		if m == nil {
			t.Errorf("stat panel %q names no KPI of audit kpi: nothing checks it", p.Title)
			continue
		}
		out[m[1]] = p
	}
	return out
}

// TestDashboardKPIsAgree: on the same shipped data (Elasticsearch and
// Loki) and the same window, each KPI panel of the Grafana overview, run
// as Grafana would run it, shows what `audit kpi` prints: for one Ufa and
// one Moscow tenant over whole local days, for one channel, and for all
// tenants over the same instants.
func TestDashboardKPIsAgree(t *testing.T) {
	evs, _, stores, alias := shipped(t, 300)
	// Elasticsearch only: the panels are Grafana's Elasticsearch data
	// source (audit kpi itself is checked on both in TestKPIsMatchTheEvents),
	// and the body ships more events into the fixture.
	onStores(t, stores[:1], func(t *testing.T, es string) {
		ep := stacktest.Require(t, stacktest.Loki)
		run := strings.TrimPrefix(alias, "test-")
		sel := fmt.Sprintf(`app="assistlog-test", deployment=%q`, run)

		// Conversations the generator seldom makes: two bookings in one
		// conversation (bookings ≠ booked conversations, so the conversion's
		// numerator is proven), and no-shows, for an Ufa tenant at 10:00 local
		// on the day after the data begins.
		ufa, _ := time.LoadLocation("Asia/Yekaterinburg")
		day := evs[0].Time()
		for _, e := range evs {
			if e.Time().Before(day) {
				day = e.Time()
			}
		}
		d := day.In(ufa).AddDate(0, 0, 1)
		at := time.Date(d.Year(), d.Month(), d.Day(), 10, 0, 0, 0, ufa)
		var extra []event.Event
		add := func(tenant, session string, typ event.Type, outcome string, payload map[string]any) {
			at = at.Add(time.Minute)
			extra = append(extra, event.Event{EventID: fmt.Sprintf("%s-x%02d", run, len(extra)), Timestamp: at.Format(time.RFC3339Nano),
				Tenant: tenant, Channel: "whatsapp", SessionID: session, UserID: "wa:79160000000", UserPhone: "+79160000000",
				Type: typ, Level: "info", Outcome: outcome, Payload: payload, SchemaVersion: 1})
		}
		for _, tn := range []string{"salon-aurora", "salon-bellezza", "dental-smile", "clinic-family"} {
			s := run + "-two-" + tn
			add(tn, s, event.SessionStarted, "", nil)
			add(tn, s, event.LeadCreated, "", map[string]any{"source": "chatbot"})
			for _, a := range []string{"a1", "a2"} {
				add(tn, s, event.AppointmentConfirmed, "booked", map[string]any{"appointment_id": s + "-" + a, "service": "haircut", "starts_at": at.Add(48 * time.Hour).Format(time.RFC3339)})
			}
			add(tn, s, event.SessionEnded, "booked", nil)
			add(tn, s, event.AppointmentNoShow, "no_show", map[string]any{"appointment_id": s + "-a1"})
		}
		shipMore(t, alias, run, extra)
		evs = append(evs, extra...)
		stacktest.Eventually(t, 3*time.Minute, "events in Elasticsearch", func() error {
			http.Post(es+"/"+alias+"/_refresh", "application/json", nil)
			if n := count(t, es, alias, "*"); n != len(evs) {
				return fmt.Errorf("%d of %d", n, len(evs))
			}
			return nil
		})
		stacktest.Eventually(t, 3*time.Minute, "events in Loki", func() error {
			if n := stacktest.LokiScalar(t, ep.LokiURL, fmt.Sprintf(`sum(count_over_time({%s}[9d]))`, sel)); n != len(evs) {
				return fmt.Errorf("%d of %d", n, len(evs))
			}
			return nil
		})
		// The data source the panels name reads the shipper's alias.
		prov, err := dashboards.Files.ReadFile("grafana/provisioning/datasources/assistlog.yaml")
		if err != nil {
			t.Fatal(err)
		}
		var ds struct {
			Datasources []struct {
				UID      string `yaml:"uid"`
				JSONData struct {
					Index     string `yaml:"index"`
					TimeField string `yaml:"timeField"`
				} `yaml:"jsonData"`
			} `yaml:"datasources"`
		}
		if err := yaml.Unmarshal(prov, &ds); err != nil {
			t.Fatal(err)
		}
		timeField := ""
		for _, d := range ds.Datasources {
			if d.UID == "assistlog-elasticsearch" {
				if d.JSONData.Index != elastic.DefaultAlias {
					t.Errorf("the Elasticsearch data source reads %q, the shipper writes %q", d.JSONData.Index, elastic.DefaultAlias)
				}
				timeField = d.JSONData.TimeField
			}
		}
		if timeField != "@timestamp" {
			t.Fatalf("Elasticsearch data source timeField %q", timeField)
		}
		panels := kpiPanels(t)
		if len(panels) < 10 {
			t.Fatalf("%d KPI panels", len(panels))
		}
		cfg := writeConfig(t, es, alias, "")

		// Whole local days holding the data (follow-ups, the no-shows, come
		// late), and below a window cutting it.
		first, last := evs[0].Time(), evs[0].Time()
		joins := map[string]int{}
		for _, e := range evs {
			if e.Time().Before(first) {
				first = e.Time()
			}
			if e.Time().After(last) {
				last = e.Time()
			}
			if e.Type == "manager.joined" {
				joins[e.Tenant]++
			}
		}
		fromDay, toDay := first.UTC().Format("2006-01-02"), last.UTC().Format("2006-01-02")
		busiest := func(zone string) string {
			best := ""
			for _, e := range evs {
				if z := map[string]string{"salon-aurora": "ufa", "salon-bellezza": "ufa", "dental-smile": "ufa", "clinic-family": "ufa",
					"dental-care": "msk", "therapy-harmony": "msk"}[e.Tenant]; z == zone && joins[e.Tenant] > joins[best] {
					best = e.Tenant
				}
			}
			return best
		}
		type check struct {
			name            string
			tenant, channel string
			args            []string
			from, to        time.Time
			wantEveryKPI    bool
		}
		var checks []check
		for _, zone := range []string{"ufa", "msk"} {
			tn := busiest(zone)
			if tn == "" {
				t.Fatalf("no %s tenant in the data", zone)
			}
			l, _ := time.LoadLocation(map[string]string{"ufa": "Asia/Yekaterinburg", "msk": "Europe/Moscow"}[zone])
			from, _ := time.ParseInLocation("2006-01-02", fromDay, l)
			to, _ := time.ParseInLocation("2006-01-02", toDay, l)
			checks = append(checks, check{name: tn, tenant: tn, args: []string{"--tenant", tn, "--from", fromDay, "--to", toDay},
				from: from, to: to.AddDate(0, 0, 1)})
			if zone == "ufa" {
				checks = append(checks, check{name: tn + "/whatsapp", tenant: tn, channel: "whatsapp",
					args: []string{"--tenant", tn, "--channel", "whatsapp", "--from", fromDay, "--to", toDay}, from: from, to: to.AddDate(0, 0, 1)})
			}
		}
		// All tenants: one absolute window (Grafana has one), as instants.
		lo, hi := first.Add(36*time.Hour).Truncate(time.Hour), last.Add(-6*time.Hour).Truncate(time.Hour)
		checks = append(checks, check{name: "all tenants", args: []string{"--from", lo.Format(time.RFC3339), "--to", hi.Format(time.RFC3339)},
			from: lo, to: hi})
		nonzero := map[string]bool{}

		for _, c := range checks {
			got := auditKPI(t, append([]string{"--config", cfg}, c.args...)...)
			if c.name == busiest("ufa") && got.Total["booked"] == got.Total["confirmed"] {
				t.Errorf("%s: bookings equal booked conversations (%v): the crafted double booking is missing", c.name, got.Total["booked"])
			}
			g := &grafana{es: es, alias: alias, loki: ep.LokiURL, lokiSelector: sel, timeField: timeField,
				tenant: c.tenant, channel: c.channel, from: c.from, to: c.to.Add(-time.Millisecond)} // Grafana's "to" is the period's last millisecond
			for key, p := range panels {
				want, ok := got.Total[key]
				if !ok {
					t.Errorf("panel %q: audit kpi has no %s", p.Title, key)
					continue
				}
				v, shown := g.panel(t, p)
				switch {
				case want == nil && !shown:
				case want == nil || !shown:
					t.Errorf("%s: panel %q shows %v (shown %v), audit kpi %s = %v", c.name, p.Title, v, shown, key, want)
				default:
					w := want.(float64)
					if math.Abs(v-w) > 1e-6*math.Max(1, math.Abs(w)) {
						t.Errorf("%s: panel %q shows %v, audit kpi %s = %v", c.name, p.Title, v, key, w)
					}
				}
				if want != nil && want != 0.0 {
					nonzero[key] = true
				}
			}
			t.Logf("%s (%s .. %s): %d panels agree with audit kpi", c.name, c.from.Format(time.RFC3339), c.to.Format(time.RFC3339), len(panels))
		}
		for key := range panels {
			if !nonzero[key] {
				t.Errorf("%s is empty or 0 in every window: the comparison proves nothing for it", key)
			}
		}
	})
}
