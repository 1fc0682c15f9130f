package crm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/assistlog/assistlog/internal/bitrix24"
	"github.com/assistlog/assistlog/internal/errpolicy"
)

// WorkerConfig configures the CRM worker.
type WorkerConfig struct {
	Brokers []string
	// Dialer carries the program's TLS and SASL settings
	// (kafka.Connector.Dialer); nil connects in plaintext.
	Dialer  *kafkago.Dialer
	Topic   string
	GroupID string
	// Sync creates leads (on lead.created) and activities (on
	// appointment.confirmed); without it the worker only looks leads up.
	Sync bool
	// SourceID is the lead's SOURCE_ID (a STATUS_ID of the SOURCE
	// directory; create "CHATBOT" with crm.status.add to use it).
	SourceID string
	// ConversationURL is written into the lead's COMMENTS; {tenant} and
	// {session_id} are replaced.
	ConversationURL string
}

// Validate names the field at fault.
func (c WorkerConfig) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("brokers: required"))
	}
	if c.Topic == "" {
		errs = append(errs, errors.New("topic: required"))
	}
	if c.GroupID == "" {
		errs = append(errs, errors.New("group_id: required"))
	}
	return errors.Join(errs...)
}

// OriginID is the lead's ORIGIN_ID for a conversation: how the lead is
// found again after a restart, so one conversation never gets two leads.
func OriginID(tenant, session string) string { return "assistlog:" + tenant + "/" + session }

// TodoMarker is written into the description of an appointment's to-do:
// how the to-do is found again (crm.activity.list) after a crash or a lost
// reply, so one appointment never gets two.
func TodoMarker(appointment string) string { return "(appointment " + appointment + ")" }

// Worker resolves pending links against Bitrix24.
type Worker struct {
	cfg    WorkerConfig
	store  *Store
	client *bitrix24.Client
	policy *errpolicy.Policy
	log    *slog.Logger
	// OnLinked runs after a session got its CRM id (the shipper fills the
	// id into documents already stored); it is retried until it succeeds.
	OnLinked func(ctx context.Context, l Link) error
	outcomes *prometheus.CounterVec
}

// NewWorker builds a worker that waits out failures with policy (a token
// expiry pauses it, never fails a link) and registers its metrics on reg.
func NewWorker(cfg WorkerConfig, store *Store, client *bitrix24.Client, policy *errpolicy.Policy, log *slog.Logger, reg prometheus.Registerer) (*Worker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("crm worker config: %w", err)
	}
	if store == nil || client == nil || policy == nil || log == nil || reg == nil {
		return nil, errors.New("crm worker: a store, a Bitrix24 client, an error policy, a logger and a metrics registry are required")
	}
	w := &Worker{cfg: cfg, store: store, client: client, policy: policy, log: log,
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "assistlog_crm_links_total",
			Help: "Resolved links by kind and outcome (linked: found by phone or origin, created, from_event, no_lead, done, found: a to-do made before, failed)."}, []string{"kind", "outcome"})}
	if err := reg.Register(w.outcomes); err != nil {
		return nil, fmt.Errorf("register crm metrics: %w", err)
	}
	policy.Declare(bitrix24.Destination)
	return w, nil
}

// Run consumes the links topic in the worker's group until ctx ends. A
// record is committed only after it was resolved (or failed for good).
// Records are taken in groups of up to groupMax: the new conversations of
// a group get their leads through batch requests (createLeads), and the
// appointments of linked conversations their to-dos (addTodos); the rest
// are answered one by one, in order.
func (w *Worker) Run(ctx context.Context) error {
	r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: w.cfg.Brokers, Dialer: w.cfg.Dialer, GroupID: w.cfg.GroupID, Topic: w.cfg.Topic,
		StartOffset: kafkago.FirstOffset, CommitInterval: 0, MaxWait: 200 * time.Millisecond,
		SessionTimeout: 10 * time.Second, HeartbeatInterval: 2 * time.Second})
	defer r.Close()
	for {
		msgs, err := fetchGroup(ctx, r)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("crm worker fetch: %w", err)
		}
		if err := w.handleGroup(ctx, msgs); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if err := r.CommitMessages(ctx, msgs...); err != nil && ctx.Err() == nil {
			w.log.Warn("crm worker commit failed; the records will be handled again", "err", err)
		}
	}
}

// batchMax is the most commands one batch request may carry (CONTRACT.md
// section 6, batch).
const batchMax = 50

// groupMax bounds a group of records: several batches' worth, because a
// group also holds records that need no command (a conversation asked
// about again once linked) and mixes conversations with appointments, so
// a group of 50 records sent half-empty batches while a backlog waited at
// the portal's 2 requests/s.
const groupMax = 4 * batchMax

// groupLinger is how long a group waits for more records after its first:
// a backlog arrives partition by partition, each fetch waiting up to the
// reader's MaxWait (200ms), so a shorter linger sends half-full batches;
// a lone record waits this long more for its lead.
const groupLinger = 300 * time.Millisecond

// fetchGroup waits for a record, then takes up to groupMax-1 more that
// arrive within groupLinger.
func fetchGroup(ctx context.Context, r *kafkago.Reader) ([]kafkago.Message, error) {
	m, err := r.FetchMessage(ctx)
	if err != nil {
		return nil, err
	}
	msgs := []kafkago.Message{m}
	lctx, cancel := context.WithTimeout(ctx, groupLinger)
	defer cancel()
	for len(msgs) < groupMax {
		m, err := r.FetchMessage(lctx)
		if err != nil {
			break // the linger is over (or ctx ended: the caller sees it next)
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}

// handleGroup answers a group of records: first the leads of its new
// conversations, in batches; then every other conversation's record in
// order, one by one; last the appointments: those whose conversation is
// linked get their to-dos in batches (addTodos), the rest (waiting for
// their conversation, or without a lead) one by one.
func (w *Worker) handleGroup(ctx context.Context, msgs []kafkago.Message) error {
	var fresh []Link
	batched := map[int]bool{}
	seen := map[string]bool{}
	for i, m := range msgs {
		l, ok := w.newConversation(m)
		if !ok || seen[l.Key()] {
			continue // a repeat of a conversation in the group is answered from the view, below
		}
		seen[l.Key()] = true
		fresh = append(fresh, l)
		batched[i] = true
	}
	created := map[string]bool{} // conversations whose lead this group made
	for len(fresh) > 0 {
		n := min(len(fresh), batchMax)
		if err := w.createLeads(ctx, fresh[:n], created); err != nil {
			return err
		}
		fresh = fresh[n:]
	}
	var appts []kafkago.Message
	for i, m := range msgs {
		if batched[i] {
			continue
		}
		if w.appointment(m) {
			appts = append(appts, m) // after every conversation of the group: its lead is known by then
			continue
		}
		if err := w.handle(ctx, m); err != nil {
			return err
		}
	}
	asked := w.createBeforeTodos(appts, seen)
	for len(asked) > 0 {
		n := min(len(asked), batchMax)
		if err := w.createLeads(ctx, asked[:n], created); err != nil {
			return err
		}
		asked = asked[n:]
	}
	var todos []todoJob
	for _, m := range appts {
		j, ok := w.newTodo(m, created)
		if !ok {
			if err := w.handle(ctx, m); err != nil {
				return err
			}
			continue
		}
		if seen[j.link.Key()] {
			continue // asked twice in the group: one answer, written after both requests, covers both
		}
		seen[j.link.Key()] = true
		todos = append(todos, j)
	}
	for len(todos) > 0 {
		n := min(len(todos), batchMax)
		if err := w.addTodos(ctx, todos[:n]); err != nil {
			return err
		}
		todos = todos[n:]
	}
	return nil
}

// createBeforeTodos returns the conversations of appointments that the
// view shows asked to make a lead by a request outside the group: written
// after the appointment's request (the shipper asks for a lead when it
// stores lead.created, which may reach it after appointment.confirmed),
// so it comes later on the partition. Its lead is made now (found by
// ORIGIN_ID if it exists), or the appointment would be answered as
// lead-less; the request itself, met later, finds the conversation
// linked. A number the view could not open is left to that request.
func (w *Worker) createBeforeTodos(appts []kafkago.Message, seen map[string]bool) []Link {
	if !w.cfg.Sync {
		return nil
	}
	var out []Link
	for _, m := range appts {
		a, err := w.store.decode(m.Value)
		if err != nil {
			continue
		}
		key := SessionKey(a.Tenant, a.SessionID)
		v, ok := w.store.Get(key)
		if seen[key] || !ok || v.Kind != KindSession || v.State != StatePending || !v.CreateLead || v.CRMID != "" || v.PhoneSealed != "" {
			continue
		}
		seen[key] = true
		out = append(out, v)
	}
	return out
}

// appointment reports a readable request for an appointment's to-do.
func (w *Worker) appointment(m kafkago.Message) bool {
	if m.Value == nil {
		return false
	}
	l, err := w.store.decode(m.Value)
	return err == nil && l.Kind == KindAppointment && !l.resolved()
}

// todoJob is an appointment whose to-do goes in a batch: its request, the
// lead of its conversation, and whether that lead was made by this group
// (then it cannot hold the to-do yet, and the look-up is skipped).
type todoJob struct {
	link    Link
	lead    bitrix24.ID
	crmID   string
	created bool
}

// newTodo decodes an appointment whose conversation is linked: what
// addActivity would look up and add. Any other (no sync, a conversation
// not linked yet or without a lead) is answered one by one.
func (w *Worker) newTodo(m kafkago.Message, created map[string]bool) (todoJob, bool) {
	if !w.cfg.Sync {
		return todoJob{}, false
	}
	l, err := w.store.decode(m.Value)
	if err != nil || l.Kind != KindAppointment || l.resolved() {
		return todoJob{}, false
	}
	key := SessionKey(l.Tenant, l.SessionID)
	sess, ok := w.store.Get(key)
	if !ok || sess.State != StateLinked {
		return todoJob{}, false
	}
	var lead bitrix24.ID
	if err := lead.UnmarshalJSON([]byte(sess.CRMID)); err != nil || lead <= 0 {
		return todoJob{}, false // addActivity answers it as failed
	}
	return todoJob{link: l, lead: lead, crmID: sess.CRMID, created: created[key]}, true
}

// newConversation decodes a record that asks for a lead the CRM may not
// have yet: what resolveSession would look up by ORIGIN_ID and create.
func (w *Worker) newConversation(m kafkago.Message) (Link, bool) {
	if m.Value == nil || !w.cfg.Sync {
		return Link{}, false
	}
	// Through the store: a pending record's number is sealed (Protect).
	l, err := w.store.decode(m.Value)
	if err != nil {
		return Link{}, false // handle reports it
	}
	if l.Kind != KindSession || l.resolved() || l.CRMID != "" || !l.CreateLead {
		return Link{}, false
	}
	if cur, ok := w.store.Get(l.Key()); ok && (cur.State == StateLinked || cur.State == StateFailed) {
		return Link{}, false // answered already: resolveSession repeats the answer
	}
	return l, true
}

// handle answers one request, waiting with the error policy while it
// fails: a CRM outage or rate limit delays links, an expired token or
// refused credentials pause them (assistlog_destination_paused), and only a
// record the CRM rejects as invalid is answered as failed.
func (w *Worker) handle(ctx context.Context, m kafkago.Message) error {
	if m.Value == nil {
		return nil
	}
	l, err := w.store.decode(m.Value)
	switch {
	case err != nil && l.Kind == "":
		w.log.Warn("unreadable crm link record; skipped", "key", string(m.Key), "err", err)
		return nil
	case l.resolved():
		return nil // a result, written by a worker
	case err != nil:
		// A request whose number is sealed with a key this shipper lacks:
		// answering it without the number would be wrong (no_lead), so the
		// worker stops here, naming the key, until pii.keys has it.
		return fmt.Errorf("crm worker: %w", err)
	}
	var step func(context.Context, Link) error
	switch l.Kind {
	case KindSession:
		step = w.resolveSession
	case KindAppointment:
		// The waits below count from this worker's first look, not from
		// the request's time: a worker behind on a backlog must not answer
		// an appointment as lead-less because its request is old.
		first := time.Now()
		step = func(ctx context.Context, l Link) error { return w.addActivity(ctx, l, first) }
	default:
		return nil
	}
	a := w.policy.Start(bitrix24.Destination)
	for {
		err := step(ctx, l)
		if err != nil && errpolicy.Classify(err) == errpolicy.DeadLetter {
			err = w.fail(ctx, l, err)
		}
		if err == nil {
			a.Done()
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if werr := a.Wait(ctx, fmt.Errorf("crm link %s: %w", l.Key(), err)); werr != nil {
			return werr
		}
	}
}

// fail answers a record the CRM refused as invalid: state failed with the
// reason, so the pipeline moves on and the metric shows it.
func (w *Worker) fail(ctx context.Context, l Link, reason error) error {
	l.State, l.Error = StateFailed, reason.Error()
	if err := w.store.Put(ctx, l); err != nil {
		return err
	}
	w.outcomes.WithLabelValues(l.Kind, "failed").Inc()
	w.log.Error("crm refused the record for good", "key", l.Key(), "err", reason)
	return nil
}

// resolveSession finds or creates the conversation's lead.
func (w *Worker) resolveSession(ctx context.Context, l Link) error {
	if cur, ok := w.store.Get(l.Key()); ok {
		switch {
		case cur.State == StateLinked:
			// Linked already; the shipper asks again after it stored events
			// of the conversation without the id, so fill them in. The answer
			// is written again so that compaction keeps it, not the request.
			l.State, l.CRMID, l.Error = StateLinked, cur.CRMID, ""
			if err := w.store.Put(ctx, l); err != nil {
				return err
			}
			return w.linked(ctx, l)
		case cur.State == StateFailed, cur.State == StateNoLead && !l.CreateLead:
			l.State, l.CRMID, l.Error = cur.State, "", cur.Error
			return w.store.Put(ctx, l) // answered already; keep the answer last
		}
	}
	origin := OriginID(l.Tenant, l.SessionID)
	var crmID bitrix24.ID
	outcome := "linked"
	if l.CRMID != "" {
		// The assistant knew the lead (the event carried crm_id): trust it.
		if err := crmID.UnmarshalJSON([]byte(l.CRMID)); err != nil {
			return errpolicy.Mark(errpolicy.DeadLetter, fmt.Errorf("crm_id %s is not a Bitrix24 id", l.CRMID))
		}
		outcome = "from_event"
	} else if l.CreateLead && w.cfg.Sync {
		// Look first: a lead made before a crash or a lost reply is found
		// again by its ORIGIN_ID.
		leads, err := w.client.LeadsByOrigin(ctx, origin)
		if err != nil {
			return err
		}
		if len(leads) > 0 {
			crmID = leads[0].ID
		} else {
			if crmID, err = w.client.LeadAdd(ctx, w.lead(l, origin)); err != nil {
				return err // an ambiguous failure is looked up again first
			}
			outcome = "created"
		}
	} else if l.Phone != "" {
		ids, err := w.client.FindLeadsByPhone(ctx, l.Phone)
		if err != nil {
			return err
		}
		if len(ids) == 0 {
			l.State = StateNoLead
			if err := w.store.Put(ctx, l); err != nil {
				return err
			}
			w.outcomes.WithLabelValues(KindSession, "no_lead").Inc()
			return nil
		}
		crmID = ids[0]
		for _, id := range ids[1:] {
			crmID = min(crmID, id) // the oldest lead is the customer's card
		}
	} else {
		return nil
	}
	l.State, l.CRMID, l.Error = StateLinked, crmID.String(), ""
	if err := w.store.Put(ctx, l); err != nil {
		return err
	}
	w.outcomes.WithLabelValues(KindSession, outcome).Inc()
	return w.linked(ctx, l)
}

// linked runs OnLinked; on failure the record is tried again (the Put
// before it is idempotent, OnLinked must be too).
func (w *Worker) linked(ctx context.Context, l Link) error {
	if w.OnLinked == nil {
		return nil
	}
	if err := w.OnLinked(ctx, l); err != nil {
		return fmt.Errorf("after linking %s: %w", l.Key(), err)
	}
	return nil
}

func (w *Worker) lead(l Link, origin string) bitrix24.Lead {
	comments := strings.NewReplacer("{tenant}", l.Tenant, "{session_id}", l.SessionID).Replace(w.cfg.ConversationURL)
	lead := bitrix24.Lead{Title: "Chatbot: " + l.Tenant + " (" + l.Channel + ")", StatusID: "NEW", SourceID: w.cfg.SourceID,
		SourceDescription: "assistlog " + l.Channel + " assistant", Comments: comments, OriginID: origin}
	if l.Phone != "" {
		lead.Phone = []bitrix24.Multifield{{Value: l.Phone, ValueType: "MOBILE"}}
	}
	return lead
}

// addActivity adds the appointment's to-do to the lead of its session,
// once that session is linked, unless the lead has it already.
func (w *Worker) addActivity(ctx context.Context, l Link, first time.Time) error {
	if !w.cfg.Sync {
		return nil
	}
	// The conversation's record shares the partition and comes first, so
	// it is normally answered by now; a short wait covers a result written
	// by the partition's previous owner that this view has not read yet.
	sess, ok := w.store.Get(SessionKey(l.Tenant, l.SessionID))
	switch {
	case ok && sess.State == StateLinked:
	case ok && sess.State == StatePending && time.Since(first) < time.Minute,
		!ok && time.Since(first) < 10*time.Second:
		return fmt.Errorf("conversation %s/%s not linked yet", l.Tenant, l.SessionID)
	default:
		return errpolicy.Mark(errpolicy.DeadLetter, errors.New("the conversation has no lead"))
	}
	var leadID bitrix24.ID
	if err := leadID.UnmarshalJSON([]byte(sess.CRMID)); err != nil {
		return errpolicy.Mark(errpolicy.DeadLetter, fmt.Errorf("the conversation's crm_id %s is not a Bitrix24 id", sess.CRMID))
	}
	// Look first: a to-do made before a crash or behind a lost reply is
	// found by the marker in its description.
	marker := TodoMarker(l.AppointmentID)
	found, err := w.client.LeadTodos(ctx, leadID, marker)
	if err != nil {
		return err
	}
	outcome := "found"
	var id bitrix24.ID
	if len(found) > 0 {
		id = found[0].ID
	} else {
		if id, err = w.client.TodoAdd(ctx, todo(l, leadID)); err != nil {
			return err // an ambiguous failure is looked up again first
		}
		outcome = "done"
	}
	l.State, l.ActivityID, l.CRMID, l.Error = StateDone, id.String(), sess.CRMID, ""
	if err := w.store.Put(ctx, l); err != nil {
		return err
	}
	w.outcomes.WithLabelValues(KindAppointment, outcome).Inc()
	return nil
}

// todo is the to-do of an appointment on its conversation's lead, with
// the marker that finds it again.
func todo(l Link, lead bitrix24.ID) bitrix24.Todo {
	deadline := time.Now().Add(24 * time.Hour)
	if t, err := time.Parse(time.RFC3339, l.StartsAt); err == nil {
		deadline = t
	}
	return bitrix24.Todo{LeadID: lead, Deadline: deadline, Title: "Appointment: " + l.Service,
		Description: "Booked by the assistant " + TodoMarker(l.AppointmentID)}
}

// createLeads finds or creates the leads of up to batchMax new
// conversations with two requests instead of two per conversation: a
// batch of crm.lead.list by ORIGIN_ID, then a batch of crm.lead.add for
// those not found. Each round starts with the look-up, so a lead whose add
// failed ambiguously (a lost reply, a cut connection) is found rather than
// made twice. A command's own error (result_error under HTTP 200:
// QUERY_LIMIT_EXCEEDED, OPERATION_TIME_LIMIT, ERROR_CORE) follows the
// error policy for its conversation alone: invalid ones are answered as
// failed, the rest wait and go again with the next round.
//
// created gets the key of each conversation whose lead a batch here made
// (its reply read), for addTodos.
func (w *Worker) createLeads(ctx context.Context, ls []Link, created map[string]bool) error {
	a := w.policy.Start(bitrix24.Destination)
	for {
		left, err := w.createRound(ctx, ls, created)
		if len(left) > 0 && errpolicy.Classify(err) == errpolicy.DeadLetter {
			// The portal refused a batch itself as invalid: answer the
			// conversations left one by one, the way that needs no batch.
			w.log.Warn("crm batch refused; resolving conversations one by one", "count", len(left), "err", err)
			a.Done()
			return w.oneByOne(ctx, left)
		}
		if len(left) == 0 {
			a.Done()
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if werr := a.Wait(ctx, fmt.Errorf("crm leads of %d conversations (first %s): %w", len(left), left[0].Key(), err)); werr != nil {
			return werr
		}
		ls = left
	}
}

// oneByOne resolves conversations with single calls, under the policy.
func (w *Worker) oneByOne(ctx context.Context, ls []Link) error {
	for _, l := range ls {
		v, err := json.Marshal(l)
		if err != nil {
			return err
		}
		if err := w.handle(ctx, kafkago.Message{Key: []byte(l.Key()), Value: v}); err != nil {
			return err
		}
	}
	return nil
}

// createRound is one look-up and one add. It returns the conversations
// still without an answer and the error that kept them (marked with its
// action for the policy).
func (w *Worker) createRound(ctx context.Context, ls []Link, created map[string]bool) (left []Link, err error) {
	cmds := make(map[string]string, len(ls))
	for i, l := range ls {
		q := url.Values{"filter[ORIGIN_ID]": {OriginID(l.Tenant, l.SessionID)}, "select[0]": {"ID"},
			"order[ID]": {"ASC"}, "start": {"-1"}}
		cmds["l"+strconv.Itoa(i)] = "crm.lead.list?" + q.Encode()
	}
	found, err := w.client.Batch(ctx, cmds, false)
	if err != nil {
		return ls, err
	}
	var linked, toAdd []Link
	var ids []bitrix24.ID
	var outcomes []string
	var lastErr error
	for i, l := range ls {
		k := "l" + strconv.Itoa(i)
		if e := found.Errors[k]; e != nil {
			if err := w.commandFailed(ctx, l, "crm.lead.list", e); err != nil {
				left, lastErr = append(left, l), err
			}
			continue
		}
		var leads []bitrix24.Lead
		if err := json.Unmarshal(found.Result[k], &leads); err != nil {
			lastErr = fmt.Errorf("bitrix24 batch crm.lead.list %s: decode %s: %w", l.Key(), found.Result[k], err)
			left = append(left, l)
			continue
		}
		if len(leads) > 0 {
			linked, ids, outcomes = append(linked, l), append(ids, leads[0].ID), append(outcomes, "linked")
		} else {
			toAdd = append(toAdd, l)
		}
	}
	if len(toAdd) > 0 {
		cmds := make(map[string]string, len(toAdd))
		for i, l := range toAdd {
			cmds["a"+strconv.Itoa(i)] = "crm.lead.add?" + leadAddQuery(w.lead(l, OriginID(l.Tenant, l.SessionID)))
		}
		added, err := w.client.BatchWrite(ctx, cmds, false)
		if err != nil {
			// Maybe applied: the next round looks these up first.
			left, lastErr = append(left, toAdd...), err
		} else {
			for i, l := range toAdd {
				k := "a" + strconv.Itoa(i)
				if e := added.Errors[k]; e != nil {
					if err := w.commandFailed(ctx, l, "crm.lead.add", e); err != nil {
						left, lastErr = append(left, l), err
					}
					continue
				}
				var id bitrix24.ID
				if err := id.UnmarshalJSON(added.Result[k]); err != nil || id <= 0 {
					// Created, but the id is unreadable: found by its origin next round.
					lastErr = fmt.Errorf("bitrix24 batch crm.lead.add %s: decode %s: %v", l.Key(), added.Result[k], err)
					left = append(left, l)
					continue
				}
				linked, ids, outcomes = append(linked, l), append(ids, id), append(outcomes, "created")
			}
		}
	}
	if len(linked) > 0 {
		for i := range linked {
			linked[i].State, linked[i].CRMID, linked[i].Error = StateLinked, ids[i].String(), ""
		}
		if err := w.store.PutAll(ctx, linked); err != nil {
			// Not answered: found by origin next round.
			return append(left, linked...), err
		}
		for i, l := range linked {
			w.outcomes.WithLabelValues(KindSession, outcomes[i]).Inc()
			if outcomes[i] == "created" {
				created[l.Key()] = true
			}
			if err := w.linked(ctx, l); err != nil {
				left, lastErr = append(left, l), err
			}
		}
	}
	if len(left) > 0 && lastErr == nil {
		lastErr = errors.New("crm leads not answered") // cannot happen: every kept conversation sets lastErr
	}
	return left, lastErr
}

// addTodos adds the to-dos of up to batchMax appointments with two
// requests instead of two per appointment: a batch of crm.activity.list by
// each to-do's marker, then a batch of crm.activity.todo.add for those not
// found. An appointment whose lead this group made skips the look-up on
// its first round (nothing can be on a lead that did not exist); every
// later round looks first, so a to-do whose add failed ambiguously (a lost
// reply, a cut connection) is found rather than made twice, as after a
// crash: the replayed request meets a linked conversation and looks. A
// command's own error follows the error policy for its appointment alone
// (commandFailed), as in createLeads.
func (w *Worker) addTodos(ctx context.Context, js []todoJob) error {
	a := w.policy.Start(bitrix24.Destination)
	for {
		left, err := w.todoRound(ctx, js)
		if len(left) > 0 && errpolicy.Classify(err) == errpolicy.DeadLetter {
			// The portal refused a batch itself as invalid: add the
			// to-dos left one by one, the way that needs no batch.
			w.log.Warn("crm batch refused; adding to-dos one by one", "count", len(left), "err", err)
			a.Done()
			ls := make([]Link, len(left))
			for i, j := range left {
				ls[i] = j.link
			}
			return w.oneByOne(ctx, ls)
		}
		if len(left) == 0 {
			a.Done()
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if werr := a.Wait(ctx, fmt.Errorf("crm to-dos of %d appointments (first %s): %w", len(left), left[0].link.Key(), err)); werr != nil {
			return werr
		}
		for i := range left {
			left[i].created = false // a request of the round may have been carried out: look first
		}
		js = left
	}
}

// todoRound is one look-up and one add. It returns the appointments still
// without an answer and the error that kept them (marked for the policy).
func (w *Worker) todoRound(ctx context.Context, js []todoJob) (left []todoJob, err error) {
	var toAdd, done []todoJob
	var ids []bitrix24.ID
	var outcomes []string
	var lastErr error
	cmds := map[string]string{}
	for i, j := range js {
		if !j.created {
			cmds["t"+strconv.Itoa(i)] = bitrix24.LeadTodosCommand(j.lead, TodoMarker(j.link.AppointmentID))
		}
	}
	var found bitrix24.BatchResult
	if len(cmds) > 0 {
		if found, err = w.client.Batch(ctx, cmds, false); err != nil {
			return js, err
		}
	}
	for i, j := range js {
		if j.created {
			toAdd = append(toAdd, j)
			continue
		}
		k := "t" + strconv.Itoa(i)
		if e := found.Errors[k]; e != nil {
			if err := w.commandFailed(ctx, j.link, "crm.activity.list", e); err != nil {
				left, lastErr = append(left, j), err
			}
			continue
		}
		marker := TodoMarker(j.link.AppointmentID)
		var rows []bitrix24.Activity
		if err := json.Unmarshal(found.Result[k], &rows); err != nil {
			lastErr = fmt.Errorf("bitrix24 batch crm.activity.list %s: decode %s: %w", j.link.Key(), found.Result[k], err)
			left = append(left, j)
			continue
		}
		rows = bitrix24.WithMarker(rows, marker)
		if _, more := found.Next[k]; len(rows) == 0 && more {
			// A page of LIKE matches that are not this marker: read them all.
			if rows, err = w.client.LeadTodos(ctx, j.lead, marker); err != nil {
				left, lastErr = append(left, j), err
				continue
			}
		}
		if len(rows) > 0 {
			done, ids, outcomes = append(done, j), append(ids, rows[0].ID), append(outcomes, "found")
		} else {
			toAdd = append(toAdd, j)
		}
	}
	if len(toAdd) > 0 {
		cmds := make(map[string]string, len(toAdd))
		for i, j := range toAdd {
			cmds["d"+strconv.Itoa(i)] = bitrix24.TodoAddCommand(todo(j.link, j.lead))
		}
		added, err := w.client.BatchWrite(ctx, cmds, false)
		if err != nil {
			// Maybe applied: the next round looks these up first.
			left, lastErr = append(left, toAdd...), err
		} else {
			for i, j := range toAdd {
				k := "d" + strconv.Itoa(i)
				if e := added.Errors[k]; e != nil {
					if err := w.commandFailed(ctx, j.link, "crm.activity.todo.add", e); err != nil {
						left, lastErr = append(left, j), err
					}
					continue
				}
				id, err := bitrix24.TodoAdded(added.Result[k])
				if err != nil {
					// Added, but the id is unreadable: found by its marker next round.
					left, lastErr = append(left, j), fmt.Errorf("%s: %w", j.link.Key(), err)
					continue
				}
				done, ids, outcomes = append(done, j), append(ids, id), append(outcomes, "done")
			}
		}
	}
	if len(done) > 0 {
		answers := make([]Link, len(done))
		for i, j := range done {
			l := j.link
			l.State, l.ActivityID, l.CRMID, l.Error = StateDone, ids[i].String(), j.crmID, ""
			answers[i] = l
		}
		if err := w.store.PutAll(ctx, answers); err != nil {
			// Not answered: found by the marker next round.
			return append(left, done...), err
		}
		for i := range done {
			w.outcomes.WithLabelValues(KindAppointment, outcomes[i]).Inc()
		}
	}
	if len(left) > 0 && lastErr == nil {
		lastErr = errors.New("crm to-dos not answered") // cannot happen: every kept appointment sets lastErr
	}
	return left, lastErr
}

// commandFailed applies the error policy to one command of a batch: a
// command the CRM refuses as invalid answers its conversation as failed
// (nil: answered); any other error is returned, marked, to try again.
func (w *Worker) commandFailed(ctx context.Context, l Link, method string, e *bitrix24.Error) error {
	err := errpolicy.Mark(commandAction(e), fmt.Errorf("bitrix24 batch %s for %s: %w", method, l.Key(), e))
	if errpolicy.Classify(err) != errpolicy.DeadLetter {
		return err
	}
	if ferr := w.fail(ctx, l, err); ferr != nil {
		return ferr
	}
	return nil
}

// commandAction judges a command's error inside a batch (which arrives
// under HTTP 200) as the same reply to the method called alone: the
// contract's status for its code, 5xx for the server's own errors and 400
// for the rest (ERROR_CORE, the legacy empty code).
func commandAction(e *bitrix24.Error) errpolicy.Action {
	alone := *e
	switch e.Code {
	case "QUERY_LIMIT_EXCEEDED", "OVERLOAD_LIMIT", "INTERNAL_SERVER_ERROR", "ERROR_UNEXPECTED_ANSWER":
		alone.HTTPStatus = 503
	case "OPERATION_TIME_LIMIT":
		alone.HTTPStatus = 429
	default:
		alone.HTTPStatus = 400
	}
	return alone.Action()
}

// leadAddQuery is crm.lead.add's parameters in the PHP bracket notation a
// batch command carries (CONTRACT.md section 6, batch).
func leadAddQuery(l bitrix24.Lead) string {
	q := url.Values{"params[REGISTER_SONET_EVENT]": {"N"}}
	for k, v := range map[string]string{"TITLE": l.Title, "STATUS_ID": l.StatusID, "SOURCE_ID": l.SourceID,
		"SOURCE_DESCRIPTION": l.SourceDescription, "COMMENTS": l.Comments, "ORIGIN_ID": l.OriginID, "NAME": l.Name} {
		if v != "" {
			q.Set("fields["+k+"]", v)
		}
	}
	for i, p := range l.Phone {
		q.Set(fmt.Sprintf("fields[PHONE][%d][VALUE]", i), p.Value)
		q.Set(fmt.Sprintf("fields[PHONE][%d][VALUE_TYPE]", i), p.ValueType)
	}
	return q.Encode()
}
