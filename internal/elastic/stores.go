package elastic

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Stores writes the same documents to several stores (Elasticsearch and
// OpenSearch, say, during a move between them) with the guarantees of one:
// a write returns only when every store acknowledged every document or
// refused it for good, so the caller commits its offsets after all of them.
// Each store keeps its own alias; documents are addressed to the first
// store's indices and renamed for the others.
type Stores struct {
	ws []*Writer
}

// NewStores groups writers; the first is the one IndexFor names indices for.
func NewStores(ws ...*Writer) (*Stores, error) {
	if len(ws) == 0 {
		return nil, errors.New("search stores: at least one is required")
	}
	return &Stores{ws: ws}, nil
}

// IndexFor is the first store's monthly index of t.
func (s *Stores) IndexFor(t time.Time) string { return s.ws[0].IndexFor(t) }

// each runs fn on every store at once and joins the errors, naming the store.
func (s *Stores) each(fn func(i int, w *Writer) error) error {
	errs := make([]error, len(s.ws))
	var wg sync.WaitGroup
	for i, w := range s.ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(i, w); err != nil {
				errs[i] = fmt.Errorf("%s %s: %w", w.Destination(), w.cfg.URLs[0], err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Setup installs the index template in every store.
func (s *Stores) Setup(ctx context.Context) error {
	return s.each(func(_ int, w *Writer) error { return w.Setup(ctx) })
}

// Ping checks that every store answers.
func (s *Stores) Ping(ctx context.Context) error {
	return s.each(func(_ int, w *Writer) error { return w.Ping(ctx) })
}

// WriteReport writes docs to every store. Failures are the union (an
// event one store refuses is dead-lettered, and a replay of it goes to all
// again: creates are idempotent); Existing is the union too, so that an
// event any store held before counts as a replay, for which Loki is asked
// whether it holds the line rather than sent it blindly.
func (s *Stores) WriteReport(ctx context.Context, docs []Doc) (Report, error) {
	if len(s.ws) == 1 {
		return s.ws[0].WriteReport(ctx, docs)
	}
	reps := make([]Report, len(s.ws))
	err := s.each(func(i int, w *Writer) error {
		var err error
		reps[i], err = w.WriteReport(ctx, s.rename(w, docs))
		return err
	})
	if err != nil {
		return Report{Existing: map[string]bool{}}, err
	}
	out := Report{Existing: map[string]bool{}}
	failed := map[string]bool{}
	for _, r := range reps {
		for id := range r.Existing {
			out.Existing[id] = true
		}
		for _, f := range r.Failures {
			if !failed[f.Doc.ID] {
				failed[f.Doc.ID] = true
				out.Failures = append(out.Failures, f)
			}
		}
	}
	return out, nil
}

// rename addresses docs to w's alias instead of the first store's.
func (s *Stores) rename(w *Writer, docs []Doc) []Doc {
	from, to := s.ws[0].cfg.Alias, w.cfg.Alias
	if from == to {
		return docs
	}
	out := make([]Doc, len(docs))
	for i, d := range docs {
		d.Index = to + strings.TrimPrefix(d.Index, from)
		out[i] = d
	}
	return out
}

// FillSession fills the fields into one conversation's documents in every
// store and returns how many the first store updated.
func (s *Stores) FillSession(ctx context.Context, tenant, session, missing string, fields map[string]any) (int, error) {
	counts := make([]int, len(s.ws))
	err := s.each(func(i int, w *Writer) error {
		var err error
		counts[i], err = w.FillSession(ctx, tenant, session, missing, fields)
		return err
	})
	return counts[0], err
}
