package helm_test

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
)

// goldenDefaults is the chart rendered with its own values.yaml only.
const goldenDefaults = "testdata/defaults.golden.yaml"

// TestChartDefaultsUnchanged: with the defaults, every manifest renders byte
// for byte as testdata/defaults.golden.yaml, so a value added for an
// optional feature (PII keys, Kafka TLS/SASL, Elasticsearch TLS, webhook
// TLS) changes nothing for a release that does not set it. After a change
// to the defaults that is meant, rewrite the file with
// ASSISTLOG_UPDATE_GOLDEN=1 go test -run TestChartDefaultsUnchanged ./helm/.
func TestChartDefaultsUnchanged(t *testing.T) {
	r, err := render(t, readValues(t))
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(r.manifests))
	for n := range r.manifests {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		if strings.TrimSpace(r.manifests[n]) == "" {
			continue
		}
		b.WriteString("# Source: " + n + "\n" + r.manifests[n] + "\n")
	}
	if os.Getenv("ASSISTLOG_UPDATE_GOLDEN") != "" {
		if err := os.WriteFile(goldenDefaults, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(goldenDefaults)
	if err != nil {
		t.Fatal(err)
	}
	if b.String() != string(want) {
		t.Errorf("the defaults no longer render as %s:\n%s", goldenDefaults, firstDiff(string(want), b.String()))
	}
}

// firstDiff shows the first line that differs, with its neighbours.
func firstDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return fmt.Sprintf("line %d", i+1) + ":\nwant: " + wl + "\ngot:  " + gl
		}
	}
	return ""
}
