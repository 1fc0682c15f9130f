package main

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/assistlog/assistlog/internal/deadletter"
	"github.com/assistlog/assistlog/internal/event"
)

// TestFileEventIDDiffersByLine: two files sharing a first line share a
// fingerprint; lines at the same offset get different ids unless they are
// the same line, which keeps its id when read again.
func TestFileEventIDDiffersByLine(t *testing.T) {
	a := fileEventID("0123456789abcdef0123456789abcdef", 120, []byte(`{"session_id":"a"}`))
	b := fileEventID("0123456789abcdef0123456789abcdef", 120, []byte(`{"session_id":"b"}`))
	again := fileEventID("0123456789abcdef0123456789abcdef", 120, []byte(`{"session_id":"a"}`))
	if a == b || a != again {
		t.Fatalf("ids: %s, %s, again %s", a, b, again)
	}
}

// TestDecodeDerivesIDOnlyWhenMissing: a line with its own event_id goes to
// Kafka as written, without hashing it for an id it does not need; a line
// without one is written with the derived id.
func TestDecodeDerivesIDOnlyWhenMissing(t *testing.T) {
	p, err := newPipeline("events", "dlq", nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	const line = `{"event_id":"e-1","timestamp":"2026-11-23T10:00:00Z","tenant":"t","channel":"web","session_id":"s","event_type":"session.started","level":"info","schema_version":1}`
	calls := 0
	id := func() string { calls++; return "f-derived-1" }
	d := p.decode([]byte(line), id, deadletter.Record{Source: "test"}, nil)
	if d.rejected != nil || string(d.msg.Value) != line || calls != 0 {
		t.Fatalf("with an id: rejected %v, value %s, id derived %d times", d.rejected, d.msg.Value, calls)
	}
	noID := strings.Replace(line, `"event_id":"e-1",`, "", 1)
	d = p.decode([]byte(noID), id, deadletter.Record{Source: "test"}, nil)
	if d.rejected != nil || calls != 1 || !strings.Contains(string(d.msg.Value), `"event_id":"f-derived-1"`) {
		t.Fatalf("without an id: rejected %v, value %s, id derived %d times", d.rejected, d.msg.Value, calls)
	}
	// A bad line still gets its dead letter, whatever the id.
	d = p.decode([]byte(`{"event_id":"e-1"`), id, deadletter.Record{Source: "test"}, nil)
	if d.rejected == nil || d.rejected.Reason != string(event.KindInvalidJSON) {
		t.Fatalf("bad line: %+v", d.rejected)
	}
}
