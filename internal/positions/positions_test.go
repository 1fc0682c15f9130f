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
	p, ok := r.Get("fp1")
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

func TestPrune(t *testing.T) {
	s, _ := Open(filepath.Join(t.TempDir(), "p.json"))
	s.Set(Position{Fingerprint: "old", Updated: time.Now().Add(-48 * time.Hour)})
	s.Set(Position{Fingerprint: "new"})
	if n := s.Prune(time.Now().Add(-24 * time.Hour)); n != 1 {
		t.Fatalf("pruned %d", n)
	}
	if _, ok := s.Get("old"); ok {
		t.Fatal("old position kept")
	}
}
