package dashboards_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/assistlog/assistlog/dashboards"
)

// TestOpenSearchObjectsAreTheKibanaOnes: the OpenSearch Dashboards file is
// exactly what the generator makes from the Kibana file (so an edit to one
// without `go generate ./dashboards` fails here), and both describe the
// same saved searches and the same index pattern.
func TestOpenSearchObjectsAreTheKibanaOnes(t *testing.T) {
	kibana, _ := dashboards.Files.ReadFile(dashboards.KibanaObjects)
	osd, err := dashboards.Files.ReadFile(dashboards.OpenSearchObjects)
	if err != nil {
		t.Fatal(err)
	}
	want, err := dashboards.OpenSearchFromKibana(kibana)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(osd, want) {
		t.Errorf("%s is not the rendering of %s: run go generate ./dashboards", dashboards.OpenSearchObjects, dashboards.KibanaObjects)
	}
	k, err := dashboards.SavedSearches()
	if err != nil {
		t.Fatal(err)
	}
	o, err := dashboards.SavedSearchesIn(dashboards.OpenSearchObjects)
	if err != nil {
		t.Fatal(err)
	}
	if len(k) == 0 || !reflect.DeepEqual(k, o) {
		t.Errorf("the files describe different searches:\nkibana     %+v\nopensearch %+v", k, o)
	}
	patterns := map[string]string{}
	for name, b := range map[string][]byte{"kibana": kibana, "opensearch": osd} {
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var obj struct {
				ID, Type         string
				MigrationVersion map[string]string `json:"migrationVersion"`
				Attributes       map[string]any
			}
			if err := json.Unmarshal([]byte(line), &obj); err != nil {
				t.Fatal(err)
			}
			if obj.Type == "index-pattern" {
				patterns[name] = obj.ID + " " + obj.Attributes["title"].(string) + " " + obj.Attributes["timeFieldName"].(string)
			}
			if name == "opensearch" && !strings.HasPrefix(obj.MigrationVersion[obj.Type], "7.") {
				t.Errorf("%s: migrationVersion %v, OpenSearch Dashboards 2.x knows 7.x migrations only", obj.ID, obj.MigrationVersion)
			}
		}
	}
	if patterns["kibana"] == "" || patterns["kibana"] != patterns["opensearch"] {
		t.Errorf("index patterns differ: %q", patterns)
	}
}
