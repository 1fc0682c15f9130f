// Package mapping turns the JSON an assistant or a chatbot platform writes
// into a schema v1 event before validation: fields renamed and moved by
// path, constant defaults, value maps, timestamps without an offset read
// in a time zone, CRM id prefixes stripped. A mapping is compiled once
// (Compile checks every path, target and rule, naming the field) and then
// applied to each input; a failure names the step that failed, so the
// dead-letter record says why the original line was not accepted.
package mapping

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/assistlog/assistlog/internal/event"
)

// Config is one source's mapping (collector.example.yaml documents it).
type Config struct {
	// Profile is a built-in base mapping the rest of this section extends
	// (Profiles lists them); "" for none.
	Profile string `yaml:"profile"`
	// Fields maps a v1 target field to the path (or the first present of
	// several paths) it is read from; the source is consumed.
	Fields map[string]Sources `yaml:"fields"`
	// Defaults are constants for target fields the input does not carry.
	Defaults map[string]any `yaml:"defaults"`
	// Values rename values of a target field, e.g. channel: {WA: whatsapp}.
	Values map[string]map[string]string `yaml:"values"`
	// TimestampFormat: rfc3339 (default; an offset-less timestamp is read in
	// TimeZone), unix, unix_ms, or a Go layout such as "02.01.2006 15:04:05".
	TimestampFormat string `yaml:"timestamp_format"`
	// TimeZone (IANA) for timestamps without a UTC offset.
	TimeZone string `yaml:"time_zone"`
	// CRMIDPrefixes are stripped from crm_id ("LEAD_789" → "789"); the
	// original is kept at CRMIDOriginal.
	CRMIDPrefixes []string `yaml:"crm_id_prefixes"`
	CRMIDOriginal string   `yaml:"crm_id_original"`
	// AppointmentIDFrom fills payload.appointment_id of appointment.*
	// events that carry none, from the first present input path.
	AppointmentIDFrom Sources `yaml:"appointment_id_from"`
	// Unmapped says what happens to input fields that are neither mapped
	// nor v1 fields: error (default: the line is dead-lettered naming
	// them) or payload (kept under payload.<name>).
	Unmapped string `yaml:"unmapped"`
}

// Sources is one path or a list of paths tried in order.
type Sources []string

// UnmarshalYAML takes a scalar or a sequence.
func (s *Sources) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*s = Sources{n.Value}
		return nil
	}
	var l []string
	if err := n.Decode(&l); err != nil {
		return err
	}
	*s = l
	return nil
}

// IsZero reports whether c configures nothing (no mapping: input must be v1).
func (c Config) IsZero() bool {
	return c.Profile == "" && len(c.Fields) == 0 && len(c.Defaults) == 0 && len(c.Values) == 0 &&
		c.TimestampFormat == "" && c.TimeZone == "" && len(c.CRMIDPrefixes) == 0 && c.CRMIDOriginal == "" &&
		len(c.AppointmentIDFrom) == 0 && c.Unmapped == ""
}

// Profiles are the built-in mappings by name.
func Profiles() map[string]Config {
	return map[string]Config{
		// The event format the business documented for its assistants:
		// v1 field names, but no tenant, level, schema version or event id,
		// crm_id as "LEAD_789", and timestamps possibly without an offset
		// (the assistants run in Ufa).
		"business": {
			Defaults:          map[string]any{"level": "info", "schema_version": 1},
			Values:            map[string]map[string]string{"channel": channelNames},
			TimeZone:          "Asia/Yekaterinburg",
			CRMIDPrefixes:     []string{"LEAD_", "DEAL_", "CONTACT_", "COMPANY_"},
			CRMIDOriginal:     "payload.crm_ref",
			AppointmentIDFrom: Sources{"appointment_id", "payload.appointment_id", "crm_id"},
			Unmapped:          "payload",
		},
	}
}

// channelNames are the spellings of channels platforms and panels use.
var channelNames = map[string]string{
	"WA": "whatsapp", "wa": "whatsapp", "WhatsApp": "whatsapp", "whatsapp_business": "whatsapp",
	"TG": "telegram", "tg": "telegram", "Telegram": "telegram",
	"IG": "instagram", "ig": "instagram", "Instagram": "instagram", "insta": "instagram",
	"site": "web", "widget": "web", "Web": "web", "call": "phone", "Phone": "phone",
}

// v1 is each top-level field of schema v1 and whether it is an object
// whose keys may be targets (payload, scenario).
var v1 = map[string]bool{
	"event_id": false, "timestamp": false, "tenant": false, "channel": false, "session_id": false,
	"user_id": false, "user_phone": false, "event_type": false, "level": false, "intent": false,
	"confidence": false, "crm_id": false, "scenario": true, "payload": true, "outcome": false,
	"latency_ms": false, "seq": false, "schema_version": false, "schema_minor": false,
}

// enums are the v1 fields whose values are a closed set.
var enums = map[string][]string{
	"channel": event.Channels, "level": event.Levels,
	"event_type": func() []string {
		s := make([]string, len(event.Types))
		for i, t := range event.Types {
			s[i] = string(t)
		}
		return s
	}(),
}

var reTenant = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// Mapping is a compiled Config.
type Mapping struct {
	fields      []rule
	defaults    []constant
	values      map[string]map[string]string
	format      string
	loc         *time.Location
	prefixes    []string
	crmOriginal path
	apptFrom    []path
	unmapped    string
}

type rule struct {
	target  path
	name    string
	sources []path
}

type constant struct {
	target path
	name   string
	value  any
}

// checkTarget says whether name may be written by a mapping.
func checkTarget(name string) (path, error) {
	p, err := parsePath(name)
	if err != nil {
		return nil, err
	}
	obj, ok := v1[p[0].key]
	if !ok || p[0].index >= 0 {
		return nil, fmt.Errorf("unknown target field %q (v1 fields: %s; payload.<key> for anything else)", name, strings.Join(slices.Sorted(maps.Keys(v1)), ", "))
	}
	for _, s := range p {
		if s.index >= 0 {
			return nil, fmt.Errorf("target %q: a target is object keys only, no [index]", name)
		}
	}
	if len(p) > 1 && !obj {
		return nil, fmt.Errorf("target %q: %s is not an object", name, p[0].key)
	}
	if p[0].key == "scenario" && len(p) > 1 && (len(p) > 2 || (p[1].key != "from" && p[1].key != "to")) {
		return nil, fmt.Errorf("unknown target field %q (scenario has from and to)", name)
	}
	return p, nil
}

// merge lays c over base: maps merge key by key, set scalars win.
func merge(base, c Config) Config {
	out := base
	out.Fields = mergeMap(base.Fields, c.Fields)
	out.Defaults = mergeMap(base.Defaults, c.Defaults)
	out.Values = map[string]map[string]string{}
	for k, v := range base.Values {
		out.Values[k] = maps.Clone(v)
	}
	for k, v := range c.Values {
		out.Values[k] = mergeMap(out.Values[k], v)
	}
	for _, s := range []struct {
		dst *string
		v   string
	}{{&out.TimestampFormat, c.TimestampFormat}, {&out.TimeZone, c.TimeZone},
		{&out.CRMIDOriginal, c.CRMIDOriginal}, {&out.Unmapped, c.Unmapped}} {
		if s.v != "" {
			*s.dst = s.v
		}
	}
	if c.CRMIDPrefixes != nil {
		out.CRMIDPrefixes = c.CRMIDPrefixes
	}
	if c.AppointmentIDFrom != nil {
		out.AppointmentIDFrom = c.AppointmentIDFrom
	}
	return out
}

func mergeMap[V any](a, b map[string]V) map[string]V {
	out := maps.Clone(a)
	if out == nil {
		out = map[string]V{}
	}
	maps.Copy(out, b)
	return out
}

// Compile checks c and prepares it; every error names the field at fault
// relative to the mapping section ("fields.session_id: …").
func Compile(c Config) (*Mapping, error) {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Profile != "" {
		base, ok := Profiles()[c.Profile]
		if !ok {
			return nil, fmt.Errorf("profile: unknown profile %q (built in: %s)", c.Profile, strings.Join(slices.Sorted(maps.Keys(Profiles())), ", "))
		}
		c = merge(base, c)
	}
	m := &Mapping{values: map[string]map[string]string{}, format: c.TimestampFormat, prefixes: c.CRMIDPrefixes, unmapped: c.Unmapped}

	targets := slices.Sorted(maps.Keys(c.Fields))
	for _, name := range targets {
		tp, err := checkTarget(name)
		if err != nil {
			add("fields.%s: %v", name, err)
			continue
		}
		if len(c.Fields[name]) == 0 {
			add("fields.%s: needs a source path", name)
			continue
		}
		r := rule{target: tp, name: name}
		for i, s := range c.Fields[name] {
			sp, err := parsePath(s)
			if err != nil {
				add("fields.%s[%d]: %v", name, i, err)
				continue
			}
			r.sources = append(r.sources, sp)
		}
		m.fields = append(m.fields, r)
	}
	// One target inside another would write the same value twice.
	for _, a := range targets {
		for _, b := range targets {
			if strings.HasPrefix(b, a+".") {
				add("fields.%s: conflicts with fields.%s (one is inside the other)", b, a)
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.Defaults)) {
		tp, err := checkTarget(name)
		if err != nil {
			add("defaults.%s: %v", name, err)
			continue
		}
		v := c.Defaults[name]
		switch v.(type) {
		case string, int, float64, bool:
		default:
			add("defaults.%s: must be a string, number or boolean, got %T", name, v)
			continue
		}
		if s, ok := v.(string); ok {
			if allowed, isEnum := enums[name]; isEnum && !slices.Contains(allowed, s) {
				add("defaults.%s: must be one of %s, got %q", name, strings.Join(allowed, ", "), s)
			}
			if name == "tenant" && !reTenant.MatchString(s) {
				add("defaults.tenant: must be a tenant name (lower-case letters, digits, -), got %q", s)
			}
		}
		m.defaults = append(m.defaults, constant{target: tp, name: name, value: v})
	}
	for _, name := range slices.Sorted(maps.Keys(c.Values)) {
		if _, err := checkTarget(name); err != nil {
			add("values.%s: %v", name, err)
			continue
		}
		if strings.Contains(name, ".") && !strings.HasPrefix(name, "payload.") {
			add("values.%s: value maps apply to top-level string fields and payload.<key>", name)
			continue
		}
		switch name {
		case "confidence", "latency_ms", "seq", "schema_version", "schema_minor", "payload", "scenario":
			add("values.%s: value maps apply to string fields, and %s is not one", name, name)
			continue
		}
		vm := c.Values[name]
		for _, from := range slices.Sorted(maps.Keys(vm)) {
			if allowed, isEnum := enums[name]; isEnum && !slices.Contains(allowed, vm[from]) {
				add("values.%s.%s: maps to %q, which is not one of %s", name, from, vm[from], strings.Join(allowed, ", "))
			}
		}
		m.values[name] = vm
	}
	switch f := c.TimestampFormat; {
	case f == "" || f == "rfc3339" || f == "unix" || f == "unix_ms":
	case strings.Contains(f, "2006") && strings.Contains(f, "15") || strings.Contains(f, "2006") && strings.Contains(f, "03"):
	default:
		add("timestamp_format: must be rfc3339, unix, unix_ms or a Go layout with year 2006 and hour 15, got %q", f)
	}
	if c.TimeZone != "" {
		loc, err := time.LoadLocation(c.TimeZone)
		if err != nil {
			add("time_zone: unknown IANA time zone %q", c.TimeZone)
		}
		m.loc = loc
	}
	for i, p := range c.CRMIDPrefixes {
		if p == "" {
			add("crm_id_prefixes[%d]: must not be empty", i)
		}
	}
	if c.CRMIDOriginal != "" {
		p, err := checkTarget(c.CRMIDOriginal)
		switch {
		case err != nil:
			add("crm_id_original: %v", err)
		case p[0].key != "payload" || len(p) < 2:
			add("crm_id_original: must be a payload.<key> path, got %q", c.CRMIDOriginal)
		case c.Fields[c.CRMIDOriginal] != nil:
			add("crm_id_original: %q is also a target in fields; choose one", c.CRMIDOriginal)
		}
		m.crmOriginal = p
	} else if len(c.CRMIDPrefixes) > 0 {
		add("crm_id_original: is required with crm_id_prefixes (the original id must be kept), e.g. payload.crm_ref")
	}
	for i, s := range c.AppointmentIDFrom {
		p, err := parsePath(s)
		if err != nil {
			add("appointment_id_from[%d]: %v", i, err)
		}
		m.apptFrom = append(m.apptFrom, p)
	}
	switch c.Unmapped {
	case "":
		m.unmapped = "error"
	case "error", "payload":
	default:
		add("unmapped: must be error or payload, got %q", c.Unmapped)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return m, nil
}

// Steps that can fail, as dead-letter records name them.
const (
	StepParse     = "parse"
	StepFields    = "fields"
	StepUnmapped  = "unmapped"
	StepTimestamp = "timestamp"
	StepCRMID     = "crm_id"
	StepValidate  = "validate"
)

// Error is a failed mapping: the step, the field and why.
type Error struct {
	Step  string
	Field string
	Err   error
}

func (e *Error) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("mapping step %s: %v", e.Step, e.Err)
	}
	return fmt.Sprintf("mapping step %s (%s): %v", e.Step, e.Field, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// StepOf returns the step of a mapping error, or "".
func StepOf(err error) string {
	var me *Error
	if errors.As(err, &me) {
		return me.Step
	}
	return ""
}

// Input is what the caller knows about one input besides its bytes.
type Input struct {
	// DefaultID is the event id when the input has none (derived by the
	// caller from where the input came from, as without a mapping).
	DefaultID string
	// Tenant, when set (a webhook knows it from the credentials), is the
	// tenant of an input that carries none.
	Tenant string
}

// Apply maps one JSON object and validates the result. On success it
// returns the event and its encoding; on failure an *Error (whose Err is
// the validator's error for the validate step).
func (m *Mapping) Apply(raw []byte, in Input) (*event.Event, []byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		return nil, nil, &Error{Step: StepParse, Err: fmt.Errorf("input is not a JSON object: %v", strings.TrimPrefix(err.Error(), "json: "))}
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, nil, &Error{Step: StepParse, Err: errors.New("unexpected data after the JSON object")}
	}
	return m.ApplyObject(doc, in)
}

// ApplyObject is Apply for an object already decoded (with UseNumber);
// doc is consumed.
func (m *Mapping) ApplyObject(doc map[string]any, in Input) (*event.Event, []byte, error) {
	// Read before anything moves: appointment ids come from the input as written.
	var apptID any
	for _, p := range m.apptFrom {
		if v, ok := p.get(doc); ok && v != nil && v != "" {
			apptID = v
			break
		}
	}
	out := map[string]any{}
	var consumed []path
	for _, r := range m.fields {
		for _, sp := range r.sources {
			v, ok := sp.get(doc)
			if !ok {
				continue
			}
			if err := r.target.set(out, v); err != nil {
				return nil, nil, &Error{Step: StepFields, Field: r.name, Err: err}
			}
			consumed = append(consumed, sp)
			break
		}
	}
	for _, p := range consumed {
		p.remove(doc)
	}
	// What is left: v1 fields pass through, the rest as Unmapped says.
	var unknown []string
	for _, k := range slices.Sorted(maps.Keys(doc)) {
		v := doc[k]
		if _, isV1 := v1[k]; isV1 {
			cur, exists := out[k]
			if !exists {
				out[k] = v
				continue
			}
			cm, curObj := cur.(map[string]any)
			vm, inObj := v.(map[string]any)
			if curObj && inObj { // payload or scenario: the input's keys join the mapped ones
				shadowed := false
				for kk, vv := range vm {
					if _, set := cm[kk]; !set {
						cm[kk] = vv
					} else {
						shadowed = true
					}
				}
				if !shadowed {
					continue
				}
			}
			// The input has the field and a rule wrote it from elsewhere:
			// the input's value is not dropped silently, it is unmapped.
		}
		if m.unmapped == "payload" {
			if err := (path{{key: "payload", index: -1}, {key: k, index: -1}}).setIfAbsent(out, v); err != nil {
				return nil, nil, &Error{Step: StepUnmapped, Field: k, Err: err}
			}
			continue
		}
		unknown = append(unknown, k)
	}
	if len(unknown) > 0 {
		return nil, nil, &Error{Step: StepUnmapped, Field: strings.Join(unknown, ", "),
			Err: fmt.Errorf("input fields %s are neither mapped nor v1 fields (or a rule in fields wrote them from elsewhere): map them in fields, or set unmapped: payload", strings.Join(unknown, ", "))}
	}
	for name, vm := range m.values {
		p, _ := parsePath(name)
		if v, ok := p.get(out); ok {
			if s, isStr := v.(string); isStr {
				if to, found := vm[s]; found {
					_ = p.set(out, to)
				}
			}
		}
	}
	if _, ok := out["tenant"]; !ok && in.Tenant != "" {
		out["tenant"] = in.Tenant
	}
	for _, d := range m.defaults {
		if err := d.target.setIfAbsent(out, d.value); err != nil {
			return nil, nil, &Error{Step: StepFields, Field: d.name, Err: err}
		}
	}
	// Platforms number their chats and users; v1 ids are strings.
	for _, k := range []string{"event_id", "session_id", "user_id", "user_phone", "intent", "outcome"} {
		if n, isNum := out[k].(json.Number); isNum {
			out[k] = n.String()
		}
	}
	if err := m.timestamp(out); err != nil {
		return nil, nil, &Error{Step: StepTimestamp, Field: "timestamp", Err: err}
	}
	if err := m.crmID(out); err != nil {
		return nil, nil, &Error{Step: StepCRMID, Field: "crm_id", Err: err}
	}
	if t, _ := out["event_type"].(string); apptID != nil && event.Type(t).IsAppointment() {
		if s := scalarString(apptID); s != "" {
			_ = path{{key: "payload", index: -1}, {key: "appointment_id", index: -1}}.setIfAbsent(out, s)
		}
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, nil, &Error{Step: StepValidate, Err: fmt.Errorf("encode mapped event: %w", err)}
	}
	e, err := event.ParseWithDefaultID(b, in.DefaultID)
	if err != nil {
		return nil, b, &Error{Step: StepValidate, Err: err}
	}
	if e.EventID == in.DefaultID { // the id was derived: write it
		if b, err = e.Marshal(); err != nil {
			return nil, nil, &Error{Step: StepValidate, Err: fmt.Errorf("encode mapped event: %w", err)}
		}
	}
	return e, b, nil
}

// setIfAbsent is set for a value that does not replace one already there.
func (p path) setIfAbsent(root map[string]any, v any) error {
	if _, ok := p.get(root); ok {
		return nil
	}
	return p.set(root, v)
}

func scalarString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	}
	return ""
}

// timestamp rewrites out.timestamp as RFC 3339 with an offset.
func (m *Mapping) timestamp(out map[string]any) error {
	v, ok := out["timestamp"]
	if !ok {
		return nil // the validator says it is required
	}
	var t time.Time
	switch x := v.(type) {
	case json.Number:
		n, err := strconv.ParseFloat(x.String(), 64)
		if err != nil {
			return fmt.Errorf("%s is not a number", x)
		}
		switch m.format {
		case "unix":
			t = time.Unix(0, int64(n*1e9))
		case "unix_ms":
			t = time.UnixMilli(int64(n))
		default:
			return fmt.Errorf("is the number %s; set timestamp_format: unix or unix_ms for epoch times", x)
		}
	case string:
		var err error
		if t, err = m.parseTime(x); err != nil {
			return err
		}
	default:
		return fmt.Errorf("must be a string or a number, got %s", event.JSONType(v))
	}
	if m.loc != nil {
		t = t.In(m.loc)
	}
	out["timestamp"] = t.Format(time.RFC3339Nano)
	return nil
}

// Offset-less forms read in the time zone under rfc3339.
var localLayouts = []string{"2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999"}

func (m *Mapping) parseTime(s string) (time.Time, error) {
	switch m.format {
	case "", "rfc3339":
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return t, nil
		}
		if t, err := time.Parse(time.RFC3339Nano, strings.Replace(s, " ", "T", 1)); err == nil {
			return t, nil
		}
		for _, l := range localLayouts {
			if _, err := time.Parse(l, s); err == nil {
				if m.loc == nil {
					return time.Time{}, fmt.Errorf("%q has no UTC offset and the mapping has no time_zone to read it in", s)
				}
				return time.ParseInLocation(l, s, m.loc)
			}
		}
		return time.Time{}, fmt.Errorf("%q is not RFC 3339 (e.g. 2025-01-01T12:34:56+05:00, or without the offset when time_zone is set)", s)
	case "unix", "unix_ms":
		return time.Time{}, fmt.Errorf("is the string %q; timestamp_format %s wants a number", s, m.format)
	}
	loc := m.loc
	if loc == nil {
		loc = time.UTC
		if !strings.ContainsAny(m.format, "Z-0") { // a layout without zone needs a time zone
			return time.Time{}, fmt.Errorf("layout %q has no UTC offset and the mapping has no time_zone", m.format)
		}
	}
	t, err := time.ParseInLocation(m.format, s, loc)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q does not match timestamp_format %q", s, m.format)
	}
	return t, nil
}

// crmID makes crm_id the digits Bitrix24 uses, keeping the original.
func (m *Mapping) crmID(out map[string]any) error {
	v, ok := out["crm_id"]
	if !ok {
		return nil
	}
	if n, isNum := v.(json.Number); isNum {
		out["crm_id"] = n.String()
		return nil
	}
	s, isStr := v.(string)
	if !isStr || len(m.prefixes) == 0 {
		return nil // the validator names a wrong type or format
	}
	for _, p := range m.prefixes {
		if rest, found := strings.CutPrefix(s, p); found {
			if rest == "" || strings.Trim(rest, "0123456789") != "" {
				return fmt.Errorf("%q: after the prefix %s there must be the digits of a Bitrix24 id", s, p)
			}
			if err := m.crmOriginal.setIfAbsent(out, s); err != nil {
				return err
			}
			out["crm_id"] = rest
			return nil
		}
	}
	return nil
}
