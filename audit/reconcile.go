package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/assistlog/assistlog/internal/bitrix24"
	"github.com/assistlog/assistlog/internal/config"
	"github.com/assistlog/assistlog/internal/crm"
	"github.com/assistlog/assistlog/internal/esread"
	"github.com/assistlog/assistlog/internal/output"
	"github.com/assistlog/assistlog/internal/pii"
)

const reconcileUsage = `audit reconcile — the assistant's leads in the logs against Bitrix24: what was lost.

Usage:
  audit reconcile PERIOD [--tenant T] [--format table|csv|json|md]
                  [--discrepancies FILE] [--max-loss PCT] [--slack 24h]

Logs side: every conversation with a lead.created event in the period (read
in each tenant's time zone), with the crm_id / crm_status the shipper stored
and the customer's phone hash. CRM side: the leads the assistant made, read
with crm.lead.list (ORIGIN_ID assistlog:<tenant>/<session>, and leads with
the assistant's SOURCE_ID, crm.source_id), created from --slack before the
period to --slack after it, every page, at the portal's rate limit.

Matching: by ORIGIN_ID first (a lead made outside that window is looked up
by its ORIGIN_ID and counted as late), then a lead without ORIGIN_ID by the
customer's phone: its PHONE values are hashed with pii.hash_secret, as the
shipper hashes user_phone, and compared with user_phone_hash, so no number
leaves the CRM. One row per tenant and a total:

  logged        conversations with lead.created in the period
  in_crm        the assistant's leads found for them, plus orphans
  matched       logged conversations with a lead (by_origin + by_phone)
  lost          logged conversations with no lead in the CRM (lost_pct: of logged)
  orphans       leads with the assistant's ORIGIN_ID made in the period
                whose conversation is in no log
  duplicates    conversations with more than one lead
  late          leads found only outside the window (made late)
  pending       conversations the pipeline has not linked yet (crm_status pending)
  failed        conversations the CRM refused (crm_status failed)
  unattributed  leads with the assistant's SOURCE_ID, no ORIGIN_ID and no
                logged customer's phone (made by hand; not counted as orphans)

--discrepancies FILE writes a CSV of every item behind those numbers: kind
(lost, orphan, duplicate, late, unattributed, pending, failed), tenant,
session, lead id, when created, and the link to the conversation.
--max-loss PCT exits with code 3 when lost_pct of all tenants is over PCT
(for cron and alerting), after writing the report.

Examples:
  audit reconcile --week 2026-W47
  audit reconcile --last 7d --max-loss 1 --discrepancies lost.csv
  audit reconcile --month 2026-11 --tenant salon-aurora --format md

Flags:
`

// reconcileRow is one tenant's numbers (or the total's).
type reconcileRow struct {
	Tenant       string  `json:"tenant"`
	Logged       int     `json:"logged"`
	InCRM        int     `json:"in_crm"`
	Matched      int     `json:"matched"`
	ByOrigin     int     `json:"by_origin"`
	ByPhone      int     `json:"by_phone"`
	Lost         int     `json:"lost"`
	LostPct      float64 `json:"lost_pct"`
	Orphans      int     `json:"orphans"`
	Duplicates   int     `json:"duplicates"`
	Late         int     `json:"late"`
	Pending      int     `json:"pending"`
	Failed       int     `json:"failed"`
	Unattributed int     `json:"unattributed"`
}

// discrepancy is one line of the --discrepancies file.
type discrepancy struct {
	Kind, Tenant, Session, LeadID, Created, CRMStatus, OriginID, Link string
}

// reconcileReport is a reconciliation's result.
type reconcileReport struct {
	Period string
	Rows   []reconcileRow // one per tenant, in the tenants file's order
	Total  reconcileRow
	Items  []discrepancy
}

// logged is a conversation with lead.created in the period.
type logged struct {
	tenant, session string
	at              time.Time // its first lead.created
	crmID, status   string
	phoneHash       string
	leads           []*crmLead // the leads matched to it, oldest first
	byPhone, late   bool
}

// crmLead is a lead read from the portal.
type crmLead struct {
	bitrix24.Lead
	created         time.Time
	tenant, session string // from an assistant's ORIGIN_ID
	matched         bool
}

func (l *crmLead) assistants() bool { return l.session != "" }

const originPrefix = "assistlog:"

// parseOrigin splits an assistant's ORIGIN_ID (crm.OriginID) into tenant
// and session; ok is false for anything else.
func parseOrigin(origin string) (tenant, session string, ok bool) {
	rest, ok := strings.CutPrefix(origin, originPrefix)
	if !ok {
		return "", "", false
	}
	tenant, session, ok = strings.Cut(rest, "/")
	return tenant, session, ok && tenant != "" && session != ""
}

func runReconcile(ctx context.Context, a *app, args []string) error {
	fs := flag.NewFlagSet("audit reconcile", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	fs.Usage = func() { fmt.Fprint(a.stderr, reconcileUsage); fs.PrintDefaults() }
	var c common
	c.flags(fs, true, nil)
	discFile := fs.String("discrepancies", "", "write every unmatched item to this CSV file")
	maxLoss := fs.String("max-loss", "", "exit with code 3 when the lost share of logged leads is over this percentage, e.g. 1 or 0.5%")
	slack := fs.Duration("slack", defaultReconcileSlack, "read CRM leads created this long before and after the period (the CRM worker may make a lead later)")
	pos, help, err := parse(fs, args)
	if help {
		return nil
	}
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("unexpected argument %q (see audit reconcile --help)", pos[0])
	}
	if err := output.CheckFormat(c.format, nil); err != nil {
		return err
	}
	limit := -1.0
	if *maxLoss != "" {
		v, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(*maxLoss), "%"), 64)
		if err != nil || v < 0 || v > 100 {
			return fmt.Errorf("--max-loss: a percentage from 0 to 100, not %q", *maxLoss)
		}
		limit = v
	}
	if *slack < 0 {
		return errors.New("--slack: must not be negative")
	}
	e, ws, err := c.loadWindows(a.now())
	if err != nil {
		return err
	}
	r, err := newReconciler(e, ws, c.tenant, *slack, a.stderr)
	if err != nil {
		return err
	}
	rep, err := r.run(ctx)
	if err != nil {
		return err
	}
	if *discFile != "" {
		if err := writeDiscrepancies(*discFile, rep.Items); err != nil {
			return err
		}
	}
	if err := rep.table().Write(a.stdout, c.format); err != nil {
		return err
	}
	fmt.Fprintln(a.stderr, reconcileLine(rep))
	if limit >= 0 && rep.Total.LostPct > limit {
		return &exitError{code: 3, err: fmt.Errorf("lost %d of %d logged leads (%.1f%%), over --max-loss %g%%",
			rep.Total.Lost, rep.Total.Logged, rep.Total.LostPct, limit)}
	}
	return nil
}

// defaultReconcileSlack is how far around the period CRM leads are read.
const defaultReconcileSlack = 24 * time.Hour

// reconciler is one reconciliation.
type reconciler struct {
	e        *env
	ws       []Window
	client   *bitrix24.Client
	masker   *pii.Masker
	slack    time.Duration
	sourceID string
	tenant   string // --tenant, or "" for all
	progress io.Writer
}

// newReconciler checks the CRM and phone-key settings and builds a
// reconciliation of the windows (tenant "" is all) that reports progress
// to progress.
func newReconciler(e *env, ws []Window, tenant string, slack time.Duration, progress io.Writer) (*reconciler, error) {
	if err := e.cfg.CRMError(); err != nil {
		return nil, err
	}
	if err := e.cfg.CRM.Bitrix24.Validate(); err != nil {
		return nil, errors.Join(config.Prefixed("crm.bitrix24.", err)...)
	}
	masker, err := pii.New(e.cfg.PII.HashSecret)
	if err != nil {
		return nil, fmt.Errorf("pii.hash_secret: the shipper's phone-hash key is needed to match CRM phones: %w", err)
	}
	client, err := bitrix24.New(e.cfg.CRM.Bitrix24, nil, prometheus.NewRegistry())
	if err != nil {
		return nil, err
	}
	return &reconciler{e: e, ws: ws, client: client, masker: masker, slack: slack, sourceID: e.cfg.CRM.SourceID,
		tenant: tenant, progress: progress}, nil
}

func (r *reconciler) run(ctx context.Context) (*reconcileReport, error) {
	convs, err := r.readLogs(ctx)
	if err != nil {
		return nil, err
	}
	from, to := r.span()
	leads, err := r.readCRM(ctx, from.Add(-r.slack), to.Add(r.slack))
	if err != nil {
		return nil, err
	}
	byKey := map[string]*logged{}
	for _, c := range convs {
		byKey[c.tenant+"/"+c.session] = c
	}

	// 1. By ORIGIN_ID, within the window read.
	for _, l := range leads {
		if c := byKey[l.tenant+"/"+l.session]; l.assistants() && c != nil {
			c.leads, l.matched = append(c.leads, l), true
		}
	}
	// 1b. By ORIGIN_ID outside it: leads made late (or early).
	var missing []*logged
	for _, c := range convs {
		if len(c.leads) == 0 {
			missing = append(missing, c)
		}
	}
	if err := r.lookUpLate(ctx, missing, byKey); err != nil {
		return nil, err
	}
	// 2. By phone: a lead without the assistant's ORIGIN_ID (made by hand)
	// whose phone hashes to a logged customer's. It goes to that
	// customer's earliest conversation still without a lead; when all have
	// one, it is one more lead for the first (a duplicate).
	byHash := map[string][]*logged{}
	for _, c := range convs {
		if c.phoneHash != "" {
			byHash[c.phoneHash] = append(byHash[c.phoneHash], c)
		}
	}
	for _, l := range leads {
		if l.assistants() || l.matched {
			continue
		}
		var cands []*logged
		for _, p := range l.Phone {
			if h := r.masker.HashPhone(p.Value); h != "" {
				cands = append(cands, byHash[h]...)
			}
		}
		if len(cands) == 0 {
			continue
		}
		sort.SliceStable(cands, func(i, j int) bool { return cands[i].at.Before(cands[j].at) })
		target := cands[0]
		for _, c := range cands {
			if len(c.leads) == 0 {
				target = c
				break
			}
		}
		if len(target.leads) == 0 {
			target.byPhone = true
		}
		target.leads, l.matched = append(target.leads, l), true
	}
	for _, c := range convs {
		sort.Slice(c.leads, func(i, j int) bool { return c.leads[i].ID < c.leads[j].ID })
	}

	// 3. What is left in the CRM: the assistant's leads of the period with
	// no conversation in this period's log are orphans unless the
	// conversation is logged in another period; hand-made leads of the
	// period are unattributed.
	var orphanCands []*crmLead
	var unattributed []*crmLead
	for _, l := range leads {
		if l.matched {
			continue
		}
		if l.assistants() {
			if r.inPeriod(l.tenant, l.created) {
				orphanCands = append(orphanCands, l)
			}
		} else if !l.created.Before(from) && l.created.Before(to) {
			unattributed = append(unattributed, l)
		}
	}
	orphans, err := r.notLoggedElsewhere(ctx, orphanCands)
	if err != nil {
		return nil, err
	}
	return r.report(convs, orphans, unattributed), nil
}

// span is the earliest start and the latest end of the tenants' windows.
func (r *reconciler) span() (from, to time.Time) {
	for i, w := range r.ws {
		if i == 0 || w.From.Before(from) {
			from = w.From
		}
		if i == 0 || w.To.After(to) {
			to = w.To
		}
	}
	return from, to
}

// inPeriod reports whether t is in tenant's window; a tenant outside the
// tenants file counts over the whole span (only when all are selected).
func (r *reconciler) inPeriod(tenant string, t time.Time) bool {
	for _, w := range r.ws {
		if w.Tenant.Name == tenant {
			return !t.Before(w.From) && t.Before(w.To)
		}
	}
	if r.tenant != "" {
		return false
	}
	from, to := r.span()
	return !t.Before(from) && t.Before(to)
}

// readLogs reads every lead.created of the period, per conversation.
func (r *reconciler) readLogs(ctx context.Context) ([]*logged, error) {
	var out []*logged
	byKey := map[string]*logged{}
	q := and(windowFilter(r.ws, ""), terms("event_type", "lead.created"))
	err := r.e.es.Each(ctx, esread.Search{Query: q,
		Source: []string{"@timestamp", "event_id", "tenant", "session_id", "crm_id", "crm_status", "user_phone_hash"}},
		func(h esread.Hit) error {
			ev, err := h.Decode()
			if err != nil {
				return err
			}
			key := ev.Tenant + "/" + ev.SessionID
			c := byKey[key]
			if c == nil {
				c = &logged{tenant: ev.Tenant, session: ev.SessionID, at: ev.Timestamp}
				byKey[key] = c
				out = append(out, c)
			}
			// Hits come oldest first: the latest event's CRM state wins.
			if ev.CRMID != "" {
				c.crmID = ev.CRMID
			}
			if ev.CRMStatus != "" {
				c.status = ev.CRMStatus
			}
			if ev.UserPhoneHash != "" {
				c.phoneHash = ev.UserPhoneHash
			}
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("read lead.created from Elasticsearch: %w", err)
	}
	return out, nil
}

// readCRM lists the assistant's leads created in [from, to): by ORIGIN_ID
// prefix and, when crm.source_id is set, by SOURCE_ID (the filter has no
// OR); the portal's date filter narrows, the dates read back decide.
func (r *reconciler) readCRM(ctx context.Context, from, to time.Time) ([]*crmLead, error) {
	dates := map[string]any{">=DATE_CREATE": from.UTC().Format(time.RFC3339), "<DATE_CREATE": to.UTC().Format(time.RFC3339)}
	prefix := originPrefix
	if r.tenant != "" {
		prefix += r.tenant + "/"
	}
	type query struct {
		what   string
		filter map[string]any
	}
	qs := []query{{"ORIGIN_ID " + prefix + "…", map[string]any{"%ORIGIN_ID": prefix}}}
	if r.sourceID != "" {
		qs = append(qs, query{"SOURCE_ID " + r.sourceID, map[string]any{"SOURCE_ID": r.sourceID}})
	}
	seen := map[bitrix24.ID]bool{}
	var out []*crmLead
	for _, q := range qs {
		for k, v := range dates {
			q.filter[k] = v
		}
		rows, err := r.list(ctx, q.what, q.filter)
		if err != nil {
			return nil, fmt.Errorf("read Bitrix24 leads (%s): %w", q.what, err)
		}
		for _, l := range rows {
			if seen[l.ID] {
				continue
			}
			seen[l.ID] = true
			cl := r.lead(l)
			if cl.created.IsZero() || cl.created.Before(from) || !cl.created.Before(to) {
				continue
			}
			if !cl.assistants() && strings.HasPrefix(l.OriginID, originPrefix) {
				continue // an assistant's ORIGIN_ID we cannot read: not a hand-made lead either
			}
			if r.tenant != "" && cl.assistants() && cl.tenant != r.tenant {
				continue
			}
			out = append(out, cl)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// list reads every page of a crm.lead.list, reporting progress on stderr
// at most every few seconds, and how many pages it took at the end.
func (r *reconciler) list(ctx context.Context, what string, filter map[string]any) ([]bitrix24.Lead, error) {
	last := time.Now()
	pages := 0
	rows, err := r.client.LeadList(ctx, filter, func(p, n int) {
		pages = p
		if time.Since(last) >= 3*time.Second {
			last = time.Now()
			fmt.Fprintf(r.progress, "сверка: Bitrix24 crm.lead.list (%s): страниц %d, лидов %d…\n", what, p, n)
		}
	})
	if err == nil {
		fmt.Fprintf(r.progress, "сверка: Bitrix24 crm.lead.list (%s): страниц %d, лидов %d\n", what, pages, len(rows))
	}
	return rows, err
}

func (r *reconciler) lead(l bitrix24.Lead) *crmLead {
	cl := &crmLead{Lead: l, created: l.Created()}
	cl.tenant, cl.session, _ = parseOrigin(l.OriginID)
	return cl
}

// lookUpLate finds, by their ORIGIN_IDs (@ORIGIN_ID, 50 at a time), the
// leads of conversations that had none in the window: made late or early.
func (r *reconciler) lookUpLate(ctx context.Context, missing []*logged, byKey map[string]*logged) error {
	for i := 0; i < len(missing); i += 50 {
		chunk := missing[i:min(i+50, len(missing))]
		origins := make([]string, len(chunk))
		for j, c := range chunk {
			origins[j] = crm.OriginID(c.tenant, c.session)
		}
		rows, err := r.list(ctx, fmt.Sprintf("по ORIGIN_ID %d–%d из %d разговоров без лида в окне", i+1, i+len(chunk), len(missing)),
			map[string]any{"@ORIGIN_ID": origins})
		if err != nil {
			return fmt.Errorf("look up leads by ORIGIN_ID: %w", err)
		}
		for _, l := range rows {
			cl := r.lead(l)
			if c := byKey[cl.tenant+"/"+cl.session]; cl.assistants() && c != nil {
				cl.matched = true
				c.leads, c.late = append(c.leads, cl), true
			}
		}
	}
	return nil
}

// notLoggedElsewhere drops the leads whose conversation has a lead.created
// in the log outside this period (e.g. just before midnight of the last
// day, the lead made after it): those belong to another period.
func (r *reconciler) notLoggedElsewhere(ctx context.Context, leads []*crmLead) ([]*crmLead, error) {
	elsewhere := map[string]bool{}
	for i := 0; i < len(leads); i += 500 {
		chunk := leads[i:min(i+500, len(leads))]
		sessions := make([]string, len(chunk))
		for j, l := range chunk {
			sessions[j] = l.session
		}
		err := r.e.es.Each(ctx, esread.Search{Query: and(terms("event_type", "lead.created"), terms("session_id", sessions...)),
			Source: []string{"tenant", "session_id"}}, func(h esread.Hit) error {
			ev, err := h.Decode()
			if err != nil {
				return err
			}
			elsewhere[ev.Tenant+"/"+ev.SessionID] = true
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("look up the conversations of unmatched leads: %w", err)
		}
	}
	var out []*crmLead
	for _, l := range leads {
		if !elsewhere[l.tenant+"/"+l.session] {
			out = append(out, l)
		}
	}
	return out, nil
}

// report counts per tenant and lists the discrepancies.
func (r *reconciler) report(convs []*logged, orphans, unattributed []*crmLead) *reconcileReport {
	rep := &reconcileReport{Total: reconcileRow{Tenant: "всего"}}
	if len(r.ws) > 0 {
		rep.Period = r.ws[0].Label
	}
	rows := map[string]*reconcileRow{}
	var order []string
	row := func(t string) *reconcileRow {
		if rows[t] == nil {
			rows[t] = &reconcileRow{Tenant: t}
			order = append(order, t)
		}
		return rows[t]
	}
	for _, w := range r.ws {
		row(w.Tenant.Name)
	}
	zone := func(tenant string) *time.Location {
		for _, w := range r.ws {
			if w.Tenant.Name == tenant {
				return w.Tenant.Location()
			}
		}
		return time.UTC
	}
	stamp := func(tenant string, t time.Time) string { return t.In(zone(tenant)).Format(time.RFC3339) }
	add := func(kind, tenant, session string, l *crmLead, created time.Time, status string) {
		d := discrepancy{Kind: kind, Tenant: tenant, Session: session, Created: stamp(tenant, created), CRMStatus: status}
		if l != nil {
			d.LeadID, d.OriginID = l.ID.String(), l.OriginID
		}
		if session != "" {
			d.Link = r.e.conversationLink(tenant, session)
		}
		rep.Items = append(rep.Items, d)
	}
	sort.SliceStable(convs, func(i, j int) bool { return convs[i].at.Before(convs[j].at) })
	for _, c := range convs {
		t := row(c.tenant)
		t.Logged++
		t.InCRM += len(c.leads)
		switch {
		case len(c.leads) == 0:
			t.Lost++
			add("lost", c.tenant, c.session, nil, c.at, c.status)
		case c.byPhone:
			t.Matched++
			t.ByPhone++
		default:
			t.Matched++
			t.ByOrigin++
		}
		if c.late {
			t.Late++
			add("late", c.tenant, c.session, c.leads[0], c.leads[0].created, c.status)
		}
		if len(c.leads) > 1 {
			t.Duplicates++
			for _, l := range c.leads[1:] {
				add("duplicate", c.tenant, c.session, l, l.created, c.status)
			}
		}
		switch c.status {
		case "pending":
			t.Pending++
			add("pending", c.tenant, c.session, nil, c.at, c.status)
		case "failed":
			t.Failed++
			add("failed", c.tenant, c.session, nil, c.at, c.status)
		}
	}
	for _, l := range orphans {
		t := row(l.tenant)
		t.Orphans++
		t.InCRM++
		add("orphan", l.tenant, l.session, l, l.created, "")
	}
	for _, l := range unattributed {
		rep.Total.Unattributed++
		add("unattributed", "", "", l, l.created, "")
	}
	for _, name := range order {
		t := rows[name]
		t.LostPct = pct(t.Lost, t.Logged)
		rep.Rows = append(rep.Rows, *t)
		tot := &rep.Total
		tot.Logged += t.Logged
		tot.InCRM += t.InCRM
		tot.Matched += t.Matched
		tot.ByOrigin += t.ByOrigin
		tot.ByPhone += t.ByPhone
		tot.Lost += t.Lost
		tot.Orphans += t.Orphans
		tot.Duplicates += t.Duplicates
		tot.Late += t.Late
		tot.Pending += t.Pending
		tot.Failed += t.Failed
	}
	rep.Total.LostPct = pct(rep.Total.Lost, rep.Total.Logged)
	return rep
}

func pct(n, of int) float64 {
	if of == 0 {
		return 0
	}
	return float64(n) * 100 / float64(of)
}

// table is the summary: a row per tenant and the total.
func (rep *reconcileReport) table() *output.Table {
	t := &output.Table{Columns: []string{"tenant", "period", "logged", "in_crm", "matched", "by_origin", "by_phone", "lost", "lost_pct",
		"orphans", "duplicates", "late", "pending", "failed", "unattributed"}}
	for _, r := range append(append([]reconcileRow(nil), rep.Rows...), rep.Total) {
		t.Add(r.Tenant, rep.Period, strconv.Itoa(r.Logged), strconv.Itoa(r.InCRM), strconv.Itoa(r.Matched), strconv.Itoa(r.ByOrigin),
			strconv.Itoa(r.ByPhone), strconv.Itoa(r.Lost), strconv.FormatFloat(r.LostPct, 'f', 1, 64), strconv.Itoa(r.Orphans),
			strconv.Itoa(r.Duplicates), strconv.Itoa(r.Late), strconv.Itoa(r.Pending), strconv.Itoa(r.Failed), strconv.Itoa(r.Unattributed))
	}
	return t
}

// reconcileLine is the one-line summary (stderr after every run; the
// demo prints it last).
func reconcileLine(rep *reconcileReport) string {
	t := rep.Total
	return fmt.Sprintf("Сверка с Bitrix24 (%s): лидов в логах %d, в CRM %d, сопоставлено %d (по ORIGIN_ID %d, по телефону %d), "+
		"потеряно %d (%.1f%%), сирот %d, дублей %d, поздних %d, в обработке %d, с ошибкой %d, без привязки %d",
		rep.Period, t.Logged, t.InCRM, t.Matched, t.ByOrigin, t.ByPhone, t.Lost, t.LostPct, t.Orphans, t.Duplicates, t.Late,
		t.Pending, t.Failed, t.Unattributed)
}

// writeDiscrepancies writes the items as CSV (written whole, then renamed,
// so a cron job never reads half a file).
func writeDiscrepancies(path string, items []discrepancy) error {
	t := &output.Table{Columns: []string{"kind", "tenant", "session_id", "lead_id", "created", "crm_status", "origin_id", "conversation_url"}}
	for _, d := range items {
		t.Add(d.Kind, d.Tenant, d.Session, d.LeadID, d.Created, d.CRMStatus, d.OriginID, d.Link)
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("--discrepancies: %w", err)
	}
	if err := t.CSV(f, false); err != nil {
		f.Close()
		return fmt.Errorf("--discrepancies: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("--discrepancies: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("--discrepancies: %w", err)
	}
	return nil
}
