package main

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/assistlog/assistlog/internal/deadletter"
	"github.com/assistlog/assistlog/internal/event"
	"github.com/assistlog/assistlog/internal/pii"
)

// FuzzDecode: whatever a line holds, decoding never panics and always
// classifies it: a valid event bound for the events topic, or a dead letter
// with a known reason and the raw bytes kept.
//
//	go test ./collector -run '^$' -fuzz FuzzDecode -fuzztime 60s
func FuzzDecode(f *testing.F) {
	doc, err := os.ReadFile("../docs/events.md")
	if err != nil {
		f.Fatal(err)
	}
	for _, m := range regexp.MustCompile("(?s)```json\n(.*?)\n```").FindAllSubmatch(doc, -1) {
		f.Add(m[1])
	}
	for _, s := range []string{``, `{}`, `[]`, `null`, `{"event_id":`, "{\"a\":\"\xff\"}", `{"confidence":"1"}`,
		`{"event_id":"x","timestamp":"2026-11-23T10:00:00Z","tenant":"t","channel":"web","session_id":"s","event_type":"error","level":"info","schema_version":1}`} {
		f.Add([]byte(s))
	}
	// The edge step's hard cases: ids at their length limit holding numbers,
	// payload keys that are not identifiers.
	long := `{"event_id":"x","timestamp":"2026-11-23T10:00:00Z","tenant":"t","channel":"whatsapp","session_id":"` +
		strings.Repeat("s", 100) + `79161234567","user_id":"` + strings.Repeat("u", 110) + `+79161234567","user_phone":"+79161234567",` +
		`"event_type":"message.received","level":"info","payload":{"Customer Note!":"call 89161234567","text":"wamid.HBgLNzkxNzQ1NjEyMzQVAgASGBQz"},"schema_version":1}`
	f.Add([]byte(long))
	p, err := newPipeline("events", "dlq", nil, prometheus.NewRegistry())
	if err != nil {
		f.Fatal(err)
	}
	edge, err := newPipeline("events", "dlq", nil, prometheus.NewRegistry())
	if err != nil {
		f.Fatal(err)
	}
	ring, err := pii.NewRing(pii.KeysConfig{Keys: []pii.KeyConfig{{ID: "k1", Key: "fuzz-key-0123456789abcdef0123456789abcdef"}}, CurrentKey: "k1"})
	if err != nil {
		f.Fatal(err)
	}
	if edge.protect, err = pii.NewWithKeys("fuzz-secret-0123456789", ring); err != nil {
		f.Fatal(err)
	}
	reasons := map[string]bool{string(event.KindInvalidJSON): true, string(event.KindInvalidUTF8): true,
		string(event.KindSchema): true, string(event.KindTooLarge): true}
	f.Fuzz(func(t *testing.T, raw []byte) {
		d := p.decode(raw, func() string { return "f-fuzz-0" }, deadletter.Record{Source: "fuzz"}, nil)
		switch d.msg.Topic {
		case "events":
			if d.rejected != nil || d.event == nil {
				t.Fatal("an event message carries a rejection")
			}
			e, err := event.Parse(d.msg.Value)
			if err != nil {
				t.Fatalf("accepted input does not re-validate: %v\n%q", err, d.msg.Value)
			}
			if !bytes.Equal(d.msg.Key, e.Key()) {
				t.Fatalf("key %q, want %q", d.msg.Key, e.Key())
			}
		case "dlq":
			if d.rejected == nil || !reasons[d.rejected.Reason] || d.rejected.Error == "" {
				t.Fatalf("dead letter without a known reason: %+v", d.rejected)
			}
			if len(raw) <= deadletter.MaxRawBytes && !bytes.Equal(d.msg.Value, raw) {
				t.Fatal("dead letter does not keep the raw bytes")
			}
		default:
			t.Fatalf("message for topic %q", d.msg.Topic)
		}
		// Through the edge step, an accepted event stays valid (the shipper
		// would dead-letter it otherwise) and opens again for the shipper.
		de := edge.decode(raw, func() string { return "f-fuzz-0" }, deadletter.Record{Source: "fuzz"}, nil)
		if de.msg.Topic != d.msg.Topic {
			t.Fatalf("the edge step changed the outcome: %s, without it %s", de.msg.Topic, d.msg.Topic)
		}
		if de.msg.Topic == "events" {
			e, err := event.Parse(de.msg.Value)
			if err != nil {
				t.Fatalf("the edge form does not re-validate: %v\n%s", err, de.msg.Value)
			}
			if !bytes.Equal(de.msg.Key, e.Key()) {
				t.Fatalf("key %q, want %q", de.msg.Key, e.Key())
			}
			r, err := edge.protect.Reveal(e)
			if err != nil || r.UserPhone != d.event.UserPhone {
				t.Fatalf("revealed %q, %v; want %q", r.UserPhone, err, d.event.UserPhone)
			}
		}
	})
}
