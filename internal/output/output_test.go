package output

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"
)

func TestFormatsCarryTheSameRows(t *testing.T) {
	tb := Table{Columns: []string{"tenant", "text"}}
	tb.Add("salon-aurora", "Запись на стрижку, | \"срочно\"\nзавтра")
	tb.Add("clinic-family", "ok")

	var c bytes.Buffer
	if err := tb.CSV(&c, true); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(c.String(), "\ufeff") {
		t.Error("no BOM")
	}
	recs, err := csv.NewReader(strings.NewReader(strings.TrimPrefix(c.String(), "\ufeff"))).ReadAll()
	if err != nil || len(recs) != 3 || recs[1][1] != tb.Rows[0][1] {
		t.Errorf("csv round trip: %q %v", recs, err)
	}
	var j bytes.Buffer
	tb.Write(&j, "json")
	var objs []map[string]string
	if err := json.Unmarshal(j.Bytes(), &objs); err != nil || len(objs) != 2 || objs[0]["text"] != tb.Rows[0][1] {
		t.Errorf("json round trip: %v %v", objs, err)
	}
	var m bytes.Buffer
	tb.Write(&m, "md")
	if lines := strings.Split(strings.TrimSpace(m.String()), "\n"); len(lines) != 4 || !strings.Contains(lines[2], `\|`) {
		t.Errorf("markdown: %q", m.String())
	}
	var txt bytes.Buffer
	tb.Write(&txt, "table")
	if lines := strings.Split(strings.TrimSpace(txt.String()), "\n"); len(lines) != 3 || !strings.HasPrefix(lines[0], "TENANT") {
		t.Errorf("table: %q", txt.String())
	}
	if err := tb.Write(&txt, "xml"); err == nil || !strings.Contains(err.Error(), `not "xml"`) {
		t.Errorf("unknown format: %v", err)
	}
}
