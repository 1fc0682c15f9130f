// Package deadletter defines the record written to the dead-letter topic
// for input that could not be accepted: the raw bytes as the message value,
// and why, where from and when in headers, so an operator can read the
// reason with any Kafka client and replay the record after a fix.
package deadletter

import (
	"encoding/json"
	"strconv"
	"time"

	kafkago "github.com/segmentio/kafka-go"
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
	RawLength   int // full length of the input
	At          time.Time
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
