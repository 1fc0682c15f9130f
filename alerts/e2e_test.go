package alerts_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/assistlog/assistlog/internal/event"
	"github.com/assistlog/assistlog/internal/pipelinetest"
	"github.com/assistlog/assistlog/internal/stacktest"
	"github.com/assistlog/assistlog/stack"
)

// receiver is the on-call webhook: it records what the real Alertmanager
// delivers to the stack's oncall-webhook receiver.
type receiver struct {
	mu     sync.Mutex
	alerts []delivered
}

type delivered struct {
	Receiver    string
	Status      string
	Labels      map[string]string
	Annotations map[string]string
}

func listen(t *testing.T) *receiver {
	t.Helper()
	l, err := stack.LayoutFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", l.Ports.OnCallWebhook))
	if err != nil {
		t.Fatalf("the on-call webhook port: %v", err)
	}
	r := &receiver{}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var msg struct {
			Receiver string `json:"receiver"`
			Alerts   []struct {
				Status      string            `json:"status"`
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"alerts"`
		}
		b, _ := io.ReadAll(req.Body)
		if err := json.Unmarshal(b, &msg); err != nil {
			t.Errorf("webhook body: %v: %s", err, b)
		}
		r.mu.Lock()
		for _, a := range msg.Alerts {
			r.alerts = append(r.alerts, delivered{msg.Receiver, a.Status, a.Labels, a.Annotations})
		}
		r.mu.Unlock()
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return r
}

// find returns delivered firing alerts matching labels.
func (r *receiver) find(labels map[string]string) []delivered {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []delivered
next:
	for _, a := range r.alerts {
		if a.Status != "firing" {
			continue
		}
		for k, v := range labels {
			if a.Labels[k] != v {
				continue next
			}
		}
		out = append(out, a)
	}
	return out
}

// traffic makes 200 s of a tenant's events ending now: messages and
// bookings, plus errors and low-confidence messages when troubled.
func traffic(tenant string, troubled bool) []event.Event {
	now := time.Now().UTC()
	var evs []event.Event
	add := func(i int, typ event.Type, level string, f func(*event.Event)) {
		e := event.Event{EventID: fmt.Sprintf("%s-%03d", tenant, i), Tenant: tenant, Channel: "whatsapp",
			SessionID: fmt.Sprintf("%s-s%d", tenant, i/6), Type: typ, Level: level, SchemaVersion: 1,
			Timestamp: now.Add(-time.Duration(40-i) * 5 * time.Second).Format(time.RFC3339Nano)}
		f(&e)
		evs = append(evs, e)
	}
	conf := func(c float64) *float64 { return &c }
	for i := 0; i < 40; i++ {
		switch {
		case i%10 == 9: // bookings go on in both: no booking-silence alert
			add(i, event.AppointmentConfirmed, "info", func(e *event.Event) {
				e.Payload = map[string]any{"appointment_id": fmt.Sprintf("%s-a%d", tenant, i), "service": "haircut"}
			})
		case troubled && i%4 == 0:
			add(i, event.Error, "error", func(e *event.Event) { e.Payload = map[string]any{"error": "calendar API timeout"} })
		case troubled && i%4 == 1:
			add(i, event.MessageReceived, "info", func(e *event.Event) {
				e.Payload, e.Intent, e.Confidence = map[string]any{"text": "can I come with my dog"}, "book_haircut", conf(0.31)
			})
		default:
			add(i, event.MessageReceived, "info", func(e *event.Event) {
				e.Payload, e.Intent, e.Confidence = map[string]any{"text": "a haircut tomorrow at 10"}, "book_haircut", conf(0.93)
			})
		}
	}
	return evs
}

// TestAlertsEndToEnd: events with an error spike and a low-confidence burst
// go through Kafka and the real shipper into Loki; the real Loki ruler
// fires the repository's rules; the real Alertmanager, with the
// repository's configuration, delivers them to the on-call webhook with
// their labels and annotations. A calm tenant in the same period gets no
// alert. Then the shipper is stopped: Prometheus's AssistlogProgramDown
// fires and arrives the same way.
func TestAlertsEndToEnd(t *testing.T) {
	ep := stacktest.Require(t, stacktest.Kafka, stacktest.Elasticsearch, stacktest.Loki, stacktest.Prometheus, stacktest.Alertmanager)
	l, err := stack.LayoutFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	hook := listen(t)
	run := fmt.Sprintf("e2e%d", time.Now().UnixNano()%1e9)
	topic, dlq := "test-alerts-"+run, "test-alerts-dlq-"+run
	stacktest.CreateTopics(t, ep.KafkaBrokers, map[string]int{topic: 3, dlq: 1})
	dir := t.TempDir()
	// Both programs listen where the stack's Prometheus scrapes them: both
	// up, the pipeline-down alert that the idle stack has (nothing on those
	// ports) resolves and stops inhibiting the content alerts.
	shipper := pipelinetest.StartShipper(t, ep, pipelinetest.Shipper{Dir: dir, Topic: topic, DLQ: dlq, Group: run, Alias: "test-" + run,
		Labels: "{app: assistlog, deployment: " + run + "}", Listen: fmt.Sprintf("127.0.0.1:%d", l.Ports.Shipper),
		ExtraYAML: "shutdown_timeout: 5s\n"})
	pipelinetest.DropIndicesAtCleanup(t, ep, "test-"+run)
	logs := filepath.Join(dir, "logs")
	os.MkdirAll(logs, 0o755)
	pipelinetest.StartCollector(t, ep, pipelinetest.Collector{Dir: dir, Topic: topic, DLQ: dlq,
		Include: []string{filepath.Join(logs, "*.jsonl")}, Listen: fmt.Sprintf("127.0.0.1:%d", l.Ports.Collector)})
	stacktest.Eventually(t, 2*time.Minute, "no pipeline-down alert active", func() error {
		if n := activeAlerts(t, ep.AlertmanagerURL, `alertname="AssistlogProgramDown"`); n > 0 {
			return fmt.Errorf("%d active", n)
		}
		return nil
	})

	spiky, calm := "spike-"+run, "calm-"+run
	f, err := os.Create(filepath.Join(logs, "assistant.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range append(traffic(spiky, true), traffic(calm, false)...) {
		if err := e.Validate(); err != nil {
			t.Fatalf("test event %s: %v", e.EventID, err)
		}
		b, _ := e.Marshal()
		f.Write(append(b, '\n'))
	}
	f.Close()

	// The ruler evaluates every minute; Alertmanager waits 30 s per group.
	for _, want := range []map[string]string{
		{"alertname": "AssistantErrorSpike", "tenant": spiky, "severity": "critical", "component": "content"},
		{"alertname": "AssistantLowConfidenceBurst", "tenant": spiky, "intent": "book_haircut", "severity": "warning"},
	} {
		stacktest.Eventually(t, 4*time.Minute, want["alertname"]+" at the on-call webhook", func() error {
			got := hook.find(want)
			if len(got) == 0 {
				return fmt.Errorf("not delivered yet")
			}
			a := got[0]
			if a.Receiver != "oncall-webhook" || a.Annotations["summary"] == "" || a.Annotations["runbook_url"] == "" ||
				a.Annotations["dashboard_url"] == "" {
				t.Fatalf("delivered %+v", a)
			}
			t.Logf("delivered: %s — %s", a.Labels["alertname"], a.Annotations["summary"])
			return nil
		})
	}
	if got := hook.find(map[string]string{"tenant": calm}); len(got) > 0 {
		t.Errorf("the calm tenant was alerted: %+v", got)
	}
	// Alertmanager's own list agrees: alerts for the troubled tenant, none
	// for the calm one.
	if n := activeAlerts(t, ep.AlertmanagerURL, `tenant="`+calm+`"`); n != 0 {
		t.Errorf("Alertmanager lists %d alerts for the calm tenant", n)
	}

	// The pipeline rule: Prometheus scrapes the shipper, then loses it.
	stacktest.Eventually(t, time.Minute, "prometheus scraping the shipper", func() error {
		return promUp(ep.PrometheusURL, "1")
	})
	shipper.Kill()
	// for: 1m, then Alertmanager's group wait, or the critical routes' 1 m
	// group interval when the group was told before (the idle stack's own
	// pipeline-down alert).
	stacktest.Eventually(t, 4*time.Minute, "AssistlogProgramDown at the on-call webhook", func() error {
		got := hook.find(map[string]string{"alertname": "AssistlogProgramDown", "job": "shipper", "severity": "critical"})
		if len(got) == 0 {
			return fmt.Errorf("not delivered yet")
		}
		t.Logf("delivered: %s — %s", got[0].Labels["alertname"], got[0].Annotations["summary"])
		return nil
	})
}

func promUp(base, want string) error {
	r, err := stacktest.PromInstant(base, `up{job="shipper"}`)
	if err != nil {
		return err
	}
	if len(r) == 0 || r[0].Value != want {
		return fmt.Errorf("up{job=\"shipper\"} = %+v", r)
	}
	return nil
}

// activeAlerts counts the alerts Alertmanager lists as active for a
// matcher.
func activeAlerts(t *testing.T, base, matcher string) int {
	t.Helper()
	resp, err := http.Get(base + "/api/v2/alerts?active=true&silenced=false&inhibited=false&filter=" + url.QueryEscape(matcher))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var listed []any
	if err := json.NewDecoder(resp.Body).Decode(&listed); err != nil {
		t.Fatal(err)
	}
	return len(listed)
}
