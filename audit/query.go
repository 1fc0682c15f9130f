package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/assistlog/assistlog/dashboards"
)

// Query is one run of a saved query.
type Query struct {
	Search   dashboards.SavedSearch
	Params   map[string]string
	From, To time.Time // [From, To)
	Tenant   string
	Limit    int
}

// Result is what Elasticsearch returned: the total and up to Limit events.
type Result struct {
	Total  int              `json:"total"`
	Events []map[string]any `json:"events"`
}

// Searcher runs queries on the events alias.
type Searcher struct {
	URL, Alias         string
	Username, Password string
	HTTP               *http.Client
}

// Body is the Elasticsearch request: the saved query's Lucene string,
// unchanged, in a query_string query, filtered by time and tenant.
func (q Query) Body() (map[string]any, error) {
	lucene, err := q.Search.QueryWith(q.Params)
	if err != nil {
		return nil, err
	}
	filter := []any{map[string]any{"range": map[string]any{"@timestamp": map[string]any{
		"gte": q.From.UTC().Format(time.RFC3339Nano), "lt": q.To.UTC().Format(time.RFC3339Nano)}}}}
	if q.Tenant != "" {
		filter = append(filter, map[string]any{"term": map[string]any{"tenant": q.Tenant}})
	}
	order := "desc"
	if q.Search.Ascending {
		order = "asc"
	}
	return map[string]any{
		"size": q.Limit, "track_total_hits": true,
		"query": map[string]any{"bool": map[string]any{
			"must":   []any{map[string]any{"query_string": map[string]any{"query": lucene}}},
			"filter": filter,
		}},
		"sort": []any{map[string]any{"@timestamp": map[string]any{"order": order}}, map[string]any{"event_id": "asc"}},
	}, nil
}

// Run executes q.
func (s Searcher) Run(ctx context.Context, q Query) (Result, error) {
	body, err := q.Body()
	if err != nil {
		return Result{}, err
	}
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(s.URL, "/")+"/"+s.Alias+"/_search", bytes.NewReader(b))
	if err != nil {
		return Result{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	if s.Username != "" {
		req.SetBasicAuth(s.Username, s.Password)
	}
	hc := s.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: time.Minute}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return Result{}, fmt.Errorf("search %s: %w", s.Alias, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusNotFound {
		return Result{}, fmt.Errorf("search %s: no such index or alias (has the shipper written anything yet?)", s.Alias)
	}
	if resp.StatusCode != http.StatusOK {
		return Result{}, fmt.Errorf("search %s: HTTP %d: %s", s.Alias, resp.StatusCode, raw)
	}
	var r struct {
		Hits struct {
			Total struct {
				Value int `json:"value"`
			} `json:"total"`
			Hits []struct {
				Source map[string]any `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return Result{}, fmt.Errorf("search %s: decode: %w", s.Alias, err)
	}
	res := Result{Total: r.Hits.Total.Value, Events: make([]map[string]any, 0, len(r.Hits.Hits))}
	for _, h := range r.Hits.Hits {
		res.Events = append(res.Events, h.Source)
	}
	return res, nil
}

// parseTime reads a --from/--to value: a date (the day's start in loc; for
// --to the next day's start, so the day is included) or RFC 3339.
func parseTime(v string, loc *time.Location, end bool) (time.Time, error) {
	if t, err := time.ParseInLocation("2006-01-02", v, loc); err == nil {
		if end {
			t = t.AddDate(0, 0, 1)
		}
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is neither a date (2026-11-16) nor an RFC 3339 time", v)
}
