package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/assistlog/assistlog/internal/stacktest"
)

// TestQueryPrintsPastTenThousand: a saved search with more than 10,000
// matches prints every one (Elasticsearch's from+size window stops at
// 10,000), and a --limit below the total says on stderr what it left out.
func TestQueryPrintsPastTenThousand(t *testing.T) {
	onStores(t, stacktest.SearchStores(t), func(t *testing.T, es string) {
		alias := fmt.Sprintf("test-q%d", time.Now().UnixNano()%1e9)
		index := alias + "-2026.11"
		t.Cleanup(func() {
			req, _ := http.NewRequest(http.MethodDelete, es+"/"+alias+"-*", nil)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		})
		esSend(t, http.MethodPut, es+"/"+index, map[string]any{
			"aliases": map[string]any{alias: map[string]any{}},
			"mappings": map[string]any{"properties": map[string]any{
				"@timestamp": map[string]any{"type": "date"}, "event_id": map[string]any{"type": "keyword"},
				"level": map[string]any{"type": "keyword"}, "tenant": map[string]any{"type": "keyword"}}}})

		// 10,050 errors, plus 7 info events the query must not print.
		const errorsN, infoN = 10050, 7
		base := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
		var bulk bytes.Buffer
		for i := 0; i < errorsN+infoN; i++ {
			level := "error"
			if i >= errorsN {
				level = "info"
			}
			id := fmt.Sprintf("q-%05d", i)
			fmt.Fprintf(&bulk, `{"create":{"_index":%q,"_id":%q}}`+"\n", index, id)
			fmt.Fprintf(&bulk, `{"@timestamp":%q,"event_id":%q,"level":%q,"tenant":"salon-aurora","event_type":"error"}`+"\n",
				base.Add(time.Duration(i)*time.Second).Format(time.RFC3339), id, level)
		}
		resp, err := http.Post(es+"/_bulk?refresh=true", "application/x-ndjson", &bulk)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if n := count(t, es, alias, "level:error"); n != errorsN {
			t.Fatalf("%d errors indexed, want %d", n, errorsN)
		}

		args := []string{"query", "errors", "--es", es, "--alias", alias, "--from", "2026-11-20", "--to", "2026-11-21"}
		var out, errOut bytes.Buffer
		if err := run(context.Background(), append(args, "--format", "csv"), &out, &errOut); err != nil {
			t.Fatal(err, errOut.String())
		}
		rows, err := csv.NewReader(&out).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, r := range rows[1:] {
			seen[r[0]] = true
		}
		// Newest first, each event once.
		if len(rows) != errorsN+1 || len(seen) != errorsN || rows[1][0] != base.Add((errorsN-1)*time.Second).Format(time.RFC3339) {
			t.Errorf("%d rows (%d distinct times), first %v; want a header and %d events, newest first", len(rows), len(seen), rows[1], errorsN)
		}
		if strings.Contains(errOut.String(), "NOT SHOWN") {
			t.Errorf("stderr says rows were left out: %s", errOut.String())
		}
		r := auditJSON(t, append(args[1:], "--limit", "0")...)
		if r.Total != errorsN || len(r.Events) != errorsN {
			t.Errorf("json: total %d, %d events; want %d", r.Total, len(r.Events), errorsN)
		}

		// A display limit is never silent.
		out.Reset()
		errOut.Reset()
		if err := run(context.Background(), append(args, "--format", "csv", "--limit", "25"), &out, &errOut); err != nil {
			t.Fatal(err)
		}
		rows, _ = csv.NewReader(&out).ReadAll()
		want := fmt.Sprintf("NOT SHOWN: %d of %d events", errorsN-25, errorsN)
		if len(rows) != 26 || !strings.Contains(errOut.String(), want) {
			t.Errorf("--limit 25: %d rows, stderr %q; want 25 and %q", len(rows)-1, errOut.String(), want)
		}
	})
}
