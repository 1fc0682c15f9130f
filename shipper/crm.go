package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/assistlog/assistlog/internal/bitrix24"
	"github.com/assistlog/assistlog/internal/config"
	"github.com/assistlog/assistlog/internal/crm"
	"github.com/assistlog/assistlog/internal/elastic"
	"github.com/assistlog/assistlog/internal/errpolicy"
	"github.com/assistlog/assistlog/internal/event"
	"github.com/assistlog/assistlog/internal/kafka"
)

// crm_status values stored with an event.
const (
	crmResolved = "resolved" // crm_id is the conversation's lead
	crmPending  = "pending"  // the CRM has not answered yet; crm_id is filled in later
	crmNoLead   = "no_lead"  // the CRM has no lead for the customer's number
	crmFailed   = "failed"   // the CRM refused for good (see the links topic)
)

// CRMConfig is the Bitrix24 enrichment.
type CRMConfig struct {
	// Enabled links conversations to Bitrix24 leads; off, events are
	// stored with whatever crm_id they carry.
	Enabled bool `yaml:"enabled"`
	// Sync creates a lead on lead.created (when the conversation has
	// none) and a to-do activity on appointment.confirmed. Off, leads are
	// only looked up by the customer's number.
	Sync     bool            `yaml:"sync"`
	Bitrix24 bitrix24.Config `yaml:"bitrix24"`
	// LinksTopic is the compacted topic of conversation → lead links,
	// shared by every instance; WorkerGroupID is the consumer group of the
	// CRM workers (one per instance) that answer its requests.
	LinksTopic    string `yaml:"links_topic"`
	WorkerGroupID string `yaml:"worker_group_id"`
	// SourceID is the lead's SOURCE_ID; SourceDescription names the
	// channel. ConversationURL goes into COMMENTS with {tenant} and
	// {session_id} replaced: a link to the conversation in Kibana/Grafana.
	SourceID        string `yaml:"source_id"`
	ConversationURL string `yaml:"conversation_url"`
}

func defaultCRMConfig() CRMConfig {
	return CRMConfig{Bitrix24: bitrix24.DefaultConfig(), LinksTopic: kafka.CRMLinksTopic, WorkerGroupID: "assistlog-crm",
		SourceID:        "WEB",
		ConversationURL: "http://127.0.0.1:5601/app/discover#/?_a=(query:(language:lucene,query:'tenant:\"{tenant}\" AND session_id:\"{session_id}\"'))"}
}

func (c CRMConfig) validate() []error {
	if !c.Enabled {
		return nil
	}
	var errs []error
	errs = append(errs, config.Prefixed("crm.bitrix24.", c.Bitrix24.Validate())...)
	if c.LinksTopic == "" || c.WorkerGroupID == "" {
		errs = append(errs, errors.New("crm.links_topic, crm.worker_group_id: required"))
	}
	return errs
}

// linker is the CRM transform: before the sinks it puts on each event the
// lead its conversation is known to have; after the sinks acknowledged, it
// asks the CRM workers (through the links topic) about conversations whose
// events went out without one. The request is written only after the
// events are in Elasticsearch, so the id filled in on an answer reaches
// them too.
type linker struct {
	store *crm.Store
	sync  bool
}

// enrich sets e.CRMID from the links when known and returns the
// crm_status to store ("" when the conversation has no CRM story yet).
func (k *linker) enrich(e *event.Event) string {
	if e.CRMID != "" {
		return crmResolved
	}
	l, ok := k.store.Get(crm.SessionKey(e.Tenant, e.SessionID))
	switch {
	case ok && l.State == crm.StateLinked:
		e.CRMID = l.CRMID
		return crmResolved
	case ok && l.State == crm.StateNoLead && !(k.sync && e.Type == event.LeadCreated):
		return crmNoLead
	case ok && l.State == crm.StateFailed:
		return crmFailed
	case ok, e.UserPhone != "", k.sync && e.Type == event.LeadCreated:
		return crmPending
	}
	return ""
}

// request writes, for each conversation of the stored events that has
// events without a lead id, a request to the CRM workers; and, when
// syncing, one per confirmed appointment not yet added.
func (k *linker) request(ctx context.Context, events []*item) error {
	type conv struct {
		req     crm.Link // CRMID: the first id an event of it carried
		ask     bool
		appts   []crm.Link
		hasView bool
	}
	var order []string
	convs := map[string]*conv{}
	for _, s := range events {
		e := s.raw
		key := crm.SessionKey(e.Tenant, e.SessionID)
		c := convs[key]
		if c == nil {
			view, ok := k.store.Get(key)
			c = &conv{req: crm.Link{Kind: crm.KindSession, State: crm.StatePending, Tenant: e.Tenant, SessionID: e.SessionID,
				Phone: view.Phone, CreateLead: view.CreateLead, Channel: view.Channel}, hasView: ok}
			convs[key] = c
			order = append(order, key)
		}
		if e.Channel != "" {
			c.req.Channel = e.Channel
		}
		if e.UserPhone != "" {
			c.req.Phone = e.UserPhone
		}
		if k.sync && e.Type == event.LeadCreated {
			c.req.CreateLead = true
		}
		if s.ownCRMID && c.req.CRMID == "" {
			c.req.CRMID = e.CRMID
		}
		if s.status == crmPending || (s.ownCRMID && !c.hasView) {
			c.ask = true
		}
		if k.sync && e.Type == event.AppointmentConfirmed {
			id, _ := e.Payload["appointment_id"].(string)
			if id == "" {
				id = e.EventID
			}
			a := crm.Link{Kind: crm.KindAppointment, State: crm.StatePending, Tenant: e.Tenant, SessionID: e.SessionID,
				AppointmentID: id}
			a.StartsAt, _ = e.Payload["starts_at"].(string)
			a.Service, _ = e.Payload["service"].(string)
			if view, ok := k.store.Get(a.Key()); !ok || view.State == crm.StatePending {
				c.appts = append(c.appts, a)
			}
		}
	}
	var out []crm.Link
	for _, key := range order {
		c := convs[key]
		if c.ask {
			out = append(out, c.req)
		}
		// An appointment of a conversation with no CRM story has no lead
		// to go to; it is not asked about.
		if len(c.appts) > 0 && (c.ask || c.hasView) {
			out = append(out, c.appts...)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return k.store.PutAll(ctx, out)
}

// crmStage is the CRM enrichment with its background parts.
type crmStage struct {
	linker *linker
	worker *crm.Worker
	log    *slog.Logger
}

// newCRMStage loads the links (waiting for Kafka) and builds the worker,
// which fills the id into stored documents once a conversation is linked
// and waits out the CRM's failures with the program's error policy.
func newCRMStage(ctx context.Context, cfg Config, out crm.Sender, es *elastic.Stores, policy *errpolicy.Policy, log *slog.Logger, reg prometheus.Registerer) (*crmStage, error) {
	client, err := bitrix24.New(cfg.CRM.Bitrix24, nil, reg)
	if err != nil {
		return nil, err
	}
	kc, err := kafka.NewConnector(cfg.Kafka.ClientConfig, log)
	if err != nil {
		return nil, err
	}
	store := crm.NewStore(cfg.Kafka.Brokers, cfg.CRM.LinksTopic, out, log)
	masker, err := cfg.PII.masker()
	if err != nil {
		return nil, err
	}
	// Numbers on the links topic: sealed while a link is pending (with
	// pii.keys), only the keyed hash once it is answered.
	store.Protect(masker)
	store.SetDialer(kc.Dialer())
	if err := untilOK(ctx, log, "waiting for Kafka to load the CRM links", store.Load); err != nil {
		return nil, err
	}
	if err := reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "assistlog_crm_pending_links",
		Help: "Conversations and appointments waiting for a CRM answer (growing: the CRM is failing or slow)."},
		func() float64 { return float64(store.Pending()) })); err != nil {
		return nil, fmt.Errorf("register crm metrics: %w", err)
	}
	w, err := crm.NewWorker(crm.WorkerConfig{Brokers: cfg.Kafka.Brokers, Dialer: kc.Dialer(), Topic: cfg.CRM.LinksTopic, GroupID: cfg.CRM.WorkerGroupID,
		Sync: cfg.CRM.Sync, SourceID: cfg.CRM.SourceID, ConversationURL: cfg.CRM.ConversationURL}, store, client, policy, log, reg)
	if err != nil {
		return nil, err
	}
	w.OnLinked = func(ctx context.Context, l crm.Link) error {
		n, err := es.FillSession(ctx, l.Tenant, l.SessionID, "crm_id", map[string]any{"crm_id": l.CRMID, "crm_status": crmResolved})
		if n > 0 {
			log.Debug("crm id filled into stored events", "tenant", l.Tenant, "session_id", l.SessionID, "crm_id", l.CRMID, "events", n)
		}
		return err
	}
	return &crmStage{linker: &linker{store: store, sync: cfg.CRM.Sync}, worker: w, log: log}, nil
}

// run follows the links topic and runs the worker until ctx ends; a
// worker that fails (Kafka away) is started again.
func (s *crmStage) run(ctx context.Context) {
	done := make(chan struct{})
	go func() { defer close(done); _ = s.linker.store.Run(ctx) }()
	for backoff := time.Second; ctx.Err() == nil; backoff = min(backoff*2, 30*time.Second) {
		if err := s.worker.Run(ctx); err != nil {
			s.log.Error("crm worker stopped; restarting", "err", err, "backoff", backoff)
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
	}
	<-done
}
