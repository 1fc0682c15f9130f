package bitrix24test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// state is what a long-running fake keeps across restarts: the records, so
// that lead ids remembered elsewhere (the links topic) stay valid.
type state struct {
	NextID     int64                    `json:"next_id"`
	Leads      map[int64]map[string]any `json:"leads"`
	Activities map[int64]map[string]any `json:"activities"`
	Comments   map[int64]map[string]any `json:"comments"`
}

// SaveState writes the portal's records to path atomically.
func (s *Server) SaveState(path string) error {
	s.mu.Lock()
	b, err := json.Marshal(state{NextID: s.nextID, Leads: s.leads, Activities: s.activities, Comments: s.comments})
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("save fake portal state: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".bitrix24-state-*")
	if err != nil {
		return fmt.Errorf("save fake portal state: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("save fake portal state: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("save fake portal state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save fake portal state: %w", err)
	}
	return os.Rename(tmp.Name(), path)
}

// LoadState replaces the portal's records with those saved at path; a
// missing file is an empty portal.
func (s *Server) LoadState(path string) error {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("load fake portal state: %w", err)
	}
	var st state
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber() // ids and numbers as the handlers expect them
	if err := d.Decode(&st); err != nil {
		return fmt.Errorf("load fake portal state %s: %w", path, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID = max(st.NextID, s.nextID)
	for dst, src := range map[*map[int64]map[string]any]map[int64]map[string]any{&s.leads: st.Leads, &s.activities: st.Activities, &s.comments: st.Comments} {
		*dst = map[int64]map[string]any{}
		for id, r := range src {
			(*dst)[id] = r
		}
	}
	return nil
}
