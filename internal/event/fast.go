package event

import (
	"encoding/json"
	"strconv"
)

// The fast path. Nearly every line a collector reads is a plain, valid
// event: one object of this version's fields, written by a JSON encoder.
// fastDecode decodes exactly those with a hand-written scanner (no
// reflection, no json.Decoder per line) into the Event encoding/json would
// build from them. Anything it is not sure of — an unknown, escaped,
// repeated or differently cased key, a null, a wrong type, a number
// strconv refuses, bad syntax, trailing data — makes it give up, and the
// strict decoder (parseStrict) runs on the line as before, so every
// rejection keeps its exact error text and kind.

// field bits, to refuse a repeated key (encoding/json merges repeated
// objects; the strict path decides what that means).
const (
	fEventID = 1 << iota
	fTimestamp
	fTenant
	fChannel
	fSessionID
	fUserID
	fUserPhone
	fType
	fLevel
	fIntent
	fConfidence
	fCRMID
	fScenario
	fPayload
	fOutcome
	fLatency
	fSeq
	fSealed
	fMasked
	fVersion
	fMinor
)

// maxFastDepth bounds nesting inside payload on the fast path; deeper
// input goes to the strict decoder (which has its own limit).
const maxFastDepth = 64

var (
	typeByName = func() map[string]Type {
		m := map[string]Type{}
		for _, t := range Types {
			m[string(t)] = t
		}
		return m
	}()
	channelByName = func() map[string]string {
		m := map[string]string{}
		for _, c := range Channels {
			m[c] = c
		}
		return m
	}()
	levelByName = func() map[string]string {
		m := map[string]string{}
		for _, l := range Levels {
			m[l] = l
		}
		return m
	}()
)

type fastScanner struct {
	b []byte
	i int
}

// fastDecode returns the event encoding/json would decode from line and
// the byte length of the payload object as written (0 without one), or
// ok false when the line is anything but a plain event.
func fastDecode(line []byte) (e Event, payloadLen int, ok bool) {
	s := fastScanner{b: line}
	s.ws()
	if !s.eat('{') {
		return e, 0, false
	}
	var seen uint32
	s.ws()
	if s.eat('}') {
		return e, 0, s.end()
	}
	for {
		s.ws()
		key, ok := s.rawKey()
		if !ok {
			return e, 0, false
		}
		s.ws()
		if !s.eat(':') {
			return e, 0, false
		}
		s.ws()
		var bit uint32
		switch string(key) {
		case "event_id":
			bit = fEventID
			e.EventID, ok = s.str()
		case "timestamp":
			bit = fTimestamp
			e.Timestamp, ok = s.str()
		case "tenant":
			bit = fTenant
			e.Tenant, ok = s.str()
		case "channel":
			bit = fChannel
			e.Channel, ok = s.known(channelByName)
		case "session_id":
			bit = fSessionID
			e.SessionID, ok = s.str()
		case "user_id":
			bit = fUserID
			e.UserID, ok = s.str()
		case "user_phone":
			bit = fUserPhone
			e.UserPhone, ok = s.str()
		case "event_type":
			bit = fType
			var raw []byte
			if raw, ok = s.plainStr(); ok {
				if t, known := typeByName[string(raw)]; known {
					e.Type = t
				} else {
					e.Type = Type(raw)
				}
			}
		case "level":
			bit = fLevel
			e.Level, ok = s.known(levelByName)
		case "intent":
			bit = fIntent
			e.Intent, ok = s.str()
		case "confidence":
			bit = fConfidence
			var f float64
			if f, ok = s.float(); ok {
				e.Confidence = &f
			}
		case "crm_id":
			bit = fCRMID
			e.CRMID, ok = s.str()
		case "scenario":
			bit = fScenario
			e.Scenario, ok = s.scenario()
		case "payload":
			bit = fPayload
			start := s.i
			var m map[string]any
			if m, ok = s.object(1); ok {
				e.Payload, payloadLen = m, s.i-start
			}
		case "outcome":
			bit = fOutcome
			e.Outcome, ok = s.str()
		case "latency_ms":
			bit = fLatency
			var n int64
			if n, ok = s.int(); ok {
				e.LatencyMS = &n
			}
		case "seq":
			bit = fSeq
			var n int64
			if n, ok = s.int(); ok {
				e.Seq = &n
			}
		case "user_phone_sealed":
			bit = fSealed
			e.UserPhoneSealed, ok = s.str()
		case "pii_masked":
			bit = fMasked
			e.PIIMasked, ok = s.strings()
		case "schema_version":
			bit = fVersion
			var n int64
			if n, ok = s.int(); ok {
				e.SchemaVersion = int(n)
			}
		case "schema_minor":
			bit = fMinor
			var n int64
			if n, ok = s.int(); ok {
				v := int(n)
				e.SchemaMinor = &v
			}
		default:
			return e, 0, false
		}
		if !ok || seen&bit != 0 {
			return e, 0, false
		}
		seen |= bit
		s.ws()
		if s.eat(',') {
			continue
		}
		if s.eat('}') {
			return e, payloadLen, s.end()
		}
		return e, 0, false
	}
}

func (s *fastScanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *fastScanner) eat(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// end: only white space may follow the event.
func (s *fastScanner) end() bool {
	s.ws()
	return s.i == len(s.b)
}

// span finds the string starting at s.i: its raw content and whether it
// holds an escape. It refuses control characters, as JSON does.
func (s *fastScanner) span() (raw []byte, escaped, ok bool) {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return nil, false, false
	}
	start := s.i + 1
	for j := start; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '"':
			s.i = j + 1
			return s.b[start:j], escaped, true
		case c == '\\':
			escaped = true
			j++ // the escaped character, which may be a quote
		case c < 0x20:
			return nil, false, false
		}
	}
	return nil, false, false
}

// rawKey is an object key without escapes (an escaped key goes strict).
func (s *fastScanner) rawKey() ([]byte, bool) {
	raw, escaped, ok := s.span()
	return raw, ok && !escaped
}

// plainStr is a string value without escapes, as bytes of the line.
func (s *fastScanner) plainStr() ([]byte, bool) {
	raw, escaped, ok := s.span()
	return raw, ok && !escaped
}

// str is a string value; escapes are decoded by encoding/json itself, so
// they mean exactly what they mean on the strict path.
func (s *fastScanner) str() (string, bool) {
	start := s.i
	raw, escaped, ok := s.span()
	if !ok {
		return "", false
	}
	if !escaped {
		return string(raw), true
	}
	var v string
	if json.Unmarshal(s.b[start:s.i], &v) != nil {
		return "", false
	}
	return v, true
}

// known is a string value that is usually one of a few: those are not
// allocated per line.
func (s *fastScanner) known(names map[string]string) (string, bool) {
	start := s.i
	raw, escaped, ok := s.span()
	if ok && !escaped {
		if v, hit := names[string(raw)]; hit {
			return v, true
		}
	}
	s.i = start
	return s.str()
}

// number finds a JSON number at s.i; isInt when it has neither fraction
// nor exponent.
func (s *fastScanner) number() (lit []byte, isInt, ok bool) {
	b, start, j := s.b, s.i, s.i
	digits := func() bool {
		k := j
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		return j > k
	}
	if j < len(b) && b[j] == '-' {
		j++
	}
	if j < len(b) && b[j] == '0' {
		j++
	} else if !digits() {
		return nil, false, false
	}
	isInt = true
	if j < len(b) && b[j] == '.' {
		j++
		isInt = false
		if !digits() {
			return nil, false, false
		}
	}
	if j < len(b) && (b[j] == 'e' || b[j] == 'E') {
		j++
		isInt = false
		if j < len(b) && (b[j] == '+' || b[j] == '-') {
			j++
		}
		if !digits() {
			return nil, false, false
		}
	}
	s.i = j
	return b[start:j], isInt, true
}

// float is what encoding/json stores in a float64 (or an interface).
func (s *fastScanner) float() (float64, bool) {
	lit, _, ok := s.number()
	if !ok {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(lit), 64)
	return f, err == nil
}

// int is what encoding/json stores in an int or int64: a fraction, an
// exponent or an overflow is its error, so strict.
func (s *fastScanner) int() (int64, bool) {
	lit, isInt, ok := s.number()
	if !ok || !isInt {
		return 0, false
	}
	n, err := strconv.ParseInt(string(lit), 10, 64)
	return n, err == nil
}

func (s *fastScanner) scenario() (*Scenario, bool) {
	if !s.eat('{') {
		return nil, false
	}
	sc := &Scenario{}
	var from, to bool
	s.ws()
	if s.eat('}') {
		return sc, true
	}
	for {
		s.ws()
		key, ok := s.rawKey()
		if !ok {
			return nil, false
		}
		s.ws()
		if !s.eat(':') {
			return nil, false
		}
		s.ws()
		switch string(key) {
		case "from":
			if from {
				return nil, false
			}
			from = true
			sc.From, ok = s.str()
		case "to":
			if to {
				return nil, false
			}
			to = true
			sc.To, ok = s.str()
		default:
			return nil, false
		}
		if !ok {
			return nil, false
		}
		s.ws()
		if s.eat(',') {
			continue
		}
		if s.eat('}') {
			return sc, true
		}
		return nil, false
	}
}

func (s *fastScanner) strings() ([]string, bool) {
	if !s.eat('[') {
		return nil, false
	}
	out := []string{}
	s.ws()
	if s.eat(']') {
		return out, true
	}
	for {
		s.ws()
		v, ok := s.str()
		if !ok {
			return nil, false
		}
		out = append(out, v)
		s.ws()
		if s.eat(',') {
			continue
		}
		if s.eat(']') {
			return out, true
		}
		return nil, false
	}
}

// object decodes an object into map[string]any as encoding/json does
// (a repeated key: the last one wins, as there).
func (s *fastScanner) object(depth int) (map[string]any, bool) {
	if depth > maxFastDepth || !s.eat('{') {
		return nil, false
	}
	m := map[string]any{}
	s.ws()
	if s.eat('}') {
		return m, true
	}
	for {
		s.ws()
		key, ok := s.str()
		if !ok {
			return nil, false
		}
		s.ws()
		if !s.eat(':') {
			return nil, false
		}
		s.ws()
		v, ok := s.value(depth)
		if !ok {
			return nil, false
		}
		m[key] = v
		s.ws()
		if s.eat(',') {
			continue
		}
		if s.eat('}') {
			return m, true
		}
		return nil, false
	}
}

func (s *fastScanner) array(depth int) ([]any, bool) {
	if depth > maxFastDepth || !s.eat('[') {
		return nil, false
	}
	out := []any{}
	s.ws()
	if s.eat(']') {
		return out, true
	}
	for {
		s.ws()
		v, ok := s.value(depth)
		if !ok {
			return nil, false
		}
		out = append(out, v)
		s.ws()
		if s.eat(',') {
			continue
		}
		if s.eat(']') {
			return out, true
		}
		return nil, false
	}
}

// value is any JSON value as encoding/json decodes it into an interface.
func (s *fastScanner) value(depth int) (any, bool) {
	if s.i >= len(s.b) {
		return nil, false
	}
	switch s.b[s.i] {
	case '"':
		return s.str()
	case '{':
		return s.object(depth + 1)
	case '[':
		return s.array(depth + 1)
	case 't':
		return true, s.literal("true")
	case 'f':
		return false, s.literal("false")
	case 'n':
		return nil, s.literal("null")
	}
	return s.float()
}

func (s *fastScanner) literal(word string) bool {
	if len(s.b)-s.i >= len(word) && string(s.b[s.i:s.i+len(word)]) == word {
		s.i += len(word)
		return true
	}
	return false
}
