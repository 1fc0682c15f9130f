package elastic

import (
	"bytes"
	"testing"
)

// TestFlushBytes: a round's bulk buffer is its own size, never above
// flush_bytes and never below the minimum the config allows.
func TestFlushBytes(t *testing.T) {
	docs := make([]Doc, 1000)
	for i := range docs {
		docs[i] = Doc{Action: "create", Index: "assistant-events-2026.11", ID: "0123456789abcdef", Body: bytes.Repeat([]byte("x"), 600)}
	}
	got := flushBytes(docs, 5<<20)
	if min := 1000 * 600; got < min || got >= 5<<20 {
		t.Fatalf("flushBytes of 1000 × 600 B = %d, want at least the bodies (%d) and below 5 MiB", got, min)
	}
	if got := flushBytes(docs, 64<<10); got != 64<<10 {
		t.Fatalf("flushBytes above the limit = %d, want the limit", got)
	}
	if got := flushBytes(nil, 5<<20); got != 1024 {
		t.Fatalf("flushBytes of nothing = %d, want 1024", got)
	}
}
