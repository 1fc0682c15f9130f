package tail

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func openReader(t *testing.T, content string, maxLine int) (*reader, *os.File) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "a.jsonl")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	r := newReader(f, path, "fp", 0, 0, 0, maxLine)
	r.buf = make([]byte, 7) // tiny reads exercise lines spanning reads
	return r, f
}

func TestReaderHoldsPartialLine(t *testing.T) {
	r, f := openReader(t, "one\ntwo\nthr", 1024)
	lines, err := r.read(100, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 2 || string(lines[0].Data) != "one" || string(lines[1].Data) != "two" {
		t.Fatalf("lines = %+v", lines)
	}
	if lines[0].Offset != 0 || lines[0].End != 4 || lines[1].Offset != 4 || lines[1].End != 8 {
		t.Fatalf("offsets = %+v", lines)
	}
	if more, _ := r.read(100, 1<<20); len(more) != 0 {
		t.Fatalf("a partial line was returned: %+v", more)
	}
	f.WriteString("ee\nfour\n")
	lines, _ = r.read(100, 1<<20)
	if len(lines) != 2 || string(lines[0].Data) != "three" || lines[0].Offset != 8 || lines[0].End != 14 || string(lines[1].Data) != "four" {
		t.Fatalf("after completion: %+v", lines)
	}
}

func TestReaderCutsLongLines(t *testing.T) {
	long := strings.Repeat("x", 3000)
	r, f := openReader(t, "ok\n"+long, 1024)
	lines, _ := r.read(100, 1<<20)
	if len(lines) != 1 {
		t.Fatalf("lines = %d", len(lines))
	}
	f.WriteString("yyy\nnext\n")
	lines, _ = r.read(100, 1<<20)
	if len(lines) != 2 {
		t.Fatalf("lines = %+v", lines)
	}
	l := lines[0]
	if !l.TooLong || len(l.Data) != 1024 || l.Length != 3003 || l.Offset != 3 || l.End != 3+3003+1 {
		t.Fatalf("long line = TooLong %v len %d Length %d Offset %d End %d", l.TooLong, len(l.Data), l.Length, l.Offset, l.End)
	}
	if string(lines[1].Data) != "next" || lines[1].Offset != l.End {
		t.Fatalf("line after the long one = %+v", lines[1])
	}
}

func TestReaderBatchLimit(t *testing.T) {
	r, _ := openReader(t, "a\nb\nc\nd\ne\n", 1024)
	got := ""
	for i := 0; i < 10; i++ {
		lines, _ := r.read(2, 1<<20)
		if len(lines) > 2 {
			t.Fatalf("batch of %d lines, limit 2", len(lines))
		}
		for _, l := range lines {
			got += string(l.Data)
		}
	}
	if got != "abcde" {
		t.Fatalf("read %q", got)
	}
}

func TestFingerprint(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) *os.File {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(s), 0o644)
		f, _ := os.Open(p)
		t.Cleanup(func() { f.Close() })
		return f
	}
	if _, ready, _ := fingerprint(write("partial", `{"event_id":"a"`)); ready {
		t.Error("a file without a complete first line has no identity yet")
	}
	a, _, _ := fingerprint(write("a", "first\nsecond\n"))
	b, _, _ := fingerprint(write("b", "first\nother\n"))
	c, _, _ := fingerprint(write("c", "first!\n"))
	if a != b || a == c {
		t.Errorf("fingerprints: same first line %v, different first line %v", a == b, a != c)
	}
	if _, ready, _ := fingerprint(write("big", strings.Repeat("z", FingerprintBytes+10))); !ready {
		t.Error("a file with a very long first line must still get an identity")
	}
}
