package tail

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/assistlog/assistlog/internal/positions"
)

// run is one Tailer over dir, its handler recording every line it was
// given, keyed by content.
type run struct {
	t      *testing.T
	cancel context.CancelFunc
	done   chan struct{}
	reg    *prometheus.Registry

	mu   sync.Mutex
	got  map[string]int
	gate chan struct{} // when set, the handler waits for it before acking
}

type tailerOpts struct {
	readFrom    string
	forgetAfter time.Duration
	batchLines  int
	maxInFlight int // default 4
	// handle, when set, replaces the recording handler.
	handle Handler
}

func startTailer(t *testing.T, dir, posPath string, o tailerOpts, gate chan struct{}) *run {
	t.Helper()
	if o.readFrom == "" {
		o.readFrom = "beginning"
	}
	if o.forgetAfter == 0 {
		o.forgetAfter = time.Hour
	}
	if o.batchLines == 0 {
		o.batchLines = 1000
	}
	if o.maxInFlight == 0 {
		o.maxInFlight = 4
	}
	pos, err := positions.Open(posPath)
	if err != nil {
		t.Fatal(err)
	}
	r := &run{t: t, done: make(chan struct{}), reg: prometheus.NewRegistry(), got: map[string]int{}, gate: gate}
	cfg := Config{Include: []string{filepath.Join(dir, "*")}, ScanInterval: 30 * time.Millisecond,
		PollInterval: 10 * time.Millisecond, CloseInactive: time.Hour, MaxLineBytes: 4096,
		BatchLines: o.batchLines, BatchBytes: 1 << 20, ReadFrom: o.readFrom, DrainTimeout: time.Second,
		ForgetAfter: o.forgetAfter, MaxInFlight: o.maxInFlight}
	h := func(ctx context.Context, b Batch) error {
		if r.gate != nil {
			select {
			case <-r.gate:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, l := range b.Lines {
			r.got[string(l.Data)]++
		}
		return nil
	}
	if o.handle != nil {
		h = o.handle
	}
	tl, err := New(cfg, pos, h, slog.New(slog.NewTextHandler(io.Discard, nil)), r.reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() {
		defer close(r.done)
		_ = tl.Run(ctx)
		if err := pos.Save(); err != nil {
			t.Error(err)
		}
	}()
	t.Cleanup(r.stop)
	return r
}

func (r *run) stop() {
	r.cancel()
	<-r.done
}

// waitFor waits until every line was delivered, then checks that each was
// delivered once and nothing else was.
func (r *run) waitFor(want []string) {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.mu.Lock()
		missing := 0
		for _, l := range want {
			if r.got[l] == 0 {
				missing++
			}
		}
		got := make(map[string]int, len(r.got))
		for k, v := range r.got {
			got[k] = v
		}
		r.mu.Unlock()
		if missing == 0 {
			time.Sleep(100 * time.Millisecond) // anything extra arrives too
			r.mu.Lock()
			defer r.mu.Unlock()
			wantSet := map[string]bool{}
			for _, l := range want {
				wantSet[l] = true
			}
			for l, n := range r.got {
				if !wantSet[l] {
					r.t.Errorf("delivered a line not expected: %q (%d times)", l, n)
				} else if n != 1 {
					r.t.Errorf("line %q delivered %d times", l, n)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%d of %d lines not delivered; got %d distinct lines", missing, len(want), len(got))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// makeLines returns n lines "<tag>-<i> <padding>" of equal length, so two
// files made with different tags have lines at the same offsets.
func makeLines(tag string, from, n int) []string {
	var out []string
	for i := from; i < from+n; i++ {
		out = append(out, fmt.Sprintf("%s-%04d %s", tag, i, strings.Repeat("x", 60)))
	}
	return out
}

func appendLines(t *testing.T, path string, lines ...string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(strings.Join(lines, "\n") + "\n"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestSameFirstLineFilesAreTwoFiles: two files that start with the same
// line (here a header) are read whole, at once, each line once.
func TestSameFirstLineFilesAreTwoFiles(t *testing.T) {
	dir, posPath := t.TempDir(), filepath.Join(t.TempDir(), "p.json")
	r := startTailer(t, dir, posPath, tailerOpts{}, nil)
	a, b := makeLines("a", 0, 50), makeLines("b", 0, 50)
	appendLines(t, filepath.Join(dir, "a.log"), append([]string{"# header"}, a...)...)
	time.Sleep(100 * time.Millisecond) // a is open when b appears
	appendLines(t, filepath.Join(dir, "b.log"), append([]string{"# header"}, b...)...)
	r.mu.Lock()
	r.got["# header"]-- // both files carry it: expected twice
	r.mu.Unlock()
	r.waitFor(append(append([]string{"# header"}, a...), b...))
}

// TestTruncatedAndRewrittenWhileDown: a file truncated and rewritten with
// the same first line while the tailer was down is read from its start,
// whether the new content is shorter or longer than the saved offset.
func TestTruncatedAndRewrittenWhileDown(t *testing.T) {
	for _, n := range []int{10, 80} {
		t.Run(fmt.Sprintf("%d lines after 40", n), func(t *testing.T) {
			dir, posPath := t.TempDir(), filepath.Join(t.TempDir(), "p.json")
			path := filepath.Join(dir, "app.log")
			old := append([]string{""}, makeLines("old", 0, 40)...) // an empty first line
			appendLines(t, path, old...)
			r := startTailer(t, dir, posPath, tailerOpts{}, nil)
			r.waitFor(old)
			r.stop()
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
			fresh := append([]string{""}, makeLines("new", 0, n)...)
			appendLines(t, path, fresh...)
			r = startTailer(t, dir, posPath, tailerOpts{}, nil)
			r.waitFor(fresh)
		})
	}
}

// TestCopyOfPrefixContinuesAtEnd: a copytruncate copy made before the last
// lines were written is shorter than the saved offset; it holds nothing
// unread, so nothing is read again.
func TestCopyOfPrefixContinuesAtEnd(t *testing.T) {
	dir, posPath := t.TempDir(), filepath.Join(t.TempDir(), "p.json")
	path := filepath.Join(dir, "app.log")
	first := makeLines("l", 0, 40)
	appendLines(t, path, first...)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	copied := time.Now().Add(-time.Minute)
	more := makeLines("l", 40, 5)
	appendLines(t, path, more...)
	r := startTailer(t, dir, posPath, tailerOpts{}, nil)
	r.waitFor(append(first, more...))
	r.stop()
	// logrotate's copytruncate while down: the copy is the first 40 lines.
	if err := os.WriteFile(path+".1", data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path+".1", copied, copied); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	r = startTailer(t, dir, posPath, tailerOpts{}, nil)
	later := makeLines("m", 0, 5)
	appendLines(t, path, later...)
	r.waitFor(later)
}

// TestGrowsPastHeadBytes: a position saved while the file was shorter than
// HeadBytes still finds the file once it has grown past it.
func TestGrowsPastHeadBytes(t *testing.T) {
	dir, posPath := t.TempDir(), filepath.Join(t.TempDir(), "p.json")
	path := filepath.Join(dir, "app.log")
	first := makeLines("l", 0, 3) // about 210 bytes
	appendLines(t, path, first...)
	r := startTailer(t, dir, posPath, tailerOpts{}, nil)
	r.waitFor(first)
	r.stop()
	more := makeLines("l", 3, 40)
	appendLines(t, path, more...)
	r = startTailer(t, dir, posPath, tailerOpts{}, nil)
	r.waitFor(more)
	r.stop()
	even := makeLines("l", 43, 5)
	appendLines(t, path, even...)
	r = startTailer(t, dir, posPath, tailerOpts{}, nil)
	r.waitFor(even)
}

// TestReadFromEndOnlyAtFirstStart: read_from: end skips what the files
// held at the first start; a file rotated in later is read whole, running
// or down.
func TestReadFromEndOnlyAtFirstStart(t *testing.T) {
	dir, posPath := t.TempDir(), filepath.Join(t.TempDir(), "p.json")
	path := filepath.Join(dir, "app.log")
	appendLines(t, path, makeLines("before", 0, 20)...)
	r := startTailer(t, dir, posPath, tailerOpts{readFrom: "end"}, nil)
	time.Sleep(100 * time.Millisecond) // the first scan settles at the end
	after := makeLines("after", 0, 10)
	appendLines(t, path, after...)
	r.waitFor(after)
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	rotated := makeLines("rotated", 0, 10)
	appendLines(t, path, rotated...)
	r.waitFor(append(after, rotated...))
	r.stop()
	if err := os.Rename(path, path+".2"); err != nil {
		t.Fatal(err)
	}
	down := makeLines("down", 0, 10)
	appendLines(t, path, down...)
	r = startTailer(t, dir, posPath, tailerOpts{readFrom: "end"}, nil)
	r.waitFor(down)
}

// TestForgetAfterIsNotSeenOnDisk: a quiet file keeps its position past
// forget_after while it is on disk; a deleted file's position goes.
func TestForgetAfterIsNotSeenOnDisk(t *testing.T) {
	dir, posPath := t.TempDir(), filepath.Join(t.TempDir(), "p.json")
	quiet, gone := filepath.Join(dir, "quiet.log"), filepath.Join(dir, "gone.log")
	q, g := makeLines("q", 0, 10), makeLines("g", 0, 10)
	appendLines(t, quiet, q...)
	appendLines(t, gone, g...)
	o := tailerOpts{forgetAfter: 300 * time.Millisecond}
	r := startTailer(t, dir, posPath, o, nil)
	r.waitFor(append(q, g...))
	if err := os.Remove(gone); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	r.stop()
	time.Sleep(500 * time.Millisecond) // down longer than forget_after
	r = startTailer(t, dir, posPath, o, nil)
	more := makeLines("q", 10, 5)
	appendLines(t, quiet, more...)
	r.waitFor(more)
	r.stop()
	pos, err := positions.Open(posPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pos.All() {
		if p.Path == gone {
			t.Errorf("position of a deleted file kept past forget_after: %+v", p)
		}
	}
}

// TestPositionSavedWithEachBatch: once a batch is acknowledged its
// position is on disk before the next batch goes out, so a crash re-sends
// at most the batch in flight.
func TestPositionSavedWithEachBatch(t *testing.T) {
	dir, posPath := t.TempDir(), filepath.Join(t.TempDir(), "p.json")
	path := filepath.Join(dir, "app.log")
	lines := makeLines("l", 0, 30)
	appendLines(t, path, lines...)
	gate := make(chan struct{})
	// One batch in flight: the gate releases batches in file order.
	r := startTailer(t, dir, posPath, tailerOpts{batchLines: 10, maxInFlight: 1}, gate)
	gate <- struct{}{} // the first batch is acknowledged; the second waits
	want := int64(10 * (len(lines[0]) + 1))
	deadline := time.Now().Add(5 * time.Second)
	for {
		pos, err := positions.Open(posPath)
		if err != nil {
			t.Fatal(err)
		}
		var off int64
		for _, p := range pos.All() {
			off = p.Offset
		}
		if off == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("positions file holds offset %d while the second batch waits, want %d", off, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(gate)
	r.waitFor(lines)
}

// TestOldestUnackedLineAge: the gauge grows while a batch waits for its
// acknowledgement and is 0 once everything read is acknowledged.
func TestOldestUnackedLineAge(t *testing.T) {
	dir, posPath := t.TempDir(), filepath.Join(t.TempDir(), "p.json")
	gate := make(chan struct{})
	r := startTailer(t, dir, posPath, tailerOpts{}, gate)
	age := func() float64 {
		t.Helper()
		mfs, err := r.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "assistlog_collector_oldest_unacked_line_seconds" {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatal("the registry has no assistlog_collector_oldest_unacked_line_seconds")
		return 0
	}
	if a := age(); a != 0 {
		t.Fatalf("idle: age %v, want 0", a)
	}
	lines := makeLines("l", 0, 5)
	appendLines(t, filepath.Join(dir, "app.log"), lines...)
	time.Sleep(600 * time.Millisecond)
	if a := age(); a < 0.4 {
		t.Fatalf("a batch waiting 600ms: age %v", a)
	}
	close(gate)
	r.waitFor(lines)
	for deadline := time.Now().Add(5 * time.Second); age() != 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("everything acknowledged: age %v, want 0", age())
		}
	}
	// A partial last line is the writer's business, not a stuck collector.
	f, _ := os.OpenFile(filepath.Join(dir, "app.log"), os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString("half a line")
	f.Close()
	time.Sleep(300 * time.Millisecond)
	if a := age(); a != 0 {
		t.Fatalf("only a partial line waits: age %v, want 0", a)
	}
}

// TestReadFromEndNoFilesAtFirstStart: with no file at the first start, a
// file that appears while the tailer is down is read whole.
func TestReadFromEndNoFilesAtFirstStart(t *testing.T) {
	dir, posPath := t.TempDir(), filepath.Join(t.TempDir(), "p.json")
	r := startTailer(t, dir, posPath, tailerOpts{readFrom: "end"}, nil)
	time.Sleep(100 * time.Millisecond)
	r.stop()
	lines := makeLines("l", 0, 10)
	appendLines(t, filepath.Join(dir, "app.log"), lines...)
	r = startTailer(t, dir, posPath, tailerOpts{readFrom: "end"}, nil)
	r.waitFor(lines)
}

// TestCopytruncateWhileRunning: logrotate's copytruncate while the file is
// being read: every line is delivered once, from the copy or the original.
func TestCopytruncateWhileRunning(t *testing.T) {
	for round := 0; round < 5; round++ {
		dir, posPath := t.TempDir(), filepath.Join(t.TempDir(), "p.json")
		path := filepath.Join(dir, "app.log")
		r := startTailer(t, dir, posPath, tailerOpts{}, nil)
		first := makeLines(fmt.Sprintf("r%d", round), 0, 40)
		appendLines(t, path, first...)
		r.waitFor(first)
		more := makeLines(fmt.Sprintf("r%d", round), 40, 20)
		appendLines(t, path, more...) // perhaps unread when copied
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path+".1", data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(path, 0); err != nil {
			t.Fatal(err)
		}
		later := makeLines(fmt.Sprintf("new%d", round), 0, 10)
		appendLines(t, path, later...)
		r.waitFor(append(append(first, more...), later...))
		r.stop()
	}
}
