package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// nbsp joins a number to its unit and groups thousands in Russian text,
// so "12,5 %" or "1 234" never breaks across lines on a phone.
const nbsp = "\u00a0"

// locale formats numbers, dates and durations and holds the report's
// words in one language.
type locale struct {
	lang  string
	words map[string]string
}

// newLocale returns the Russian or English locale; lang "" is Russian,
// the owners' language.
func newLocale(lang string) (locale, error) {
	switch lang {
	case "", "ru":
		return locale{lang: "ru", words: wordsRU()}, nil
	case "en":
		return locale{lang: "en", words: wordsEN()}, nil
	}
	return locale{}, fmt.Errorf("--lang: %q is not ru or en", lang)
}

// t is the phrase for key; a key without one is shown as is, so a missing
// translation is visible rather than blank.
func (l locale) t(key string) string {
	if s, ok := l.words[key]; ok {
		return s
	}
	return key
}

// tf formats the phrase for key with args.
func (l locale) tf(key string, args ...any) string { return fmt.Sprintf(l.t(key), args...) }

// int formats a whole number with grouped thousands: "12 345" (with a
// non-breaking space) in Russian, "12,345" in English.
func (l locale) int(n int64) string {
	s := strconv.FormatInt(abs64(n), 10)
	sep := ","
	if l.lang == "ru" {
		sep = nbsp
	}
	var b strings.Builder
	if n < 0 {
		b.WriteString("−")
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteString(sep)
		}
		b.WriteRune(c)
	}
	return b.String()
}

func abs64(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}

// decimal formats x with up to prec decimals (trailing zeros dropped),
// a decimal comma and grouped thousands in Russian.
func (l locale) decimal(x float64, prec int) string {
	s := strconv.FormatFloat(math.Abs(x), 'f', prec, 64)
	intPart, frac, _ := strings.Cut(s, ".")
	frac = strings.TrimRight(frac, "0")
	n, _ := strconv.ParseInt(intPart, 10, 64)
	out := l.int(n)
	if frac != "" {
		if l.lang == "ru" {
			out += "," + frac
		} else {
			out += "." + frac
		}
	}
	if x < 0 && out != "0" {
		out = "−" + out
	}
	return out
}

// percent formats a share (0.125) as "12,5 %" / "12.5%".
func (l locale) percent(share float64) string {
	if l.lang == "ru" {
		return l.decimal(share*100, 1) + nbsp + "%"
	}
	return l.decimal(share*100, 1) + "%"
}

// points formats a change of a share in percentage points: "+2,5 п. п.".
func (l locale) points(delta float64) string {
	s := l.decimal(delta*100, 1)
	if delta > 0 {
		s = "+" + s
	}
	if l.lang == "ru" {
		return s + nbsp + "п." + nbsp + "п."
	}
	return s + " pp"
}

// duration formats a wait a person reads: "45 с", "2 мин 05 с", "1 ч 20 мин".
func (l locale) duration(d time.Duration) string {
	sec, min, hour := "s", "min", "h"
	if l.lang == "ru" {
		sec, min, hour = "с", "мин", "ч"
	}
	if d < 10*time.Second {
		return l.decimal(d.Seconds(), 1) + nbsp + sec
	}
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%d%s%s", int(d.Seconds()), nbsp, sec)
	case d < time.Hour:
		return fmt.Sprintf("%d%s%s %02d%s%s", int(d.Minutes()), nbsp, min, int(d.Seconds())%60, nbsp, sec)
	}
	return fmt.Sprintf("%d%s%s %02d%s%s", int(d.Hours()), nbsp, hour, int(d.Minutes())%60, nbsp, min)
}

// monthsGenitive are the month names as they follow a day number.
func (l locale) month(m time.Month) string {
	if l.lang == "ru" {
		return [...]string{"января", "февраля", "марта", "апреля", "мая", "июня", "июля",
			"августа", "сентября", "октября", "ноября", "декабря"}[m-1]
	}
	return m.String()
}

// span formats the days [from, to) — to is the exclusive end, as in a
// period.Range — like "16–22 ноября 2026", "30 ноября – 6 декабря 2026"
// or "29 декабря 2025 – 4 января 2026".
func (l locale) span(from, to time.Time) string {
	last := to.AddDate(0, 0, -1)
	if !to.After(from) || last.Before(from) {
		last = from
	}
	day := func(t time.Time) string { return strconv.Itoa(t.Day()) + nbsp + l.month(t.Month()) }
	switch {
	case from.Year() != last.Year():
		return day(from) + " " + strconv.Itoa(from.Year()) + " – " + day(last) + " " + strconv.Itoa(last.Year())
	case from.Month() != last.Month():
		return day(from) + " – " + day(last) + " " + strconv.Itoa(last.Year())
	case from.Day() != last.Day():
		return strconv.Itoa(from.Day()) + "–" + day(last) + " " + strconv.Itoa(last.Year())
	}
	return day(from) + " " + strconv.Itoa(from.Year())
}

// short formats a week's first day for a chart axis: "16.11" / "11/16".
func (l locale) short(t time.Time) string {
	if l.lang == "ru" {
		return t.Format("02.01")
	}
	return t.Format("01/02")
}

// stamp formats when the report was made: "27 ноября 2026, 13:05".
func (l locale) stamp(t time.Time) string {
	return strconv.Itoa(t.Day()) + nbsp + l.month(t.Month()) + " " + strconv.Itoa(t.Year()) + ", " + t.Format("15:04")
}

func wordsRU() map[string]string {
	return map[string]string{
		"title":                  "Еженедельный отчёт",
		"week":                   "Неделя %s",
		"generated":              "Сформирован %s (%s)",
		"kpis":                   "Показатели недели",
		"kpi":                    "Показатель",
		"this_week":              "Эта неделя",
		"prev_week":              "Прошлая неделя",
		"change":                 "Изменение",
		"sessions":               "Диалоги",
		"contact_requested":      "Запрошен контакт",
		"leads":                  "Заявки (лиды)",
		"confirmed":              "Подтверждённые записи",
		"attended":               "Пришли",
		"no_shows":               "Неявки",
		"conversion":             "Конверсия: заявка → запись",
		"confirmed_share":        "Доля подтверждённых записей",
		"no_show_rate":           "Доля неявок",
		"response_mean_ms":       "Время ответа ассистента (среднее)",
		"response_median_ms":     "Время ответа ассистента (медиана)",
		"manager_wait_mean_ms":   "Ожидание менеджера (среднее)",
		"manager_wait_median_ms": "Ожидание менеджера (медиана)",
		"booked":                 "Диалоги с записью",
		"none":                   "—",
		"trend":                  "Динамика за %d недель",
		"trend_note":             "Конверсия и доля подтверждённых записей по неделям.",
		"funnel":                 "Воронка недели",
		"funnel_note":            "Сколько диалогов дошло до каждого шага; в скобках — доля от всех диалогов.",
		"channels":               "События по каналам",
		"channel":                "Канал",
		"noshow_trend":           "Неявки по неделям",
		"noshow_note":            "Доля неявок среди записей, у которых известен итог (пришёл или не пришёл).",
		"reconcile":              "Сверка с Bitrix24",
		"reconcile_off":          "не настроена: заполните раздел crm в конфигурации audit.",
		"reconcile_line":         "Заявок в журнале: %s, найдено в Bitrix24: %s, потеряно: %s.",
		"reconcile_ok":           "Все заявки недели дошли до Bitrix24.",
		"reconcile_err":          "Сверку выполнить не удалось: %s",
		"lowconf":                "Неуверенное распознавание",
		"lowconf_note":           "Реплики клиентов с уверенностью ниже %s по намерениям.",
		"lowconf_none":           "Реплик с низкой уверенностью за неделю нет.",
		"intent":                 "Намерение",
		"turns":                  "Реплик",
		"reviews":                "Причины по итогам разборов",
		"reviews_none":           "Разборов диалогов за неделю нет.",
		"reviews_off":            "Разборы диалогов не подключены.",
		"cause":                  "Причина",
		"count":                  "Случаев",
		"next":                   "На что посмотреть дальше",
		"next_none":              "Явных проблем в цифрах недели не видно.",
		"next_channel":           "Канал «%s» с самой низкой конверсией: %s (заявок: %s). Проверьте сценарий записи в нём.",
		"next_noshow_up":         "Неявок стало больше: %s против %s неделей раньше (%s). Стоит напоминать о записи накануне.",
		"next_noshow_streak":     "Доля неявок растёт %d недели подряд.",
		"next_lowconf":           "Больше всего неуверенных ответов в намерении «%s»: %s. Дополните примеры фраз для него.",
		"next_conv_down":         "Конверсия упала: %s против %s (%s).",
		"next_wait":              "Клиенты ждут менеджера в среднем %s. Проверьте, кто дежурит в чате.",
		"next_reconcile":         "%s заявок не дошли до Bitrix24 — откройте `audit reconcile` за эту неделю.",
		"next_review":            "Частая причина в разборах: «%s» (%s).",
		"no_data":                "Нет данных за этот период.",
		"of_total":               "от диалогов",
		"text_head":              "%s — неделя %s (%s)",
		"vs_prev":                "неделей раньше %s",
	}
}

func wordsEN() map[string]string {
	return map[string]string{
		"title":                  "Weekly report",
		"week":                   "Week %s",
		"generated":              "Generated %s (%s)",
		"kpis":                   "This week's numbers",
		"kpi":                    "Measure",
		"this_week":              "This week",
		"prev_week":              "Previous week",
		"change":                 "Change",
		"sessions":               "Conversations",
		"contact_requested":      "Contact requested",
		"leads":                  "Leads",
		"confirmed":              "Confirmed bookings",
		"attended":               "Attended",
		"no_shows":               "No-shows",
		"conversion":             "Conversion: lead → booking",
		"confirmed_share":        "Share of confirmed bookings",
		"no_show_rate":           "No-show rate",
		"response_mean_ms":       "Assistant response time (mean)",
		"response_median_ms":     "Assistant response time (median)",
		"manager_wait_mean_ms":   "Wait for a manager (mean)",
		"manager_wait_median_ms": "Wait for a manager (median)",
		"booked":                 "Conversations that booked",
		"none":                   "—",
		"trend":                  "The last %d weeks",
		"trend_note":             "Conversion and share of confirmed bookings per week.",
		"funnel":                 "This week's funnel",
		"funnel_note":            "How many conversations reached each step; in brackets, the share of all conversations.",
		"channels":               "Events by channel",
		"channel":                "Channel",
		"noshow_trend":           "No-shows per week",
		"noshow_note":            "No-shows among bookings whose outcome is known (attended or not).",
		"reconcile":              "Bitrix24 reconciliation",
		"reconcile_off":          "not configured: fill in the crm section of audit's config.",
		"reconcile_line":         "Leads in the log: %s, found in Bitrix24: %s, lost: %s.",
		"reconcile_ok":           "Every lead of the week reached Bitrix24.",
		"reconcile_err":          "Reconciliation failed: %s",
		"lowconf":                "Low-confidence intents",
		"lowconf_note":           "Customer turns classified with confidence below %s, by intent.",
		"lowconf_none":           "No low-confidence turns this week.",
		"intent":                 "Intent",
		"turns":                  "Turns",
		"reviews":                "Causes found in reviews",
		"reviews_none":           "No conversations were reviewed this week.",
		"reviews_off":            "Conversation reviews are not connected.",
		"cause":                  "Cause",
		"count":                  "Cases",
		"next":                   "What to look at next",
		"next_none":              "Nothing in this week's numbers stands out.",
		"next_channel":           "Channel %q converts worst: %s (leads: %s). Check its booking scenario.",
		"next_noshow_up":         "No-shows rose: %s against %s the week before (%s). Remind customers the day before.",
		"next_noshow_streak":     "The no-show rate has risen %d weeks in a row.",
		"next_lowconf":           "Most low-confidence turns are in intent %q: %s. Add example phrases for it.",
		"next_conv_down":         "Conversion fell: %s against %s (%s).",
		"next_wait":              "Customers wait %s for a manager on average. Check who is on duty in the chat.",
		"next_reconcile":         "%s leads did not reach Bitrix24 — run `audit reconcile` for this week.",
		"next_review":            "A frequent cause in reviews: %q (%s).",
		"no_data":                "No data for this period.",
		"of_total":               "of conversations",
		"text_head":              "%s — week %s (%s)",
		"vs_prev":                "the week before %s",
	}
}
