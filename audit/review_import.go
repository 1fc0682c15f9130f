package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/assistlog/assistlog/internal/access"
	"github.com/assistlog/assistlog/internal/esread"
	"github.com/assistlog/assistlog/internal/period"
)

const reviewImportHelp = `audit review import — store a filled-in review sheet's labels in Elasticsearch.

Usage: audit review import FILE.csv [--config FILE]

Reads the sheet written by audit review sample after the reviewer filled in cause and note (CSV,
UTF-8 with or without a byte order mark, commas or semicolons as Excel saves them). Every row is
checked first — week, tenant, session_id, cause (nlp_miss, bad_scenario, technical_failure,
other), threshold, no conversation twice, and that the conversation really had a turn below the
threshold in that week — and every error is listed with its line and column; if there is any,
nothing is stored. Otherwise each label is stored in reviews_index under week + tenant +
session: importing the sheet again (e.g. after correcting a cause) updates, never duplicates.

Examples:
  audit review import review-2026-W47.csv

Flags:
`

// reviewIndexMapping is reviews_index's explicit mapping: strict, so a
// stray field is an error rather than a silently guessed type.
var reviewIndexMapping = map[string]any{
	"settings": map[string]any{"number_of_shards": 1, "number_of_replicas": 0},
	"mappings": map[string]any{
		"dynamic": "strict",
		"_meta":   map[string]any{"description": "assistlog weekly review labels (audit review import); _id = week/tenant/session_id"},
		"properties": map[string]any{
			"week":             map[string]any{"type": "keyword"},
			"week_start":       map[string]any{"type": "date"},
			"tenant":           map[string]any{"type": "keyword"},
			"session_id":       map[string]any{"type": "keyword"},
			"channel":          map[string]any{"type": "keyword"},
			"cause":            map[string]any{"type": "keyword"},
			"note":             map[string]any{"type": "text"},
			"intent":           map[string]any{"type": "keyword"},
			"intents":          map[string]any{"type": "keyword"},
			"low_turns":        map[string]any{"type": "integer"},
			"min_confidence":   map[string]any{"type": "float"},
			"threshold":        map[string]any{"type": "float"},
			"conversation_url": map[string]any{"type": "keyword", "index": false},
			"imported_at":      map[string]any{"type": "date"},
			"source_file":      map[string]any{"type": "keyword"},
			"source_line":      map[string]any{"type": "integer"},
		},
	},
}

// reviewLabel is one stored label.
type reviewLabel struct {
	Week            string    `json:"week"`
	WeekStart       time.Time `json:"week_start"`
	Tenant          string    `json:"tenant"`
	SessionID       string    `json:"session_id"`
	Channel         string    `json:"channel"`
	Cause           string    `json:"cause"`
	Note            string    `json:"note"`
	Intent          string    `json:"intent"`
	Intents         []string  `json:"intents"`
	LowTurns        int       `json:"low_turns"`
	MinConfidence   float64   `json:"min_confidence"`
	Threshold       float64   `json:"threshold"`
	ConversationURL string    `json:"conversation_url"`
	ImportedAt      time.Time `json:"imported_at"`
	SourceFile      string    `json:"source_file"`
	SourceLine      int       `json:"source_line"`
}

// reviewID is the label's document id: one per week and conversation.
func reviewID(week, tenant, session string) string {
	return week + "/" + tenant + "/" + session
}

func runReviewImport(ctx context.Context, a *app, args []string) error {
	var c common
	fset := flag.NewFlagSet("review import", flag.ContinueOnError)
	fset.SetOutput(a.stderr)
	fset.StringVar(&c.configPath, "config", os.Getenv("ASSISTLOG_AUDIT_CONFIG"), "audit config file (see audit/audit.example.yaml)")
	fset.Usage = func() { fmt.Fprint(a.stderr, reviewImportHelp); fset.PrintDefaults() }
	pos, help, err := parse(fset, args)
	if help {
		return nil
	}
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("audit review import takes one file: audit review import review-2026-W47.csv")
	}
	e, err := c.load(true)
	if err != nil {
		return err
	}
	labels, errs, err := readLabels(ctx, e, pos[0], a.now())
	if err != nil {
		return err
	}
	if len(errs) > 0 {
		for _, x := range errs {
			fmt.Fprintln(a.stderr, x)
		}
		what := "1 error"
		if len(errs) > 1 {
			what = fmt.Sprintf("%d errors", len(errs))
		}
		return fmt.Errorf("%s: %s, nothing imported; fix them and import the file again", pos[0], what)
	}
	if len(labels) == 0 {
		return fmt.Errorf("%s: no labelled rows", pos[0])
	}
	created, updated, err := storeLabels(ctx, e, labels)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "%s: %d labels stored in %s (%d new, %d updated)\n", pos[0], len(labels), e.cfg.ReviewsIndex, created, updated)
	return nil
}

// readLabels reads and checks the whole sheet: every problem is returned
// as "FILE:LINE: column: why", so the reviewer fixes them in one go. err
// is for failures that are not the sheet's (Elasticsearch unreachable).
func readLabels(ctx context.Context, e *env, path string, now time.Time) ([]reviewLabel, []string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read the review sheet: %w", err)
	}
	raw = bytes.TrimPrefix(raw, []byte("\ufeff"))
	name := filepath.Base(path)
	if !utf8.Valid(raw) {
		return nil, []string{name + ": not UTF-8 text; in Excel save it as \"CSV UTF-8 (comma delimited)\""}, nil
	}
	first, _, _ := bytes.Cut(raw, []byte("\n"))
	r := csv.NewReader(bytes.NewReader(raw))
	// Excel in a Russian locale saves CSV with semicolons.
	if bytes.Count(first, []byte(";")) > bytes.Count(first, []byte(",")) {
		r.Comma = ';'
	}
	r.FieldsPerRecord = -1
	header, err := r.Read()
	if err != nil {
		return nil, []string{fmt.Sprintf("%s: %v", name, err)}, nil
	}
	col := map[string]int{}
	for i, h := range header {
		col[strings.ToLower(strings.TrimSpace(h))] = i
	}
	var errs []string
	for _, need := range []string{"week", "tenant", "session_id", "cause"} {
		if _, ok := col[need]; !ok {
			errs = append(errs, fmt.Sprintf("%s:1: column %s is missing (the header has %s)", name, need, strings.Join(header, ", ")))
		}
	}
	if len(errs) > 0 {
		return nil, errs, nil
	}
	type row struct {
		line, excelRow int
		label          reviewLabel
	}
	var rows []row
	var problems []problem
	seen := map[string]int{}
	// where names a record by its line in the file and, when a cell
	// spans lines (the turns do), by the row number Excel shows.
	where := func(line, excelRow int) string {
		if line == excelRow {
			return fmt.Sprintf("%s:%d", name, line)
		}
		return fmt.Sprintf("%s:%d (row %d)", name, line, excelRow)
	}
	excelRow := 1
	for {
		rec, err := r.Read()
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			// A broken quote makes the rest unreadable: report it with
			// what was found so far.
			problems = append(problems, problem{1 << 30, fmt.Sprintf("%s: %v", name, err)})
			break
		}
		excelRow++
		line, _ := r.FieldPos(0)
		cell := func(c string) string {
			i, ok := col[c]
			if !ok || i >= len(rec) {
				return ""
			}
			return strings.TrimSpace(rec[i])
		}
		blank := true
		for _, v := range rec {
			if strings.TrimSpace(v) != "" {
				blank = false
			}
		}
		if blank {
			continue // Excel leaves empty rows at the end
		}
		bad := func(column, format string, args ...any) {
			problems = append(problems, problem{line, fmt.Sprintf("%s: %s: %s", where(line, excelRow), column, fmt.Sprintf(format, args...))})
		}
		l := reviewLabel{Week: cell("week"), Tenant: cell("tenant"), SessionID: cell("session_id"),
			Cause: strings.ToLower(cell("cause")), Note: cell("note"), Threshold: e.cfg.LowConfidence,
			SourceFile: name, SourceLine: line, ImportedAt: now.UTC()}
		ok := true
		tenant, terr := e.tenants.Get(l.Tenant)
		switch {
		case l.Tenant == "":
			bad("tenant", "empty")
			ok = false
		case terr != nil:
			bad("tenant", "%v", terr)
			ok = false
		}
		switch {
		case l.Week == "":
			bad("week", "empty; an ISO week like 2026-W47")
			ok = false
		case ok:
			w, err := period.Week(l.Week, tenant.Location())
			if err != nil {
				bad("week", "%q is not an ISO week like 2026-W47", l.Week)
				ok = false
			} else {
				l.WeekStart = w.From
			}
		default:
			if _, err := period.Week(l.Week, time.UTC); err != nil {
				bad("week", "%q is not an ISO week like 2026-W47", l.Week)
			}
		}
		if l.SessionID == "" {
			bad("session_id", "empty")
			ok = false
		}
		if !validCause(l.Cause) {
			if l.Cause == "" {
				bad("cause", "empty; one of %s (or delete the row if it is not reviewed yet)", strings.Join(reviewCausesList, ", "))
			} else {
				bad("cause", "%q is not one of %s", cell("cause"), strings.Join(reviewCausesList, ", "))
			}
			ok = false
		}
		if v := cell("threshold"); v != "" {
			t, err := strconv.ParseFloat(strings.Replace(v, ",", ".", 1), 64)
			if err != nil || t <= 0 || t > 1 {
				bad("threshold", "%q is not a confidence in (0, 1]", v)
				ok = false
			} else {
				l.Threshold = t
			}
		}
		if ok {
			k := reviewID(l.Week, l.Tenant, l.SessionID)
			if prev, dup := seen[k]; dup {
				bad("session_id", "%s/%s in %s is already labelled on line %d", l.Tenant, l.SessionID, l.Week, prev)
				continue
			}
			seen[k] = line
			rows = append(rows, row{line, excelRow, l})
		}
	}
	// Each label must be about a conversation of that week's candidates:
	// a typo in a session id must not store a label nobody can find.
	var labels []reviewLabel
	for _, rw := range rows {
		l := rw.label
		t, _ := e.tenants.Get(l.Tenant)
		w, _ := period.Week(l.Week, t.Location())
		convs, err := lowConversations(ctx, e, []Window{{Tenant: t, Range: w}}, l.Threshold, terms("session_id", l.SessionID))
		if err != nil {
			return nil, nil, err
		}
		if len(convs) == 0 {
			problems = append(problems, problem{rw.line, fmt.Sprintf("%s: session_id: %s of %s has no turn below %g in %s",
				where(rw.line, rw.excelRow), l.SessionID, l.Tenant, l.Threshold, l.Week)})
			continue
		}
		c := convs[0]
		l.Channel, l.Intent, l.Intents, l.LowTurns, l.MinConfidence = c.Channel, c.Intent(), c.Intents(), len(c.Turns), c.MinConfidence()
		l.ConversationURL = e.conversationLink(l.Tenant, l.SessionID)
		labels = append(labels, l)
	}
	sort.SliceStable(problems, func(i, j int) bool { return problems[i].line < problems[j].line })
	for _, p := range problems {
		errs = append(errs, p.msg)
	}
	return labels, errs, nil
}

// problem is one error in the sheet, ordered by line.
type problem struct {
	line int
	msg  string
}

func validCause(c string) bool {
	for _, v := range reviewCausesList {
		if c == v {
			return true
		}
	}
	return false
}

// ensureReviewsIndex creates reviews_index with its mapping unless it
// exists, and gives it one filtered alias per tenant of the tenants file,
// <reviews_index>-tenant-<name>, as the events have: a tenant's auditor
// searches only that alias (access.Roles), so reads that tenant's labels
// and no other's. The aliases are added on every import, so an index made
// before a tenant was added gets that tenant's too (adding an alias that is
// there changes nothing).
func ensureReviewsIndex(ctx context.Context, e *env) error {
	idx := e.cfg.ReviewsIndex
	err := e.es.Do(ctx, http.MethodGet, idx, nil, nil)
	if err != nil && !errors.Is(err, esread.ErrNotFound) {
		return fmt.Errorf("check reviews_index %s: %w", idx, err)
	}
	if err != nil {
		if err := e.es.Do(ctx, http.MethodPut, idx, reviewIndexMapping, nil); err != nil && !strings.Contains(err.Error(), "resource_already_exists_exception") {
			return fmt.Errorf("create reviews_index %s: %w", idx, err)
		}
	}
	if e.tenants == nil {
		return nil
	}
	var actions []any
	for _, name := range e.tenants.Names() {
		actions = append(actions, map[string]any{"add": map[string]any{"index": idx,
			"alias": access.TenantAlias(idx, name), "filter": access.TenantFilter(name)}})
	}
	if len(actions) == 0 {
		return nil
	}
	if err := e.es.Do(ctx, http.MethodPost, "_aliases", map[string]any{"actions": actions}, nil); err != nil {
		return fmt.Errorf("add the tenant aliases of reviews_index %s: %w", idx, err)
	}
	return nil
}

// storeLabels writes each label under its week+conversation id (a second
// import overwrites) and refreshes, so a summary run right after sees
// them.
func storeLabels(ctx context.Context, e *env, labels []reviewLabel) (created, updated int, err error) {
	if err := ensureReviewsIndex(ctx, e); err != nil {
		return 0, 0, err
	}
	idx := e.cfg.ReviewsIndex
	for _, l := range labels {
		var res struct {
			Result string `json:"result"`
		}
		id := reviewID(l.Week, l.Tenant, l.SessionID)
		if err := e.es.Do(ctx, http.MethodPut, idx+"/_doc/"+url.PathEscape(id), l, &res); err != nil {
			return created, updated, fmt.Errorf("store the label of %s (%d stored before it; importing again is safe): %w", id, created+updated, err)
		}
		if res.Result == "created" {
			created++
		} else {
			updated++
		}
	}
	if err := e.es.Do(ctx, http.MethodPost, idx+"/_refresh", nil, nil); err != nil {
		return created, updated, fmt.Errorf("refresh %s: %w", idx, err)
	}
	return created, updated, nil
}
