package crm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/assistlog/assistlog/internal/bitrix24"
)

// WorkerConfig configures the CRM worker.
type WorkerConfig struct {
	Brokers []string
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
	// RetryBackoffMax caps the wait between attempts while the CRM fails.
	RetryBackoffMax time.Duration
}

// OriginID is the lead's ORIGIN_ID for a conversation: how the lead is
// found again after a restart, so one conversation never gets two leads.
func OriginID(tenant, session string) string { return "assistlog:" + tenant + "/" + session }

// Worker resolves pending links against Bitrix24.
type Worker struct {
	cfg    WorkerConfig
	store  *Store
	client *bitrix24.Client
	log    *slog.Logger
	// OnLinked runs after a session got its CRM id (the shipper fills the
	// id into documents already stored); it is retried until it succeeds.
	OnLinked func(ctx context.Context, l Link) error
	outcomes *prometheus.CounterVec
}

// NewWorker builds a worker; its metrics go on reg (required).
func NewWorker(cfg WorkerConfig, store *Store, client *bitrix24.Client, log *slog.Logger, reg prometheus.Registerer) (*Worker, error) {
	if reg == nil {
		return nil, errors.New("crm worker: a metrics registry is required")
	}
	if cfg.RetryBackoffMax <= 0 {
		cfg.RetryBackoffMax = 30 * time.Second
	}
	w := &Worker{cfg: cfg, store: store, client: client, log: log,
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "assistlog_crm_links_total",
			Help: "Resolved links by kind and outcome (linked: found by phone or origin, created, from_event, no_lead, done, failed)."}, []string{"kind", "outcome"})}
	if err := reg.Register(w.outcomes); err != nil {
		return nil, fmt.Errorf("register crm metrics: %w", err)
	}
	return w, nil
}

// Run consumes the links topic in the worker's group until ctx ends. A
// record is committed only after it was resolved (or failed for good).
func (w *Worker) Run(ctx context.Context) error {
	r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: w.cfg.Brokers, GroupID: w.cfg.GroupID, Topic: w.cfg.Topic,
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

func (w *Worker) handle(ctx context.Context, m kafkago.Message) error {
	if m.Value == nil {
		return nil
	}
	var l Link
	if err := json.Unmarshal(m.Value, &l); err != nil {
		w.log.Warn("unreadable crm link record; skipped", "key", string(m.Key), "err", err)
		return nil
	}
	if l.resolved() {
		return nil // a result, written by a worker
	}
	switch l.Kind {
	case KindSession:
		return w.retry(ctx, l.Key(), func() (bool, error) { return w.resolveSession(ctx, l) })
	case KindAppointment:
		return w.retry(ctx, l.Key(), func() (bool, error) { return w.addActivity(ctx, l) })
	}
	return nil
}

// retry runs step until it reports done, waiting with backoff while the
// CRM fails: a CRM outage delays links, it never drops them.
func (w *Worker) retry(ctx context.Context, key string, step func() (bool, error)) error {
	backoff := 500 * time.Millisecond
	for {
		done, err := step()
		if done {
			return nil
		}
		w.log.Warn("crm not resolved yet; retrying", "key", key, "backoff", backoff, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, w.cfg.RetryBackoffMax)
	}
}

// resolveSession finds or creates the conversation's lead. It returns
// done=false (with the error) when it should be tried again.
func (w *Worker) resolveSession(ctx context.Context, l Link) (bool, error) {
	if cur, ok := w.store.Get(l.Key()); ok {
		switch {
		case cur.State == StateLinked:
			// Linked already; the shipper asks again after it stored events
			// of the conversation without the id, so fill them in. The result
			// is written again so that compaction keeps it, not the request.
			if err := w.store.Put(ctx, cur); err != nil {
				return false, err
			}
			return w.linked(ctx, cur)
		case cur.State == StateFailed, cur.State == StateNoLead && !l.CreateLead:
			return true, w.store.Put(ctx, cur) // answered already; keep the answer last
		}
	}
	origin := OriginID(l.Tenant, l.SessionID)
	var crmID bitrix24.ID
	outcome := "linked"
	if l.CRMID != "" {
		// The assistant knew the lead (the event carried crm_id): trust it.
		if err := crmID.UnmarshalJSON([]byte(l.CRMID)); err != nil {
			l.State, l.Error = StateFailed, "crm_id "+l.CRMID+" is not a Bitrix24 id"
			return true, w.store.Put(ctx, l)
		}
		outcome = "from_event"
	} else if l.CreateLead && w.cfg.Sync {
		// Look first: a lead made before a crash or a lost reply is found
		// again by its ORIGIN_ID.
		leads, err := w.client.LeadsByOrigin(ctx, origin)
		if err != nil {
			return w.failOrRetry(ctx, l, err)
		}
		if len(leads) > 0 {
			crmID = leads[0].ID
		} else {
			id, err := w.client.LeadAdd(ctx, w.lead(l, origin))
			if err != nil {
				return w.failOrRetry(ctx, l, err)
			}
			crmID, outcome = id, "created"
		}
	} else if l.Phone != "" {
		ids, err := w.client.FindLeadsByPhone(ctx, l.Phone)
		if err != nil {
			return w.failOrRetry(ctx, l, err)
		}
		if len(ids) == 0 {
			l.State = StateNoLead
			if err := w.store.Put(ctx, l); err != nil {
				return false, err
			}
			w.outcomes.WithLabelValues(KindSession, "no_lead").Inc()
			return true, nil
		}
		crmID = ids[0]
		for _, id := range ids[1:] {
			crmID = min(crmID, id) // the oldest lead is the customer's card
		}
	} else {
		return true, nil
	}
	l.State, l.CRMID, l.Error = StateLinked, crmID.String(), ""
	if err := w.store.Put(ctx, l); err != nil {
		return false, err
	}
	w.outcomes.WithLabelValues(KindSession, outcome).Inc()
	return w.linked(ctx, l)
}

// linked runs OnLinked; on failure the record is tried again (the Put
// before it is idempotent, OnLinked must be too).
func (w *Worker) linked(ctx context.Context, l Link) (bool, error) {
	if w.OnLinked == nil {
		return true, nil
	}
	if err := w.OnLinked(ctx, l); err != nil {
		return false, fmt.Errorf("after linking %s: %w", l.Key(), err)
	}
	return true, nil
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

// failOrRetry records a refusal for good (validation, auth) as failed, so
// the pipeline moves on and the metric shows it; anything else is retried.
func (w *Worker) failOrRetry(ctx context.Context, l Link, err error) (bool, error) {
	if bitrix24.Retryable(err) || errors.Is(err, bitrix24.ErrMaybeApplied) {
		return false, err
	}
	l.State, l.Error = StateFailed, err.Error()
	if perr := w.store.Put(ctx, l); perr != nil {
		return false, perr
	}
	w.outcomes.WithLabelValues(l.Kind, "failed").Inc()
	w.log.Error("crm refused for good", "key", l.Key(), "err", err)
	return true, nil
}

// addActivity adds the appointment to the lead of its session, once that
// session is linked.
func (w *Worker) addActivity(ctx context.Context, l Link) (bool, error) {
	if cur, ok := w.store.Get(l.Key()); ok && (cur.State == StateDone || cur.State == StateFailed) {
		return true, nil
	}
	if !w.cfg.Sync {
		return true, nil
	}
	// The conversation's record shares the partition and comes first, so
	// it is normally answered by now; a short wait covers a result written
	// by the partition's previous owner that this view has not read yet.
	sess, ok := w.store.Get(SessionKey(l.Tenant, l.SessionID))
	switch {
	case ok && sess.State == StateLinked:
	case ok && sess.State == StatePending && time.Since(l.Updated) < time.Minute,
		!ok && time.Since(l.Updated) < 10*time.Second:
		return false, fmt.Errorf("conversation %s/%s not linked yet", l.Tenant, l.SessionID)
	default:
		l.State, l.Error = StateFailed, "the conversation has no lead"
		if err := w.store.Put(ctx, l); err != nil {
			return false, err
		}
		w.outcomes.WithLabelValues(KindAppointment, "failed").Inc()
		return true, nil
	}
	var leadID bitrix24.ID
	if err := leadID.UnmarshalJSON([]byte(sess.CRMID)); err != nil {
		return w.failOrRetry(ctx, l, err)
	}
	deadline := time.Now().Add(24 * time.Hour)
	if t, err := time.Parse(time.RFC3339, l.StartsAt); err == nil {
		deadline = t
	}
	id, err := w.client.TodoAdd(ctx, bitrix24.Todo{LeadID: leadID, Deadline: deadline,
		Title:       "Appointment: " + l.Service,
		Description: "Booked by the assistant (appointment " + l.AppointmentID + ")"})
	if err != nil {
		return w.failOrRetry(ctx, l, err)
	}
	l.State, l.ActivityID, l.CRMID = StateDone, id.String(), sess.CRMID
	if err := w.store.Put(ctx, l); err != nil {
		return false, err
	}
	w.outcomes.WithLabelValues(KindAppointment, "done").Inc()
	return true, nil
}
