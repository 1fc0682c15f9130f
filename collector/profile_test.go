package main

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/assistlog/assistlog/demo"
	"github.com/assistlog/assistlog/internal/kafka"
	"github.com/assistlog/assistlog/internal/proctest"
	"github.com/assistlog/assistlog/internal/stacktest"
)

// TestProfileCollecting runs the collector in this process over one file
// of ASSISTLOG_COLLECTOR_PROFILE generated events (row 1 of make bench:
// the program's defaults, snappy, 6 partitions), so that
//
//	ASSISTLOG_COLLECTOR_PROFILE=300000 go test -run 'TestProfileCollecting$' \
//	  -cpuprofile cpu.out -memprofile mem.out ./collector/
//
// profiles where its time and allocations go (bench/NOTES.md). It is a
// tool, not a check: without the variable it is skipped.
func TestProfileCollecting(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("ASSISTLOG_COLLECTOR_PROFILE"))
	if n <= 0 {
		t.Skip("set ASSISTLOG_COLLECTOR_PROFILE=N to profile collecting N events")
	}
	ep := stacktest.Require(t, stacktest.Kafka)
	dir := t.TempDir()
	data := filepath.Join(dir, "assistant.jsonl")
	writeGenerated(t, data, n)
	// The generated events are garbage now: collected before the start, so
	// the profile's GC work is the collector's own.
	runtime.GC()
	suffix := strconv.FormatInt(time.Now().UnixNano()%1e9, 10)
	topic := "test-profile-collecting-" + suffix
	stacktest.CreateTopics(t, ep.KafkaBrokers, map[string]int{topic: 6, topic + "-dlq": 1})
	cfgText := fmt.Sprintf(`kafka:
  brokers: [%q]
  topic: %s
  dead_letter_topic: %s-dlq
  compression: snappy
files:
  include: [%q]
  scan_interval: 200ms
  read_from: beginning
positions:
  path: %s
http:
  listen: %s
log:
  level: warn
`, ep.KafkaBrokers, topic, topic, data, filepath.Join(dir, "positions.json"), proctest.FreeAddr(t))
	path := filepath.Join(dir, "collector.yaml")
	if err := os.WriteFile(path, []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		done <- serve(ctx, cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	}()
	client := &kafkago.Client{Addr: kafkago.TCP(ep.KafkaBrokers), Timeout: 10 * time.Second}
	for {
		parts, err := kafka.GroupOffsets(ctx, client, topic, "none-"+suffix)
		var written int64
		for _, p := range parts {
			written += p.Last - p.First
		}
		if err == nil && written >= int64(n) {
			break
		}
		if time.Since(start) > 10*time.Minute {
			t.Fatalf("only %d of %d in Kafka", written, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(start)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d events in %s: %.0f events/s", n, took.Round(time.Millisecond), float64(n)/took.Seconds())
}

// writeGenerated writes n generated events to path, one JSON line each.
func writeGenerated(t *testing.T, path string, n int) {
	gen := demo.DefaultConfig()
	gen.Days, gen.Rounds = 2, n/37_000+1 // about 37.6k events a round
	evs, _, err := demo.FromShared(0, gen)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	for i := range evs[:n] {
		b, err := evs[i].Marshal()
		if err != nil {
			t.Fatal(err)
		}
		w.Write(append(b, '\n'))
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
}
