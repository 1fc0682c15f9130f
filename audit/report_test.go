package main

import (
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/assistlog/assistlog/demo"
	"github.com/assistlog/assistlog/internal/event"
	"github.com/assistlog/assistlog/internal/kpi"
	"github.com/assistlog/assistlog/internal/period"
)

// sameNumber says whether a data-value shown on the page is audit kpi's
// JSON value: the same number, or empty for null.
func sameNumber(shown string, want any) bool {
	if want == nil {
		return shown == ""
	}
	w, ok := want.(float64)
	if !ok {
		return false
	}
	got, err := strconv.ParseFloat(shown, 64)
	return err == nil && got == w
}

// TestReportInBrowser ships generated dialogues through the real shipper,
// writes the report of the busiest tenant's week, opens it in headless
// Chromium and checks what the browser rendered: no console error and
// nothing fetched, every chart drawn, the page fits a phone, and every
// number equal to audit kpi's (and the counts to the raw events).
func TestReportInBrowser(t *testing.T) {
	browser := chromiumPath(t)
	evs, _, stores, alias := shipped(t, 240)
	onStores(t, stores, func(t *testing.T, es string) {
		set, err := demo.Tenants()
		if err != nil {
			t.Fatal(err)
		}

		// The tenant and ISO week (in its zone) with the most conversations.
		type tenantWeek struct{ tenant, week string }
		started := map[tenantWeek]int{}
		for i := range evs {
			if evs[i].Type == event.SessionStarted {
				tn, _ := set.Get(evs[i].Tenant)
				started[tenantWeek{evs[i].Tenant, period.WeekOf(evs[i].Time(), tn.Location())}]++
			}
		}
		var pick tenantWeek
		for k, n := range started {
			if n > started[pick] || (n == started[pick] && (k.tenant+k.week) < (pick.tenant+pick.week)) {
				pick = k
			}
		}
		tn, _ := set.Get(pick.tenant)
		loc := tn.Location()
		wk, err := period.Week(pick.week, loc)
		if err != nil {
			t.Fatal(err)
		}
		prevWeek := period.WeekOf(wk.From.AddDate(0, 0, -7), loc)
		trendFrom := wk.From.AddDate(0, 0, -7*11)
		t.Logf("report of %s for %s (%d conversations), previous %s", pick.tenant, pick.week, started[pick], prevWeek)

		// Ground truth from the generated events, by my own loops.
		inWeek := func(e *event.Event) bool {
			return e.Tenant == pick.tenant && !e.Time().Before(wk.From) && e.Time().Before(wk.To)
		}
		sessions, leads, followUps := 0, 0, 0
		lowConf := map[string]int{}
		for i := range evs {
			e := &evs[i]
			if (e.Type == event.AppointmentAttended || e.Type == event.AppointmentNoShow) && e.Tenant == pick.tenant &&
				!e.Time().Before(trendFrom) && e.Time().Before(wk.To) {
				followUps++
			}
			if !inWeek(e) {
				continue
			}
			switch e.Type {
			case event.SessionStarted:
				sessions++
			case event.LeadCreated:
				leads++
			}
			if e.Confidence != nil && *e.Confidence < 0.6 { // the config's default low_confidence
				lowConf[e.Intent]++
			}
		}
		if leads == 0 || len(lowConf) == 0 {
			t.Fatalf("the week has %d leads and %d low-confidence intents: the test would prove little", leads, len(lowConf))
		}

		cfg := writeConfig(t, es, alias, "")
		dir := t.ArtifactDir()
		html := filepath.Join(dir, "report.html")
		if _, stderr, err := runAudit(t, "report", "--config", cfg, "--week", pick.week, "--tenant", pick.tenant, "--out", html); err != nil {
			t.Fatalf("audit report: %v\n%s", err, stderr)
		}
		cur := auditKPI(t, "--config", cfg, "--week", pick.week, "--tenant", pick.tenant)
		prev := auditKPI(t, "--config", cfg, "--week", prevWeek, "--tenant", pick.tenant)
		channels := auditKPI(t, "--config", cfg, "--week", pick.week, "--tenant", pick.tenant, "--by", "channel")
		trend := auditKPI(t, "--config", cfg, "--tenant", pick.tenant, "--by", "week",
			"--from", trendFrom.Format("2006-01-02"), "--to", wk.To.AddDate(0, 0, -1).Format("2006-01-02"))

		for _, size := range []struct {
			name          string
			width, height int64
		}{{"phone", 390, 844}, {"desktop", 1024, 768}} {
			p := openInChromium(t, browser, html, size.width, size.height)
			png := filepath.Join(dir, "report-"+size.name+".png")
			if err := os.WriteFile(png, p.PNG, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s screenshot: %s (kept with go test -artifacts)", size.name, png)
			for _, pr := range p.Problems {
				t.Errorf("%s: %s", size.name, pr)
			}
			if p.ScrollWidth > p.InnerWidth {
				t.Errorf("%s: the page is %v px wide in a %v px viewport: it does not fit", size.name, p.ScrollWidth, p.InnerWidth)
			}
			want := map[string]bool{"trend": true, "funnel": true, "channels": true, "low_confidence": true, "no_shows": followUps > 0}
			for _, c := range p.Charts {
				if !want[c.ID] {
					t.Errorf("%s: chart %q drawn, not expected", size.name, c.ID)
				}
				delete(want, c.ID)
				if c.Width <= 0 || c.Height <= 0 || c.Drawn == 0 {
					t.Errorf("%s: chart %q is %vx%v with %d of %d marks drawn", size.name, c.ID, c.Width, c.Height, c.Drawn, c.Marks)
				}
			}
			for id, expected := range want {
				if expected {
					t.Errorf("%s: chart %q missing", size.name, id)
				}
			}
		}

		p := openInChromium(t, browser, html, 1024, 768)
		if p.Lang != "ru" || !strings.Contains(p.Text, "Неделя "+pick.week) || !strings.Contains(p.Text, "Показатели недели") {
			t.Errorf("not the Russian report: lang %q, text starts %.200q", p.Lang, p.Text)
		}

		// Every KPI shown, this week's and the week before's, is audit kpi's.
		seen := map[string]int{}
		for _, s := range p.KPIs {
			var src map[string]any
			switch s.Week {
			case "cur":
				src = cur.Total
			case "prev":
				src = prev.Total
			default:
				t.Errorf("KPI %s without its week", s.Key)
				continue
			}
			want, ok := src[s.Key]
			if !ok {
				t.Errorf("KPI %q shown, audit kpi has no such key", s.Key)
				continue
			}
			if !sameNumber(s.Value, want) {
				t.Errorf("KPI %s (%s): the page shows %q (%s), audit kpi %v", s.Key, s.Week, s.Value, s.Text, want)
			}
			seen[s.Key+"/"+s.Week]++
		}
		for _, k := range []string{"sessions", "contact_requested", "leads", "booked", "confirmed", "attended", "no_shows",
			"conversion", "confirmed_share", "no_show_rate", "response_mean_ms", "response_median_ms", "manager_wait_mean_ms", "manager_wait_median_ms"} {
			if seen[k+"/cur"] == 0 || seen[k+"/prev"] == 0 {
				t.Errorf("KPI %s: shown %d times for this week, %d for the previous", k, seen[k+"/cur"], seen[k+"/prev"])
			}
		}

		// The counts against the raw events, and how they read.
		for _, s := range p.KPIs {
			if s.Week != "cur" || s.Tag != "TD" { // the table's cells; the cards hold more words
				continue
			}
			switch s.Key {
			case "sessions":
				if s.Value != strconv.Itoa(sessions) || strings.ReplaceAll(s.Text, "\u00a0", "") != strconv.Itoa(sessions) {
					t.Errorf("conversations: shown %q (%q), the events have %d", s.Value, s.Text, sessions)
				}
			case "leads":
				if s.Value != strconv.Itoa(leads) {
					t.Errorf("leads: shown %q, the events have %d", s.Value, leads)
				}
			case "conversion":
				v, _ := strconv.ParseFloat(s.Value, 64)
				if want := strings.TrimSuffix(strings.TrimSuffix(strconv.FormatFloat(v*100, 'f', 1, 64), ".0"), ".") + "\u00a0%"; s.Text != strings.Replace(want, ".", ",", 1) {
					t.Errorf("conversion %v reads %q, want %q", v, s.Text, strings.Replace(want, ".", ",", 1))
				}
			}
		}

		// The trend: twelve weeks, each audit kpi's week row (a week without
		// events is zeros and no shares).
		byWeek := map[string]map[string]any{}
		for _, g := range trend.Groups {
			byWeek[g["key"].(string)] = g
		}
		weeks := map[string]bool{}
		for _, s := range p.Trend {
			weeks[s.Group] = true
			g, ok := byWeek[s.Group]
			var want any
			if ok {
				want = g[s.Key]
			} else if !strings.Contains(s.Key, "rate") && !strings.Contains(s.Key, "conversion") && !strings.Contains(s.Key, "share") {
				want = 0.0
			}
			if !sameNumber(s.Value, want) {
				t.Errorf("trend %s %s: shown %q, audit kpi %v", s.Group, s.Key, s.Value, want)
			}
		}
		if len(weeks) != 12 || !weeks[pick.week] || !weeks[prevWeek] {
			t.Errorf("trend weeks %v: want 12 up to %s", weeks, pick.week)
		}
		for w := range byWeek {
			if !weeks[w] {
				t.Errorf("audit kpi has week %s, the trend does not", w)
			}
		}

		// Channels.
		byChannel := map[string]map[string]any{}
		for _, g := range channels.Groups {
			byChannel[g["key"].(string)] = g
		}
		shownChannels := map[string]bool{}
		for _, s := range p.Channels {
			shownChannels[s.Group] = true
			if want, ok := byChannel[s.Group][s.Key]; !ok || !sameNumber(s.Value, want) {
				t.Errorf("channel %s %s: shown %q, audit kpi %v", s.Group, s.Key, s.Value, want)
			}
		}
		if len(shownChannels) != len(byChannel) {
			t.Errorf("channels shown %v, audit kpi has %d", shownChannels, len(byChannel))
		}

		// Low-confidence turns per intent, against the events.
		got := map[string]int{}
		for _, s := range p.LowConf {
			n, _ := strconv.Atoi(s.Value)
			got[s.Group] = n
		}
		if len(got) != len(lowConf) {
			t.Errorf("low-confidence intents: shown %v, the events have %v", got, lowConf)
		}
		for intent, n := range lowConf {
			if got[intent] != n {
				t.Errorf("low-confidence %s: shown %d, the events have %d", intent, got[intent], n)
			}
		}
		if p.Reconcile != "off" {
			t.Errorf("reconciliation %q without a CRM hook, want off", p.Reconcile)
		}
		if !containsRule(p.Rules, "low_confidence") {
			t.Errorf("what to look at next %v lacks the low-confidence intent", p.Rules)
		}

		// English on request.
		en := filepath.Join(dir, "report-en.html")
		if _, stderr, err := runAudit(t, "report", "--config", cfg, "--week", pick.week, "--tenant", pick.tenant, "--out", en, "--lang", "en"); err != nil {
			t.Fatalf("audit report --lang en: %v\n%s", err, stderr)
		}
		pe := openInChromium(t, browser, en, 1024, 768)
		if pe.Lang != "en" || !strings.Contains(pe.Text, "This week's numbers") || len(pe.Problems) > 0 {
			t.Errorf("English report: lang %q, problems %v", pe.Lang, pe.Problems)
		}

		// The Telegram summary.
		text, stderr, err := runAudit(t, "report", "--config", cfg, "--week", pick.week, "--tenant", pick.tenant, "--format", "text")
		if err != nil {
			t.Fatalf("audit report --format text: %v\n%s", err, stderr)
		}
		if !strings.Contains(text, "Неделя "+pick.week) || !strings.Contains(strings.ReplaceAll(text, "\u00a0", ""), "Диалоги: "+strconv.Itoa(sessions)+" ") ||
			regexp.MustCompile(`<[a-z]`).MatchString(text) {
			t.Errorf("text summary:\n%s", text)
		}
		t.Logf("text summary:\n%s", text)
	})
}

func containsRule(rules []string, r string) bool {
	for _, x := range rules {
		if x == r {
			return true
		}
	}
	return false
}

// TestReportLocale: Russian and English numbers, shares, dates and
// durations as an owner reads them.
func TestReportLocale(t *testing.T) {
	ru, _ := newLocale("")
	en, _ := newLocale("en")
	loc := time.FixedZone("UTC+5", 5*3600)
	day := func(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, loc) }
	for _, c := range []struct{ got, want string }{
		{ru.int(0), "0"},
		{ru.int(999), "999"},
		{ru.int(1234), "1\u00a0234"},
		{ru.int(1234567), "1\u00a0234\u00a0567"},
		{ru.int(-1234), "−1\u00a0234"},
		{en.int(1234567), "1,234,567"},
		{ru.percent(0.125), "12,5\u00a0%"},
		{ru.percent(1), "100\u00a0%"},
		{ru.percent(0.41234), "41,2\u00a0%"},
		{en.percent(0.125), "12.5%"},
		{ru.decimal(1234.5, 1), "1\u00a0234,5"},
		{ru.points(0.025), "+2,5\u00a0п.\u00a0п."},
		{ru.points(-0.1), "−10\u00a0п.\u00a0п."},
		{ru.span(day(2026, 11, 16), day(2026, 11, 23)), "16–22\u00a0ноября 2026"},
		{ru.span(day(2026, 11, 30), day(2026, 12, 7)), "30\u00a0ноября – 6\u00a0декабря 2026"},
		{ru.span(day(2025, 12, 29), day(2026, 1, 5)), "29\u00a0декабря 2025 – 4\u00a0января 2026"},
		{en.span(day(2026, 11, 16), day(2026, 11, 23)), "16–22\u00a0November 2026"},
		{ru.duration(870 * time.Millisecond), "0,9\u00a0с"},
		{ru.duration(45 * time.Second), "45\u00a0с"},
		{ru.duration(125 * time.Second), "2\u00a0мин 05\u00a0с"},
		{ru.duration(80 * time.Minute), "1\u00a0ч 20\u00a0мин"},
		{en.duration(125 * time.Second), "2\u00a0min 05\u00a0s"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
	if _, err := newLocale("de"); err == nil {
		t.Error("--lang de accepted")
	}
	// Every phrase has both languages.
	r, e := wordsRU(), wordsEN()
	for k := range r {
		if _, ok := e[k]; !ok {
			t.Errorf("%q has no English", k)
		}
	}
	for k := range e {
		if _, ok := r[k]; !ok {
			t.Errorf("%q has no Russian", k)
		}
	}
}

// TestReportNextSteps: each rule of "what to look at next" fires on the
// numbers that call for it, and only then.
func TestReportNextSteps(t *testing.T) {
	ru, _ := newLocale("ru")
	wait := 7 * time.Minute
	rate := func(n, d int64) kpi.Row { return kpi.Row{NoShowRate: kpi.Ratio{Num: n, Den: d}} }
	m := &reportModel{loc: ru,
		Cur:  kpi.Row{Leads: 20, Conversion: kpi.Ratio{Num: 10, Den: 20}, NoShowRate: kpi.Ratio{Num: 3, Den: 10}, ManagerWaitMean: &wait},
		Prev: kpi.Row{Leads: 20, Conversion: kpi.Ratio{Num: 14, Den: 20}, NoShowRate: kpi.Ratio{Num: 1, Den: 10}},
		Channels: []kpi.Row{
			{Key: "whatsapp", Leads: 10, Conversion: kpi.Ratio{Num: 7, Den: 10}},
			{Key: "instagram", Leads: 8, Conversion: kpi.Ratio{Num: 2, Den: 8}},
			{Key: "phone", Leads: 2, Conversion: kpi.Ratio{Num: 0, Den: 2}}, // too few leads to judge
		},
		Trend:     []trendWeek{{Row: rate(1, 20)}, {Row: rate(2, 20)}, {Row: rate(3, 20)}, {Row: rate(4, 20)}},
		LowConf:   []intentCount{{"BookAppointment", 12}, {"FindProvider", 3}},
		Reconcile: &reconcileSummary{Logged: 20, InCRM: 18, Lost: 2},
		Reviews:   []reviewCause{{"wrong slot", 2}, {"price unclear", 5}},
	}
	got := nextSteps(m)
	var rules []string
	for _, a := range got {
		rules = append(rules, a.Rule)
	}
	want := []string{"reconcile", "conversion_down", "worst_channel", "no_shows_up", "no_shows_streak", "manager_wait", "low_confidence", "review_cause"}
	if strings.Join(rules, ",") != strings.Join(want, ",") {
		t.Fatalf("rules %v, want %v", rules, want)
	}
	texts := map[string]string{}
	for _, a := range got {
		texts[a.Rule] = a.Text
	}
	for rule, part := range map[string]string{
		"worst_channel":   "«instagram»",
		"no_shows_streak": "3 недели",
		"low_confidence":  "«BookAppointment»: 12",
		"review_cause":    "«price unclear» (5)",
		"reconcile":       "2 заявок",
	} {
		if !strings.Contains(texts[rule], part) {
			t.Errorf("%s: %q lacks %q", rule, texts[rule], part)
		}
	}

	// A good week: nothing to flag.
	calm := &reportModel{loc: ru,
		Cur:      kpi.Row{Leads: 20, Conversion: kpi.Ratio{Num: 15, Den: 20}, NoShowRate: kpi.Ratio{Num: 1, Den: 10}},
		Prev:     kpi.Row{Leads: 20, Conversion: kpi.Ratio{Num: 14, Den: 20}, NoShowRate: kpi.Ratio{Num: 2, Den: 10}},
		Channels: []kpi.Row{{Key: "whatsapp", Leads: 20, Conversion: kpi.Ratio{Num: 15, Den: 20}}},
		Trend:    []trendWeek{{Row: rate(2, 10)}, {Row: rate(1, 10)}},
	}
	if got := nextSteps(calm); len(got) != 0 {
		t.Errorf("a calm week flags %v", got)
	}
}

// TestReportCharts: the drawn marks carry the values, scaled to the axis,
// and a missing share is no mark rather than a zero.
func TestReportCharts(t *testing.T) {
	s := chartSeries{key: "conversion", name: "c", vals: []value{{0.5, true}, {}, {0.25, true}}}
	svg := string(lineChart("trend", "t", []string{"a", "b", "c"}, []chartSeries{s}, 1, 4, func(f float64) string { return "x" }))
	marks := regexp.MustCompile(`<circle class="mark"[^>]*data-value="([^"]*)" cx="([^"]*)" cy="([^"]*)"`).FindAllStringSubmatch(svg, -1)
	if len(marks) != 2 || marks[0][1] != "0.5" || marks[1][1] != "0.25" {
		t.Fatalf("marks %v", marks)
	}
	y0, _ := strconv.ParseFloat(marks[0][3], 64)
	y1, _ := strconv.ParseFloat(marks[1][3], 64)
	if !(y0 < y1) { // higher value, higher on the page
		t.Errorf("0.5 drawn at y=%v, 0.25 at y=%v", y0, y1)
	}
	if d := regexp.MustCompile(`class="line" d="([^"]*)"`).FindStringSubmatch(svg); d == nil || strings.Count(d[1], "M") != 2 || strings.Contains(d[1], "L") {
		t.Errorf("the missing week should break the line into two: %s", svg)
	}
	bars := string(barChart("funnel", "f", []string{"x", "y"}, []chartSeries{{key: "n", vals: []value{{100, true}, {25, true}}}}, func(f float64) string { return "" }))
	ws := regexp.MustCompile(`class="mark"[^>]*width="([^"]*)"`).FindAllStringSubmatch(bars, -1)
	if len(ws) != 2 {
		t.Fatalf("bars %v", ws)
	}
	w0, _ := strconv.ParseFloat(ws[0][1], 64)
	w1, _ := strconv.ParseFloat(ws[1][1], 64)
	if math.Abs(w0/w1-4) > 0.01 {
		t.Errorf("bars of 100 and 25 are %v and %v wide", w0, w1)
	}
	for _, c := range []struct {
		in    float64
		top   float64
		steps int
	}{{0.05, 0.05, 5}, {0.7, 1, 5}, {0.912, 1, 5}, {0.18, 0.2, 4}, {0.22, 0.25, 5}, {3, 5, 5}} {
		if top, steps := niceMax(c.in); math.Abs(top-c.top) > 1e-12 || steps != c.steps {
			t.Errorf("niceMax(%v) = %v, %d; want %v, %d", c.in, top, steps, c.top, c.steps)
		}
	}
}

// TestReportCommandLine: help that teaches, and clear errors before any
// search for a bad week, tenant, language or format.
func TestReportCommandLine(t *testing.T) {
	cfg := writeConfig(t, "http://127.0.0.1:1", "nowhere", "")
	_, help, err := runAudit(t, "report", "--help")
	if err != nil || !strings.Contains(help, "audit report --week 2026-W47 --tenant salon-aurora --out report.html") || !strings.Contains(help, "--format text") {
		t.Errorf("report --help: %v\n%s", err, help)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--week", "2026-W60", "--tenant", "salon-aurora"}, "has no week 60"},
		{[]string{"--week", "2026-47", "--tenant", "salon-aurora"}, "not an ISO week"},
		{[]string{"--week", "2026-W47", "--tenant", "salon-nowhere"}, `unknown tenant "salon-nowhere"`},
		{[]string{"--week", "2026-W47", "--lang", "de"}, "--lang"},
		{[]string{"--week", "2026-W47", "--format", "csv"}, "--format: html or text"},
		{[]string{"--week", "2026-W47", "--weeks", "1"}, "--weeks"},
	} {
		_, _, err := runAudit(t, append([]string{"report", "--config", cfg}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("report %v: error %v, want %q", c.args, err, c.want)
		}
	}
}

// TestReportHooksRender: with the CRM and review hooks wired, the lost
// leads and the causes are shown; without them the sections say so.
func TestReportHooksRender(t *testing.T) {
	ru, _ := newLocale("ru")
	loc := time.FixedZone("UTC+5", 5*3600)
	m := &reportModel{loc: ru, Title: "Салон", Week: "2026-W47", PrevWeek: "2026-W46",
		From: time.Date(2026, 11, 16, 0, 0, 0, 0, loc), To: time.Date(2026, 11, 23, 0, 0, 0, 0, loc), Generated: time.Date(2026, 11, 23, 9, 0, 0, 0, loc),
		ReconcileOn: true, Reconcile: &reconcileSummary{Logged: 1234, InCRM: 1230, Lost: 4},
		ReviewsOn: true, Reviews: []reviewCause{{"не тот слот", 3}}, LowConfThreshold: 0.6}
	m.Next = nextSteps(m)
	var b strings.Builder
	if err := m.writeHTML(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`data-reconcile="bad"`, "Заявок в журнале: 1\u00a0234, найдено в Bitrix24: 1\u00a0230, потеряно: 4.",
		`<tr data-cause="не тот слот"><td>не тот слот</td><td class="num" data-value="3">3</td></tr>`, "16–22\u00a0ноября 2026"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	off := &reportModel{loc: ru, Title: "Салон", From: m.From, To: m.To, Generated: m.Generated}
	b.Reset()
	if err := off.writeHTML(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`data-reconcile="off"`, "не настроена", "Разборы диалогов не подключены."} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("the page without hooks lacks %q", want)
		}
	}
	var text strings.Builder
	if err := m.writeText(&text); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "потеряно: 4") || !strings.Contains(text.String(), "• 4 заявок не дошли до Bitrix24") {
		t.Errorf("text:\n%s", text.String())
	}
}
