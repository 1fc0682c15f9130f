package crm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
func (w *Worker) Run(ctx context.Context) error {
	r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: w.cfg.Brokers, Dialer: w.cfg.Dialer, GroupID: w.cfg.GroupID, Topic: w.cfg.Topic,
		StartOffset: kafkago.FirstOffset, CommitInterval: 0, MaxWait: 200 * time.Millisecond,
		SessionTimeout: 10 * time.Second, HeartbeatInterval: 2 * time.Second})
	defer r.Close()
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("crm worker fetch: %w", err)
		}
		if err := w.handle(ctx, m); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if err := r.CommitMessages(ctx, m); err != nil && ctx.Err() == nil {
			w.log.Warn("crm worker commit failed; the record will be handled again", "err", err)
		}
	}
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
		step = w.addActivity
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
func (w *Worker) addActivity(ctx context.Context, l Link) error {
	if !w.cfg.Sync {
		return nil
	}
	// The conversation's record shares the partition and comes first, so
	// it is normally answered by now; a short wait covers a result written
	// by the partition's previous owner that this view has not read yet.
	sess, ok := w.store.Get(SessionKey(l.Tenant, l.SessionID))
	switch {
	case ok && sess.State == StateLinked:
	case ok && sess.State == StatePending && time.Since(l.Updated) < time.Minute,
		!ok && time.Since(l.Updated) < 10*time.Second:
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
		deadline := time.Now().Add(24 * time.Hour)
		if t, err := time.Parse(time.RFC3339, l.StartsAt); err == nil {
			deadline = t
		}
		if id, err = w.client.TodoAdd(ctx, bitrix24.Todo{LeadID: leadID, Deadline: deadline,
			Title: "Appointment: " + l.Service, Description: "Booked by the assistant " + marker}); err != nil {
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
