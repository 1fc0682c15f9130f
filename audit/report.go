package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/assistlog/assistlog/internal/esread"
	"github.com/assistlog/assistlog/internal/kpi"
	"github.com/assistlog/assistlog/internal/period"
	"github.com/assistlog/assistlog/internal/tenants"
)

// reportHooks connect the report to what other audit commands know: the
// Bitrix24 reconciliation and the reviewers' labels. They are wired in
// commands(); a nil hook renders its section as "not configured".
type reportHooks struct {
	// reconcile counts the windows' leads and those missing in the CRM;
	// (nil, nil) means the CRM is not configured.
	reconcile func(ctx context.Context, e *env, ws []Window) (*reconcileSummary, error)
	// reviewCauses counts the windows' reviewed conversations by cause;
	// an empty list means no reviews in the period.
	reviewCauses func(ctx context.Context, e *env, ws []Window) ([]reviewCause, error)
}

// reconcileSummary is the report's one line of reconciliation.
type reconcileSummary struct {
	Logged, InCRM, Lost int64
}

// reviewCause is one cause the reviewers gave and how many times.
type reviewCause struct {
	Cause string
	Count int64
}

// reportOpts are report's own flags.
type reportOpts struct {
	common
	week  string
	weeks int
	out   string
	lang  string
}

const reportHelp = `audit report — the weekly owner report: the week's KPIs against the week
before and a trend, the funnel, channels, no-shows, the Bitrix24
reconciliation, low-confidence intents, review causes and what to look at next.

Usage: audit report [--week 2026-W47] [--tenant NAME] [--out FILE] [--lang ru|en] [--format html|text]

The numbers are audit kpi's (docs/kpis.md), for the ISO week in the
tenant's time zone. --format html (default) writes one self-contained
HTML file (charts as inline SVG, nothing fetched; readable on a phone);
--format text writes a short summary for a Telegram message. Without
--out the report goes to standard output.

Examples:
  audit report --week 2026-W47 --tenant salon-aurora --out report.html
  audit report --week 2026-W47 --tenant salon-aurora --format text
  audit report --tenant salon-aurora --lang en --out report-en.html   # last full week

Flags:
`

// runReport is `audit report`.
func runReport(ctx context.Context, a *app, args []string, hooks reportHooks) error {
	var o reportOpts
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	o.common.flags(fs, false, []string{"html", "text"})
	// The shared --format flag, with this command's formats and default.
	ff := fs.Lookup("format")
	ff.Usage, ff.DefValue = "html (one self-contained file) or text (for a Telegram message)", "html"
	_ = ff.Value.Set("html")
	fs.StringVar(&o.week, "week", "", "the ISO week, e.g. 2026-W47 (default: the last full week)")
	fs.IntVar(&o.weeks, "weeks", 12, "weeks in the trend, ending with --week (8–52)")
	fs.StringVar(&o.out, "out", "", "write to this file (default: standard output)")
	fs.StringVar(&o.lang, "lang", "ru", "ru or en")
	fs.Usage = func() { fmt.Fprint(a.stderr, reportHelp); fs.PrintDefaults() }
	pos, help, err := parse(fs, args)
	if help {
		return nil
	}
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("report takes no arguments, got %q", pos)
	}
	if o.common.format != "html" && o.common.format != "text" {
		return fmt.Errorf("--format: html or text, not %q", o.common.format)
	}
	if o.weeks < 2 || o.weeks > 52 {
		return fmt.Errorf("--weeks: between 2 and 52, got %d", o.weeks)
	}
	loc, err := newLocale(o.lang)
	if err != nil {
		return err
	}
	e, err := o.common.load(true)
	if err != nil {
		return err
	}
	m, err := buildReport(ctx, e, o, a.now(), hooks, loc, a.stderr)
	if err != nil {
		return err
	}
	var w io.Writer = a.stdout
	var f *os.File
	if o.out != "" {
		if f, err = os.CreateTemp(filepath.Dir(o.out), ".report-*"); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
		defer os.Remove(f.Name())
		w = f
	}
	if o.common.format == "text" {
		err = m.writeText(w)
	} else {
		err = m.writeHTML(w)
	}
	if err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if f != nil {
		// Written whole, then renamed: a half-written report never
		// replaces last week's.
		if err := f.Close(); err != nil {
			return fmt.Errorf("write report %s: %w", o.out, err)
		}
		if err := os.Chmod(f.Name(), 0o644); err != nil {
			return fmt.Errorf("write report %s: %w", o.out, err)
		}
		if err := os.Rename(f.Name(), o.out); err != nil {
			return fmt.Errorf("write report %s: %w", o.out, err)
		}
		fmt.Fprintf(a.stderr, "report written to %s\n", o.out)
	}
	return nil
}

// trendWeek is one week of the trend.
type trendWeek struct {
	Week string
	From time.Time
	Row  kpi.Row
}

// intentCount is one intent's low-confidence turns.
type intentCount struct {
	Intent string
	Turns  int64
}

// advice is one "what to look at next" item; Rule names the rule that
// produced it.
type advice struct {
	Rule, Text string
}

// reportModel is everything the report shows; both formats render it.
type reportModel struct {
	loc              locale
	Title            string
	Week, PrevWeek   string
	From, To         time.Time // the week, in the (first) tenant's zone
	Generated        time.Time
	Cur, Prev        kpi.Row
	Trend            []trendWeek
	Channels         []kpi.Row
	LowConf          []intentCount
	LowConfThreshold float64
	Reconcile        *reconcileSummary
	ReconcileOn      bool
	ReconcileErr     string
	Reviews          []reviewCause
	ReviewsOn        bool
	ReviewsErr       string
	Next             []advice
}

// buildReport gathers the numbers: kpi.Compute for the week (by channel),
// the previous week and the trend (by week) — the same computation as
// audit kpi — then the low-confidence intents and the hooks.
func buildReport(ctx context.Context, e *env, o reportOpts, now time.Time, hooks reportHooks, loc locale, progress io.Writer) (*reportModel, error) {
	ts, err := e.tenants.Select(o.tenant)
	if err != nil {
		return nil, err
	}
	week := o.week
	if week == "" {
		week = period.WeekOf(now.AddDate(0, 0, -7), ts[0].Location())
	}
	// weekWindows is each tenant's week `back` weeks before the report's.
	weekWindows := func(back, span int) ([]Window, error) {
		out := make([]Window, 0, len(ts))
		for _, t := range ts {
			r, err := period.Week(week, t.Location())
			if err != nil {
				return nil, err
			}
			from := r.From.AddDate(0, 0, -7*back)
			out = append(out, Window{Tenant: t, Range: period.Range{From: from, To: from.AddDate(0, 0, 7*span),
				Label: period.WeekOf(from, t.Location())}})
		}
		return out, nil
	}
	cur, err := weekWindows(0, 1)
	if err != nil {
		return nil, err
	}
	// The week parsed above, so these cannot fail.
	prev, _ := weekWindows(1, 1)
	trend, _ := weekWindows(o.weeks-1, o.weeks)

	m := &reportModel{loc: loc, Title: title(ts, e.tenants, loc), Week: week, PrevWeek: prev[0].Label,
		From: cur[0].From, To: cur[0].To, Generated: now.In(ts[0].Location()), LowConfThreshold: e.cfg.LowConfidence}

	fmt.Fprintf(progress, "report %s: computing KPIs…\n", week)
	var groups []kpi.Row
	if m.Cur, m.Channels, err = kpi.Compute(ctx, e.es, kpi.Request{Windows: kpiWindows(cur), By: kpi.ByChannel}); err != nil {
		return nil, fmt.Errorf("report: KPIs of %s: %w", week, err)
	}
	if m.Prev, _, err = kpi.Compute(ctx, e.es, kpi.Request{Windows: kpiWindows(prev)}); err != nil {
		return nil, fmt.Errorf("report: KPIs of %s: %w", m.PrevWeek, err)
	}
	if _, groups, err = kpi.Compute(ctx, e.es, kpi.Request{Windows: kpiWindows(trend), By: kpi.ByWeek}); err != nil {
		return nil, fmt.Errorf("report: KPIs of the %d weeks to %s: %w", o.weeks, week, err)
	}
	byWeek := map[string]kpi.Row{}
	for _, g := range groups {
		byWeek[g.Key] = g
	}
	for i := o.weeks - 1; i >= 0; i-- {
		w, _ := weekWindows(i, 1)
		// A week without events is a row of zeros (ratios "—"), not a gap
		// in the axis.
		r := byWeek[w[0].Label]
		r.Key = w[0].Label
		m.Trend = append(m.Trend, trendWeek{Week: w[0].Label, From: w[0].From, Row: r})
	}

	fmt.Fprintf(progress, "report %s: low-confidence intents…\n", week)
	if m.LowConf, err = lowConfidence(ctx, e, cur); err != nil {
		return nil, err
	}
	if hooks.reconcile != nil {
		m.ReconcileOn = true
		fmt.Fprintf(progress, "report %s: reconciling with the CRM…\n", week)
		m.Reconcile, err = hooks.reconcile(ctx, e, cur)
		switch {
		case err != nil:
			// The report still goes out; the line says why it is missing.
			m.ReconcileErr = err.Error()
		case m.Reconcile == nil:
			m.ReconcileOn = false
		}
	}
	if hooks.reviewCauses != nil {
		m.ReviewsOn = true
		if m.Reviews, err = hooks.reviewCauses(ctx, e, cur); err != nil {
			m.ReviewsErr = err.Error()
		}
	}
	m.Next = nextSteps(m)
	return m, nil
}

// title names the report's business (or businesses).
func title(ts []tenants.Tenant, all *tenants.Set, loc locale) string {
	if len(ts) == 1 {
		return ts[0].Title
	}
	if len(ts) == len(all.Names()) {
		if loc.lang == "ru" {
			return "Все компании"
		}
		return "All businesses"
	}
	s := ""
	for i, t := range ts {
		if i > 0 {
			s += ", "
		}
		s += t.Title
	}
	return s
}

// kpiWindows converts the audit windows into kpi's.
func kpiWindows(ws []Window) []kpi.Window {
	out := make([]kpi.Window, 0, len(ws))
	for _, w := range ws {
		out = append(out, kpi.Window{Tenant: w.Tenant.Name, Loc: w.Tenant.Location(), From: w.From, To: w.To})
	}
	return out
}

// lowConfidence counts the windows' turns classified below the configured
// confidence, per intent, most first: an exact composite aggregation.
func lowConfidence(ctx context.Context, e *env, ws []Window) ([]intentCount, error) {
	q := and(windowFilter(ws, ""), map[string]any{"range": map[string]any{"confidence": map[string]any{"lt": e.cfg.LowConfidence}}})
	var out []intentCount
	src := []any{map[string]any{"intent": map[string]any{"terms": map[string]any{"field": "intent", "missing_bucket": true}}}}
	err := e.es.Composite(ctx, "", q, src, nil, func(b esread.Bucket) error {
		name, _ := b.Key["intent"].(string)
		if name == "" {
			name = "—"
		}
		out = append(out, intentCount{Intent: name, Turns: b.DocCount})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("report: low-confidence turns by intent: %w", err)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Turns != out[j].Turns {
			return out[i].Turns > out[j].Turns
		}
		return out[i].Intent < out[j].Intent
	})
	return out, nil
}
