package tail

// window tracks one file's batches in flight, in the order they were
// read, so that the file's position advances only over the contiguous
// prefix of acknowledged batches: a later batch acknowledged first waits
// for every batch before it, and a batch that was never acknowledged (its
// handler gave up at shutdown) holds the position where it starts for good.
// It is used by the file's follow goroutine only.
type window struct {
	next    uint64   // sequence number of the next batch sent
	base    uint64   // sequence number of flights[0]
	flights []flight // batches not yet passed by the position, oldest first
}

type flight struct {
	last   Line // the batch's last line: where the position goes once it is acknowledged
	done   bool // acknowledged
	failed bool // given up: the position never passes it
}

// add registers a batch about to be sent and returns its sequence number.
func (w *window) add(last Line) uint64 {
	w.flights = append(w.flights, flight{last: last})
	w.next++
	return w.next - 1
}

// inFlight is the number of batches sent and not yet finished.
func (w *window) inFlight() int {
	n := 0
	for _, f := range w.flights {
		if !f.done && !f.failed {
			n++
		}
	}
	return n
}

// finish records the outcome of batch seq: acknowledged (ok) or given up.
func (w *window) finish(seq uint64, ok bool) {
	i := seq - w.base
	if seq < w.base || i >= uint64(len(w.flights)) {
		return // not ours (already passed, or never added)
	}
	if f := w.flights[i]; f.done || f.failed {
		return // decided already: a batch has one outcome
	}
	if ok {
		w.flights[i].done = true
	} else {
		w.flights[i].failed = true
	}
}

// advance drops the acknowledged batches at the front and returns the last
// line of the last one dropped: the new position. ok is false when the
// front batch is still in flight or failed (the position stays).
func (w *window) advance() (last Line, ok bool) {
	n := 0
	for n < len(w.flights) && w.flights[n].done {
		last, ok = w.flights[n].last, true
		n++
	}
	w.flights = w.flights[n:]
	w.base += uint64(n)
	return last, ok
}

// blocked reports whether a failed batch holds the position: nothing
// after it can be passed, so reading on is pointless.
func (w *window) blocked() bool {
	return len(w.flights) > 0 && w.flights[0].failed
}
