package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/assistlog/assistlog/internal/esread"
	"github.com/assistlog/assistlog/internal/event"
	"github.com/assistlog/assistlog/internal/output"
)

const exportUsage = `audit export — the stored events as a spreadsheet: CSV (UTF-8, with a BOM
for Excel on --excel) or JSON, one row per event, masked as stored (phone
numbers as "+7 9** ***-**-67" and a keyed hash; never a raw number).

Usage:
  audit export events PERIOD [--tenant T] [--type T1,T2] [--format csv|json] [--excel] > events.csv
  audit export kpi PERIOD [--tenant T] [--channel C] [--by week|…] [--excel] > kpi.csv

PERIOD is --week 2026-W47, --from 2026-11-16 --to 2026-11-22 (days included),
--month 2026-11 or --last 7d, in each tenant's own time zone (tenants file).
The columns are fixed and documented in docs/exports.md (events) and
docs/kpis.md (kpi: the same CSV as audit kpi --format csv), as is importing
into Google Sheets and Looker Studio.

Examples:
  audit export events --week 2026-W47 --excel > week47.csv
  audit export events --month 2026-11 --tenant salon-aurora --type lead.created,appointment.confirmed > leads.csv
  audit export events --last 1d --format json | jq length

Flags:
`

// exportColumns are the CSV header and JSON keys, in order; docs/exports.md
// lists them (a test holds the two equal). Add columns at the end only:
// sheets and Looker Studio sources refer to them by position or name.
var exportColumns = []string{
	"event_id", "timestamp_utc", "local_time", "time_zone", "tenant", "channel", "session_id",
	"event_type", "level", "intent", "confidence", "outcome", "crm_id", "crm_status",
	"user_id", "user_phone", "user_phone_hash", "latency_ms", "seq", "scenario_from", "scenario_to",
	"text", "payload",
}

// localLayout is how Google Sheets and Excel recognise a date-time.
const localLayout = "2006-01-02 15:04:05"

func runExport(ctx context.Context, a *app, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(a.stderr, exportUsage)
		if len(args) == 0 {
			return errors.New("export: say what to export: events (or see audit kpi --format csv)")
		}
		return nil
	}
	switch args[0] {
	case "events":
		return a.exportEvents(ctx, args[1:])
	case "kpi":
		return a.exportKPI(ctx, args[1:])
	}
	fmt.Fprint(a.stderr, exportUsage)
	return fmt.Errorf("export: unknown export %q (events)", args[0])
}

// exportKPI is audit kpi's CSV (one record per group and the total, with
// documented columns), with the BOM Excel needs on --excel.
func (a *app) exportKPI(ctx context.Context, args []string) error {
	var rest []string
	excel, format := false, false
	for _, arg := range args {
		switch {
		case arg == "--excel" || arg == "-excel":
			excel = true
			continue
		case arg == "--format" || arg == "-format" || strings.HasPrefix(arg, "--format=") || strings.HasPrefix(arg, "-format="):
			format = true
		}
		rest = append(rest, arg)
	}
	if !format {
		rest = append(rest, "--format", "csv")
	}
	if excel {
		// Buffered, so a failed run writes no lone BOM.
		var buf bytes.Buffer
		sub := &app{stdout: &buf, stderr: a.stderr, now: a.now}
		if err := runKPI(ctx, sub, rest); err != nil {
			return err
		}
		if buf.Len() == 0 {
			return nil // --help
		}
		if _, err := io.WriteString(a.stdout, "\ufeff"); err != nil {
			return err
		}
		_, err := a.stdout.Write(buf.Bytes())
		return err
	}
	return runKPI(ctx, a, rest)
}

func (a *app) exportEvents(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("audit export events", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	var c common
	formats := []string{"csv", "json"}
	c.flags(fs, true, formats)
	c.format = "csv"
	fs.Lookup("format").DefValue = "csv"
	excel := fs.Bool("excel", false, "start the CSV with a UTF-8 byte order mark, so Excel reads Cyrillic right")
	typeList := fs.String("type", "", "only these event types, comma-separated, e.g. lead.created,appointment.confirmed")
	fs.Usage = func() { fmt.Fprint(a.stderr, exportUsage); fs.PrintDefaults() }
	pos, help, err := parse(fs, args)
	switch {
	case help:
		return nil
	case err != nil:
		return err
	case len(pos) > 0:
		return fmt.Errorf("export events: unexpected argument %q", pos[0])
	}
	if err := output.CheckFormat(c.format, formats); err != nil {
		return err
	}
	if *excel && c.format != "csv" {
		return errors.New("--excel: only with --format csv")
	}
	var types []string
	for _, t := range strings.Split(*typeList, ",") {
		if t = strings.TrimSpace(t); t == "" {
			continue
		}
		if !slices.Contains(event.Types, event.Type(t)) {
			return fmt.Errorf("--type: unknown event type %q (docs/events.md lists them)", t)
		}
		types = append(types, t)
	}
	e, ws, err := c.loadWindows(a.now())
	if err != nil {
		return err
	}
	zones := map[string]*time.Location{}
	for _, w := range ws {
		zones[w.Tenant.Name] = w.Tenant.Location()
	}
	var typeFilter map[string]any
	if len(types) > 0 {
		typeFilter = terms("event_type", types...)
	}
	// Rows are written as they are read: a month of a busy deployment is
	// millions of events, more than is sensible to hold. An error midway
	// leaves a partial file and a non-zero exit.
	w, err := newRowWriter(a.stdout, c.format, *excel)
	if err != nil {
		return err
	}
	n := 0
	err = e.es.Each(ctx, esread.Search{Query: and(windowFilter(ws, ""), typeFilter)}, func(h esread.Hit) error {
		var ev esread.Event
		if err := json.Unmarshal(h.Source, &ev); err != nil {
			return fmt.Errorf("decode stored event %s: %w", h.ID, err)
		}
		row, err := exportRow(&ev, zones[ev.Tenant])
		if err != nil {
			return fmt.Errorf("event %s: %w", h.ID, err)
		}
		if err := w.row(row); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		if n++; n%10000 == 0 {
			fmt.Fprintf(a.stderr, "export: %d events written…\n", n)
		}
		return nil
	})
	if errors.Is(err, esread.ErrNotFound) {
		return fmt.Errorf("export events: %w (elasticsearch.alias %q: nothing shipped yet?)", err, e.es.Alias())
	}
	if err != nil {
		return fmt.Errorf("export events (after %d rows): %w", n, err)
	}
	if err := w.close(); err != nil {
		return fmt.Errorf("export events: write: %w", err)
	}
	fmt.Fprintf(a.stderr, "export: %d events\n", n)
	return nil
}

// rowWriter streams rows as CSV (RFC 4180, as output.Table writes it) or
// as a JSON array of objects keyed by column.
type rowWriter struct {
	w     *bufio.Writer
	csv   *csv.Writer // nil: JSON
	jsonN int
}

func newRowWriter(out io.Writer, format string, bom bool) (*rowWriter, error) {
	rw := &rowWriter{w: bufio.NewWriterSize(out, 64<<10)}
	if format == "json" {
		_, err := rw.w.WriteString("[")
		return rw, err
	}
	if bom {
		rw.w.WriteString("\ufeff") // Excel reads UTF-8 only after the byte order mark
	}
	rw.csv = csv.NewWriter(rw.w)
	return rw, rw.csv.Write(exportColumns)
}

func (rw *rowWriter) row(cells []string) error {
	if rw.csv != nil {
		return rw.csv.Write(cells)
	}
	m := make(map[string]string, len(exportColumns))
	for i, c := range exportColumns {
		m[c] = cells[i]
	}
	b, err := json.MarshalIndent(m, "  ", "  ")
	if err != nil {
		return err
	}
	sep := ",\n  "
	if rw.jsonN == 0 {
		sep = "\n  "
	}
	rw.jsonN++
	rw.w.WriteString(sep)
	_, err = rw.w.Write(b)
	return err
}

func (rw *rowWriter) close() error {
	if rw.csv != nil {
		rw.csv.Flush()
		if err := rw.csv.Error(); err != nil {
			return err
		}
	} else {
		end := "\n]\n"
		if rw.jsonN == 0 {
			end = "]\n"
		}
		rw.w.WriteString(end)
	}
	return rw.w.Flush()
}

// exportRow renders one stored event in exportColumns' order.
func exportRow(ev *esread.Event, loc *time.Location) ([]string, error) {
	if loc == nil {
		loc = time.UTC
	}
	num := func(p *int64) string {
		if p == nil {
			return ""
		}
		return strconv.FormatInt(*p, 10)
	}
	conf := ""
	if ev.Confidence != nil {
		conf = strconv.FormatFloat(*ev.Confidence, 'f', -1, 64)
	}
	var from, to string
	if ev.Scenario != nil {
		from, to = ev.Scenario.From, ev.Scenario.To
	}
	payload := ""
	if len(ev.Payload) > 0 {
		b, err := json.Marshal(ev.Payload)
		if err != nil {
			return nil, err
		}
		payload = string(b)
	}
	return []string{
		ev.EventID, ev.Timestamp.UTC().Format("2006-01-02T15:04:05.000Z"), ev.Timestamp.In(loc).Format(localLayout), loc.String(),
		ev.Tenant, ev.Channel, ev.SessionID, ev.Type, ev.Level, ev.Intent, conf, ev.Outcome, ev.CRMID, ev.CRMStatus,
		ev.UserID, ev.UserPhone, ev.UserPhoneHash, num(ev.LatencyMS), num(ev.Seq), from, to,
		ev.Text(), payload,
	}, nil
}
