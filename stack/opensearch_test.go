package stack_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/assistlog/assistlog/internal/stacktest"
	"github.com/assistlog/assistlog/stack"
)

// TestOpenSearchAnswers: the stack's second store is the pinned OpenSearch,
// telling what it is on GET / (which is how esread picks its point-in-time
// API).
func TestOpenSearchAnswers(t *testing.T) {
	ep := stacktest.Require(t, stacktest.OpenSearch)
	resp, err := http.Get(ep.OpenSearchURL + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var root struct {
		Version struct{ Distribution, Number string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&root); err != nil {
		t.Fatal(err)
	}
	if root.Version.Distribution != "opensearch" || root.Version.Number != stack.Versions.OpenSearch {
		t.Errorf("GET / says %+v, want opensearch %s", root.Version, stack.Versions.OpenSearch)
	}
}
