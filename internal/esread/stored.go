package esread

import (
	"encoding/json"
	"fmt"
	"time"
)

// Event is a stored event as the shipper wrote it: schema v1 fields with
// personal data masked, plus what the shipper added.
type Event struct {
	EventID       string         `json:"event_id"`
	Timestamp     time.Time      `json:"@timestamp"`
	IngestedAt    time.Time      `json:"ingested_at"`
	Tenant        string         `json:"tenant"`
	Channel       string         `json:"channel"`
	SessionID     string         `json:"session_id"`
	UserID        string         `json:"user_id,omitempty"`
	UserPhone     string         `json:"user_phone,omitempty"` // masked
	UserPhoneHash string         `json:"user_phone_hash,omitempty"`
	Type          string         `json:"event_type"`
	Level         string         `json:"level"`
	Intent        string         `json:"intent,omitempty"`
	Confidence    *float64       `json:"confidence,omitempty"`
	CRMID         string         `json:"crm_id,omitempty"`
	CRMStatus     string         `json:"crm_status,omitempty"`
	Scenario      *Scenario      `json:"scenario,omitempty"`
	Payload       map[string]any `json:"payload,omitempty"`
	Outcome       string         `json:"outcome,omitempty"`
	LatencyMS     *int64         `json:"latency_ms,omitempty"`
	Seq           *int64         `json:"seq,omitempty"`
	PIIMasked     []string       `json:"pii_masked,omitempty"`
}

// Scenario is a move between script steps.
type Scenario struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// Text is payload.text, or "".
func (e *Event) Text() string {
	s, _ := e.Payload["text"].(string)
	return s
}

// PayloadString is payload[key] when it is a string.
func (e *Event) PayloadString(key string) string {
	s, _ := e.Payload[key].(string)
	return s
}

// Decode reads a hit's source as an Event.
func (h Hit) Decode() (Event, error) {
	var e Event
	if err := json.Unmarshal(h.Source, &e); err != nil {
		return e, fmt.Errorf("decode %s/%s: %w", h.Index, h.ID, err)
	}
	return e, nil
}
