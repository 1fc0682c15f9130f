// Package deadletter defines the record written to the dead-letter topic
// for input that could not be accepted: the raw bytes as the message value,
// and why, where from and when in headers, so an operator can read the
// reason with any Kafka client and replay the record after a fix.
//
// Raw input may hold personal data (a phone number in a line that failed
// validation), so a program with a key ring seals the value (Seal:
// AES-256-GCM, the key's id in the key_id header) and masks phone numbers
// and e-mails in the error text: a reader of the topic sees neither, and
// `shipper dlq replay` with the key opens the value again.
package deadletter

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/assistlog/assistlog/internal/pii"
)

// MaxRawBytes bounds the raw bytes kept; longer input keeps its prefix and
// records its full length.
const MaxRawBytes = 256 << 10

// Reasons beyond event.Kind's.
const (
	ReasonLineTooLong = "line_too_long"
)

// Record is one rejected input.
type Record struct {
	Reason      string // machine-readable: invalid_json, schema, line_too_long, …
	Error       string // human-readable, names the field
	Source      string // file path, or "webhook"
	Fingerprint string // file fingerprint, for files
	Offset      int64  // byte offset in the file, or index in a webhook batch
	Tenant      string // when it could be read from the input
	Step        string // the mapping step that failed (parse, fields, timestamp, validate, …), for mapped sources
	Raw         []byte
	// KeyID is the key Raw is sealed with ("" when Raw is the input as
	// read); Open turns it back into the input.
	KeyID     string
	RawLength int // full length of the input
	At        time.Time
}

// Header names.
const (
	HeaderReason      = "reason"
	HeaderError       = "error"
	HeaderSource      = "source"
	HeaderFingerprint = "fingerprint"
	HeaderOffset      = "offset"
	HeaderTenant      = "tenant"
	HeaderRawLength   = "raw_length"
	HeaderAt          = "at"
	HeaderStep        = "mapping_step"
	HeaderKeyID       = "key_id"
)

// Message encodes the record for topic.
func (r Record) Message(topic string) kafkago.Message {
	raw := r.Raw
	if r.RawLength == 0 {
		r.RawLength = len(raw)
	}
	if len(raw) > MaxRawBytes {
		raw = raw[:MaxRawBytes]
	}
	if r.At.IsZero() {
		r.At = time.Now()
	}
	h := func(k, v string) kafkago.Header { return kafkago.Header{Key: k, Value: []byte(v)} }
	m := kafkago.Message{
		Topic: topic,
		Key:   []byte(r.Source),
		Value: raw,
		Headers: []kafkago.Header{
			h(HeaderReason, r.Reason), h(HeaderError, r.Error), h(HeaderSource, r.Source),
			h(HeaderFingerprint, r.Fingerprint), h(HeaderOffset, strconv.FormatInt(r.Offset, 10)),
			h(HeaderTenant, r.Tenant), h(HeaderRawLength, strconv.Itoa(r.RawLength)),
			h(HeaderAt, r.At.UTC().Format(time.RFC3339Nano)),
		},
	}
	if r.Step != "" {
		m.Headers = append(m.Headers, h(HeaderStep, r.Step))
	}
	return m
}

// FromMessage decodes a dead-letter message.
func FromMessage(m kafkago.Message) Record {
	r := Record{Raw: m.Value}
	for _, h := range m.Headers {
		v := string(h.Value)
		switch h.Key {
		case HeaderReason:
			r.Reason = v
		case HeaderError:
			r.Error = v
		case HeaderSource:
			r.Source = v
		case HeaderFingerprint:
			r.Fingerprint = v
		case HeaderOffset:
			r.Offset, _ = strconv.ParseInt(v, 10, 64)
		case HeaderTenant:
			r.Tenant = v
		case HeaderRawLength:
			r.RawLength, _ = strconv.Atoi(v)
		case HeaderAt:
			r.At, _ = time.Parse(time.RFC3339Nano, v)
		case HeaderStep:
			r.Step = v
		case HeaderKeyID:
			r.KeyID = v
		}
	}
	return r
}

// TenantOf reads the tenant field from input that may be broken, for
// routing a dead letter; "" when it cannot.
func TenantOf(raw []byte) string {
	var v struct {
		Tenant string `json:"tenant"`
	}
	if json.Unmarshal(raw, &v) != nil || len(v.Tenant) > 63 {
		return ""
	}
	return v.Tenant
}

// Seal returns m with its value sealed with ring's current key (the key's
// id in the key_id header) and phone numbers and e-mails in its error
// header masked: the error text can quote the input. A message sealed
// already, or with no ring, is returned as it is.
func Seal(m kafkago.Message, ring *pii.Ring) kafkago.Message {
	if ring == nil {
		return m
	}
	headers := make([]kafkago.Header, 0, len(m.Headers)+1)
	for _, h := range m.Headers {
		switch h.Key {
		case HeaderKeyID:
			return m
		case HeaderError:
			masked, _ := pii.MaskText(string(h.Value))
			h.Value = []byte(masked)
		}
		headers = append(headers, h)
	}
	id, sealed := ring.Seal(pii.PurposeDeadLetter, m.Value)
	m.Value, m.Headers = sealed, append(headers, kafkago.Header{Key: HeaderKeyID, Value: []byte(id)})
	return m
}

// Open turns a sealed record's Raw back into the input; a record that is
// not sealed is left as it is. Without the record's key the error names it.
func (r *Record) Open(ring *pii.Ring) error {
	if r.KeyID == "" {
		return nil
	}
	if ring == nil {
		return fmt.Errorf("dead letter from %s at offset %d: %w", r.Source, r.Offset, &pii.UnknownKeyError{ID: r.KeyID})
	}
	raw, err := ring.Open(pii.PurposeDeadLetter, r.KeyID, r.Raw)
	if err != nil {
		return fmt.Errorf("dead letter from %s at offset %d: %w", r.Source, r.Offset, err)
	}
	r.Raw, r.KeyID = raw, ""
	return nil
}

// Sender produces messages and returns once Kafka acknowledged them.
type Sender interface {
	Send(ctx context.Context, msgs []kafkago.Message) error
}

// SealingSender seals every message bound for the dead-letter topic
// before out sends it, so no code path that writes a dead letter can
// forget to; other topics pass through unchanged.
type SealingSender struct {
	Out   Sender
	Topic string
	Ring  *pii.Ring
}

// Send seals the dead letters of msgs and sends them all.
func (s SealingSender) Send(ctx context.Context, msgs []kafkago.Message) error {
	if s.Ring == nil {
		return s.Out.Send(ctx, msgs)
	}
	out := make([]kafkago.Message, len(msgs))
	for i, m := range msgs {
		if m.Topic == s.Topic {
			m = Seal(m, s.Ring)
		}
		out[i] = m
	}
	return s.Out.Send(ctx, out)
}
