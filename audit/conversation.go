package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/assistlog/assistlog/internal/esread"
	"github.com/assistlog/assistlog/internal/output"
)

const conversationUsage = `audit conversation — replay one conversation and check that it is whole.

Usage:
  audit conversation SESSION_ID [--tenant T] [--format table|md|html|json] [--out FILE]

The conversation is found in every monthly index behind the alias; no period
is needed. When the same session id exists for several tenants, --tenant
picks one (the error lists them). Times are shown in the tenant's zone from
the tenants file (UTC when the tenant is not in it).

The transcript, in order: time, who (customer, assistant, manager, system),
event type, text (masked as stored), intent and confidence, scenario step,
the lead (crm_id, crm_status, with the CRM link) and appointment ids.

The integrity verdict:
  - the conversation starts with session.started;
  - it ends with session.ended, or it is marked open (still going, or its
    end was lost); appointment.attended / appointment.no_show after the end
    are the booking system's later outcomes and are allowed there;
  - timestamps never go backwards, read in seq order;
  - with seq (1, 2, 3… per session): every missing seq is reported (as
    ranges) and every seq carried by two different events. A loss after
    the last stored seq cannot be seen. Without seq on some or all events
    the gap check is partial and says so.
Status: intact, open (no violation, no session.ended yet) or damaged.
Exit status: 0 for intact or open, 2 for damaged (the transcript is still
written), 1 when the conversation cannot be read — for scripts and cron.

Examples:
  audit conversation sgd-1_00000
  audit conversation sgd-1_00000 --tenant salon-aurora --format md --out conv.md
  audit conversation sgd-1_00000 --format html --out conv.html   # printable page
  audit conversation sgd-1_00000 --format json | jq .verdict

Flags:
`

// conversationFormats are the outputs of the replay.
var conversationFormats = []string{"table", "md", "html", "json"}

func runConversation(ctx context.Context, a *app, args []string) error {
	fs := flag.NewFlagSet("audit conversation", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	fs.Usage = func() { fmt.Fprint(a.stderr, conversationUsage); fs.PrintDefaults() }
	var c common
	c.flags(fs, false, conversationFormats)
	outPath := fs.String("out", "", "write to this file instead of standard output")
	pos, help, err := parse(fs, args)
	if help || err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return errors.New("audit conversation needs exactly one SESSION_ID")
	}
	if err := output.CheckFormat(c.format, conversationFormats); err != nil {
		return err
	}
	e, err := c.load(false)
	if err != nil {
		return err
	}
	conv, err := e.conversation(ctx, pos[0], c.tenant)
	if err != nil {
		return err
	}
	w := a.stdout
	if *outPath != "" {
		f, err := os.Create(*outPath)
		if err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		defer f.Close()
		w = f
	}
	if err := conv.write(w, c.format); err != nil {
		return fmt.Errorf("write the transcript: %w", err)
	}
	if *outPath != "" {
		fmt.Fprintf(a.stderr, "%s/%s: %d events, %s; written to %s\n", conv.Tenant, conv.SessionID, len(conv.Events), conv.Verdict.Status, *outPath)
	}
	if conv.Verdict.Status == "damaged" {
		return &exitError{code: 2, err: fmt.Errorf("%s/%s is damaged (see the verdict)", conv.Tenant, conv.SessionID)}
	}
	return nil
}

// stored is one event as Elasticsearch holds it: where, the source
// verbatim, and decoded.
type stored struct {
	Index  string
	ID     string
	Source json.RawMessage
	esread.Event
}

// sessionEvents reads every stored event of session (of tenant, or of
// every tenant when tenant is ""), grouped by tenant.
func sessionEvents(ctx context.Context, es *esread.Reader, tenant string, sessions ...string) (map[string][]stored, error) {
	q := []map[string]any{terms("session_id", sessions...)}
	if tenant != "" {
		q = append(q, map[string]any{"term": map[string]any{"tenant": tenant}})
	}
	out := map[string][]stored{}
	err := es.Each(ctx, esread.Search{Query: and(q...)}, func(h esread.Hit) error {
		ev, err := h.Decode()
		if err != nil {
			return err
		}
		out[ev.Tenant] = append(out[ev.Tenant], stored{Index: h.Index, ID: h.ID, Source: h.Source, Event: ev})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the conversation: %w", err)
	}
	return out, nil
}

// orderEvents puts a conversation in the order it was written: by seq when
// every event has one (then time, then event id, so repeats sit together),
// otherwise by time (then seq, then event id).
func orderEvents(evs []stored) {
	allSeq := true
	for _, e := range evs {
		if e.Seq == nil {
			allSeq = false
		}
	}
	seqOf := func(e stored) int64 {
		if e.Seq == nil {
			return 1 << 62
		}
		return *e.Seq
	}
	sort.SliceStable(evs, func(i, j int) bool {
		a, b := evs[i], evs[j]
		if allSeq && seqOf(a) != seqOf(b) {
			return seqOf(a) < seqOf(b)
		}
		if !a.Timestamp.Equal(b.Timestamp) {
			return a.Timestamp.Before(b.Timestamp)
		}
		if seqOf(a) != seqOf(b) {
			return seqOf(a) < seqOf(b)
		}
		if a.EventID != b.EventID {
			return a.EventID < b.EventID
		}
		return a.Index < b.Index
	})
}

// Conversation is a replayed conversation with its verdict.
type Conversation struct {
	Tenant    string `json:"tenant"`
	SessionID string `json:"session_id"`
	// Zone is the time zone the transcript's times are shown in.
	Zone string `json:"zone"`
	// Link is the conversation in Kibana (conversation_url).
	Link    string  `json:"link,omitempty"`
	Events  []turn  `json:"events"`
	Verdict Verdict `json:"verdict"`
	loc     *time.Location
	cfgLead string
}

// turn is one transcript line: the stored event verbatim and what the
// transcript shows of it.
type turn struct {
	Index string `json:"_index"`
	ID    string `json:"_id"`
	// Time is the event's time in the tenant's zone.
	Time    string          `json:"time"`
	Who     string          `json:"who"`
	CRMLink string          `json:"crm_link,omitempty"`
	Source  json.RawMessage `json:"event"`
	ev      esread.Event
}

// conversation finds and replays session; tenant "" means any tenant, as
// long as only one has that session id.
func (e *env) conversation(ctx context.Context, session, tenant string) (*Conversation, error) {
	byTenant, err := sessionEvents(ctx, e.es, tenant, session)
	if err != nil {
		return nil, err
	}
	if len(byTenant) == 0 {
		if tenant != "" {
			return nil, fmt.Errorf("no conversation %q of tenant %s in %s", session, tenant, e.es.Alias())
		}
		return nil, fmt.Errorf("no conversation %q in %s (any tenant)", session, e.es.Alias())
	}
	if len(byTenant) > 1 {
		var names []string
		for t, evs := range byTenant {
			names = append(names, fmt.Sprintf("%s (%d events)", t, len(evs)))
		}
		sort.Strings(names)
		return nil, fmt.Errorf("session %q exists for %d tenants, pick one with --tenant: %s", session, len(names), strings.Join(names, ", "))
	}
	var evs []stored
	for t, list := range byTenant {
		tenant, evs = t, list
	}
	orderEvents(evs)
	c := &Conversation{Tenant: tenant, SessionID: session, Zone: "UTC", loc: time.UTC,
		Link: e.conversationLink(tenant, session), cfgLead: e.leadURL()}
	if e.tenants != nil {
		if t, err := e.tenants.Get(tenant); err == nil {
			c.Zone, c.loc = t.TZ, t.Location()
		}
	}
	for _, s := range evs {
		c.Events = append(c.Events, turn{Index: s.Index, ID: s.ID, Source: s.Source, ev: s.Event,
			Time: s.Timestamp.In(c.loc).Format("2006-01-02 15:04:05.000"), Who: who(&s.Event), CRMLink: fillLead(c.cfgLead, s.CRMID)})
	}
	c.Verdict = checkIntegrity(evs)
	return c, nil
}

// leadURL is the link template of a CRM lead: crm.lead_url, or the
// portal's lead page derived from the webhook URL.
func (e *env) leadURL() string {
	if e.cfg.CRM.LeadURL != "" {
		return e.cfg.CRM.LeadURL
	}
	u := e.cfg.CRM.Bitrix24.WebhookURL
	if i := strings.Index(u, "/rest/"); i > 0 && strings.HasPrefix(u, "http") {
		return u[:i] + "/crm/lead/details/{crm_id}/"
	}
	return ""
}

func fillLead(tmpl, id string) string {
	if tmpl == "" || id == "" {
		return ""
	}
	return strings.ReplaceAll(tmpl, "{crm_id}", id)
}

// who says whose turn an event is. A message.sent with payload.manager is a
// manager's message; the rest of message.sent is the assistant's.
func who(e *esread.Event) string {
	switch e.Type {
	case "message.received", "consent.given", "complaint.received":
		return "customer"
	case "message.sent", "contact.requested":
		if e.PayloadString("manager") != "" {
			return "manager"
		}
		return "assistant"
	case "manager.joined":
		return "manager"
	}
	return "system"
}

// say is what the transcript shows as an event's text: payload.text as
// stored (masked), else what the event says in its payload.
func say(e *esread.Event) string {
	var parts []string
	if t := e.Text(); t != "" {
		parts = append(parts, t)
	}
	if atts, ok := e.Payload["attachments"].([]any); ok {
		for _, a := range atts {
			m, _ := a.(map[string]any)
			s := "[" + str(m["kind"])
			if c := str(m["caption"]); c != "" {
				s += ": " + c
			}
			parts = append(parts, s+"]")
		}
	}
	if len(parts) > 0 {
		return strings.Join(parts, " ")
	}
	switch e.Type {
	case "consent.given":
		if t := e.PayloadString("consent_text"); t != "" {
			return "consent: " + t
		}
		return "consent: " + e.PayloadString("consent")
	case "error":
		return e.PayloadString("component") + ": " + e.PayloadString("error")
	case "manager.joined":
		return e.PayloadString("manager") + " joined"
	case "handoff.requested":
		return e.PayloadString("reason")
	case "session.ended":
		return "outcome: " + e.Outcome
	}
	if e.Type == "appointment.confirmed" || e.Type == "appointment.rescheduled" {
		var s []string
		for _, k := range []string{"service", "provider", "starts_at"} {
			if v := e.PayloadString(k); v != "" {
				s = append(s, v)
			}
		}
		return strings.Join(s, ", ")
	}
	if e.Outcome != "" {
		return "outcome: " + e.Outcome
	}
	return ""
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// Verdict is the integrity check of one conversation.
type Verdict struct {
	// Status: intact, open (no violation; no session.ended) or damaged.
	Status string `json:"status"`
	// Problems lists every violation in words.
	Problems []string `json:"problems"`
	// Notes are what a partial check could not decide.
	Notes      []string `json:"notes,omitempty"`
	Events     int      `json:"events"`
	StartsOK   bool     `json:"starts_with_session_started"`
	Ended      bool     `json:"ended"`
	Open       bool     `json:"open"`
	EndEventID string   `json:"end_event_id,omitempty"`
	// FollowUps are appointment outcomes after session.ended: allowed.
	FollowUps []string `json:"follow_ups_after_end,omitempty"`
	// SeqCheck is complete (every event has seq), partial (some lack it)
	// or none (no event has seq: gaps cannot be proven).
	SeqCheck   string      `json:"seq_check"`
	WithoutSeq int         `json:"events_without_seq"`
	MaxSeq     int64       `json:"max_seq,omitempty"`
	Missing    []SeqRange  `json:"missing_seq"`
	Repeated   []SeqRepeat `json:"repeated_seq"`
	Backwards  []Backstep  `json:"time_backwards"`
	// TimeCheck says over which events timestamps were compared.
	TimeCheck string `json:"time_check"`
}

// SeqRange is a run of missing seq numbers, both ends included.
type SeqRange struct {
	From int64 `json:"from"`
	To   int64 `json:"to"`
}

func (r SeqRange) String() string {
	if r.From == r.To {
		return strconv.FormatInt(r.From, 10)
	}
	return fmt.Sprintf("%d–%d", r.From, r.To)
}

// SeqRepeat is one seq carried by several different events.
type SeqRepeat struct {
	Seq      int64    `json:"seq"`
	EventIDs []string `json:"event_ids"`
}

// Backstep is an event whose time is before the previous one's.
type Backstep struct {
	Seq         int64  `json:"seq"`
	EventID     string `json:"event_id"`
	Time        string `json:"time"`
	PrevEventID string `json:"prev_event_id"`
	PrevTime    string `json:"prev_time"`
}

// followUp types are the booking system's outcomes, reported after the
// conversation ended.
var followUp = map[string]bool{"appointment.attended": true, "appointment.no_show": true}

// checkIntegrity checks a conversation in transcript order (orderEvents).
func checkIntegrity(evs []stored) Verdict {
	v := Verdict{Events: len(evs), Missing: []SeqRange{}, Repeated: []SeqRepeat{}, Backwards: []Backstep{}, Problems: []string{}}
	if len(evs) == 0 {
		return v
	}
	name := func(s stored) string {
		if s.Seq != nil {
			return fmt.Sprintf("%s (seq %d)", s.EventID, *s.Seq)
		}
		return s.EventID
	}
	// Start.
	switch {
	case evs[0].Type == "session.started":
		v.StartsOK = true
	default:
		found := false
		for _, s := range evs {
			found = found || s.Type == "session.started"
		}
		if found {
			v.Problems = append(v.Problems, fmt.Sprintf("starts with %s %s, not session.started", evs[0].Type, name(evs[0])))
		} else {
			v.Problems = append(v.Problems, "no session.started: the beginning is missing")
		}
	}
	// End: session.ended, then nothing but the booking system's outcomes.
	end := -1
	for i, s := range evs {
		if s.Type == "session.ended" {
			if end >= 0 {
				v.Problems = append(v.Problems, fmt.Sprintf("session.ended twice: %s and %s", evs[end].EventID, name(s)))
				continue
			}
			end = i
		}
	}
	if end < 0 {
		v.Open = true
	} else {
		v.Ended, v.EndEventID = true, evs[end].EventID
		for _, s := range evs[end+1:] {
			switch {
			case followUp[s.Type]:
				v.FollowUps = append(v.FollowUps, s.EventID)
			case s.Type != "session.ended":
				v.Problems = append(v.Problems, fmt.Sprintf("%s %s after session.ended", s.Type, name(s)))
			}
		}
	}
	// seq: gaps and repeats among the events that carry it.
	bySeq := map[int64][]stored{}
	for _, s := range evs {
		if s.Seq == nil {
			v.WithoutSeq++
			continue
		}
		bySeq[*s.Seq] = append(bySeq[*s.Seq], s)
		v.MaxSeq = max(v.MaxSeq, *s.Seq)
	}
	switch {
	case v.WithoutSeq == 0:
		v.SeqCheck = "complete"
	case v.WithoutSeq == len(evs):
		v.SeqCheck = "none"
	default:
		v.SeqCheck = "partial"
	}
	for n := int64(1); n <= v.MaxSeq; n++ {
		if len(bySeq[n]) > 0 {
			continue
		}
		if k := len(v.Missing); k > 0 && v.Missing[k-1].To == n-1 {
			v.Missing[k-1].To = n
		} else {
			v.Missing = append(v.Missing, SeqRange{From: n, To: n})
		}
	}
	for _, r := range v.Missing {
		if v.SeqCheck == "partial" {
			// Events without seq may be the missing numbers: noted, not
			// proven lost.
			v.Notes = append(v.Notes, fmt.Sprintf("seq %s not found among the events with seq (%d events have none; they may be these)", r, v.WithoutSeq))
			continue
		}
		v.Problems = append(v.Problems, "seq "+r.String()+" missing")
	}
	seqs := make([]int64, 0, len(bySeq))
	for n := range bySeq {
		seqs = append(seqs, n)
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	for _, n := range seqs {
		ids := map[string][]string{}
		var order []string
		for _, s := range bySeq[n] {
			if _, ok := ids[s.EventID]; !ok {
				order = append(order, s.EventID)
			}
			ids[s.EventID] = append(ids[s.EventID], s.Index)
		}
		if len(order) > 1 {
			sort.Strings(order)
			v.Repeated = append(v.Repeated, SeqRepeat{Seq: n, EventIDs: order})
			v.Problems = append(v.Problems, fmt.Sprintf("seq %d repeated by different events: %s", n, strings.Join(order, ", ")))
		}
		for _, id := range order {
			if len(ids[id]) > 1 {
				v.Problems = append(v.Problems, fmt.Sprintf("event %s (seq %d) stored %d times: %s", id, n, len(ids[id]), strings.Join(ids[id], ", ")))
			}
		}
	}
	// Time never goes backwards, read in seq order. Without seq the order
	// is the time itself, so there is nothing to compare.
	var prev *stored
	for i := range evs {
		s := &evs[i]
		if s.Seq == nil {
			continue
		}
		if prev != nil && s.Timestamp.Before(prev.Timestamp) {
			v.Backwards = append(v.Backwards, Backstep{Seq: *s.Seq, EventID: s.EventID, Time: s.Timestamp.UTC().Format(time.RFC3339Nano),
				PrevEventID: prev.EventID, PrevTime: prev.Timestamp.UTC().Format(time.RFC3339Nano)})
			v.Problems = append(v.Problems, fmt.Sprintf("time goes backwards at %s: %s, before %s of %s (seq %d)",
				name(*s), s.Timestamp.UTC().Format(time.RFC3339Nano), prev.Timestamp.UTC().Format(time.RFC3339Nano), prev.EventID, *prev.Seq))
		}
		prev = s
	}
	switch v.SeqCheck {
	case "complete":
		v.TimeCheck = "checked on every event, in seq order"
	case "partial":
		// Events without seq are ordered by time among the rest, so only
		// the events with seq can show time going backwards.
		v.TimeCheck = fmt.Sprintf("checked on the %d events with seq, in seq order", len(evs)-v.WithoutSeq)
	default:
		v.TimeCheck = "not possible without seq (the transcript is in time order)"
	}
	switch {
	case len(v.Problems) > 0:
		v.Status = "damaged"
	case v.Open:
		v.Status = "open"
	default:
		v.Status = "intact"
	}
	return v
}

// lines is the verdict in words, one check a line.
func (v Verdict) lines() []string {
	var out []string
	switch {
	case v.Status == "intact" && v.SeqCheck != "complete":
		out = append(out, "status: INTACT as far as it can be checked — the gap check is partial (see seq)")
	default:
		out = append(out, "status: "+strings.ToUpper(v.Status))
	}
	if v.StartsOK {
		out = append(out, "start: session.started ✓")
	}
	switch {
	case v.Ended && len(v.FollowUps) > 0:
		out = append(out, fmt.Sprintf("end: session.ended ✓ (%s), then %d booking outcome(s) reported later (allowed): %s",
			v.EndEventID, len(v.FollowUps), strings.Join(v.FollowUps, ", ")))
	case v.Ended:
		out = append(out, "end: session.ended ✓ ("+v.EndEventID+")")
	default:
		out = append(out, "end: OPEN — no session.ended (still going, or its end was not stored)")
	}
	switch v.SeqCheck {
	case "complete":
		if len(v.Missing) == 0 && len(v.Repeated) == 0 {
			out = append(out, fmt.Sprintf("seq: 1–%d complete, no gaps, no repeats ✓ (a loss after seq %d cannot be seen)", v.MaxSeq, v.MaxSeq))
		} else {
			out = append(out, fmt.Sprintf("seq: checked 1–%d on every event", v.MaxSeq))
		}
	case "partial":
		out = append(out, fmt.Sprintf("seq: PARTIAL check — %d of %d events have no seq; gaps among those cannot be proven", v.WithoutSeq, v.Events))
	default:
		out = append(out, "seq: NONE — no event has seq; the gap check is not possible (partial)")
	}
	out = append(out, "time order: "+v.TimeCheck)
	for _, p := range v.Problems {
		out = append(out, "✗ "+p)
	}
	for _, n := range v.Notes {
		out = append(out, "? "+n)
	}
	return out
}

// table is the transcript as rows.
func (c *Conversation) table() *output.Table {
	t := &output.Table{Columns: []string{"seq", "time", "who", "event", "text", "intent", "scenario", "lead", "appointment"}}
	shown := ""
	for _, tr := range c.Events {
		e := tr.ev
		seq := ""
		if e.Seq != nil {
			seq = strconv.FormatInt(*e.Seq, 10)
		}
		intent := e.Intent
		if e.Confidence != nil {
			intent += fmt.Sprintf(" (%.2f)", *e.Confidence)
		}
		scen := ""
		if e.Scenario != nil {
			from := e.Scenario.From
			if from == "" {
				from = "∅"
			}
			scen = from + " → " + e.Scenario.To
		}
		// The shipper fills the lead into every event of the conversation
		// once the CRM answers; shown where it first appears, on the
		// lead.created itself and wherever it changes.
		lead := e.CRMID
		if e.CRMStatus != "" {
			lead = strings.TrimSpace(lead + " " + e.CRMStatus)
		}
		if lead == shown && e.Type != "lead.created" {
			lead = ""
		} else {
			shown = lead
		}
		t.Add(seq, tr.Time, tr.Who, string(e.Type), say(&e), intent, scen, lead, e.PayloadString("appointment_id"))
	}
	return t
}

// leads are the conversation's CRM ids with their links.
func (c *Conversation) leads() [][2]string {
	seen := map[string]bool{}
	var out [][2]string
	for _, tr := range c.Events {
		if id := tr.ev.CRMID; id != "" && !seen[id] {
			seen[id] = true
			out = append(out, [2]string{id, tr.CRMLink})
		}
	}
	return out
}

func (c *Conversation) write(w io.Writer, format string) error {
	switch format {
	case "json":
		return output.WriteJSON(w, c)
	case "html":
		return c.html(w)
	case "md":
		fmt.Fprintf(w, "# Conversation %s\n\n- tenant: %s\n- times: %s\n- events: %d\n", c.SessionID, c.Tenant, c.Zone, len(c.Events))
		if c.Link != "" {
			fmt.Fprintf(w, "- link: <%s>\n", c.Link)
		}
		for _, l := range c.leads() {
			if l[1] != "" {
				fmt.Fprintf(w, "- CRM lead %s: <%s>\n", l[0], l[1])
			} else {
				fmt.Fprintf(w, "- CRM lead %s\n", l[0])
			}
		}
		fmt.Fprint(w, "\n## Integrity\n\n")
		for _, l := range c.Verdict.lines() {
			fmt.Fprintf(w, "- %s\n", l)
		}
		fmt.Fprint(w, "\n## Transcript\n\n")
		return c.table().Markdown(w)
	}
	fmt.Fprintf(w, "Conversation %s of %s — %d events, times in %s\n", c.SessionID, c.Tenant, len(c.Events), c.Zone)
	for _, l := range c.leads() {
		fmt.Fprintf(w, "CRM lead %s %s\n", l[0], l[1])
	}
	fmt.Fprintln(w)
	t := c.table()
	t.Width = 80
	if err := t.Text(w); err != nil {
		return err
	}
	fmt.Fprintln(w)
	for _, l := range c.Verdict.lines() {
		fmt.Fprintln(w, l)
	}
	return nil
}
