package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/assistlog/assistlog/internal/pipelinetest"
	"github.com/assistlog/assistlog/internal/proctest"
	"github.com/assistlog/assistlog/internal/stacktest"
)

// TestLifecyclePortTaken: an http.listen port that is already taken stops
// the shipper with a non-zero exit and a message naming the field.
func TestLifecyclePortTaken(t *testing.T) {
	e := newEnv(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cfg := pipelinetest.ShipperConfig(t, e.ep, &pipelinetest.Shipper{Dir: e.dir, Topic: e.topic, DLQ: e.dlq, Group: "group-" + e.run,
		Alias: e.alias, Listen: taken.Addr().String()})
	out := proctest.RunToExit(t, proctest.Build(t, "."), []string{"--config", cfg}, filepath.Join(e.dir, "shipper.log"), 2*time.Minute)
	if out.Code == 0 || !strings.Contains(out.Log, "http.listen") || !strings.Contains(out.Log, taken.Addr().String()) {
		t.Fatalf("exit code %d, want non-zero with a message naming http.listen %s; log:\n%s", out.Code, taken.Addr(), out.Log)
	}
}

var lagLine = regexp.MustCompile(`(?m)^assistlog_shipper_consumer_lag(?:\{[^}]*\})? (\S+)$`)

// consumerLag reads the lag gauge from the instance's /metrics.
func (e *env) consumerLag(i int) (float64, error) {
	resp, err := http.Get("http://" + e.addrs[i] + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	m := lagLine.FindSubmatch(b)
	if m == nil {
		return 0, fmt.Errorf("no assistlog_shipper_consumer_lag in /metrics")
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

// TestConsumerLagGrowsWhileStuck: the shipper cannot ship (its Loki URL
// points at a closed port) while events keep arriving; the lag gauge on
// its /metrics follows what waits in Kafka, so the lag alert can fire.
// SIGTERM then still stops it cleanly.
func TestConsumerLagGrowsWhileStuck(t *testing.T) {
	e := newEnv(t)
	e.ep.LokiURL = "http://" + proctest.FreeAddr(t) // nothing listens there
	evs, _ := e.generate(20)
	half := len(evs) / 2
	p := e.start()
	for _, part := range [][2]int{{0, half}, {half, len(evs)}} {
		n := part[1]
		e.produce(evs[part[0]:part[1]])
		stacktest.Eventually(t, time.Minute, "the lag gauge to count what waits", func() error {
			lag, err := e.consumerLag(0)
			if err != nil {
				return err
			}
			if lag != float64(n) {
				return fmt.Errorf("lag %g, want %d", lag, n)
			}
			return nil
		})
		t.Logf("%d events produced, none shippable: lag gauge %d", n, n)
	}
	// SIGTERM while stuck: the batch in flight gets shutdown_timeout, then
	// every part stops and the exit is clean (nothing was committed).
	p.Stop(time.Minute)
}
