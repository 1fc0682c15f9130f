package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/assistlog/assistlog/internal/kpi"
	"github.com/assistlog/assistlog/internal/output"
)

const kpiUsage = `audit kpi — показатели для владельца, точно по полной записи (Elasticsearch).

Usage:
  audit kpi (--week W | --from D --to D | --month M | --last N) [--tenant T]
            [--channel C] [--by day|week|month|channel|tenant] [--format table|csv|json|md]

Каждое событие считается в момент, когда оно произошло, в часовом поясе
своего арендатора (tenants file): диалог — один раз, в день и неделю своего
session.started. Определения: docs/kpis.md. Пустой знаменатель печатается как
«—» (в JSON — null), а не 0 и не NaN.

  conversion        лид → запись: диалоги, завершившиеся записью / лиды
  confirmed_share   доля диалогов, завершившихся подтверждённой записью
  no_show_rate      неявки / (пришли + неявки)
  response_*        время ответа ассистента (message.sent latency_ms): среднее, медиана
  manager_wait_*    ожидание менеджера от handoff.requested до manager.joined: среднее, медиана

Examples:
  audit kpi --week 2026-W47 --tenant salon-aurora
  audit kpi --month 2026-11 --by week --format csv > kpi.csv
  audit kpi --last 12w --by week --channel whatsapp --format json
  audit kpi --from 2026-11-16 --to 2026-11-22 --by channel

Flags:
`

func runKPI(ctx context.Context, a *app, args []string) error {
	fs := flag.NewFlagSet("kpi", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	fs.Usage = func() { fmt.Fprint(a.stderr, kpiUsage); fs.PrintDefaults() }
	var c common
	c.flags(fs, true, nil)
	channel := fs.String("channel", "", "only this channel (whatsapp, telegram, …)")
	by := fs.String("by", "", "group rows by "+strings.Join(kpi.Bys, ", ")+" (days, weeks and months in the tenant's zone)")
	pos, help, err := parse(fs, args)
	if help {
		return nil
	}
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("kpi: unexpected argument %q", pos[0])
	}
	if err := output.CheckFormat(c.format, nil); err != nil {
		return err
	}
	req := kpi.Request{Channel: *channel, By: *by}
	if err := kpi.CheckBy(*by); err != nil {
		return err
	}
	e, ws, err := c.loadWindows(a.now())
	if err != nil {
		return err
	}
	label := ""
	for _, w := range ws {
		req.Windows = append(req.Windows, kpi.Window{Tenant: w.Tenant.Name, Loc: w.Tenant.Location(), From: w.From, To: w.To})
		label = w.Label
	}
	req.Progress = func(n int64) {
		if n%20000 == 0 { // a line every ten pages: months of a busy tenant
			fmt.Fprintf(a.stderr, "kpi: %d events read\n", n)
		}
	}
	total, groups, err := kpi.Compute(ctx, e.es, req)
	if err != nil {
		return err
	}
	total.Key = "total"
	switch c.format {
	case "json":
		return writeKPIJSON(a.stdout, label, c.tenant, req, total, groups)
	case "csv":
		t := kpiRecords(total, groups)
		return t.Write(a.stdout, "csv")
	}
	// For reading, one KPI a line and one column a group (days of a week
	// fit across a terminal; 17 KPI columns do not).
	scope := "все арендаторы"
	if c.tenant != "" {
		scope = c.tenant
	}
	if *channel != "" {
		scope += ", канал " + *channel
	}
	head := fmt.Sprintf("Период %s (%s)", label, scope)
	if c.format == "md" {
		fmt.Fprintf(a.stdout, "**%s**\n\n", head)
	} else {
		fmt.Fprintln(a.stdout, head)
	}
	t := kpiTransposed(total, groups, req.By != "")
	return t.Write(a.stdout, c.format)
}

// kpiField is one KPI: its column key, its Russian name and its value in a
// row, for reading (text) and for machines (raw; "" when empty).
type kpiField struct {
	key, name string
	text      func(kpi.Row) string
	raw       func(kpi.Row) any // int64, float64 or nil
}

func countField(key, name string, f func(kpi.Row) int64) kpiField {
	return kpiField{key, name, func(r kpi.Row) string { return strconv.FormatInt(f(r), 10) }, func(r kpi.Row) any { return f(r) }}
}

func ratio(key, name string, f func(kpi.Row) kpi.Ratio) kpiField {
	return kpiField{key, name, func(r kpi.Row) string {
		v, ok := f(r).Value()
		if !ok {
			return "—"
		}
		return ruNumber(v*100, 1) + " %"
	}, func(r kpi.Row) any {
		if v, ok := f(r).Value(); ok {
			return v
		}
		return nil
	}}
}

func duration(key, name string, f func(kpi.Row) *time.Duration) kpiField {
	return kpiField{key, name, func(r kpi.Row) string { return ruDuration(f(r)) }, func(r kpi.Row) any {
		if d := f(r); d != nil {
			return float64(*d) / float64(time.Millisecond)
		}
		return nil
	}}
}

var kpiFields = []kpiField{
	countField("sessions", "Диалоги", func(r kpi.Row) int64 { return r.Sessions }),
	countField("contact_requested", "Запрошен контакт", func(r kpi.Row) int64 { return r.ContactRequested }),
	countField("leads", "Лиды", func(r kpi.Row) int64 { return r.Leads }),
	countField("booked", "Диалоги с записью", func(r kpi.Row) int64 { return r.Booked }),
	countField("confirmed", "Подтверждённые записи", func(r kpi.Row) int64 { return r.Confirmed }),
	countField("attended", "Пришли", func(r kpi.Row) int64 { return r.Attended }),
	countField("no_shows", "Не пришли", func(r kpi.Row) int64 { return r.NoShows }),
	ratio("conversion", "Конверсия лид → запись", func(r kpi.Row) kpi.Ratio { return r.Conversion }),
	ratio("confirmed_share", "Доля диалогов с подтверждённой записью", func(r kpi.Row) kpi.Ratio { return r.ConfirmedShare }),
	ratio("no_show_rate", "Доля неявок", func(r kpi.Row) kpi.Ratio { return r.NoShowRate }),
	duration("response_mean_ms", "Ответ ассистента, среднее", func(r kpi.Row) *time.Duration { return r.ResponseMean }),
	duration("response_median_ms", "Ответ ассистента, медиана", func(r kpi.Row) *time.Duration { return r.ResponseMedian }),
	countField("responses", "Ответов ассистента", func(r kpi.Row) int64 { return r.Responses }),
	countField("handoffs", "Запросы менеджера", func(r kpi.Row) int64 { return r.Handoffs }),
	countField("managers_joined", "Менеджер подключился", func(r kpi.Row) int64 { return r.ManagersJoined }),
	duration("manager_wait_mean_ms", "Ожидание менеджера, среднее", func(r kpi.Row) *time.Duration { return r.ManagerWaitMean }),
	duration("manager_wait_median_ms", "Ожидание менеджера, медиана", func(r kpi.Row) *time.Duration { return r.ManagerWaitMedian }),
}

// kpiRecords is one record per group and the total last: CSV columns
// (documented in docs/kpis.md), shares as fractions, times in
// milliseconds, empty as "—".
func kpiRecords(total kpi.Row, groups []kpi.Row) output.Table {
	t := output.Table{Columns: []string{"key"}}
	for _, f := range kpiFields {
		t.Columns = append(t.Columns, f.key)
	}
	for _, r := range append(append([]kpi.Row(nil), groups...), total) {
		cells := []string{r.Key}
		for _, f := range kpiFields {
			switch v := f.raw(r).(type) {
			case nil:
				cells = append(cells, "—")
			case int64:
				cells = append(cells, strconv.FormatInt(v, 10))
			case float64:
				cells = append(cells, strconv.FormatFloat(v, 'f', -1, 64))
			}
		}
		t.Add(cells...)
	}
	return t
}

func kpiTransposed(total kpi.Row, groups []kpi.Row, grouped bool) output.Table {
	t := output.Table{Columns: []string{"показатель"}}
	rows := []kpi.Row{}
	if grouped {
		for _, g := range groups {
			t.Columns = append(t.Columns, g.Key)
			rows = append(rows, g)
		}
	}
	t.Columns = append(t.Columns, "итого")
	rows = append(rows, total)
	for _, f := range kpiFields {
		cells := []string{f.name}
		for _, r := range rows {
			cells = append(cells, f.text(r))
		}
		t.Add(cells...)
	}
	return t
}

func writeKPIJSON(w io.Writer, label, tenant string, req kpi.Request, total kpi.Row, groups []kpi.Row) error {
	obj := func(r kpi.Row) map[string]any {
		m := map[string]any{"key": r.Key}
		for _, f := range kpiFields {
			m[f.key] = f.raw(r)
		}
		return m
	}
	gs := make([]map[string]any, 0, len(groups))
	for _, g := range groups {
		gs = append(gs, obj(g))
	}
	out := map[string]any{"period": label, "tenant": tenant, "channel": req.Channel, "by": req.By, "groups": gs, "total": obj(total)}
	return output.WriteJSON(w, out)
}

// ruNumber formats v with digits decimals the Russian way: 1 234,5.
func ruNumber(v float64, digits int) string {
	s := strconv.FormatFloat(math.Abs(v), 'f', digits, 64)
	intPart, frac, _ := strings.Cut(s, ".")
	var b strings.Builder
	if v < 0 {
		b.WriteString("-")
	}
	for i, c := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteRune('\u00a0')
		}
		b.WriteRune(c)
	}
	if frac != "" {
		b.WriteString("," + frac)
	}
	return b.String()
}

// ruDuration reads as 0,85 с, 12,3 с or 3 мин 05 с; "—" for nil.
func ruDuration(d *time.Duration) string {
	switch {
	case d == nil:
		return "—"
	case *d < 10*time.Second:
		return ruNumber(d.Seconds(), 2) + " с"
	case *d < time.Minute:
		return ruNumber(d.Seconds(), 1) + " с"
	}
	s := int64(d.Round(time.Second) / time.Second)
	return fmt.Sprintf("%d мин %02d с", s/60, s%60)
}
