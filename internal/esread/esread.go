// Package esread reads stored events back out of Elasticsearch for audit:
// every hit of a query through a point in time and search_after (no
// 10,000-hit window, no scroll contexts left behind), exact counts, and
// composite aggregations paged to the last bucket. It speaks plain HTTP
// JSON, so the same reads work on Elasticsearch and OpenSearch; the one
// difference, the point-in-time API, comes from elastic.PointInTime for the
// store GET / names (elastic.Detect).
package esread

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/assistlog/assistlog/internal/elastic"
)

// ErrNotFound is a 404 from the server: no such index or alias.
var ErrNotFound = errors.New("no such index or alias")

// ErrForbidden is a 403: the user may not do this here.
var ErrForbidden = errors.New("forbidden")

// PageSize is how many hits one search_after page holds.
const PageSize = 2000

// Reader reads from one cluster.
type Reader struct {
	cfg elastic.Config
	hc  *http.Client

	mu    sync.Mutex
	store string // detected on first use
}

// New builds a reader with the shipper's Elasticsearch settings (URLs,
// alias, username/password or api_key); hc nil means a client with a
// one-minute timeout.
func New(cfg elastic.Config, hc *http.Client) (*Reader, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("elasticsearch config: %w", err)
	}
	if hc == nil {
		var err error
		if hc, err = elastic.HTTPClient(cfg, time.Minute); err != nil {
			return nil, err
		}
	}
	return &Reader{cfg: cfg, hc: hc, store: cfg.Store}, nil
}

// Store is the kind of server the reader talks to (asked once).
func (r *Reader) Store(ctx context.Context) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.store != "" {
		return r.store, nil
	}
	s, err := elastic.Detect(ctx, r.cfg, r.hc)
	if err != nil {
		return "", err
	}
	r.store = s
	return s, nil
}

// Alias is the events alias searches read.
func (r *Reader) Alias() string { return r.cfg.Alias }

// Do sends one JSON request to path (relative to the first URL) and
// decodes the answer into out (nil: discard). A 404 wraps ErrNotFound.
func (r *Reader) Do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode %s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	return r.send(ctx, method, path, "application/json", rd, out)
}

// Bulk posts an NDJSON body to path (e.g. "_bulk?refresh=true") and
// decodes the answer into out, with the reader's credentials.
func (r *Reader) Bulk(ctx context.Context, path string, ndjson []byte, out any) error {
	return r.send(ctx, http.MethodPost, path, "application/x-ndjson", bytes.NewReader(ndjson), out)
}

func (r *Reader) send(ctx context.Context, method, path, contentType string, rd io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(r.cfg.URLs[0], "/")+"/"+strings.TrimPrefix(path, "/"), rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", contentType)
	switch {
	case r.cfg.APIKey != "":
		req.Header.Set("Authorization", "ApiKey "+r.cfg.APIKey)
	case r.cfg.Username != "":
		req.SetBasicAuth(r.cfg.Username, r.cfg.Password)
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: read reply: %w", method, path, err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%s %s: %w: %s", method, path, ErrNotFound, short(raw))
	case resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("%s %s: HTTP %d, credentials refused (elasticsearch.username/password or api_key): %w: %s", method, path, resp.StatusCode, ErrForbidden, short(raw))
	case resp.StatusCode == http.StatusUnauthorized:
		return fmt.Errorf("%s %s: HTTP %d, credentials refused (elasticsearch.username/password or api_key): %s", method, path, resp.StatusCode, short(raw))
	case resp.StatusCode >= 300:
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, short(raw))
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("%s %s: decode reply: %w", method, path, err)
	}
	return nil
}

func short(b []byte) string {
	if len(b) > 500 {
		return string(b[:500]) + "…"
	}
	return string(b)
}

// Hit is one stored document.
type Hit struct {
	Index  string          `json:"_index"`
	ID     string          `json:"_id"`
	Source json.RawMessage `json:"_source"`
	Sort   []any           `json:"sort"`
}

// Search is a query over an index or alias.
type Search struct {
	// Index defaults to the reader's alias.
	Index string
	// Query is the Elasticsearch query (nil: match_all).
	Query map[string]any
	// Sort is the order hits come in; a tiebreaker is added, so paging is
	// stable. Nil: by @timestamp, then event_id.
	Sort []any
	// Source limits the fields returned (nil: all).
	Source []string
}

// Each calls fn for every hit of s, in s.Sort order, however many there
// are: pages of PageSize through a point in time, so documents written
// meanwhile do not shift the pages. fn returning an error stops it.
func (r *Reader) Each(ctx context.Context, s Search, fn func(Hit) error) error {
	index := s.Index
	if index == "" {
		index = r.cfg.Alias
	}
	store, err := r.Store(ctx)
	if err != nil {
		return fmt.Errorf("read %s: %w", index, err)
	}
	api := elastic.PointInTime(store)
	var opened map[string]any
	if err := r.Do(ctx, http.MethodPost, index+"/"+api.OpenPath+"?keep_alive=2m", nil, &opened); err != nil {
		if errors.Is(err, ErrForbidden) {
			// A reader whose privileges are on a filtered alias only (a
			// tenant's auditor, docs/access.md) may not search through a
			// point in time: Elasticsearch authorises that search against
			// the concrete indices. It pages with search_after alone, on
			// event_id (the _id) as the unique tiebreaker.
			return r.page(ctx, index, s, nil, map[string]any{"event_id": "asc"}, fn)
		}
		return fmt.Errorf("open point in time on %s: %w", index, err)
	}
	pit := &pointInTime{}
	pit.ID, _ = opened[api.IDField].(string)
	if pit.ID == "" {
		return fmt.Errorf("open point in time on %s: no %q in the answer", index, api.IDField)
	}
	defer func() {
		// Close it even when ctx ended: a PIT holds segments until it
		// expires.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = r.Do(cctx, http.MethodDelete, api.ClosePath, api.CloseBody(pit.ID), nil)
	}()
	return r.page(ctx, index, s, pit, api.Tiebreaker, fn)
}

type pointInTime struct{ ID string }

// page runs the search_after loop, through pit when there is one.
func (r *Reader) page(ctx context.Context, index string, s Search, pit *pointInTime, tiebreaker map[string]any, fn func(Hit) error) error {
	sort := s.Sort
	if sort == nil {
		sort = []any{map[string]any{"@timestamp": "asc"}, map[string]any{"event_id": "asc"}}
	}
	sort = append(append([]any(nil), sort...), tiebreaker)
	query := s.Query
	if query == nil {
		query = map[string]any{"match_all": map[string]any{}}
	}
	path := index + "/_search"
	if pit != nil {
		path = "_search"
	}
	var after []any
	for {
		body := map[string]any{"size": PageSize, "query": query, "sort": sort, "track_total_hits": false}
		if pit != nil {
			body["pit"] = map[string]any{"id": pit.ID, "keep_alive": "2m"}
		}
		if s.Source != nil {
			body["_source"] = s.Source
		}
		if after != nil {
			body["search_after"] = after
		}
		var res struct {
			PitID string `json:"pit_id"`
			Hits  struct {
				Hits []Hit `json:"hits"`
			} `json:"hits"`
		}
		if err := r.Do(ctx, http.MethodPost, path, body, &res); err != nil {
			return fmt.Errorf("search %s: %w", index, err)
		}
		if pit != nil && res.PitID != "" {
			pit.ID = res.PitID
		}
		for _, h := range res.Hits.Hits {
			if err := fn(h); err != nil {
				return err
			}
		}
		if len(res.Hits.Hits) < PageSize {
			return nil
		}
		after = res.Hits.Hits[len(res.Hits.Hits)-1].Sort
	}
}

// Count is the exact number of documents matching query.
func (r *Reader) Count(ctx context.Context, index string, query map[string]any) (int64, error) {
	if index == "" {
		index = r.cfg.Alias
	}
	body := map[string]any{}
	if query != nil {
		body["query"] = query
	}
	var res struct {
		Count int64 `json:"count"`
	}
	if err := r.Do(ctx, http.MethodPost, index+"/_count", body, &res); err != nil {
		return 0, fmt.Errorf("count %s: %w", index, err)
	}
	return res.Count, nil
}

// Bucket is one composite aggregation bucket.
type Bucket struct {
	Key      map[string]any             `json:"key"`
	DocCount int64                      `json:"doc_count"`
	Aggs     map[string]json.RawMessage `json:"-"`
}

// Composite pages a composite aggregation over query to its last bucket
// (exact: terms, not approximations), with sub-aggregations aggs in each.
func (r *Reader) Composite(ctx context.Context, index string, query map[string]any, sources []any, aggs map[string]any, fn func(Bucket) error) error {
	if index == "" {
		index = r.cfg.Alias
	}
	var after map[string]any
	for {
		comp := map[string]any{"size": 1000, "sources": sources}
		if after != nil {
			comp["after"] = after
		}
		agg := map[string]any{"composite": comp}
		if len(aggs) > 0 {
			agg["aggs"] = aggs
		}
		body := map[string]any{"size": 0, "aggs": map[string]any{"c": agg}}
		if query != nil {
			body["query"] = query
		}
		var res struct {
			Aggregations struct {
				C struct {
					AfterKey map[string]any               `json:"after_key"`
					Buckets  []map[string]json.RawMessage `json:"buckets"`
				} `json:"c"`
			} `json:"aggregations"`
		}
		if err := r.Do(ctx, http.MethodPost, index+"/_search", body, &res); err != nil {
			return fmt.Errorf("aggregate %s: %w", index, err)
		}
		for _, raw := range res.Aggregations.C.Buckets {
			b := Bucket{Aggs: map[string]json.RawMessage{}}
			for k, v := range raw {
				switch k {
				case "key":
					if err := json.Unmarshal(v, &b.Key); err != nil {
						return fmt.Errorf("aggregate %s: bucket key: %w", index, err)
					}
				case "doc_count":
					_ = json.Unmarshal(v, &b.DocCount)
				default:
					b.Aggs[k] = v
				}
			}
			if err := fn(b); err != nil {
				return err
			}
		}
		if len(res.Aggregations.C.Buckets) == 0 || res.Aggregations.C.AfterKey == nil {
			return nil
		}
		after = res.Aggregations.C.AfterKey
	}
}

// DeleteByID deletes hits by index and id with one _bulk and returns the
// server's counts of deleted and not-found (gone meanwhile) items; any
// other item result is an error naming the document. Erasure and retention
// delete this way: neither local distribution has _delete_by_query (it
// lives in the reindex module), while _bulk works on every cluster.
func (r *Reader) DeleteByID(ctx context.Context, hits []Hit) (deleted, notFound int, err error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	for _, h := range hits {
		if err := enc.Encode(map[string]any{"delete": map[string]any{"_index": h.Index, "_id": h.ID}}); err != nil {
			return 0, 0, err
		}
	}
	var res struct {
		Items []map[string]struct {
			Result string          `json:"result"`
			Status int             `json:"status"`
			Error  json.RawMessage `json:"error"`
			ID     string          `json:"_id"`
		} `json:"items"`
	}
	if err := r.Bulk(ctx, "_bulk", b.Bytes(), &res); err != nil {
		return 0, 0, fmt.Errorf("bulk delete of %d documents: %w", len(hits), err)
	}
	var errs []error
	for _, it := range res.Items {
		d := it["delete"]
		switch {
		case d.Result == "deleted":
			deleted++
		case d.Result == "not_found" || d.Status == http.StatusNotFound:
			notFound++
		default:
			errs = append(errs, fmt.Errorf("delete %s: HTTP %d %s", d.ID, d.Status, d.Error))
		}
	}
	if len(res.Items) != len(hits) {
		errs = append(errs, fmt.Errorf("bulk delete: %d answers for %d documents", len(res.Items), len(hits)))
	}
	return deleted, notFound, errors.Join(errs...)
}
