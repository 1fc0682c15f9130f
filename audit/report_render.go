package main

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/assistlog/assistlog/internal/kpi"
)

// metricKind is how a KPI is formatted and compared.
type metricKind int

const (
	kindCount metricKind = iota
	kindRatio
	kindDuration
)

// metric is one KPI row of the report: data-kpi=key carries its value
// for machines in audit kpi's JSON units (ratios as fractions, times in
// milliseconds) under audit kpi's JSON keys.
type metric struct {
	key          string
	kind         metricKind
	higherBetter bool
	get          func(kpi.Row) value
}

func countOf(f func(kpi.Row) int64) func(kpi.Row) value {
	return func(r kpi.Row) value { return value{float64(f(r)), true} }
}

func ratioOf(f func(kpi.Row) kpi.Ratio) func(kpi.Row) value {
	return func(r kpi.Row) value { v, ok := f(r).Value(); return value{v, ok} }
}

func durOf(f func(kpi.Row) *time.Duration) func(kpi.Row) value {
	return func(r kpi.Row) value {
		if d := f(r); d != nil {
			return value{float64(*d) / float64(time.Millisecond), true}
		}
		return value{}
	}
}

// metrics lists the report's KPIs in the order shown.
func metrics() []metric {
	return []metric{
		{"sessions", kindCount, true, countOf(func(r kpi.Row) int64 { return r.Sessions })},
		{"contact_requested", kindCount, true, countOf(func(r kpi.Row) int64 { return r.ContactRequested })},
		{"leads", kindCount, true, countOf(func(r kpi.Row) int64 { return r.Leads })},
		{"booked", kindCount, true, countOf(func(r kpi.Row) int64 { return r.Booked })},
		{"confirmed", kindCount, true, countOf(func(r kpi.Row) int64 { return r.Confirmed })},
		{"attended", kindCount, true, countOf(func(r kpi.Row) int64 { return r.Attended })},
		{"no_shows", kindCount, false, countOf(func(r kpi.Row) int64 { return r.NoShows })},
		{"conversion", kindRatio, true, ratioOf(func(r kpi.Row) kpi.Ratio { return r.Conversion })},
		{"confirmed_share", kindRatio, true, ratioOf(func(r kpi.Row) kpi.Ratio { return r.ConfirmedShare })},
		{"no_show_rate", kindRatio, false, ratioOf(func(r kpi.Row) kpi.Ratio { return r.NoShowRate })},
		{"response_mean_ms", kindDuration, false, durOf(func(r kpi.Row) *time.Duration { return r.ResponseMean })},
		{"response_median_ms", kindDuration, false, durOf(func(r kpi.Row) *time.Duration { return r.ResponseMedian })},
		{"manager_wait_mean_ms", kindDuration, false, durOf(func(r kpi.Row) *time.Duration { return r.ManagerWaitMean })},
		{"manager_wait_median_ms", kindDuration, false, durOf(func(r kpi.Row) *time.Duration { return r.ManagerWaitMedian })},
	}
}

// format shows v as the owner reads it.
func (l locale) format(k metricKind, v value) string {
	if !v.ok {
		return l.t("none")
	}
	switch k {
	case kindRatio:
		return l.percent(v.v)
	case kindDuration:
		return l.duration(time.Duration(v.v * float64(time.Millisecond)))
	}
	return l.int(int64(math.Round(v.v)))
}

// change formats cur against prev and says whether it is good news.
func (l locale) change(m metric, cur, prev value) (text, class string) {
	if !cur.ok || !prev.ok {
		return l.t("none"), "flat"
	}
	d := cur.v - prev.v
	if m.kind == kindDuration && math.Abs(d) < 50 {
		d = 0 // under 0,05 s reads as "+0 с": no change worth showing
	}
	switch m.kind {
	case kindRatio:
		text = l.points(d)
	case kindDuration:
		text = l.duration(time.Duration(math.Abs(d) * float64(time.Millisecond)))
		if d == 0 {
			text = "0"
		} else if d > 0 {
			text = "+" + text
		} else if d < 0 {
			text = "−" + text
		}
	default:
		text = l.int(int64(math.Round(d)))
		if d > 0 {
			text = "+" + text
		}
	}
	switch {
	case d == 0:
		class = "flat"
	case (d > 0) == m.higherBetter:
		class = "good"
	default:
		class = "bad"
	}
	return text, class
}

// cell is one shown value with its machine-readable twin.
type cell struct {
	Text, Data string
}

func (l locale) cell(k metricKind, v value) cell {
	c := cell{Text: l.format(k, v)}
	if v.ok {
		c.Data = dataNum(v.v)
	}
	return c
}

// nextSteps turns the numbers into a short list of things to check, most
// serious first. Each rule is simple enough to explain to an owner.
func nextSteps(m *reportModel) []advice {
	l := m.loc
	var out []advice
	if m.Reconcile != nil && m.Reconcile.Lost > 0 {
		out = append(out, advice{"reconcile", l.tf("next_reconcile", l.int(m.Reconcile.Lost))})
	}
	if c, ok := m.Cur.Conversion.Value(); ok {
		if p, ok := m.Prev.Conversion.Value(); ok && c < p-0.02 {
			out = append(out, advice{"conversion_down", l.tf("next_conv_down", l.percent(c), l.percent(p), l.points(c-p))})
		}
	}
	// The channel converting worst, among channels with enough leads for
	// the share to mean something, when it is below the week's overall.
	const minLeads = 3
	var worst *kpi.Row
	rated := 0
	for i := range m.Channels {
		ch := &m.Channels[i]
		v, ok := ch.Conversion.Value()
		if !ok || ch.Leads < minLeads {
			continue
		}
		rated++
		if w, _ := worstValue(worst); worst == nil || v < w {
			worst = ch
		}
	}
	if total, ok := m.Cur.Conversion.Value(); ok && worst != nil && rated > 1 {
		if w, _ := worst.Conversion.Value(); w < total {
			out = append(out, advice{"worst_channel", l.tf("next_channel", worst.Key, l.percent(w), l.int(worst.Leads))})
		}
	}
	if c, ok := m.Cur.NoShowRate.Value(); ok {
		if p, ok := m.Prev.NoShowRate.Value(); ok && c > p {
			out = append(out, advice{"no_shows_up", l.tf("next_noshow_up", l.percent(c), l.percent(p), l.points(c-p))})
		}
	}
	if n := risingStreak(m.Trend); n >= 3 {
		out = append(out, advice{"no_shows_streak", l.tf("next_noshow_streak", n)})
	}
	if d := m.Cur.ManagerWaitMean; d != nil && *d > 5*time.Minute {
		out = append(out, advice{"manager_wait", l.tf("next_wait", l.duration(*d))})
	}
	if len(m.LowConf) > 0 {
		out = append(out, advice{"low_confidence", l.tf("next_lowconf", m.LowConf[0].Intent, l.int(m.LowConf[0].Turns))})
	}
	if len(m.Reviews) > 0 {
		top := m.Reviews[0]
		for _, r := range m.Reviews[1:] {
			if r.Count > top.Count {
				top = r
			}
		}
		out = append(out, advice{"review_cause", l.tf("next_review", top.Cause, l.int(top.Count))})
	}
	return out
}

func worstValue(r *kpi.Row) (float64, bool) {
	if r == nil {
		return 0, false
	}
	return r.Conversion.Value()
}

// risingStreak is how many weeks in a row, up to the last, the no-show
// rate rose (weeks without a rate break the streak).
func risingStreak(tr []trendWeek) int {
	n := 0
	for i := len(tr) - 1; i > 0; i-- {
		c, ok1 := tr[i].Row.NoShowRate.Value()
		p, ok2 := tr[i-1].Row.NoShowRate.Value()
		if !ok1 || !ok2 || c <= p {
			break
		}
		n++
	}
	return n
}

// The HTML view: plain values prepared for the template.

type kpiLine struct {
	Key, Label  string
	Cur, Prev   cell
	Change      string
	ChangeClass string
}

type trendLine struct {
	Week, Label string
	Cells       []trendCell
}

type trendCell struct {
	Key string
	cell
}

type tableView struct {
	Head []string
	Rows []tableRow
}

type tableRow struct {
	Key   string
	Cells []trendCell
}

type htmlView struct {
	Lang, Title, Heading, Span, Generated string
	Week, PrevWeek                        string
	T                                     map[string]string
	Cards                                 []kpiLine
	KPIs                                  []kpiLine
	TrendTitle                            string
	TrendChart, FunnelChart, ChannelChart template.HTML
	NoShowChart, LowConfChart             template.HTML
	TrendLegend                           []legendItem
	ChannelLegend                         []legendItem
	TrendHead                             []string
	Trend                                 []trendLine
	Channels                              tableView
	ReconcileText, ReconcileClass         string
	LowConfNote                           string
	LowConf                               []intentCount
	LowConfText                           []string
	ReviewsText                           string
	Reviews                               []reviewCause
	Next                                  []advice
}

type legendItem struct {
	Name, Color string
}

// view prepares the model for the HTML template.
func (m *reportModel) view() htmlView {
	l := m.loc
	v := htmlView{Lang: l.lang, Title: l.t("title") + " — " + m.Title, Heading: m.Title,
		Span: l.tf("week", m.Week) + ": " + l.span(m.From, m.To), Week: m.Week, PrevWeek: m.PrevWeek,
		Generated: l.tf("generated", l.stamp(m.Generated), m.Generated.Location().String()), T: l.words}
	byKey := map[string]metric{}
	for _, mt := range metrics() {
		byKey[mt.key] = mt
		cur, prev := mt.get(m.Cur), mt.get(m.Prev)
		line := kpiLine{Key: mt.key, Label: l.t(mt.key), Cur: l.cell(mt.kind, cur), Prev: l.cell(mt.kind, prev)}
		line.Change, line.ChangeClass = l.change(mt, cur, prev)
		v.KPIs = append(v.KPIs, line)
	}
	for _, k := range []string{"conversion", "confirmed_share", "no_show_rate", "manager_wait_mean_ms"} {
		for _, line := range v.KPIs {
			if line.Key == k {
				v.Cards = append(v.Cards, line)
			}
		}
	}

	// The trend: the ratios as lines, and a table of the weeks.
	labels := make([]string, len(m.Trend))
	conv, share, noshow := chartSeries{key: "conversion", name: l.t("conversion")}, chartSeries{key: "confirmed_share", name: l.t("confirmed_share")}, chartSeries{key: "no_show_rate", name: l.t("no_show_rate")}
	top, topNS, any, anyNS := 0.0, 0.0, false, false
	trendKeys := []string{"sessions", "leads", "booked", "conversion", "confirmed_share", "no_shows", "no_show_rate"}
	for _, k := range trendKeys {
		v.TrendHead = append(v.TrendHead, l.t(k))
	}
	for i, w := range m.Trend {
		labels[i] = l.short(w.From)
		for _, s := range []*chartSeries{&conv, &share, &noshow} {
			s.vals = append(s.vals, byKey[s.key].get(w.Row))
		}
		if c := conv.vals[i]; c.ok {
			top, any = math.Max(top, c.v), true
		}
		if c := share.vals[i]; c.ok {
			top, any = math.Max(top, c.v), true
		}
		if c := noshow.vals[i]; c.ok {
			topNS, anyNS = math.Max(topNS, c.v), true
		}
		tl := trendLine{Week: w.Week, Label: w.Week + " · " + l.short(w.From)}
		for _, k := range trendKeys {
			mt := byKey[k]
			tl.Cells = append(tl.Cells, trendCell{Key: k, cell: l.cell(mt.kind, mt.get(w.Row))})
		}
		v.Trend = append(v.Trend, tl)
	}
	v.TrendTitle = l.tf("trend", len(m.Trend))
	if any {
		mx, steps := niceMax(top)
		v.TrendChart = lineChart("trend", v.TrendTitle, labels, []chartSeries{conv, share}, mx, steps, l.percent)
		v.TrendLegend = []legendItem{{conv.name, palette(0)}, {share.name, palette(1)}}
	}
	if anyNS {
		// Weeks without a single no-show still get a readable scale.
		mx, steps := niceMax(math.Max(topNS, 0.05))
		v.NoShowChart = columnChart("no_shows", l.t("noshow_trend"), labels, noshow, mx, steps, l.percent)
	}

	// The funnel of the week.
	if m.Cur.Sessions > 0 {
		steps := []string{"sessions", "contact_requested", "leads", "confirmed", "attended"}
		s := chartSeries{key: "funnel", name: l.t("funnel")}
		var names []string
		for _, k := range steps {
			n := byKey[k].get(m.Cur)
			s.vals = append(s.vals, n)
			names = append(names, l.t(k))
		}
		first := float64(m.Cur.Sessions)
		v.FunnelChart = barChart("funnel", l.t("funnel"), names, []chartSeries{s}, func(x float64) string {
			return l.int(int64(x)) + " (" + l.percent(x/first) + ")"
		})
	}

	// Channels: a bar group per channel, and the table with conversion.
	if len(m.Channels) > 0 {
		chs := append([]kpi.Row(nil), m.Channels...)
		sort.SliceStable(chs, func(i, j int) bool { return chs[i].Sessions > chs[j].Sessions })
		keys := []string{"sessions", "leads", "booked", "confirmed", "no_shows", "conversion", "no_show_rate"}
		for _, k := range keys {
			v.Channels.Head = append(v.Channels.Head, l.t(k))
		}
		ss := []chartSeries{{key: "sessions", name: l.t("sessions")}, {key: "leads", name: l.t("leads")}, {key: "booked", name: l.t("booked")}}
		var names []string
		for _, ch := range chs {
			names = append(names, ch.Key)
			row := tableRow{Key: ch.Key}
			for _, k := range keys {
				mt := byKey[k]
				row.Cells = append(row.Cells, trendCell{Key: k, cell: l.cell(mt.kind, mt.get(ch))})
			}
			v.Channels.Rows = append(v.Channels.Rows, row)
			for i := range ss {
				ss[i].vals = append(ss[i].vals, byKey[ss[i].key].get(ch))
			}
		}
		v.ChannelChart = barChart("channels", l.t("channels"), names, ss, func(x float64) string { return l.int(int64(x)) })
		for i, s := range ss {
			v.ChannelLegend = append(v.ChannelLegend, legendItem{s.name, palette(i)})
		}
	}

	switch {
	case !m.ReconcileOn:
		v.ReconcileText, v.ReconcileClass = l.t("reconcile_off"), "off"
	case m.ReconcileErr != "":
		v.ReconcileText, v.ReconcileClass = l.tf("reconcile_err", m.ReconcileErr), "bad"
	default:
		r := m.Reconcile
		v.ReconcileText = l.tf("reconcile_line", l.int(r.Logged), l.int(r.InCRM), l.int(r.Lost))
		v.ReconcileClass = "good"
		if r.Lost > 0 {
			v.ReconcileClass = "bad"
		} else {
			v.ReconcileText += " " + l.t("reconcile_ok")
		}
	}

	v.LowConfNote = l.tf("lowconf_note", l.decimal(m.LowConfThreshold, 3))
	v.LowConf = m.LowConf
	if len(m.LowConf) > 0 {
		s := chartSeries{key: "low_confidence", name: l.t("turns")}
		var names []string
		for _, ic := range m.LowConf {
			names = append(names, ic.Intent)
			s.vals = append(s.vals, value{float64(ic.Turns), true})
			v.LowConfText = append(v.LowConfText, l.int(ic.Turns))
		}
		v.LowConfChart = barChart("low_confidence", l.t("lowconf"), names, []chartSeries{s}, func(x float64) string { return l.int(int64(x)) })
	}

	switch {
	case !m.ReviewsOn:
		v.ReviewsText = l.t("reviews_off")
	case m.ReviewsErr != "":
		v.ReviewsText = m.ReviewsErr
	case len(m.Reviews) == 0:
		v.ReviewsText = l.t("reviews_none")
	}
	v.Reviews = m.Reviews
	v.Next = m.Next
	return v
}

// writeHTML writes the report as one self-contained HTML page.
func (m *reportModel) writeHTML(w io.Writer) error {
	t, err := template.New("report").Funcs(template.FuncMap{
		"int": m.loc.int,
	}).Parse(reportTemplate)
	if err != nil {
		return fmt.Errorf("report template: %w", err)
	}
	return t.Execute(w, m.view())
}

// writeText writes the short plain-text summary for a Telegram message:
// no markup, one KPI a line with the week before in brackets.
func (m *reportModel) writeText(w io.Writer) error {
	l := m.loc
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n%s\n\n", m.Title, l.tf("week", m.Week)+": "+l.span(m.From, m.To))
	// A message read on a phone: the headline KPIs only; the HTML has all.
	headline := map[string]bool{"sessions": true, "leads": true, "booked": true, "conversion": true,
		"confirmed_share": true, "no_show_rate": true, "response_median_ms": true, "manager_wait_mean_ms": true}
	for _, mt := range metrics() {
		if !headline[mt.key] {
			continue
		}
		cur, prev := mt.get(m.Cur), mt.get(m.Prev)
		ch, _ := l.change(mt, cur, prev)
		line := l.t(mt.key) + ": " + l.format(mt.kind, cur) + " (" + l.tf("vs_prev", l.format(mt.kind, prev))
		if cur.ok && prev.ok {
			line += "; " + ch
		}
		b.WriteString(line + ")\n")
	}
	b.WriteString("\n" + l.t("reconcile") + ": ")
	switch {
	case !m.ReconcileOn:
		b.WriteString(l.t("reconcile_off"))
	case m.ReconcileErr != "":
		b.WriteString(l.tf("reconcile_err", m.ReconcileErr))
	default:
		b.WriteString(l.tf("reconcile_line", l.int(m.Reconcile.Logged), l.int(m.Reconcile.InCRM), l.int(m.Reconcile.Lost)))
	}
	b.WriteString("\n\n" + l.t("next") + ":\n")
	if len(m.Next) == 0 {
		b.WriteString("• " + l.t("next_none") + "\n")
	}
	for _, a := range m.Next {
		b.WriteString("• " + a.Text + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}
