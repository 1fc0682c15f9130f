package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strconv"
	"time"

	"github.com/assistlog/assistlog/internal/esread"
	"github.com/assistlog/assistlog/internal/output"
	"github.com/assistlog/assistlog/internal/period"
)

const reviewSummaryHelp = `audit review summary — the review causes per week and per intent.

Usage: audit review summary [--weeks 8] [--until 2026-W47] [--tenant NAME] [--threshold 0.6] [--format F]

For each of the last --weeks ISO weeks up to --until (default: this week, in the tenants' zone):
how many conversations had a turn below the threshold (low_conversations), how many were
reviewed, and the causes the reviewers found; then the same per intent (the intent of each
reviewed conversation's least confident turn). Fewer nlp_miss for an intent after a retraining,
or fewer bad_scenario after a script change, is the fix working. Weeks without reviews show 0.

Table, Markdown and JSON give both parts; --format csv gives the part chosen with --by.

Examples:
  audit review summary
  audit review summary --weeks 12 --tenant salon-aurora --format md
  audit review summary --by intent --format csv > causes-by-intent.csv

Flags:
`

func runReviewSummary(ctx context.Context, a *app, args []string) error {
	var c common
	fset := flag.NewFlagSet("review summary", flag.ContinueOnError)
	fset.SetOutput(a.stderr)
	c.flags(fset, false, nil)
	nWeeks := fset.Int("weeks", 8, "how many weeks")
	until := fset.String("until", "", "the last week, e.g. 2026-W47 (default: the current week)")
	thr := fset.String("threshold", "", "a turn below this confidence is low (default: low_confidence from the config)")
	by := fset.String("by", "week", "what --format csv writes: week or intent")
	fset.Usage = func() { fmt.Fprint(a.stderr, reviewSummaryHelp); fset.PrintDefaults() }
	pos, help, err := parse(fset, args)
	if help {
		return nil
	}
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("audit review summary takes no arguments, got %q", pos)
	}
	if err := output.CheckFormat(c.format, nil); err != nil {
		return err
	}
	if *nWeeks < 1 {
		return fmt.Errorf("--weeks: at least 1, got %d", *nWeeks)
	}
	if *by != "week" && *by != "intent" {
		return fmt.Errorf("--by: week or intent, not %q", *by)
	}
	e, err := c.load(true)
	if err != nil {
		return err
	}
	threshold, err := thresholdValue(*thr, e.cfg)
	if err != nil {
		return err
	}
	weeks, err := weekList(e, c.tenant, *until, *nWeeks, a.now())
	if err != nil {
		return err
	}
	causes, err := reviewCauses(ctx, e, weeks, c.tenant)
	if err != nil {
		return err
	}
	byIntent, err := reviewIntentCauses(ctx, e, weeks, c.tenant)
	if err != nil {
		return err
	}
	weekT := output.Table{Columns: append([]string{"week", "low_conversations", "reviewed"}, reviewCausesList...)}
	for _, w := range weeks {
		var cc common
		cc.tenant = c.tenant
		ws, err := weekWindows(&cc, e, w)
		if err != nil {
			return err
		}
		low, err := countLowConversations(ctx, e, ws, threshold)
		if err != nil {
			return err
		}
		row := []string{w, strconv.Itoa(low), strconv.Itoa(sum(causes[w]))}
		for _, cause := range reviewCausesList {
			row = append(row, strconv.Itoa(causes[w][cause]))
		}
		weekT.Add(row...)
	}
	intentT := output.Table{Columns: append([]string{"intent", "week", "reviewed"}, reviewCausesList...)}
	intents := make([]string, 0, len(byIntent))
	for in := range byIntent {
		intents = append(intents, in)
	}
	sort.Strings(intents)
	for _, in := range intents {
		for _, w := range weeks {
			m := byIntent[in][w]
			if len(m) == 0 {
				continue
			}
			row := []string{in, w, strconv.Itoa(sum(m))}
			for _, cause := range reviewCausesList {
				row = append(row, strconv.Itoa(m[cause]))
			}
			intentT.Add(row...)
		}
	}
	if len(causes) == 0 {
		fmt.Fprintf(a.stderr, "no review labels for %s..%s in %s yet (audit review sample, then import)\n", weeks[0], weeks[len(weeks)-1], e.cfg.ReviewsIndex)
	}
	return writeReviewSummary(a.stdout, c.format, *by, weekT, intentT)
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// weekList is n ISO weeks ending with until (default: the week of now in
// the tenant's zone, or the zone most tenants share).
func weekList(e *env, tenant, until string, n int, now time.Time) ([]string, error) {
	ts, err := e.tenants.Select(tenant)
	if err != nil {
		return nil, err
	}
	zones := map[string]int{}
	loc := ts[0].Location()
	for _, t := range ts {
		zones[t.TZ]++
		if zones[t.TZ] > zones[loc.String()] {
			loc = t.Location()
		}
	}
	var last period.Range
	if until == "" {
		until = period.WeekOf(now, loc)
	}
	if last, err = period.Week(until, loc); err != nil {
		return nil, fmt.Errorf("--until: %w", err)
	}
	weeks := make([]string, n)
	for i := 0; i < n; i++ {
		weeks[n-1-i] = period.WeekOf(last.From.AddDate(0, 0, -7*i), loc)
	}
	return weeks, nil
}

// reviewCauses counts the stored review labels per week and cause, for
// the given ISO weeks and tenant ("" = all). No reviews index yet means
// no labels, not an error. The owner's weekly report uses it.
func reviewCauses(ctx context.Context, e *env, weeks []string, tenant string) (map[string]map[string]int, error) {
	out := map[string]map[string]int{}
	sources := []any{
		map[string]any{"week": map[string]any{"terms": map[string]any{"field": "week"}}},
		map[string]any{"cause": map[string]any{"terms": map[string]any{"field": "cause"}}},
	}
	err := e.es.Composite(ctx, e.cfg.ReviewsIndex, reviewFilter(weeks, tenant), sources, nil, func(b esread.Bucket) error {
		w, _ := b.Key["week"].(string)
		c, _ := b.Key["cause"].(string)
		if out[w] == nil {
			out[w] = map[string]int{}
		}
		out[w][c] += int(b.DocCount)
		return nil
	})
	if errors.Is(err, esread.ErrNotFound) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the review labels: %w", err)
	}
	return out, nil
}

// reviewIntentCauses is intent → week → cause → labels.
func reviewIntentCauses(ctx context.Context, e *env, weeks []string, tenant string) (map[string]map[string]map[string]int, error) {
	out := map[string]map[string]map[string]int{}
	sources := []any{
		map[string]any{"intent": map[string]any{"terms": map[string]any{"field": "intent"}}},
		map[string]any{"week": map[string]any{"terms": map[string]any{"field": "week"}}},
		map[string]any{"cause": map[string]any{"terms": map[string]any{"field": "cause"}}},
	}
	err := e.es.Composite(ctx, e.cfg.ReviewsIndex, reviewFilter(weeks, tenant), sources, nil, func(b esread.Bucket) error {
		in, _ := b.Key["intent"].(string)
		w, _ := b.Key["week"].(string)
		c, _ := b.Key["cause"].(string)
		if out[in] == nil {
			out[in] = map[string]map[string]int{}
		}
		if out[in][w] == nil {
			out[in][w] = map[string]int{}
		}
		out[in][w][c] += int(b.DocCount)
		return nil
	})
	if errors.Is(err, esread.ErrNotFound) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the review labels: %w", err)
	}
	return out, nil
}

func reviewFilter(weeks []string, tenant string) map[string]any {
	q := []map[string]any{terms("week", weeks...)}
	if tenant != "" {
		q = append(q, terms("tenant", tenant))
	}
	return and(q...)
}

// countLowConversations is the exact number of conversations with a turn
// below threshold in the windows.
func countLowConversations(ctx context.Context, e *env, ws []Window, threshold float64) (int, error) {
	n := 0
	sources := []any{
		map[string]any{"t": map[string]any{"terms": map[string]any{"field": "tenant"}}},
		map[string]any{"s": map[string]any{"terms": map[string]any{"field": "session_id"}}},
	}
	err := e.es.Composite(ctx, "", and(windowFilter(ws, ""), lowQuery(threshold)), sources, nil, func(esread.Bucket) error {
		n++
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("count the conversations below %g: %w", threshold, err)
	}
	return n, nil
}

// writeReviewSummary: both tables (table, md, json) or the --by one (csv).
func writeReviewSummary(w io.Writer, format, by string, weekT, intentT output.Table) error {
	switch format {
	case "csv":
		if by == "intent" {
			return intentT.Write(w, format)
		}
		return weekT.Write(w, format)
	case "json":
		return output.WriteJSON(w, map[string]any{"by_week": weekT.Records(), "by_intent": intentT.Records()})
	}
	h1, h2 := "Причины по неделям\n\n", "\nПо интентам\n\n"
	if format == "md" {
		h1, h2 = "## Причины по неделям\n\n", "\n## По интентам\n\n"
	}
	io.WriteString(w, h1)
	if err := weekT.Write(w, format); err != nil {
		return err
	}
	io.WriteString(w, h2)
	return intentT.Write(w, format)
}
