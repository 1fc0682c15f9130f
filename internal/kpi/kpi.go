// Package kpi computes the owners' KPIs exactly from the events stored in
// Elasticsearch: every event of the KPI types is read back (esread.Each,
// no approximate aggregations), counted at its own timestamp in its
// tenant's time zone, and the medians are taken over all the values.
// docs/kpis.md defines each KPI; the Grafana overview's KPI panels use
// the same definitions.
package kpi

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/assistlog/assistlog/internal/esread"
	"github.com/assistlog/assistlog/internal/period"
)

// Window is one tenant's period [From, To), with the tenant's zone: days,
// weeks and months of a grouping are the tenant's local ones.
type Window struct {
	Tenant   string
	Loc      *time.Location
	From, To time.Time
}

// Groupings Request.By accepts.
const (
	ByNone    = ""
	ByDay     = "day"
	ByWeek    = "week"
	ByMonth   = "month"
	ByChannel = "channel"
	ByTenant  = "tenant"
)

// Bys lists the groupings, for flag help and validation.
var Bys = []string{ByDay, ByWeek, ByMonth, ByChannel, ByTenant}

// Request is what to compute: the windows (one per tenant), optionally one
// channel only, and how to group the rows.
type Request struct {
	Windows []Window
	// Channel keeps only this channel's events ("" all).
	Channel string
	// By groups the rows: "" (total only), day, week, month, channel, tenant.
	By string
	// Progress, when set, hears how many events were read so far, every
	// esread.PageSize events (a year of a busy tenant takes a while).
	Progress func(events int64)
}

// Validate names what is wrong with r.
func (r Request) Validate() error {
	if len(r.Windows) == 0 {
		return errors.New("kpi: no windows (no tenant selected)")
	}
	for i, w := range r.Windows {
		switch {
		case w.Tenant == "":
			return fmt.Errorf("kpi: windows[%d].Tenant is empty", i)
		case w.Loc == nil:
			return fmt.Errorf("kpi: windows[%d].Loc is nil (tenant %s)", i, w.Tenant)
		case !w.To.After(w.From):
			return fmt.Errorf("kpi: windows[%d] (tenant %s): To %s is not after From %s", i, w.Tenant, w.To, w.From)
		}
	}
	return CheckBy(r.By)
}

// CheckBy validates a grouping.
func CheckBy(by string) error {
	switch by {
	case ByNone, ByDay, ByWeek, ByMonth, ByChannel, ByTenant:
		return nil
	}
	return fmt.Errorf("--by: one of day, week, month, channel, tenant, not %q", by)
}

// Ratio is a share kept as its two counts, so an empty denominator stays
// visible instead of becoming NaN.
type Ratio struct {
	Num, Den int64
}

// Value is Num/Den; false when Den is 0 (shown as "—", JSON null).
func (r Ratio) Value() (float64, bool) {
	if r.Den == 0 {
		return 0, false
	}
	return float64(r.Num) / float64(r.Den), true
}

// Row is the KPIs of one group (or of everything: the total). Counts are
// events of the window; see docs/kpis.md for each definition.
type Row struct {
	// Key is the group: 2026-11-20, 2026-W47, 2026-11, a channel or a
	// tenant; "" for the total.
	Key string

	Sessions         int64 // session.started: conversations begun
	ContactRequested int64 // contact.requested
	Leads            int64 // lead.created
	Booked           int64 // session.ended with outcome "booked": conversations that ended in a confirmed booking
	Confirmed        int64 // appointment.confirmed: bookings (a conversation may make several)
	Attended         int64 // appointment.attended
	NoShows          int64 // appointment.no_show
	Handoffs         int64 // handoff.requested
	ManagersJoined   int64 // manager.joined
	Responses        int64 // message.sent with latency_ms: the samples of the response time

	Conversion     Ratio // Booked / Leads: lead → booking
	ConfirmedShare Ratio // Booked / Sessions: conversations ending in a confirmed booking
	NoShowRate     Ratio // NoShows / (Attended + NoShows): of the followed-up appointments

	// Nil when there were no samples (shown as "—").
	ResponseMean, ResponseMedian       *time.Duration // message.sent latency_ms
	ManagerWaitMean, ManagerWaitMedian *time.Duration // manager.joined latency_ms: handoff.requested → manager.joined

	responses, waits []int64 // the samples, milliseconds
}

// Compute reads the windows' events and returns the total over all of them
// and, when req.By is set, one row per group in key order (days, weeks and
// months chronologically).
func Compute(ctx context.Context, r *esread.Reader, req Request) (total Row, groups []Row, err error) {
	if err := req.Validate(); err != nil {
		return Row{}, nil, err
	}
	tot := &Row{}
	byKey := map[string]*Row{}
	var read int64
	err = r.Each(ctx, esread.Search{Query: Query(req), Source: sourceFields}, func(h esread.Hit) error {
		e, err := h.Decode()
		if err != nil {
			return err
		}
		if read++; req.Progress != nil && read%esread.PageSize == 0 {
			req.Progress(read)
		}
		w, ok := windowOf(req.Windows, e)
		if !ok {
			return nil // the query matched it by another tenant's window: cannot happen, but never miscount
		}
		tot.add(e)
		if req.By != ByNone {
			k := key(req.By, e, w.Loc)
			g := byKey[k]
			if g == nil {
				g = &Row{Key: k}
				byKey[k] = g
			}
			g.add(e)
		}
		return nil
	})
	if err != nil {
		return Row{}, nil, fmt.Errorf("kpi: read events: %w", err)
	}
	tot.finish()
	for _, g := range byKey {
		g.finish()
		groups = append(groups, *g)
	}
	sort.Slice(groups, func(i, j int) bool { return groups[i].Key < groups[j].Key })
	return *tot, groups, nil
}

// Types are the event types the KPIs read.
var Types = []string{"session.started", "contact.requested", "lead.created", "session.ended",
	"appointment.confirmed", "appointment.attended", "appointment.no_show",
	"handoff.requested", "manager.joined", "message.sent"}

var sourceFields = []string{"@timestamp", "tenant", "channel", "event_type", "outcome", "latency_ms"}

// Query is the Elasticsearch query of the KPI events of req: each tenant's
// events inside its own window, of the KPI types, of req.Channel if set.
func Query(req Request) map[string]any {
	should := make([]any, 0, len(req.Windows))
	for _, w := range req.Windows {
		should = append(should, map[string]any{"bool": map[string]any{"filter": []any{
			map[string]any{"term": map[string]any{"tenant": w.Tenant}},
			map[string]any{"range": map[string]any{"@timestamp": map[string]any{
				"gte": w.From.UTC().Format(time.RFC3339Nano), "lt": w.To.UTC().Format(time.RFC3339Nano)}}},
		}}})
	}
	filter := []any{
		map[string]any{"bool": map[string]any{"should": should, "minimum_should_match": 1}},
		map[string]any{"terms": map[string]any{"event_type": Types}},
	}
	if req.Channel != "" {
		filter = append(filter, map[string]any{"term": map[string]any{"channel": req.Channel}})
	}
	return map[string]any{"bool": map[string]any{"filter": filter}}
}

func windowOf(ws []Window, e esread.Event) (Window, bool) {
	for _, w := range ws {
		if w.Tenant == e.Tenant && !e.Timestamp.Before(w.From) && e.Timestamp.Before(w.To) {
			return w, true
		}
	}
	return Window{}, false
}

// key is the group of e: its local day, ISO week or month in the tenant's
// zone, its channel or its tenant.
func key(by string, e esread.Event, loc *time.Location) string {
	t := e.Timestamp.In(loc)
	switch by {
	case ByDay:
		return t.Format("2006-01-02")
	case ByWeek:
		return period.WeekOf(e.Timestamp, loc)
	case ByMonth:
		return t.Format("2006-01")
	case ByChannel:
		return e.Channel
	case ByTenant:
		return e.Tenant
	}
	return ""
}

func (r *Row) add(e esread.Event) {
	switch e.Type {
	case "session.started":
		r.Sessions++
	case "contact.requested":
		r.ContactRequested++
	case "lead.created":
		r.Leads++
	case "session.ended":
		if e.Outcome == "booked" {
			r.Booked++
		}
	case "appointment.confirmed":
		r.Confirmed++
	case "appointment.attended":
		r.Attended++
	case "appointment.no_show":
		r.NoShows++
	case "handoff.requested":
		r.Handoffs++
	case "manager.joined":
		r.ManagersJoined++
		if e.LatencyMS != nil {
			r.waits = append(r.waits, *e.LatencyMS)
		}
	case "message.sent":
		if e.LatencyMS != nil {
			r.Responses++
			r.responses = append(r.responses, *e.LatencyMS)
		}
	}
}

func (r *Row) finish() {
	r.Conversion = Ratio{Num: r.Booked, Den: r.Leads}
	r.ConfirmedShare = Ratio{Num: r.Booked, Den: r.Sessions}
	r.NoShowRate = Ratio{Num: r.NoShows, Den: r.Attended + r.NoShows}
	r.ResponseMean, r.ResponseMedian = Mean(r.responses), Median(r.responses)
	r.ManagerWaitMean, r.ManagerWaitMedian = Mean(r.waits), Median(r.waits)
	r.responses, r.waits = nil, nil
}

// Mean of millisecond samples, nil for none.
func Mean(ms []int64) *time.Duration {
	if len(ms) == 0 {
		return nil
	}
	var sum int64
	for _, v := range ms {
		sum += v
	}
	n := int64(len(ms))
	d := time.Duration((sum*int64(time.Millisecond) + n/2) / n) // to the nearest nanosecond
	return &d
}

// Median of millisecond samples, nil for none: the middle value, or the
// mean of the two middle values of an even count.
func Median(ms []int64) *time.Duration {
	if len(ms) == 0 {
		return nil
	}
	s := append([]int64(nil), ms...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	n := len(s)
	d := time.Duration(s[n/2]) * time.Millisecond
	if n%2 == 0 {
		d = (time.Duration(s[n/2-1]) + time.Duration(s[n/2])) * time.Millisecond / 2
	}
	return &d
}
