// Package retention turns the tenants file's retention into what each
// store needs: the deletions in Elasticsearch/OpenSearch (Apply) and
// Loki's compactor limits (LokiLimits). One policy, read from one file,
// so a tenant's events leave every store on the same schedule.
package retention

import (
	"fmt"
	"strings"
	"time"

	"github.com/assistlog/assistlog/internal/tenants"
)

// LokiMinimum is the shortest retention Loki's compactor accepts.
const LokiMinimum = 24 * time.Hour

// LokiPeriod is a retention as Loki's fixed period: Loki counts back from
// now in hours, not calendar months from the tenant's midnight, so the
// longest span the calendar retention can reach back is rounded UP to
// whole days. Loki then never deletes an entry Elasticsearch still keeps;
// it keeps at most two days longer.
func LokiPeriod(r tenants.Retention) time.Duration {
	days := (r.MaxSpan() + 24*time.Hour - 1) / (24 * time.Hour)
	return max(time.Duration(days)*24*time.Hour, LokiMinimum)
}

// capped is period p, no longer than limit (0: no limit). A Loki that
// keeps logs for less than any tenant's retention (an operations view of a
// month, say) keeps its own shorter period: the rules only ever shorten.
func capped(p, limit time.Duration) time.Duration {
	if limit > 0 && p > limit {
		return limit
	}
	return p
}

// hours formats a period the way Loki's config reads it.
func hours(d time.Duration) string { return fmt.Sprintf("%dh", int64(d/time.Hour)) }

// LokiLimits renders the lines under Loki's limits_config (two-space
// indented): retention_period is the file's default, for streams of
// tenants the file does not list, and LokiStreams' rules; limit caps
// every period (0: none).
func LokiLimits(s *tenants.Set, limit time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  # Rendered from the tenants file by `audit retention loki-config`:\n")
	fmt.Fprintf(&b, "  # calendar retention rounded up to whole days (never earlier than Elasticsearch).\n")
	fmt.Fprintf(&b, "  retention_period: %s # default %s\n", hours(capped(LokiPeriod(s.Default()), limit)), s.Default())
	b.WriteString(LokiStreams(s, limit))
	return b.String()
}

// LokiStreams renders the retention_stream rules alone (for a config that
// sets retention_period itself): one per tenant, selecting the tenant
// label assistlog's streams carry.
func LokiStreams(s *tenants.Set, limit time.Duration) string {
	names := s.Names()
	if len(names) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("  retention_stream:\n")
	for _, n := range names {
		t, _ := s.Get(n)
		fmt.Fprintf(&b, "    - selector: '{tenant=%q}'\n      priority: 1\n      period: %s # %s\n", n, hours(capped(LokiPeriod(t.Kept()), limit)), t.Kept())
	}
	return b.String()
}

// LokiOverrides renders a runtime-config overrides file for a Loki that
// runs with auth_enabled and one Loki tenant (X-Scope-OrgID) per business:
// there the retention is the Loki tenant's retention_period.
func LokiOverrides(s *tenants.Set, limit time.Duration) string {
	var b strings.Builder
	b.WriteString("# Rendered from the tenants file by `audit retention loki-config --overrides`.\noverrides:\n")
	for _, n := range s.Names() {
		t, _ := s.Get(n)
		fmt.Fprintf(&b, "  %q:\n    retention_period: %s # %s\n", n, hours(capped(LokiPeriod(t.Kept()), limit)), t.Kept())
	}
	return b.String()
}
