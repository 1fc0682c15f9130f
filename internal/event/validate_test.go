package event

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// base is a valid message.received event as a generic map, so each case can
// break exactly one thing.
func base() map[string]any {
	return map[string]any{
		"event_id":       "demo-0001",
		"timestamp":      "2026-11-23T14:05:09.120+03:00",
		"tenant":         "salon-aurora",
		"channel":        "whatsapp",
		"session_id":     "s-42",
		"user_id":        "wa-79161234567",
		"user_phone":     "+79161234567",
		"event_type":     "message.received",
		"level":          "info",
		"intent":         "BookAppointment",
		"confidence":     0.91,
		"payload":        map[string]any{"text": "I'd like a haircut on Friday"},
		"schema_version": 1,
	}
}

func with(mut func(m map[string]any)) []byte {
	m := base()
	mut(m)
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

// voiceNote is a WhatsApp voice note as its Cloud API describes it.
func voiceNote() map[string]any {
	return map[string]any{"kind": "audio", "id": "1037543291543636", "mime_type": "audio/ogg; codecs=opus"}
}

func repeatAttachment(n int) []any {
	out := make([]any, n)
	for i := range out {
		out[i] = map[string]any{"kind": "image", "id": fmt.Sprintf("photo-%d", i)}
	}
	return out
}

type validationCase struct {
	name string
	line []byte
	kind Kind   // "" means valid
	want string // exact error text
	// schemaAgrees is false where the JSON Schema cannot express the rule
	// (bytes rather than characters, invalid UTF-8 before parsing).
	schemaAgrees bool
}

func validationCases() []validationCase {
	long := strings.Repeat("x", 5000)
	cases := []validationCase{
		{name: "valid message.received", line: with(func(map[string]any) {}), schemaAgrees: true},
		{name: "valid message.sent", line: with(func(m map[string]any) {
			m["event_type"] = "message.sent"
			m["latency_ms"] = 840
			delete(m, "confidence")
			delete(m, "intent")
		}), schemaAgrees: true},
		{name: "valid timestamp in UTC with Z", line: with(func(m map[string]any) { m["timestamp"] = "2026-11-23T11:05:09Z" }), schemaAgrees: true},
		{name: "valid scenario.transition from the start", line: with(func(m map[string]any) {
			m["event_type"] = "scenario.transition"
			m["scenario"] = map[string]any{"from": "", "to": "FindProvider"}
		}), schemaAgrees: true},
		{name: "valid appointment.confirmed", line: with(func(m map[string]any) {
			m["event_type"] = "appointment.confirmed"
			m["payload"] = map[string]any{"appointment_id": "appt-1", "service": "haircut"}
			m["crm_id"] = "4711"
		}), schemaAgrees: true},
		{name: "valid error event", line: with(func(m map[string]any) {
			m["event_type"] = "error"
			m["level"] = "error"
			m["payload"] = map[string]any{"error": "calendar API timeout"}
		}), schemaAgrees: true},
		{name: "valid with extras in payload", line: with(func(m map[string]any) {
			m["payload"] = map[string]any{"text": "hi", "lang": "ru", "buttons": []any{"Friday", "Saturday"}}
		}), schemaAgrees: true},
		{name: "valid voice note without text", line: with(func(m map[string]any) {
			m["payload"] = map[string]any{"attachments": []any{voiceNote()}}
		}), schemaAgrees: true},
		{name: "valid sticker with empty text", line: with(func(m map[string]any) {
			m["payload"] = map[string]any{"text": "", "attachments": []any{map[string]any{"kind": "sticker", "id": "CAACAgIAAxkBAAE"}}}
		}), schemaAgrees: true},
		{name: "valid assistant photo with caption and url", line: with(func(m map[string]any) {
			m["event_type"] = "message.sent"
			m["latency_ms"] = 1200
			m["payload"] = map[string]any{"attachments": []any{map[string]any{
				"kind": "image", "url": "https://cdn.example.com/price-list.jpg", "mime_type": "image/jpeg", "caption": "Наш прайс 💇",
			}}}
		}), schemaAgrees: true},
		{name: "valid complaint as a video with text", line: with(func(m map[string]any) {
			m["event_type"] = "complaint.received"
			m["payload"] = map[string]any{"text": "look at this", "attachments": []any{map[string]any{"kind": "video", "id": "v1", "mime_type": "video/mp4"}}}
		}), schemaAgrees: true},
		{name: "valid document on an appointment event", line: with(func(m map[string]any) {
			m["event_type"] = "appointment.confirmed"
			m["payload"] = map[string]any{"appointment_id": "appt-1", "attachments": []any{map[string]any{"kind": "file", "id": "d1", "mime_type": "application/pdf"}}}
		}), schemaAgrees: true},
		{name: "valid text with no-break and ideographic spaces around a word", line: with(func(m map[string]any) {
			m["payload"] = map[string]any{"text": "\u00a0да\u3000"}
		}), schemaAgrees: true},
		{name: "valid contact.requested with empty text", line: with(func(m map[string]any) {
			m["event_type"] = "contact.requested"
			m["payload"] = map[string]any{"text": ""}
		}), schemaAgrees: true},
		{name: "valid ten attachments", line: with(func(m map[string]any) {
			m["payload"] = map[string]any{"attachments": repeatAttachment(10)}
		}), schemaAgrees: true},

		{name: "not JSON", line: []byte(`{"event_id": "x",`), kind: KindInvalidJSON,
			want: "invalid JSON: unexpected end of input"},
		{name: "garbage", line: []byte(`hello world`), kind: KindInvalidJSON,
			want: "invalid JSON at byte 1: invalid character 'h' looking for beginning of value"},
		{name: "array instead of object", line: []byte(`[1,2]`), kind: KindInvalidJSON,
			want: "invalid JSON: an event must be an object, got array"},
		{name: "two objects on one line", line: append(with(func(map[string]any) {}), []byte(` {}`)...), kind: KindInvalidJSON,
			want: "invalid JSON: unexpected data after the event object"},
		{name: "invalid UTF-8", line: bytes.Replace(with(func(map[string]any) {}), []byte("haircut"), []byte("hair\xffcut"), 1), kind: KindInvalidUTF8,
			want: "invalid UTF-8 at byte "},
		{name: "unknown field", line: with(func(m map[string]any) { m["sesion_id"] = "typo" }), kind: KindSchema,
			want: "sesion_id: unknown field", schemaAgrees: true},
		// Schema evolution (docs/schema-evolution.md): a newer minor's
		// additive fields are tolerated; v1 without a newer minor stays strict.
		{name: "valid previous minor (no seq, no schema_minor)", line: with(func(m map[string]any) {}), schemaAgrees: true},
		{name: "valid current minor with seq", line: with(func(m map[string]any) { m["seq"] = 3; m["schema_minor"] = 1 }), schemaAgrees: true},
		{name: "valid next minor with an additive field", line: with(func(m map[string]any) {
			m["schema_minor"] = 3
			m["sentiment"] = "positive"
		}), schemaAgrees: true},
		{name: "unknown field in the current minor", line: with(func(m map[string]any) {
			m["schema_minor"] = 2
			m["sentiment"] = "positive"
		}), kind: KindSchema, want: "sentiment: unknown field", schemaAgrees: true},
		{name: "next minor field not named like one", line: with(func(m map[string]any) {
			m["schema_minor"] = 3
			m["Sentiment"] = "positive"
		}), kind: KindSchema, want: "Sentiment: unknown field", schemaAgrees: true},
		{name: "next minor does not loosen scenario", line: with(func(m map[string]any) {
			m["schema_minor"] = 3
			m["event_type"] = "scenario.transition"
			m["scenario"] = map[string]any{"to": "x", "via": "y"}
		}), kind: KindSchema, want: "via: unknown field", schemaAgrees: true},
		// Minor 2: the collector's edge step (internal/pii Protect).
		{name: "valid minor 2 with a sealed number and pii_masked", line: with(func(m map[string]any) {
			m["schema_minor"] = 2
			m["event_type"] = "lead.created"
			delete(m, "user_phone")
			m["user_phone_sealed"] = "k2026:3q2-7wAbCdEfGhIjKlMnOpQrStUv"
			m["pii_masked"] = []string{"payload.text", "session_id"}
		}), schemaAgrees: true},
		{name: "sealed and raw number together", line: with(func(m map[string]any) {
			m["user_phone_sealed"] = "k2026:3q2-7wAbCdEfGhIjKlMnOpQrStUv"
		}), kind: KindSchema, want: "user_phone_sealed: replaces user_phone; an event carries one or the other", schemaAgrees: true},
		{name: "sealed number not sealed", line: with(func(m map[string]any) {
			delete(m, "user_phone")
			m["user_phone_sealed"] = "+79161234567"
		}), kind: KindSchema, want: `user_phone_sealed: must be <key id>:<base64url>, as the collector seals a number, got "+79161234567"`, schemaAgrees: true},
		{name: "pii_masked with an empty path", line: with(func(m map[string]any) { m["pii_masked"] = []string{"payload.Customer Note!", ""} }), kind: KindSchema,
			want: `pii_masked[1]: must not be empty`, schemaAgrees: true},
		{name: "schema_minor out of range", line: with(func(m map[string]any) { m["schema_minor"] = -1 }), kind: KindSchema,
			want: "schema_minor: must be between 0 and 1000, got -1", schemaAgrees: true},

		{name: "confidence above 1", line: with(func(m map[string]any) { m["confidence"] = 1.5 }), kind: KindSchema,
			want: "confidence: must be between 0 and 1, got 1.5", schemaAgrees: true},
		{name: "confidence below 0", line: with(func(m map[string]any) { m["confidence"] = -0.1 }), kind: KindSchema,
			want: "confidence: must be between 0 and 1, got -0.1", schemaAgrees: true},
		{name: "confidence as string", line: with(func(m map[string]any) { m["confidence"] = "high" }), kind: KindSchema,
			want: "confidence: must be a number, got a string", schemaAgrees: true},
		{name: "confidence without intent", line: with(func(m map[string]any) { delete(m, "intent") }), kind: KindSchema,
			want: "confidence: needs intent: a confidence says how sure the classifier is of an intent", schemaAgrees: true},
		{name: "latency as fraction", line: with(func(m map[string]any) { m["latency_ms"] = 12.5 }), kind: KindSchema,
			want: "latency_ms: must be an integer, got a non-integer number", schemaAgrees: true},
		{name: "negative latency", line: with(func(m map[string]any) { m["latency_ms"] = -3 }), kind: KindSchema,
			want: "latency_ms: must be between 0 and 3600000, got -3", schemaAgrees: true},
		{name: "session_id as number", line: with(func(m map[string]any) { m["session_id"] = 42 }), kind: KindSchema,
			want: "session_id: must be a string, got a number", schemaAgrees: true},
		{name: "payload as array", line: with(func(m map[string]any) { m["payload"] = []any{"hi"} }), kind: KindSchema,
			want: "payload: must be an object, got an array", schemaAgrees: true},
		{name: "payload.text as number", line: with(func(m map[string]any) { m["payload"] = map[string]any{"text": 5} }), kind: KindSchema,
			want: "payload.text: must be a string, got a number", schemaAgrees: true},
		{name: "schema_version 2", line: with(func(m map[string]any) { m["schema_version"] = 2 }), kind: KindSchema,
			want: "schema_version: must be 1, got 2", schemaAgrees: true},

		{name: "timestamp without offset", line: with(func(m map[string]any) { m["timestamp"] = "2026-11-23T14:05:09" }), kind: KindSchema,
			want: `timestamp: must be RFC 3339 with a UTC offset (e.g. 2026-11-23T14:05:09.120+03:00), got "2026-11-23T14:05:09"`, schemaAgrees: true},
		{name: "timestamp as date only", line: with(func(m map[string]any) { m["timestamp"] = "2026-11-23" }), kind: KindSchema,
			want: `timestamp: must be RFC 3339 with a UTC offset (e.g. 2026-11-23T14:05:09.120+03:00), got "2026-11-23"`, schemaAgrees: true},
		{name: "timestamp with space", line: with(func(m map[string]any) { m["timestamp"] = "2026-11-23 14:05:09+03:00" }), kind: KindSchema,
			want: `timestamp: must be RFC 3339 with a UTC offset (e.g. 2026-11-23T14:05:09.120+03:00), got "2026-11-23 14:05:09+03:00"`, schemaAgrees: true},
		{name: "timestamp 30 February", line: with(func(m map[string]any) { m["timestamp"] = "2026-02-30T10:00:00+03:00" }), kind: KindSchema,
			want: `timestamp: is not a real date and time: "2026-02-30T10:00:00+03:00"`, schemaAgrees: true},
		{name: "timestamp as unix number", line: with(func(m map[string]any) { m["timestamp"] = 1795000000 }), kind: KindSchema,
			want: "timestamp: must be a string, got a number", schemaAgrees: true},

		{name: "unknown channel", line: with(func(m map[string]any) { m["channel"] = "sms" }), kind: KindSchema,
			want: `channel: must be one of whatsapp, instagram, telegram, web, phone, got "sms"`, schemaAgrees: true},
		{name: "unknown event type", line: with(func(m map[string]any) { m["event_type"] = "appointment.booked" }), kind: KindSchema,
			want: `event_type: unknown event type "appointment.booked"`, schemaAgrees: true},
		{name: "unknown level", line: with(func(m map[string]any) { m["level"] = "debug" }), kind: KindSchema,
			want: `level: must be one of info, warning, error, got "debug"`, schemaAgrees: true},
		{name: "tenant with capitals", line: with(func(m map[string]any) { m["tenant"] = "Salon" }), kind: KindSchema,
			want: `tenant: must be lower-case letters, digits and -, starting with a letter or digit, got "Salon"`, schemaAgrees: true},
		{name: "phone not E.164", line: with(func(m map[string]any) { m["user_phone"] = "8 916 123-45-67" }), kind: KindSchema,
			want: `user_phone: must be an E.164 number such as +79161234567, got "8 916 123-45-67"`, schemaAgrees: true},
		{name: "crm_id not digits", line: with(func(m map[string]any) { m["crm_id"] = "L-12" }), kind: KindSchema,
			want: `crm_id: must be a Bitrix24 id of digits, got "L-12"`, schemaAgrees: true},
		{name: "event_id with slash", line: with(func(m map[string]any) { m["event_id"] = "a/b" }), kind: KindSchema,
			want: `event_id: must be letters, digits and . _ : -, got "a/b"`, schemaAgrees: true},

		{name: "message text too long", line: with(func(m map[string]any) { m["payload"] = map[string]any{"text": long} }), kind: KindSchema,
			want: "payload.text: must be at most 4096 characters, got 5000", schemaAgrees: true},
		{name: "oversized payload", line: with(func(m map[string]any) {
			extra := map[string]any{}
			for i := 0; i < 10; i++ {
				extra[string(rune('a'+i))] = long
			}
			m["payload"] = map[string]any{"text": "hi", "extra": extra}
		}), kind: KindSchema, want: "payload: is 50093 bytes, the limit is 32768"},
		{name: "oversized event", line: with(func(m map[string]any) {
			m["payload"] = map[string]any{"text": "hi", "blob": strings.Repeat("y", 70000)}
		}), kind: KindTooLarge, want: "event is 70333 bytes, the limit is 65536"},

		{name: "message.sent without latency", line: with(func(m map[string]any) { m["event_type"] = "message.sent" }), kind: KindSchema,
			want: "latency_ms: is required for message.sent", schemaAgrees: true},
		{name: "message.received without text", line: with(func(m map[string]any) { m["payload"] = map[string]any{"lang": "ru"} }), kind: KindSchema,
			want: "payload.text: is required for message.received without payload.attachments", schemaAgrees: true},
		{name: "complaint with empty text", line: with(func(m map[string]any) {
			m["event_type"] = "complaint.received"
			m["payload"] = map[string]any{"text": ""}
		}), kind: KindSchema, want: "payload.text: must not be empty or only white space for complaint.received without payload.attachments", schemaAgrees: true},
		{name: "message.sent with empty text", line: with(func(m map[string]any) {
			m["event_type"] = "message.sent"
			m["latency_ms"] = 5
			m["payload"] = map[string]any{"text": ""}
		}), kind: KindSchema, want: "payload.text: must not be empty or only white space for message.sent without payload.attachments", schemaAgrees: true},
		{name: "message with only white space", line: with(func(m map[string]any) {
			m["payload"] = map[string]any{"text": " \t\n\u00a0\u2003\u3000\ufeff"}
		}), kind: KindSchema, want: "payload.text: must not be empty or only white space for message.received without payload.attachments", schemaAgrees: true},
		{name: "message without payload", line: with(func(m map[string]any) { delete(m, "payload") }), kind: KindSchema,
			want: "payload.text: is required for message.received without payload.attachments", schemaAgrees: true},
		{name: "text null", line: with(func(m map[string]any) {
			m["event_type"] = "contact.requested"
			m["payload"] = map[string]any{"text": nil}
		}), kind: KindSchema, want: "payload.text: must be a string, got null", schemaAgrees: true},
		{name: "attachments empty", line: with(func(m map[string]any) {
			m["payload"] = map[string]any{"text": "", "attachments": []any{}}
		}), kind: KindSchema, want: "payload.attachments: must not be empty: leave it out when there is no media", schemaAgrees: true},
		{name: "attachments null", line: with(func(m map[string]any) {
			m["payload"] = map[string]any{"attachments": nil}
		}), kind: KindSchema, want: "payload.attachments: must be an array, got null", schemaAgrees: true},
		{name: "attachments as a string", line: with(func(m map[string]any) {
			m["payload"] = map[string]any{"text": "hi", "attachments": "a.jpg"}
		}), kind: KindSchema, want: "payload.attachments: must be an array, got a string", schemaAgrees: true},
		{name: "attachment as a string", line: with(func(m map[string]any) {
			m["payload"] = map[string]any{"text": "hi", "attachments": []any{"a.jpg"}}
		}), kind: KindSchema, want: "payload.attachments[0]: must be an object, got a string", schemaAgrees: true},
		{name: "eleven attachments", line: with(func(m map[string]any) {
			m["payload"] = map[string]any{"attachments": repeatAttachment(11)}
		}), kind: KindSchema, want: "payload.attachments: must have at most 10 items, got 11", schemaAgrees: true},
		{name: "attachment without kind", line: with(func(m map[string]any) {
			m["payload"] = map[string]any{"attachments": []any{map[string]any{"id": "m1"}}}
		}), kind: KindSchema, want: "payload.attachments[0].kind: is required", schemaAgrees: true},
		{name: "attachment of unknown kind", line: with(func(m map[string]any) {
			m["payload"] = map[string]any{"attachments": []any{map[string]any{"kind": "voice", "id": "m1"}}}
		}), kind: KindSchema, want: `payload.attachments[0].kind: must be one of image, audio, video, file, sticker, got "voice"`, schemaAgrees: true},
		{name: "attachment without url or id", line: with(func(m map[string]any) {
			m["payload"] = map[string]any{"attachments": []any{map[string]any{"kind": "image", "mime_type": "image/png"}}}
		}), kind: KindSchema, want: "payload.attachments[0]: needs url or id: where the media can be fetched", schemaAgrees: true},
		{name: "attachment url not http", line: with(func(m map[string]any) {
			m["payload"] = map[string]any{"attachments": []any{map[string]any{"kind": "image", "url": "file:///etc/passwd"}}}
		}), kind: KindSchema, want: `payload.attachments[0].url: must be an http(s) URL without spaces, got "file:///etc/passwd"`, schemaAgrees: true},
		{name: "attachment url with a space", line: with(func(m map[string]any) {
			m["payload"] = map[string]any{"attachments": []any{map[string]any{"kind": "image", "url": "https://x.example/a b.jpg"}}}
		}), kind: KindSchema, want: `payload.attachments[0].url: must be an http(s) URL without spaces, got "https://x.example/a b.jpg"`, schemaAgrees: true},
		{name: "attachment with empty id", line: with(func(m map[string]any) {
			m["payload"] = map[string]any{"attachments": []any{map[string]any{"kind": "audio", "id": ""}}}
		}), kind: KindSchema, want: "payload.attachments[0].id: must not be empty", schemaAgrees: true},
		{name: "attachment with a bad MIME type", line: with(func(m map[string]any) {
			m["payload"] = map[string]any{"attachments": []any{map[string]any{"kind": "audio", "id": "a", "mime_type": "ogg"}}}
		}), kind: KindSchema, want: `payload.attachments[0].mime_type: must be a MIME type such as image/jpeg or audio/ogg; codecs=opus, got "ogg"`, schemaAgrees: true},
		{name: "attachment with an empty caption", line: with(func(m map[string]any) {
			m["payload"] = map[string]any{"attachments": []any{map[string]any{"kind": "image", "id": "a", "caption": ""}}}
		}), kind: KindSchema, want: "payload.attachments[0].caption: must not be empty", schemaAgrees: true},
		{name: "attachment caption too long", line: with(func(m map[string]any) {
			m["payload"] = map[string]any{"attachments": []any{map[string]any{"kind": "image", "id": "a", "caption": strings.Repeat("я", 1025)}}}
		}), kind: KindSchema, want: "payload.attachments[0].caption: must be at most 1024 characters, got 1025", schemaAgrees: true},
		{name: "attachment id as number", line: with(func(m map[string]any) {
			m["payload"] = map[string]any{"attachments": []any{map[string]any{"kind": "image", "id": 7}}}
		}), kind: KindSchema, want: "payload.attachments[0].id: must be a string, got a number", schemaAgrees: true},
		{name: "attachment with an unknown field", line: with(func(m map[string]any) {
			m["payload"] = map[string]any{"attachments": []any{map[string]any{"kind": "image", "id": "a", "mime": "image/png"}}}
		}), kind: KindSchema, want: "payload.attachments[0].mime: unknown field", schemaAgrees: true},
		{name: "bad second attachment", line: with(func(m map[string]any) {
			m["payload"] = map[string]any{"attachments": []any{voiceNote(), map[string]any{"kind": "gif", "url": "https://x.example/a.gif"}}}
		}), kind: KindSchema, want: `payload.attachments[1].kind: must be one of image, audio, video, file, sticker, got "gif"`, schemaAgrees: true},
		{name: "scenario.transition without scenario", line: with(func(m map[string]any) { m["event_type"] = "scenario.transition" }), kind: KindSchema,
			want: "scenario: is required for scenario.transition", schemaAgrees: true},
		{name: "scenario without to", line: with(func(m map[string]any) {
			m["event_type"] = "scenario.transition"
			m["scenario"] = map[string]any{"from": "a"}
		}), kind: KindSchema, want: "scenario.to: is required", schemaAgrees: true},
		{name: "lead.created without phone", line: with(func(m map[string]any) {
			m["event_type"] = "lead.created"
			delete(m, "user_phone")
		}), kind: KindSchema, want: "user_phone: is required for lead.created: a lead is created when contact details are given", schemaAgrees: true},
		{name: "appointment without id", line: with(func(m map[string]any) { m["event_type"] = "appointment.no_show" }), kind: KindSchema,
			want: "payload.appointment_id: is required for appointment.no_show", schemaAgrees: true},
		{name: "error event at info level", line: with(func(m map[string]any) {
			m["event_type"] = "error"
			m["payload"] = map[string]any{"error": "boom"}
		}), kind: KindSchema, want: `level: must be error for an error event, got "info"`, schemaAgrees: true},
		{name: "error event without error text", line: with(func(m map[string]any) {
			m["event_type"] = "error"
			m["level"] = "error"
		}), kind: KindSchema, want: "payload.error: is required for error", schemaAgrees: true},
		{name: "several problems at once", line: with(func(m map[string]any) {
			m["channel"] = "fax"
			m["confidence"] = 2.0
			m["level"] = ""
		}), kind: KindSchema,
			want: `channel: must be one of whatsapp, instagram, telegram, web, phone, got "fax"; level: is required; confidence: must be between 0 and 1, got 2`, schemaAgrees: true},
	}
	for _, f := range []string{"event_id", "timestamp", "tenant", "channel", "session_id", "event_type", "level", "schema_version"} {
		want := f + ": is required"
		if f == "schema_version" {
			want += " (1)"
		}
		cases = append(cases, validationCase{
			name: "missing " + f, line: with(func(m map[string]any) { delete(m, f) }),
			kind: KindSchema, want: want, schemaAgrees: true,
		})
	}
	return cases
}

func TestParse(t *testing.T) {
	for _, tc := range validationCases() {
		t.Run(tc.name, func(t *testing.T) {
			e, err := Parse(tc.line)
			if tc.kind == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				if e.Tenant == "" || e.SchemaVersion != 1 {
					t.Fatalf("decoded event is incomplete: %+v", e)
				}
				return
			}
			if err == nil {
				t.Fatalf("want error %q, got a valid event", tc.want)
			}
			if got := KindOf(err); got != tc.kind {
				t.Errorf("kind = %q, want %q", got, tc.kind)
			}
			if tc.kind == KindInvalidUTF8 {
				if !strings.HasPrefix(err.Error(), tc.want) {
					t.Errorf("error = %q, want prefix %q", err, tc.want)
				}
				return
			}
			if err.Error() != tc.want {
				t.Errorf("error =\n  %q\nwant\n  %q", err, tc.want)
			}
		})
	}
}

// TestSchemaFileAgrees runs every case through the published JSON Schema
// with a standard validator: the file integrators read and the Go validator
// must accept and reject the same events.
func TestSchemaFileAgrees(t *testing.T) {
	sch := compileSchema(t)
	for _, tc := range validationCases() {
		if !tc.schemaAgrees {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(tc.line))
			if err != nil {
				if tc.kind == KindInvalidJSON {
					return
				}
				t.Fatalf("unmarshal: %v", err)
			}
			schemaErr := sch.Validate(inst)
			if (schemaErr == nil) != (tc.kind == "") {
				t.Errorf("schema file says valid=%v, Go validator says valid=%v (%s); schema: %v",
					schemaErr == nil, tc.kind == "", tc.want, schemaErr)
			}
		})
	}
}

// compileSchema compiles schema.v1.json with a standard validator that
// asserts formats, as an integrator would.
func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(SchemaJSON))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("schema.v1.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("schema.v1.json")
	if err != nil {
		t.Fatalf("compile schema.v1.json: %v", err)
	}
	return sch
}

// TestValidateTypedAttachments: an event built in Go may hold attachments
// as typed values rather than what encoding/json decodes; Validate judges
// them by their JSON, as the collector will.
func TestValidateTypedAttachments(t *testing.T) {
	type media struct {
		Kind string `json:"kind"`
		ID   string `json:"id,omitempty"`
	}
	lat := int64(10)
	e := Event{EventID: "e1", Timestamp: "2026-11-23T11:05:09Z", Tenant: "t", Channel: "web", SessionID: "s",
		Type: MessageSent, Level: "info", LatencyMS: &lat, SchemaVersion: 1,
		Payload: map[string]any{"attachments": []media{{Kind: "image", ID: "p1"}}}}
	if err := e.Validate(); err != nil {
		t.Fatalf("typed attachments: %v", err)
	}
	e.Payload["attachments"] = []map[string]any{{"kind": "gif", "id": "p1"}}
	want := `payload.attachments[0].kind: must be one of image, audio, video, file, sticker, got "gif"`
	if err := e.Validate(); err == nil || err.Error() != want {
		t.Fatalf("typed bad attachment: got %v, want %s", err, want)
	}
}

func TestRoundTrip(t *testing.T) {
	line := with(func(m map[string]any) { m["latency_ms"] = 0 })
	e, err := Parse(line)
	if err != nil {
		t.Fatal(err)
	}
	out, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	e2, err := Parse(out)
	if err != nil {
		t.Fatalf("re-encoded event does not parse: %v\n%s", err, out)
	}
	if e2.LatencyMS == nil || *e2.LatencyMS != 0 {
		t.Errorf("latency_ms 0 was lost in the round trip: %s", out)
	}
	if string(e.Key()) != "salon-aurora/s-42" {
		t.Errorf("Key() = %q", e.Key())
	}
}

// TestNextMinorFieldsAreNamed: a tolerated field of a newer minor is
// named, not carried, and the JSON Schema's threshold is this version's
// minor + 1.
func TestNextMinorFieldsAreNamed(t *testing.T) {
	e, err := Parse(with(func(m map[string]any) {
		m["schema_minor"] = 3
		m["sentiment"] = "positive"
		m["channel_thread"] = "t-1"
	}))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(e.Unknown, ",") != "channel_thread,sentiment" || *e.SchemaMinor != 3 {
		t.Errorf("Unknown = %v", e.Unknown)
	}
	b, _ := e.Marshal()
	if strings.Contains(string(b), "sentiment") || !strings.Contains(string(b), `"schema_minor":3`) {
		t.Errorf("re-encoded: %s", b)
	}
	if !strings.Contains(string(SchemaJSON), fmt.Sprintf(`"schema_minor": {"minimum": %d}`, SchemaMinor+1)) {
		t.Error("schema.v1.json's tolerance threshold is not SchemaMinor+1")
	}
}
