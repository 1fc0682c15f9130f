// Package tenants reads the tenants file: the businesses assistlog serves,
// each with the time zone its days and weeks are counted in and how long
// its events are kept. One file is shared by the programs and audit, so
// "this week" and "six months" mean the same hours everywhere.
package tenants

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Tenant is one business.
type Tenant struct {
	// Name is the event's tenant field.
	Name string `yaml:"name"`
	// Title is how owners' reports name the business (default: Name).
	Title string `yaml:"title"`
	// LokiTenant is the business's Loki org id (X-Scope-OrgID) when Loki
	// runs one tenant per business (default: Name); see docs/loki-tenants.md.
	LokiTenant string `yaml:"loki_tenant"`
	// TZ is an IANA zone, e.g. Asia/Yekaterinburg for Ufa (UTC+5).
	TZ string `yaml:"tz"`
	// Retention is how long the tenant's events are kept, e.g. 6mo, 12mo
	// or 180d (default: the file's retention).
	Retention string `yaml:"retention"`

	loc  *time.Location
	keep Retention
}

// Location is the tenant's time zone.
func (t Tenant) Location() *time.Location { return t.loc }

// Kept is the tenant's retention.
func (t Tenant) Kept() Retention { return t.keep }

// Cutoff is the first instant of the tenant's events still kept at now
// (the tenant's local midnight); everything before it is past retention.
func (t Tenant) Cutoff(now time.Time) time.Time { return t.keep.Cutoff(now, t.loc) }

// File is the tenants file.
type File struct {
	// Retention is the tenants' default retention (default 12mo).
	Retention string   `yaml:"retention"`
	Tenants   []Tenant `yaml:"tenants"`
}

// Set is a validated tenants file.
type Set struct {
	byName map[string]Tenant
	names  []string
	keep   Retention
}

var reName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// Load reads and validates the tenants file at path.
func Load(path string) (*Set, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read tenants file: %w", err)
	}
	s, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("tenants file %s: %w", path, err)
	}
	return s, nil
}

// Parse validates a tenants file's bytes; errors name the entry and field.
func Parse(b []byte) (*Set, error) {
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return FromFile(f)
}

// New validates tenants and loads their zones; retention defaults to 12mo.
func New(list []Tenant) (*Set, error) { return FromFile(File{Tenants: list}) }

// FromFile validates a tenants file's content.
func FromFile(f File) (*Set, error) {
	list := f.Tenants
	s := &Set{byName: map[string]Tenant{}}
	var errs []error
	def := f.Retention
	if def == "" {
		def = DefaultRetention
	}
	keep, err := ParseRetention(def)
	if err != nil {
		errs = append(errs, fmt.Errorf("retention: %w", err))
	}
	s.keep = keep
	if len(list) == 0 {
		errs = append(errs, errors.New("tenants: at least one is required"))
	}
	for i, t := range list {
		field := fmt.Sprintf("tenants[%d]", i)
		if !reName.MatchString(t.Name) {
			errs = append(errs, fmt.Errorf("%s.name: must match %s (the events' tenant), got %q", field, reName, t.Name))
			continue
		}
		field = fmt.Sprintf("tenants[%d] (%s)", i, t.Name)
		if _, dup := s.byName[t.Name]; dup {
			errs = append(errs, fmt.Errorf("%s.name: defined twice", field))
			continue
		}
		if t.TZ == "" {
			errs = append(errs, fmt.Errorf("%s.tz: required, an IANA zone such as Asia/Yekaterinburg", field))
			continue
		}
		loc, err := time.LoadLocation(t.TZ)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s.tz: unknown time zone %q", field, t.TZ))
			continue
		}
		t.loc = loc
		t.keep = keep
		if t.Retention != "" {
			if t.keep, err = ParseRetention(t.Retention); err != nil {
				errs = append(errs, fmt.Errorf("%s.retention: %w", field, err))
				continue
			}
		}
		if t.Title == "" {
			t.Title = t.Name
		}
		s.byName[t.Name] = t
		s.names = append(s.names, t.Name)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	sort.Strings(s.names)
	return s, nil
}

// Default is the retention of a tenant the file does not list (events of
// a business no longer served are kept no longer than anyone's by default).
func (s *Set) Default() Retention { return s.keep }

// Names lists the tenants, sorted.
func (s *Set) Names() []string { return append([]string(nil), s.names...) }

// Get returns a tenant; an unknown name is an error that lists the known.
func (s *Set) Get(name string) (Tenant, error) {
	t, ok := s.byName[name]
	if !ok {
		return Tenant{}, fmt.Errorf("unknown tenant %q (the tenants file has %s)", name, strings.Join(s.names, ", "))
	}
	return t, nil
}

// Select returns the named tenant, or every tenant for "".
func (s *Set) Select(name string) ([]Tenant, error) {
	if name == "" {
		out := make([]Tenant, 0, len(s.names))
		for _, n := range s.names {
			out = append(out, s.byName[n])
		}
		return out, nil
	}
	t, err := s.Get(name)
	if err != nil {
		return nil, err
	}
	return []Tenant{t}, nil
}
