package tail

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/assistlog/assistlog/internal/positions"
)

// TestWindowAdvancesOverAcknowledgedPrefix: completions arrive out of
// order; the position moves only over the batches acknowledged from the
// front, and a batch that was given up holds it for good.
func TestWindowAdvancesOverAcknowledgedPrefix(t *testing.T) {
	var w window
	ends := []int64{100, 200, 300, 400, 500}
	for _, e := range ends {
		w.add(Line{End: e})
	}
	step := func(seq uint64, ok bool, wantEnd int64, wantMoved bool) {
		t.Helper()
		w.finish(seq, ok)
		last, moved := w.advance()
		if moved != wantMoved || (moved && last.End != wantEnd) {
			t.Fatalf("after batch %d finished (ok %v): moved %v to %d, want moved %v to %d", seq, ok, moved, last.End, wantMoved, wantEnd)
		}
	}
	step(2, true, 0, false)  // a later batch first: the front still waits
	step(1, true, 0, false)  // two acknowledged, the front still waits
	step(0, true, 300, true) // the front: the position jumps over all three
	step(4, true, 0, false)  // 3 still in flight
	if n := w.inFlight(); n != 1 {
		t.Fatalf("in flight %d, want 1 (batch 3)", n)
	}
	step(3, false, 0, false) // given up: nothing after it is passed
	if !w.blocked() {
		t.Fatal("a given-up batch at the front does not block the window")
	}
	w.add(Line{End: 600})
	step(5, true, 0, false)
	if n := w.inFlight(); n != 0 {
		t.Fatalf("in flight %d, want 0", n)
	}
	step(3, true, 0, false) // a late or repeated outcome does not unblock it
	step(0, true, 0, false) // nor does an outcome already passed
}

// TestPositionNeverPassesAnUnacknowledgedBatch: three batches of a file
// are in flight at once; the later two acknowledged first leave the saved
// position where the first starts, and acknowledging the first moves it
// over all three.
func TestPositionNeverPassesAnUnacknowledgedBatch(t *testing.T) {
	dir, posPath := t.TempDir(), filepath.Join(t.TempDir(), "p.json")
	path := filepath.Join(dir, "app.log")
	lines := makeLines("l", 0, 50)
	appendLines(t, path, lines...)
	lineLen := int64(len(lines[0]) + 1)

	// Each batch (by its first line's offset / batch size) waits for its own release.
	const batch = 10
	started := make(chan int, 10)
	release := make([]chan struct{}, 5)
	for i := range release {
		release[i] = make(chan struct{})
	}
	var r *run
	r = startTailer(t, dir, posPath, tailerOpts{batchLines: batch, maxInFlight: 3, handle: func(ctx context.Context, b Batch) error {
		i := int(b.Lines[0].Offset / lineLen / batch)
		started <- i
		select {
		case <-release[i]:
		case <-ctx.Done():
			return ctx.Err()
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, l := range b.Lines {
			r.got[string(l.Data)]++
		}
		return nil
	}}, nil)
	waitStarted := func(want ...int) {
		t.Helper()
		got := map[int]bool{}
		for range want {
			select {
			case i := <-started:
				got[i] = true
			case <-time.After(5 * time.Second):
				t.Fatalf("batches in the handler: %v, want also %v (max_in_flight 3)", got, want)
			}
		}
		for _, i := range want {
			if !got[i] {
				t.Fatalf("batches started %v, want %v", got, want)
			}
		}
	}
	saved := func() int64 {
		t.Helper()
		pos, err := positions.Open(posPath)
		if err != nil {
			t.Fatal(err)
		}
		var off int64
		for _, p := range pos.All() {
			off = p.Offset
		}
		return off
	}
	waitStarted(0, 1, 2) // three at once, none acknowledged
	close(release[2])
	close(release[1])
	// With 0 held, batch 4 fits in the window of 3 only once the outcomes
	// of both 1 and 2 were taken, so the position has been decided on
	// them by the time 4 reaches the handler.
	waitStarted(3, 4)
	if off := saved(); off != 0 {
		t.Fatalf("batches 1 and 2 acknowledged, 0 in flight: saved offset %d, want 0", off)
	}
	close(release[0])
	want := 3 * batch * lineLen
	for deadline := time.Now().Add(5 * time.Second); saved() != want; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("batches 0-2 acknowledged, 3 and 4 in flight: saved offset %d, want %d", saved(), want)
		}
	}
	close(release[4])
	close(release[3])
	r.waitFor(lines)
	for deadline := time.Now().Add(5 * time.Second); saved() != 5*batch*lineLen; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("everything acknowledged: saved offset %d, want %d", saved(), 5*batch*lineLen)
		}
	}
}
