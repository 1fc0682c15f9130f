package dashboards_test

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/assistlog/assistlog/dashboards"
)

// TestRenderLokiDataSources: the operators' Loki data source keeps the
// dashboards' uid and reads every tenant; each business gets one carrying
// only its X-Scope-OrgID, under the dashboards' uid in its own Grafana
// organization when it has one; the other data sources are kept.
func TestRenderLokiDataSources(t *testing.T) {
	b, err := dashboards.RenderLokiDataSources(dashboards.LokiReaders{URL: "http://loki:3100", Tenants: []dashboards.LokiReader{
		{Name: "salon-b", Title: "Салон Б", OrgID: "b"}, {Name: "salon-a", OrgID: "a", GrafanaOrg: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	var prov struct {
		Datasources []struct {
			Name, UID, Type, URL string
			OrgID                int               `yaml:"orgId"`
			JSONData             map[string]any    `yaml:"jsonData"`
			Secure               map[string]string `yaml:"secureJsonData"`
		} `yaml:"datasources"`
	}
	if err := yaml.Unmarshal(b, &prov); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	types := map[string]bool{}
	for _, d := range prov.Datasources {
		types[d.Type] = true
		if d.Type != "loki" {
			continue
		}
		if d.JSONData["httpHeaderName1"] != "X-Scope-OrgID" || d.URL != "http://loki:3100" {
			t.Errorf("%s: %+v", d.Name, d)
		}
		got[d.UID+"@"+string(rune('0'+d.OrgID))] = d.Secure["httpHeaderValue1"] + " " + d.Name
	}
	want := map[string]string{
		"assistlog-loki@1":         "a|b assistlog Loki",
		"assistlog-loki@2":         "a assistlog Loki",
		"assistlog-loki-salon-b@1": "b assistlog Loki: Салон Б",
	}
	if len(got) != len(want) {
		t.Errorf("loki data sources %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if !types["prometheus"] || !types["elasticsearch"] {
		t.Errorf("the other data sources were dropped: %v", types)
	}
	for _, bad := range [][]dashboards.LokiReader{
		{{Name: "x", OrgID: "a"}, {Name: "y", OrgID: "a"}},
		{{Name: "x", OrgID: "a", GrafanaOrg: 1}},
		{{Name: "x", OrgID: "a", GrafanaOrg: 3}, {Name: "y", OrgID: "b", GrafanaOrg: 3}},
	} {
		if _, err := dashboards.RenderLokiDataSources(dashboards.LokiReaders{URL: "http://loki:3100", Tenants: bad}); err == nil ||
			!strings.Contains(err.Error(), "loki data sources:") {
			t.Errorf("%+v: %v", bad, err)
		}
	}
}
