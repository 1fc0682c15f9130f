// Package demo turns real booking dialogues (the SGD "Services" subset in
// shared/data/sgd-services) into assistant event logs in schema v1, with a
// ground-truth summary that tests compare pipeline output against.
//
// The mapping is documented in docs/demo.md. Everything is deterministic for
// a seed and an end time: each dialogue draws from its own random stream, so
// adding or removing dialogues does not change the others.
package demo

import (
	_ "embed"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/assistlog/assistlog/internal/event"
	"github.com/assistlog/assistlog/internal/tenants"
)

// Config tunes the generator. Zero values are not defaults: start from
// DefaultConfig.
type Config struct {
	Seed uint64
	// End is the end of the window sessions start in; Days is its length.
	// Loki rejects lines older than 7 days by default, so keep Days below 7
	// for data that is pushed there.
	End  time.Time
	Days int
	// LowConfidenceShare is the share of classified turns whose confidence
	// is below event.LowConfidence.
	LowConfidenceShare float64
	// ErrorRate is the chance that an assistant turn is preceded by an error.
	ErrorRate float64
	// HandoffRate is the share of sessions handed to a manager.
	HandoffRate float64
	// ComplaintRate is the share of sessions with a complaint.
	ComplaintRate float64
	// FollowUpShare is the share of confirmed appointments that are later
	// marked attended or no-show (only when the appointment is before End).
	FollowUpShare float64
	// NoShowShare is the share of followed-up appointments that are no-shows.
	NoShowShare float64
	// Rounds replays the dialogues this many times as distinct sessions
	// (for benchmarks that need more data than the 1,335 dialogues).
	Rounds int
}

// DefaultConfig returns the settings the demo uses.
func DefaultConfig() Config {
	return Config{
		Seed:               1,
		End:                time.Now().UTC().Truncate(time.Hour),
		Days:               6,
		LowConfidenceShare: 0.08,
		ErrorRate:          0.01,
		HandoffRate:        0.05,
		ComplaintRate:      0.02,
		FollowUpShare:      0.6,
		NoShowShare:        0.15,
		Rounds:             1,
	}
}

// Validate checks the configuration, naming the field at fault.
func (c Config) Validate() error {
	var errs []error
	share := func(name string, v float64) {
		if v < 0 || v > 1 || math.IsNaN(v) {
			errs = append(errs, fmt.Errorf("%s: must be between 0 and 1, got %g", name, v))
		}
	}
	share("low_confidence_share", c.LowConfidenceShare)
	share("error_rate", c.ErrorRate)
	share("handoff_rate", c.HandoffRate)
	share("complaint_rate", c.ComplaintRate)
	share("follow_up_share", c.FollowUpShare)
	share("no_show_share", c.NoShowShare)
	if c.Days < 1 {
		errs = append(errs, fmt.Errorf("days: must be at least 1, got %d", c.Days))
	}
	if c.Rounds < 1 {
		errs = append(errs, fmt.Errorf("rounds: must be at least 1, got %d", c.Rounds))
	}
	if c.End.IsZero() {
		errs = append(errs, errors.New("end: must be set"))
	}
	return errors.Join(errs...)
}

// tenant is a business using the assistant.
type tenant struct {
	name string
	zone *time.Location
	// service is what the business books: the noun used in synthetic text.
	service string
}

// tenantsByService maps each SGD service to two businesses, so the demo has
// several tenants of each kind; their zones come from tenants.yaml (most
// are in Ufa, UTC+5).
var tenantsByService = map[string][]tenant{
	"Services_1": {{name: "salon-aurora", service: "haircut"}, {name: "salon-bellezza", service: "haircut"}},
	"Services_2": {{name: "dental-smile", service: "dental check-up"}, {name: "dental-care", service: "dental check-up"}},
	"Services_3": {{name: "clinic-zdorovie", service: "doctor's appointment"}, {name: "clinic-family", service: "doctor's appointment"}},
	"Services_4": {{name: "therapy-harmony", service: "therapy session"}, {name: "therapy-balance", service: "therapy session"}},
}

// TenantsFile is the demo's tenants file (tenants.yaml): names, titles and
// time zones, shared with audit.
//
//go:embed tenants.yaml
var TenantsFile []byte

// Tenants is the demo's tenants file, parsed.
func Tenants() (*tenants.Set, error) { return tenants.Parse(TenantsFile) }

// channel mix: WhatsApp dominates small-business chat in Russia, then
// Telegram and Instagram.
var channelMix = []struct {
	name  string
	share float64
}{{"whatsapp", 0.45}, {"telegram", 0.25}, {"instagram", 0.20}, {"web", 0.07}, {"phone", 0.03}}

var errorMessages = []string{
	"calendar API timeout after 5s",
	"LLM provider returned 502 Bad Gateway",
	"slot lookup failed: connection reset by peer",
	"message delivery failed: channel API rate limited",
}

var complaints = []string{
	"I have been waiting for an answer for twenty minutes, this is unacceptable.",
	"Last time my appointment was cancelled without any warning. Very disappointed.",
	"Your bot keeps asking the same question, I want to talk to a real person.",
}

var managers = []string{"Anna Petrova", "Olga Smirnova", "Dmitry Ivanov", "Elena Kuznetsova"}

// providerSlot names the provider parameter of each Services_* API.
var providerSlot = map[string]string{
	"Services_1": "stylist_name", "Services_2": "dentist_name",
	"Services_3": "doctor_name", "Services_4": "therapist_name",
}

// Generate turns the dialogues into events, ordered by timestamp as a live
// log would be written, and the ground truth of what it generated.
func Generate(dialogues []Dialogue, cfg Config) ([]event.Event, *Truth, error) {
	if err := cfg.Validate(); err != nil {
		return nil, nil, fmt.Errorf("generator config: %w", err)
	}
	set, err := Tenants()
	if err != nil {
		return nil, nil, fmt.Errorf("demo tenants: %w", err)
	}
	zones := map[string]*time.Location{}
	for _, n := range set.Names() {
		t, _ := set.Get(n)
		zones[n] = t.Location()
	}
	var all []event.Event
	for round := 0; round < cfg.Rounds; round++ {
		for _, d := range dialogues {
			evs, err := generateSession(d, round, cfg, zones)
			if err != nil {
				return nil, nil, fmt.Errorf("dialogue %s: %w", d.ID, err)
			}
			all = append(all, evs...)
		}
	}
	// Sort by instant; ties keep generation order so a session's events
	// stay in sequence.
	times := make([]time.Time, len(all))
	for i := range all {
		times[i] = all[i].Time()
	}
	idx := make([]int, len(all))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return times[idx[a]].Before(times[idx[b]]) })
	sorted := make([]event.Event, len(all))
	for i, j := range idx {
		sorted[i] = all[j]
	}
	truth := NewTruth(sorted, len(dialogues), cfg)
	return sorted, truth, nil
}

// session accumulates one conversation's events.
type session struct {
	cfg     Config
	rng     *rand.Rand
	tenant  tenant
	channel string
	id      string
	userID  string
	phone   string // set once the customer gave it
	t       time.Time
	seq     int
	events  []event.Event
}

func (s *session) emit(typ event.Type, level string, mut func(e *event.Event)) {
	s.seq++
	e := event.Event{
		EventID:       fmt.Sprintf("%s-%04d", s.id, s.seq),
		Timestamp:     s.t.In(s.tenant.zone).Format("2006-01-02T15:04:05.000Z07:00"),
		Tenant:        s.tenant.name,
		Channel:       s.channel,
		SessionID:     s.id,
		UserID:        s.userID,
		UserPhone:     s.phone,
		Type:          typ,
		Level:         level,
		Seq:           ptr(int64(s.seq)),
		SchemaVersion: event.SchemaVersion,
	}
	if mut != nil {
		mut(&e)
	}
	s.events = append(s.events, e)
}

// advance moves the session clock by a log-normal delay around median.
func (s *session) advance(median time.Duration, sigma float64) time.Duration {
	d := time.Duration(float64(median) * math.Exp(sigma*s.rng.NormFloat64()))
	if d < 50*time.Millisecond {
		d = 50 * time.Millisecond
	}
	s.t = s.t.Add(d)
	return d
}

func (s *session) chance(p float64) bool { return s.rng.Float64() < p }

func seedFor(seed uint64, parts ...string) uint64 {
	h := fnv.New64a()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return h.Sum64() ^ seed
}

func generateSession(d Dialogue, round int, cfg Config, zones map[string]*time.Location) ([]event.Event, error) {
	svc := d.bookingService()
	choices := tenantsByService[svc]
	if len(choices) == 0 {
		return nil, fmt.Errorf("no Services_* service among %v", d.Services)
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, seedFor(cfg.Seed, d.ID, fmt.Sprint(round))))
	s := &session{cfg: cfg, rng: rng}
	s.tenant = choices[rng.IntN(len(choices))]
	if s.tenant.zone = zones[s.tenant.name]; s.tenant.zone == nil {
		return nil, fmt.Errorf("tenant %s is not in tenants.yaml", s.tenant.name)
	}
	s.channel = pickChannel(rng)
	s.id = "sgd-" + d.ID
	if round > 0 {
		s.id += fmt.Sprintf("-r%d", round)
	}
	phone := fmt.Sprintf("+79%02d%07d", 10+rng.IntN(90), rng.IntN(10000000))
	s.userID = userID(s.channel, phone, rng)

	// Sessions start during the tenant's business hours (8:00–21:00 local).
	day := rng.IntN(cfg.Days)
	local := cfg.End.In(s.tenant.zone)
	midnight := time.Date(local.Year(), local.Month(), local.Day(), 0, 0, 0, 0, s.tenant.zone).AddDate(0, 0, -day)
	s.t = midnight.Add(8*time.Hour + time.Duration(rng.Int64N(int64(13*time.Hour))))
	if !s.t.Before(cfg.End) {
		s.t = s.t.AddDate(0, 0, -1) // today's slot has not come yet
	}

	handoffAt := -1
	if s.chance(cfg.HandoffRate) && len(d.Turns) > 4 {
		handoffAt = 2 + rng.IntN(len(d.Turns)-3)
	}
	complaintAt := -1
	if s.chance(cfg.ComplaintRate) && len(d.Turns) > 2 {
		complaintAt = 1 + rng.IntN(len(d.Turns)-1)
	}

	s.emit(event.SessionStarted, "info", func(e *event.Event) {
		e.Payload = map[string]any{"source": "sgd", "dialogue_id": d.ID}
	})
	prevIntent := ""
	leadDone := false
	booked, failed, handedOff := 0, 0, false
	for i, turn := range d.Turns {
		if turn.Speaker == "USER" {
			if i > 0 {
				s.advance(8*time.Second, 0.8) // the customer reads and types
			}
			intent := turn.intent()
			var conf *float64
			if intent != "" {
				c := s.confidence()
				conf = &c
			}
			for k, p := range s.messages(turn.Utterance, i, userMedia(intent)) {
				if k > 0 {
					s.t = s.t.Add(splitGap)
				}
				s.emit(event.MessageReceived, "info", func(e *event.Event) {
					e.Payload = p
					e.Intent, e.Confidence = intent, conf
				})
			}
			if intent != "" && intent != prevIntent {
				from := prevIntent
				s.t = s.t.Add(5 * time.Millisecond)
				s.emit(event.ScenarioTransition, "info", func(e *event.Event) {
					e.Scenario = &event.Scenario{From: from, To: intent}
					e.Intent = intent
				})
				prevIntent = intent
			}
			if i == complaintAt {
				s.advance(20*time.Second, 0.5)
				text := complaints[rng.IntN(len(complaints))]
				s.emit(event.ComplaintReceived, "warning", func(e *event.Event) {
					e.Payload = map[string]any{"text": text}
				})
			}
			if i == handoffAt && !handedOff {
				handedOff = true
				s.t = s.t.Add(300 * time.Millisecond)
				s.emit(event.HandoffRequested, "warning", func(e *event.Event) {
					e.Payload = map[string]any{"reason": "customer asked for a person"}
				})
				wait := s.advance(3*time.Minute, 0.7).Milliseconds()
				m := managers[rng.IntN(len(managers))]
				s.emit(event.ManagerJoined, "info", func(e *event.Event) {
					e.Payload = map[string]any{"manager": m}
					e.LatencyMS = &wait // how long the customer waited for a person
				})
			}
			continue
		}

		// SYSTEM turn. Before the first booking call the assistant collects
		// consent and contact details: that makes the lead.
		if turn.callsBooking() && !leadDone {
			leadDone = true
			s.collectContact(phone)
		}
		if s.chance(cfg.ErrorRate) {
			s.advance(2*time.Second, 0.3)
			msg := errorMessages[rng.IntN(len(errorMessages))]
			s.emit(event.Error, "error", func(e *event.Event) {
				e.Payload = map[string]any{"error": msg, "component": "assistant"}
			})
		}
		lat := s.advance(900*time.Millisecond, 0.6)
		result, frame := turn.BookingResult()
		level := "info"
		if result == "failure" {
			level = "warning"
		}
		for k, p := range s.messages(turn.Utterance, i, assistantMedia) {
			if k > 0 {
				// The channel delivers the rest of a long reply as further
				// messages; the refusal is told once, by the first.
				s.t = s.t.Add(splitGap)
				lat += splitGap
				level = "info"
			}
			s.emit(event.MessageSent, level, func(e *event.Event) {
				ms := lat.Milliseconds()
				e.LatencyMS = &ms
				e.Payload = p
				if result == "failure" && k == 0 {
					e.Outcome = "booking_failed"
				}
			})
		}
		if result == "success" {
			booked++
			s.t = s.t.Add(10 * time.Millisecond)
			s.confirm(frame, booked)
		} else if result == "failure" {
			failed++
		}
	}
	s.advance(30*time.Second, 0.5)
	outcome := "no_booking"
	switch {
	case booked > 0:
		outcome = "booked"
	case handedOff:
		outcome = "handoff"
	case failed > 0:
		outcome = "booking_failed"
	}
	s.emit(event.SessionEnded, "info", func(e *event.Event) { e.Outcome = outcome })
	s.followUps()
	// What the collector would dead-letter must not be written, nor counted
	// in the truth. Validate applies every rule of schema v1 (Parse adds
	// only checks of the bytes, which Marshal always satisfies).
	for i := range s.events {
		if err := s.events[i].Validate(); err != nil {
			return nil, fmt.Errorf("event %s would be rejected by schema v1: %w", s.events[i].EventID, err)
		}
	}
	return s.events, nil
}

// maxText is the longest payload.text schema v1 accepts, and WhatsApp's and
// Telegram's limit for one text message.
const maxText = 4096

// splitGap separates the messages a channel splits one long text into.
const splitGap = 20 * time.Millisecond

// media is what a turn without words is sent as.
type media struct{ kind, mime string }

var (
	voiceNote      = media{"audio", "audio/ogg; codecs=opus"}
	sticker        = media{"sticker", "image/webp"}
	assistantMedia = media{"image", "image/jpeg"} // a card or a price list
)

// userMedia: a customer turn without words that still carries an intent
// was spoken (a voice note the assistant transcribed); one without an
// intent is a sticker.
func userMedia(intent string) media {
	if intent != "" {
		return voiceNote
	}
	return sticker
}

// messages turns one utterance into the payloads of the messages that carry
// it. In a chat, a turn without words (empty or only white space) is media:
// one message with an attachment and no text. A text longer than a channel
// message is split, at white space where it can be, into several.
func (s *session) messages(utterance string, turn int, m media) []map[string]any {
	if event.Blank(utterance) {
		return []map[string]any{{"attachments": []any{map[string]any{
			"kind": m.kind, "id": fmt.Sprintf("%s-t%d", s.id, turn), "mime_type": m.mime,
		}}}}
	}
	var out []map[string]any
	for _, part := range splitText(utterance, maxText) {
		out = append(out, map[string]any{"text": part})
	}
	return out
}

// splitText cuts s into parts of at most max characters, preferring to cut
// after white space in the second half of a part; blank parts (a run of
// white space at a cut) are dropped, so every part says something.
func splitText(s string, max int) []string {
	if utf8.RuneCountInString(s) <= max {
		return []string{s}
	}
	r := []rune(s)
	var parts []string
	for len(r) > 0 {
		cut := min(max, len(r))
		if cut < len(r) {
			for j := cut; j > cut/2; j-- {
				if unicode.IsSpace(r[j-1]) {
					cut = j
					break
				}
			}
		}
		if p := string(r[:cut]); !event.Blank(p) {
			parts = append(parts, p)
		}
		r = r[cut:]
	}
	return parts
}

// confidence draws a classifier confidence; LowConfidenceShare of them fall
// below event.LowConfidence.
func (s *session) confidence() float64 {
	var c float64
	if s.chance(s.cfg.LowConfidenceShare) {
		c = 0.2 + s.rng.Float64()*(event.LowConfidence-0.2)
	} else {
		c = event.LowConfidence + s.rng.Float64()*(0.995-event.LowConfidence)
	}
	c = math.Floor(c*1000) / 1000
	if c >= event.LowConfidence-0.0005 && c < event.LowConfidence {
		c = event.LowConfidence - 0.001
	}
	return c
}

// consentText is the question a customer answers to give consent.
const consentText = "To book, I need your phone number. Do you agree to the processing of your personal data?"

func ptr[T any](v T) *T { return &v }

// collectContact is the synthetic consent and contact exchange.
func (s *session) collectContact(phone string) {
	s.advance(900*time.Millisecond, 0.4)
	s.emit(event.ContactRequested, "info", func(e *event.Event) {
		e.Payload = map[string]any{"text": consentText}
	})
	s.advance(12*time.Second, 0.5)
	s.emit(event.ConsentGiven, "info", func(e *event.Event) {
		// The wording the customer agreed to travels with the consent, so
		// the proof does not depend on finding the question again.
		e.Payload = map[string]any{"consent": "personal_data_processing", "consent_text": consentText}
	})
	s.t = s.t.Add(40 * time.Millisecond)
	text := "Yes, my number is " + formatPhone(phone, s.rng.IntN(3))
	s.emit(event.MessageReceived, "info", func(e *event.Event) {
		e.Payload = map[string]any{"text": text}
		e.Intent = "ProvideContact"
		c := s.confidence()
		e.Confidence = &c
	})
	s.phone = phone
	s.t = s.t.Add(60 * time.Millisecond)
	s.emit(event.LeadCreated, "info", func(e *event.Event) {
		e.Payload = map[string]any{"source": "chatbot"}
	})
}

// confirm records a successful booking.
func (s *session) confirm(f *Frame, n int) {
	p := f.ServiceCall.Parameters
	day := s.t.In(s.tenant.zone).AddDate(0, 0, 1+s.rng.IntN(7))
	startsAt := time.Date(day.Year(), day.Month(), day.Day(), 10+s.rng.IntN(9), 0, 0, 0, s.tenant.zone)
	payload := map[string]any{
		"appointment_id": fmt.Sprintf("%s-a%d", s.id, n),
		"service":        s.tenant.service,
		"starts_at":      startsAt.In(s.tenant.zone).Format(time.RFC3339),
	}
	if v := p[providerSlot[f.Service]]; v != "" {
		payload["provider"] = v
	}
	if v := p["appointment_date"]; v != "" {
		payload["requested_date"] = v
	}
	if v := p["appointment_time"]; v != "" {
		payload["requested_time"] = v
	}
	s.emit(event.AppointmentConfirmed, "info", func(e *event.Event) {
		e.Payload = payload
		e.Outcome = "booked"
	})
}

// followUps marks some confirmed appointments attended or no-show, an hour
// after they were due, when that moment is already in the past.
func (s *session) followUps() {
	var confirmed []event.Event
	for _, e := range s.events {
		if e.Type == event.AppointmentConfirmed {
			confirmed = append(confirmed, e)
		}
	}
	for _, c := range confirmed {
		if !s.chance(s.cfg.FollowUpShare) {
			continue
		}
		noShow := s.chance(s.cfg.NoShowShare)
		startsAt, err := time.Parse(time.RFC3339, c.Payload["starts_at"].(string))
		if err != nil {
			continue
		}
		at := startsAt.Add(time.Hour)
		if !at.Before(s.cfg.End) {
			continue
		}
		s.t = at
		typ, outcome := event.AppointmentAttended, "attended"
		if noShow {
			typ, outcome = event.AppointmentNoShow, "no_show"
		}
		id := c.Payload["appointment_id"]
		s.emit(typ, "info", func(e *event.Event) {
			e.Payload = map[string]any{"appointment_id": id}
			e.Outcome = outcome
		})
	}
}

func pickChannel(rng *rand.Rand) string {
	x := rng.Float64()
	for _, c := range channelMix {
		if x < c.share {
			return c.name
		}
		x -= c.share
	}
	return channelMix[0].name
}

// userID is the customer's id as each channel reports it.
func userID(channel, phone string, rng *rand.Rand) string {
	switch channel {
	case "whatsapp":
		return "wa:" + strings.TrimPrefix(phone, "+")
	case "telegram":
		return fmt.Sprintf("tg:%d", 100000000+rng.Int64N(6900000000))
	case "instagram":
		return fmt.Sprintf("ig:%d", 1000000000+rng.Int64N(9000000000))
	case "web":
		return fmt.Sprintf("web:%016x", rng.Uint64())
	default:
		return "tel:" + strings.TrimPrefix(phone, "+")
	}
}

// formatPhone writes a +7 number the ways customers type it, so masking of
// numbers inside message text has something real to find.
func formatPhone(p string, style int) string {
	d := strings.TrimPrefix(p, "+7")
	switch style {
	case 0:
		return fmt.Sprintf("+7 (%s) %s-%s-%s", d[0:3], d[3:6], d[6:8], d[8:10])
	case 1:
		return fmt.Sprintf("8 %s %s %s %s", d[0:3], d[3:6], d[6:8], d[8:10])
	default:
		return p
	}
}

// FromShared generates events from the first n shared dialogues (all of
// them when n <= 0): what tests and benchmarks start from.
func FromShared(n int, cfg Config) ([]event.Event, *Truth, error) {
	dir, err := FindDataDir()
	if err != nil {
		return nil, nil, err
	}
	ds, err := LoadDialogues(dir)
	if err != nil {
		return nil, nil, err
	}
	if n > 0 && n < len(ds) {
		ds = ds[:n]
	}
	return Generate(ds, cfg)
}
