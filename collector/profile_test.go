package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
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
	cfg, topic := profileConfig(t, ep.KafkaBrokers, dir, data, "collecting")
	// What the run allocates and what its GC costs, read from the runtime
	// (exact counts, unlike the sampled profiles); the test's own share is
	// waitInKafka's polling of offsets.
	costs := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}, {Name: "/gc/heap/allocs:objects"},
		{Name: "/gc/cycles/total:gc-cycles"}, {Name: "/cpu/classes/gc/total:cpu-seconds"}, {Name: "/cpu/classes/user:cpu-seconds"}}
	metrics.Read(costs)
	before := make([]metrics.Sample, len(costs))
	copy(before, costs)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		done <- serve(ctx, cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	}()
	waitInKafka(t, ep.KafkaBrokers, topic, n, start.Add(10*time.Minute))
	took := time.Since(start)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d events in %s: %.0f events/s", n, took.Round(time.Millisecond), float64(n)/took.Seconds())
	metrics.Read(costs)
	u := func(i int) float64 { return float64(costs[i].Value.Uint64() - before[i].Value.Uint64()) }
	f := func(i int) float64 { return costs[i].Value.Float64() - before[i].Value.Float64() }
	t.Logf("per event: %.0f B and %.1f objects allocated; %.0f GC cycles; Go code %.2f s, GC %.2f s of CPU (runtime estimates)",
		u(0)/float64(n), u(1)/float64(n), u(2), f(4), f(3))
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

// TestProfileCollectingAtRate is row 6's load in this process: a file
// appended to at ASSISTLOG_COLLECTOR_PROFILE_RATE events/s for 20s while
// the collector tails it. It reports the peak of the Go heap's in-use
// bytes and of all memory the runtime holds, and writes a heap profile
// at each new peak of the heap to ASSISTLOG_COLLECTOR_HEAP (a file), so
// that `go tool pprof -sample_index=inuse_space` shows what was live at
// the worst moment. A tool, not a check: without the variables it is
// skipped.
func TestProfileCollectingAtRate(t *testing.T) {
	rate, _ := strconv.Atoi(os.Getenv("ASSISTLOG_COLLECTOR_PROFILE_RATE"))
	heapOut := os.Getenv("ASSISTLOG_COLLECTOR_HEAP")
	if rate <= 0 || heapOut == "" {
		t.Skip("set ASSISTLOG_COLLECTOR_PROFILE_RATE=N and ASSISTLOG_COLLECTOR_HEAP=FILE")
	}
	const d = 20 * time.Second
	ep := stacktest.Require(t, stacktest.Kafka)
	dir := t.TempDir()
	data := filepath.Join(dir, "assistant.jsonl")
	n := rate*int(d.Seconds()) + 1000
	writeGenerated(t, filepath.Join(dir, "all.jsonl"), n)
	all, err := os.ReadFile(filepath.Join(dir, "all.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(all, []byte("\n"))
	runtime.GC()
	cfg, topic := profileConfig(t, ep.KafkaBrokers, dir, data, "rate")
	f, err := os.Create(data)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	}()
	// The sampler: the test's own lines are in the heap too (a constant).
	samples := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/total:bytes"}, {Name: "/gc/heap/goal:bytes"}}
	metrics.Read(samples)
	base := samples[0].Value.Uint64()
	var peakObjects, peakTotal, peakGoal uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			metrics.Read(samples)
			peakTotal = max(peakTotal, samples[1].Value.Uint64())
			peakGoal = max(peakGoal, samples[2].Value.Uint64())
			if o := samples[0].Value.Uint64(); o > peakObjects {
				peakObjects = o
				if hf, err := os.Create(heapOut); err == nil {
					_ = pprof.Lookup("heap").WriteTo(hf, 0)
					hf.Close()
				}
			}
		}
	}()
	start := time.Now()
	written := 0
	for time.Since(start) < d {
		due := int(time.Since(start).Seconds() * float64(rate))
		var chunk []byte
		for ; written < due && written < len(lines); written++ {
			chunk = append(chunk, lines[written]...)
		}
		if _, err := f.Write(chunk); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	waitInKafka(t, ep.KafkaBrokers, topic, written, start.Add(5*time.Minute))
	close(stop)
	<-sampled
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	const mib = 1 << 20
	t.Logf("%d events at %d/s: heap objects peak %.1f MiB above the test's own %.1f MiB; heap goal peak %.1f MiB; runtime total peak %.1f MiB",
		written, rate, float64(peakObjects-base)/mib, float64(base)/mib, float64(peakGoal)/mib, float64(peakTotal)/mib)
}

// profileConfig creates a 6-partition topic named after name (and its
// dead-letter topic) and returns the collector's config tailing data into
// it with row 1's settings.
func profileConfig(t *testing.T, brokers, dir, data, name string) (Config, string) {
	t.Helper()
	topic := "test-profile-" + name + "-" + strconv.FormatInt(time.Now().UnixNano()%1e9, 10)
	stacktest.CreateTopics(t, brokers, map[string]int{topic: 6, topic + "-dlq": 1})
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
`, brokers, topic, topic, data, filepath.Join(dir, "positions.json"), proctest.FreeAddr(t))
	path := filepath.Join(dir, "collector.yaml")
	if err := os.WriteFile(path, []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, topic
}

// waitInKafka waits until topic holds want messages, failing at deadline.
func waitInKafka(t *testing.T, brokers, topic string, want int, deadline time.Time) {
	t.Helper()
	client := &kafkago.Client{Addr: kafkago.TCP(brokers), Timeout: 10 * time.Second}
	for {
		parts, err := kafka.GroupOffsets(context.Background(), client, topic, "none-"+topic)
		var got int64
		for _, p := range parts {
			got += p.Last - p.First
		}
		if err == nil && got >= int64(want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d in Kafka", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
