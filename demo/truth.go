package demo

import (
	"encoding/json"
	"os"
	"sort"
	"time"

	"github.com/assistlog/assistlog/internal/event"
)

// Truth is the ground truth of one generated data set: what a pipeline that
// loses nothing and duplicates nothing must end up holding.
type Truth struct {
	Seed      uint64    `json:"seed"`
	End       time.Time `json:"end"`
	Days      int       `json:"days"`
	Rounds    int       `json:"rounds"`
	Dialogues int       `json:"dialogues"`
	Sessions  int       `json:"sessions"`
	Events    int       `json:"events"`
	// First and Last are the earliest and latest event timestamps (UTC).
	First      time.Time                 `json:"first"`
	Last       time.Time                 `json:"last"`
	ByType     map[string]int            `json:"by_type"`
	ByTenant   map[string]int            `json:"by_tenant"`
	ByChannel  map[string]int            `json:"by_channel"`
	ByLevel    map[string]int            `json:"by_level"`
	TenantType map[string]map[string]int `json:"by_tenant_type"`
	// LowConfidence counts events with a confidence below event.LowConfidence.
	LowConfidence int `json:"low_confidence"`
	// Leads counts sessions with a lead.created event.
	Leads int `json:"leads"`
	// Phones lists every customer phone number that appears in the data.
	Phones []string `json:"phones"`
	// Attachments counts media items by kind (turns without words become
	// media messages; see docs/demo.md).
	Attachments map[string]int `json:"attachments,omitempty"`
}

// NewTruth counts events.
func NewTruth(evs []event.Event, dialogues int, cfg Config) *Truth {
	t := &Truth{
		Seed: cfg.Seed, End: cfg.End.UTC(), Days: cfg.Days, Rounds: cfg.Rounds, Dialogues: dialogues,
		Events: len(evs), ByType: map[string]int{}, ByTenant: map[string]int{}, ByChannel: map[string]int{},
		ByLevel: map[string]int{}, TenantType: map[string]map[string]int{}, Attachments: map[string]int{},
	}
	sessions := map[string]bool{}
	phones := map[string]bool{}
	for i := range evs {
		e := &evs[i]
		ts := e.Time().UTC()
		if t.First.IsZero() || ts.Before(t.First) {
			t.First = ts
		}
		if ts.After(t.Last) {
			t.Last = ts
		}
		sessions[e.Tenant+"/"+e.SessionID] = true
		t.ByType[string(e.Type)]++
		t.ByTenant[e.Tenant]++
		t.ByChannel[e.Channel]++
		t.ByLevel[e.Level]++
		if t.TenantType[e.Tenant] == nil {
			t.TenantType[e.Tenant] = map[string]int{}
		}
		t.TenantType[e.Tenant][string(e.Type)]++
		if e.Confidence != nil && *e.Confidence < event.LowConfidence {
			t.LowConfidence++
		}
		if e.Type == event.LeadCreated {
			t.Leads++
		}
		if e.UserPhone != "" {
			phones[e.UserPhone] = true
		}
		for _, kind := range attachmentKinds(e) {
			t.Attachments[kind]++
		}
	}
	t.Sessions = len(sessions)
	for p := range phones {
		t.Phones = append(t.Phones, p)
	}
	sort.Strings(t.Phones)
	return t
}

// attachmentKinds lists the kind of each of the event's attachments.
func attachmentKinds(e *event.Event) []string {
	var kinds []string
	switch as := e.Payload["attachments"].(type) {
	case []any:
		for _, a := range as {
			if m, ok := a.(map[string]any); ok {
				k, _ := m["kind"].(string)
				kinds = append(kinds, k)
			}
		}
	case []map[string]any:
		for _, m := range as {
			k, _ := m["kind"].(string)
			kinds = append(kinds, k)
		}
	}
	return kinds
}

// WriteFile writes the truth as indented JSON.
func (t *Truth) WriteFile(path string) error {
	b, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// ReadTruth loads a truth file.
func ReadTruth(path string) (*Truth, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var t Truth
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, err
	}
	return &t, nil
}
