package crm

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/assistlog/assistlog/internal/bitrix24"
	"github.com/assistlog/assistlog/internal/pii"
	"github.com/assistlog/assistlog/internal/stacktest"
)

// TestLinksKeepNoNumber: with a protecting store, a pending conversation's
// number is on the links topic only sealed, the worker still finds the
// lead by it, and the answer (what compaction keeps) holds only the keyed
// hash. A record written before, with the number raw, still loads and is
// answered, and its answer holds no number either.
func TestLinksKeepNoNumber(t *testing.T) {
	ring, err := pii.NewRing(pii.KeysConfig{Keys: []pii.KeyConfig{{ID: "k1", Key: "links-test-key-0123456789abcdef0123456789"}}, CurrentKey: "k1"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := pii.NewWithKeys("links-test-secret-0123456789", ring)
	if err != nil {
		t.Fatal(err)
	}
	r := newRigWith(t, false, false, m)
	ctx := context.Background()
	legacy, sealed := pendingSession(1), pendingSession(2)
	legacy.CreateLead, sealed.CreateLead = false, false
	ids := map[string]string{}
	for _, l := range []Link{legacy, sealed} {
		id, err := r.client.LeadAdd(ctx, bitrix24.Lead{Title: "made by a manager", Phone: []bitrix24.Multifield{{Value: l.Phone, ValueType: "MOBILE"}}})
		if err != nil {
			t.Fatal(err)
		}
		ids[l.Key()] = id.String()
	}
	// The record as a store wrote it before numbers were protected.
	old := NewStore(r.store.brokers, r.store.topic, r.store.out, r.store.log)
	if err := old.Put(ctx, legacy); err != nil {
		t.Fatal(err)
	}
	if err := r.store.Put(ctx, sealed); err != nil {
		t.Fatal(err)
	}
	r.waitAll(t, []string{legacy.Key(), sealed.Key()}, StateLinked)
	for k, id := range ids {
		if l, _ := r.store.Get(k); l.CRMID != id {
			t.Errorf("%s linked to %q, want %s (found by its number)", k, l.CRMID, id)
		}
	}
	last := map[string]map[string]any{}
	for _, msg := range stacktest.ReadTopic(t, r.store.brokers[0], r.store.topic) {
		var v map[string]any
		if err := json.Unmarshal(msg.Value, &v); err != nil {
			t.Fatal(err)
		}
		last[string(msg.Key)] = v
		if string(msg.Key) == legacy.Key() && v["state"] == StatePending {
			continue // the record written before, raw; replaced by the answer
		}
		for _, l := range []Link{legacy, sealed} {
			if strings.Contains(string(msg.Value), pii.Digits(l.Phone)[1:]) {
				t.Errorf("record %s holds the number: %s", msg.Key, msg.Value)
			}
		}
		if string(msg.Key) == sealed.Key() && v["state"] == StatePending && !strings.HasPrefix(v["phone_sealed"].(string), "k1:") {
			t.Errorf("pending record without its sealed number: %s", msg.Value)
		}
	}
	for _, l := range []Link{legacy, sealed} {
		v := last[l.Key()]
		if v["state"] != StateLinked || v["phone"] != nil || v["phone_sealed"] != nil || v["phone_hash"] != m.HashPhone(l.Phone) {
			t.Errorf("the answer of %s (kept by compaction): %v", l.Key(), v)
		}
	}
	// A store without the key reads a pending record's number as missing
	// and says which key it needs (the worker stops on it rather than
	// answering no_lead).
	v, err := r.store.encode(sealed)
	if err != nil {
		t.Fatal(err)
	}
	keyless, _ := pii.New("links-test-secret-0123456789")
	noKey := NewStore(r.store.brokers, r.store.topic, r.store.out, r.store.log)
	noKey.Protect(keyless)
	if _, err := noKey.decode(v); err == nil || !strings.Contains(err.Error(), `key "k1"`) {
		t.Errorf("decode without the key: %v", err)
	}
	// A restarted store reads the answers back.
	again := NewStore(r.store.brokers, r.store.topic, r.store.out, r.store.log)
	again.Protect(m)
	if err := again.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := again.Get(sealed.Key()); got.State != StateLinked || got.CRMID != ids[sealed.Key()] {
		t.Errorf("after a restart: %+v", got)
	}
}
