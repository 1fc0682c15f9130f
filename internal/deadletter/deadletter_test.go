package deadletter

import (
	"errors"
	"strings"
	"testing"

	"github.com/assistlog/assistlog/internal/pii"
)

func ring(t *testing.T, current string, ids ...string) *pii.Ring {
	t.Helper()
	var c pii.KeysConfig
	for _, id := range ids {
		c.Keys = append(c.Keys, pii.KeyConfig{ID: id, Key: "dead-letter-key-" + id + "-0123456789abcdef0123"})
	}
	c.CurrentKey = current
	r, err := pii.NewRing(c)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestSealedRecord: a sealed dead letter shows no number or e-mail in its
// value or headers, opens with the key (also after a rotation) and, without
// it, fails naming the key id.
func TestSealedRecord(t *testing.T) {
	raw := []byte(`{"tenant":"salon-aurora","user_phone":"89161234567","text":"anna.petrova@mail.ru"}`)
	rec := Record{Reason: "schema", Error: `user_phone: must be an E.164 number such as +79161234567, got "89161234567"; mail anna.petrova@mail.ru`,
		Source: "/var/log/bot/a.jsonl", Offset: 42, Tenant: "salon-aurora", Raw: raw}
	m := Seal(rec.Message("dlq"), ring(t, "k1", "k1"))
	all := string(m.Value) + string(m.Key)
	for _, h := range m.Headers {
		all += h.Key + "=" + string(h.Value) + "\n"
	}
	for _, s := range []string{"9161234567", "anna.petrova", "E.164 number such as +7"} {
		if strings.Contains(all, s) {
			t.Errorf("sealed record shows %q:\n%s", s, all)
		}
	}
	if Seal(m, ring(t, "k1", "k1")).Value == nil || string(Seal(m, ring(t, "k1", "k1")).Value) != string(m.Value) {
		t.Error("sealing a sealed record changed it")
	}
	got := FromMessage(m)
	if got.KeyID != "k1" || got.Reason != "schema" || got.Offset != 42 || got.Tenant != "salon-aurora" ||
		!strings.Contains(got.Error, "must be an E.164 number") {
		t.Errorf("headers: %+v", got)
	}
	if err := got.Open(ring(t, "k2", "k1", "k2")); err != nil || string(got.Raw) != string(raw) || got.KeyID != "" {
		t.Errorf("open after rotation: %v, %s", err, got.Raw)
	}
	for name, r := range map[string]*pii.Ring{"no ring": nil, "another key": ring(t, "k2", "k2")} {
		rec := FromMessage(m)
		err := rec.Open(r)
		var uk *pii.UnknownKeyError
		if !errors.As(err, &uk) || uk.ID != "k1" || !strings.Contains(err.Error(), `key "k1"`) ||
			!strings.Contains(err.Error(), "/var/log/bot/a.jsonl at offset 42") {
			t.Errorf("%s: %v", name, err)
		}
	}
	plain := FromMessage(rec.Message("dlq"))
	if err := plain.Open(nil); err != nil || string(plain.Raw) != string(raw) {
		t.Errorf("a record written before sealing: %v", err)
	}
}
