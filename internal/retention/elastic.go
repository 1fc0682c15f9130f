package retention

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/elastic/go-elasticsearch/v8/esapi"

	"github.com/assistlog/assistlog/internal/elastic"
	"github.com/assistlog/assistlog/internal/esread"
	"github.com/assistlog/assistlog/internal/tenants"
)

// Policy says which events are past retention at one moment.
type Policy struct {
	// Tenants gives each tenant its retention; tenants found in a store
	// but not in the file get its default, counted in UTC.
	Tenants *tenants.Set
	// Only limits the run to one tenant ("" means every tenant found).
	Only string
	// Now is the moment the cutoffs are counted from.
	Now time.Time
}

// Cutoff is the first instant of tenant's events still kept.
func (p Policy) Cutoff(tenant string) (time.Time, tenants.Retention) {
	if t, err := p.Tenants.Get(tenant); err == nil {
		return t.Cutoff(p.Now), t.Kept()
	}
	return p.Tenants.Default().Cutoff(p.Now, time.UTC), p.Tenants.Default()
}

// Action is what a Row did (or, in a dry run, would do).
const (
	// ActionDocuments deletes the tenant's documents past the cutoff one
	// by one (_bulk delete by _id).
	ActionDocuments = "documents"
	// ActionIndex deletes the whole index: everything in it is past every
	// tenant's retention.
	ActionIndex = "index"
)

// Row is one tenant's part of one index.
type Row struct {
	Store, Index, Tenant string
	Retention            tenants.Retention
	Cutoff               time.Time
	// Past is how many documents the server counted past the cutoff.
	Past int64
	// Deleted is how many the server answered it deleted (0 in a dry run).
	Deleted int64
	Action  string
}

// Target is one store's events alias and, optionally, its reviews index.
type Target struct {
	// Name labels the store in the report (elasticsearch, opensearch).
	Name string
	// Config reaches the store; its Alias names the events.
	Config elastic.Config
	// ReviewsIndex holds the review labels (audit review import): a label
	// goes once its whole week is past the tenant's retention. "" skips it.
	ReviewsIndex string
}

// Progress receives one line per step, for stderr.
type Progress func(format string, args ...any)

// Apply deletes (dryRun: counts) what is past retention in t's events
// alias and reviews index. Whole monthly indices go in one request once
// every tenant in them is past its retention; otherwise each tenant's
// old documents are deleted by id. Counts come from the server's answers.
func Apply(ctx context.Context, t Target, p Policy, dryRun bool, progress Progress) ([]Row, error) {
	if progress == nil {
		progress = func(string, ...any) {}
	}
	s, err := newStore(t.Config)
	if err != nil {
		return nil, err
	}
	indices, err := s.aliasIndices(ctx, t.Config.Alias)
	if err != nil {
		return nil, err
	}
	var rows []Row
	for _, idx := range indices {
		r, err := s.applyIndex(ctx, t.Name, idx, "@timestamp", 0, true, p, dryRun, progress)
		rows = append(rows, r...)
		if err != nil {
			return rows, err
		}
	}
	if t.ReviewsIndex != "" {
		// A label is about one conversation of its week: it goes when the
		// whole week (week_start + 7 days) is past the cutoff.
		r, err := s.applyIndex(ctx, t.Name, t.ReviewsIndex, "week_start", 7*24*time.Hour, false, p, dryRun, progress)
		rows = append(rows, r...)
		if err != nil && !errors.Is(err, esread.ErrNotFound) {
			return rows, err
		}
	}
	return rows, nil
}

// store is one cluster's reader plus the raw API for bulk and index deletes.
type store struct {
	r   *esread.Reader
	api *esapi.API
}

func newStore(cfg elastic.Config) (*store, error) {
	r, err := esread.New(cfg, nil)
	if err != nil {
		return nil, err
	}
	tp, err := elastic.NewTransport(cfg)
	if err != nil {
		return nil, err
	}
	return &store{r: r, api: esapi.New(tp)}, nil
}

// aliasIndices lists the indices behind alias, oldest name first; none
// when the alias does not exist yet.
func (s *store) aliasIndices(ctx context.Context, alias string) ([]string, error) {
	var res map[string]any
	if err := s.r.Do(ctx, http.MethodGet, "_alias/"+alias, nil, &res); err != nil {
		if errors.Is(err, esread.ErrNotFound) {
			return nil, nil
		}
		return nil, fmt.Errorf("list the indices of %s: %w", alias, err)
	}
	out := make([]string, 0, len(res))
	for idx := range res {
		out = append(out, idx)
	}
	sort.Strings(out)
	return out, nil
}

// tenantSpan is one tenant's documents in an index: how many, and the
// newest time field value (dated false when none has the field: such an
// index is never deleted whole).
type tenantSpan struct {
	tenant string
	count  int64
	newest time.Time
	dated  bool
}

// spans reads which tenants an index holds and each one's newest
// document (exact: a composite aggregation, paged).
func (s *store) spans(ctx context.Context, index, field string) ([]tenantSpan, error) {
	var out []tenantSpan
	err := s.r.Composite(ctx, index, nil,
		[]any{map[string]any{"tenant": map[string]any{"terms": map[string]any{"field": "tenant"}}}},
		map[string]any{"newest": map[string]any{"max": map[string]any{"field": field}}},
		func(b esread.Bucket) error {
			var newest struct {
				Value *float64 `json:"value"`
			}
			if err := json.Unmarshal(b.Aggs["newest"], &newest); err != nil {
				return fmt.Errorf("newest %s in %s: %w", field, index, err)
			}
			name, _ := b.Key["tenant"].(string)
			sp := tenantSpan{tenant: name, count: b.DocCount, dated: newest.Value != nil}
			if sp.dated {
				sp.newest = time.UnixMilli(int64(*newest.Value))
			}
			out = append(out, sp)
			return nil
		})
	return out, err
}

// applyIndex handles one index: field is the time field, grace how long
// after field's value a document still counts as inside (a review week);
// wholeOK allows deleting the index itself (a monthly events index, not
// the one reviews index).
func (s *store) applyIndex(ctx context.Context, storeName, index, field string, grace time.Duration, wholeOK bool, p Policy, dryRun bool, progress Progress) ([]Row, error) {
	spans, err := s.spans(ctx, index, field)
	if err != nil {
		return nil, err
	}
	// A document without a tenant is in no bucket: then the index is not
	// deleted whole, whatever the buckets say.
	var inBuckets int64
	for _, sp := range spans {
		inBuckets += sp.count
	}
	total, err := s.r.Count(ctx, index, nil)
	if err != nil {
		return nil, err
	}
	type part struct {
		Row
		before time.Time // documents with field < before are past retention
		all    bool      // every document of the tenant here is past it
	}
	var parts []part
	whole := wholeOK && len(spans) > 0 && inBuckets == total
	for _, sp := range spans {
		if p.Only != "" && sp.tenant != p.Only {
			whole = false
			continue
		}
		cutoff, keep := p.Cutoff(sp.tenant)
		before := cutoff.Add(-grace)
		all := sp.dated && sp.newest.Before(before)
		whole = whole && all
		parts = append(parts, part{Row: Row{Store: storeName, Index: index, Tenant: sp.tenant, Retention: keep, Cutoff: cutoff}, before: before, all: all})
	}
	if whole && !dryRun {
		// A late event written since the aggregation (a replay into an old
		// month) would go unreported with the index: then this run deletes
		// document by document, and a later one the index.
		if now, err := s.r.Count(ctx, index, nil); err != nil {
			return nil, err
		} else if now != total {
			whole = false
		}
	}
	rows := make([]Row, 0, len(parts))
	if whole {
		// Every tenant's newest document here is past its cutoff: the
		// index goes in one request instead of document by document.
		for _, pt := range parts {
			pt.Action = ActionIndex
			for _, sp := range spans {
				if sp.tenant == pt.Tenant {
					pt.Past = sp.count
				}
			}
			rows = append(rows, pt.Row)
		}
		progress("%s %s: every tenant past retention, %s the index", storeName, index, verb(dryRun, "deleting", "would delete"))
		if !dryRun {
			if err := s.deleteIndex(ctx, index); err != nil {
				return nil, err
			}
			for i := range rows {
				rows[i].Deleted = rows[i].Past
			}
		}
		return rows, nil
	}
	for _, pt := range parts {
		q := map[string]any{"bool": map[string]any{"filter": []any{
			map[string]any{"term": map[string]any{"tenant": pt.Tenant}},
			map[string]any{"range": map[string]any{field: map[string]any{"lt": pt.before.UTC().Format(time.RFC3339Nano)}}},
		}}}
		pt.Action = ActionDocuments
		n, err := s.r.Count(ctx, index, q)
		if err != nil {
			return rows, err
		}
		pt.Past = n
		if n == 0 {
			continue
		}
		progress("%s %s: %s: %d documents before %s, %s", storeName, index, pt.Tenant, n, pt.Cutoff.Format(time.RFC3339), verb(dryRun, "deleting", "would delete"))
		if !dryRun {
			if pt.Deleted, err = s.deleteMatching(ctx, index, field, q); err != nil {
				return append(rows, pt.Row), err
			}
		}
		rows = append(rows, pt.Row)
	}
	if !dryRun && len(rows) > 0 {
		if err := s.r.Do(ctx, http.MethodPost, index+"/_refresh", nil, nil); err != nil {
			return rows, fmt.Errorf("refresh %s: %w", index, err)
		}
	}
	return rows, nil
}

func verb(dryRun bool, do, would string) string {
	if dryRun {
		return would
	}
	return do
}

// bulkBatch bounds one _bulk delete request (ids only, small lines).
const bulkBatch = 5000

// deleteMatching deletes the documents of q by id, through a point in time
// (neither this distribution of Elasticsearch nor OpenSearch's integ-test
// build has _delete_by_query, which lives in the reindex module), and
// returns how many the server answered "deleted" (a "not_found" was
// deleted by someone else meanwhile).
func (s *store) deleteMatching(ctx context.Context, index, field string, q map[string]any) (int64, error) {
	var deleted int64
	var batch []esread.Hit
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		d, _, err := s.r.DeleteByID(ctx, batch)
		deleted += int64(d)
		batch = batch[:0]
		return err
	}
	err := s.r.Each(ctx, esread.Search{Index: index, Query: q, Sort: []any{map[string]any{field: "asc"}}, Source: []string{"tenant"}}, func(h esread.Hit) error {
		batch = append(batch, h)
		if len(batch) == bulkBatch {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return deleted, fmt.Errorf("delete past-retention documents of %s: %w", index, err)
	}
	return deleted, nil
}

func (s *store) deleteIndex(ctx context.Context, index string) error {
	res, err := s.api.Indices.Delete([]string{index}, s.api.Indices.Delete.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("delete index %s: %w", index, err)
	}
	defer res.Body.Close()
	if res.IsError() {
		raw, _ := io.ReadAll(res.Body)
		return fmt.Errorf("delete index %s: %s: %s", index, res.Status(), short(raw))
	}
	return nil
}

func short(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 500 {
		return s[:500] + "…"
	}
	return s
}
