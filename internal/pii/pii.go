// Package pii masks personal data before any sink sees it: phone numbers
// (in user_phone, user_id and free text) and e-mail addresses. A phone
// number is also kept as a keyed hash (HMAC-SHA256 with a secret from
// config) so an auditor can still find a customer by number without the
// number being stored.
package pii

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/assistlog/assistlog/internal/event"
)

// Masker masks and hashes. It is safe for concurrent use.
type Masker struct {
	secret []byte
	ring   *Ring // nil: Protect and Reveal are not available
}

// New returns a masker; the secret keys the phone hash and must be kept
// stable, or old hashes stop matching.
func New(secret string) (*Masker, error) {
	if len(secret) < 16 {
		return nil, errors.New("pii: hash secret must be at least 16 characters")
	}
	return &Masker{secret: []byte(secret)}, nil
}

// NewWithKeys is New with a key ring, for the edge step (Protect) and its
// reverse (Reveal).
func NewWithKeys(secret string, ring *Ring) (*Masker, error) {
	m, err := New(secret)
	if err != nil {
		return nil, err
	}
	if ring == nil {
		return nil, errors.New("pii: a key ring is required")
	}
	m.ring = ring
	return m, nil
}

// Ring is the masker's key ring (nil without one).
func (m *Masker) Ring() *Ring { return m.ring }

// phoneRe finds phone-like runs: an optional +, then 10 to 15 digits that
// may be separated by spaces, dashes, dots or parentheses.
var phoneRe = regexp.MustCompile(`\+?\(?\d(?:[\s\-.()]{0,2}\d){9,14}`)

// mayHavePhone is phoneRe's cheap necessary condition: it matches ten
// digits at least. Most texts have fewer, and the regexp took a tenth of
// the shipper's CPU (bench/NOTES.md).
func mayHavePhone(s string) bool {
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] >= '0' && s[i] <= '9' {
			if n++; n == 10 {
				return true
			}
		}
	}
	return false
}

// emailRe finds e-mail addresses.
var emailRe = regexp.MustCompile(`[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}`)

// Digits returns the digits of s.
func Digits(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Normalize turns a Russian-style number (+7…, 8…, 7…) or any E.164 number
// into +<digits>, the form hashed; "" if it has too few digits.
func Normalize(phone string) string {
	d := Digits(phone)
	if len(d) == 11 && d[0] == '8' && !strings.HasPrefix(strings.TrimSpace(phone), "+") {
		d = "7" + d[1:] // 8 916 … is the domestic form of +7 916 …
	}
	if len(d) < 10 || len(d) > 15 {
		return ""
	}
	return "+" + d
}

// HashPhone is the keyed hash of a number's normalized form.
func (m *Masker) HashPhone(phone string) string {
	n := Normalize(phone)
	if n == "" {
		return ""
	}
	mac := hmac.New(sha256.New, m.secret)
	mac.Write([]byte(n))
	return hex.EncodeToString(mac.Sum(nil))
}

// MaskPhone renders a number as "+7 9** ***-**-67": country code and the
// first digit of the operator code stay, so a person can still tell a
// mobile from a landline; the last two digits help match a call.
func MaskPhone(phone string) string {
	n := Normalize(phone)
	if n == "" {
		return strings.Repeat("*", len(phone))
	}
	d := n[1:]
	cc := 2 // most country codes; masking more is the safe side
	if d[0] == '7' || d[0] == '1' {
		cc = 1
	}
	national := d[cc:]
	masked := []byte(strings.Repeat("*", len(national)))
	masked[0] = national[0]
	copy(masked[len(masked)-2:], national[len(national)-2:])
	s := string(masked)
	if len(s) == 10 {
		return "+" + d[:cc] + " " + s[0:3] + " " + s[3:6] + "-" + s[6:8] + "-" + s[8:10]
	}
	return "+" + d[:cc] + " " + s
}

// maskDigitsInPlace replaces every digit but the last two of a match,
// keeping its separators, so "+7 (916) 123-45-67" → "+* (***) ***-**-67".
func maskDigitsInPlace(s string) string {
	b := []byte(s)
	keep := 2
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] >= '0' && b[i] <= '9' {
			if keep > 0 {
				keep--
				continue
			}
			b[i] = '*'
		}
	}
	return string(b)
}

func maskEmail(s string) string {
	at := strings.IndexByte(s, '@')
	if at <= 1 {
		return "*" + s[at:]
	}
	return s[:1] + strings.Repeat("*", at-1) + s[at:]
}

// MaskText masks phone numbers and e-mails inside free text and reports
// what kinds it found ("phone", "email").
func MaskText(s string) (string, []string) {
	var kinds []string
	if mayHavePhone(s) && phoneRe.MatchString(s) {
		s = phoneRe.ReplaceAllStringFunc(s, maskDigitsInPlace)
		kinds = append(kinds, "phone")
	}
	if strings.IndexByte(s, '@') >= 0 && emailRe.MatchString(s) {
		s = emailRe.ReplaceAllStringFunc(s, maskEmail)
		kinds = append(kinds, "email")
	}
	return s, kinds
}

// Masked is an event made safe for storage.
type Masked struct {
	Event *event.Event
	// PhoneHash is the keyed hash of user_phone ("" when there is none).
	PhoneHash string
	// Fields lists the fields that were masked, e.g. "user_phone",
	// "payload.text".
	Fields []string
}

// Apply returns a masked copy of e; e itself is not changed.
func (m *Masker) Apply(e *event.Event) Masked {
	c := *e
	var fields []string
	out := Masked{Event: &c}
	if c.UserPhone != "" {
		out.PhoneHash = m.HashPhone(c.UserPhone)
		c.UserPhone = MaskPhone(c.UserPhone)
		fields = append(fields, "user_phone")
	}
	m.maskIDs(&c, &fields)
	if c.Payload != nil {
		c.Payload = m.maskValue("payload", c.Payload, &fields).(map[string]any)
	}
	// What the edge masked before (Protect) is listed too; the sealed
	// number never reaches a sink.
	fields = append(fields, c.PIIMasked...)
	c.PIIMasked, c.UserPhoneSealed = nil, ""
	out.Fields = uniqueSorted(fields)
	return out
}

func uniqueSorted(fields []string) []string {
	sort.Strings(fields)
	out := fields[:0]
	for i, f := range fields {
		if i == 0 || f != fields[i-1] {
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// maskIDs replaces phone numbers inside session_id and user_id by the
// number's token (WhatsApp builds both from the customer's number,
// "whatsapp:79161234567") and masks e-mails and other numbers left in
// user_id. The token is keyed and derived from the normalized number, so
// the same customer keeps the same ids in every format and conversations
// still group; it has no digits, so masking again finds nothing.
func (m *Masker) maskIDs(c *event.Event, fields *[]string) {
	// On WhatsApp and the phone channel an id's digits are the number; on
	// the others (Telegram's chat ids, Instagram's page-scoped ids) only
	// what is written as a number is: with "+", or 11 digits from 7 or 8.
	every := c.Channel == "whatsapp" || c.Channel == "phone"
	if s, ok := m.tokenizePhones(c.SessionID, every); ok {
		c.SessionID = m.fit(c.SessionID, s)
		*fields = append(*fields, "session_id")
	}
	s, changed := m.tokenizePhones(c.UserID, every)
	if masked, kinds := MaskText(s); len(kinds) > 0 {
		s, changed = masked, true
	}
	if changed {
		c.UserID = m.fit(c.UserID, s)
		*fields = append(*fields, "user_id")
	}
}

// maxID is schema v1's limit of session_id and user_id.
const maxID = 128

// fit keeps a tokenized id within maxID: a token is longer than the
// number it replaces, so an id near the limit becomes one keyed token of
// the whole original id (stable too, though not shared with the number's
// other spellings).
func (m *Masker) fit(original, tokenized string) string {
	if len(tokenized) <= maxID {
		return tokenized
	}
	mac := hmac.New(sha256.New, m.secret)
	mac.Write([]byte("id\x00" + original))
	return "id-" + letters(hex.EncodeToString(mac.Sum(nil))[:24])
}

// tokenizePhones replaces phone-like runs of s by PhoneToken: every run
// when every is set, otherwise only those written as a phone number.
func (m *Masker) tokenizePhones(s string, every bool) (string, bool) {
	if !mayHavePhone(s) || !phoneRe.MatchString(s) {
		return s, false
	}
	changed := false
	out := phoneRe.ReplaceAllStringFunc(s, func(run string) string {
		d := Digits(run)
		if Normalize(run) == "" || !every && !strings.HasPrefix(run, "+") && !(len(d) == 11 && (d[0] == '7' || d[0] == '8')) {
			return run
		}
		changed = true
		return m.PhoneToken(run)
	})
	return out, changed
}

// PhoneToken is the id form of a number: "ph-" and 24 letters a–p (the
// first 96 bits of HashPhone), so an id that was a number stays one stable,
// digit-free id per customer.
func (m *Masker) PhoneToken(phone string) string {
	h := m.HashPhone(phone)
	if h == "" {
		return phone
	}
	return "ph-" + letters(h[:24])
}

// Purposes bound to sealed values.
const (
	PurposeUserPhone  = "assistlog/event/user_phone"
	PurposeCRMPhone   = "assistlog/crm-links/phone"
	PurposeDeadLetter = "assistlog/deadletter/raw"
)

// Protect is the edge step (the collector, and dlq replay): it returns a
// copy of e fit for the events topic. user_phone is replaced by
// user_phone_sealed (AES-GCM with the ring's current key: only a program
// holding the key, the shipper, reads it for the CRM lookup and the hash),
// numbers in ids become tokens, numbers and e-mails in the payload are
// masked, and pii_masked lists what was masked. An event protected already
// comes back the same. It needs NewWithKeys.
func (m *Masker) Protect(e *event.Event) *event.Event {
	c := *e
	var fields []string
	if c.UserPhone != "" {
		c.UserPhoneSealed = m.ring.SealString(PurposeUserPhone, c.UserPhone)
		c.UserPhone = ""
	}
	m.maskIDs(&c, &fields)
	if c.Payload != nil {
		c.Payload = m.maskValue("payload", c.Payload, &fields).(map[string]any)
	}
	c.PIIMasked = uniqueSorted(append(fields, c.PIIMasked...))
	// pii_masked says what was masked; it is informational, so a path past
	// the schema's limits (a payload key can be any string) is left out
	// rather than make the event invalid.
	kept := c.PIIMasked[:0]
	for _, f := range c.PIIMasked {
		if len(f) <= event.MaxMaskedPath && len(kept) < event.MaxMaskedFields {
			kept = append(kept, f)
		}
	}
	c.PIIMasked = kept
	if len(kept) == 0 {
		c.PIIMasked = nil
	}
	if c.UserPhoneSealed != "" || len(c.PIIMasked) > 0 {
		minor := event.SchemaMinor
		if c.SchemaMinor == nil || *c.SchemaMinor < minor {
			c.SchemaMinor = &minor // its fields are minor 2's
		}
	}
	return &c
}

// Reveal is the shipper's first step: a copy of e with user_phone opened
// from user_phone_sealed (for the CRM lookup and the keyed hash; Apply
// masks it again before any sink) and phone numbers in ids tokenized as
// Protect does, so an event written before the edge step existed gets the
// same ids as one written after. The error names the key a sealed number
// needs when this masker lacks it.
func (m *Masker) Reveal(e *event.Event) (*event.Event, error) {
	c := *e
	if c.UserPhoneSealed != "" {
		phone, err := m.ring.OpenString(PurposeUserPhone, c.UserPhoneSealed)
		if err != nil {
			return nil, fmt.Errorf("event %s: user_phone_sealed: %w", e.EventID, err)
		}
		c.UserPhone, c.UserPhoneSealed = phone, ""
	}
	var fields []string
	m.maskIDs(&c, &fields)
	c.PIIMasked = uniqueSorted(append(fields, c.PIIMasked...))
	return &c, nil
}

// references are payload fields that name a media object rather than say
// something: a channel's media id (WhatsApp's are 15+ digits, which read as
// a phone number) or its URL. Masked, the stored attachment could never be
// fetched again; the caption, which is text, is masked like any text.
var references = map[string]bool{
	"payload.attachments.id": true, "payload.attachments.url": true,
	"payload.attachments.kind": true, "payload.attachments.mime_type": true,
}

// wamidRe finds WhatsApp message ids: "wamid." and base64 of a record
// that holds the customer's number (wamid.HBgLNzkxNzQ1NjEyMzQV… is
// 79174561234), so a reader could decode the number from one.
var wamidRe = regexp.MustCompile(`wamid\.[A-Za-z0-9+/_=-]{8,}`)

// wamidToken is a message id's keyed, stable stand-in: a status still
// finds the message it is about, and no number can be decoded from it.
func (m *Masker) wamidToken(id string) string {
	mac := hmac.New(sha256.New, m.secret)
	mac.Write([]byte(id))
	return "wamid-h-" + letters(hex.EncodeToString(mac.Sum(nil))[:24])
}

// letters spells hex digits as a–p, so a token holds no digit run.
func letters(h string) string {
	b := []byte(h)
	for i, c := range b {
		if c <= '9' {
			b[i] = 'a' + (c - '0')
		} else {
			b[i] = 'k' + (c - 'a')
		}
	}
	return string(b)
}

// maskValue walks payload values, masking every string but references;
// maps and slices are copied so the original event is untouched.
func (m *Masker) maskValue(path string, v any, fields *[]string) any {
	switch x := v.(type) {
	case string:
		if references[path] {
			return x
		}
		changed := false
		if wamidRe.MatchString(x) {
			x, changed = wamidRe.ReplaceAllStringFunc(x, m.wamidToken), true
		}
		if s, kinds := MaskText(x); len(kinds) > 0 {
			x, changed = s, true
		}
		if changed {
			*fields = append(*fields, path)
		}
		return x
	case map[string]any:
		c := make(map[string]any, len(x))
		for k, val := range x {
			c[k] = m.maskValue(path+"."+k, val, fields)
		}
		return c
	case []any:
		c := make([]any, len(x))
		for i, val := range x {
			c[i] = m.maskValue(path, val, fields)
		}
		return c
	}
	return v
}
