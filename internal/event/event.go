// Package event defines the assistant event, schema v1: the Go type, the
// published JSON Schema (schema.v1.json, embedded) and a validator whose
// errors name the field and say why.
package event

import (
	_ "embed"
	"encoding/json"
	"time"
)

// SchemaVersion is the only major version this package accepts.
const SchemaVersion = 1

// SchemaMinor is the newest minor version of v1 this package knows:
// 1.0 the first release, 1.1 added the optional seq, 1.2 the edge's
// user_phone_sealed and pii_masked. A minor only adds
// optional fields; docs/schema-evolution.md says how minors and a future
// v2 are rolled out.
const SchemaMinor = 2

// SchemaJSON is the JSON Schema (draft 2020-12) of an event. Validate
// enforces the same rules; a test keeps the two in agreement.
//
//go:embed schema.v1.json
var SchemaJSON []byte

// Type is an event type.
type Type string

// Event types. docs/events.md describes each with an example.
const (
	SessionStarted         Type = "session.started"
	MessageReceived        Type = "message.received"
	MessageSent            Type = "message.sent"
	ScenarioTransition     Type = "scenario.transition"
	ContactRequested       Type = "contact.requested"
	ConsentGiven           Type = "consent.given"
	LeadCreated            Type = "lead.created"
	AppointmentConfirmed   Type = "appointment.confirmed"
	AppointmentRescheduled Type = "appointment.rescheduled"
	AppointmentCancelled   Type = "appointment.cancelled"
	AppointmentAttended    Type = "appointment.attended"
	AppointmentNoShow      Type = "appointment.no_show"
	HandoffRequested       Type = "handoff.requested"
	ManagerJoined          Type = "manager.joined"
	ComplaintReceived      Type = "complaint.received"
	Error                  Type = "error"
	SessionEnded           Type = "session.ended"
)

// Types lists every event type in the order of a typical conversation.
var Types = []Type{
	SessionStarted, MessageReceived, MessageSent, ScenarioTransition, ContactRequested,
	ConsentGiven, LeadCreated, AppointmentConfirmed, AppointmentRescheduled,
	AppointmentCancelled, AppointmentAttended, AppointmentNoShow, HandoffRequested,
	ManagerJoined, ComplaintReceived, Error, SessionEnded,
}

// IsAppointment reports whether t is one of the appointment.* types.
func (t Type) IsAppointment() bool {
	switch t {
	case AppointmentConfirmed, AppointmentRescheduled, AppointmentCancelled, AppointmentAttended, AppointmentNoShow:
		return true
	}
	return false
}

// Channels an assistant talks on.
var Channels = []string{"whatsapp", "instagram", "telegram", "web", "phone"}

// Levels of an event.
var Levels = []string{"info", "warning", "error"}

// LowConfidence is the threshold below which a classification counts as
// low-confidence in dashboards and alerts.
const LowConfidence = 0.6

// Scenario is a move between steps of the assistant's script.
type Scenario struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// Event is one assistant event. Optional fields are pointers or omitted
// when empty so that an event round-trips through JSON unchanged.
type Event struct {
	EventID    string         `json:"event_id"`
	Timestamp  string         `json:"timestamp"`
	Tenant     string         `json:"tenant"`
	Channel    string         `json:"channel"`
	SessionID  string         `json:"session_id"`
	UserID     string         `json:"user_id,omitempty"`
	UserPhone  string         `json:"user_phone,omitempty"`
	Type       Type           `json:"event_type"`
	Level      string         `json:"level"`
	Intent     string         `json:"intent,omitempty"`
	Confidence *float64       `json:"confidence,omitempty"`
	CRMID      string         `json:"crm_id,omitempty"`
	Scenario   *Scenario      `json:"scenario,omitempty"`
	Payload    map[string]any `json:"payload,omitempty"`
	Outcome    string         `json:"outcome,omitempty"`
	LatencyMS  *int64         `json:"latency_ms,omitempty"`
	// Seq numbers a session's events 1, 2, 3… as the assistant wrote them
	// (optional): with it a replay proves a gap or a repeat instead of
	// guessing one from timestamps.
	Seq *int64 `json:"seq,omitempty"`
	// UserPhoneSealed replaces user_phone on the events topic (minor 2):
	// the collector seals the customer's number with AES-256-GCM
	// ("<key id>:<base64url>", internal/pii) so that only the shipper, which
	// holds the key, reads it for the CRM lookup and the keyed hash. Never
	// stored by a sink.
	UserPhoneSealed string `json:"user_phone_sealed,omitempty"`
	// PIIMasked lists the fields the collector masked at the edge (minor 2),
	// e.g. "payload.text"; the shipper adds them to the stored pii_masked.
	PIIMasked     []string `json:"pii_masked,omitempty"`
	SchemaVersion int      `json:"schema_version"`
	// SchemaMinor is the minor version the producer wrote (optional; absent
	// reads as "1.0 or 1.1"). An event of a newer minor than SchemaMinor may
	// carry top-level fields this version does not know.
	SchemaMinor *int `json:"schema_minor,omitempty"`
	// Unknown names the top-level fields of a newer minor that this version
	// tolerated but does not carry (they are not re-encoded by Marshal: a
	// field this version does not know, it cannot mask or store correctly).
	Unknown []string `json:"-"`
}

// Time returns the parsed timestamp; call it on validated events only.
func (e *Event) Time() time.Time {
	t, _ := time.Parse(time.RFC3339Nano, e.Timestamp)
	return t
}

// Key is the Kafka message key: one conversation stays on one partition,
// so its events keep their order.
func (e *Event) Key() []byte {
	return []byte(e.Tenant + "/" + e.SessionID)
}

// Text returns payload.text, or "".
func (e *Event) Text() string {
	s, _ := e.Payload["text"].(string)
	return s
}

// Marshal encodes the event as one JSON line (without the newline).
func (e *Event) Marshal() ([]byte, error) {
	return json.Marshal(e)
}
