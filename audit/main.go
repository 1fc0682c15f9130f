// Command audit is the auditors' and owners' tool over the complete record
// in Elasticsearch (and the Bitrix24 REST API): saved searches, conversation
// replay, consent proof, CRM reconciliation, visits, low-confidence review,
// KPIs and reports. `audit help` lists the commands.
package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/assistlog/assistlog/dashboards"
	"github.com/assistlog/assistlog/internal/output"
)

const queryUsage = `audit query — the auditors' saved searches over assistant events.

Usage:
  audit query --list
  audit query NAME --from DATE --to DATE [--tenant T] [--format table|csv|json] [--limit N]

NAME is a saved search of dashboards/kibana/assistlog.ndjson (the Kibana file
is the definition: the same Lucene query runs here). Dates are days (--to
included) or RFC 3339 times; days are read in --tz.

Examples:
  audit query appointments-confirmed --from 2026-11-16 --to 2026-11-23
  audit query low-confidence --from 2026-11-20 --to 2026-11-20 --tenant salon-aurora --format csv
  audit query conversation --session sgd-1_00000 --from 2026-11-01 --to 2026-11-30
  audit query errors --from 2026-11-01 --to 2026-11-30 --limit 50

Every match is printed: pages through a point in time, no 10,000 cap.
--limit N shows only the first N and says on stderr how many were left out.

Elasticsearch: --es (or ASSISTLOG_ELASTICSEARCH_URL), user and password from
ASSISTLOG_ES_USERNAME and ASSISTLOG_ES_PASSWORD.

Flags:
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a := &app{stdout: os.Stdout, stderr: os.Stderr, now: time.Now}
	if err := a.run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "audit:", err)
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}

func runQuery(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("audit query", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, queryUsage); fs.PrintDefaults() }
	list := fs.Bool("list", false, "list the saved queries and exit")
	from := fs.String("from", "", "start: a date or an RFC 3339 time (required)")
	to := fs.String("to", "", "end: a date (included) or an RFC 3339 time (excluded) (required)")
	tenant := fs.String("tenant", "", "only this tenant")
	session := fs.String("session", "", "the conversation, for queries that need {session_id}")
	format := fs.String("format", "table", "table, csv or json")
	limit := fs.Int("limit", 0, "print at most this many events, 0 = all (the total is always counted; stderr says when rows were left out)")
	tz := fs.String("tz", "UTC", "time zone of dates, e.g. Asia/Yekaterinburg")
	es := fs.String("es", envOr("ASSISTLOG_ELASTICSEARCH_URL", "http://127.0.0.1:19200"), "Elasticsearch URL")
	alias := fs.String("alias", "assistant-events", "the events alias")
	// Flags may follow the query name: audit query NAME --from ...
	var name string
	rest := args
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		name, rest = rest[0], rest[1:]
	}
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if name == "" && fs.NArg() > 0 {
		name = fs.Arg(0)
	}
	if *list {
		return printList(stdout)
	}
	if name == "" {
		return errors.New("which saved query? (audit query --list)")
	}
	search, err := dashboards.Find(name)
	if err != nil {
		return err
	}
	loc, err := time.LoadLocation(*tz)
	if err != nil {
		return fmt.Errorf("--tz: %w", err)
	}
	if *from == "" || *to == "" {
		return errors.New("--from and --to are required")
	}
	for _, p := range search.Params() {
		if p == "session_id" && *session == "" {
			return fmt.Errorf("%s needs --session (the conversation's session_id)", search.Name)
		}
	}
	q := Query{Search: search, Params: map[string]string{"session_id": *session}, Tenant: *tenant, Limit: *limit}
	if q.From, err = parseTime(*from, loc, false); err != nil {
		return fmt.Errorf("--from: %w", err)
	}
	if q.To, err = parseTime(*to, loc, true); err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	if !q.To.After(q.From) {
		return errors.New("--to must be after --from")
	}
	if *limit < 0 {
		return errors.New("--limit: 0 (all) or more")
	}
	s := Searcher{URL: *es, Alias: *alias, Username: os.Getenv("ASSISTLOG_ES_USERNAME"), Password: os.Getenv("ASSISTLOG_ES_PASSWORD")}
	res, err := s.Run(ctx, q)
	if err != nil {
		return err
	}
	switch *format {
	case "json":
		return output.WriteJSON(stdout, res)
	case "csv":
		err = writeCSV(stdout, search.Columns, res)
	case "table":
		err = writeTable(stdout, search.Columns, res)
	default:
		return fmt.Errorf("--format: table, csv or json, not %q", *format)
	}
	if err == nil {
		fmt.Fprintf(stderr, "%s: %d events from %s to %s (%d shown)\n", search.Name, res.Total,
			q.From.Format(time.RFC3339), q.To.Format(time.RFC3339), len(res.Events))
	}
	if err == nil && len(res.Events) < res.Total {
		fmt.Fprintf(stderr, "%s: NOT SHOWN: %d of %d events (--limit %d; --limit 0 shows every one)\n",
			search.Name, res.Total-len(res.Events), res.Total, *limit)
	}
	return err
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func printList(w io.Writer) error {
	all, err := dashboards.SavedSearches()
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tQUERY\tDESCRIPTION")
	for _, s := range all {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Name, s.Query, s.Description)
	}
	return tw.Flush()
}

// field reads a dotted column (payload.text) from an event.
func field(ev map[string]any, col string) string {
	var v any = ev
	for _, part := range strings.Split(col, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return ""
		}
		v = m[part]
	}
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case float64:
		return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.3f", x), "0"), ".")
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func header(cols []string) []string { return append([]string{"@timestamp"}, cols...) }

func row(ev map[string]any, cols []string) []string {
	out := []string{field(ev, "@timestamp")}
	for _, c := range cols {
		out = append(out, field(ev, c))
	}
	return out
}

func writeCSV(w io.Writer, cols []string, res Result) error {
	cw := csv.NewWriter(w)
	cw.Write(header(cols))
	for _, ev := range res.Events {
		cw.Write(row(ev, cols))
	}
	cw.Flush()
	return cw.Error()
}

func writeTable(w io.Writer, cols []string, res Result) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.ToUpper(strings.Join(header(cols), "\t")))
	for _, ev := range res.Events {
		r := row(ev, cols)
		for i, v := range r {
			v = strings.ReplaceAll(v, "\t", " ")
			if len([]rune(v)) > 60 {
				v = string([]rune(v)[:59]) + "…"
			}
			r[i] = v
		}
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}
