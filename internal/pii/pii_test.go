package pii

import (
	"strings"
	"testing"

	"github.com/assistlog/assistlog/internal/event"
)

func TestMaskPhone(t *testing.T) {
	for in, want := range map[string]string{
		"+79161234567":       "+7 9** ***-**-67",
		"+7 (916) 123-45-67": "+7 9** ***-**-67",
		"89161234567":        "+7 9** ***-**-67",
		"+4915112345678":     "+49 1********78",
	} {
		if got := MaskPhone(in); got != want {
			t.Errorf("MaskPhone(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestHashPhoneIsKeyedAndNormalized(t *testing.T) {
	a, _ := New("secret-one-0123456789")
	b, _ := New("secret-two-0123456789")
	h := a.HashPhone("+79161234567")
	for _, form := range []string{"+7 (916) 123-45-67", "8 916 123 45 67", "+7-916-123-45-67"} {
		if a.HashPhone(form) != h {
			t.Errorf("%q hashes differently from its E.164 form", form)
		}
	}
	if b.HashPhone("+79161234567") == h {
		t.Error("the hash does not depend on the secret")
	}
	if len(h) != 64 || strings.Contains(h, "9161234567") {
		t.Errorf("hash %q", h)
	}
	if _, err := New("short"); err == nil {
		t.Error("a short secret was accepted")
	}
}

func TestMaskText(t *testing.T) {
	cases := []struct{ in, want string }{
		{"Yes, my number is +7 (916) 123-45-67", "Yes, my number is +* (***) ***-**-67"},
		{"Yes, my number is 8 916 123 45 67", "Yes, my number is * *** *** ** 67"},
		{"call +79161234567 or mail anna.petrova@mail.ru", "call +*********67 or mail a***********@mail.ru"},
		{"Their number is 408-847-6060.", "Their number is ***-***-**60."},
		{"See you at 10:30 on March 6th, room 12", "See you at 10:30 on March 6th, room 12"},
		{"Order 2024-11-23 total 1500", "Order 2024-11-23 total 1500"},
	}
	for _, c := range cases {
		if got, _ := MaskText(c.in); got != c.want {
			t.Errorf("MaskText(%q) =\n  %q\nwant\n  %q", c.in, got, c.want)
		}
	}
}

func TestApply(t *testing.T) {
	m, _ := New("secret-one-0123456789")
	e := &event.Event{EventID: "x", UserPhone: "+79161234567", UserID: "wa:79161234567",
		Payload: map[string]any{"text": "my number is 8 916 123 45 67", "nested": map[string]any{"email": "a@b.ru"}, "n": 5.0}}
	got := m.Apply(e)
	if got.Event.UserPhone != "+7 9** ***-**-67" || got.PhoneHash == "" {
		t.Errorf("user_phone %q hash %q", got.Event.UserPhone, got.PhoneHash)
	}
	if strings.Contains(got.Event.UserID, "9161234567") {
		t.Errorf("user_id keeps the number: %q", got.Event.UserID)
	}
	want := "payload.nested.email,payload.text,user_id,user_phone"
	if strings.Join(got.Fields, ",") != want {
		t.Errorf("masked fields = %v, want %s", got.Fields, want)
	}
	if e.UserPhone != "+79161234567" || e.Payload["text"] != "my number is 8 916 123 45 67" {
		t.Error("Apply changed the original event")
	}
	b, _ := got.Event.Marshal()
	for _, raw := range []string{"79161234567", "9161234567", "916 123 45", "a@b.ru"} {
		if strings.Contains(string(b), raw) {
			t.Errorf("masked event still contains %q: %s", raw, b)
		}
	}
}

// TestAttachmentReferencesKept: a media id of 16 digits and a URL with
// digits in it still fetch the picture after masking; the caption, which is
// text, is masked.
func TestAttachmentReferencesKept(t *testing.T) {
	m, _ := New("secret-one-0123456789")
	e := &event.Event{EventID: "x", Payload: map[string]any{"attachments": []any{map[string]any{
		"kind": "image", "id": "1234567890123456", "url": "https://mmg.whatsapp.net/v/t62.7118-24/79161234567_n.jpg",
		"caption": "call me at +7 916 123-45-67"}}}}
	got := m.Apply(e)
	a := got.Event.Payload["attachments"].([]any)[0].(map[string]any)
	if a["id"] != "1234567890123456" || a["url"] != "https://mmg.whatsapp.net/v/t62.7118-24/79161234567_n.jpg" {
		t.Errorf("media reference changed: id %v url %v", a["id"], a["url"])
	}
	if strings.Contains(a["caption"].(string), "123-45-67") {
		t.Errorf("caption keeps the number: %v", a["caption"])
	}
	if strings.Join(got.Fields, ",") != "payload.attachments.caption" {
		t.Errorf("masked fields = %v", got.Fields)
	}
}
