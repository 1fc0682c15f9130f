package main

import (
	"context"
	"io"
	"sort"

	"github.com/assistlog/assistlog/internal/period"
)

// wiredReportHooks connects the report to reconcile and review: the same
// code paths as `audit reconcile` and `audit review summary`, so the
// report's lines equal theirs.
func wiredReportHooks() reportHooks {
	return reportHooks{reconcile: reportReconcile, reviewCauses: reportReviewCauses}
}

// reportReconcile runs the reconciliation over the report's windows; a
// config without a portal means the CRM is not configured.
func reportReconcile(ctx context.Context, e *env, ws []Window) (*reconcileSummary, error) {
	if err := e.cfg.CRMError(); err != nil {
		return nil, err
	}
	if b := e.cfg.CRM.Bitrix24; b.WebhookURL == "" && b.OAuthURL == "" {
		return nil, nil
	}
	r, err := newReconciler(e, ws, onlyTenant(ws), defaultReconcileSlack, io.Discard)
	if err != nil {
		return nil, err
	}
	rep, err := r.run(ctx)
	if err != nil {
		return nil, err
	}
	return &reconcileSummary{Logged: int64(rep.Total.Logged), InCRM: int64(rep.Total.InCRM), Lost: int64(rep.Total.Lost)}, nil
}

// reportReviewCauses sums the reviewers' causes over the windows' weeks.
func reportReviewCauses(ctx context.Context, e *env, ws []Window) ([]reviewCause, error) {
	seen := map[string]bool{}
	var weeks []string
	for _, w := range ws {
		wk := period.WeekOf(w.From, w.Tenant.Location())
		if !seen[wk] {
			seen[wk] = true
			weeks = append(weeks, wk)
		}
	}
	byWeek, err := reviewCauses(ctx, e, weeks, onlyTenant(ws))
	if err != nil {
		return nil, err
	}
	sum := map[string]int64{}
	for _, causes := range byWeek {
		for c, n := range causes {
			sum[c] += int64(n)
		}
	}
	var out []reviewCause
	for c, n := range sum {
		if n > 0 {
			out = append(out, reviewCause{Cause: c, Count: n})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Cause < out[j].Cause
	})
	return out, nil
}

// onlyTenant is the windows' tenant when there is one, else "" (all).
func onlyTenant(ws []Window) string {
	if len(ws) == 1 {
		return ws[0].Tenant.Name
	}
	return ""
}
