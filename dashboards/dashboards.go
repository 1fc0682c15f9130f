// Package dashboards holds what people look at: Grafana provisioning and
// dashboards (grafana/) and Kibana saved objects (kibana/). The files are
// the product; this package embeds them so that the auditors' command runs
// the very saved searches Kibana imports (one definition, not two copies),
// and the tests can run every panel's query against the real data sources.
package dashboards

import (
	"bufio"
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Files holds grafana/ and kibana/.
//
//go:embed grafana/*.json grafana/provisioning/datasources/*.yaml grafana/provisioning/dashboards/*.yaml kibana/*.ndjson opensearch/*.ndjson
var Files embed.FS

// KibanaObjects is the path of the Kibana saved objects inside Files.
const KibanaObjects = "kibana/assistlog.ndjson"

// SavedSearch is one of the auditors' saved queries: a Kibana saved search
// whose Lucene query string runs unchanged through Elasticsearch's
// query_string query.
type SavedSearch struct {
	// Name is the id without the "assistlog-" prefix, e.g.
	// appointments-confirmed.
	Name        string
	Title       string
	Description string
	// Query is the Lucene query; {param} placeholders (e.g. {session_id})
	// are filled by Query.
	Query   string
	Columns []string
	// Ascending sorts oldest first (a transcript).
	Ascending bool
}

var placeholder = regexp.MustCompile(`\{([a-z_]+)\}`)

// Params lists the placeholders the query needs.
func (s SavedSearch) Params() []string {
	var out []string
	for _, m := range placeholder.FindAllStringSubmatch(s.Query, -1) {
		out = append(out, m[1])
	}
	return out
}

// QueryWith fills the placeholders; a missing one is an error naming it.
// Values are quoted by the query itself, so a quote in a value is escaped.
func (s SavedSearch) QueryWith(params map[string]string) (string, error) {
	var missing []string
	q := placeholder.ReplaceAllStringFunc(s.Query, func(m string) string {
		name := m[1 : len(m)-1]
		v, ok := params[name]
		if !ok || v == "" {
			missing = append(missing, name)
			return m
		}
		return strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v)
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("saved query %s needs a value for {%s}", s.Name, strings.Join(missing, "}, {"))
	}
	return q, nil
}

type savedObject struct {
	ID         string `json:"id"`
	Type       string `json:"type"`
	Attributes struct {
		Title                 string     `json:"title"`
		Description           string     `json:"description"`
		Columns               []string   `json:"columns"`
		Sort                  [][]string `json:"sort"`
		KibanaSavedObjectMeta struct {
			SearchSourceJSON string `json:"searchSourceJSON"`
		} `json:"kibanaSavedObjectMeta"`
	} `json:"attributes"`
}

// SavedSearches reads the saved searches from the Kibana objects file,
// sorted by name.
func SavedSearches() ([]SavedSearch, error) {
	return SavedSearchesIn(KibanaObjects)
}

// SavedSearchesIn reads the saved searches of one saved-objects file in
// Files (Kibana's or OpenSearch Dashboards'), sorted by name.
func SavedSearchesIn(path string) ([]SavedSearch, error) {
	b, err := Files.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []SavedSearch
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for line := 1; sc.Scan(); line++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var o savedObject
		if err := json.Unmarshal(sc.Bytes(), &o); err != nil {
			return nil, fmt.Errorf("%s line %d: %w", path, line, err)
		}
		if o.Type != "search" {
			continue
		}
		var src struct {
			Query struct {
				Query    string `json:"query"`
				Language string `json:"language"`
			} `json:"query"`
		}
		if err := json.Unmarshal([]byte(o.Attributes.KibanaSavedObjectMeta.SearchSourceJSON), &src); err != nil {
			return nil, fmt.Errorf("%s line %d: searchSourceJSON: %w", path, line, err)
		}
		if src.Query.Language != "lucene" {
			return nil, fmt.Errorf("%s line %d: %s is %q, not lucene: Elasticsearch's query_string could not run it", path, line, o.ID, src.Query.Language)
		}
		s := SavedSearch{Name: strings.TrimPrefix(o.ID, "assistlog-"), Title: o.Attributes.Title, Description: o.Attributes.Description,
			Query: src.Query.Query, Columns: o.Attributes.Columns}
		if len(o.Attributes.Sort) > 0 && len(o.Attributes.Sort[0]) == 2 {
			s.Ascending = o.Attributes.Sort[0][1] == "asc"
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, sc.Err()
}

// Find returns the saved search called name.
func Find(name string) (SavedSearch, error) {
	all, err := SavedSearches()
	if err != nil {
		return SavedSearch{}, err
	}
	var names []string
	for _, s := range all {
		if s.Name == name {
			return s, nil
		}
		names = append(names, s.Name)
	}
	return SavedSearch{}, fmt.Errorf("no saved query %q (there are: %s)", name, strings.Join(names, ", "))
}
