package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/assistlog/assistlog/demo"
	"github.com/assistlog/assistlog/internal/event"
	"github.com/assistlog/assistlog/internal/proctest"
	"github.com/assistlog/assistlog/internal/stacktest"
	"github.com/assistlog/assistlog/stack"
)

// env is one collector under test with its own topics, files and ports.
type env struct {
	t           *testing.T
	ep          stack.Endpoints
	dir, logDir string
	topic, dlq  string
	httpAddr    string
	webhookAddr string
	cfgPath     string
	proc        *proctest.Process
}

// envSettings are what tests vary in the generated configuration.
type envSettings struct {
	maxLine      int
	syncInterval string
	files        string // more YAML in files:, each line indented by two spaces
	positions    string // more YAML in positions:
	extra        string // more top-level YAML
}

type envOption func(*env, *envSettings)

func withWebhook(tenant, token, hmacSecret string) envOption {
	return func(e *env, s *envSettings) {
		e.webhookAddr = proctest.FreeAddr(e.t)
		s.extra += fmt.Sprintf("webhook:\n  listen: %s\n  max_body_bytes: 65536\n  produce_timeout: 5s\n  tenants:\n    - tenant: %s\n      tokens: [%q]\n      hmac_secret: %q\n",
			e.webhookAddr, tenant, token, hmacSecret)
	}
}

func withMaxLine(n int) envOption {
	return func(_ *env, s *envSettings) { s.maxLine = n }
}

// withFiles adds settings to the files section, e.g. "read_from: end".
func withFiles(yaml string) envOption {
	return func(_ *env, s *envSettings) { s.files += "  " + yaml + "\n" }
}

// withPositions adds settings to the positions section.
func withPositions(yaml string) envOption {
	return func(_ *env, s *envSettings) { s.positions += "  " + yaml + "\n" }
}

// withSyncInterval sets positions.sync_interval.
func withSyncInterval(d string) envOption {
	return func(_ *env, s *envSettings) { s.syncInterval = d }
}

// withMissingTopic points kafka.topic at a topic that does not exist:
// Kafka refuses every event, so nothing is ever acknowledged.
func withMissingTopic() envOption {
	return func(e *env, _ *envSettings) { e.topic = "test-missing-" + e.topic }
}

func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	ep := stacktest.Require(t, stacktest.Kafka)
	e := &env{t: t, ep: ep, dir: t.TempDir()}
	e.logDir = filepath.Join(e.dir, "logs")
	if err := os.MkdirAll(e.logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	name := strings.NewReplacer("/", "-", " ", "-", "#", "").Replace(t.Name())
	suffix := fmt.Sprintf("%d", time.Now().UnixNano()%1e9)
	e.topic = "test-events-" + name + "-" + suffix
	e.dlq = "test-dlq-" + name + "-" + suffix
	stacktest.CreateTopics(t, ep.KafkaBrokers, map[string]int{e.topic: 3, e.dlq: 1})
	e.httpAddr = proctest.FreeAddr(t)

	set := envSettings{maxLine: 262144, syncInterval: "200ms"}
	for _, o := range opts {
		o(e, &set)
	}
	cfg := fmt.Sprintf(`kafka:
  brokers: [%q]
  topic: %s
  dead_letter_topic: %s
  write_timeout: 5s
retry: {max_backoff: 2s, pause_interval: 2s}
files:
  include: [%q, %q]
  scan_interval: 200ms
  poll_interval: 50ms
  close_inactive: 2s
  max_line_bytes: %d
  batch_lines: %d
  max_in_flight: %d
%spositions:
  path: %s
  sync_interval: %s
%shttp:
  listen: %s
log:
  level: info
shutdown_timeout: 10s
%s`, ep.KafkaBrokers, e.topic, e.dlq, filepath.Join(e.logDir, "*.jsonl"), filepath.Join(e.logDir, "*.jsonl.[0-9]*"),
		set.maxLine, batchLines, maxInFlight, set.files, e.positionsPath(), set.syncInterval, set.positions, e.httpAddr, set.extra)
	e.cfgPath = filepath.Join(e.dir, "collector.yaml")
	if err := os.WriteFile(e.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if e.proc != nil {
			e.kill()
		}
	})
	return e
}

// batchLines is files.batch_lines in every test's configuration.
const batchLines = 200

// maxInFlight is files.max_in_flight in every test's configuration: a
// kill -9 may re-send up to this many batches per file.
const maxInFlight = 4

func (e *env) positionsPath() string { return filepath.Join(e.dir, "positions.json") }

// start runs the collector and waits until it answers /readyz.
func (e *env) start() {
	e.t.Helper()
	e.proc = proctest.Start(e.t, proctest.Build(e.t, "."), []string{"--config", e.cfgPath},
		filepath.Join(e.dir, "collector.log"), "http://"+e.httpAddr+"/readyz")
}

// metrics returns the collector's /metrics text.
func (e *env) metrics() string {
	e.t.Helper()
	resp, err := http.Get("http://" + e.httpAddr + "/metrics")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func (e *env) logTail() string {
	if e.proc == nil {
		return "(not started)"
	}
	return e.proc.LogTail(40)
}

// kill ends the collector with SIGKILL: no chance to flush.
func (e *env) kill() {
	e.proc.Kill()
	e.proc = nil
}

// stop sends SIGTERM and waits for a clean exit.
func (e *env) stop() {
	e.t.Helper()
	if e.proc != nil {
		e.proc.Stop(30 * time.Second)
		e.proc = nil
	}
}

// idCounts counts event ids in the events topic.
func (e *env) idCounts() map[string]int {
	e.t.Helper()
	counts := map[string]int{}
	for _, m := range stacktest.ReadTopic(e.t, e.ep.KafkaBrokers, e.topic) {
		ev, err := event.Parse(m.Value)
		if err != nil {
			e.t.Fatalf("events topic holds an invalid event: %v\n%s", err, m.Value)
		}
		counts[ev.EventID]++
	}
	return counts
}

// waitForIDs waits until every wanted id is in the events topic, checks
// that nothing else is there, and reports how many arrived more than once.
func (e *env) waitForIDs(want []string, timeout time.Duration) (duplicates int) {
	return e.waitFor(want, timeout, true)
}

// waitFor is waitForIDs; with exact false, other ids may be present too.
func (e *env) waitFor(want []string, timeout time.Duration, exact bool) (duplicates int) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		counts := e.idCounts()
		var missing []string
		for _, id := range want {
			if counts[id] == 0 {
				missing = append(missing, id)
			}
		}
		if len(missing) == 0 {
			extra := 0
			wantSet := map[string]bool{}
			for _, id := range want {
				wantSet[id] = true
			}
			for id, n := range counts {
				if !wantSet[id] {
					if !exact {
						continue
					}
					e.t.Errorf("Kafka holds an event that was never written: %s", id)
				}
				extra += n - 1
			}
			return extra
		}
		if time.Now().After(deadline) {
			sort.Strings(missing)
			if len(missing) > 10 {
				missing = append(missing[:10], fmt.Sprintf("… %d more", len(missing)-10))
			}
			e.t.Fatalf("%d of %d events missing from Kafka after %s: %v\ncollector log:\n%s",
				len(missing), len(want), timeout, missing, e.logTail())
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// lines is a supply of realistic event lines from the shared dialogues.
type lines struct {
	evs  []event.Event
	next int
}

func newLines(t *testing.T, n int) *lines {
	t.Helper()
	cfg := demo.DefaultConfig()
	cfg.End = time.Now().UTC().Truncate(time.Hour)
	cfg.Rounds = 1 + n/30000
	evs, _, err := demo.FromShared(0, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// A per-test prefix keeps ids unique across tests sharing the stack.
	prefix := fmt.Sprintf("t%d-", time.Now().UnixNano()%1e12)
	for i := range evs {
		evs[i].EventID = prefix + evs[i].EventID
	}
	return &lines{evs: evs[:n]}
}

// take returns the next n lines (newline included) and their ids.
func (l *lines) take(n int) ([]byte, []string) {
	var b []byte
	var ids []string
	for i := 0; i < n && l.next < len(l.evs); i++ {
		e := l.evs[l.next]
		l.next++
		line, _ := e.Marshal()
		b = append(append(b, line...), '\n')
		ids = append(ids, e.EventID)
	}
	return b, ids
}

func appendFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := appendBytes(path, data); err != nil {
		t.Fatal(err)
	}
}

// appendBytes appends data to the file at path, creating it; for
// goroutines other than the test's, which must not call t.Fatal.
func appendBytes(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("append to %s: %w", path, err)
	}
	return f.Close()
}
