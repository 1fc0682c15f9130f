package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/assistlog/assistlog/internal/proctest"
	"github.com/assistlog/assistlog/internal/stacktest"
)

// lifecycleConfig writes a collector configuration tailing dir/logs/*.jsonl
// with positions in posDir, and returns its path.
func lifecycleConfig(t *testing.T, dir, posDir, httpAddr, extra string) string {
	t.Helper()
	ep := stacktest.Require(t, stacktest.Kafka)
	suffix := fmt.Sprintf("%d", time.Now().UnixNano()%1e9)
	topic, dlq := "test-events-lifecycle-"+suffix, "test-dlq-lifecycle-"+suffix
	stacktest.CreateTopics(t, ep.KafkaBrokers, map[string]int{topic: 1, dlq: 1})
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`kafka:
  brokers: [%q]
  topic: %s
  dead_letter_topic: %s
files:
  include: [%q]
  scan_interval: 100ms
positions:
  path: %s
  sync_interval: 200ms
http:
  listen: %s
%s`, ep.KafkaBrokers, topic, dlq, filepath.Join(dir, "logs", "*.jsonl"), filepath.Join(posDir, "positions.json"), httpAddr, extra)
	path := filepath.Join(dir, "collector.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestLifecyclePortTaken: an operations or webhook port that is already
// taken stops the collector at start with a non-zero exit naming the field.
func TestLifecyclePortTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for _, c := range []struct {
		field, http, extra string
	}{
		{"http.listen", taken.Addr().String(), ""},
		{"webhook.listen", proctest.FreeAddr(t), fmt.Sprintf("webhook:\n  listen: %s\n  tenants:\n    - tenant: salon-1\n      tokens: [\"a-token-of-at-least-32-characters-000\"]\n", taken.Addr())},
	} {
		dir := t.TempDir()
		cfg := lifecycleConfig(t, dir, dir, c.http, c.extra)
		out := proctest.RunToExit(t, proctest.Build(t, "."), []string{"--config", cfg}, filepath.Join(dir, "collector.log"), time.Minute)
		if out.Code == 0 || !strings.Contains(out.Log, c.field) || !strings.Contains(out.Log, taken.Addr().String()) {
			t.Errorf("%s taken: exit code %d, want non-zero with a message naming %s %s; log:\n%s", c.field, out.Code, c.field, taken.Addr(), out.Log)
		}
	}
}

// TestLifecyclePositionsSaverFails: the positions directory is replaced by
// a file while the collector runs, so saving positions fails: the collector stops
// with a non-zero exit naming the part, instead of reading on with
// progress it can no longer record.
func TestLifecyclePositionsSaverFails(t *testing.T) {
	dir := t.TempDir()
	posDir := filepath.Join(dir, "positions")
	if err := os.MkdirAll(posDir, 0o755); err != nil {
		t.Fatal(err)
	}
	addr := proctest.FreeAddr(t)
	cfg := lifecycleConfig(t, dir, posDir, addr, "")
	p := proctest.Start(t, proctest.Build(t, "."), []string{"--config", cfg}, filepath.Join(dir, "collector.log"), "http://"+addr+"/readyz")
	t.Cleanup(p.Kill)
	// A file where the positions directory was: saving cannot recreate it.
	if err := os.RemoveAll(posDir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(posDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// New lines give the saver something to write.
	line := `{"event_id":"lifecycle-1","timestamp":"2026-11-20T10:15:00.000+03:00","tenant":"salon-1","channel":"whatsapp","session_id":"s-1","user_id":"wa:79161234567","event_type":"message.received","level":"info","payload":{"text":"hello"},"schema_version":1}` + "\n"
	if err := os.WriteFile(filepath.Join(dir, "logs", "a.jsonl"), []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	out := p.Wait(time.Minute)
	if out.Code == 0 || !strings.Contains(out.Log, "positions saver") {
		t.Fatalf("exit code %d, want non-zero with a message naming the positions saver; log:\n%s", out.Code, out.Log)
	}
}
