package dashboards

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
)

// OpenSearchObjects is the path of the OpenSearch Dashboards saved objects
// inside Files: generated from KibanaObjects by OpenSearchFromKibana (go
// generate), so the two never drift; a test checks the file is current.
const OpenSearchObjects = "opensearch/assistlog.ndjson"

//go:generate go run ./cmd/opensearch-objects

// OpenSearchFromKibana renders the Kibana saved objects for OpenSearch
// Dashboards (2.x, a Kibana 7.10 fork): the same ids, titles, columns,
// sort and searchSourceJSON, with 7.x migration versions instead of 8.x
// ones (an 8.x version is "newer than the known migrations" there and the
// import refuses it), and the index pattern without the data-view name
// Kibana 8 added (OpenSearch Dashboards' mapping has no such attribute).
func OpenSearchFromKibana(kibana []byte) ([]byte, error) {
	var out bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(kibana))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for line := 1; sc.Scan(); line++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var o map[string]any
		if err := json.Unmarshal(sc.Bytes(), &o); err != nil {
			return nil, fmt.Errorf("%s line %d: %w", KibanaObjects, line, err)
		}
		delete(o, "coreMigrationVersion")
		delete(o, "typeMigrationVersion")
		attrs, _ := o["attributes"].(map[string]any)
		switch o["type"] {
		case "index-pattern":
			delete(attrs, "name")
			o["migrationVersion"] = map[string]string{"index-pattern": "7.6.0"}
		case "search":
			o["migrationVersion"] = map[string]string{"search": "7.9.3"}
		default:
			return nil, fmt.Errorf("%s line %d: no OpenSearch Dashboards rendering for type %v", KibanaObjects, line, o["type"])
		}
		b, err := json.Marshal(o)
		if err != nil {
			return nil, err
		}
		out.Write(b)
		out.WriteByte('\n')
	}
	return out.Bytes(), sc.Err()
}
