// Package output writes audit's tabular results as a terminal table, CSV
// (optionally with a BOM, so Excel opens Cyrillic text as UTF-8), JSON or
// Markdown, the same rows in every format.
package output

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"unicode/utf8"
)

// Formats every command accepts for data.
var Formats = []string{"table", "csv", "json", "md"}

// CheckFormat validates a --format value against allowed (Formats when nil).
func CheckFormat(f string, allowed []string) error {
	if allowed == nil {
		allowed = Formats
	}
	for _, a := range allowed {
		if f == a {
			return nil
		}
	}
	return fmt.Errorf("--format: one of %s, not %q", strings.Join(allowed, ", "), f)
}

// Table is a result: column keys (snake_case; the CSV header and JSON keys)
// and rows of cells.
type Table struct {
	Columns []string
	Rows    [][]string
	// Width cuts table cells to this many characters (0: 60); CSV, JSON
	// and Markdown are never cut.
	Width int
}

// Add appends a row.
func (t *Table) Add(cells ...string) { t.Rows = append(t.Rows, cells) }

// Write renders t in format.
func (t *Table) Write(w io.Writer, format string) error {
	switch format {
	case "csv":
		return t.CSV(w, false)
	case "json":
		return t.JSON(w)
	case "md":
		return t.Markdown(w)
	case "table", "":
		return t.Text(w)
	}
	return CheckFormat(format, nil)
}

// CSV writes RFC 4180 CSV; bom prefixes the UTF-8 byte order mark that
// Excel needs to read UTF-8.
func (t *Table) CSV(w io.Writer, bom bool) error {
	if bom {
		if _, err := io.WriteString(w, "\ufeff"); err != nil {
			return err
		}
	}
	cw := csv.NewWriter(w)
	cw.Write(t.Columns)
	for _, r := range t.Rows {
		cw.Write(r)
	}
	cw.Flush()
	return cw.Error()
}

// Records is the rows as objects keyed by column, for JSON output that
// embeds a table in a larger document.
func (t *Table) Records() []map[string]string {
	out := make([]map[string]string, 0, len(t.Rows))
	for _, r := range t.Rows {
		m := make(map[string]string, len(t.Columns))
		for i, c := range t.Columns {
			if i < len(r) {
				m[c] = r[i]
			}
		}
		out = append(out, m)
	}
	return out
}

// JSON writes an array of objects keyed by column.
func (t *Table) JSON(w io.Writer) error { return WriteJSON(w, t.Records()) }

// WriteJSON writes v as indented JSON for people and programs alike:
// text with <, > or & stays readable (no HTML escaping).
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// Text writes aligned columns for a terminal.
func (t *Table) Text(w io.Writer) error {
	width := t.Width
	if width == 0 {
		width = 60
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.ToUpper(strings.Join(t.Columns, "\t")))
	for _, r := range t.Rows {
		cells := make([]string, len(r))
		for i, v := range r {
			v = strings.NewReplacer("\t", " ", "\n", " ", "\r", " ").Replace(v)
			if utf8.RuneCountInString(v) > width {
				v = string([]rune(v)[:width-1]) + "…"
			}
			cells[i] = v
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

// Markdown writes a GitHub-flavoured table.
func (t *Table) Markdown(w io.Writer) error {
	esc := strings.NewReplacer("|", `\|`, "\n", " ", "\r", " ")
	var b strings.Builder
	b.WriteString("| " + strings.Join(t.Columns, " | ") + " |\n|")
	for range t.Columns {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, r := range t.Rows {
		cells := make([]string, len(r))
		for i, v := range r {
			cells[i] = esc.Replace(v)
		}
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}
