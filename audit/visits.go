package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"sort"
	"strconv"
	"time"

	"github.com/assistlog/assistlog/internal/esread"
	"github.com/assistlog/assistlog/internal/output"
)

const visitsHelp = `audit visits — confirmed appointments against real visits.

Usage: audit visits PERIOD [--tenant NAME] [--channel CH] [--by tenant|channel] [--list] [--format F]

An appointment belongs to the period by the time it was booked FOR (payload.starts_at, in the
tenant's zone), not by when the assistant confirmed it: "the appointments of week 47" are the
visits that were due in week 47, which is what is checked against the visit book. Only
appointments whose time has passed are due; later ones in the period are counted as upcoming.

The latest appointment.rescheduled moves an appointment (its payload.starts_at); the latest
appointment.cancelled, unless confirmed again later, cancels it. appointment.attended and
appointment.no_show are the outcome (the latest mark wins). A due appointment is
attended, no_show, cancelled or unmarked — the unmarked ones are the list to chase: the visit
book says whether the customer came, and the CRM or booking system should have sent the mark
(see docs/visits.md).

Output: the summary per tenant (or --by channel) and the appointments to chase, as a table,
Markdown or JSON; --format csv writes the summary, or with --list only the list to chase
(e.g. for a spreadsheet).

Examples:
  audit visits --week 2026-W47
  audit visits --last 7d --tenant salon-aurora --list
  audit visits --month 2026-11 --by channel --format md
  audit visits --week 2026-W47 --list --format csv > chase.csv

Flags:
`

// Appointment outcomes as the summary counts them.
const (
	visitAttended  = "attended"
	visitNoShow    = "no_show"
	visitCancelled = "cancelled"
	visitUnmarked  = "unmarked"
	visitUpcoming  = "upcoming"
)

// appointment is one booking with every event about it folded in.
type appointment struct {
	Tenant, Channel, SessionID, ID string
	StartsAt                       time.Time // the latest time it was confirmed or moved to
	ConfirmedAt                    time.Time // the latest appointment.confirmed
	Service                        string
	Status                         string
	Rescheduled                    int
}

// visitsReport is what audit visits finds.
type visitsReport struct {
	Summary output.Table
	Chase   output.Table
}

func runVisits(ctx context.Context, a *app, args []string) error {
	var c common
	fs := flag.NewFlagSet("visits", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	c.flags(fs, true, nil)
	channel := fs.String("channel", "", "only appointments confirmed in this channel (whatsapp, telegram, …)")
	by := fs.String("by", "tenant", "summary rows: tenant or channel")
	list := fs.Bool("list", false, "write only the appointments to chase (the due ones with no outcome)")
	fs.Usage = func() { fmt.Fprint(a.stderr, visitsHelp); fs.PrintDefaults() }
	pos, help, err := parse(fs, args)
	if help {
		return nil
	}
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("audit visits takes no arguments, got %q (a period is --week/--from/--to/--month/--last)", pos)
	}
	if err := output.CheckFormat(c.format, nil); err != nil {
		return err
	}
	if *by != "tenant" && *by != "channel" {
		return fmt.Errorf("--by: tenant or channel, not %q", *by)
	}
	e, ws, err := c.loadWindows(a.now())
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stderr, "reading the appointments booked for %s…\n", ws[0].Label)
	apps, err := visits(ctx, e, ws, *channel, a.now())
	if err != nil {
		return err
	}
	r := visitsTables(e, apps, *by)
	return writeVisits(a.stdout, r, c.format, *list, ws)
}

// visits finds the appointments due in the windows: those confirmed or
// moved to a time in a window, then every event about them, folded.
func visits(ctx context.Context, e *env, ws []Window, channel string, now time.Time) ([]appointment, error) {
	byTenant := map[string]Window{}
	for _, w := range ws {
		byTenant[w.Tenant.Name] = w
	}
	// Candidates: any confirmation or move into a window (the final time
	// is decided after folding, since a later move can take it out).
	cand := map[string]map[string]bool{} // tenant → appointment ids
	q := and(windowFilter(ws, "payload.starts_at"), terms("event_type", "appointment.confirmed", "appointment.rescheduled"))
	err := e.es.Each(ctx, esread.Search{Query: q, Source: []string{"tenant", "payload.appointment_id"}}, func(h esread.Hit) error {
		ev, err := h.Decode()
		if err != nil {
			return err
		}
		id := ev.PayloadString("appointment_id")
		if id == "" {
			return nil
		}
		if cand[ev.Tenant] == nil {
			cand[ev.Tenant] = map[string]bool{}
		}
		cand[ev.Tenant][id] = true
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("find appointments due in the period: %w", err)
	}
	var out []appointment
	for tenant, ids := range cand {
		w := byTenant[tenant]
		all := make([]string, 0, len(ids))
		for id := range ids {
			all = append(all, id)
		}
		sort.Strings(all)
		// Terms queries take up to 65,536 values; stay well below.
		for len(all) > 0 {
			n := min(len(all), 5000)
			chunk := all[:n]
			all = all[n:]
			folded := map[string]*fold{}
			q := and(terms("tenant", tenant), terms("payload.appointment_id", chunk...),
				terms("event_type", "appointment.confirmed", "appointment.rescheduled", "appointment.cancelled", "appointment.attended", "appointment.no_show"))
			err := e.es.Each(ctx, esread.Search{Query: q}, func(h esread.Hit) error {
				ev, err := h.Decode()
				if err != nil {
					return err
				}
				id := ev.PayloadString("appointment_id")
				f := folded[id]
				if f == nil {
					f = &fold{}
					folded[id] = f
				}
				f.add(ev)
				return nil
			})
			if err != nil {
				return nil, fmt.Errorf("read the events of %s's appointments: %w", tenant, err)
			}
			for id, f := range folded {
				ap, ok := f.result(tenant, id, w.Tenant.Location(), now)
				if !ok || ap.StartsAt.Before(w.From) || !ap.StartsAt.Before(w.To) {
					continue
				}
				if channel != "" && ap.Channel != channel {
					continue
				}
				out = append(out, ap)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Tenant != out[j].Tenant {
			return out[i].Tenant < out[j].Tenant
		}
		if !out[i].StartsAt.Equal(out[j].StartsAt) {
			return out[i].StartsAt.Before(out[j].StartsAt)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// fold accumulates one appointment's events; they arrive in time order
// (the reader's default sort), so "latest" is simply the last seen.
type fold struct {
	confirmed             *esread.Event
	startsAt              time.Time
	lastBooked, cancelled time.Time
	mark                  string
	rescheduled           int
}

func (f *fold) add(ev esread.Event) {
	switch ev.Type {
	case "appointment.confirmed":
		c := ev
		f.confirmed = &c
		f.lastBooked = ev.Timestamp
		if t, err := time.Parse(time.RFC3339, ev.PayloadString("starts_at")); err == nil {
			f.startsAt = t
		}
	case "appointment.rescheduled":
		f.rescheduled++
		f.lastBooked = ev.Timestamp
		if t, err := time.Parse(time.RFC3339, ev.PayloadString("starts_at")); err == nil {
			f.startsAt = t
		}
	case "appointment.cancelled":
		f.cancelled = ev.Timestamp
	case "appointment.attended":
		f.mark = visitAttended
	case "appointment.no_show":
		f.mark = visitNoShow
	}
}

// result is the appointment's state at now; false when it was never
// confirmed (a mark or move for an appointment the log has no booking of
// is not an appointment the assistant made).
func (f *fold) result(tenant, id string, loc *time.Location, now time.Time) (appointment, bool) {
	if f.confirmed == nil || f.startsAt.IsZero() {
		return appointment{}, false
	}
	ap := appointment{Tenant: tenant, Channel: f.confirmed.Channel, SessionID: f.confirmed.SessionID, ID: id,
		StartsAt: f.startsAt.In(loc), ConfirmedAt: f.confirmed.Timestamp.In(loc),
		Service: f.confirmed.PayloadString("service"), Rescheduled: f.rescheduled}
	switch {
	case f.mark != "":
		// A visit that happened (or was missed) is a fact even if a
		// cancellation was also recorded.
		ap.Status = f.mark
	case !f.cancelled.IsZero() && !f.cancelled.Before(f.lastBooked):
		ap.Status = visitCancelled
	case f.startsAt.After(now):
		ap.Status = visitUpcoming
	default:
		ap.Status = visitUnmarked
	}
	return ap, true
}

// visitsTables builds the summary (rows by tenant or channel, and a total)
// and the list to chase.
func visitsTables(e *env, apps []appointment, by string) visitsReport {
	type counts struct{ due, attended, noShow, cancelled, unmarked, upcoming int }
	groups := map[string]*counts{}
	var total counts
	for _, ap := range apps {
		k := ap.Tenant
		if by == "channel" {
			k = ap.Channel
		}
		c := groups[k]
		if c == nil {
			c = &counts{}
			groups[k] = c
		}
		for _, c := range []*counts{c, &total} {
			switch ap.Status {
			case visitUpcoming:
				c.upcoming++
				continue
			case visitAttended:
				c.attended++
			case visitNoShow:
				c.noShow++
			case visitCancelled:
				c.cancelled++
			case visitUnmarked:
				c.unmarked++
			}
			c.due++
		}
	}
	pct := func(n, d int) string {
		if d == 0 {
			return ""
		}
		return strconv.FormatFloat(100*float64(n)/float64(d), 'f', 1, 64)
	}
	r := visitsReport{Summary: output.Table{Columns: []string{by, "due", "attended", "no_show", "cancelled", "unmarked",
		"marked_pct", "show_pct", "upcoming"}}}
	row := func(k string, c counts) {
		r.Summary.Add(k, strconv.Itoa(c.due), strconv.Itoa(c.attended), strconv.Itoa(c.noShow), strconv.Itoa(c.cancelled),
			strconv.Itoa(c.unmarked), pct(c.attended+c.noShow, c.due-c.cancelled), pct(c.attended, c.attended+c.noShow), strconv.Itoa(c.upcoming))
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		row(k, *groups[k])
	}
	row("total", total)

	r.Chase = output.Table{Columns: []string{"tenant", "channel", "session_id", "appointment_id", "starts_at", "service", "confirmed_at", "rescheduled", "conversation_url"}}
	for _, ap := range apps {
		if ap.Status != visitUnmarked {
			continue
		}
		r.Chase.Add(ap.Tenant, ap.Channel, ap.SessionID, ap.ID, ap.StartsAt.Format(time.RFC3339), ap.Service,
			ap.ConfirmedAt.Format(time.RFC3339), strconv.Itoa(ap.Rescheduled), e.conversationLink(ap.Tenant, ap.SessionID))
	}
	return r
}

// writeVisits writes the report in format; see visitsHelp.
func writeVisits(w io.Writer, r visitsReport, format string, list bool, ws []Window) error {
	label := ""
	if len(ws) > 0 {
		label = ws[0].Label
	}
	if list {
		return r.Chase.Write(w, format)
	}
	switch format {
	case "csv":
		return r.Summary.Write(w, format)
	case "json":
		return output.WriteJSON(w, map[string]any{"period": label, "summary": r.Summary.Records(), "chase": r.Chase.Records()})
	}
	h1, h2 := "Визиты за %s (по времени записи, в поясе каждого клиента)\n\n", "\nНе отмечены — выяснить, пришёл ли клиент (%d)\n\n"
	if format == "md" {
		h1, h2 = "## Визиты за %s (по времени записи, в поясе каждого клиента)\n\n", "\n### Не отмечены — выяснить, пришёл ли клиент (%d)\n\n"
	}
	fmt.Fprintf(w, h1, label)
	if err := r.Summary.Write(w, format); err != nil {
		return err
	}
	fmt.Fprintf(w, h2, len(r.Chase.Rows))
	if len(r.Chase.Rows) == 0 {
		return nil
	}
	return r.Chase.Write(w, format)
}
