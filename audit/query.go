package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/assistlog/assistlog/dashboards"
	"github.com/assistlog/assistlog/internal/elastic"
	"github.com/assistlog/assistlog/internal/esread"
)

// Query is one run of a saved query.
type Query struct {
	Search   dashboards.SavedSearch
	Params   map[string]string
	From, To time.Time // [From, To)
	Tenant   string
	// Limit is how many events to return at most; 0 returns every one.
	Limit int
}

// Result is what Elasticsearch returned: the total and the events (all of
// them, or the first Limit).
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

// Filter is the Elasticsearch query: the saved query's Lucene string,
// unchanged, in a query_string query, filtered by time and tenant.
func (q Query) Filter() (map[string]any, error) {
	lucene, err := q.Search.QueryWith(q.Params)
	if err != nil {
		return nil, err
	}
	filter := []any{map[string]any{"range": map[string]any{"@timestamp": map[string]any{
		"gte": q.From.UTC().Format(time.RFC3339Nano), "lt": q.To.UTC().Format(time.RFC3339Nano)}}}}
	if q.Tenant != "" {
		filter = append(filter, map[string]any{"term": map[string]any{"tenant": q.Tenant}})
	}
	return map[string]any{"bool": map[string]any{
		"must":   []any{map[string]any{"query_string": map[string]any{"query": lucene}}},
		"filter": filter,
	}}, nil
}

// errEnough stops paging once Limit events are in.
var errEnough = errors.New("limit reached")

// Run executes q: the exact total, and the events paged through a point in
// time with search_after, so no 10,000-hit window cuts them.
func (s Searcher) Run(ctx context.Context, q Query) (Result, error) {
	query, err := q.Filter()
	if err != nil {
		return Result{}, err
	}
	cfg := elastic.DefaultConfig()
	cfg.URLs, cfg.Alias, cfg.Username, cfg.Password = []string{s.URL}, s.Alias, s.Username, s.Password
	r, err := esread.New(cfg, s.HTTP)
	if err != nil {
		return Result{}, err
	}
	total, err := r.Count(ctx, "", query)
	if err != nil {
		return Result{}, notFound(s.Alias, err)
	}
	order := "desc"
	if q.Search.Ascending {
		order = "asc"
	}
	res := Result{Total: int(total), Events: []map[string]any{}}
	err = r.Each(ctx, esread.Search{Query: query,
		Sort: []any{map[string]any{"@timestamp": map[string]any{"order": order}}, map[string]any{"event_id": "asc"}}},
		func(h esread.Hit) error {
			if q.Limit > 0 && len(res.Events) >= q.Limit {
				return errEnough
			}
			var ev map[string]any
			if err := json.Unmarshal(h.Source, &ev); err != nil {
				return fmt.Errorf("decode %s/%s: %w", h.Index, h.ID, err)
			}
			res.Events = append(res.Events, ev)
			return nil
		})
	if err != nil && !errors.Is(err, errEnough) {
		return Result{}, notFound(s.Alias, err)
	}
	return res, nil
}

func notFound(alias string, err error) error {
	if errors.Is(err, esread.ErrNotFound) {
		return fmt.Errorf("search %s: no such index or alias (has the shipper written anything yet?)", alias)
	}
	return err
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
