package helm_test

import (
	"os"
	"testing"

	"github.com/assistlog/assistlog/helm"
)

// The chart README's values table is the rendering of values.schema.json:
// run go run ./helm/cmd/valuesdoc after changing the schema or values.yaml.
func TestValuesTableIsCurrent(t *testing.T) {
	schema, _ := os.ReadFile("assistlog/values.schema.json")
	values, _ := os.ReadFile("assistlog/values.yaml")
	table, err := helm.ValuesTable(schema, values)
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("assistlog/README.md")
	if err != nil {
		t.Fatal(err)
	}
	want, err := helm.ReplaceTable(string(readme), table)
	if err != nil {
		t.Fatal(err)
	}
	if want != string(readme) {
		t.Fatal("helm/assistlog/README.md's values table is not values.schema.json's: run go run ./helm/cmd/valuesdoc")
	}
}
