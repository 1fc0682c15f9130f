package mapping

import (
	"encoding/json"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func compile(t *testing.T, y string) *Mapping {
	t.Helper()
	var c Config
	if err := yaml.Unmarshal([]byte(y), &c); err != nil {
		t.Fatal(err)
	}
	m, err := Compile(c)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return m
}

// The business's documented line, as the issue quotes it (with a real
// number for the placeholder +7XXXXXXXXXX), is accepted with a tenant added.
const businessLine = `{ "timestamp":"2025-01-01T12:34:56+03:00", "channel":"whatsapp", "session_id":"sess_12345", "user_phone":"+79161234567", "event_type":"appointment.confirmed", "intent":"book_appointment", "confidence":0.92, "crm_id":"LEAD_789" }`

func TestBusinessProfile(t *testing.T) {
	m := compile(t, "profile: business\ndefaults: {tenant: salon-aurora}\n")
	e, b, err := m.Apply([]byte(businessLine), Input{DefaultID: "f-abc-0"})
	if err != nil {
		t.Fatal(err)
	}
	if e.Tenant != "salon-aurora" || e.Level != "info" || e.SchemaVersion != 1 || e.EventID != "f-abc-0" {
		t.Errorf("defaults not applied: %+v", e)
	}
	if e.CRMID != "789" || e.Payload["crm_ref"] != "LEAD_789" {
		t.Errorf("crm_id = %q, payload.crm_ref = %v; want 789 and the original LEAD_789", e.CRMID, e.Payload["crm_ref"])
	}
	if e.Payload["appointment_id"] != "LEAD_789" {
		t.Errorf("payload.appointment_id = %v, want the original crm id", e.Payload["appointment_id"])
	}
	// The instant is the one written; shown in Ufa's offset.
	if e.Timestamp != "2025-01-01T14:34:56+05:00" {
		t.Errorf("timestamp = %s", e.Timestamp)
	}
	var back map[string]any
	if err := json.Unmarshal(b, &back); err != nil || back["event_id"] != "f-abc-0" {
		t.Errorf("encoded event lacks the derived id: %s", b)
	}
}

func TestPlatformMapping(t *testing.T) {
	m := compile(t, `
fields:
  session_id: [conversation.id, chat_id]
  event_type: kind
  payload.text: message.text
  user_id: message.from.id
  timestamp: created
  channel: source
values:
  channel: {WA: whatsapp, TG: telegram}
  event_type: {incoming: message.received}
defaults: {tenant: clinic-nova, level: info, schema_version: 1}
timestamp_format: "02.01.2006 15:04:05"
time_zone: Asia/Yekaterinburg
unmapped: payload
`)
	line := `{"conversation":{"id":"c-77"},"kind":"incoming","source":"TG","created":"05.03.2026 09:15:00",
	  "message":{"text":"Здравствуйте, можно записаться?","from":{"id":42}},"bot":"v3"}`
	e, _, err := m.Apply([]byte(line), Input{DefaultID: "w-1"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"session": "c-77", "type": "message.received", "channel": "telegram",
		"time": "2026-03-05T09:15:00+05:00", "text": "Здравствуйте, можно записаться?", "user": "42"}
	got := map[string]string{"session": e.SessionID, "type": string(e.Type), "channel": e.Channel,
		"time": e.Timestamp, "text": e.Text(), "user": e.UserID}
	for k := range want {
		if want[k] != got[k] {
			t.Errorf("%s = %q, want %q", k, got[k], want[k])
		}
	}
	if e.Payload["bot"] != "v3" {
		t.Errorf("unmapped field not kept in payload: %v", e.Payload)
	}
	if _, left := e.Payload["message"]; left {
		t.Errorf("consumed fields left behind in payload: %v", e.Payload)
	}
}

func TestApplyErrorsNameTheStep(t *testing.T) {
	m := compile(t, "profile: business\ndefaults: {tenant: salon-aurora}\n")
	strict := compile(t, "defaults: {tenant: salon-aurora, level: info, schema_version: 1}\n")
	noZone := compile(t, "defaults: {tenant: salon-aurora}\n")
	cases := []struct {
		m          *Mapping
		line, step string
		want       string
	}{
		{m, `[1,2]`, StepParse, "not a JSON object"},
		{m, `{"timestamp":"yesterday","channel":"whatsapp"}`, StepTimestamp, `"yesterday" is not RFC 3339`},
		{noZone, `{"timestamp":"2025-01-01 12:34:56"}`, StepTimestamp, "no UTC offset"},
		{m, `{"timestamp":"2025-01-01T12:34:56Z","crm_id":"LEAD_x9"}`, StepCRMID, `"LEAD_x9": after the prefix LEAD_`},
		{strict, `{"timestamp":"2025-01-01T12:34:56Z","chanel":"whatsapp"}`, StepUnmapped, "chanel"},
		{m, `{"timestamp":"2025-01-01T12:34:56Z","channel":"viber","session_id":"s","event_type":"session.started"}`, StepValidate, `channel: must be one of`},
	}
	for _, c := range cases {
		_, _, err := c.m.Apply([]byte(c.line), Input{DefaultID: "x"})
		if err == nil {
			t.Errorf("%s: accepted", c.line)
			continue
		}
		if StepOf(err) != c.step || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got step %q error %q; want step %q containing %q", c.line, StepOf(err), err, c.step, c.want)
		}
	}
}

func TestOffsetlessTimestampReadInZone(t *testing.T) {
	m := compile(t, "profile: business\ndefaults: {tenant: salon-aurora}\n")
	e, _, err := m.Apply([]byte(`{"timestamp":"2025-01-01 12:34:56","channel":"WA","session_id":"s1","event_type":"session.started"}`), Input{DefaultID: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if e.Timestamp != "2025-01-01T12:34:56+05:00" || e.Channel != "whatsapp" {
		t.Errorf("timestamp %s channel %s; want Ufa's 12:34:56+05:00 and whatsapp", e.Timestamp, e.Channel)
	}
}

func TestCompileErrorsNameTheField(t *testing.T) {
	y := `
profile: nope
fields:
  sesion_id: chat.id
  payload: data
  payload.text: "message..text"
  scenario.step: a
  user_id: "items[x]"
defaults: {level: verbose, tenant: Salon}
values:
  channel: {WA: whatsap}
  confidence: {high: "0.9"}
timestamp_format: "dd.mm.yyyy"
time_zone: Mars/Olympus
crm_id_prefixes: [LEAD_]
unmapped: drop
`
	var c Config
	if err := yaml.Unmarshal([]byte(y), &c); err != nil {
		t.Fatal(err)
	}
	if _, err := Compile(c); err == nil || !strings.Contains(err.Error(), `profile: unknown profile "nope"`) {
		t.Errorf("unknown profile: %v", err)
	}
	c.Profile = ""
	_, err := Compile(c)
	if err == nil {
		t.Fatal("compiled")
	}
	for _, want := range []string{
		`fields.sesion_id: unknown target field "sesion_id"`,
		`fields.payload.text: conflicts with fields.payload`,
		`fields.payload.text[0]: path "message..text": empty key`,
		`fields.scenario.step: unknown target field`,
		`fields.user_id[0]: path "items[x]": index "x"`,
		`defaults.level: must be one of info, warning, error, got "verbose"`,
		`defaults.tenant: must be a tenant name`,
		`values.channel.WA: maps to "whatsap"`,
		`values.confidence: value maps apply to string fields`,
		`timestamp_format: must be rfc3339`,
		`time_zone: unknown IANA time zone "Mars/Olympus"`,
		`crm_id_original: is required with crm_id_prefixes`,
		`unmapped: must be error or payload, got "drop"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestPaths(t *testing.T) {
	var doc any
	_ = json.Unmarshal([]byte(`{"entry":[{"changes":[{"value":{"id":"x"}}]}],"a.b":1}`), &doc)
	p, err := parsePath("entry[0].changes[0].value.id")
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := p.get(doc); !ok || v != "x" {
		t.Errorf("get = %v %v", v, ok)
	}
	if p.String() != "entry[0].changes[0].value.id" {
		t.Errorf("String() = %s", p)
	}
	for _, bad := range []string{"", ".a", "a.", "a[", "a]", "a[1]b", "a[-1]"} {
		if _, err := parsePath(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	if _, ok := (path{{key: "nope", index: -1}}).get(doc); ok {
		t.Error("missing key found")
	}
}

// TestShadowedInputIsNotDropped: an input field a rule overwrote from
// elsewhere is kept (unmapped: payload) or an error, never dropped.
func TestShadowedInputIsNotDropped(t *testing.T) {
	line := []byte(`{"channel":"bot-12","messenger":"TG","session_id":"s","event_type":"session.started","timestamp":"2026-01-01T10:00:00Z"}`)
	keep := compile(t, "fields: {channel: messenger}\nvalues: {channel: {TG: telegram}}\ndefaults: {tenant: t, level: info, schema_version: 1}\nunmapped: payload\n")
	e, _, err := keep.Apply(line, Input{DefaultID: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if e.Channel != "telegram" || e.Payload["channel"] != "bot-12" {
		t.Errorf("channel %q, payload %v; want telegram with the input's bot-12 kept", e.Channel, e.Payload)
	}
	strict := compile(t, "fields: {channel: messenger}\nvalues: {channel: {TG: telegram}}\ndefaults: {tenant: t, level: info, schema_version: 1}\n")
	if _, _, err := strict.Apply(line, Input{DefaultID: "x"}); StepOf(err) != StepUnmapped || !strings.Contains(err.Error(), "channel") {
		t.Errorf("strict: %v", err)
	}
}
