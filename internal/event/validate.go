package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
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
	return ParseWithIDFunc(line, func() string { return defaultID })
}

// ParseWithIDFunc is ParseWithDefaultID with the default id made only for
// an event that has none: the collector's ids are hashes of the line, and
// most lines carry their own.
func ParseWithIDFunc(line []byte, defaultID func() string) (*Event, error) {
	if err := precheck(line); err != nil {
		return nil, err
	}
	if e, payloadLen, ok := fastDecode(line); ok {
		if e.EventID == "" {
			e.EventID = defaultID()
		}
		if e.validate(payloadLen) == nil {
			return &e, nil
		}
		// Invalid: the strict path below says why, in its own words.
	}
	return parseStrict(line, defaultID)
}

// precheck refuses what no decoder is given: too large, or not UTF-8.
func precheck(line []byte) error {
	if len(line) > MaxEventBytes {
		return reject(KindTooLarge, "", "event is %d bytes, the limit is %d", len(line), MaxEventBytes)
	}
	if !utf8.Valid(line) {
		return reject(KindInvalidUTF8, "", "invalid UTF-8 at byte %d", invalidUTF8At(line))
	}
	return nil
}

// parseStrict is the reference decoder: encoding/json with unknown fields
// refused, the newer-minor tolerance and every error's text. The fast path
// (fast.go) only ever accepts what this accepts, as this decodes it.
func parseStrict(line []byte, defaultID func() string) (*Event, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	var e Event
	if err := dec.Decode(&e); err != nil {
		derr := decodeError(err)
		unknown, newer := newerMinorFields(line, derr)
		if !newer {
			return nil, derr
		}
		// An event of a newer minor: its additive fields are tolerated
		// (named in Unknown), everything this version knows stays strict.
		e = Event{}
		lenient := json.NewDecoder(bytes.NewReader(line))
		if err := lenient.Decode(&e); err != nil {
			return nil, decodeError(err)
		}
		e.Unknown = unknown
		dec = lenient
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, reject(KindInvalidJSON, "", "invalid JSON: unexpected data after the event object")
	}
	if e.EventID == "" {
		e.EventID = defaultID()
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return &e, nil
}

// reMinorField is what a field added by a minor version is named like.
var reMinorField = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

// newerMinorFields reports whether err is only about unknown top-level
// fields of an event that declares a schema_minor newer than SchemaMinor,
// and names those fields. Unknown fields inside scenario or an attachment,
// or oddly named ones, stay errors.
func newerMinorFields(line []byte, err error) ([]string, bool) {
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Fields) != 1 || ve.Fields[0].Reason != "unknown field" {
		return nil, false
	}
	var top map[string]json.RawMessage
	if json.Unmarshal(line, &top) != nil {
		return nil, false
	}
	var minor int
	if raw, ok := top["schema_minor"]; !ok || json.Unmarshal(raw, &minor) != nil || minor <= SchemaMinor {
		return nil, false
	}
	var unknown []string
	for k := range top {
		if knownFields[k] {
			continue
		}
		if !reMinorField.MatchString(k) {
			return nil, false
		}
		unknown = append(unknown, k)
	}
	if len(unknown) == 0 { // the unknown field was nested
		return nil, false
	}
	slices.Sort(unknown)
	return unknown, true
}

// knownFields are the top-level fields of this version, from Event's tags.
var knownFields = func() map[string]bool {
	m := map[string]bool{}
	t := reflect.TypeOf(Event{})
	for i := 0; i < t.NumField(); i++ {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); name != "" && name != "-" {
			m[name] = true
		}
	}
	return m
}()

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
	case "latency_ms", "seq", "schema_version", "schema_minor":
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
	typeSet = func() map[Type]bool {
		m := map[Type]bool{}
		for _, t := range Types {
			m[t] = true
		}
		return m
	}()
	needsText  = map[Type]bool{MessageReceived: true, MessageSent: true, ComplaintReceived: true}
	reMediaURL = regexp.MustCompile(`^https?://[^\t\n\v\f\r ]+$`)
	reMIMEType = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*( *;[ -~]*)?$`)
)

// AttachmentKinds are the kinds of media a message can carry. A voice note
// is audio; a document of any other type is file.
var AttachmentKinds = []string{"image", "audio", "video", "file", "sticker"}

// MaxAttachments bounds payload.attachments (Telegram's album limit).
const MaxAttachments = 10

// Blank reports whether s has no character other than white space: such a
// text says nothing, and a message.* or complaint event needs either a
// non-blank text or an attachment.
func Blank(s string) bool {
	for _, r := range s {
		if !isBlankRune(r) {
			return false
		}
	}
	return true
}

type checker struct{ errs []FieldError }

func (c *checker) add(field, format string, args ...any) {
	c.errs = append(c.errs, FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
}

// str checks a string field: required or not, length in characters, pattern.
func (c *checker) str(field, v string, required bool, min, max int, match func(string) bool, what string) {
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
	case match != nil && !match(v):
		c.add(field, "must be %s, got %q", what, v)
	}
}

// Limits of pii_masked: the paths of a payload's keys, which may be any
// strings.
const (
	MaxMaskedFields = 1024
	MaxMaskedPath   = 512
)

// Validate checks every rule of schema v1 and returns all broken ones.
func (e *Event) Validate() error { return e.validate(-1) }

// validate is Validate; payloadLen ≥ 0 is the length of the payload as
// it was read, which spares encoding the payload again to measure it when
// it cannot reach the limit (see validatePayload).
func (e *Event) validate(payloadLen int) error {
	var c checker
	c.str("event_id", e.EventID, true, 1, 128, matchEventID, "letters, digits and . _ : -")
	if e.Timestamp == "" {
		c.add("timestamp", "is required")
	} else if !matchRFC3339(e.Timestamp) {
		c.add("timestamp", "must be RFC 3339 with a UTC offset (e.g. 2026-11-23T14:05:09.120+03:00), got %q", e.Timestamp)
	} else if _, err := time.Parse(time.RFC3339Nano, e.Timestamp); err != nil {
		c.add("timestamp", "is not a real date and time: %q", e.Timestamp)
	}
	c.str("tenant", e.Tenant, true, 1, 63, matchTenant, "lower-case letters, digits and -, starting with a letter or digit")
	if e.Channel == "" {
		c.add("channel", "is required")
	} else if !slices.Contains(Channels, e.Channel) {
		c.add("channel", "must be one of %s, got %q", strings.Join(Channels, ", "), e.Channel)
	}
	c.str("session_id", e.SessionID, true, 1, 128, nil, "")
	c.str("user_id", e.UserID, false, 1, 128, nil, "")
	c.str("user_phone", e.UserPhone, false, 1, 16, matchPhone, "an E.164 number such as +79161234567")
	c.str("user_phone_sealed", e.UserPhoneSealed, false, 1, 256, matchSealed, "<key id>:<base64url>, as the collector seals a number")
	if e.UserPhone != "" && e.UserPhoneSealed != "" {
		c.add("user_phone_sealed", "replaces user_phone; an event carries one or the other")
	}
	if len(e.PIIMasked) > MaxMaskedFields {
		c.add("pii_masked", "must list at most %d fields, got %d", MaxMaskedFields, len(e.PIIMasked))
	}
	for i, f := range e.PIIMasked {
		c.length(fmt.Sprintf("pii_masked[%d]", i), f, 1, MaxMaskedPath)
	}
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
	c.str("crm_id", e.CRMID, false, 1, 20, matchCRMID, "a Bitrix24 id of digits")
	if e.Scenario != nil {
		c.str("scenario.from", e.Scenario.From, false, 0, 64, nil, "")
		c.str("scenario.to", e.Scenario.To, true, 1, 64, nil, "")
	}
	c.str("outcome", e.Outcome, false, 1, 64, nil, "")
	if e.LatencyMS != nil && (*e.LatencyMS < 0 || *e.LatencyMS > 3600000) {
		c.add("latency_ms", "must be between 0 and 3600000, got %d", *e.LatencyMS)
	}
	if e.Seq != nil && (*e.Seq < 1 || *e.Seq > 1<<40) {
		c.add("seq", "must be between 1 and 1099511627776, got %d", *e.Seq)
	}
	if e.SchemaMinor != nil && (*e.SchemaMinor < 0 || *e.SchemaMinor > 1000) {
		c.add("schema_minor", "must be between 0 and 1000, got %d", *e.SchemaMinor)
	}
	if e.SchemaVersion != SchemaVersion {
		if e.SchemaVersion == 0 {
			c.add("schema_version", "is required (1)")
		} else {
			c.add("schema_version", "must be 1, got %d", e.SchemaVersion)
		}
	}
	e.validatePayload(&c, payloadLen)
	e.validateByType(&c)
	if len(c.errs) > 0 {
		return &ValidationError{Kind: KindSchema, Fields: c.errs}
	}
	return nil
}

// maxEncodedGrowth bounds how much longer encoding/json writes a decoded
// payload than it was read: a character grows at most to a 6-byte \u
// escape ("<" → \u003c), a number at most ≈ 5× ("1e20" → 21 digits);
// white space only shrinks.
const maxEncodedGrowth = 8

func (e *Event) validatePayload(c *checker, readLen int) {
	if e.Payload == nil {
		return
	}
	if readLen >= 0 && readLen*maxEncodedGrowth <= MaxPayloadBytes {
		// Decoded from readLen bytes of JSON, it encodes within the limit
		// (and, decoded, it encodes without error).
	} else if b, err := json.Marshal(e.Payload); err != nil {
		c.add("payload", "cannot be encoded: %v", err)
	} else if len(b) > MaxPayloadBytes {
		c.add("payload", "is %d bytes, the limit is %d", len(b), MaxPayloadBytes)
	}
	for _, k := range []struct {
		name     string
		min, max int
	}{{"text", 0, 4096}, {"appointment_id", 1, 128}, {"error", 1, 4096}} {
		// A key present with null is a wrong type, as the JSON Schema says.
		v, ok := e.Payload[k.name]
		if !ok {
			continue
		}
		s, isStr := v.(string)
		if !isStr {
			c.add("payload."+k.name, "must be a string, got %s", JSONType(v))
			continue
		}
		c.length("payload."+k.name, s, k.min, k.max)
	}
	if v, ok := e.Payload["attachments"]; ok {
		validateAttachments(c, v)
	}
}

// length checks a string's length in characters; min 1 reads "not empty".
func (c *checker) length(field, s string, min, max int) {
	if n := utf8.RuneCountInString(s); n < min {
		c.add(field, "must not be empty")
	} else if n > max {
		c.add(field, "must be at most %d characters, got %d", max, n)
	}
}

// validateAttachments checks payload.attachments as the JSON Schema's
// $defs.attachment does.
func validateAttachments(c *checker, v any) {
	const field = "payload.attachments"
	if _, isSlice := v.([]any); !isSlice && v != nil {
		// An event built in Go may hold typed values; judge what its JSON says.
		if b, err := json.Marshal(v); err == nil {
			var decoded any
			if json.Unmarshal(b, &decoded) == nil {
				v = decoded
			}
		}
	}
	items, ok := v.([]any)
	if !ok {
		c.add(field, "must be an array, got %s", JSONType(v))
		return
	}
	switch {
	case len(items) == 0:
		c.add(field, "must not be empty: leave it out when there is no media")
	case len(items) > MaxAttachments:
		c.add(field, "must have at most %d items, got %d", MaxAttachments, len(items))
	}
	for i, it := range items {
		f := fmt.Sprintf("%s[%d]", field, i)
		m, ok := it.(map[string]any)
		if !ok {
			c.add(f, "must be an object, got %s", JSONType(it))
			continue
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if !slices.Contains([]string{"kind", "url", "id", "mime_type", "caption"}, k) {
				c.add(f+"."+k, "unknown field")
			}
		}
		str := func(k string) (string, bool) {
			v, ok := m[k]
			if !ok {
				return "", false
			}
			s, isStr := v.(string)
			if !isStr {
				c.add(f+"."+k, "must be a string, got %s", JSONType(v))
				return "", false
			}
			return s, true
		}
		if kind, ok := m["kind"]; !ok {
			c.add(f+".kind", "is required")
		} else if s, isStr := kind.(string); !isStr || !slices.Contains(AttachmentKinds, s) {
			c.add(f+".kind", "must be one of %s, got %s", strings.Join(AttachmentKinds, ", "), jsonValue(kind))
		}
		_, hasURL := m["url"]
		_, hasID := m["id"]
		if !hasURL && !hasID {
			c.add(f, "needs url or id: where the media can be fetched")
		}
		if s, ok := str("url"); ok {
			if n := utf8.RuneCountInString(s); n > 2048 {
				c.add(f+".url", "must be at most 2048 characters, got %d", n)
			} else if !reMediaURL.MatchString(s) {
				c.add(f+".url", "must be an http(s) URL without spaces, got %q", s)
			}
		}
		if s, ok := str("id"); ok {
			c.length(f+".id", s, 1, 256)
		}
		if s, ok := str("mime_type"); ok {
			if n := utf8.RuneCountInString(s); n > 255 {
				c.add(f+".mime_type", "must be at most 255 characters, got %d", n)
			} else if !reMIMEType.MatchString(s) {
				c.add(f+".mime_type", "must be a MIME type such as image/jpeg or audio/ogg; codecs=opus, got %q", s)
			}
		}
		if s, ok := str("caption"); ok {
			c.length(f+".caption", s, 1, 1024)
		}
	}
}

// jsonValue renders a value for an error message: strings quoted, other
// values by their JSON type.
func jsonValue(v any) string {
	if s, ok := v.(string); ok {
		return fmt.Sprintf("%q", s)
	}
	return JSONType(v)
}

// validateByType enforces what each event type needs (docs/events.md).
func (e *Event) validateByType(c *checker) {
	has := func(key string) bool { _, ok := e.Payload[key]; return ok }
	// A message says something: non-blank text, or media (a photo, a voice
	// note, a sticker) with or without text.
	if needsText[e.Type] && !has("attachments") {
		if !has("text") {
			c.add("payload.text", "is required for %s without payload.attachments", e.Type)
		} else if s, ok := e.Payload["text"].(string); ok && Blank(s) {
			c.add("payload.text", "must not be empty or only white space for %s without payload.attachments", e.Type)
		}
	}
	switch {
	case e.Type == MessageSent && e.LatencyMS == nil:
		c.add("latency_ms", "is required for %s", e.Type)
	case e.Type == ScenarioTransition && e.Scenario == nil:
		c.add("scenario", "is required for %s", e.Type)
	case e.Type == LeadCreated && e.UserPhone == "" && e.UserPhoneSealed == "":
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

// JSONType says what a decoded JSON value is, for error messages ("a
// string", "an object", "null").
func JSONType(v any) string {
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
