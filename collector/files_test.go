package main

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/assistlog/assistlog/demo"
	"github.com/assistlog/assistlog/internal/deadletter"
	"github.com/assistlog/assistlog/internal/event"
	"github.com/assistlog/assistlog/internal/positions"
	"github.com/assistlog/assistlog/internal/stacktest"
)

// waitAcked waits until Kafka holds every id, so a rotation that follows
// happens after the collector read what came before it.
func (e *env) waitAcked(ids []string) {
	e.t.Helper()
	if d := e.waitFor(ids, 60*time.Second, false); d != 0 {
		e.t.Fatalf("%d duplicates before the rotation", d)
	}
}

func inode(t *testing.T, path string) uint64 {
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// TestRotationMatrix: each way a log gets rotated, with the collector
// running (or down, for the last ones). Kafka must end with every event
// id written, none missing; duplicates are reported and, with the
// collector running, must be zero.
func TestRotationMatrix(t *testing.T) {
	cases := []struct {
		name string
		run  func(t *testing.T, e *env, l *lines, path string) []string
	}{
		{"rename and create", func(t *testing.T, e *env, l *lines, path string) []string {
			b1, ids := l.take(300)
			appendFile(t, path, b1)
			// Rename while lines are still unread: the rest of the renamed
			// file is read through the open descriptor.
			time.Sleep(100 * time.Millisecond)
			if err := os.Rename(path, path+".1"); err != nil {
				t.Fatal(err)
			}
			b2, ids2 := l.take(300)
			appendFile(t, path, b2)
			return append(ids, ids2...)
		}},
		{"copytruncate", func(t *testing.T, e *env, l *lines, path string) []string {
			b1, ids := l.take(300)
			appendFile(t, path, b1)
			b2, ids2 := l.take(50)
			appendFile(t, path, b2) // probably unread when the copy is made
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
			b3, ids3 := l.take(300)
			appendFile(t, path, b3)
			return append(append(ids, ids2...), ids3...)
		}},
		{"truncate in place", func(t *testing.T, e *env, l *lines, path string) []string {
			b1, ids := l.take(300)
			appendFile(t, path, b1)
			e.waitAcked(ids)
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
			b2, ids2 := l.take(300)
			appendFile(t, path, b2)
			return append(ids, ids2...)
		}},
		{"delete and recreate", func(t *testing.T, e *env, l *lines, path string) []string {
			b1, ids := l.take(300)
			appendFile(t, path, b1)
			e.waitAcked(ids)
			before := inode(t, path)
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			b2, ids2 := l.take(300)
			appendFile(t, path, b2)
			t.Logf("inode before %d, after %d (reused: %v)", before, inode(t, path), before == inode(t, path))
			return append(ids, ids2...)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			l := newLines(t, 2000)
			e.start()
			path := filepath.Join(e.logDir, "app.jsonl")
			ids := tc.run(t, e, l, path)
			dups := e.waitForIDs(ids, 90*time.Second)
			t.Logf("%s: %d events, %d duplicates", tc.name, len(ids), dups)
			if dups != 0 {
				t.Errorf("%s with the collector running produced %d duplicates", tc.name, dups)
			}
			e.stop()
		})
	}
}

// TestRotationsWhileDown: many logrotate-style renames while the collector
// is stopped; on restart every rotated file is read from where it was left.
func TestRotationsWhileDown(t *testing.T) {
	e := newEnv(t)
	l := newLines(t, 2000)
	path := filepath.Join(e.logDir, "app.jsonl")
	e.start()
	b, ids := l.take(150)
	appendFile(t, path, b)
	time.Sleep(300 * time.Millisecond) // part of it read, maybe not all
	e.stop()
	for r := 0; r < 5; r++ {
		for i := r; i >= 1; i-- {
			os.Rename(path+"."+strconv.Itoa(i), path+"."+strconv.Itoa(i+1))
		}
		if err := os.Rename(path, path+".1"); err != nil {
			t.Fatal(err)
		}
		b, more := l.take(150)
		appendFile(t, path, b)
		ids = append(ids, more...)
	}
	// Also truncate one of them in place while down: detected by content.
	e.start()
	dups := e.waitForIDs(ids, 90*time.Second)
	t.Logf("5 rotations while down: %d events, %d duplicates", len(ids), dups)
	if dups != 0 {
		t.Errorf("%d duplicates after a clean stop and restart", dups)
	}
	e.stop()
}

// TestInodeReuse: with the collector stopped, the file it read gets new
// content on the same inode, starting with the same first line (an empty
// one) and longer than the saved offset. Identity by inode or by first line
// would start it at the old offset; identity by content reads it whole.
// The same inode is made deterministically (rewritten in place) rather
// than hoped for from the file system after a delete.
func TestInodeReuse(t *testing.T) {
	e := newEnv(t)
	l := newLines(t, 1000)
	path := filepath.Join(e.logDir, "app.jsonl")
	b, ids := l.take(300)
	appendFile(t, path, append([]byte("\n"), b...))
	e.start()
	e.waitAcked(ids)
	e.stop()
	old := inode(t, path)
	b2, ids2 := l.take(400) // longer than the old file's saved offset
	if err := os.WriteFile(path, append([]byte("\n"), b2...), 0o644); err != nil {
		t.Fatal(err)
	}
	if now := inode(t, path); now != old {
		t.Fatalf("rewriting in place moved the file from inode %d to %d", old, now)
	}
	e.start()
	if d := e.waitForIDs(append(ids, ids2...), 60*time.Second); d != 0 {
		t.Errorf("%d duplicates", d)
	}
	e.stop()
}

// TestTruncatedWhileDown: a file truncated and rewritten while the
// collector was stopped, shorter than the saved offset, is read from its
// start, also when it begins with the same line as before (an empty one).
func TestTruncatedWhileDown(t *testing.T) {
	for name, first := range map[string]string{"new first line": "", "same empty first line": "\n"} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			l := newLines(t, 1000)
			path := filepath.Join(e.logDir, "app.jsonl")
			e.start()
			b, ids := l.take(300)
			appendFile(t, path, append([]byte(first), b...))
			e.waitAcked(ids)
			e.stop()
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
			b2, ids2 := l.take(100) // shorter than the saved offset
			appendFile(t, path, append([]byte(first), b2...))
			e.start()
			if dups := e.waitForIDs(append(ids, ids2...), 60*time.Second); dups != 0 {
				t.Errorf("%d duplicates", dups)
			}
			e.stop()
		})
	}
}

// TestSameFirstLine: two files that begin with the same line (an empty
// one) and hold lines without event_id at the same offsets are read whole
// while both are open, and every line gets its own derived id.
func TestSameFirstLine(t *testing.T) {
	e := newEnv(t)
	const n = 100
	line := func(file string, i int) string {
		return fmt.Sprintf(`{"timestamp":"2026-11-23T10:00:00+03:00","tenant":"salon-aurora","channel":"web","session_id":"same-%s-%04d","event_type":"session.started","level":"info","schema_version":1}`, file, i)
	}
	e.start()
	for _, file := range []string{"a", "b"} {
		data := []byte("\n")
		for i := 0; i < n; i++ {
			data = append(append(data, line(file, i)...), '\n')
		}
		appendFile(t, filepath.Join(e.logDir, file+".jsonl"), data)
		time.Sleep(300 * time.Millisecond) // a is open when b appears
	}
	var sessions map[string]int
	ids := map[string]bool{}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(300 * time.Millisecond) {
		sessions, ids = map[string]int{}, map[string]bool{}
		for _, m := range stacktest.ReadTopic(t, e.ep.KafkaBrokers, e.topic) {
			ev, err := event.Parse(m.Value)
			if err != nil {
				t.Fatalf("invalid event in the topic: %v", err)
			}
			sessions[ev.SessionID]++
			ids[ev.EventID] = true
		}
		if len(sessions) == 2*n || time.Now().After(deadline) {
			break
		}
	}
	if len(sessions) != 2*n || len(ids) != 2*n {
		t.Fatalf("Kafka holds %d of %d sessions under %d distinct ids; collector log:\n%s", len(sessions), 2*n, len(ids), e.logTail())
	}
	for s, c := range sessions {
		if c != 1 {
			t.Errorf("session %s in Kafka %d times", s, c)
		}
	}
	e.stop()
}

// TestReadFromEndWithRotation: read_from: end skips what was there at the
// first start only; files rotated in later, running or down, are read
// whole.
func TestReadFromEndWithRotation(t *testing.T) {
	e := newEnv(t, withFiles("read_from: end"))
	l := newLines(t, 1000)
	path := filepath.Join(e.logDir, "app.jsonl")
	old, _ := l.take(100) // before the first start: skipped
	appendFile(t, path, old)
	e.start()
	e.waitPositionsFile()
	b, ids := l.take(50)
	appendFile(t, path, b)
	e.waitAcked(ids)
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	b, more := l.take(50) // a new file at once after the rotation
	appendFile(t, path, b)
	ids = append(ids, more...)
	e.waitAcked(ids)
	e.stop()
	if err := os.Rename(path, path+".2"); err != nil {
		t.Fatal(err)
	}
	b, more = l.take(50) // rotated while down
	appendFile(t, path, b)
	ids = append(ids, more...)
	e.start()
	if d := e.waitForIDs(ids, 60*time.Second); d != 0 {
		t.Errorf("%d duplicates", d)
	}
	e.stop()
}

// waitPositionsFile waits for the first positions save, which follows the
// first scan.
func (e *env) waitPositionsFile() {
	e.t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(e.positionsPath()); err == nil {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("no positions file after 30s; collector log:\n%s", e.logTail())
		}
	}
}

// TestQuietFilePastForgetAfter: a file that stays on disk without new
// lines for longer than forget_after, running and then down, keeps its
// position: nothing is read twice.
func TestQuietFilePastForgetAfter(t *testing.T) {
	e := newEnv(t, withPositions("forget_after: 3s"))
	l := newLines(t, 1000)
	path := filepath.Join(e.logDir, "app.jsonl")
	b, ids := l.take(100)
	appendFile(t, path, b)
	e.start()
	e.waitAcked(ids)
	time.Sleep(4 * time.Second) // quiet while running (closed as inactive after 2s)
	e.stop()
	time.Sleep(4 * time.Second) // and while down
	e.start()
	b, more := l.take(50)
	appendFile(t, path, b)
	if d := e.waitForIDs(append(ids, more...), 60*time.Second); d != 0 {
		t.Errorf("a quiet file was read again: %d duplicates", d)
	}
	e.stop()
}

// envCount reads a positive count from the environment variable name, or
// def when it is unset; anything else fails the test, so a typo never
// means 0 kills and a green run.
func envCount(t *testing.T, name string, def int) int {
	t.Helper()
	v, ok := os.LookupEnv(name)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive whole number", name, v)
	}
	return n
}

// lineAt is where the writer put a line: the file's inode and the offset
// just past the line.
type lineAt struct {
	inode uint64
	end   int64
}

// crashWriter appends lines and rotates the file now and then, recording
// where each id went. It runs off the test goroutine, so it reports its
// error instead of failing the test.
type crashWriter struct {
	path string
	l    *lines

	mu  sync.Mutex
	at  map[string]lineAt
	ids []string
}

func (w *crashWriter) run(stop <-chan struct{}) error {
	for n := 1; ; n++ {
		select {
		case <-stop:
			return nil
		default:
		}
		b, more := w.l.take(10)
		if len(more) == 0 {
			return errors.New("the writer ran out of lines before the kills ended; make newLines bigger")
		}
		var start int64
		if fi, err := os.Stat(w.path); err == nil {
			start = fi.Size()
		}
		if err := appendBytes(w.path, b); err != nil {
			return err
		}
		fi, err := os.Stat(w.path)
		if err != nil {
			return err
		}
		ino := fi.Sys().(*syscall.Stat_t).Ino
		w.mu.Lock()
		off := start
		for i, line := range bytes.SplitAfter(b, []byte("\n"))[:len(more)] {
			off += int64(len(line))
			w.at[more[i]] = lineAt{ino, off}
		}
		w.ids = append(w.ids, more...)
		w.mu.Unlock()
		if n%40 == 0 { // rotate now and then, dateext-style: no rotated file is overwritten
			if err := os.Rename(w.path, w.path+"."+strconv.Itoa(n/40)); err != nil {
				return fmt.Errorf("rotate: %w", err)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCrashLoop kills the collector with SIGKILL at random moments while a
// writer appends and rotates, restarting it each time. Each kill must hit
// uncommitted work (lines written before the kill beyond the positions
// read back after it), and re-send at most the batches in flight per
// file: the lines in Kafka at the kill beyond the saved positions are at
// most max_in_flight × batch_lines per file. Positions are synced on the
// default 1s timer; only the save with each acknowledged batch keeps that
// bound. Afterwards every event is in Kafka. ASSISTLOG_CRASH_LOOPS sets
// the number of kills (default 25).
func TestCrashLoop(t *testing.T) {
	kills := envCount(t, "ASSISTLOG_CRASH_LOOPS", 25)
	e := newEnv(t, withSyncInterval("1s"))
	w := &crashWriter{path: filepath.Join(e.logDir, "app.jsonl"), l: newLines(t, 1500*kills+5000), at: map[string]lineAt{}}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))

	stop := make(chan struct{})
	writerErr := make(chan error, 1)
	go func() { writerErr <- w.run(stop) }()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
			<-writerErr
		}
	}()
	e.start()
	inKafka := map[string]bool{}
	topic := &topicReader{broker: e.ep.KafkaBrokers, topic: e.topic, next: map[int]int64{}}
	hit, idle, resent := 0, 0, 0
	for hit < kills {
		time.Sleep(time.Duration(100+rng.IntN(700)) * time.Millisecond)
		w.mu.Lock()
		written := make(map[string]lineAt, len(w.at))
		for id, at := range w.at {
			written[id] = at
		}
		w.mu.Unlock()
		e.kill()
		select {
		case err := <-writerErr:
			close(stop)
			t.Fatalf("writer: %v", err)
		default:
		}
		saved := savedOffsets(t, e.positionsPath())
		uncommitted := 0
		for _, at := range written {
			if at.end > saved[at.inode] {
				uncommitted++
			}
		}
		// What Kafka holds beyond the saved positions is what a restart
		// sends again.
		time.Sleep(100 * time.Millisecond) // requests on the wire land
		for _, id := range topic.readNew(t) {
			inKafka[id] = true
		}
		again := map[uint64]int{}
		for id := range inKafka {
			if at, ok := written[id]; ok && at.end > saved[at.inode] {
				again[at.inode]++
			}
		}
		for ino, n := range again {
			resent += n
			if n > maxInFlight*batchLines {
				t.Errorf("kill %d: %d lines of inode %d in Kafka beyond the saved position: more than the batches in flight (%d lines) to re-send",
					hit+idle+1, n, ino, maxInFlight*batchLines)
			}
		}
		if uncommitted > 0 {
			hit++
		} else if idle++; idle > kills {
			t.Fatalf("%d kills found every written line committed: the kills test nothing", idle)
		}
		e.start()
	}
	close(stop)
	if err := <-writerErr; err != nil {
		t.Fatalf("writer: %v", err)
	}
	w.mu.Lock()
	ids := w.ids
	w.mu.Unlock()
	dups := e.waitForIDs(ids, 120*time.Second)
	t.Logf("crash loop: %d kill -9 restarts that hit uncommitted work (%d more that did not), %d events written, none missing, "+
		"%d duplicates (%.2f%%), %d lines re-sendable at the kills",
		hit, idle, len(ids), dups, 100*float64(dups)/float64(len(ids)), resent)
	if limit := (hit + idle) * 2 * maxInFlight * batchLines; dups > limit {
		t.Errorf("%d duplicates after %d kills: more than the batches in flight per file (at most 2 files open) per kill (%d)", dups, hit+idle, limit)
	}
	e.stop()
}

// topicReader reads a topic's event ids incrementally, from where its
// last call stopped, so a check after each of 200 kills does not read the
// whole topic each time.
type topicReader struct {
	broker, topic string
	next          map[int]int64 // partition → next offset
}

func (r *topicReader) readNew(t *testing.T) []string {
	t.Helper()
	var ids []string
	for _, m := range stacktest.ReadTopicFrom(t, r.broker, r.topic, r.next) {
		ev, err := event.Parse(m.Value)
		if err != nil {
			t.Fatalf("events topic holds an invalid event: %v\n%s", err, m.Value)
		}
		ids = append(ids, ev.EventID)
	}
	return ids
}

// savedOffsets reads the positions file as a restarted collector would,
// offsets by inode.
func savedOffsets(t *testing.T, path string) map[uint64]int64 {
	t.Helper()
	out := map[uint64]int64{}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return out
	}
	pos, err := positions.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pos.All() {
		out[p.Inode] = max(out[p.Inode], p.Offset)
	}
	return out
}

// TestDeadLetters: every kind of bad line goes to the dead-letter topic
// with its reason, source and offset; the good lines around it arrive.
func TestDeadLetters(t *testing.T) {
	e := newEnv(t, withMaxLine(2048))
	l := newLines(t, 100)
	path := filepath.Join(e.logDir, "app.jsonl")
	good1, ids1 := l.take(5)
	good2, ids2 := l.take(5)
	long := `{"tenant":"salon-aurora","pad":"` + strings.Repeat("x", 5000) + `"}`
	bad := []struct{ line, reason string }{
		{`{"event_id": "broken"`, string(event.KindInvalidJSON)},
		{"{\"event_id\":\"a\xff\"}", string(event.KindInvalidUTF8)},
		{`{"event_id":"x1","timestamp":"yesterday","tenant":"salon-aurora","channel":"whatsapp","session_id":"s","event_type":"session.started","level":"info","schema_version":1}`, string(event.KindSchema)},
		{long, deadletter.ReasonLineTooLong},
	}
	var data []byte
	data = append(data, good1...)
	offsets := map[string]int64{}
	for _, b := range bad {
		offsets[b.reason] = int64(len(data))
		data = append(append(data, b.line...), '\n')
	}
	data = append(data, "\n   \n"...) // blank lines are skipped, not dead-lettered
	data = append(data, good2...)
	appendFile(t, path, data)
	e.start()
	if d := e.waitForIDs(append(ids1, ids2...), 60*time.Second); d != 0 {
		t.Errorf("%d duplicates", d)
	}
	var recs []deadletter.Record
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		recs = nil
		for _, m := range stacktest.ReadTopic(t, e.ep.KafkaBrokers, e.dlq) {
			recs = append(recs, deadletter.FromMessage(m))
		}
		if len(recs) >= len(bad) {
			break
		}
	}
	if len(recs) != len(bad) {
		t.Fatalf("dead-letter topic holds %d records, want %d: %+v", len(recs), len(bad), recs)
	}
	byReason := map[string]deadletter.Record{}
	for _, r := range recs {
		byReason[r.Reason] = r
	}
	for _, b := range bad {
		r, ok := byReason[b.reason]
		if !ok {
			t.Errorf("no dead letter with reason %s", b.reason)
			continue
		}
		if r.Source != path || r.Offset != offsets[b.reason] || r.Error == "" || r.Fingerprint == "" {
			t.Errorf("%s: source %q offset %d (want %d) error %q fingerprint %q", b.reason, r.Source, r.Offset, offsets[b.reason], r.Error, r.Fingerprint)
		}
		if b.reason == deadletter.ReasonLineTooLong {
			if len(r.Raw) != 2048 || r.RawLength != len(long) || r.Tenant != "" {
				t.Errorf("too-long record keeps %d bytes of %d (raw_length %d)", len(r.Raw), len(long), r.RawLength)
			}
		} else if string(r.Raw) != b.line {
			t.Errorf("%s: raw = %q, want the line as written", b.reason, r.Raw)
		}
	}
	metrics := e.metrics()
	for _, want := range []string{
		`assistlog_collector_dead_letters_total{reason="schema",source="file"} 1`,
		`assistlog_collector_dead_letters_total{reason="line_too_long",source="file"} 1`,
		`assistlog_collector_dead_letters_total{reason="invalid_json",source="file"} 1`,
		`assistlog_collector_dead_letters_total{reason="invalid_utf8",source="file"} 1`,
		`assistlog_collector_events_total{source="file"} 10`,
		`assistlog_collector_lines_skipped_total{reason="blank"} 2`,
		`assistlog_kafka_messages_produced_total{topic="` + e.dlq + `"} 4`,
	} {
		if !strings.Contains(metrics, want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if r := byReason[string(event.KindSchema)]; r.Error != `timestamp: must be RFC 3339 with a UTC offset (e.g. 2026-11-23T14:05:09.120+03:00), got "yesterday"` || r.Tenant != "salon-aurora" {
		t.Errorf("schema dead letter: error %q tenant %q", r.Error, r.Tenant)
	}
	e.stop()
}

// TestDerivedEventIDIsStable: lines without event_id get an id from the
// file fingerprint and offset; reading the same file again (positions
// lost) yields the same ids, so downstream stays idempotent.
func TestDerivedEventIDIsStable(t *testing.T) {
	e := newEnv(t)
	path := filepath.Join(e.logDir, "app.jsonl")
	line := `{"timestamp":"2026-11-23T10:00:00+03:00","tenant":"salon-aurora","channel":"web","session_id":"s-no-id","event_type":"session.started","level":"info","schema_version":1}` + "\n"
	appendFile(t, path, []byte(line+line+line))
	e.start()
	var first map[string]int
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if first = e.idCounts(); len(first) == 3 || time.Now().After(deadline) {
			break
		}
	}
	e.stop()
	if len(first) != 3 {
		t.Fatalf("3 identical lines gave %d distinct ids: %v", len(first), first)
	}
	os.Remove(filepath.Join(e.dir, "positions.json"))
	e.start()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		total := 0
		for _, n := range e.idCounts() {
			total += n
		}
		if total == 6 {
			break
		}
	}
	again := e.idCounts()
	if len(again) != 3 {
		t.Fatalf("re-reading the file produced new ids: %v", again)
	}
	for id, n := range again {
		if n != 2 || first[id] != 1 {
			t.Errorf("id %s seen %d times after a full re-read", id, n)
		}
	}
	e.stop()
}

// TestEndToEndGeneratedLogs: the demo's files from the shared dialogues,
// three files with rotation, read into Kafka: the counts per event type
// equal the generator's ground truth.
func TestEndToEndGeneratedLogs(t *testing.T) {
	e := newEnv(t)
	evs, truth, err := demo.FromShared(0, demo.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	prefix := "e2e" + strconv.FormatInt(time.Now().UnixNano()%1e9, 10) + "-"
	var ids []string
	for i := range evs {
		evs[i].EventID = prefix + evs[i].EventID
		ids = append(ids, evs[i].EventID)
	}
	if _, err := demo.WriteFiles(evs, demo.FileOptions{Dir: e.logDir, Files: 3, RotateBytes: 4 << 20}); err != nil {
		t.Fatal(err)
	}
	e.start()
	if d := e.waitForIDs(ids, 3*time.Minute); d != 0 {
		t.Errorf("%d duplicates", d)
	}
	byType := map[string]int{}
	for _, m := range stacktest.ReadTopic(t, e.ep.KafkaBrokers, e.topic) {
		ev, _ := event.Parse(m.Value)
		byType[string(ev.Type)]++
		if string(m.Key) != ev.Tenant+"/"+ev.SessionID {
			t.Fatalf("message key %q, want tenant/session", m.Key)
		}
	}
	for typ, n := range truth.ByType {
		if byType[typ] != n {
			t.Errorf("%s: Kafka holds %d, ground truth %d", typ, byType[typ], n)
		}
	}
	if n := len(stacktest.ReadTopic(t, e.ep.KafkaBrokers, e.dlq)); n != 0 {
		t.Errorf("%d dead letters from valid generated logs", n)
	}
	t.Logf("%d events (%d appointment.confirmed) from %d dialogues in Kafka", truth.Events, byType["appointment.confirmed"], truth.Dialogues)
	e.stop()
}

// metricValue reads an unlabelled metric from the collector's /metrics.
func (e *env) metricValue(name string) float64 {
	e.t.Helper()
	for _, line := range strings.Split(e.metrics(), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				e.t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	e.t.Fatalf("/metrics has no %s", name)
	return 0
}

// TestOldestUnackedLineGauge: a collector stuck since its start (Kafka
// refuses its topic) reports the growing age of the line it cannot get
// acknowledged; an idle one, with everything acknowledged long ago,
// reports 0.
func TestOldestUnackedLineGauge(t *testing.T) {
	const gauge = "assistlog_collector_oldest_unacked_line_seconds"
	t.Run("stuck since start", func(t *testing.T) {
		e := newEnv(t, withMissingTopic())
		l := newLines(t, 10)
		e.start()
		b, _ := l.take(10)
		appendFile(t, filepath.Join(e.logDir, "app.jsonl"), b)
		time.Sleep(3 * time.Second)
		if age := e.metricValue(gauge); age < 2 {
			t.Errorf("lines unacknowledged for about 3s: %s = %v", gauge, age)
		}
		e.kill() // it cannot finish its batch; SIGTERM would wait the drain out
	})
	t.Run("idle", func(t *testing.T) {
		e := newEnv(t)
		l := newLines(t, 10)
		b, ids := l.take(10)
		appendFile(t, filepath.Join(e.logDir, "app.jsonl"), b)
		e.start()
		e.waitAcked(ids)
		time.Sleep(3 * time.Second)
		if age := e.metricValue(gauge); age != 0 {
			t.Errorf("everything acknowledged, idle for 3s: %s = %v", gauge, age)
		}
		e.stop()
	})
}
