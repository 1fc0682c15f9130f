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
