// Package positions persists how far each file has been read and
// acknowledged downstream. Files are keyed by content fingerprint, never by
// path, so renames and inode reuse cannot confuse them.
//
// The file is written to a temporary name, fsynced and renamed over the old
// one (and the directory fsynced), so a crash leaves either the old or the
// new positions, never a torn file.
package positions

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// Position is the acknowledged read position of one file.
type Position struct {
	Fingerprint string    `json:"fingerprint"`
	Path        string    `json:"path"` // last path seen; informational
	Offset      int64     `json:"offset"`
	Dev         uint64    `json:"dev"`
	Inode       uint64    `json:"inode"`
	Updated     time.Time `json:"updated"`
}

type fileFormat struct {
	Version int        `json:"version"`
	Files   []Position `json:"files"`
}

// Store holds positions in memory and saves them to one file.
type Store struct {
	path string

	mu    sync.Mutex
	m     map[string]Position
	dirty bool
	saved time.Time
}

// Open loads the store at path; a missing file is an empty store.
func Open(path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("positions: path is empty")
	}
	s := &Store{path: path, m: map[string]Position{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read positions %s: %w", path, err)
	}
	var f fileFormat
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("parse positions %s: %w (move it away to start over)", path, err)
	}
	if f.Version != 1 {
		return nil, fmt.Errorf("positions %s: unknown version %d", path, f.Version)
	}
	for _, p := range f.Files {
		s.m[p.Fingerprint] = p
	}
	return s, nil
}

// Get returns the position of a fingerprint.
func (s *Store) Get(fingerprint string) (Position, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.m[fingerprint]
	return p, ok
}

// Set records a position. Callers set only what downstream acknowledged.
func (s *Store) Set(p Position) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.Updated.IsZero() {
		p.Updated = time.Now()
	}
	s.m[p.Fingerprint] = p
	s.dirty = true
}

// All returns a copy of every position, sorted by path.
func (s *Store) All() []Position {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Position, 0, len(s.m))
	for _, p := range s.m {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// Prune forgets positions not updated since before.
func (s *Store) Prune(before time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k, p := range s.m {
		if p.Updated.Before(before) {
			delete(s.m, k)
			n++
		}
	}
	if n > 0 {
		s.dirty = true
	}
	return n
}

// Save writes the positions if they changed since the last save.
func (s *Store) Save() error {
	s.mu.Lock()
	if !s.dirty {
		s.mu.Unlock()
		return nil
	}
	f := fileFormat{Version: 1, Files: make([]Position, 0, len(s.m))}
	for _, p := range s.m {
		f.Files = append(f.Files, p)
	}
	s.dirty = false
	s.mu.Unlock()
	sort.Slice(f.Files, func(i, j int) bool { return f.Files[i].Fingerprint < f.Files[j].Fingerprint })
	b, err := json.MarshalIndent(f, "", " ")
	if err != nil {
		return err
	}
	if err := writeAtomic(s.path, b); err != nil {
		s.mu.Lock()
		s.dirty = true
		s.mu.Unlock()
		return fmt.Errorf("save positions %s: %w", s.path, err)
	}
	s.mu.Lock()
	s.saved = time.Now()
	s.mu.Unlock()
	return nil
}

// LastSaved reports when positions were last written.
func (s *Store) LastSaved() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.saved
}

func writeAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	// The rename is durable only once the directory entry is.
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
