package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/assistlog/assistlog/internal/config"
	"github.com/assistlog/assistlog/internal/errpolicy"
	"github.com/assistlog/assistlog/internal/esread"
	"github.com/assistlog/assistlog/internal/output"
	"github.com/assistlog/assistlog/internal/pii"
	"github.com/assistlog/assistlog/internal/tenants"
)

const eraseUsage = `audit erase — remove one person's data on request (152-FZ) and write a receipt.

Usage:
  audit erase --tenant T --phone NUMBER [--phone …] [--session ID …] [--dry-run]
              [--receipt FILE.json] [--operator NAME] [--wait 5m] [--format table|json]

Who: --phone (any format: +7 916 123-45-67, 89161234567 …) is normalised and
hashed with pii.hash_secret exactly as the shipper does, and every
conversation of the tenant carrying that hash is the person's; --session
adds conversations by id (repeatable; without --phone only those). The raw
number is never printed or stored, only its hash.

What goes (every event of those conversations, and any event with the hash):
  - Elasticsearch (elasticsearch:) and every store under mirrors: (OpenSearch):
    documents deleted by id, the index refreshed and counted again until
    nothing matches; the counts come from the server's answers;
  - the review labels of those conversations in reviews_index;
  - Loki (loki.url): a deletion request {tenant="T", <loki.labels>} for the
    conversations' session_id; Loki hides the lines from queries at once and
    its compactor removes them from the chunks;
  - the CRM links topic (kafka.brokers, kafka.links_topic): a tombstone for
    every link record of those conversations, so compaction removes them;
  - the Parquet archive (archive.s3): objects holding them are rewritten
    without them under the same name (as shipper archive erase).
Bitrix24 is not touched: the lead is the business's own record. The receipt
lists the lead ids found so the business can act on them.

Not erased here: the events topic and the dead-letter topic keep raw input
until their retention ends (see docs/erasure.md).

--dry-run finds and counts everything and deletes nothing; its receipt says
dry run. Progress goes to stderr; the summary (table) or the receipt (json)
to stdout. --receipt FILE.json also writes FILE.md, a Markdown rendering to
hand over.

Exit status: 0 erased (or counted, dry); 1 a failure (config, a store
refusing, something still found after erasing); 4 nothing of the person
found in the tenant (an unknown --session included).

Examples:
  audit erase --config audit.yaml --tenant salon-aurora --phone "+7 916 123-45-67" --dry-run
  audit erase --config audit.yaml --tenant salon-aurora --phone 89161234567 \
      --receipt erasure-2026-11-27.json --operator "Иванова А. (DPO)"
  audit erase --config audit.yaml --tenant clinic-family --session sgd-3_00038 --session sgd-3_00041
  audit erase --config audit.yaml --tenant salon-aurora --phone +79161234567 --format json > receipt.json

Flags:
`

// exitNothingFound is the exit status when nothing of the person is found.
const exitNothingFound = 4

type multiValue []string

func (m *multiValue) String() string     { return strings.Join(*m, ",") }
func (m *multiValue) Set(v string) error { *m = append(*m, v); return nil }

func runErase(ctx context.Context, a *app, args []string) error {
	fs := flag.NewFlagSet("audit erase", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	fs.Usage = func() { fmt.Fprint(a.stderr, eraseUsage); fs.PrintDefaults() }
	var c common
	c.flags(fs, false, []string{"table", "json"})
	fs.Lookup("tenant").Usage = "the business whose record holds the person (required)"
	var phones, sessions multiValue
	fs.Var(&phones, "phone", "the person's phone number, any format (repeatable)")
	fs.Var(&sessions, "session", "a conversation's session_id (repeatable)")
	dry := fs.Bool("dry-run", false, "find and count, delete nothing")
	receiptPath := fs.String("receipt", "", "write the receipt as JSON to FILE and as Markdown next to it (FILE.md)")
	wait := fs.Duration("wait", 0, "wait up to this long for Loki to report the deletion processed (e.g. 5m); 0: do not wait")
	operator := fs.String("operator", os.Getenv("USER"), "who runs the erasure, for the receipt (default $USER)")
	pos, help, err := parse(fs, args)
	if help {
		return nil
	}
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("unexpected argument %q (use --phone or --session)", pos[0])
	}
	if err := output.CheckFormat(c.format, []string{"table", "json"}); err != nil {
		return err
	}
	if c.tenant == "" {
		return errors.New("--tenant is required: a person is erased from one business's data")
	}
	if len(phones) == 0 && len(sessions) == 0 {
		return errors.New("give --phone or --session: whose data is to be erased?")
	}
	if *operator == "" {
		return errors.New("--operator: who runs the erasure (no $USER to default to)")
	}
	e, err := c.load(true)
	if err != nil {
		return err
	}
	tenant, err := e.tenants.Get(c.tenant)
	if err != nil {
		return err
	}
	if err := e.cfg.eraseSettings(); err != nil {
		return err
	}
	var hashes []string
	if len(phones) > 0 {
		secret := e.cfg.PII.HashSecret
		if err := config.Expand("pii.hash_secret", &secret); err != nil {
			return err
		}
		masker, err := pii.New(secret)
		if err != nil {
			return fmt.Errorf("pii.hash_secret: the shipper's phone-hash key is needed to find a person by number: %w", err)
		}
		for _, p := range phones {
			h := masker.HashPhone(p)
			if h == "" {
				return fmt.Errorf("--phone: %q is not a phone number (10 to 15 digits)", p)
			}
			hashes = append(hashes, h)
		}
	}
	er, err := newEraser(e, tenant, *dry, a.stderr)
	if err != nil {
		return err
	}
	rec, err := er.run(ctx, a.now().UTC(), *operator, uniq(hashes), uniq(sessions))
	if err == nil && rec != nil && !*dry {
		err = er.waitLoki(ctx, &rec.Loki, *wait)
		rec.finish(time.Now().UTC(), tenant)
	}
	if rec != nil && *receiptPath != "" {
		if werr := writeReceipt(*receiptPath, rec); werr != nil {
			err = errors.Join(err, werr)
		} else {
			fmt.Fprintf(a.stderr, "erase: receipt %s and %s\n", *receiptPath, markdownPath(*receiptPath))
		}
	}
	if rec != nil {
		var oerr error
		if c.format == "json" {
			oerr = rec.writeJSON(a.stdout)
		} else {
			oerr = rec.writeTable(a.stdout)
		}
		err = errors.Join(err, oerr)
	}
	return err
}

// eraser is one erasure: the person, the tenant and every configured store.
type eraser struct {
	cfg    Config
	tenant tenants.Tenant
	dry    bool
	stores []*searchStore
	pol    *errpolicy.Policy
	log    *slog.Logger
	prog   io.Writer
}

// searchStore is Elasticsearch or one of the mirrors.
type searchStore struct {
	kind, url string
	r         *esread.Reader
}

func newEraser(e *env, t tenants.Tenant, dry bool, stderr io.Writer) (*eraser, error) {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	pol, err := errpolicy.New(errpolicy.DefaultConfig(), log, prometheus.NewRegistry())
	if err != nil {
		return nil, err
	}
	er := &eraser{cfg: e.cfg, tenant: t, dry: dry, pol: pol, log: log, prog: stderr}
	er.stores = append(er.stores, &searchStore{url: e.cfg.Elasticsearch.URLs[0], r: e.es})
	for i, m := range e.cfg.Mirrors {
		r, err := esread.New(m, nil)
		if err != nil {
			return nil, fmt.Errorf("mirrors[%d]: %w", i, err)
		}
		er.stores = append(er.stores, &searchStore{url: m.URLs[0], r: r})
	}
	return er, nil
}

func (er *eraser) progress(format string, args ...any) {
	fmt.Fprintf(er.prog, "erase: "+format+"\n", args...)
}

// run finds the person and erases them everywhere configured, returning the
// receipt (also when a step failed: it says what was done before).
func (er *eraser) run(ctx context.Context, now time.Time, operator string, hashes, sessions []string) (*Receipt, error) {
	rec := newReceipt(now, er.tenant, operator, er.dry)
	rec.Subject.PhoneHashes = hashes
	rec.Subject.SessionsGiven = sessions
	for _, st := range er.stores {
		kind, err := st.r.Store(ctx)
		if err != nil {
			return nil, fmt.Errorf("which store is %s: %w", st.url, err)
		}
		st.kind = kind
	}
	p, err := er.find(ctx, hashes, sessions)
	if err != nil {
		return nil, err
	}
	rec.Subject.Sessions = p.sessions
	rec.Subject.SessionsByPhone = p.byPhone
	rec.Bitrix24 = bitrix24Note(p.crmIDs)
	if len(p.unknown) > 0 {
		return nil, &exitError{code: exitNothingFound, err: fmt.Errorf("tenant %s has no conversation %s in any store",
			er.tenant.Name, strings.Join(p.unknown, ", "))}
	}
	if p.total == 0 {
		what := "the phone number given"
		if len(hashes) == 0 {
			what = "the sessions given"
		}
		return nil, &exitError{code: exitNothingFound, err: fmt.Errorf("nothing of %s found in tenant %s (searched %d store(s)); nothing erased",
			what, er.tenant.Name, len(er.stores))}
	}
	er.progress("%s: %d conversation(s) of the person, %s", er.tenant.Name, len(p.sessions), p.summary())

	steps := []struct {
		name string
		fn   func(context.Context, *person, *Receipt) error
	}{
		{"search stores", er.eraseEvents},
		{"reviews", er.eraseReviews},
		{"loki", er.eraseLoki},
		{"crm links", er.eraseLinks},
		{"archive", er.eraseArchive},
	}
	var errs []error
	for _, s := range steps {
		if err := s.fn(ctx, p, rec); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.name, err))
			rec.Failures = append(rec.Failures, fmt.Sprintf("%s: %v", s.name, err))
		}
		if ctx.Err() != nil {
			break
		}
	}
	rec.finish(time.Now().UTC(), er.tenant)
	return rec, errors.Join(errs...)
}

// person is what was found of the data subject before anything was erased.
type person struct {
	hashes   []string
	sessions []string // every conversation: given and found by phone
	byPhone  []string // the conversations found through the phone hash
	unknown  []string // given sessions no store holds
	crmIDs   []string
	appts    []string // appointment ids, for their CRM link keys
	eventIDs []string
	first    time.Time
	last     time.Time
	matched  map[*searchStore]int // documents per store
	total    int
}

func (p *person) summary() string {
	var parts []string
	for st, n := range p.matched {
		parts = append(parts, fmt.Sprintf("%d document(s) in %s", n, st.kind))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// query matches the person's documents: the tenant's events of the
// conversations, or carrying one of the hashes.
func (p *person) query(tenant string) map[string]any {
	var should []any
	if len(p.sessions) > 0 {
		should = append(should, terms("session_id", p.sessions...))
	}
	if len(p.hashes) > 0 {
		should = append(should, terms("user_phone_hash", p.hashes...))
	}
	return map[string]any{"bool": map[string]any{
		"filter":               []any{map[string]any{"term": map[string]any{"tenant": tenant}}},
		"should":               should,
		"minimum_should_match": 1,
	}}
}

// find reads every store: the conversations carrying the hashes, then
// every document of those conversations (a mirror may hold what the
// primary lacks, so the union is erased everywhere).
func (er *eraser) find(ctx context.Context, hashes, given []string) (*person, error) {
	p := &person{hashes: hashes, matched: map[*searchStore]int{}}
	sessions := set(given)
	byPhone := map[string]bool{}
	if len(hashes) > 0 {
		q := and(map[string]any{"term": map[string]any{"tenant": er.tenant.Name}}, terms("user_phone_hash", hashes...))
		for _, st := range er.stores {
			er.progress("searching %s (%s) for the phone hash", st.kind, st.url)
			err := st.r.Each(ctx, esread.Search{Query: q, Source: []string{"session_id"}}, func(h esread.Hit) error {
				ev, err := h.Decode()
				if err != nil {
					return err
				}
				sessions[ev.SessionID] = true
				byPhone[ev.SessionID] = true
				return nil
			})
			if err != nil && !errors.Is(err, esread.ErrNotFound) {
				return nil, fmt.Errorf("%s %s: %w", st.kind, st.url, err)
			}
		}
	}
	p.sessions = keys(sessions)
	p.byPhone = keys(byPhone)
	seen := map[string]bool{}
	crm, appts, ids := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, st := range er.stores {
		er.progress("reading the person's events in %s (%s)", st.kind, st.url)
		err := st.r.Each(ctx, esread.Search{Query: p.query(er.tenant.Name),
			Source: []string{"event_id", "session_id", "crm_id", "@timestamp", "payload.appointment_id"}}, func(h esread.Hit) error {
			ev, err := h.Decode()
			if err != nil {
				return err
			}
			p.matched[st]++
			p.total++
			seen[ev.SessionID] = true
			ids[ev.EventID] = true
			if ev.CRMID != "" {
				crm[ev.CRMID] = true
			}
			if a := ev.PayloadString("appointment_id"); a != "" {
				appts[a] = true
			}
			if p.first.IsZero() || ev.Timestamp.Before(p.first) {
				p.first = ev.Timestamp
			}
			if ev.Timestamp.After(p.last) {
				p.last = ev.Timestamp
			}
			return nil
		})
		if err != nil && !errors.Is(err, esread.ErrNotFound) {
			return nil, fmt.Errorf("%s %s: %w", st.kind, st.url, err)
		}
	}
	for _, s := range given {
		if !seen[s] {
			p.unknown = append(p.unknown, s)
		}
	}
	p.crmIDs, p.appts, p.eventIDs = keys(crm), keys(appts), keys(ids)
	return p, nil
}

// newRequestID names one erasure: its time and a random part.
func newRequestID(now time.Time) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "erase-" + now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b)
}

func markdownPath(p string) string {
	return strings.TrimSuffix(p, filepath.Ext(p)) + ".md"
}

func set(xs []string) map[string]bool {
	m := make(map[string]bool, len(xs))
	for _, x := range xs {
		if x != "" {
			m[x] = true
		}
	}
	return m
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func uniq(xs []string) []string { return keys(set(xs)) }
