package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/assistlog/assistlog/internal/esread"
)

// Documents are deleted by id with _bulk rather than _delete_by_query: the
// distributions the local stack runs (Elasticsearch's and OpenSearch's
// integ-test zips) lack the reindex module that serves _delete_by_query
// ("no handler found"), while _bulk works on every cluster. Each item's
// result is the server's own count; the index is then refreshed and
// counted again, and what a concurrent write added meanwhile is deleted in
// a further round.

// maxRounds bounds find-delete-count rounds: more means something keeps
// writing the person's events (a shipper still consuming them).
const maxRounds = 5

// bulkSize is the deletions sent in one _bulk request.
const bulkSize = 1000

// StoreErasure is what happened in one index of one store.
type StoreErasure struct {
	Store string `json:"store"` // elasticsearch or opensearch
	URL   string `json:"url"`
	Index string `json:"index"`
	What  string `json:"what"` // events or review labels
	// Matched is the documents found before erasing (a dry run's count).
	Matched int `json:"matched"`
	// Deleted is the sum of the server's "deleted" results; NotFound of
	// its "not_found" ones (gone meanwhile).
	Deleted  int `json:"deleted"`
	NotFound int `json:"not_found,omitempty"`
	// Remaining is the count after the last refresh: 0, or the erasure
	// failed.
	Remaining int    `json:"remaining"`
	Rounds    int    `json:"rounds,omitempty"`
	Note      string `json:"note,omitempty"`
}

func (er *eraser) eraseEvents(ctx context.Context, p *person, rec *Receipt) error {
	var errs []error
	for _, st := range er.stores {
		se := StoreErasure{Store: st.kind, URL: st.url, Index: st.r.Alias(), What: "events", Matched: p.matched[st]}
		if !er.dry {
			er.progress("deleting %d event(s) from %s (%s)", se.Matched, st.kind, st.url)
			if err := er.deleteAll(ctx, st, st.r.Alias(), p.query(er.tenant.Name), &se); err != nil {
				errs = append(errs, fmt.Errorf("%s %s: %w", st.kind, st.url, err))
			}
		}
		rec.Stores = append(rec.Stores, se)
	}
	return errors.Join(errs...)
}

// eraseReviews deletes the conversations' review labels (reviews_index:
// tenant, session_id) in every store that has the index.
func (er *eraser) eraseReviews(ctx context.Context, p *person, rec *Receipt) error {
	idx := er.cfg.ReviewsIndex
	q := and(map[string]any{"term": map[string]any{"tenant": er.tenant.Name}}, terms("session_id", p.sessions...))
	var errs []error
	for _, st := range er.stores {
		se := StoreErasure{Store: st.kind, URL: st.url, Index: idx, What: "review labels"}
		n, err := st.r.Count(ctx, idx, q)
		switch {
		case errors.Is(err, esread.ErrNotFound):
			se.Note = "no such index"
			rec.Stores = append(rec.Stores, se)
			continue
		case err != nil:
			errs = append(errs, fmt.Errorf("%s %s: %w", st.kind, st.url, err))
			continue
		}
		se.Matched = int(n)
		if !er.dry && n > 0 {
			er.progress("deleting %d review label(s) from %s %s", n, st.kind, idx)
			if err := er.deleteAll(ctx, st, idx, q, &se); err != nil {
				errs = append(errs, fmt.Errorf("%s %s: %w", st.kind, st.url, err))
			}
		}
		rec.Stores = append(rec.Stores, se)
	}
	return errors.Join(errs...)
}

// deleteAll deletes every document of index matching q, round after
// round, until a refreshed count finds none.
func (er *eraser) deleteAll(ctx context.Context, st *searchStore, index string, q map[string]any, se *StoreErasure) error {
	for se.Rounds = 1; ; se.Rounds++ {
		var batch []esread.Hit
		flush := func() error {
			if len(batch) == 0 {
				return nil
			}
			d, nf, err := st.r.DeleteByID(ctx, batch)
			se.Deleted += d
			se.NotFound += nf
			batch = batch[:0]
			return err
		}
		err := st.r.Each(ctx, esread.Search{Index: index, Query: q, Sort: []any{}, Source: []string{"tenant"}}, func(h esread.Hit) error {
			batch = append(batch, h)
			if len(batch) == bulkSize {
				return flush()
			}
			return nil
		})
		if err == nil {
			err = flush()
		}
		if errors.Is(err, esread.ErrNotFound) && se.Rounds == 1 {
			se.Note = "no such index or alias"
			return nil // a store that never got the alias holds nothing
		}
		if err != nil {
			return err
		}
		if err := st.r.Do(ctx, http.MethodPost, index+"/_refresh", nil, nil); err != nil {
			return fmt.Errorf("refresh %s: %w", index, err)
		}
		n, err := st.r.Count(ctx, index, q)
		if err != nil {
			return err
		}
		se.Remaining = int(n)
		if n == 0 {
			return nil
		}
		if se.Rounds == maxRounds {
			return fmt.Errorf("%d document(s) still in %s after %d rounds: is a shipper still writing them?", n, index, maxRounds)
		}
		er.progress("%d document(s) appeared in %s meanwhile; deleting them too", n, index)
	}
}
