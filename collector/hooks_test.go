package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/assistlog/assistlog/internal/deadletter"
	"github.com/assistlog/assistlog/internal/event"
	"github.com/assistlog/assistlog/internal/pii"
	"github.com/assistlog/assistlog/internal/pipelinetest"
	"github.com/assistlog/assistlog/internal/proctest"
	"github.com/assistlog/assistlog/internal/stacktest"
)

const (
	tgSecret      = "tg-secret-aurora-0123456789"
	metaAppSecret = "meta-app-secret-aurora-0123456789"
	metaVerify    = "meta-verify-aurora-0123456789"
	panelToken    = "panel-token-aurora-0123456789"
)

// withHooks configures the webhook with the four hook kinds for
// salon-aurora, and mappings for the files business-*.jsonl (the
// business's documented format) and panel-*.jsonl (a chatbot platform).
func withHooks() envOption {
	return func(e *env, s *envSettings) {
		e.webhookAddr = proctest.FreeAddr(e.t)
		s.files += fmt.Sprintf(`  mappings:
    - match: [%q]
      mapping: {profile: business, defaults: {tenant: salon-aurora}}
    - match: [%q]
      mapping:
        fields: {session_id: dialog.id, event_type: kind, channel: messenger, timestamp: created_at, payload.text: message.text, user_id: client.id}
        values: {channel: {TG: telegram, WA: whatsapp}, event_type: {incoming: message.received}}
        defaults: {tenant: clinic-nova, level: info, schema_version: 1}
        timestamp_format: "02.01.2006 15:04:05"
        time_zone: Asia/Yekaterinburg
        unmapped: payload
`, filepath.Join(e.logDir, "business-*.jsonl"), filepath.Join(e.logDir, "panel-*.jsonl"))
		s.extra += fmt.Sprintf(`webhook:
  listen: %s
  max_body_bytes: 65536
  produce_timeout: 5s
  tenants:
    - {tenant: salon-aurora, tokens: [%q], mapping: {profile: business}}
  hooks:
    - {name: aurora-telegram, kind: telegram, tenant: salon-aurora, secret_token: %q, mapping: {time_zone: Asia/Yekaterinburg}}
    - {name: aurora-whatsapp, kind: whatsapp, tenant: salon-aurora, app_secret: %q, verify_token: %q, mapping: {time_zone: Asia/Yekaterinburg}}
    - {name: aurora-instagram, kind: instagram, tenant: salon-aurora, app_secret: %q, verify_token: %q}
    - name: panel
      kind: json
      tenant: salon-aurora
      tokens: [%q]
      mapping: {fields: {session_id: conversation.id, payload.text: text, timestamp: time}, defaults: {channel: web, level: info, schema_version: 1, event_type: message.received}}
`, e.webhookAddr, testToken, tgSecret, metaAppSecret, metaVerify, metaAppSecret, metaVerify, panelToken)
	}
}

func hookPost(t *testing.T, addr, name string, body []byte, headers map[string]string) (int, Response) {
	t.Helper()
	return postRaw(t, "http://"+addr+"/v1/hooks/"+name, body, headers)
}

func postRaw(t *testing.T, u string, body []byte, headers map[string]string) (int, Response) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var r Response
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("response is not JSON: %s", raw)
	}
	return resp.StatusCode, r
}

// metaSign signs as Meta does: HMAC-SHA256 of the raw body with the app
// secret, hex, prefixed sha256=.
func metaSign(body []byte) map[string]string {
	mac := hmac.New(sha256.New, []byte(metaAppSecret))
	mac.Write(body)
	return map[string]string{HeaderHubSignature: "sha256=" + hex.EncodeToString(mac.Sum(nil))}
}

func testdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// uniq makes a platform sample unique per run (ids feed the derived event
// ids, and the topics are fresh anyway, but ES aliases are shared).
func uniq(b []byte, old, new string) []byte { return bytes.ReplaceAll(b, []byte(old), []byte(new)) }

// TestHooks: each hook kind authenticates the way its platform signs,
// refuses bad credentials before anything reaches Kafka, and every
// accepted event is in Kafka when the platform gets its 200.
func TestHooks(t *testing.T) {
	e := newEnv(t, withHooks())
	e.start()
	tgText := testdata(t, "hooks/telegram-text.json")
	waText := testdata(t, "hooks/whatsapp-text.json")

	t.Run("refused", func(t *testing.T) {
		cases := []struct {
			name, hook string
			body       []byte
			headers    map[string]string
			code       int
		}{
			{"telegram without secret", "aurora-telegram", tgText, nil, 401},
			{"telegram wrong secret", "aurora-telegram", tgText, map[string]string{HeaderTelegramSecret: "wrong-secret-0123456789"}, 403},
			{"whatsapp unsigned", "aurora-whatsapp", waText, nil, 401},
			{"whatsapp signed with another secret", "aurora-whatsapp", waText, map[string]string{HeaderHubSignature: "sha256=" + strings.Repeat("ab", 32)}, 403},
			{"whatsapp body changed after signing", "aurora-whatsapp", uniq(waText, "Добрый", "Злой"), metaSign(waText), 403},
			{"instagram signature of whatsapp's body", "aurora-instagram", testdata(t, "hooks/instagram-message.json"), metaSign(waText), 403},
			{"json hook unknown token", "panel", []byte(`{"conversation":{"id":"c"},"text":"hi","time":"2026-11-27T10:00:00Z"}`), map[string]string{"Authorization": "Bearer not-the-panel-token-0000"}, 403},
			{"unknown hook", "viber", tgText, nil, 404},
		}
		for _, c := range cases {
			code, r := hookPost(t, e.webhookAddr, c.hook, c.body, c.headers)
			if code != c.code || r.Error == "" || r.Accepted != 0 {
				t.Errorf("%s: %d %+v, want %d with the reason", c.name, code, r, c.code)
			}
		}
		if n := len(stacktest.ReadTopic(t, e.ep.KafkaBrokers, e.topic)) + len(stacktest.ReadTopic(t, e.ep.KafkaBrokers, e.dlq)); n != 0 {
			t.Errorf("refused requests wrote %d messages to Kafka", n)
		}
	})

	t.Run("meta verification handshake", func(t *testing.T) {
		get := func(token string) (int, string) {
			q := url.Values{"hub.mode": {"subscribe"}, "hub.verify_token": {token}, "hub.challenge": {"1158201444"}}
			resp, err := http.Get("http://" + e.webhookAddr + "/v1/hooks/aurora-whatsapp?" + q.Encode())
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		if code, body := get(metaVerify); code != 200 || body != "1158201444" {
			t.Errorf("right verify token: %d %q, want 200 and the challenge", code, body)
		}
		if code, body := get("not-the-token"); code != 403 || strings.Contains(body, "1158201444") {
			t.Errorf("wrong verify token: %d %q, want 403 without the challenge", code, body)
		}
	})

	t.Run("accepted", func(t *testing.T) {
		code, r := hookPost(t, e.webhookAddr, "aurora-telegram", tgText, map[string]string{HeaderTelegramSecret: tgSecret})
		if code != 200 || r.Accepted != 1 {
			t.Fatalf("telegram: %d %+v", code, r)
		}
		// Telegram retries an update it got no 2xx for: same update, same id.
		if code, _ := hookPost(t, e.webhookAddr, "aurora-telegram", tgText, map[string]string{HeaderTelegramSecret: tgSecret}); code != 200 {
			t.Fatalf("telegram retry: %d", code)
		}
		code, r = hookPost(t, e.webhookAddr, "aurora-telegram", testdata(t, "hooks/telegram-member.json"), map[string]string{HeaderTelegramSecret: tgSecret})
		if code != 200 || r.Accepted != 0 || len(r.Skipped) != 1 {
			t.Errorf("my_chat_member update: %d %+v, want 200 and skipped", code, r)
		}
		code, r = hookPost(t, e.webhookAddr, "aurora-whatsapp", waText, metaSign(waText))
		if code != 200 || r.Accepted != 1 {
			t.Fatalf("whatsapp: %d %+v", code, r)
		}
		st := testdata(t, "hooks/whatsapp-statuses.json")
		code, r = hookPost(t, e.webhookAddr, "aurora-whatsapp", st, metaSign(st))
		if code != 200 || r.Accepted != 1 || len(r.Skipped) != 1 || r.Skipped[0] != "whatsapp_status_delivered" {
			t.Fatalf("whatsapp statuses: %d %+v", code, r)
		}
		ig := testdata(t, "hooks/instagram-message.json")
		code, r = hookPost(t, e.webhookAddr, "aurora-instagram", ig, metaSign(ig))
		if code != 200 || r.Accepted != 1 || len(r.Skipped) != 1 {
			t.Fatalf("instagram: %d %+v", code, r)
		}
		// Signed, so from Meta, but not the documented shape: dead-lettered
		// with the body as sent, and 200 so Meta stops retrying it.
		bad := []byte(`{"object":"page","entry":[]}`)
		code, r = hookPost(t, e.webhookAddr, "aurora-whatsapp", bad, metaSign(bad))
		if code != 200 || len(r.Rejected) != 1 || r.Rejected[0].Reason != ReasonHookPayload {
			t.Errorf("signed wrong shape: %d %+v", code, r)
		}
		code, r = hookPost(t, e.webhookAddr, "panel", []byte(`{"conversation":{"id":"c-1"},"text":"Здравствуйте","time":"2026-11-27T10:00:00"}`),
			map[string]string{"Authorization": "Bearer " + panelToken})
		if code != 400 || len(r.Rejected) != 1 || !strings.Contains(r.Rejected[0].Error, "mapping step timestamp") {
			t.Errorf("json hook, offset-less time without time_zone: %d %+v", code, r)
		}

		// POST /v1/events with the tenant's mapping: the business's line,
		// without a tenant, gets the credentials' tenant.
		biz := []byte(`{ "timestamp":"2025-01-01T12:34:56+03:00", "channel":"whatsapp", "session_id":"sess_wh", "user_phone":"+79161234567", "event_type":"appointment.confirmed", "intent":"book_appointment", "confidence":0.92, "crm_id":"LEAD_789" }`)
		code, r = postRaw(t, "http://"+e.webhookAddr+"/v1/events", biz, map[string]string{"Authorization": "Bearer " + testToken})
		if code != 202 || r.Accepted != 1 {
			t.Errorf("business line on /v1/events: %d %+v", code, r)
		}

		// Everything answered 200/202 is in Kafka already.
		byID := map[string]*event.Event{}
		for _, m := range stacktest.ReadTopic(t, e.ep.KafkaBrokers, e.topic) {
			ev, err := event.Parse(m.Value)
			if err != nil {
				t.Fatalf("invalid event in Kafka: %v", err)
			}
			if prev, dup := byID[ev.EventID]; dup && string(mustJSON(prev)) != string(m.Value) {
				t.Errorf("retried update %s changed its event", ev.EventID)
			}
			byID[ev.EventID] = ev
		}
		tg := byID["tg-aurora-telegram-718204511"]
		if tg == nil || tg.Tenant != "salon-aurora" || tg.Channel != "telegram" || tg.Timestamp != "2025-11-27T13:00:00+05:00" ||
			tg.SessionID != "telegram:5120334871" || tg.Type != event.MessageReceived || tg.Text() != "Здравствуйте! Можно записаться на маникюр в субботу?" {
			t.Errorf("telegram event: %+v", tg)
		}
		var wa, waErr, igEv *event.Event
		for _, ev := range byID {
			switch {
			case ev.Channel == "whatsapp" && ev.Type == event.MessageReceived:
				wa = ev
			case ev.Channel == "whatsapp" && ev.Type == event.Error:
				waErr = ev
			case ev.Channel == "instagram":
				igEv = ev
			}
		}
		if wa == nil || wa.UserPhone != "+79174561234" || wa.Timestamp != "2025-11-27T14:00:00+05:00" || wa.Payload["message_id"] != "wamid.HBgLNzkxNzQ1NjEyMzQVAgASGBQzRUIwQjQxQzk1RkE3MDM2QkQ0MAA=" {
			t.Errorf("whatsapp message: %+v", wa)
		}
		if waErr == nil || waErr.Level != "error" || !strings.Contains(waErr.Payload["error"].(string), "131047") {
			t.Errorf("whatsapp failed delivery: %+v", waErr)
		}
		if igEv == nil || igEv.Text() != "Сколько стоит окрашивание?" || igEv.Timestamp != "2025-11-27T10:00:00.123Z" {
			t.Errorf("instagram message: %+v", igEv)
		}
		var biz1 *event.Event
		for _, ev := range byID {
			if ev.SessionID == "sess_wh" {
				biz1 = ev
			}
		}
		if biz1 == nil || biz1.Tenant != "salon-aurora" || biz1.CRMID != "789" || biz1.Timestamp != "2025-01-01T14:34:56+05:00" {
			t.Errorf("business line via /v1/events: %+v", biz1)
		}
		if len(byID) != 5 {
			t.Errorf("Kafka holds %d distinct events, want 5 (telegram, whatsapp message and failure, instagram, business line)", len(byID))
		}
		var dl []deadletter.Record
		for _, m := range stacktest.ReadTopic(t, e.ep.KafkaBrokers, e.dlq) {
			dl = append(dl, deadletter.FromMessage(m))
		}
		if len(dl) != 2 {
			t.Fatalf("dead letters: %+v, want the wrong-shape body and the panel line", dl)
		}
		for _, d := range dl {
			switch d.Source {
			case "hook:aurora-whatsapp":
				if d.Reason != ReasonHookPayload || string(d.Raw) != string(bad) || d.Tenant != "salon-aurora" {
					t.Errorf("whatsapp dead letter: %+v", d)
				}
			case "hook:panel":
				if d.Reason != ReasonMapping || d.Step != "timestamp" || !strings.Contains(string(d.Raw), `"c-1"`) {
					t.Errorf("panel dead letter: %+v", d)
				}
			default:
				t.Errorf("unexpected dead letter %+v", d)
			}
		}
	})
	e.stop()
}

func mustJSON(e *event.Event) []byte {
	b, _ := e.Marshal()
	return b
}

// TestIngestEndToEnd is the acceptance: the business's documented
// line, a chatbot platform's line with its own field names, a Telegram
// update and a WhatsApp message webhook go through the real collector,
// Kafka and the real shipper into Elasticsearch with the right tenant,
// channel and time; a line the mapping cannot take is dead-lettered as
// written with the step that failed.
func TestIngestEndToEnd(t *testing.T) {
	e := newEnv(t, withHooks())
	stacktest.Require(t, stacktest.Elasticsearch, stacktest.Loki)
	run := fmt.Sprintf("ingest%d", time.Now().UnixNano()%1e9)
	alias := "test-" + run
	pipelinetest.StartShipper(t, e.ep, pipelinetest.Shipper{Dir: t.TempDir(), Topic: e.topic, DLQ: e.dlq + "-shipper", Group: run, Alias: alias,
		Labels: "{app: assistlog-test, deployment: " + run + "}"})
	pipelinetest.DropIndicesAtCleanup(t, e.ep, alias)
	stacktest.CreateTopics(t, e.ep.KafkaBrokers, map[string]int{e.dlq + "-shipper": 1})

	business := `{ "timestamp":"2025-01-01T12:34:56+03:00", "channel":"whatsapp", "session_id":"sess_` + run + `", "user_phone":"+79161234567", "event_type":"appointment.confirmed", "intent":"book_appointment", "confidence":0.92, "crm_id":"LEAD_789" }` + "\n" +
		`{ "timestamp":"2025-01-01T12:35:00+03:00", "channel":"whatsapp", "session_id":"sess_` + run + `", "event_type":"appointment.confirmed", "crm_id":"DEAL-789" }` + "\n"
	panel := `{"dialog":{"id":"dlg-` + run + `"},"kind":"incoming","messenger":"TG","created_at":"27.11.2026 14:05:09","client":{"id":998877},"message":{"text":"Хочу записаться на стрижку"},"bot_version":"3.2"}` + "\n"
	if err := os.WriteFile(filepath.Join(e.logDir, "business-1.jsonl"), []byte(business), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.logDir, "panel-1.jsonl"), []byte(panel), 0o644); err != nil {
		t.Fatal(err)
	}
	e.start()
	tg := uniq(testdata(t, "hooks/telegram-text.json"), "718204511", "9"+fmt.Sprint(time.Now().UnixNano()%1e8))
	if code, r := hookPost(t, e.webhookAddr, "aurora-telegram", tg, map[string]string{HeaderTelegramSecret: tgSecret}); code != 200 || r.Accepted != 1 {
		t.Fatalf("telegram: %d %+v", code, r)
	}
	wa := uniq(testdata(t, "hooks/whatsapp-text.json"), "wamid.HBgL", "wamid."+run)
	if code, r := hookPost(t, e.webhookAddr, "aurora-whatsapp", wa, metaSign(wa)); code != 200 || r.Accepted != 1 {
		t.Fatalf("whatsapp: %d %+v", code, r)
	}

	type doc struct {
		EventID   string         `json:"event_id"`
		Tenant    string         `json:"tenant"`
		Channel   string         `json:"channel"`
		Timestamp string         `json:"timestamp"`
		Type      string         `json:"event_type"`
		Session   string         `json:"session_id"`
		CRMID     string         `json:"crm_id"`
		Payload   map[string]any `json:"payload"`
	}
	var docs []doc
	stacktest.Eventually(t, 2*time.Minute, "four mapped events in Elasticsearch", func() error {
		http.Post(e.ep.ElasticsearchURL+"/"+alias+"/_refresh", "application/json", nil)
		resp, err := http.Get(e.ep.ElasticsearchURL + "/" + alias + "/_search?size=100")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var sr struct {
			Hits struct {
				Hits []struct {
					Source doc `json:"_source"`
				} `json:"hits"`
			} `json:"hits"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&sr); err != nil {
			return err
		}
		docs = docs[:0]
		for _, h := range sr.Hits.Hits {
			docs = append(docs, h.Source)
		}
		if len(docs) < 4 {
			return fmt.Errorf("%d of 4 events stored", len(docs))
		}
		return nil
	})
	if len(docs) != 4 {
		t.Fatalf("%d events stored, want 4: %+v", len(docs), docs)
	}
	// A WhatsApp conversation's id is the customer's number: stored as the
	// number's keyed token (the shipper's pii.hash_secret), the same for
	// every event of that customer.
	masker, _ := pii.New("pipelinetest-secret-0123456789")
	want := map[string]struct{ tenant, channel, ts, typ string }{
		"sess_" + run:         {"salon-aurora", "whatsapp", "2025-01-01T14:34:56+05:00", "appointment.confirmed"},
		"dlg-" + run:          {"clinic-nova", "telegram", "2026-11-27T14:05:09+05:00", "message.received"},
		"telegram:5120334871": {"salon-aurora", "telegram", "2025-11-27T13:00:00+05:00", "message.received"},
		"whatsapp:" + masker.PhoneToken("79174561234"): {"salon-aurora", "whatsapp", "2025-11-27T14:00:00+05:00", "message.received"},
	}
	for _, d := range docs {
		w, ok := want[d.Session]
		if !ok {
			t.Errorf("unexpected document %+v", d)
			continue
		}
		if d.Tenant != w.tenant || d.Channel != w.channel || d.Timestamp != w.ts || d.Type != w.typ {
			t.Errorf("%s stored as tenant %s channel %s time %s type %s; want %+v", d.Session, d.Tenant, d.Channel, d.Timestamp, d.Type, w)
		}
		if d.Session == "sess_"+run && (d.CRMID != "789" || d.Payload["crm_ref"] != "LEAD_789") {
			t.Errorf("business line: crm_id %q, payload %v; want 789 with the original kept", d.CRMID, d.Payload)
		}
	}
	// The second business line's crm_id has no known prefix and is not
	// digits: dead-lettered as written, naming the validator's complaint.
	var dl []deadletter.Record
	for _, m := range stacktest.ReadTopic(t, e.ep.KafkaBrokers, e.dlq) {
		dl = append(dl, deadletter.FromMessage(m))
	}
	if len(dl) != 1 || dl[0].Step != "validate" || !strings.Contains(dl[0].Error, `crm_id: must be a Bitrix24 id of digits, got "DEAL-789"`) ||
		!strings.Contains(string(dl[0].Raw), `"crm_id":"DEAL-789"`) || dl[0].Tenant != "" && dl[0].Tenant != "salon-aurora" {
		t.Errorf("dead letters: %+v", dl)
	}
	e.stop()
}
