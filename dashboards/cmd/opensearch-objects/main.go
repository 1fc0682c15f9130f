// Command opensearch-objects writes dashboards/opensearch/assistlog.ndjson
// from the Kibana saved objects (run by go generate in dashboards/).
package main

import (
	"fmt"
	"os"

	"github.com/assistlog/assistlog/dashboards"
)

func main() {
	kibana, err := os.ReadFile(dashboards.KibanaObjects)
	if err == nil {
		var b []byte
		if b, err = dashboards.OpenSearchFromKibana(kibana); err == nil {
			err = os.WriteFile(dashboards.OpenSearchObjects, b, 0o644)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "opensearch-objects:", err)
		os.Exit(1)
	}
}
