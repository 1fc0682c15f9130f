package main

import "testing"

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
