package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/assistlog/assistlog/internal/deadletter"
	"github.com/assistlog/assistlog/internal/stacktest"
	"github.com/assistlog/assistlog/stack"
)

const (
	testToken  = "token-salon-aurora-0123456789"
	testSecret = "hmac-secret-salon-aurora-0123"
)

func post(t *testing.T, url string, body []byte, headers map[string]string) (int, Response, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
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
	return resp.StatusCode, r, resp.Header
}

func eventLine(id, tenant string) string {
	return `{"event_id":"` + id + `","timestamp":"2026-11-23T10:00:00+03:00","tenant":"` + tenant +
		`","channel":"telegram","session_id":"s-wh","event_type":"message.received","level":"info","payload":{"text":"hi"},"schema_version":1}`
}

func TestWebhook(t *testing.T) {
	e := newEnv(t, withWebhook("salon-aurora", testToken, testSecret))
	e.start()
	url := "http://" + e.webhookAddr + "/v1/events"
	bearer := map[string]string{"Authorization": "Bearer " + testToken, "Content-Type": "application/x-ndjson"}
	run := time.Now().Format("150405.000000")

	t.Run("auth", func(t *testing.T) {
		body := []byte(eventLine("wh-auth-"+run, "salon-aurora"))
		for name, h := range map[string]map[string]string{
			"no credentials": nil,
			"unknown token":  {"Authorization": "Bearer not-a-known-token-at-all"},
			"basic auth":     {"Authorization": "Basic dXNlcjpwYXNz"},
			"bad signature":  {HeaderTenant: "salon-aurora", HeaderSignature: "sha256=00"},
			"unknown tenant": {HeaderTenant: "dental-smile", HeaderSignature: "sha256=00"},
		} {
			if code, r, _ := post(t, url, body, h); code != http.StatusUnauthorized || r.Error == "" {
				t.Errorf("%s: %d %+v, want 401 with a reason", name, code, r)
			}
		}
		other := []byte(eventLine("wh-other-"+run, "dental-smile"))
		if code, r, _ := post(t, url, other, bearer); code != http.StatusForbidden || !strings.Contains(r.Error, `"dental-smile"`) {
			t.Errorf("other tenant's event: %d %+v, want 403", code, r)
		}
		mac := hmac.New(sha256.New, []byte(testSecret))
		mac.Write(body)
		signed := map[string]string{HeaderTenant: "salon-aurora", HeaderSignature: "sha256=" + hex.EncodeToString(mac.Sum(nil))}
		if code, r, _ := post(t, url, body, signed); code != http.StatusAccepted || r.Accepted != 1 {
			t.Errorf("signed request: %d %+v, want 202", code, r)
		}
	})

	t.Run("202 only once readable from Kafka", func(t *testing.T) {
		ids := []string{"wh-a-" + run, "wh-b-" + run, "wh-c-" + run}
		body := strings.Join([]string{eventLine(ids[0], "salon-aurora"), eventLine(ids[1], "salon-aurora"), eventLine(ids[2], "salon-aurora")}, "\n")
		code, r, _ := post(t, url, []byte(body), bearer)
		if code != http.StatusAccepted || r.Accepted != 3 || len(r.Rejected) != 0 {
			t.Fatalf("batch: %d %+v", code, r)
		}
		// No waiting: the answer came after Kafka's acknowledgement.
		counts := e.idCounts()
		for _, id := range ids {
			if counts[id] != 1 {
				t.Errorf("event %s acknowledged with 202 but Kafka holds it %d times", id, counts[id])
			}
		}
	})

	t.Run("batch with bad events", func(t *testing.T) {
		good1, good2 := "wh-good1-"+run, "wh-good2-"+run
		body := strings.Join([]string{
			eventLine(good1, "salon-aurora"),
			`{"event_id": "wh-broken"`,
			`{"event_id":"wh-bad","timestamp":"2026-11-23T10:00:00+03:00","tenant":"salon-aurora","channel":"sms","session_id":"s","event_type":"session.started","level":"info","schema_version":1}`,
			eventLine(good2, "salon-aurora"),
		}, "\n")
		code, r, _ := post(t, url, []byte(body), bearer)
		if code != http.StatusAccepted || r.Accepted != 2 || len(r.Rejected) != 2 {
			t.Fatalf("mixed batch: %d %+v", code, r)
		}
		if r.Rejected[0].Index != 1 || r.Rejected[0].Reason != "invalid_json" ||
			r.Rejected[1].Index != 2 || r.Rejected[1].Error != `channel: must be one of whatsapp, instagram, telegram, web, phone, got "sms"` {
			t.Errorf("rejections = %+v", r.Rejected)
		}
		counts := e.idCounts()
		if counts[good1] != 1 || counts[good2] != 1 {
			t.Errorf("good events of a mixed batch: %d, %d", counts[good1], counts[good2])
		}
		var webhookDLQ int
		for _, m := range stacktest.ReadTopic(t, e.ep.KafkaBrokers, e.dlq) {
			if rec := deadletter.FromMessage(m); rec.Source == "webhook" && rec.Tenant == "salon-aurora" {
				webhookDLQ++
			}
		}
		if webhookDLQ < 2 {
			t.Errorf("rejected webhook events in the dead-letter topic: %d, want 2", webhookDLQ)
		}
	})

	t.Run("malformed single event", func(t *testing.T) {
		code, r, _ := post(t, url, []byte(`{"tenant": "salon-aurora", `), bearer)
		if code != http.StatusBadRequest || len(r.Rejected) != 1 || r.Rejected[0].Reason != "invalid_json" {
			t.Errorf("malformed: %d %+v", code, r)
		}
		code, r, _ = post(t, url, []byte("  \n"), bearer)
		if code != http.StatusBadRequest {
			t.Errorf("empty body: %d %+v", code, r)
		}
	})

	t.Run("oversized body", func(t *testing.T) {
		big := bytes.Repeat([]byte(eventLine("wh-big", "salon-aurora")+"\n"), 400) // > 64 KiB limit
		if code, r, _ := post(t, url, big, bearer); code != http.StatusRequestEntityTooLarge || r.Error == "" {
			t.Errorf("oversized: %d %+v", code, r)
		}
	})

	t.Run("event without id gets a stable one", func(t *testing.T) {
		line := strings.Replace(eventLine("x", "salon-aurora"), `"event_id":"x",`, `"session_id":"s-noid-`+run+`",`, 1)
		line = strings.Replace(line, `"session_id":"s-wh",`, "", 1)
		for i := 0; i < 2; i++ {
			if code, r, _ := post(t, url, []byte(line), bearer); code != http.StatusAccepted {
				t.Fatalf("no id: %d %+v", code, r)
			}
		}
		var n int
		for id, c := range e.idCounts() {
			if strings.HasPrefix(id, "w-") && c == 2 {
				n++
			}
		}
		if n == 0 {
			t.Error("a retried request without event_id did not keep its derived id")
		}
	})
	e.stop()
}

// TestKafkaOutage stops the real broker mid-stream and starts it again:
// the collector pauses (webhook answers 503 meanwhile) and loses nothing.
func TestKafkaOutage(t *testing.T) {
	e := newEnv(t, withWebhook("salon-aurora", testToken, testSecret))
	layout, err := stack.LayoutFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	s := stack.New(layout, testWriter{t})
	ctx := context.Background()
	t.Cleanup(func() {
		if err := s.Up(ctx, "kafka"); err != nil {
			t.Errorf("restart kafka after the outage test: %v", err)
		}
	})
	l := newLines(t, 3000)
	path := filepath.Join(e.logDir, "app.jsonl")
	e.start()
	b, ids := l.take(500)
	appendFile(t, path, b)
	e.waitAcked(ids[:1])

	if err := s.Down(ctx, "kafka"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ { // written while Kafka is down
		b, more := l.take(100)
		appendFile(t, path, b)
		ids = append(ids, more...)
		time.Sleep(200 * time.Millisecond)
	}
	code, r, hdr := post(t, "http://"+e.webhookAddr+"/v1/events", []byte(eventLine("wh-outage", "salon-aurora")),
		map[string]string{"Authorization": "Bearer " + testToken})
	if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" {
		t.Errorf("webhook during the outage: %d %+v, want 503 with Retry-After", code, r)
	}
	if resp, err := http.Get("http://" + e.httpAddr + "/readyz"); err == nil {
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("/readyz during the outage: %s", resp.Status)
		}
		resp.Body.Close()
	}
	if err := s.Up(ctx, "kafka"); err != nil {
		t.Fatal(err)
	}
	b, more := l.take(200)
	appendFile(t, path, b)
	ids = append(ids, more...)
	dups := e.waitForIDs(ids, 3*time.Minute)
	t.Logf("Kafka outage: %d events, none missing, %d duplicates", len(ids), dups)
	e.stop()
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
