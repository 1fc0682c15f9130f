package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits the JSON Schema cannot express in bytes.
const (
	// MaxPayloadBytes bounds payload as encoded JSON. It keeps one event well
	// under Loki's 256 KB line limit and Kafka's default 1 MB message.
	MaxPayloadBytes = 32 << 10
	// MaxEventBytes bounds a whole encoded event.
	MaxEventBytes = 64 << 10
)

// Kind classifies why input was rejected; dead-letter records and metrics
// carry it as the reason label.
type Kind string

// Rejection kinds.
const (
	KindInvalidUTF8 Kind = "invalid_utf8"
	KindInvalidJSON Kind = "invalid_json"
	KindTooLarge    Kind = "too_large"
	KindSchema      Kind = "schema"
)

// FieldError is one broken rule: the field's path (e.g. "payload.text",
// empty for the whole document) and why.
type FieldError struct {
	Field  string
	Reason string
}

func (f FieldError) String() string {
	if f.Field == "" {
		return f.Reason
	}
	return f.Field + ": " + f.Reason
}

// ValidationError lists every broken rule of one input.
type ValidationError struct {
	Kind   Kind
	Fields []FieldError
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.String()
	}
	return strings.Join(parts, "; ")
}

// KindOf returns the rejection kind of err, or "" if err is not a
// validation error.
func KindOf(err error) Kind {
	var ve *ValidationError
	if errors.As(err, &ve) {
		return ve.Kind
	}
	return ""
}

func reject(kind Kind, field, format string, args ...any) *ValidationError {
	return &ValidationError{Kind: kind, Fields: []FieldError{{Field: field, Reason: fmt.Sprintf(format, args...)}}}
}

// Parse decodes one JSON line into an event and validates it. Unknown
// fields are errors: a typo such as "sesion_id" must not pass as valid.
func Parse(line []byte) (*Event, error) {
	return ParseWithDefaultID(line, "")
}

// ParseWithDefaultID is Parse for sources that may omit event_id: an event
// without one gets defaultID, which the caller derives deterministically
// (e.g. from file fingerprint and offset) so a re-read yields the same id.
func ParseWithDefaultID(line []byte, defaultID string) (*Event, error) {
	if len(line) > MaxEventBytes {
		return nil, reject(KindTooLarge, "", "event is %d bytes, the limit is %d", len(line), MaxEventBytes)
	}
	if !utf8.Valid(line) {
		return nil, reject(KindInvalidUTF8, "", "invalid UTF-8 at byte %d", invalidUTF8At(line))
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	var e Event
	if err := dec.Decode(&e); err != nil {
		return nil, decodeError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, reject(KindInvalidJSON, "", "invalid JSON: unexpected data after the event object")
	}
	if e.EventID == "" {
		e.EventID = defaultID
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return &e, nil
}

func invalidUTF8At(b []byte) int {
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size <= 1 {
			return i
		}
		i += size
	}
	return len(b)
}

// decodeError turns encoding/json's errors into field errors.
func decodeError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return reject(KindInvalidJSON, "", "invalid JSON at byte %d: %s", syn.Offset, strings.TrimPrefix(syn.Error(), "json: "))
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return reject(KindInvalidJSON, "", "invalid JSON: an event must be an object, got %s", typ.Value)
		}
		return reject(KindSchema, field, "must be %s, got %s", describeGoType(field), jsonKind(typ.Value))
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return reject(KindInvalidJSON, "", "invalid JSON: unexpected end of input")
	}
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return reject(KindSchema, strings.Trim(f, `"`), "unknown field")
	}
	return reject(KindInvalidJSON, "", "invalid JSON: %s", strings.TrimPrefix(msg, "json: "))
}

// describeGoType says what a field must be, in JSON terms.
func describeGoType(field string) string {
	switch field {
	case "confidence":
		return "a number"
	case "latency_ms", "schema_version":
		return "an integer"
	case "scenario", "payload":
		return "an object"
	}
	return "a string"
}

// jsonKind renders encoding/json's Value description ("number 1.5",
// "string", "bool") as a JSON type name.
func jsonKind(v string) string {
	switch {
	case strings.HasPrefix(v, "number"):
		if strings.ContainsAny(strings.TrimPrefix(v, "number"), ".eE") {
			return "a non-integer number"
		}
		return "a number"
	case v == "bool":
		return "a boolean"
	case v == "string":
		return "a string"
	case v == "array":
		return "an array"
	case v == "object":
		return "an object"
	}
	return v
}

var (
	reEventID = regexp.MustCompile(`^[A-Za-z0-9._:-]+$`)
	reTenant  = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	rePhone   = regexp.MustCompile(`^\+[1-9][0-9]{7,14}$`)
	reCRMID   = regexp.MustCompile(`^[0-9]{1,20}$`)
	reRFC3339 = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$`)
	typeSet   = func() map[Type]bool {
		m := map[Type]bool{}
		for _, t := range Types {
			m[t] = true
		}
		return m
	}()
	needsText = map[Type]bool{MessageReceived: true, MessageSent: true, ComplaintReceived: true}
)

type checker struct{ errs []FieldError }

func (c *checker) add(field, format string, args ...any) {
	c.errs = append(c.errs, FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
}

// str checks a string field: required or not, length in characters, pattern.
func (c *checker) str(field, v string, required bool, min, max int, re *regexp.Regexp, what string) {
	if v == "" {
		if required {
			c.add(field, "is required")
		}
		return
	}
	n := utf8.RuneCountInString(v)
	switch {
	case n < min:
		c.add(field, "must be at least %d characters, got %d", min, n)
	case n > max:
		c.add(field, "must be at most %d characters, got %d", max, n)
	case re != nil && !re.MatchString(v):
		c.add(field, "must be %s, got %q", what, v)
	}
}

// Validate checks every rule of schema v1 and returns all broken ones.
func (e *Event) Validate() error {
	var c checker
	c.str("event_id", e.EventID, true, 1, 128, reEventID, "letters, digits and . _ : -")
	if e.Timestamp == "" {
		c.add("timestamp", "is required")
	} else if !reRFC3339.MatchString(e.Timestamp) {
		c.add("timestamp", "must be RFC 3339 with a UTC offset (e.g. 2026-11-23T14:05:09.120+03:00), got %q", e.Timestamp)
	} else if _, err := time.Parse(time.RFC3339Nano, e.Timestamp); err != nil {
		c.add("timestamp", "is not a real date and time: %q", e.Timestamp)
	}
	c.str("tenant", e.Tenant, true, 1, 63, reTenant, "lower-case letters, digits and -, starting with a letter or digit")
	if e.Channel == "" {
		c.add("channel", "is required")
	} else if !slices.Contains(Channels, e.Channel) {
		c.add("channel", "must be one of %s, got %q", strings.Join(Channels, ", "), e.Channel)
	}
	c.str("session_id", e.SessionID, true, 1, 128, nil, "")
	c.str("user_id", e.UserID, false, 1, 128, nil, "")
	c.str("user_phone", e.UserPhone, false, 1, 16, rePhone, "an E.164 number such as +79161234567")
	if e.Type == "" {
		c.add("event_type", "is required")
	} else if !typeSet[e.Type] {
		c.add("event_type", "unknown event type %q", string(e.Type))
	}
	if e.Level == "" {
		c.add("level", "is required")
	} else if !slices.Contains(Levels, e.Level) {
		c.add("level", "must be one of %s, got %q", strings.Join(Levels, ", "), e.Level)
	}
	c.str("intent", e.Intent, false, 1, 64, nil, "")
	if e.Confidence != nil {
		if v := *e.Confidence; v < 0 || v > 1 {
			c.add("confidence", "must be between 0 and 1, got %g", v)
		}
		if e.Intent == "" {
			c.add("confidence", "needs intent: a confidence says how sure the classifier is of an intent")
		}
	}
	c.str("crm_id", e.CRMID, false, 1, 20, reCRMID, "a Bitrix24 id of digits")
	if e.Scenario != nil {
		c.str("scenario.from", e.Scenario.From, false, 0, 64, nil, "")
		c.str("scenario.to", e.Scenario.To, true, 1, 64, nil, "")
	}
	c.str("outcome", e.Outcome, false, 1, 64, nil, "")
	if e.LatencyMS != nil && (*e.LatencyMS < 0 || *e.LatencyMS > 3600000) {
		c.add("latency_ms", "must be between 0 and 3600000, got %d", *e.LatencyMS)
	}
	if e.SchemaVersion != SchemaVersion {
		if e.SchemaVersion == 0 {
			c.add("schema_version", "is required (1)")
		} else {
			c.add("schema_version", "must be 1, got %d", e.SchemaVersion)
		}
	}
	e.validatePayload(&c)
	e.validateByType(&c)
	if len(c.errs) > 0 {
		return &ValidationError{Kind: KindSchema, Fields: c.errs}
	}
	return nil
}

func (e *Event) validatePayload(c *checker) {
	if e.Payload == nil {
		return
	}
	if b, err := json.Marshal(e.Payload); err != nil {
		c.add("payload", "cannot be encoded: %v", err)
	} else if len(b) > MaxPayloadBytes {
		c.add("payload", "is %d bytes, the limit is %d", len(b), MaxPayloadBytes)
	}
	for _, k := range []struct {
		name     string
		min, max int
	}{{"text", 0, 4096}, {"appointment_id", 1, 128}, {"error", 1, 4096}} {
		v, ok := e.Payload[k.name]
		if !ok || v == nil {
			continue
		}
		s, isStr := v.(string)
		if !isStr {
			c.add("payload."+k.name, "must be a string, got %s", jsonTypeOf(v))
			continue
		}
		if n := utf8.RuneCountInString(s); n < k.min {
			c.add("payload."+k.name, "must not be empty")
		} else if n > k.max {
			c.add("payload."+k.name, "must be at most %d characters, got %d", k.max, n)
		}
	}
}

// validateByType enforces what each event type needs (docs/events.md).
func (e *Event) validateByType(c *checker) {
	has := func(key string) bool { v, ok := e.Payload[key]; return ok && v != nil }
	if needsText[e.Type] {
		if !has("text") {
			c.add("payload.text", "is required for %s", e.Type)
		} else if s, ok := e.Payload["text"].(string); ok && s == "" {
			c.add("payload.text", "must not be empty for %s", e.Type)
		}
	}
	switch {
	case e.Type == MessageSent && e.LatencyMS == nil:
		c.add("latency_ms", "is required for %s", e.Type)
	case e.Type == ScenarioTransition && e.Scenario == nil:
		c.add("scenario", "is required for %s", e.Type)
	case e.Type == LeadCreated && e.UserPhone == "":
		c.add("user_phone", "is required for %s: a lead is created when contact details are given", e.Type)
	case e.Type.IsAppointment() && !has("appointment_id"):
		c.add("payload.appointment_id", "is required for %s", e.Type)
	case e.Type == Error:
		if !has("error") {
			c.add("payload.error", "is required for %s", e.Type)
		}
		if e.Level != "" && e.Level != "error" {
			c.add("level", "must be error for an error event, got %q", e.Level)
		}
	}
}

func jsonTypeOf(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case float64, json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}
