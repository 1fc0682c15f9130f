package esread

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/assistlog/assistlog/internal/elastic"
	"github.com/assistlog/assistlog/internal/stacktest"
)

// TestEachReadsPastTheWindow indexes more documents than Elasticsearch's
// 10,000-hit window and reads every one back exactly once, in order;
// a composite aggregation over more than one page of buckets counts them
// exactly.
func TestEachReadsPastTheWindow(t *testing.T) {
	for _, st := range stacktest.SearchStores(t) {
		t.Run(st.Name, func(t *testing.T) { eachReadsPastTheWindow(t, st.URL, st.Name) })
	}
}

func eachReadsPastTheWindow(t *testing.T, url, store string) {
	index := fmt.Sprintf("test-esread-%d", time.Now().UnixNano()%1e9)
	const n = 10_500
	mapping := `{"mappings":{"properties":{"@timestamp":{"type":"date"},"event_id":{"type":"keyword"},"session_id":{"type":"keyword"}}}}`
	mreq, _ := http.NewRequest(http.MethodPut, url+"/"+index, bytes.NewReader([]byte(mapping)))
	mreq.Header.Set("Content-Type", "application/json")
	if resp, err := http.DefaultClient.Do(mreq); err != nil || resp.StatusCode != 200 {
		t.Fatalf("create index: %v %v", resp, err)
	}
	var bulk bytes.Buffer
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < n; i++ {
		fmt.Fprintf(&bulk, "{\"create\":{\"_index\":%q,\"_id\":\"e%05d\"}}\n", index, i)
		// Many documents share a timestamp: the tiebreakers must keep
		// pages from overlapping.
		fmt.Fprintf(&bulk, "{\"@timestamp\":%q,\"event_id\":\"e%05d\",\"session_id\":\"s%04d\"}\n",
			base.Add(time.Duration(i/7)*time.Second).Format(time.RFC3339), i, i%1500)
	}
	req, _ := http.NewRequest(http.MethodPost, url+"/_bulk?refresh=true", &bulk)
	req.Header.Set("Content-Type", "application/x-ndjson")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var br struct{ Errors bool }
	json.NewDecoder(resp.Body).Decode(&br)
	resp.Body.Close()
	if br.Errors || resp.StatusCode != 200 {
		t.Fatalf("bulk: %d errors=%v", resp.StatusCode, br.Errors)
	}
	t.Cleanup(func() {
		req, _ := http.NewRequest(http.MethodDelete, url+"/"+index, nil)
		http.DefaultClient.Do(req)
	})
	cfg := elastic.DefaultConfig()
	cfg.URLs, cfg.Alias = []string{url}, index
	r, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	seen := map[string]int{}
	prev := ""
	err = r.Each(ctx, Search{}, func(h Hit) error {
		e, err := h.Decode()
		if err != nil {
			return err
		}
		seen[e.EventID]++
		if e.EventID <= prev {
			return fmt.Errorf("%s after %s: out of order", e.EventID, prev)
		}
		prev = e.EventID
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := r.Store(ctx); err != nil || got != store {
		t.Errorf("detected store %q %v, want %q", got, err, store)
	}
	if len(seen) != n {
		t.Errorf("read %d distinct documents, want %d", len(seen), n)
	}
	for id, c := range seen {
		if c != 1 {
			t.Errorf("%s read %d times", id, c)
		}
	}
	if c, err := r.Count(ctx, "", nil); err != nil || c != n {
		t.Errorf("count %d %v, want %d", c, err, n)
	}
	sessions, docs := 0, int64(0)
	err = r.Composite(ctx, "", nil, []any{map[string]any{"s": map[string]any{"terms": map[string]any{"field": "session_id"}}}}, nil,
		func(b Bucket) error { sessions++; docs += b.DocCount; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if sessions != 1500 || docs != n {
		t.Errorf("composite: %d buckets holding %d documents, want 1500 and %d", sessions, docs, n)
	}
	if err := r.Each(ctx, Search{Index: index + "-missing"}, func(Hit) error { return nil }); err == nil {
		t.Error("a missing index read without an error")
	}
}
