package dashboards_test

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/assistlog/assistlog/dashboards"
)

type target struct {
	RefID      string `json:"refId"`
	Expr       string `json:"expr"`
	Query      string `json:"query"`      // Elasticsearch: Lucene
	Expression string `json:"expression"` // server-side expression
	Instant    bool   `json:"instant"`
	Datasource struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
}

type panel struct {
	ID         int    `json:"id"`
	Title      string `json:"title"`
	Type       string `json:"type"`
	Datasource struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ X, Y, W, H int } `json:"gridPos"`
	Targets []target                 `json:"targets"`
}

type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

func loadDashboards(t *testing.T) map[string]dashboard {
	t.Helper()
	files, err := fs.Glob(dashboards.Files, "grafana/*.json")
	if err != nil || len(files) != 3 {
		t.Fatalf("dashboards: %v %v", files, err)
	}
	out := map[string]dashboard{}
	for _, f := range files {
		b, _ := dashboards.Files.ReadFile(f)
		var d dashboard
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[f] = d
	}
	return out
}

var builtins = map[string]bool{"__interval": true, "__range": true, "__rate_interval": true, "__interval_ms": true, "__range_s": true}

// TestStructure: unique panel ids and dashboard uids, every data source a
// provisioned uid, every variable used defined, panels on the 24-column
// grid, every panel with a query.
func TestStructure(t *testing.T) {
	b, err := dashboards.Files.ReadFile("grafana/provisioning/datasources/assistlog.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var prov struct {
		Datasources []struct {
			UID  string `yaml:"uid"`
			Type string `yaml:"type"`
		} `yaml:"datasources"`
	}
	if err := yaml.Unmarshal(b, &prov); err != nil {
		t.Fatal(err)
	}
	uids := map[string]string{}
	for _, d := range prov.Datasources {
		uids[d.UID] = d.Type
	}
	for _, want := range []string{"loki", "prometheus", "elasticsearch"} {
		found := false
		for _, typ := range uids {
			found = found || typ == want
		}
		if !found {
			t.Errorf("no %s data source provisioned", want)
		}
	}
	varRef := regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)`)
	seenUID := map[string]bool{}
	for f, d := range loadDashboards(t) {
		if d.UID == "" || seenUID[d.UID] {
			t.Errorf("%s: uid %q missing or repeated", f, d.UID)
		}
		seenUID[d.UID] = true
		defined := map[string]bool{}
		for _, v := range d.Templating.List {
			defined[v.Name] = true
			if q, ok := v.Query.(map[string]any); ok {
				for _, m := range varRef.FindAllStringSubmatch(fmt.Sprint(q["query"]), -1) {
					if !builtins[m[1]] && !defined[m[1]] {
						t.Errorf("%s: variable %s uses $%s before it is defined", f, v.Name, m[1])
					}
				}
			}
		}
		ids := map[int]bool{}
		for _, p := range d.Panels {
			if ids[p.ID] {
				t.Errorf("%s: panel id %d repeated", f, p.ID)
			}
			ids[p.ID] = true
			if p.GridPos.W < 1 || p.GridPos.X+p.GridPos.W > 24 || p.GridPos.H < 1 {
				t.Errorf("%s: panel %q off the grid: %+v", f, p.Title, p.GridPos)
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", f, p.Title)
			}
			for _, ds := range append([]string{p.Datasource.UID}, targetUIDs(p)...) {
				if _, ok := uids[ds]; !ok && ds != "__expr__" { // Grafana's built-in expressions
					t.Errorf("%s: panel %q uses data source %q, not provisioned", f, p.Title, ds)
				}
			}
			refs := map[string]bool{}
			for _, tg := range p.Targets {
				refs[tg.RefID] = true
			}
			for _, tg := range p.Targets {
				if tg.Datasource.UID == "__expr__" {
					// $A in an expression is the panel's query A.
					for _, m := range varRef.FindAllStringSubmatch(tg.Expression, -1) {
						if !refs[m[1]] {
							t.Errorf("%s: panel %q expression %s uses $%s, no such query", f, p.Title, tg.RefID, m[1])
						}
					}
					if tg.Expression == "" {
						t.Errorf("%s: panel %q expression %s is empty", f, p.Title, tg.RefID)
					}
					continue
				}
				for _, m := range varRef.FindAllStringSubmatch(tg.text()+" "+p.Title, -1) {
					if !builtins[m[1]] && !defined[m[1]] {
						t.Errorf("%s: panel %q uses $%s, not defined", f, p.Title, m[1])
					}
				}
				if strings.TrimSpace(tg.text()) == "" {
					t.Errorf("%s: panel %q target %s is empty", f, p.Title, tg.RefID)
				}
			}
		}
	}
}

// text is the query of a target, whatever its data source.
func (tg target) text() string {
	switch tg.Datasource.Type {
	case "elasticsearch":
		return tg.Query
	case "__expr__":
		return tg.Expression
	}
	return tg.Expr
}

func targetUIDs(p panel) []string {
	var out []string
	for _, tg := range p.Targets {
		out = append(out, tg.Datasource.UID)
	}
	return out
}

// TestKibanaObjects: the data view and every saved search are there, each
// search on the data view and in Lucene.
func TestKibanaObjects(t *testing.T) {
	b, _ := dashboards.Files.ReadFile(dashboards.KibanaObjects)
	dataView := false
	for i, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var o struct {
			ID         string `json:"id"`
			Type       string `json:"type"`
			References []struct {
				Type, ID string
			} `json:"references"`
			Attributes map[string]any `json:"attributes"`
		}
		if err := json.Unmarshal([]byte(line), &o); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		switch o.Type {
		case "index-pattern":
			dataView = o.ID == "assistlog-events" && o.Attributes["title"] == "assistant-events" && o.Attributes["timeFieldName"] == "@timestamp"
		case "search":
			if len(o.References) != 1 || o.References[0].ID != "assistlog-events" {
				t.Errorf("%s does not reference the data view: %+v", o.ID, o.References)
			}
		}
	}
	if !dataView {
		t.Error("no data view over the assistant-events alias")
	}
	all, err := dashboards.SavedSearches()
	if err != nil || len(all) != 6 {
		t.Fatalf("saved searches: %d, %v", len(all), err)
	}
	conv, err := dashboards.Find("conversation")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conv.QueryWith(nil); err == nil {
		t.Error("conversation without a session id was accepted")
	}
	if q, _ := conv.QueryWith(map[string]string{"session_id": `a"b`}); q != `session_id:"a\"b"` {
		t.Errorf("a quote in a value is not escaped: %s", q)
	}
}
