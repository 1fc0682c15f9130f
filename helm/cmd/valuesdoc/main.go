// Command valuesdoc writes the values table of helm/assistlog/README.md
// from values.schema.json and values.yaml (run from the repo root).
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/assistlog/assistlog/helm"
)

func main() {
	if err := run(filepath.Join("helm", "assistlog")); err != nil {
		fmt.Fprintln(os.Stderr, "valuesdoc:", err)
		os.Exit(1)
	}
}

func run(chart string) error {
	schema, err := os.ReadFile(filepath.Join(chart, "values.schema.json"))
	if err != nil {
		return err
	}
	values, err := os.ReadFile(filepath.Join(chart, "values.yaml"))
	if err != nil {
		return err
	}
	table, err := helm.ValuesTable(schema, values)
	if err != nil {
		return err
	}
	path := filepath.Join(chart, "README.md")
	readme, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	out, err := helm.ReplaceTable(string(readme), table)
	if err != nil {
		return err
	}
	return os.WriteFile(path, []byte(out), 0o644)
}
