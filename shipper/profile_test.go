package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/assistlog/assistlog/demo"
	"github.com/assistlog/assistlog/internal/kafka"
	"github.com/assistlog/assistlog/internal/proctest"
)

// TestProfileShipping runs the shipper in this process over a topic already
// holding ASSISTLOG_SHIPPER_PROFILE events (row 3 of make bench), so that
//
//	ASSISTLOG_SHIPPER_PROFILE=100000 go test -run TestProfileShipping \
//	  -cpuprofile cpu.out -memprofile mem.out ./shipper/
//
// profiles where its time and allocations go (bench/NOTES.md). It is a
// tool, not a check: without the variable it is skipped.
func TestProfileShipping(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("ASSISTLOG_SHIPPER_PROFILE"))
	if n <= 0 {
		t.Skip("set ASSISTLOG_SHIPPER_PROFILE=N to profile shipping N events")
	}
	e := newEnv(t)
	gen := demo.DefaultConfig()
	gen.Days, gen.Rounds = 2, n/37_000+1 // about 37.6k events a round
	evs, _, err := demo.FromShared(0, gen)
	if err != nil {
		t.Fatal(err)
	}
	evs = evs[:n]
	e.produce(evs)
	var cfg Config
	cfgText := fmt.Sprintf(`kafka:
  brokers: [%q]
  topic: %s
  dead_letter_topic: %s
  group_id: group-%s
elasticsearch:
  urls: [%q]
  alias: %s
loki:
  url: %s
  labels: {app: assistlog-profile, deployment: %s}
  # The stack's Loki limits (stack/loki_config.go), as make bench states them.
  max_chunk_age: 336h
  per_stream_rate_limit: 33554432
  per_stream_rate_limit_burst: 67108864
pii:
  hash_secret: %q
http:
  listen: %s
log:
  level: warn
`, e.ep.KafkaBrokers, e.topic, e.dlq, e.run, e.ep.ElasticsearchURL, e.alias, e.ep.LokiURL, e.run, testSecret, proctest.FreeAddr(t))
	path := filepath.Join(e.dir, "shipper.yaml")
	if err := os.WriteFile(path, []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err = LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		done <- serve(ctx, cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	}()
	client := &kafkago.Client{Addr: kafkago.TCP(e.ep.KafkaBrokers), Timeout: 10 * time.Second}
	for {
		parts, err := kafka.GroupOffsets(ctx, client, e.topic, "group-"+e.run)
		var committed int64
		for _, p := range parts {
			committed += p.Committed - p.First
		}
		if err == nil && committed >= int64(len(evs)) {
			break
		}
		if time.Since(start) > 15*time.Minute {
			t.Fatalf("only %d of %d committed", committed, len(evs))
		}
		time.Sleep(50 * time.Millisecond)
	}
	took := time.Since(start)
	// Where the wall time went: the sinks' and the batch's own histograms.
	if resp, err := http.Get("http://" + cfg.HTTP.Listen + "/metrics"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, "_seconds_sum") || strings.Contains(l, "_seconds_count") {
				t.Log(l)
			}
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Logf("shipped %d events in %s: %.0f events/s", len(evs), took, float64(len(evs))/took.Seconds())
}
