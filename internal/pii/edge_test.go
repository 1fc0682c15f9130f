package pii

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/assistlog/assistlog/internal/event"
)

func testRing(t *testing.T, current string, ids ...string) *Ring {
	t.Helper()
	var c KeysConfig
	for _, id := range ids {
		c.Keys = append(c.Keys, KeyConfig{ID: id, Key: "key-material-of-" + id + "-0123456789abcdef0123456789"})
	}
	c.CurrentKey = current
	r, err := NewRing(c)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestRingRotation: a value sealed with the old key opens after the new
// key became current; one sealed with a key the ring lacks names the key;
// a value sealed for one purpose does not open as another.
func TestRingRotation(t *testing.T) {
	old := testRing(t, "k1", "k1")
	sealed := old.SealString(PurposeUserPhone, "+79161234567")
	if !strings.HasPrefix(sealed, "k1:") || strings.Contains(sealed, "9161234567") {
		t.Fatalf("sealed %q", sealed)
	}
	rotated := testRing(t, "k2", "k1", "k2")
	if got, err := rotated.OpenString(PurposeUserPhone, sealed); err != nil || got != "+79161234567" {
		t.Errorf("old value after rotation: %q, %v", got, err)
	}
	if s := rotated.SealString(PurposeUserPhone, "x"); KeyIDOf(s) != "k2" {
		t.Errorf("rotated ring seals with %q", KeyIDOf(s))
	}
	onlyNew := testRing(t, "k2", "k2")
	_, err := onlyNew.OpenString(PurposeUserPhone, sealed)
	var uk *UnknownKeyError
	if !errors.As(err, &uk) || uk.ID != "k1" || !strings.Contains(err.Error(), `"k1"`) {
		t.Errorf("open without the key: %v", err)
	}
	var none *Ring
	if _, err := none.OpenString(PurposeUserPhone, sealed); !errors.As(err, &uk) || uk.ID != "k1" {
		t.Errorf("open without a ring: %v", err)
	}
	if _, err := old.OpenString(PurposeCRMPhone, sealed); err == nil {
		t.Error("a number sealed for events opened as a CRM link's")
	}
}

func TestKeysConfigNamesFields(t *testing.T) {
	err := KeysConfig{Keys: []KeyConfig{{ID: "a:b", Key: "short"}, {ID: "k", Key: strings.Repeat("x", 32)}, {ID: "k", Key: strings.Repeat("y", 32)}},
		CurrentKey: "k9"}.Validate()
	for _, want := range []string{"keys[0].id:", "keys[0].key: must be at least 32 characters", `keys[2].id: "k" listed twice`,
		`current_key: "k9" is not one of keys[].id`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
	if err := (KeysConfig{Keys: []KeyConfig{{ID: "k", Key: strings.Repeat("x", 32)}}}).Validate(); err == nil ||
		!strings.Contains(err.Error(), "current_key: required") {
		t.Errorf("no current key: %v", err)
	}
}

// TestProtectThenReveal: the edge form holds no number or e-mail, the
// shipper's Reveal gets the number back, and masking the revealed event
// stores the same as masking the raw one (mask, hash, ids, fields).
func TestProtectThenReveal(t *testing.T) {
	m, err := NewWithKeys("secret-one-0123456789", testRing(t, "k1", "k1"))
	if err != nil {
		t.Fatal(err)
	}
	raw := &event.Event{EventID: "x", Tenant: "salon-aurora", Channel: "whatsapp", SessionID: "whatsapp:79161234567",
		UserID: "79161234567", UserPhone: "+79161234567", Type: event.LeadCreated, Level: "info", SchemaVersion: 1,
		Timestamp: "2026-11-20T10:15:00+03:00",
		Payload:   map[string]any{"text": "call 8 (916) 123-45-67 or anna.petrova@mail.ru", "n": 5.0}}
	edge := m.Protect(raw)
	b, _ := edge.Marshal()
	for _, s := range []string{"79161234567", "9161234567", "123-45", "anna.petrova"} {
		if strings.Contains(string(b), s) {
			t.Errorf("edge form holds %q: %s", s, b)
		}
	}
	if err := edge.Validate(); err != nil {
		t.Errorf("edge form does not validate: %v\n%s", err, b)
	}
	if edge.SchemaMinor == nil || *edge.SchemaMinor != event.SchemaMinor {
		t.Errorf("schema_minor %v", edge.SchemaMinor)
	}
	if again := m.Protect(edge); again.UserPhoneSealed != edge.UserPhoneSealed || again.SessionID != edge.SessionID {
		t.Error("protecting twice changed the event")
	}
	if raw.UserPhone != "+79161234567" || raw.SessionID != "whatsapp:79161234567" {
		t.Error("Protect changed its input")
	}
	parsed, err := event.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	revealed, err := m.Reveal(parsed)
	if err != nil {
		t.Fatal(err)
	}
	if revealed.UserPhone != "+79161234567" {
		t.Errorf("revealed number %q", revealed.UserPhone)
	}
	viaEdge, direct := m.Apply(revealed), m.Apply(mustReveal(t, m, raw))
	// The edge form declares minor 2 (its fields are minor 2's); the rest
	// is stored alike.
	viaEdge.Event.SchemaMinor = nil
	eb, _ := viaEdge.Event.Marshal()
	db, _ := direct.Event.Marshal()
	if string(eb) != string(db) || viaEdge.PhoneHash != direct.PhoneHash ||
		strings.Join(viaEdge.Fields, ",") != strings.Join(direct.Fields, ",") {
		t.Errorf("stored forms differ:\nvia the edge %s %s %v\ndirect       %s %s %v", eb, viaEdge.PhoneHash, viaEdge.Fields, db, direct.PhoneHash, direct.Fields)
	}
	if want := "payload.text,session_id,user_id,user_phone"; strings.Join(viaEdge.Fields, ",") != want {
		t.Errorf("fields %v, want %s", viaEdge.Fields, want)
	}
	if strings.Contains(string(eb), "sealed") || strings.Contains(string(eb), "9161234567") {
		t.Errorf("stored form: %s", eb)
	}
	// Without the key the shipper cannot reveal, and says which key.
	other, _ := NewWithKeys("secret-one-0123456789", testRing(t, "k2", "k2"))
	if _, err := other.Reveal(parsed); err == nil || !strings.Contains(err.Error(), `"k1"`) {
		t.Errorf("reveal without the key: %v", err)
	}
}

func mustReveal(t *testing.T, m *Masker, e *event.Event) *event.Event {
	t.Helper()
	r, err := m.Reveal(e)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestPhoneIDsAreStableTokens: an id that is (or holds) a number becomes
// the same token in every format of that number, a different one for
// another number, and never keeps a digit run of the number.
func TestPhoneIDsAreStableTokens(t *testing.T) {
	m, _ := New("secret-one-0123456789")
	ids := map[string]string{}
	for _, id := range []string{"whatsapp:79161234567", "whatsapp:+7 916 123-45-67", "whatsapp:89161234567"} {
		e := m.Apply(&event.Event{SessionID: id, UserID: strings.TrimPrefix(id, "whatsapp:")})
		ids[e.Event.SessionID] = id
		if strings.ContainsAny(strings.TrimPrefix(e.Event.SessionID, "whatsapp:"), "0123456789") ||
			strings.ContainsAny(e.Event.UserID, "0123456789") {
			t.Errorf("%s → session %q user %q", id, e.Event.SessionID, e.Event.UserID)
		}
		if !strings.HasPrefix(e.Event.SessionID, "whatsapp:ph-") || "whatsapp:"+e.Event.UserID != e.Event.SessionID {
			t.Errorf("%s → session %q user %q: not the number's token", id, e.Event.SessionID, e.Event.UserID)
		}
	}
	if len(ids) != 1 {
		t.Errorf("one customer got %d session ids: %v", len(ids), ids)
	}
	a := m.Apply(&event.Event{SessionID: "whatsapp:79161234567"}).Event.SessionID
	b := m.Apply(&event.Event{SessionID: "whatsapp:79161234568"}).Event.SessionID
	if a == b {
		t.Error("two numbers share a token")
	}
	if got := m.Apply(&event.Event{SessionID: "sgd-36_00024", UserID: "tg:5012345"}).Event; got.SessionID != "sgd-36_00024" || got.UserID != "tg:5012345" {
		t.Errorf("ids without a number changed: %q %q", got.SessionID, got.UserID)
	}
	// A Telegram chat id of 10 digits is not a number to hide; on WhatsApp
	// the same digits are.
	if got := m.Apply(&event.Event{Channel: "telegram", SessionID: "telegram:5120334871"}).Event; got.SessionID != "telegram:5120334871" {
		t.Errorf("telegram chat id changed: %q", got.SessionID)
	}
	if got := m.Apply(&event.Event{Channel: "whatsapp", SessionID: "whatsapp:4915112345678"}).Event; !strings.HasPrefix(got.SessionID, "whatsapp:ph-") {
		t.Errorf("a WhatsApp number (German) kept: %q", got.SessionID)
	}
}

// TestWhatsAppMessageIDs: a wamid is base64 of a record holding the
// customer's number; it becomes a keyed token, the same for the same id
// (a failed-delivery status still names the message), masked again
// unchanged.
func TestWhatsAppMessageIDs(t *testing.T) {
	m, _ := New("secret-one-0123456789")
	id := "wamid.HBgLNzkxNzQ1NjEyMzQVAgASGBQzRUIwQjQxQzk1RkE3MDM2QkQ0MAA="
	a := m.Apply(&event.Event{Payload: map[string]any{"message_id": id}})
	b := m.Apply(&event.Event{Payload: map[string]any{"message_id": id, "delivery_status": "failed"}})
	got := a.Event.Payload["message_id"].(string)
	if !strings.HasPrefix(got, "wamid-h-") || strings.Contains(got, "Nzkx") || got != b.Event.Payload["message_id"] {
		t.Errorf("message ids %q, %q", got, b.Event.Payload["message_id"])
	}
	if strings.Join(a.Fields, ",") != "payload.message_id" {
		t.Errorf("fields %v", a.Fields)
	}
	if again := m.Apply(a.Event); again.Event.Payload["message_id"] != got {
		t.Errorf("masked twice: %v", again.Event.Payload["message_id"])
	}
}

// TestPhonePrefilterIsNecessary: mayHavePhone, which lets texts skip the
// phone regexp, is true for every string the regexp matches: random
// strings of digits, separators and letters, and real-looking numbers.
func TestPhonePrefilterIsNecessary(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []rune("0123456789 -.()+abcя\t")
	matched := 0
	for range 200_000 {
		r := make([]rune, rng.IntN(40))
		for i := range r {
			r[i] = alphabet[rng.IntN(len(alphabet))]
		}
		s := string(r)
		if phoneRe.MatchString(s) {
			matched++
			if !mayHavePhone(s) {
				t.Fatalf("%q matches the phone pattern, but the prefilter skips it", s)
			}
		}
	}
	for _, s := range []string{"+7 (917) 123-45-67", "89171234567", "8 917 123 45 67", "+1.202.555.0143"} {
		if !phoneRe.MatchString(s) || !mayHavePhone(s) {
			t.Errorf("%q: pattern %v, prefilter %v", s, phoneRe.MatchString(s), mayHavePhone(s))
		}
	}
	if matched < 1000 {
		t.Fatalf("only %d random strings matched the pattern: the test checks too little", matched)
	}
	if mayHavePhone("до 10:30, кабинет 12") {
		t.Error("six digits pass the prefilter")
	}
}
