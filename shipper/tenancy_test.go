package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/assistlog/assistlog/internal/deadletter"
	"github.com/assistlog/assistlog/internal/proctest"
	"github.com/assistlog/assistlog/internal/stacktest"
	"github.com/assistlog/assistlog/stack"
)

// isolationGet sends a Loki API request as org ("": no
// X-Scope-OrgID) and returns the status and the body.
func isolationGet(t *testing.T, base, org, path string, q url.Values) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+path+"?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if org != "" {
		req.Header.Set("X-Scope-OrgID", org)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// isolationCount is what reader org counts of this run's lines in Loki.
func isolationCount(t *testing.T, base, org, run string) int {
	t.Helper()
	return stacktest.LokiScalarAs(t, base, org, fmt.Sprintf(`sum(count_over_time({deployment=%q}[10d]))`, run))
}

// TestLokiPerTenantIsolation: the real shipper with loki.tenancy
// per_tenant ships generated conversations of several businesses into a
// private Loki with auth on. Each business's Loki tenant (mapped through
// the tenants file: two renamed "a" and "b", one left out of the file)
// reads exactly its own events (counted from the generated events), a
// reader without X-Scope-OrgID is refused (401), an unknown tenant reads
// nothing, the operators' "a|b" reads both; the events of the tenant
// missing from the file are dead-lettered, not pushed under a guessed
// tenant, and still in Elasticsearch. The Grafana data sources and ruler
// rules rendered by `loki-tenants` from the same tenants file read, with
// the header Grafana sends, only their tenant, and the ruler evaluates a
// tenant's rules over that tenant's events alone.
func TestLokiPerTenantIsolation(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	lk, err := stack.StartLoki(ctx, stack.ExtraLokiConfig{Name: "isolation", HTTPPort: 13131, GRPCPort: 19131,
		AuthEnabled: true, MultiTenantQueries: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lk.Stop)

	evs, _ := e.generate(30)
	// Three businesses, conversations dealt round-robin (the first
	// dialogues of the shared set are all one kind of business).
	session := map[string]int{}
	truth := map[string]int{} // the businesses' event counts, from the input
	for i := range evs {
		k := evs[i].Tenant + "/" + evs[i].SessionID
		if _, ok := session[k]; !ok {
			session[k] = len(session)
		}
		evs[i].Tenant = []string{"clinic-a", "clinic-b", "clinic-c"}[session[k]%3]
		truth[evs[i].Tenant]++
	}
	var names []string
	for n := range truth {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) < 3 {
		t.Fatalf("the generated events hold %d tenants, the test needs 3", len(names))
	}
	// A and B get Loki tenants a and b; the rest keep their names but the
	// last, left out of the tenants file.
	tA, tB, left := names[0], names[1], names[len(names)-1]
	t.Logf("events per business: %v (%s is left out of the tenants file)", truth, left)
	org := map[string]string{tA: "a", tB: "b"}
	var file strings.Builder
	file.WriteString("tenants:\n")
	for _, n := range names[:len(names)-1] {
		if org[n] == "" {
			org[n] = n
		}
		fmt.Fprintf(&file, "  - {name: %s, tz: Asia/Yekaterinburg, loki_tenant: %s}\n", n, org[n])
	}
	tenantsFile := filepath.Join(e.dir, "tenants.yaml")
	if err := os.WriteFile(tenantsFile, []byte(file.String()), 0o644); err != nil {
		t.Fatal(err)
	}

	// The readers' side, rendered by the command from the same file: the
	// data sources, and the content rules in each tenant's ruler directory.
	dsFile := filepath.Join(e.dir, "datasources.yaml")
	out, err := exec.Command(proctest.Build(t, "../dashboards/cmd/loki-tenants"), "--tenants", tenantsFile, "--loki-url", lk.URL,
		"--datasources", dsFile, "--rules-dir", lk.RulesDir).CombinedOutput()
	if err != nil {
		t.Fatalf("loki-tenants: %v\n%s", err, out)
	}
	// A probe rule per tenant, placed the same way: it stays pending (for:
	// 1h), so nothing reaches the shared Alertmanager, and lists the
	// tenants it sees with their counts.
	probe := fmt.Sprintf(`groups:
  - name: isolation-probe
    interval: 10s
    rules:
      - alert: IsolationProbe
        expr: sum by (tenant) (count_over_time({deployment=%q}[10d])) > 0
        for: 1h
`, e.run)
	var orgs []string
	for _, n := range names[:len(names)-1] {
		orgs = append(orgs, org[n])
	}
	writeProbe(t, lk.RulesDir, probe, orgs)

	addr := proctest.FreeAddr(t)
	cfg := fmt.Sprintf(`kafka:
  brokers: [%q]
  topic: %s
  dead_letter_topic: %s
  group_id: group-%s
  batch_messages: 500
  batch_wait: 200ms
retry: {max_backoff: 2s, pause_interval: 2s}
elasticsearch:
  urls: [%q]
  alias: %s
loki:
  url: %s
  tenancy: per_tenant
  tenants_file: %s
  labels: {app: assistlog-test, deployment: %s}
pii:
  hash_secret: %q
http:
  listen: %s
`, e.ep.KafkaBrokers, e.topic, e.dlq, e.run, e.ep.ElasticsearchURL, e.alias, lk.URL, tenantsFile, e.run, testSecret, addr)
	path := filepath.Join(e.dir, "shipper-tenancy.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	startShipper := func() *proctest.Process {
		p := proctest.Start(t, proctest.Build(t, "."), []string{"--config", path},
			filepath.Join(e.dir, fmt.Sprintf("shipper-tenancy-%d.log", len(e.procs))), "http://"+addr+"/readyz")
		e.procs = append(e.procs, p)
		return p
	}
	shipper := startShipper()
	e.produce(evs)

	stacktest.Eventually(t, 3*time.Minute, "every tenant's events in its Loki tenant", func() error {
		for _, n := range names[:len(names)-1] {
			if got := isolationCount(t, lk.URL, org[n], e.run); got != truth[n] {
				return fmt.Errorf("Loki tenant %s (%s) holds %d events, want %d", org[n], n, got, truth[n])
			}
		}
		if n, _ := e.esSearch("*", 0); n != len(evs) {
			return fmt.Errorf("Elasticsearch holds %d of %d events", n, len(evs))
		}
		return nil
	})
	// The tenant missing from the file: dead-lettered with the reason, one
	// record per event, and nowhere in Loki under its own name.
	stacktest.Eventually(t, time.Minute, "the unmapped tenant's dead letters", func() error {
		msgs := stacktest.ReadTopic(t, e.ep.KafkaBrokers, e.dlq)
		if len(msgs) != truth[left] {
			return fmt.Errorf("%d dead letters, want %d (tenant %s)", len(msgs), truth[left], left)
		}
		for _, m := range msgs {
			r := deadletter.FromMessage(m)
			if r.Reason != ReasonLoki || r.Tenant != left || !strings.Contains(r.Error, "not in the tenants file") {
				t.Fatalf("dead letter: reason %s, tenant %s, error %s", r.Reason, r.Tenant, r.Error)
			}
		}
		return nil
	})
	if n := isolationCount(t, lk.URL, left, e.run); n != 0 {
		t.Errorf("the unmapped tenant %s has %d events in Loki under its name", left, n)
	}

	// Readers.
	if got := isolationCount(t, lk.URL, "a", e.run); got != truth[tA] {
		t.Errorf("reader a counts %d, want %d (%s only)", got, truth[tA], tA)
	}
	if got := isolationCount(t, lk.URL, "b", e.run); got != truth[tB] {
		t.Errorf("reader b counts %d, want %d (%s only)", got, truth[tB], tB)
	}
	if got := isolationCount(t, lk.URL, "a|b", e.run); got != truth[tA]+truth[tB] {
		t.Errorf("the operators' reader a|b counts %d, want %d", got, truth[tA]+truth[tB])
	}
	if got := isolationCount(t, lk.URL, "nobody", e.run); got != 0 {
		t.Errorf("an unknown tenant reads %d events", got)
	}
	q := url.Values{"query": {fmt.Sprintf(`sum(count_over_time({deployment=%q}[10d]))`, e.run)}}
	if code, body := isolationGet(t, lk.URL, "", "/loki/api/v1/query", q); code != http.StatusUnauthorized {
		t.Errorf("a query without X-Scope-OrgID: HTTP %d %s, want 401", code, body)
	}
	// Reader a cannot even learn the other businesses' names.
	if got := tenantLabelValues(t, lk.URL, "a"); strings.Join(got, ",") != tA {
		t.Errorf("reader a sees tenant label values %v, want only %s", got, tA)
	}

	// The rendered Grafana data sources, queried with the header Grafana's
	// proxy adds (httpHeaderName1: secureJsonData.httpHeaderValue1).
	var prov struct {
		Datasources []struct {
			Name, UID, Type, URL string
			OrgID                int `yaml:"orgId"`
			JSONData             struct {
				Header string `yaml:"httpHeaderName1"`
			} `yaml:"jsonData"`
			Secure struct {
				Value string `yaml:"httpHeaderValue1"`
			} `yaml:"secureJsonData"`
		} `yaml:"datasources"`
	}
	b, err := os.ReadFile(dsFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &prov); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"assistlog-loki": len(evs) - truth[left]} // the operators': every mapped tenant
	for _, n := range names[:len(names)-1] {
		want["assistlog-loki-"+n] = truth[n]
	}
	seen := 0
	for _, ds := range prov.Datasources {
		if ds.Type != "loki" {
			continue
		}
		seen++
		w, ok := want[ds.UID]
		if !ok || ds.URL != lk.URL || ds.JSONData.Header != "X-Scope-OrgID" || ds.Secure.Value == "" {
			t.Errorf("data source %+v: not one of %v, or without the tenant header", ds, want)
			continue
		}
		got := stacktest.LokiScalarAs(t, ds.URL, ds.Secure.Value, fmt.Sprintf(`sum(count_over_time({deployment=%q}[10d]))`, e.run))
		if got != w {
			t.Errorf("data source %q (X-Scope-OrgID %s) counts %d events, want %d", ds.Name, ds.Secure.Value, got, w)
		}
	}
	if seen != len(want) {
		t.Errorf("%d Loki data sources rendered, want %d", seen, len(want))
	}

	// The left-out business joins: added to the file, the shipper
	// restarted, its dead letters replayed: now in its own Loki tenant,
	// exactly once, the others untouched.
	if err := os.WriteFile(tenantsFile, []byte(file.String()+fmt.Sprintf("  - {name: %s, tz: Europe/Moscow}\n", left)), 0o644); err != nil {
		t.Fatal(err)
	}
	shipper.Kill()
	startShipper()
	var rep strings.Builder
	if err := dlqMain([]string{"replay", "--config", path, "--format", "json"}, &rep, io.Discard); err != nil {
		t.Fatalf("dlq replay: %v\n%s", err, rep.String())
	}
	stacktest.Eventually(t, 2*time.Minute, "the replayed business in its Loki tenant", func() error {
		if got := isolationCount(t, lk.URL, left, e.run); got != truth[left] {
			return fmt.Errorf("Loki tenant %s holds %d events, want %d", left, got, truth[left])
		}
		return nil
	})
	time.Sleep(3 * time.Second) // a duplicate would have arrived with the rest
	for _, n := range names {
		if got := isolationCount(t, lk.URL, cmp.Or(org[n], n), e.run); got != truth[n] {
			t.Errorf("after the replay Loki tenant of %s holds %d events, want %d", n, got, truth[n])
		}
	}
	if n, _ := e.esSearch("*", 0); n != len(evs) {
		t.Errorf("after the replay Elasticsearch holds %d events, want %d", n, len(evs))
	}

	// The ruler: the content rules load for each tenant, and the probe
	// evaluates over that tenant's events only.
	stacktest.Eventually(t, 2*time.Minute, "the ruler evaluating each tenant's rules", func() error {
		for _, n := range names[:len(names)-1] {
			code, body := isolationGet(t, lk.URL, org[n], "/prometheus/api/v1/rules", nil)
			if code != http.StatusOK {
				return fmt.Errorf("rules of %s: HTTP %d %s", org[n], code, body)
			}
			if !strings.Contains(string(body), `"AssistantErrorSpike"`) || strings.Contains(string(body), `"health":"err"`) {
				return fmt.Errorf("rules of %s: content rules missing or failing: %.400s", org[n], body)
			}
			seen := probeAlerts(t, lk.URL, org[n])
			if len(seen) != 1 || seen[n] != truth[n] {
				return fmt.Errorf("the probe of Loki tenant %s sees %v, want only %s: %d", org[n], seen, n, truth[n])
			}
		}
		return nil
	})
}

// writeProbe places a rules file in each tenant's ruler directory.
func writeProbe(t *testing.T, dir, rules string, orgs []string) {
	t.Helper()
	for _, o := range orgs {
		if err := os.WriteFile(filepath.Join(dir, o, "isolation-probe.yaml"), []byte(rules), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// tenantLabelValues is what Grafana's tenant variable lists to reader org.
func tenantLabelValues(t *testing.T, base, org string) []string {
	t.Helper()
	q := url.Values{"start": {fmt.Sprint(time.Now().Add(-10 * 24 * time.Hour).UnixNano())}, "end": {fmt.Sprint(time.Now().UnixNano())}}
	code, body := isolationGet(t, base, org, "/loki/api/v1/label/tenant/values", q)
	var r struct {
		Data []string `json:"data"`
	}
	if code != http.StatusOK || json.Unmarshal(body, &r) != nil {
		t.Fatalf("label values as %s: HTTP %d %s", org, code, body)
	}
	return r.Data
}

// probeAlerts is the probe's alerts in the ruler of Loki tenant org:
// tenant → the count it evaluated.
func probeAlerts(t *testing.T, base, org string) map[string]int {
	t.Helper()
	code, body := isolationGet(t, base, org, "/prometheus/api/v1/alerts", nil)
	var r struct {
		Data struct {
			Alerts []struct {
				Labels map[string]string `json:"labels"`
				Value  string            `json:"value"`
			} `json:"alerts"`
		} `json:"data"`
	}
	if code != http.StatusOK || json.Unmarshal(body, &r) != nil {
		t.Fatalf("alerts of %s: HTTP %d %s", org, code, body)
	}
	out := map[string]int{}
	for _, a := range r.Data.Alerts {
		if a.Labels["alertname"] != "IsolationProbe" {
			continue
		}
		var f float64
		fmt.Sscan(a.Value, &f)
		out[a.Labels["tenant"]] = int(f)
	}
	return out
}

// TestLokiTenancyConfig: the loki: tenancy fields are checked at load,
// naming the field.
func TestLokiTenancyConfig(t *testing.T) {
	for in, want := range map[string]string{
		"loki: {tenancy: per_business}\n":             `loki.tenancy: must be single or per_tenant, got "per_business"`,
		"loki: {tenancy: per_tenant, tenant_id: x}\n": "loki.tenant_id: must be empty with tenancy per_tenant",
		"loki: {tenants_file: t.yaml}\n":              "loki.tenants_file: used only with tenancy per_tenant",
	} {
		path := filepath.Join(t.TempDir(), "shipper.yaml")
		if err := os.WriteFile(path, []byte("pii: {hash_secret: a-secret-of-sixteen+}\n"+in), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadConfig(path); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want %q", in, err, want)
		}
	}
	path := filepath.Join(t.TempDir(), "shipper.yaml")
	os.WriteFile(path, []byte("pii: {hash_secret: a-secret-of-sixteen+}\nloki: {tenancy: per_tenant, tenants_file: ../demo/tenants.yaml}\n"), 0o644)
	if cfg, err := LoadConfig(path); err != nil || cfg.Loki.Tenancy != "per_tenant" {
		t.Errorf("per_tenant config: %+v, %v", cfg.Loki.Config, err)
	}
}
