package main

import (
	"testing"
	"time"
)

// TestStreamOrderWaitsOnlyWhereLokiWouldRefuse: a stream's push waits for
// an earlier push of the same stream only if, once Loki holds the later
// push's newest entry, it would refuse the earlier one's oldest as too far
// behind (window, less orderMargin). Live batches, seconds apart, do not
// queue behind each other; a backfill's batch an hour later does. Before,
// every push of a stream waited for the one before it, so at 5k events/s
// batches queued for Loki one after the other (row 5 of make bench).
func TestStreamOrderWaitsOnlyWhereLokiWouldRefuse(t *testing.T) {
	o := newStreamOrder(time.Hour)
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	const k, other = `{tenant="a"}`, `{tenant="b"}`

	waitA, a := o.register(k, t0, t0.Add(time.Second))
	if len(waitA) != 0 {
		t.Fatalf("the first push waits for %d", len(waitA))
	}
	waitB, b := o.register(k, t0.Add(2*time.Second), t0.Add(3*time.Second))
	if len(waitB) != 0 {
		t.Errorf("a live batch seconds later waits for %d pushes, want none", len(waitB))
	}
	waitO, o1 := o.register(other, t0.Add(2*time.Hour), t0.Add(2*time.Hour))
	if len(waitO) != 0 {
		t.Errorf("another stream's push waits for %d pushes, want none", len(waitO))
	}
	// 58 min ahead of a's and b's oldest: past the window less the
	// margin (55 min) for both.
	waitC, c := o.register(k, t0.Add(58*time.Minute), t0.Add(58*time.Minute))
	if len(waitC) != 2 || waitC[0] != (<-chan struct{})(a.done) || waitC[1] != (<-chan struct{})(b.done) {
		t.Fatalf("a push 58 min ahead waits for %d pushes, want a and b", len(waitC))
	}
	o.done(k, a)
	select {
	case <-waitC[0]:
	default:
		t.Error("a's push is done but its channel is open")
	}
	o.done(k, b)
	waitD, d := o.register(k, t0.Add(50*time.Minute), t0.Add(50*time.Minute))
	if len(waitD) != 0 {
		t.Errorf("after a and b, a push behind c waits for %d", len(waitD))
	}
	for _, p := range []*streamPush{c, d} {
		o.done(k, p)
	}
	o.done(other, o1)
	if len(o.pending) != 0 {
		t.Errorf("streams still pending after every push is done: %v", o.pending)
	}
}
