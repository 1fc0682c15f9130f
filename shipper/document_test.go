package main

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/assistlog/assistlog/demo"
	"github.com/assistlog/assistlog/internal/event"
	"github.com/assistlog/assistlog/internal/pii"
)

// TestDocument: the stored document is the masked event with the
// stored-only fields beside it, each key once, as valid JSON.
func TestDocument(t *testing.T) {
	evs, _, err := demo.FromShared(30, demo.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	masker, err := pii.New(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	ingested := time.Date(2026, 11, 27, 10, 0, 0, 123, time.FixedZone("x", 5*3600))
	var phones, masked int
	for i := range evs {
		m := masker.Apply(&evs[i])
		for _, status := range []string{"", crmPending} {
			b, err := document(m, status, ingested)
			if err != nil {
				t.Fatal(err)
			}
			var doc map[string]any
			if err := json.Unmarshal(b, &doc); err != nil {
				t.Fatalf("not JSON: %v: %s", err, b)
			}
			var back event.Event
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			// pii_masked is also an event field (schema minor 2, the
			// collector's edge list); the stored one is the union, checked
			// against m.Fields below.
			back.PIIMasked = nil
			if !reflect.DeepEqual(&back, roundTrip(t, m.Event)) {
				t.Fatalf("event fields changed:\n%s", b)
			}
			if doc["@timestamp"] != m.Event.Timestamp || doc["ingested_at"] != "2026-11-27T05:00:00.000000123Z" {
				t.Fatalf("times: %s", b)
			}
			if h, _ := doc["user_phone_hash"].(string); h != m.PhoneHash {
				t.Fatalf("user_phone_hash %q, want %q", h, m.PhoneHash)
			}
			if f, ok := doc["pii_masked"].([]any); (len(m.Fields) > 0) != ok || len(f) != len(m.Fields) {
				t.Fatalf("pii_masked %v, want %v", doc["pii_masked"], m.Fields)
			}
			want := status
			if want == "" && m.Event.CRMID != "" {
				want = crmResolved
			}
			if got, _ := doc["crm_status"].(string); got != want {
				t.Fatalf("crm_status %q, want %q", got, want)
			}
		}
		if m.PhoneHash != "" {
			phones++
		}
		if len(m.Fields) > 0 {
			masked++
		}
	}
	if phones == 0 || masked == 0 {
		t.Fatalf("the sample has %d events with a phone and %d masked: too few to check", phones, masked)
	}
}

// roundTrip is the event as JSON decoding gives it back (numbers in the
// payload become float64).
func roundTrip(t *testing.T, e *event.Event) *event.Event {
	b, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var out event.Event
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}
