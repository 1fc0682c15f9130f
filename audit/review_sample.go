package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/assistlog/assistlog/internal/output"
)

const reviewSampleHelp = `audit review sample — pick the week's conversations to review and write the review sheet.

Usage: audit review sample --week 2026-W47 [--size 15] [--threshold 0.6] [--tenant NAME]
                           [--out review-2026-W47.csv] [--md review-2026-W47.md] [--force]

Candidates are the conversations with at least one turn below the threshold in the week (each
tenant's week in its own zone). The sample is deterministic — the same week over the same data
gives the same conversations — and spread over tenants and, within a tenant, over intents (the
intent of the conversation's least confident turn).

The sheet has one row per conversation: the link to the transcript, the low-confidence turns
(time in the tenant's zone, intent, confidence, the text as stored, personal data masked) and the
empty columns to fill: cause (nlp_miss, bad_scenario, technical_failure or other) and note. The
CSV is UTF-8 with a byte order mark, so Excel and Google Sheets show Cyrillic correctly; save it
as CSV again (Excel: "CSV UTF-8"; commas or semicolons both import) and run audit review import.
Existing files are not overwritten without --force. The rows are also written to stdout in
--format.

Examples:
  audit review sample --week 2026-W47
  audit review sample --week 2026-W47 --size 20 --tenant salon-aurora --out aurora-w47.csv --md -

Flags:
`

// sheetColumns are the review sheet's columns; import reads week, tenant,
// session_id, threshold, cause and note.
var sheetColumns = []string{"n", "week", "tenant", "session_id", "channel", "conversation_url", "intent", "min_confidence",
	"low_turns", "turns", "threshold", "cause", "note"}

func runReviewSample(ctx context.Context, a *app, args []string) error {
	var c common
	var r reviewFlags
	fset := flag.NewFlagSet("review sample", flag.ContinueOnError)
	fset.SetOutput(a.stderr)
	c.flags(fset, false, nil)
	r.register(fset)
	fset.Usage = func() { fmt.Fprint(a.stderr, reviewSampleHelp); fset.PrintDefaults() }
	pos, help, err := parse(fset, args)
	if help {
		return nil
	}
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("audit review sample takes no arguments, got %q", pos)
	}
	if err := output.CheckFormat(c.format, nil); err != nil {
		return err
	}
	if r.size < 1 {
		return fmt.Errorf("--size: at least 1, got %d", r.size)
	}
	e, err := c.load(true)
	if err != nil {
		return err
	}
	threshold, err := thresholdValue(r.threshold, e.cfg)
	if err != nil {
		return err
	}
	ws, err := weekWindows(&c, e, r.week)
	if err != nil {
		return err
	}
	if r.out == "" {
		r.out = "review-" + r.week + ".csv"
	}
	if r.md == "" {
		r.md = "review-" + r.week + ".md"
	}
	for _, p := range []string{r.out, r.md} {
		if p == "-" || r.force {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return fmt.Errorf("%s exists (perhaps a filled-in sheet); pass --force to overwrite it or choose another --out/--md", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	fmt.Fprintf(a.stderr, "reading the turns below %g in %s…\n", threshold, r.week)
	convs, err := lowConversations(ctx, e, ws, threshold, nil)
	if err != nil {
		return err
	}
	picked := sample(r.week, convs, r.size)
	sheet := reviewSheet(e, r.week, threshold, picked)
	if r.out != "-" {
		var b bytes.Buffer
		if err := sheet.CSV(&b, true); err != nil {
			return err
		}
		if err := os.WriteFile(r.out, b.Bytes(), 0o644); err != nil {
			return fmt.Errorf("write the review sheet: %w", err)
		}
	}
	if r.md != "-" {
		md := reviewMarkdown(e, r.week, threshold, len(convs), picked)
		if err := os.WriteFile(r.md, []byte(md), 0o644); err != nil {
			return fmt.Errorf("write the Markdown sheet: %w", err)
		}
	}
	fmt.Fprintf(a.stderr, "%s: %d conversations with a turn below %g; sampled %d", r.week, len(convs), threshold, len(picked))
	for _, p := range []string{r.out, r.md} {
		if p != "-" {
			fmt.Fprintf(a.stderr, " → %s", p)
		}
	}
	fmt.Fprintln(a.stderr)
	if c.format == "table" {
		// The terminal gets what identifies each conversation; the
		// files have everything.
		short := output.Table{Columns: []string{"n", "tenant", "session_id", "channel", "intent", "min_confidence", "low_turns", "turns"}, Width: 70}
		for _, r := range sheet.Rows {
			short.Add(r[0], r[2], r[3], r[4], r[6], r[7], r[8], r[9])
		}
		return short.Write(a.stdout, c.format)
	}
	return sheet.Write(a.stdout, c.format)
}

// reviewSheet is the sheet's rows.
func reviewSheet(e *env, week string, threshold float64, picked []*conversation) output.Table {
	t := output.Table{Columns: sheetColumns}
	for i, c := range picked {
		loc := c.Tenant.Location()
		var turns []string
		for _, tn := range c.Turns {
			turns = append(turns, fmt.Sprintf("%s · %s · %.3f · %s", tn.At.In(loc).Format("02.01 15:04"), orNone(tn.Intent),
				tn.Confidence, tn.Text))
		}
		t.Add(strconv.Itoa(i+1), week, c.Tenant.Name, c.SessionID, c.Channel, e.conversationLink(c.Tenant.Name, c.SessionID),
			c.Intent(), strconv.FormatFloat(c.MinConfidence(), 'f', 3, 64), strconv.Itoa(len(c.Turns)), strings.Join(turns, "\n"),
			strconv.FormatFloat(threshold, 'f', -1, 64), "", "")
	}
	return t
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// reviewMarkdown is the sheet to read: what to do, then each conversation
// with its turns.
func reviewMarkdown(e *env, week string, threshold float64, candidates int, picked []*conversation) string {
	var b strings.Builder
	esc := strings.NewReplacer("|", `\|`, "\n", " ", "\r", " ")
	fmt.Fprintf(&b, "# Разбор диалогов с низкой уверенностью — %s\n\n", week)
	fmt.Fprintf(&b, "Диалогов с репликой ниже порога %g: **%d**; в выборке **%d** (по клиентам и интентам, воспроизводимо).\n\n",
		threshold, candidates, len(picked))
	b.WriteString("Откройте переписку по ссылке, определите причину и впишите её в колонку `cause` CSV-файла, пояснение — в `note`:\n\n")
	b.WriteString("- `nlp_miss` — ассистент не понял клиента (интент распознан неверно или неуверенно);\n")
	b.WriteString("- `bad_scenario` — понял, но сценарий повёл разговор не туда;\n")
	b.WriteString("- `technical_failure` — сбой: ошибка, таймаут, недоступная система записи;\n")
	b.WriteString("- `other` — другое (опишите в `note`).\n\n")
	b.WriteString("Затем: `audit review import ФАЙЛ.csv`.\n\n")
	for i, c := range picked {
		loc := c.Tenant.Location()
		fmt.Fprintf(&b, "## %d. %s · %s · %s\n\n", i+1, c.Tenant.Title, c.SessionID, c.Channel)
		fmt.Fprintf(&b, "[Открыть переписку](<%s>) · клиент `%s` · интент `%s` · минимум %.3f\n\n", e.conversationLink(c.Tenant.Name, c.SessionID),
			c.Tenant.Name, c.Intent(), c.MinConfidence())
		b.WriteString("| время (" + c.Tenant.TZ + ") | intent | confidence | текст |\n|---|---|---|---|\n")
		for _, tn := range c.Turns {
			fmt.Fprintf(&b, "| %s | %s | %.3f | %s |\n", tn.At.In(loc).Format(time.DateTime), esc.Replace(orNone(tn.Intent)), tn.Confidence, esc.Replace(tn.Text))
		}
		b.WriteString("\ncause: ______ · note: ______\n\n")
	}
	return b.String()
}
