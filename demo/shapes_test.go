package demo

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/assistlog/assistlog/internal/event"
)

// The shared dialogues are all well formed; these synthetic ones, written in
// the SGD format the generator reads, cover the shapes other dialogue sets
// have: empty and white-space-only utterances (which a chat turns into a
// voice note, a sticker or a picture), one-turn and empty dialogues, no
// booking, bookings announced without words, any script, texts past a
// channel's 4096-character limit.

func sgdTurn(speaker, utterance string, frames ...map[string]any) map[string]any {
	if frames == nil {
		frames = []map[string]any{}
	}
	return map[string]any{"speaker": speaker, "utterance": utterance, "frames": frames}
}

func userFrame(service, intent string) map[string]any {
	return map[string]any{"service": service, "actions": []any{map[string]any{"act": "INFORM", "slot": "city", "values": []any{"Moscow"}}},
		"slots": []any{}, "state": map[string]any{"active_intent": intent, "requested_slots": []any{}, "slot_values": map[string]any{}}}
}

// bookingFrame is a SYSTEM frame that calls BookAppointment and reports act
// (NOTIFY_SUCCESS or NOTIFY_FAILURE).
func bookingFrame(service, act string) map[string]any {
	return map[string]any{"service": service, "actions": []any{map[string]any{"act": act, "slot": "", "values": []any{}}},
		"slots":           []any{},
		"service_call":    map[string]any{"method": "BookAppointment", "parameters": map[string]any{"stylist_name": "Атэлье «Ёж»", "appointment_date": "March 8th", "appointment_time": "2 pm"}},
		"service_results": []any{}}
}

func sgdDialogue(id, service string, turns ...map[string]any) map[string]any {
	if turns == nil {
		turns = []map[string]any{}
	}
	return map[string]any{"dialogue_id": id, "services": []any{"Restaurants_1", service}, "turns": turns}
}

func shapeDialogues() []map[string]any {
	long := strings.Repeat("Мне нужна стрижка в пятницу, желательно после обеда. ", 100) // 5,300 characters
	emoji := strings.Repeat("💇‍♀️", 1500)                                                // 6,000 characters without a space
	spaced := "a" + strings.Repeat(" ", 9000) + "b"
	s1, s2, s3, s4 := "Services_1", "Services_2", "Services_3", "Services_4"
	return []map[string]any{
		sgdDialogue("x_00001", s1,
			sgdTurn("USER", "I need a stylist", userFrame(s1, "FindProvider")),
			sgdTurn("SYSTEM", ""),
			sgdTurn("USER", "ok", userFrame(s1, "FindProvider")),
			sgdTurn("SYSTEM", "Goodbye")),
		sgdDialogue("x_00002", s2,
			sgdTurn("USER", "", userFrame(s2, "BookAppointment")),
			sgdTurn("SYSTEM", "Which dentist?")),
		sgdDialogue("x_00003", s3,
			sgdTurn("USER", "", userFrame(s3, "NONE")),
			sgdTurn("SYSTEM", "How can I help?"),
			sgdTurn("USER", "")),
		sgdDialogue("x_00004", s4,
			sgdTurn("USER", "   ", userFrame(s4, "FindProvider")),
			sgdTurn("SYSTEM", "\t\n"),
			sgdTurn("USER", "\u00a0\u3000\u200a"),
			sgdTurn("SYSTEM", " \u2003 \ufeff")),
		sgdDialogue("x_00005", s1, sgdTurn("USER", "Hi", userFrame(s1, "FindProvider"))),
		sgdDialogue("x_00006", s2, sgdTurn("SYSTEM", "Hello! How can I help?")),
		sgdDialogue("x_00007", s3),
		sgdDialogue("x_00008", s1,
			sgdTurn("USER", "Find me a salon in Moscow", userFrame(s1, "FindProvider")),
			sgdTurn("SYSTEM", "I found 10 salons."),
			sgdTurn("USER", "Thanks, that's all", userFrame(s1, "FindProvider")),
			sgdTurn("SYSTEM", "Have a nice day"),
			sgdTurn("USER", "bye", userFrame(s1, "NONE")),
			sgdTurn("SYSTEM", "bye")),
		// A booking the assistant confirms with a card and no words, then a
		// second one that fails, also without words.
		sgdDialogue("x_00009", s1,
			sgdTurn("USER", "Book me at Атэлье «Ёж» on March 8th", userFrame(s1, "BookAppointment")),
			sgdTurn("SYSTEM", "Please confirm: March 8th, 2 pm?"),
			sgdTurn("USER", "Yes", userFrame(s1, "BookAppointment")),
			sgdTurn("SYSTEM", "", bookingFrame(s1, "NOTIFY_SUCCESS")),
			sgdTurn("USER", "And another one at 3 pm", userFrame(s1, "BookAppointment")),
			sgdTurn("SYSTEM", " ", bookingFrame(s1, "NOTIFY_FAILURE")),
			sgdTurn("USER", "", userFrame(s1, "BookAppointment")),
			sgdTurn("SYSTEM", "Sorry, 3 pm is taken.")),
		sgdDialogue("x_00010", s2,
			sgdTurn("USER", "Запишите меня к стоматологу 🦷, пожалуйста", userFrame(s2, "BookAppointment")),
			sgdTurn("SYSTEM", "مرحبا! 你好！ Combining: é (e\u0301), zero width:\u200b, bell:\u0007, NUL:\u0000, <b>&amp;</b>", bookingFrame(s2, "NOTIFY_SUCCESS")),
			sgdTurn("USER", "👍🏽", userFrame(s2, "NONE"))),
		sgdDialogue("x_00011", s4,
			sgdTurn("USER", long, userFrame(s4, "FindProvider")),
			sgdTurn("SYSTEM", emoji),
			sgdTurn("USER", spaced, userFrame(s4, "FindProvider")),
			sgdTurn("SYSTEM", strings.Repeat("я", 4096))),
		// Long enough for a handoff and a complaint at any position.
		sgdDialogue("x_00012", s3, func() []map[string]any {
			var ts []map[string]any
			for i := 0; i < 15; i++ {
				u := fmt.Sprintf("question %d", i)
				if i%4 == 1 {
					u = ""
				}
				ts = append(ts, sgdTurn("USER", u, userFrame(s3, []string{"FindProvider", "BookAppointment"}[i%2])))
				sys := fmt.Sprintf("answer %d", i)
				if i%3 == 2 {
					sys = "\n"
				}
				ts = append(ts, sgdTurn("SYSTEM", sys))
			}
			return ts
		}()...),
	}
}

// writeSGD writes dialogues as an SGD-style JSONL file and returns its
// directory, so the test goes through the generator's own reader.
func writeSGD(t *testing.T, ds []map[string]any) string {
	t.Helper()
	dir := t.TempDir()
	var buf bytes.Buffer
	for _, d := range ds {
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	if err := os.WriteFile(filepath.Join(dir, "synthetic.jsonl"), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(event.SchemaJSON))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("schema.v1.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("schema.v1.json")
	if err != nil {
		t.Fatal(err)
	}
	return sch
}

// tally is an independent count of written events, from their JSON alone.
type tally struct {
	events, low, leads                         int
	sessions                                   map[string]bool
	byType, byTenant, byChannel, byLevel, kind map[string]int
	tenantType                                 map[string]map[string]int
	phones                                     map[string]bool
	first, last                                time.Time
	// per session: texts of the customer's and the assistant's messages,
	// and how many of each are media-only.
	text       map[string]map[string]*strings.Builder
	mediaOnly  map[string]map[string]int
	confirmed  map[string]int
	started    map[string]int
	ended      map[string]int
	nonContact map[string]int
}

func newTally() *tally {
	return &tally{sessions: map[string]bool{}, byType: map[string]int{}, byTenant: map[string]int{}, byChannel: map[string]int{},
		byLevel: map[string]int{}, kind: map[string]int{}, tenantType: map[string]map[string]int{}, phones: map[string]bool{},
		text: map[string]map[string]*strings.Builder{}, mediaOnly: map[string]map[string]int{},
		confirmed: map[string]int{}, started: map[string]int{}, ended: map[string]int{}, nonContact: map[string]int{}}
}

func (c *tally) add(t *testing.T, line []byte) {
	t.Helper()
	var m struct {
		Tenant, Channel, Level, Intent string
		Session                        string   `json:"session_id"`
		Type                           string   `json:"event_type"`
		Timestamp                      string   `json:"timestamp"`
		Phone                          string   `json:"user_phone"`
		Confidence                     *float64 `json:"confidence"`
		Payload                        struct {
			Text        *string `json:"text"`
			Attachments []struct {
				Kind string `json:"kind"`
			} `json:"attachments"`
		} `json:"payload"`
	}
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatal(err)
	}
	ts, err := time.Parse(time.RFC3339Nano, m.Timestamp)
	if err != nil {
		t.Fatal(err)
	}
	ts = ts.UTC()
	if c.first.IsZero() || ts.Before(c.first) {
		c.first = ts
	}
	if ts.After(c.last) {
		c.last = ts
	}
	c.events++
	c.sessions[m.Tenant+"/"+m.Session] = true
	c.byType[m.Type]++
	c.byTenant[m.Tenant]++
	c.byChannel[m.Channel]++
	c.byLevel[m.Level]++
	if c.tenantType[m.Tenant] == nil {
		c.tenantType[m.Tenant] = map[string]int{}
	}
	c.tenantType[m.Tenant][m.Type]++
	if m.Confidence != nil && *m.Confidence < 0.6 {
		c.low++
	}
	if m.Type == "lead.created" {
		c.leads++
	}
	if m.Phone != "" {
		c.phones[m.Phone] = true
	}
	for _, a := range m.Payload.Attachments {
		c.kind[a.Kind]++
	}
	switch m.Type {
	case "session.started":
		c.started[m.Session]++
	case "session.ended":
		c.ended[m.Session]++
	case "appointment.confirmed":
		c.confirmed[m.Session]++
	case "message.received", "message.sent":
		if m.Intent == "ProvideContact" {
			return // the synthetic contact exchange, not a dialogue turn
		}
		if c.text[m.Session] == nil {
			c.text[m.Session] = map[string]*strings.Builder{"message.received": {}, "message.sent": {}}
			c.mediaOnly[m.Session] = map[string]int{}
		}
		if m.Payload.Text != nil {
			c.text[m.Session][m.Type].WriteString(*m.Payload.Text)
		}
		if (m.Payload.Text == nil || *m.Payload.Text == "") && len(m.Payload.Attachments) > 0 {
			c.mediaOnly[m.Session][m.Type]++
		}
	}
}

func withoutSpace(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) || r == '\ufeff' {
			return -1
		}
		return r
	}, s)
}

// TestEveryDialogueShape generates events from synthetic dialogues of every
// shape under many seeds and rates, and checks what is written: every event
// passes both the Go validator and the published JSON Schema, the truth
// equals an independent count of the written lines, and every turn of the
// dialogue is in the output: its words, or one media message for a turn
// without words.
func TestEveryDialogueShape(t *testing.T) {
	raw := shapeDialogues()
	ds, err := LoadDialogues(writeSGD(t, raw))
	if err != nil {
		t.Fatal(err)
	}
	sch := compileSchema(t)
	cfgs := []Config{testConfig()}
	for seed := uint64(1); seed <= 12; seed++ {
		c := testConfig()
		c.Seed, c.Rounds = seed, 2
		c.ErrorRate, c.HandoffRate, c.ComplaintRate, c.FollowUpShare, c.LowConfidenceShare = 0.5, 1, 1, 1, 0.5
		cfgs = append(cfgs, c)
	}
	for _, cfg := range cfgs {
		t.Run(fmt.Sprintf("seed=%d,rounds=%d", cfg.Seed, cfg.Rounds), func(t *testing.T) {
			evs, truth, err := Generate(ds, cfg)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			paths, err := WriteFiles(evs, FileOptions{Dir: dir, Files: 2})
			if err != nil {
				t.Fatal(err)
			}
			c := newTally()
			for _, p := range paths {
				f, err := os.Open(p)
				if err != nil {
					t.Fatal(err)
				}
				sc := bufio.NewScanner(f)
				sc.Buffer(nil, 1<<20)
				for sc.Scan() {
					line := sc.Bytes()
					if _, err := event.Parse(line); err != nil {
						t.Errorf("the collector would dead-letter a generated event: %v\n%s", err, line)
					}
					inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(line))
					if err != nil {
						t.Fatal(err)
					}
					if err := sch.Validate(inst); err != nil {
						t.Errorf("schema.v1.json rejects a generated event: %v\n%s", err, line)
					}
					c.add(t, line)
				}
				f.Close()
				if err := sc.Err(); err != nil {
					t.Fatal(err)
				}
			}
			checkTruth(t, truth, c)
			checkTurns(t, raw, cfg.Rounds, c)
		})
	}
}

func checkTruth(t *testing.T, truth *Truth, c *tally) {
	t.Helper()
	eq := func(what string, got, want any) {
		t.Helper()
		gb, _ := json.Marshal(got)
		wb, _ := json.Marshal(want)
		if !bytes.Equal(gb, wb) {
			t.Errorf("truth %s = %s, the written lines say %s", what, gb, wb)
		}
	}
	var phones []string
	for p := range c.phones {
		phones = append(phones, p)
	}
	sort.Strings(phones)
	eq("events", truth.Events, c.events)
	eq("sessions", truth.Sessions, len(c.sessions))
	eq("by_type", truth.ByType, c.byType)
	eq("by_tenant", truth.ByTenant, c.byTenant)
	eq("by_channel", truth.ByChannel, c.byChannel)
	eq("by_level", truth.ByLevel, c.byLevel)
	eq("by_tenant_type", truth.TenantType, c.tenantType)
	eq("low_confidence", truth.LowConfidence, c.low)
	eq("leads", truth.Leads, c.leads)
	eq("phones", truth.Phones, phones)
	eq("attachments", truth.Attachments, c.kind)
	eq("first", truth.First, c.first)
	eq("last", truth.Last, c.last)
}

// checkTurns compares each session with its dialogue, read from the raw
// maps: every word of every turn is in a message of the right direction,
// each turn without words is exactly one media-only message, each
// NOTIFY_SUCCESS of a booking call is one appointment.confirmed.
func checkTurns(t *testing.T, raw []map[string]any, rounds int, c *tally) {
	t.Helper()
	for round := 0; round < rounds; round++ {
		for _, d := range raw {
			id := "sgd-" + d["dialogue_id"].(string)
			if round > 0 {
				id += fmt.Sprintf("-r%d", round)
			}
			words := map[string]*strings.Builder{"message.received": {}, "message.sent": {}}
			blank := map[string]int{}
			success := 0
			for _, tr := range d["turns"].([]map[string]any) {
				typ := "message.sent"
				if tr["speaker"] == "USER" {
					typ = "message.received"
				}
				u := withoutSpace(tr["utterance"].(string))
				words[typ].WriteString(u)
				if u == "" {
					blank[typ]++
				}
				for _, f := range tr["frames"].([]map[string]any) {
					if call, _ := f["service_call"].(map[string]any); call != nil && call["method"] == "BookAppointment" {
						for _, a := range f["actions"].([]any) {
							if a.(map[string]any)["act"] == "NOTIFY_SUCCESS" {
								success++
							}
						}
					}
				}
			}
			if c.started[id] != 1 || c.ended[id] != 1 {
				t.Errorf("%s: %d session.started, %d session.ended, want 1 each", id, c.started[id], c.ended[id])
			}
			if c.confirmed[id] != success {
				t.Errorf("%s: %d appointment.confirmed, the dialogue has %d NOTIFY_SUCCESS", id, c.confirmed[id], success)
			}
			for _, typ := range []string{"message.received", "message.sent"} {
				var got string
				if c.text[id] != nil {
					got = withoutSpace(c.text[id][typ].String())
				}
				if want := words[typ].String(); got != want {
					t.Errorf("%s: the words of %s differ from the dialogue's:\n got %.80q…\nwant %.80q…", id, typ, got, want)
				}
				if got := c.mediaOnly[id][typ]; got != blank[typ] {
					t.Errorf("%s: %d media-only %s, the dialogue has %d turns without words", id, got, typ, blank[typ])
				}
			}
		}
	}
}

// TestUnusableDialogueIsAnError: a dialogue whose id cannot make a valid
// event id is refused with its name, rather than written for the collector
// to dead-letter while the truth counts it.
func TestUnusableDialogueIsAnError(t *testing.T) {
	for _, id := range []string{"x/1", strings.Repeat("9", 200)} {
		ds, err := LoadDialogues(writeSGD(t, []map[string]any{
			sgdDialogue("ok_1", "Services_1", sgdTurn("USER", "hi", userFrame("Services_1", "FindProvider"))),
			sgdDialogue(id, "Services_1", sgdTurn("USER", "hi", userFrame("Services_1", "FindProvider"))),
		}))
		if err != nil {
			t.Fatal(err)
		}
		evs, truth, err := Generate(ds, testConfig())
		if err == nil || !strings.Contains(err.Error(), "dialogue "+id) || !strings.Contains(err.Error(), "event_id") {
			t.Errorf("dialogue %.20q: err = %v, want one naming the dialogue and event_id", id, err)
		}
		if evs != nil || truth != nil {
			t.Errorf("dialogue %.20q: %d events and a truth came back with the error", id, len(evs))
		}
	}
}
