// Package crm links conversations to Bitrix24 leads. Links live in a
// compacted Kafka topic (assistant.crm-links): every shipper instance reads
// it whole at start and follows it, so mappings survive restarts and are
// shared; a CRM worker, in a consumer group of its own, turns pending
// records into leads and activities, one owner per record key at a time.
package crm

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/assistlog/assistlog/internal/pii"
)

// Kinds and states of a link record.
const (
	KindSession     = "session"
	KindAppointment = "appointment"

	StatePending = "pending" // waiting for the CRM worker
	StateLinked  = "linked"  // session: crm_id known
	StateNoLead  = "no_lead" // session: the CRM has no lead for the number, and none is to be made
	StateDone    = "done"    // appointment: activity added
	StateFailed  = "failed"  // the CRM refused for good (Error says why)
)

// Link is one record of the links topic. The customer's number is what
// the CRM lookup needs (crm.duplicate.findbycomm, the new lead's PHONE), so
// a pending record carries it, sealed when the store protects numbers
// (Protect: phone_sealed, AES-256-GCM, opened by the worker); an answer
// keeps only the number's keyed hash, so the compacted topic, which keeps
// a conversation's last record for good, holds no number. Phone is the
// number in memory; on the topic it is written only by a store that does
// not protect numbers, and read from records written before (they load as
// they did, and the next write of the key replaces them).
type Link struct {
	Kind      string `json:"kind"`
	State     string `json:"state"`
	Tenant    string `json:"tenant"`
	SessionID string `json:"session_id"`
	Channel   string `json:"channel,omitempty"`
	Phone     string `json:"phone,omitempty"`
	// PhoneSealed is Phone sealed (pending records only); PhoneHash its
	// keyed hash (pii.HashPhone), kept for as long as the record, so an
	// erasure can find the person's conversations.
	PhoneSealed   string    `json:"phone_sealed,omitempty"`
	PhoneHash     string    `json:"phone_hash,omitempty"`
	CreateLead    bool      `json:"create_lead,omitempty"`
	CRMID         string    `json:"crm_id,omitempty"`
	AppointmentID string    `json:"appointment_id,omitempty"`
	StartsAt      string    `json:"starts_at,omitempty"`
	Service       string    `json:"service,omitempty"`
	ActivityID    string    `json:"activity_id,omitempty"`
	Error         string    `json:"error,omitempty"`
	Updated       time.Time `json:"updated"`
}

// SessionKey is the record key of a conversation.
func SessionKey(tenant, session string) string { return KindSession + "/" + tenant + "/" + session }

// AppointmentKey is the record key of an appointment's activity.
func AppointmentKey(tenant, appointment string) string {
	return KindAppointment + "/" + tenant + "/" + appointment
}

// Key is the record key of l.
func (l Link) Key() string {
	if l.Kind == KindAppointment {
		return AppointmentKey(l.Tenant, l.AppointmentID)
	}
	return SessionKey(l.Tenant, l.SessionID)
}

// HeaderSession carries tenant/session_id on every link record; Balancer
// partitions by it, so a conversation's record and its appointments' records
// share a partition and the worker meets them in the order written.
const HeaderSession = "assistlog-session"

// Balancer partitions by the HeaderSession header when a message has one
// and by key otherwise (so it can serve a producer shared with other topics).
func Balancer() kafkago.Balancer { return &sessionBalancer{} }

type sessionBalancer struct{ h kafkago.Hash }

func (b *sessionBalancer) Balance(msg kafkago.Message, partitions ...int) int {
	for _, h := range msg.Headers {
		if h.Key == HeaderSession {
			msg.Key = h.Value
			break
		}
	}
	return b.h.Balance(msg, partitions...)
}

// resolved reports whether a record is a worker's result rather than a
// request.
func (l Link) resolved() bool { return l.State != StatePending }

// Sender produces messages and returns once Kafka acknowledged them.
type Sender interface {
	Send(ctx context.Context, msgs []kafkago.Message) error
}

// Store is the in-memory view of the links topic. It holds in full only
// the records still waiting for an answer (bounded by the work in flight).
// An answered conversation is kept as a small answer: its state and lead
// id, which later events of the conversation need for as long as it goes
// on (and a no-lead conversation's number and channel, to make its lead if
// one is asked for later). Answered appointments are dropped: the topic
// keeps them, and an appointment asked about again is found in the CRM by
// crm.activity.list, not made twice.
type Store struct {
	brokers []string
	dialer  *kafkago.Dialer // TLS and SASL; SetDialer
	topic   string
	out     Sender
	log     *slog.Logger

	// masker protects numbers on the topic (nil: written as they are).
	masker *pii.Masker

	mu      sync.RWMutex
	open    map[string]Link   // pending requests, by key
	answers map[string]answer // answered conversations, by key
	// answeredAt remembers recently answered appointments (whose answers
	// are not kept): the tail may apply the worker's answer before PutAll
	// applies the request it answers, which would reopen it for good.
	answeredAt map[string]time.Time
	ends       map[int]int64 // partition → offset the tail starts from
}

// answer is what is kept of an answered conversation.
type answer struct {
	state, crmID   string
	phone, channel string // no_lead only
	err            string // failed only
}

// NewStore returns an empty store; Load fills it, Run follows the topic.
func NewStore(brokers []string, topic string, out Sender, log *slog.Logger) *Store {
	return &Store{brokers: brokers, dialer: kafkago.DefaultDialer, topic: topic, out: out, log: log, open: map[string]Link{}, answers: map[string]answer{},
		answeredAt: map[string]time.Time{}, ends: map[int]int64{}}
}

// Protect makes the store keep numbers off the topic: a pending record
// carries its number sealed with m's key ring (or, without a ring, as it
// is) and the keyed hash, an answer only the hash. Call it before Load.
func (s *Store) Protect(m *pii.Masker) { s.masker = m }

// encode renders l for the topic.
func (s *Store) encode(l Link) ([]byte, error) {
	if s.masker != nil && l.Phone != "" {
		l.PhoneHash = s.masker.HashPhone(l.Phone)
		switch ring := s.masker.Ring(); {
		case l.resolved():
			l.Phone, l.PhoneSealed = "", "" // answered: the lookup needs it no more
		case ring != nil:
			l.Phone, l.PhoneSealed = "", ring.SealString(pii.PurposeCRMPhone, l.Phone)
		}
	} else if s.masker != nil {
		l.PhoneSealed = ""
	}
	return json.Marshal(l)
}

// decode reads a record of the topic, opening a sealed number. A number
// this store cannot open leaves the record without it, and the error
// names the key.
func (s *Store) decode(v []byte) (Link, error) {
	var l Link
	if err := json.Unmarshal(v, &l); err != nil {
		return l, err
	}
	if l.PhoneSealed != "" {
		var ring *pii.Ring
		if s.masker != nil {
			ring = s.masker.Ring()
		}
		phone, err := ring.OpenString(pii.PurposeCRMPhone, l.PhoneSealed)
		if err != nil {
			return l, fmt.Errorf("crm link %s: phone_sealed: %w", l.Key(), err)
		}
		l.Phone, l.PhoneSealed = phone, ""
	}
	return l, nil
}

// SetDialer makes the store connect with d (the program's TLS and SASL
// settings, from kafka.Connector.Dialer); call it before Load.
func (s *Store) SetDialer(d *kafkago.Dialer) { s.dialer = d }

// Get returns what the view knows of key: a pending record in full, or a
// conversation's answer (Kind, State, CRMID, and Phone and Channel of a
// no_lead, Error of a failed). Answered appointments are not kept.
func (s *Store) Get(key string) (Link, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if l, ok := s.open[key]; ok {
		return l, true
	}
	if a, ok := s.answers[key]; ok {
		return Link{Kind: KindSession, State: a.state, CRMID: a.crmID, Phone: a.phone, Channel: a.channel, Error: a.err}, true
	}
	return Link{}, false
}

// Pending counts conversations and appointments waiting for the CRM.
func (s *Store) Pending() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.open)
}

// Len is the number of entries the view holds: pending records and
// answered conversations.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.open) + len(s.answers)
}

// Put writes l to the topic (acknowledged) and to the view.
func (s *Store) Put(ctx context.Context, l Link) error { return s.PutAll(ctx, []Link{l}) }

// PutAll writes records in order (acknowledged) and then to the view.
func (s *Store) PutAll(ctx context.Context, ls []Link) error {
	msgs := make([]kafkago.Message, 0, len(ls))
	now := time.Now().UTC()
	for i := range ls {
		if ls[i].Updated.IsZero() {
			ls[i].Updated = now
		}
		v, err := s.encode(ls[i])
		if err != nil {
			return err
		}
		msgs = append(msgs, kafkago.Message{Topic: s.topic, Key: []byte(ls[i].Key()), Value: v,
			Headers: []kafkago.Header{{Key: HeaderSession, Value: []byte(ls[i].Tenant + "/" + ls[i].SessionID)}}})
	}
	if err := s.out.Send(ctx, msgs); err != nil {
		return fmt.Errorf("write %d crm links (first %s): %w", len(ls), ls[0].Key(), err)
	}
	for _, l := range ls {
		s.apply(l.Key(), l)
	}
	return nil
}

// apply updates the view. A request does not hide a conversation's
// answer: the shipper asks again for conversations it already knows, and
// the view must keep saying what the CRM answered (but a request to create
// a lead reopens a conversation that had none).
//
// A conversation asked to make a lead stays asked until a worker answers
// that request: neither the no_lead answer to an earlier request without
// it, nor that earlier request read back late, hides it. Otherwise an
// appointment between the two would find "no lead" although its lead is
// on the way (createBeforeTodos makes it).
func (s *Store) apply(key string, l Link) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.open[key]; ok && l.Kind == KindSession && cur.CreateLead && !l.CreateLead && cur.Updated.After(l.Updated) &&
		(l.State == StatePending || l.State == StateNoLead) {
		return
	}
	if l.resolved() {
		delete(s.open, key)
		if l.Kind != KindSession {
			s.rememberAnswer(key, l.Updated)
		}
		if l.Kind == KindSession {
			a := answer{state: l.State, crmID: l.CRMID}
			switch l.State {
			case StateNoLead:
				a.phone, a.channel = l.Phone, l.Channel
			case StateFailed:
				a.err = l.Error
			}
			s.answers[key] = a
		}
		return
	}
	if cur, ok := s.answers[key]; ok {
		if cur.state != StateNoLead || !l.CreateLead {
			return
		}
		delete(s.answers, key)
	}
	if at, ok := s.answeredAt[key]; ok && !l.Updated.After(at) {
		return // answered already: this is the request arriving late
	}
	s.open[key] = l
}

// answerMemory bounds how long an appointment's answer is remembered: far
// longer than a request takes from PutAll's write to its apply.
const answerMemory = 10 * time.Minute

// rememberAnswer records an appointment's answer time and drops the
// memories older than answerMemory (of the newest answer), so the map
// stays small however long the shipper runs.
func (s *Store) rememberAnswer(key string, at time.Time) {
	s.answeredAt[key] = at
	if len(s.answeredAt)%1024 != 0 {
		return
	}
	for k, t := range s.answeredAt {
		if at.Sub(t) > answerMemory {
			delete(s.answeredAt, k)
		}
	}
}

// forget applies a tombstone.
func (s *Store) forget(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.open, key)
	delete(s.answers, key)
	delete(s.answeredAt, key)
}

// Load reads every partition from its first offset to its current end.
func (s *Store) Load(ctx context.Context) error {
	conn, err := s.dialer.DialContext(ctx, "tcp", s.brokers[0])
	if err != nil {
		return fmt.Errorf("load links: %w", err)
	}
	parts, err := conn.ReadPartitions(s.topic)
	conn.Close()
	if err != nil {
		return fmt.Errorf("load links: partitions of %s: %w", s.topic, err)
	}
	n := 0
	for _, p := range parts {
		first, last, err := s.offsets(ctx, p.ID)
		if err != nil {
			return fmt.Errorf("load links %s/%d: %w", s.topic, p.ID, err)
		}
		if last > first {
			// A short MaxWait: Close waits for the fetch in flight, and the
			// default (10 s) per partition would make a restart slow.
			r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: s.brokers, Dialer: s.dialer, Topic: s.topic, Partition: p.ID, MaxBytes: 16 << 20,
				MaxWait: 100 * time.Millisecond})
			if err := r.SetOffset(first); err != nil {
				r.Close()
				return err
			}
			for off := first; off < last; {
				m, err := r.ReadMessage(ctx)
				if err != nil {
					r.Close()
					return fmt.Errorf("load links %s/%d at %d: %w", s.topic, p.ID, off, err)
				}
				s.applyMessage(m)
				n++
				off = m.Offset + 1
			}
			r.Close()
		}
		s.mu.Lock()
		s.ends[p.ID] = last
		s.mu.Unlock()
	}
	s.log.Info("crm links loaded", "records", n, "pending", s.Pending(), "entries", s.Len(), "topic", s.topic)
	return nil
}

func (s *Store) applyMessage(m kafkago.Message) {
	if m.Value == nil {
		s.forget(string(m.Key)) // a tombstone
		return
	}
	l, err := s.decode(m.Value)
	if err != nil {
		s.log.Warn("unreadable crm link record", "key", string(m.Key), "offset", m.Offset, "err", err)
		if l.Kind == "" {
			return
		}
	}
	s.apply(string(m.Key), l)
}

// Run follows every partition from where Load stopped until ctx ends.
func (s *Store) Run(ctx context.Context) error {
	s.mu.RLock()
	ends := map[int]int64{}
	for p, o := range s.ends {
		ends[p] = o
	}
	s.mu.RUnlock()
	var wg sync.WaitGroup
	for p, off := range ends {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.follow(ctx, p, off)
		}()
	}
	wg.Wait()
	return nil
}

// follow applies one partition's records from off until ctx ends; a
// broken read (Kafka away) is resumed after the last record applied.
func (s *Store) follow(ctx context.Context, p int, off int64) {
	for backoff := time.Second; ctx.Err() == nil; backoff = min(backoff*2, 30*time.Second) {
		r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: s.brokers, Dialer: s.dialer, Topic: s.topic, Partition: p, MaxBytes: 16 << 20,
			MaxWait: 200 * time.Millisecond})
		err := r.SetOffset(off)
		for err == nil {
			var m kafkago.Message
			if m, err = r.ReadMessage(ctx); err == nil {
				s.applyMessage(m)
				off, backoff = m.Offset+1, time.Second
			}
		}
		r.Close()
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("following crm links failed; resuming", "partition", p, "offset", off, "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
	}
}

// offsets asks the partition's leader for its first and next offsets,
// trying a few times while leadership settles (a new topic, a restarted
// broker).
func (s *Store) offsets(ctx context.Context, partition int) (first, last int64, err error) {
	for attempt := 0; attempt < 20; attempt++ {
		var lc *kafkago.Conn
		if lc, err = s.dialer.DialLeader(ctx, "tcp", s.brokers[0], s.topic, partition); err == nil {
			first, last, err = lc.ReadOffsets()
			lc.Close()
			if err == nil {
				return first, last, nil
			}
		}
		select {
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return 0, 0, err
}
