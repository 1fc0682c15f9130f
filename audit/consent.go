package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/assistlog/assistlog/internal/esread"
	"github.com/assistlog/assistlog/internal/output"
	"github.com/assistlog/assistlog/internal/period"
)

const consentUsage = `audit consent — prove each lead's consent to the processing of personal data.

Usage:
  audit consent --session SESSION_ID [--tenant T] [--format table|csv|json|md] [--proof FILE]
  audit consent --week 2026-W47 | --from D --to D | --month 2026-11 | --last 7d
                [--tenant T] [--format ...] [--proof FILE]
  audit consent verify FILE

A lead is a conversation with lead.created (in period mode: a lead.created
inside the period, read in each tenant's time zone). For each lead:
  - the consent: the first consent.given of the conversation — its event id,
    time, channel and the wording the customer agreed to (payload.consent_text,
    or else the text of the contact.requested just before it);
  - the first event that carried the customer's contact data: one with
    user_phone / user_phone_hash set, or a customer's event (message.received,
    consent.given, complaint.received) whose payload the shipper masked
    (pii_masked lists a payload field: a phone number or e-mail in the text).
    The channel's own id (user_id — for WhatsApp the number itself) and
    numbers the assistant says (a business's phone) are not the customer
    handing over contact data, so they do not count;
  - the verdict: ok (consent before the contact data, or no contact data),
    missing (no consent.given), after_contact (the contact data came first).
Events are compared in the conversation's order (seq, when every event has
it; else time). Period mode lists every lead and the totals.

--proof FILE writes FILE (JSON: the leads, the events they rest on exactly as
stored with their index and _id, and a SHA-256 digest over the events'
canonical JSON, whose definition is in the file) and a readable Markdown
rendering next to it (FILE with .md). verify re-reads those events from
Elasticsearch by index and _id and says whether they still match; it exits
2 naming every event that differs or is missing.

Examples:
  audit consent --session sgd-1_00000 --proof consent-sgd-1_00000.json
  audit consent --week 2026-W47 --tenant salon-aurora
  audit consent --last 30d --format csv > consent.csv
  audit consent verify consent-sgd-1_00000.json

Flags:
`

func runConsent(ctx context.Context, a *app, args []string) error {
	if len(args) > 0 && args[0] == "verify" {
		return runConsentVerify(ctx, a, args[1:])
	}
	fs := flag.NewFlagSet("audit consent", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	fs.Usage = func() { fmt.Fprint(a.stderr, consentUsage); fs.PrintDefaults() }
	var c common
	c.flags(fs, true, nil)
	session := fs.String("session", "", "one conversation (instead of a period)")
	proof := fs.String("proof", "", "write a proof record to this file (JSON) and FILE.md")
	pos, help, err := parse(fs, args)
	if help || err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("unexpected argument %q (one conversation is --session ID)", pos[0])
	}
	if err := output.CheckFormat(c.format, nil); err != nil {
		return err
	}
	hasPeriod := c.period != (period.Spec{})
	if (*session == "") == !hasPeriod {
		fs.Usage()
		return errors.New("give either --session ID or a period (--week, --from/--to, --month, --last)")
	}
	e, err := c.load(*session == "")
	if err != nil {
		return err
	}
	var rep *consentReport
	if *session != "" {
		rep, err = e.consentOfSession(ctx, *session, c.tenant)
	} else {
		var ws []Window
		if ws, err = c.windows(e, a.now()); err != nil {
			return err
		}
		rep, err = e.consentOfPeriod(ctx, ws, a.stderr)
	}
	if err != nil {
		return err
	}
	if err := rep.write(a.stdout, c.format); err != nil {
		return err
	}
	t := rep.Totals
	fmt.Fprintf(a.stderr, "consent: %d leads — ok %d, missing %d, after_contact %d\n", t.Leads, t.OK, t.Missing, t.AfterContact)
	if *proof != "" {
		md, err := rep.writeProof(*proof, e.es.Alias(), a.now())
		if err != nil {
			return err
		}
		fmt.Fprintf(a.stderr, "proof: %s (%d events, sha256 %s) and %s\n", *proof, len(rep.proofEvents()), rep.digest, md)
	}
	return nil
}

// Verdicts of a lead's consent.
const (
	consentOK           = "ok"
	consentMissing      = "missing"
	consentAfterContact = "after_contact"
)

// LeadConsent is one lead's consent and first contact data.
type LeadConsent struct {
	Tenant      string `json:"tenant"`
	SessionID   string `json:"session_id"`
	CRMID       string `json:"crm_id,omitempty"`
	LeadEventID string `json:"lead_event_id"`
	LeadTime    string `json:"lead_time"`
	Verdict     string `json:"verdict"`
	// Consent is the first consent.given (nil: none).
	Consent *ConsentEvent `json:"consent"`
	// Contact is the first event with the customer's contact data (nil:
	// none).
	Contact *ContactEvent `json:"contact"`
	// evidence is what the proof includes: the consent, the question it
	// answered, the first contact and the lead.
	evidence []stored
}

// ConsentEvent is the consent.given.
type ConsentEvent struct {
	EventID string `json:"event_id"`
	Time    string `json:"time"`
	Channel string `json:"channel"`
	Text    string `json:"text"`
	// TextFrom says where Text was read: payload.consent_text, or the
	// contact.requested event it answered.
	TextFrom string `json:"text_from"`
}

// ContactEvent is the first event that carried contact data.
type ContactEvent struct {
	EventID string `json:"event_id"`
	Type    string `json:"event_type"`
	Time    string `json:"time"`
	// Fields are the fields that held the contact data.
	Fields []string `json:"fields"`
}

// Totals counts verdicts.
type Totals struct {
	Leads        int `json:"leads"`
	OK           int `json:"ok"`
	Missing      int `json:"missing"`
	AfterContact int `json:"after_contact"`
}

type consentReport struct {
	Leads  []LeadConsent `json:"leads"`
	Totals Totals        `json:"totals"`
	// Scope says what was asked: a session or the period per tenant.
	Scope  string `json:"scope"`
	digest string
}

// contactFields are the fields of e that carry the customer's contact data.
func contactFields(e *esread.Event) []string {
	var f []string
	if e.UserPhone != "" {
		f = append(f, "user_phone")
	}
	if e.UserPhoneHash != "" {
		f = append(f, "user_phone_hash")
	}
	if who(e) == "customer" {
		for _, m := range e.PIIMasked {
			if strings.HasPrefix(m, "payload.") {
				f = append(f, m)
			}
		}
	}
	return f
}

// judge finds a lead's consent and first contact in one conversation in
// transcript order.
func judge(evs []stored, loc *time.Location) LeadConsent {
	orderEvents(evs)
	at := func(s stored) string { return s.Timestamp.In(loc).Format("2006-01-02 15:04:05.000") }
	l := LeadConsent{Tenant: evs[0].Tenant, SessionID: evs[0].SessionID}
	consentAt, contactAt := -1, -1
	var lead, asked *stored
	for i := range evs {
		s := &evs[i]
		switch {
		case s.Type == "lead.created" && lead == nil:
			lead = s
		case s.Type == "contact.requested" && consentAt < 0:
			asked = s
		case s.Type == "consent.given" && consentAt < 0:
			consentAt = i
			c := &ConsentEvent{EventID: s.EventID, Time: at(*s), Channel: s.Channel,
				Text: s.PayloadString("consent_text"), TextFrom: "payload.consent_text"}
			if c.Text == "" && asked != nil {
				c.Text, c.TextFrom = asked.Text(), "contact.requested "+asked.EventID
			}
			if c.Text == "" {
				c.TextFrom = "not stored"
			}
			l.Consent = c
		}
		if f := contactFields(&s.Event); len(f) > 0 && contactAt < 0 {
			contactAt = i
			l.Contact = &ContactEvent{EventID: s.EventID, Type: s.Type, Time: at(*s), Fields: f}
		}
	}
	if lead != nil {
		l.LeadEventID, l.LeadTime, l.CRMID = lead.EventID, at(*lead), lead.CRMID
	}
	switch {
	case consentAt < 0:
		l.Verdict = consentMissing
	case contactAt >= 0 && contactAt < consentAt:
		l.Verdict = consentAfterContact
	default:
		l.Verdict = consentOK
	}
	// The proof holds the events the verdict rests on.
	seen := map[string]bool{}
	for i, s := range evs {
		keep := i == consentAt || i == contactAt || (lead != nil && s.Index == lead.Index && s.ID == lead.ID) ||
			(asked != nil && consentAt >= 0 && s.Index == asked.Index && s.ID == asked.ID)
		if keep && !seen[s.Index+"/"+s.ID] {
			seen[s.Index+"/"+s.ID] = true
			l.evidence = append(l.evidence, s)
		}
	}
	return l
}

func (e *env) zone(tenant string) *time.Location {
	if e.tenants != nil {
		if t, err := e.tenants.Get(tenant); err == nil {
			return t.Location()
		}
	}
	return time.UTC
}

func (e *env) consentOfSession(ctx context.Context, session, tenant string) (*consentReport, error) {
	conv, err := e.conversation(ctx, session, tenant)
	if err != nil {
		return nil, err
	}
	rep := &consentReport{Leads: []LeadConsent{}, Scope: "session " + conv.Tenant + "/" + session}
	evs := make([]stored, 0, len(conv.Events))
	hasLead := false
	for _, t := range conv.Events {
		evs = append(evs, stored{Index: t.Index, ID: t.ID, Source: t.Source, Event: t.ev})
		hasLead = hasLead || t.ev.Type == "lead.created"
	}
	if hasLead {
		rep.add(judge(evs, conv.loc))
	}
	return rep, nil
}

// consentOfPeriod judges every conversation with a lead.created in the
// windows, reading each whole (its consent may be before the period).
func (e *env) consentOfPeriod(ctx context.Context, ws []Window, progress io.Writer) (*consentReport, error) {
	type key struct{ tenant, session string }
	var leads []key
	seen := map[key]bool{}
	err := e.es.Each(ctx, esread.Search{Query: and(windowFilter(ws, ""), terms("event_type", "lead.created")),
		Source: []string{"tenant", "session_id"}}, func(h esread.Hit) error {
		ev, err := h.Decode()
		if err != nil {
			return err
		}
		k := key{ev.Tenant, ev.SessionID}
		if !seen[k] {
			seen[k] = true
			leads = append(leads, k)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("find the leads: %w", err)
	}
	var scope []string
	same := true
	for _, w := range ws {
		scope = append(scope, w.Tenant.Name+" "+w.Label)
		same = same && w.Label == ws[0].Label
	}
	desc := "period: " + strings.Join(scope, "; ")
	if same && len(ws) > 1 {
		desc = fmt.Sprintf("period %s in each tenant's zone (%d tenants)", ws[0].Label, len(ws))
	}
	rep := &consentReport{Leads: []LeadConsent{}, Scope: desc}
	byTenant := map[string][]string{}
	var tenantOrder []string
	for _, k := range leads {
		if byTenant[k.tenant] == nil {
			tenantOrder = append(tenantOrder, k.tenant)
		}
		byTenant[k.tenant] = append(byTenant[k.tenant], k.session)
	}
	sort.Strings(tenantOrder)
	const batch = 500
	done := 0
	for _, t := range tenantOrder {
		sessions := byTenant[t]
		sort.Strings(sessions)
		for i := 0; i < len(sessions); i += batch {
			part := sessions[i:min(i+batch, len(sessions))]
			got, err := sessionEvents(ctx, e.es, t, part...)
			if err != nil {
				return nil, err
			}
			bySession := map[string][]stored{}
			for _, s := range got[t] {
				bySession[s.SessionID] = append(bySession[s.SessionID], s)
			}
			for _, s := range part {
				rep.add(judge(bySession[s], e.zone(t)))
			}
			done += len(part)
			if len(leads) > batch {
				fmt.Fprintf(progress, "consent: %d of %d leads read\n", done, len(leads))
			}
		}
	}
	return rep, nil
}

func (r *consentReport) add(l LeadConsent) {
	r.Leads = append(r.Leads, l)
	r.Totals.Leads++
	switch l.Verdict {
	case consentOK:
		r.Totals.OK++
	case consentMissing:
		r.Totals.Missing++
	case consentAfterContact:
		r.Totals.AfterContact++
	}
}

func (r *consentReport) table() *output.Table {
	t := &output.Table{Columns: []string{"tenant", "session_id", "crm_id", "verdict", "consent_event", "consent_time", "channel",
		"consent_text", "contact_event", "contact_time", "contact_fields"}}
	for _, l := range r.Leads {
		var ce, ct, ch, tx, ke, kt, kf string
		if c := l.Consent; c != nil {
			ce, ct, ch, tx = c.EventID, c.Time, c.Channel, c.Text
		}
		if k := l.Contact; k != nil {
			ke, kt, kf = k.EventID+" ("+k.Type+")", k.Time, strings.Join(k.Fields, " ")
		}
		t.Add(l.Tenant, l.SessionID, l.CRMID, l.Verdict, ce, ct, ch, tx, ke, kt, kf)
	}
	return t
}

func (r *consentReport) write(w io.Writer, format string) error {
	switch format {
	case "json":
		return output.WriteJSON(w, r)
	case "csv":
		return r.table().Write(w, format)
	}
	if err := r.table().Write(w, format); err != nil {
		return err
	}
	t := r.Totals
	_, err := fmt.Fprintf(w, "\n%s — leads %d: ok %d, missing %d, after_contact %d\n", r.Scope, t.Leads, t.OK, t.Missing, t.AfterContact)
	return err
}
