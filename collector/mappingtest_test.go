package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/assistlog/assistlog/internal/event"
)

// mappedEvents parses the "ok" lines of mapping test's output.
func mappedEvents(t *testing.T, out string) map[string]*event.Event {
	t.Helper()
	got := map[string]*event.Event{}
	for _, l := range strings.Split(out, "\n") {
		where, rest, ok := strings.Cut(l, ": ok ")
		if !ok {
			continue
		}
		e, err := event.Parse([]byte(rest))
		if err != nil {
			t.Fatalf("%s: printed event does not validate: %v", where, err)
		}
		got[where] = e
	}
	return got
}

// TestMappingTestCommand runs collector mapping test against the example
// configuration, as an integrator would while writing a mapping.
func TestMappingTestCommand(t *testing.T) {
	t.Run("business format", func(t *testing.T) {
		var out bytes.Buffer
		err := mappingTest("collector.example.yaml", "/var/log/assistant/aurora-2026-11-27.jsonl", "", "", "testdata/mapping/business.jsonl", &out)
		if !errors.Is(err, errSamplesFailed) {
			t.Fatalf("err = %v, want the failed-samples error (lines 4 and 5 are bad)\n%s", err, out.String())
		}
		s := out.String()
		if !strings.HasPrefix(s, "mapping: files.mappings[0].mapping\n") {
			t.Errorf("does not say which mapping it used:\n%s", s)
		}
		ev := mappedEvents(t, s)
		e1, e2 := ev["line 1"], ev["line 2"]
		if e1 == nil || e2 == nil {
			t.Fatalf("lines 1 and 2 not mapped:\n%s", s)
		}
		if e1.Tenant != "salon-aurora" || e1.CRMID != "789" || e1.Payload["crm_ref"] != "LEAD_789" || e1.Timestamp != "2025-01-01T14:34:56+05:00" ||
			e1.Intent != "book_appointment" || *e1.Confidence != 0.92 || e1.Level != "info" {
			t.Errorf("line 1 mapped to %+v", e1)
		}
		if e2.Timestamp != "2025-01-01T12:40:00+05:00" || e2.Channel != "whatsapp" {
			t.Errorf("line 2: offset-less time in Ufa and WA→whatsapp, got %s %s", e2.Timestamp, e2.Channel)
		}
		for _, want := range []string{
			`line 4: ERROR mapping step timestamp (timestamp): "01.01.2025 12:41" is not RFC 3339`,
			`line 5: ERROR mapping step crm_id (crm_id): "LEAD_78x9": after the prefix LEAD_ there must be the digits`,
		} {
			if !strings.Contains(s, want) {
				t.Errorf("output lacks %q:\n%s", want, s)
			}
		}
	})
	t.Run("chatbot platform", func(t *testing.T) {
		var out bytes.Buffer
		if err := mappingTest("collector.example.yaml", "", "", "", "testdata/mapping/botpanel.jsonl", &out); err == nil ||
			!strings.Contains(err.Error(), "no files.mappings entry matches testdata/mapping/botpanel.jsonl") {
			t.Errorf("samples outside every glob: %v", err)
		}
		out.Reset()
		if err := mappingTest("collector.example.yaml", "/var/log/botpanel/x.jsonl", "", "", "testdata/mapping/botpanel.jsonl", &out); err != nil {
			t.Fatalf("%v\n%s", err, out.String())
		}
		ev := mappedEvents(t, out.String())
		e1, e2 := ev["line 1"], ev["line 2"]
		if e1 == nil || e2 == nil {
			t.Fatalf("not mapped:\n%s", out.String())
		}
		if e1.SessionID != "dlg-5521" || e1.Type != event.MessageReceived || e1.Channel != "telegram" || e1.UserID != "998877" ||
			e1.Timestamp != "2026-11-27T14:05:09+05:00" || e1.Text() != "Хочу записаться на стрижку" || e1.Payload["bot_version"] != "3.2" || e1.Tenant != "clinic-nova" {
			t.Errorf("line 1 mapped to %+v", e1)
		}
		if e2.Type != event.Error || e2.Level != "error" || e2.Payload["error"] != "calendar API timeout" || e2.SessionID != "dlg-5521" {
			t.Errorf("line 2 mapped to %+v", e2)
		}
	})
	t.Run("platform hooks", func(t *testing.T) {
		var out bytes.Buffer
		if err := mappingTest("collector.example.yaml", "", "", "aurora-whatsapp", "testdata/hooks/whatsapp-statuses.json", &out); err != nil {
			t.Fatalf("%v\n%s", err, out.String())
		}
		s := out.String()
		if !strings.Contains(s, "item 0: no event (whatsapp_status_delivered)") {
			t.Errorf("delivered receipt:\n%s", s)
		}
		e := mappedEvents(t, s)["item 1"]
		if e == nil || e.Type != event.Error || !strings.Contains(e.Payload["error"].(string), "131047 Re-engagement message") || e.Timestamp != "2025-11-27T14:01:10+05:00" {
			t.Errorf("failed delivery: %+v\n%s", e, s)
		}
		out.Reset()
		if err := mappingTest("collector.example.yaml", "", "", "nope", "testdata/hooks/whatsapp-statuses.json", &out); err == nil || !strings.Contains(err.Error(), `no hook "nope"`) {
			t.Errorf("unknown hook: %v", err)
		}
	})
}

func TestPlatformConverters(t *testing.T) {
	read := func(name string) []byte {
		b, err := readTestdata("testdata/hooks/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tg := telegramItems("aurora-telegram", read("telegram-photo.json"))
	if len(tg) != 1 || tg[0].obj == nil {
		t.Fatalf("telegram photo: %+v", tg)
	}
	p := tg[0].obj["payload"].(map[string]any)
	atts := p["attachments"].([]any)
	if p["text"] != "Вот такой дизайн хочу" || atts[0].(map[string]any)["id"] != "AgACAgIAAxkBAAIBlarge" || tg[0].id != "tg-aurora-telegram-718204512" {
		t.Errorf("telegram photo: caption as text and the largest size expected, got %v %s", p, tg[0].id)
	}
	if it := telegramItems("x", read("telegram-member.json")); len(it) != 1 || it[0].skipped != "telegram_other_update" {
		t.Errorf("my_chat_member: %+v", it)
	}
	if it := telegramItems("x", []byte(`{"message":{}}`)); len(it) != 1 || !strings.Contains(it[0].bad, "update_id is missing") {
		t.Errorf("not an update: %+v", it)
	}
	ig := instagramItems(read("instagram-message.json"))
	if len(ig) != 2 || ig[0].obj == nil || ig[1].skipped != "instagram_echo" {
		t.Fatalf("instagram: %+v", ig)
	}
	if ig[0].obj["session_id"] != "instagram:6712093384421107" || ig[0].obj["timestamp"] != "2025-11-27T10:00:00.123Z" {
		t.Errorf("instagram message: %v", ig[0].obj)
	}
	if it := whatsappItems(read("instagram-message.json")); len(it) != 1 || !strings.Contains(it[0].bad, `object is "instagram"`) {
		t.Errorf("instagram body on a whatsapp hook: %+v", it)
	}
	wa := whatsappItems(read("whatsapp-text.json"))
	if len(wa) != 1 || wa[0].obj["user_phone"] != "+79174561234" {
		t.Fatalf("whatsapp: %+v", wa)
	}
	b, _ := json.Marshal(wa[0].obj)
	// The tenant comes from the hook, not the platform.
	if _, err := event.ParseWithDefaultID(b, wa[0].id); err == nil || !strings.Contains(err.Error(), "tenant: is required") {
		t.Errorf("converted message without the hook's tenant: %v", err)
	}
}

func readTestdata(path string) ([]byte, error) { return os.ReadFile(path) }
