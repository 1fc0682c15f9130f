package bitrix24test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// raw posts to the fake and returns status and the decoded body, to check
// the wire format against CONTRACT.md without the client in the way.
func raw(t *testing.T, s *Server, method, contentType, body string) (int, map[string]json.RawMessage) {
	t.Helper()
	resp, err := s.Client().Post(s.WebhookURL()+method+".json", contentType, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: reply is not a JSON object: %s", method, b)
	}
	return resp.StatusCode, m
}

func TestWireFormat(t *testing.T) {
	s := New(Config{})
	defer s.Close()
	form := url.Values{"fields[TITLE]": {"Chatbot: Anna"}, "fields[PHONE][0][VALUE]": {"+79161234567"},
		"fields[PHONE][0][VALUE_TYPE]": {"MOBILE"}}
	code, m := raw(t, s, "crm.lead.add", "application/x-www-form-urlencoded", form.Encode())
	if code != 200 || string(m["result"]) == "" || strings.HasPrefix(string(m["result"]), `"`) || m["time"] == nil {
		t.Fatalf("lead.add: %d %s (want 200, an integer result and time)", code, m["result"])
	}
	id := string(m["result"])
	code, m = raw(t, s, "crm.lead.get", "application/json", `{"ID":`+id+`}`)
	var lead map[string]any
	json.Unmarshal(m["result"], &lead)
	phone, _ := lead["PHONE"].([]any)
	if code != 200 || lead["ID"] != id || len(phone) != 1 || phone[0].(map[string]any)["TYPE_ID"] != "PHONE" {
		t.Fatalf("lead.get: %d %s (want the id as a string and the phone multifield)", code, m["result"])
	}
	code, m = raw(t, s, "crm.lead.get", "application/json", `{"id":999999}`)
	if code != 400 || string(m["error"]) != `""` || string(m["error_description"]) != `"Not found"` || m["result"] != nil {
		t.Fatalf("missing lead: %d %v (want 400, empty code, no result)", code, m)
	}
	code, m = raw(t, s, "crm.duplicate.findbycomm", "application/json", `{"type":"PHONE","values":["+70000000000"]}`)
	if code != 200 || string(m["result"]) != "[]" {
		t.Fatalf("findbycomm without a match: %s (want [])", m["result"])
	}
	code, m = raw(t, s, "crm.duplicate.findbycomm", "application/json", `{"values":["+7"]}`)
	if code != 400 || string(m["error"]) != `""` {
		t.Fatalf("findbycomm without type: %d %v", code, m)
	}
	code, m = raw(t, s, "crm.lead.list", "application/json", `{"filter":{"ORIGIN_ID":"none"}}`)
	if code != 200 || string(m["result"]) != "[]" || string(m["total"]) != "0" || m["next"] != nil {
		t.Fatalf("empty list: %v", m)
	}
	code, m = raw(t, s, "batch", "application/json", `{"halt":0,"cmd":{"a":"crm.lead.get?id=999999"}}`)
	var b map[string]json.RawMessage
	json.Unmarshal(m["result"], &b)
	if code != 200 || string(b["result"]) != "[]" || !strings.Contains(string(b["result_error"]), `"a"`) {
		t.Fatalf("batch with a failure: %d %s (want 200, result [], result_error keyed a)", code, m["result"])
	}
	code, m = raw(t, s, "no.such.method", "application/json", `{}`)
	if code != 404 || string(m["error"]) != `"ERROR_METHOD_NOT_FOUND"` {
		t.Fatalf("unknown method: %d %v", code, m)
	}
}

func TestBucketAnswers503(t *testing.T) {
	s := New(Config{Drain: 0.001, Limit: 5})
	defer s.Close()
	var codes []int
	for i := 0; i < 7; i++ {
		code, m := raw(t, s, "crm.lead.list", "application/json", `{}`)
		codes = append(codes, code)
		if code == http.StatusServiceUnavailable && string(m["error"]) != `"QUERY_LIMIT_EXCEEDED"` {
			t.Fatalf("503 body: %v", m)
		}
	}
	if codes[4] != 200 || codes[5] != 503 || codes[6] != 503 {
		t.Fatalf("status codes %v: want 5 × 200 then 503", codes)
	}
}

// TestStateSurvivesRestart: a fake started from a saved state answers as
// the old one would: same ids, the lead found by number and origin, new ids
// after the old ones.
func TestStateSurvivesRestart(t *testing.T) {
	path := t.TempDir() + "/state.json"
	a := New(Config{})
	_, m := raw(t, a, "crm.lead.add", "application/json",
		`{"fields":{"TITLE":"x","ORIGIN_ID":"assistlog:t/s1","PHONE":[{"VALUE":"+79161234567","VALUE_TYPE":"MOBILE"}]}}`)
	if err := a.SaveState(path); err != nil {
		t.Fatal(err)
	}
	a.Close()
	b := New(Config{})
	defer b.Close()
	if err := b.LoadState(path); err != nil {
		t.Fatal(err)
	}
	id := string(m["result"])
	if _, got := raw(t, b, "crm.lead.list", "application/json", `{"filter":{"ORIGIN_ID":"assistlog:t/s1"},"select":["ID"]}`); !strings.Contains(string(got["result"]), `"ID":"`+id+`"`) {
		t.Errorf("lead %s not listed by origin after a restart: %s", id, got["result"])
	}
	if _, got := raw(t, b, "crm.duplicate.findbycomm", "application/json", `{"type":"PHONE","values":["+79161234567"],"entity_type":"LEAD"}`); !strings.Contains(string(got["result"]), id) {
		t.Errorf("lead %s not found by number after a restart: %s", id, got["result"])
	}
	if _, got := raw(t, b, "crm.lead.add", "application/json", `{"fields":{"TITLE":"y"}}`); string(got["result"]) <= id {
		t.Errorf("new lead id %s does not follow %s", got["result"], id)
	}
}

// TestActivityListWire: crm.activity.list as CONTRACT.md shows it: an
// array of objects whose values are strings, total, no next on the last
// page, [] for no match; a to-do's title and description come back as
// SUBJECT and DESCRIPTION, found by "%DESCRIPTION".
func TestActivityListWire(t *testing.T) {
	s := New(Config{})
	defer s.Close()
	_, m := raw(t, s, "crm.lead.add", "application/json", `{"fields":{"TITLE":"x"}}`)
	lead := string(m["result"])
	code, m := raw(t, s, "crm.activity.todo.add", "application/json",
		`{"ownerTypeId":1,"ownerId":`+lead+`,"deadline":"2024-06-11T09:00:00","title":"Appointment: haircut","description":"Booked by the assistant (appointment apt-42)"}`)
	if code != 200 || !strings.HasPrefix(string(m["result"]), `{"id":`) {
		t.Fatalf("todo.add: %d %s", code, m["result"])
	}
	code, m = raw(t, s, "crm.activity.list", "application/json",
		`{"filter":{"OWNER_TYPE_ID":1,"OWNER_ID":`+lead+`,"%DESCRIPTION":"appointment apt-42"},"select":["ID","SUBJECT","DESCRIPTION","COMPLETED","DEADLINE"],"order":{"ID":"DESC"},"start":0}`)
	var rows []map[string]any
	if err := json.Unmarshal(m["result"], &rows); err != nil || code != 200 || len(rows) != 1 || string(m["total"]) != "1" || m["next"] != nil {
		t.Fatalf("activity.list: %d %v (%v)", code, m, err)
	}
	r := rows[0]
	for k, v := range r {
		if _, ok := v.(string); !ok {
			t.Errorf("%s = %v, want a string", k, v)
		}
	}
	if r["SUBJECT"] != "Appointment: haircut" || r["COMPLETED"] != "N" || r["DEADLINE"] != "2024-06-11T09:00:00+00:00" || r["OWNER_ID"] != nil {
		t.Errorf("row %v: want the title as SUBJECT, COMPLETED N, DEADLINE with offset, only the selected fields", r)
	}
	code, m = raw(t, s, "crm.activity.list", "application/json", `{"filter":{"OWNER_ID":`+lead+`,"%DESCRIPTION":"apt-43"}}`)
	if code != 200 || string(m["result"]) != "[]" || string(m["total"]) != "0" {
		t.Errorf("no match: %d %v", code, m)
	}
}

// TestFaultsTargetAMethod: a fault set for one method waits for that
// method; other calls pass. An expired token is answered 401 expired_token
// until renewed.
func TestFaultsTargetAMethod(t *testing.T) {
	s := New(Config{AccessToken: "tok"})
	defer s.Close()
	s.FailNext("crm.lead.add", 1, http.StatusServiceUnavailable, "QUERY_LIMIT_EXCEEDED", "Too many requests")
	if code, _ := raw(t, s, "crm.lead.list", "application/json", `{}`); code != 200 {
		t.Fatalf("lead.list met lead.add's fault: %d", code)
	}
	if code, m := raw(t, s, "crm.lead.add", "application/json", `{"fields":{"TITLE":"x"}}`); code != 503 || string(m["error"]) != `"QUERY_LIMIT_EXCEEDED"` || len(s.Leads()) != 0 {
		t.Fatalf("lead.add: %d %v, %d leads", code, m, len(s.Leads()))
	}
	s.LoseNextReplies("crm.lead.add", 1, 0, "", "")
	if _, err := s.Client().Post(s.WebhookURL()+"crm.lead.add.json", "application/json", strings.NewReader(`{"fields":{"TITLE":"y"}}`)); err == nil || len(s.Leads()) != 1 {
		t.Fatalf("a cut reply: err %v, %d leads (want an error and the lead made)", err, len(s.Leads()))
	}
	s.ExpireToken(true)
	resp, err := s.Client().Post(s.OAuthURL()+"crm.lead.list?auth=tok", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.Contains(string(b), `"error":"expired_token"`) {
		t.Fatalf("expired token: %d %s", resp.StatusCode, b)
	}
}
