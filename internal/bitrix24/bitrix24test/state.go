package bitrix24test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
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

// The methods below are test controls, not API behaviour: they change the
// portal as a person in its web interface would (or as time would), so a
// test can set up what a reconciliation must find.

// AddLead creates a lead as a manager would by hand, with DATE_CREATE
// set to created, and returns its id. fields use the API's names
// (TITLE, SOURCE_ID, ORIGIN_ID, PHONE as [{VALUE, VALUE_TYPE}] …).
func (s *Server) AddLead(fields map[string]any, created time.Time) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	lead := map[string]any{}
	for k, v := range fields {
		lead[strings.ToUpper(k)] = v
	}
	id := s.id()
	lead["ID"] = id
	if _, ok := lead["STATUS_ID"]; !ok {
		lead["STATUS_ID"] = "NEW"
	}
	lead["DATE_CREATE"] = created.Format(time.RFC3339)
	s.leads[id] = lead
	return id
}

// DeleteLead removes a lead, as a manager deleting it does; false if
// there was none.
func (s *Server) DeleteLead(id int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.leads[id]
	delete(s.leads, id)
	return ok
}

// SetLeadCreated rewrites a lead's DATE_CREATE, e.g. to when its
// conversation happened, or later (a lead the CRM worker made days
// after); false if there is no such lead.
func (s *Server) SetLeadCreated(id int64, created time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.leads[id]
	if ok {
		l["DATE_CREATE"] = created.Format(time.RFC3339)
	}
	return ok
}
