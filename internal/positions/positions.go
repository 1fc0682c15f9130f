// Package positions persists how far each file has been read and
// acknowledged downstream. A position is keyed by the file's first-line
// fingerprint plus device and inode, and carries hashes of the file's head
// and of the bytes just before the saved offset: the tailer matches a file
// on disk to a position by content (never by path), and uses the inode only
// to break ties, so renames, copies and inode reuse cannot confuse them.
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
	// Key identifies the position: Fingerprint, Dev and Inode (see Key).
	Key         string `json:"key"`
	Fingerprint string `json:"fingerprint"` // hash of the first line
	Path        string `json:"path"`        // last path seen; informational
	Offset      int64  `json:"offset"`
	Dev         uint64 `json:"dev"`
	Inode       uint64 `json:"inode"`
	// HeadLen and HeadHash: the hash of the file's first HeadLen bytes
	// (at most the offset, so any copy of what was read still has them).
	HeadLen  int64  `json:"head_len,omitempty"`
	HeadHash string `json:"head_hash,omitempty"`
	// TailLen and TailHash: the hash of the TailLen bytes just before
	// Offset, to tell "the same file, grown" from "rewritten, as long".
	TailLen  int64  `json:"tail_len,omitempty"`
	TailHash string `json:"tail_hash,omitempty"`
	// Updated is when Offset last moved (downstream acknowledged).
	Updated time.Time `json:"updated"`
	// Seen is when the file was last found on disk; positions not seen for
	// forget_after are pruned.
	Seen time.Time `json:"seen"`
}

// Key builds a position's key from the file's fingerprint, device and inode.
func Key(fingerprint string, dev, inode uint64) string {
	return fmt.Sprintf("%s-%d-%d", fingerprint, dev, inode)
}

type fileFormat struct {
	Version int        `json:"version"`
	Files   []Position `json:"files"`
}

// Store holds positions in memory and saves them to one file.
type Store struct {
	path    string
	existed bool // a positions file was there at Open
	onDisk  bool // the file exists (read at Open, or written since)

	saveMu sync.Mutex // one writer at a time, so saves land in order
	mu     sync.Mutex
	m      map[string]Position
	dirty  bool
}

// version 2 added Key, the head and tail hashes and Seen; version 1 files
// are read with their fingerprint as the only evidence.
const version = 2

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
	if f.Version != 1 && f.Version != version {
		return nil, fmt.Errorf("positions %s: unknown version %d", path, f.Version)
	}
	s.existed, s.onDisk = true, true
	for _, p := range f.Files {
		if p.Key == "" {
			p.Key = Key(p.Fingerprint, p.Dev, p.Inode)
		}
		if p.Seen.IsZero() {
			p.Seen = p.Updated
		}
		s.m[p.Key] = p
	}
	return s, nil
}

// Existed reports whether a positions file was there when the store was
// opened, i.e. whether this is not the collector's first start.
func (s *Store) Existed() bool { return s.existed }

// Get returns the position with a key.
func (s *Store) Get(key string) (Position, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.m[key]
	return p, ok
}

// Candidates returns the positions of files whose first line has this
// fingerprint; the caller decides by content which one, if any, a file is.
func (s *Store) Candidates(fingerprint string) []Position {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Position
	for _, p := range s.m {
		if p.Fingerprint == fingerprint {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// Set records a position (Key is derived when empty). Callers set only
// what downstream acknowledged.
func (s *Store) Set(p Position) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if p.Key == "" {
		p.Key = Key(p.Fingerprint, p.Dev, p.Inode)
	}
	if p.Updated.IsZero() {
		p.Updated = now
	}
	if p.Seen.IsZero() {
		p.Seen = now
	}
	s.m[p.Key] = p
	s.dirty = true
}

// Touch marks a position's file as seen on disk at now. The change is
// written with the next save only once Seen moved by more than every, so
// that a scan every second does not rewrite the file every second.
func (s *Store) Touch(key string, now time.Time, every time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.m[key]
	if !ok || !now.After(p.Seen) {
		return
	}
	if now.Sub(p.Seen) > every {
		s.dirty = true
	}
	p.Seen = now
	s.m[key] = p
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

// Prune forgets positions whose file was not seen on disk since before.
// A quiet file that is still there keeps its position however old its
// last acknowledgement is.
func (s *Store) Prune(before time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k, p := range s.m {
		if p.Seen.Before(before) {
			delete(s.m, k)
			n++
		}
	}
	if n > 0 {
		s.dirty = true
	}
	return n
}

// Save writes the positions if they changed since the last save, or if no
// positions file exists yet (so the next start is not a first start).
// Saves are serialised, so a later save never lands before an earlier one.
func (s *Store) Save() error {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	s.mu.Lock()
	if !s.dirty && s.onDisk {
		s.mu.Unlock()
		return nil
	}
	f := fileFormat{Version: version, Files: make([]Position, 0, len(s.m))}
	for _, p := range s.m {
		f.Files = append(f.Files, p)
	}
	s.dirty = false
	s.mu.Unlock()
	sort.Slice(f.Files, func(i, j int) bool { return f.Files[i].Key < f.Files[j].Key })
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
	s.onDisk = true
	s.mu.Unlock()
	return nil
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
