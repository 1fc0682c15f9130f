package positions

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSaveAndReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "positions.json")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s.Set(Position{Fingerprint: "fp1", Path: "/a.jsonl", Offset: 120, Inode: 7})
	s.Set(Position{Fingerprint: "fp2", Path: "/b.jsonl", Offset: 5})
	s.Set(Position{Fingerprint: "fp1", Path: "/a.jsonl.1", Offset: 300, Inode: 7})
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	p, ok := r.Get(Key("fp1", 0, 7))
	if !ok || p.Offset != 300 || p.Path != "/a.jsonl.1" {
		t.Fatalf("fp1 = %+v, %v", p, ok)
	}
	if len(r.All()) != 2 {
		t.Fatalf("reopened store has %d positions", len(r.All()))
	}
	// No temporary files are left next to it.
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("directory holds %d entries, want only positions.json", len(entries))
	}
}

func TestCorruptFileIsAnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "positions.json")
	os.WriteFile(path, []byte(`{"version":1,"files":[{`), 0o644)
	if _, err := Open(path); err == nil || !strings.Contains(err.Error(), "parse positions") {
		t.Fatalf("Open(corrupt) error = %v", err)
	}
}

// TestPrune: a position goes when its file was not seen on disk for the
// window, however recent or old its last acknowledgement.
func TestPrune(t *testing.T) {
	s, _ := Open(filepath.Join(t.TempDir(), "p.json"))
	long := time.Now().Add(-48 * time.Hour)
	s.Set(Position{Fingerprint: "gone", Updated: time.Now(), Seen: long})
	s.Set(Position{Fingerprint: "quiet", Updated: long, Seen: long})
	s.Touch(Key("quiet", 0, 0), time.Now(), time.Minute) // still on disk, nothing new
	if n := s.Prune(time.Now().Add(-24 * time.Hour)); n != 1 {
		t.Fatalf("pruned %d, want 1", n)
	}
	if _, ok := s.Get(Key("gone", 0, 0)); ok {
		t.Error("position of a file not seen for the window kept")
	}
	if _, ok := s.Get(Key("quiet", 0, 0)); !ok {
		t.Error("position of a quiet file still on disk pruned")
	}
}

// TestCandidatesShareAFingerprint: two files with the same first line are
// two positions, told apart by the tailer.
func TestCandidatesShareAFingerprint(t *testing.T) {
	s, _ := Open(filepath.Join(t.TempDir(), "p.json"))
	s.Set(Position{Fingerprint: "fp", Inode: 1, Offset: 10})
	s.Set(Position{Fingerprint: "fp", Inode: 2, Offset: 20})
	s.Set(Position{Fingerprint: "other", Inode: 3})
	if c := s.Candidates("fp"); len(c) != 2 || c[0].Offset != 10 || c[1].Offset != 20 {
		t.Fatalf("candidates = %+v", c)
	}
}

// TestReadsVersion1: a positions file from before keys and hashes is read,
// keyed by fingerprint, device and inode.
func TestReadsVersion1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.json")
	os.WriteFile(path, []byte(`{"version":1,"files":[{"fingerprint":"fp","path":"/a","offset":5,"dev":1,"inode":2,"updated":"2026-11-20T10:00:00Z"}]}`), 0o644)
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	p, ok := s.Get(Key("fp", 1, 2))
	if !ok || p.Offset != 5 || p.Seen.IsZero() || !s.Existed() {
		t.Fatalf("version 1 position = %+v, %v", p, ok)
	}
}

// TestFirstSaveWritesAnEmptyStore: the first save creates the file even
// with nothing in it, so a restart knows it is not the first start.
func TestFirstSaveWritesAnEmptyStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.json")
	s, _ := Open(path)
	if s.Existed() {
		t.Fatal("a missing file existed")
	}
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	r, err := Open(path)
	if err != nil || !r.Existed() {
		t.Fatalf("reopened: existed %v, %v", r != nil && r.Existed(), err)
	}
}
