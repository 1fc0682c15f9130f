package bench

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/assistlog/assistlog/internal/stacktest"
)

// TestBenchQuick runs every row at its smoke size on the real stack (the
// CI mode of make bench): each row must produce its figures with every
// event arrived. It asserts no time: the numbers of a smoke run mean
// nothing, and the machine is shared.
func TestBenchQuick(t *testing.T) {
	stacktest.Require(t, stacktest.Kafka, stacktest.Elasticsearch, stacktest.Loki)
	if testing.Short() {
		t.Skip("-short")
	}
	var log bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	res, err := Run(ctx, Options{Quick: true, Root: "..", Log: &testLog{t}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != len(rows) {
		t.Fatalf("%d rows ran, want %d", len(res), len(rows))
	}
	for _, r := range res {
		if r.Err != nil {
			t.Errorf("row %d (%s): %v", r.Row, r.Title, r.Err)
			continue
		}
		if len(r.Measures) == 0 {
			t.Errorf("row %d (%s): no measurement", r.Row, r.Title)
		}
		for _, m := range r.Measures {
			if m.Assistlog <= 0 {
				t.Errorf("row %d: %s: no figure for assistlog", r.Row, m.What)
			}
			if m.PeerName != "" && m.Peer <= 0 {
				t.Errorf("row %d: %s: no figure for %s", r.Row, m.What, m.PeerName)
			}
			if !m.Complete {
				t.Errorf("row %d: %s: the data did not arrive complete", r.Row, m.What)
			}
		}
	}
	Markdown(&log, res, MachineInfo(ctx), Versions("test"), true, time.Minute)
	for _, want := range []string{"| 1 |", "| 8 |", "cores", "go run ./bench/cmd/bench --rows 3 --quick"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("results lack %q:\n%s", want, log.String())
		}
	}
	if os.Getenv("ASSISTLOG_BENCH_SHOW") != "" {
		t.Log(log.String())
	}
}

type testLog struct{ t *testing.T }

func (l *testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
