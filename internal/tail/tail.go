// Package tail follows JSON-lines files matching globs: it discovers files
// while running, identifies them by content fingerprint (plus device and
// inode), reads complete lines, and hands them downstream in batches. A
// file's position is saved only after the handler returned, that is after
// downstream acknowledged the batch.
//
// Identity: a file is matched to a saved position by content: the same
// first line, the same first min(HeadBytes, offset) bytes and the same
// bytes just before the saved offset; device and inode break ties. Two
// files that share a first line (a header, a banner, an empty line) are
// therefore two files.
//
// Rotation: a renamed file keeps being read through its open descriptor to
// its end; a copy made by copytruncate matches the original's position by
// content, so it is continued from the saved offset rather than read again;
// a file whose content was replaced (truncated and rewritten) fails the
// content checks and is read from its start; a deleted file is read to its
// end and closed.
package tail

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/assistlog/assistlog/internal/positions"
)

// Config configures a Tailer.
type Config struct {
	// Include lists globs of files to follow; rotated names (a.jsonl.1)
	// must match too so lines written just before a rotation are read.
	Include []string
	// Exclude lists globs (matched against the base name and the full path)
	// to leave alone, e.g. "*.gz".
	Exclude []string
	// ScanInterval is how often globs are expanded to find new files.
	ScanInterval time.Duration
	// PollInterval is how often an open file at its end is checked for more.
	PollInterval time.Duration
	// CloseInactive closes a file that produced nothing for this long; it is
	// reopened by the next scan when it grows.
	CloseInactive time.Duration
	// MaxLineBytes is the longest line passed on whole; longer ones are
	// marked TooLong and cut to this many bytes.
	MaxLineBytes int
	// BatchLines and BatchBytes bound one batch.
	BatchLines, BatchBytes int
	// ReadFrom is where the files present at the first start (no positions
	// saved yet) start: "beginning" or "end". Files that appear later are
	// always read from their beginning: they are rotations or new logs.
	ReadFrom string
	// ForgetAfter drops the position of a file not seen on disk for this
	// long.
	ForgetAfter time.Duration
	// DrainTimeout bounds how long in-flight batches may take to be
	// acknowledged after Run's context ends.
	DrainTimeout time.Duration
	// MaxInFlight is how many batches of one file are sent at once; the
	// position still only covers acknowledged lines. 1 sends a batch only
	// after the one before it was acknowledged.
	MaxInFlight int
}

// Validate checks the configuration and names the field at fault.
func (c Config) Validate() error {
	var errs []error
	if len(c.Include) == 0 {
		errs = append(errs, errors.New("include: at least one glob is required"))
	}
	for _, g := range append(append([]string{}, c.Include...), c.Exclude...) {
		if _, err := filepath.Match(g, ""); err != nil {
			errs = append(errs, fmt.Errorf("include/exclude: bad glob %q: %w", g, err))
		}
	}
	for name, d := range map[string]time.Duration{"scan_interval": c.ScanInterval, "poll_interval": c.PollInterval,
		"close_inactive": c.CloseInactive, "drain_timeout": c.DrainTimeout, "forget_after": c.ForgetAfter} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s: must be positive, got %s", name, d))
		}
	}
	if c.MaxLineBytes < 1024 {
		errs = append(errs, fmt.Errorf("max_line_bytes: must be at least 1024, got %d", c.MaxLineBytes))
	}
	if c.BatchLines < 1 || c.BatchBytes < 1 {
		errs = append(errs, fmt.Errorf("batch_lines/batch_bytes: must be positive, got %d/%d", c.BatchLines, c.BatchBytes))
	}
	if c.MaxInFlight < 1 {
		errs = append(errs, fmt.Errorf("max_in_flight: must be at least 1, got %d", c.MaxInFlight))
	}
	if c.ReadFrom != "beginning" && c.ReadFrom != "end" {
		errs = append(errs, fmt.Errorf("read_from: must be beginning or end, got %q", c.ReadFrom))
	}
	return errors.Join(errs...)
}

// Batch is consecutive lines of one file.
type Batch struct {
	Path        string
	Fingerprint string
	Lines       []Line
}

// Handler sends a batch downstream and returns nil once it was
// acknowledged. It retries on its own; an error means it gave up because
// its context ended, and the batch's position is not saved.
type Handler func(ctx context.Context, b Batch) error

// Tailer follows files.
type Tailer struct {
	cfg     Config
	pos     *positions.Store
	handle  Handler
	log     *slog.Logger
	metrics *metrics

	mu       sync.Mutex
	byKey    map[string]*reader
	byInode  map[[2]uint64]*reader
	notReady map[string]bool
	// oldest holds, per open reader, when its oldest unacknowledged line
	// was first seen (zero when everything is acknowledged).
	oldest map[*reader]time.Time

	scans int // completed scans; read_from applies during the first only
}

// New builds a Tailer; Run starts it.
func New(cfg Config, pos *positions.Store, h Handler, log *slog.Logger, reg prometheus.Registerer) (*Tailer, error) {
	if reg == nil {
		return nil, errors.New("tail: a metrics registry is required")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("tail config: %w", err)
	}
	if pos == nil || h == nil || log == nil {
		return nil, errors.New("tail: positions, handler and logger are required")
	}
	t := &Tailer{cfg: cfg, pos: pos, handle: h, log: log,
		byKey: map[string]*reader{}, byInode: map[[2]uint64]*reader{}, notReady: map[string]bool{},
		oldest: map[*reader]time.Time{}}
	m, err := newMetrics(reg, t.oldestUnackedAge)
	if err != nil {
		return nil, err
	}
	t.metrics = m
	return t, nil
}

// oldestUnackedAge is the age in seconds of the oldest line read but not
// yet acknowledged downstream, over all open files; 0 when none waits.
func (t *Tailer) oldestUnackedAge() float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var oldest time.Time
	for _, at := range t.oldest {
		if !at.IsZero() && (oldest.IsZero() || at.Before(oldest)) {
			oldest = at
		}
	}
	if oldest.IsZero() {
		return 0
	}
	return time.Since(oldest).Seconds()
}

// Run scans and follows files until ctx ends, then waits for in-flight
// batches (up to DrainTimeout) and returns.
func (t *Tailer) Run(ctx context.Context) error {
	sendCtx, cancelSend := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSend()
	var wg sync.WaitGroup
	ticker := time.NewTicker(t.cfg.ScanInterval)
	defer ticker.Stop()
	for {
		t.scan(ctx, sendCtx, &wg)
		select {
		case <-ctx.Done():
			done := make(chan struct{})
			go func() { wg.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(t.cfg.DrainTimeout):
				t.log.Warn("in-flight batches not acknowledged before the drain timeout; they will be read again", "timeout", t.cfg.DrainTimeout)
				cancelSend()
				<-done
			}
			return nil
		case <-ticker.C:
		}
	}
}

// Active lists the paths of open files.
func (t *Tailer) Active() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for _, r := range t.byKey {
		out = append(out, r.path)
	}
	sort.Strings(out)
	return out
}

func (t *Tailer) excluded(path string) bool {
	for _, g := range t.cfg.Exclude {
		if ok, _ := filepath.Match(g, filepath.Base(path)); ok {
			return true
		}
		if ok, _ := filepath.Match(g, path); ok {
			return true
		}
	}
	return false
}

// scan expands the globs and starts a reader for every file with unread data.
func (t *Tailer) scan(ctx, sendCtx context.Context, wg *sync.WaitGroup) {
	seen := map[string]bool{}
	var paths []string
	for _, g := range t.cfg.Include {
		m, _ := filepath.Glob(g)
		for _, p := range m {
			if !seen[p] && !t.excluded(p) {
				seen[p] = true
				paths = append(paths, p)
			}
		}
	}
	sort.Strings(paths)
	for _, p := range paths {
		if ctx.Err() != nil {
			return
		}
		if err := t.consider(ctx, sendCtx, wg, p); err != nil {
			t.log.Warn("cannot follow file", "path", p, "err", err)
		}
	}
	// Every file on disk was touched above, so what is left unseen for
	// forget_after is gone (deleted, compressed away), not merely quiet.
	if n := t.pos.Prune(time.Now().Add(-t.cfg.ForgetAfter)); n > 0 {
		t.log.Info("forgot positions of files not seen on disk", "count", n, "forget_after", t.cfg.ForgetAfter)
	}
	t.scans++
	t.save()
}

// save writes the positions; a failure costs duplicates after a crash,
// never data, so it is logged and retried with the next save.
func (t *Tailer) save() {
	if err := t.pos.Save(); err != nil {
		t.log.Error("save positions", "err", err)
	}
}

// touchEvery bounds how often "seen on disk" alone rewrites positions.
func (t *Tailer) touchEvery() time.Duration { return min(t.cfg.ForgetAfter/10, time.Minute) }

func (t *Tailer) consider(ctx, sendCtx context.Context, wg *sync.WaitGroup, path string) error {
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return nil // gone since the glob, or not a file
	}
	now := time.Now()
	dev, ino, _ := fileID(fi)
	t.mu.Lock()
	r, open := t.byInode[[2]uint64{dev, ino}]
	t.mu.Unlock()
	if open {
		t.pos.Touch(r.key, now, t.touchEvery())
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	keep := false
	defer func() {
		if !keep {
			f.Close()
		}
	}()
	fp, ready, err := fingerprint(f)
	if err != nil {
		return fmt.Errorf("fingerprint: %w", err)
	}
	if !ready {
		if !t.notReady[path] {
			t.notReady[path] = true
			t.log.Debug("file has no complete first line yet", "path", path)
		}
		return nil
	}
	delete(t.notReady, path)
	size := fi.Size()
	if busy, err := t.copyOfOpen(f, fp, size); err != nil {
		return err
	} else if busy {
		// The start of a file being read (a copy made by copytruncate, or
		// a file that has only the shared first line so far): the reader
		// of the original covers it; the next scan looks again.
		return nil
	}
	key := positions.Key(fp, dev, ino)
	start, err := t.resume(f, fi, fp, dev, ino, path, now)
	if err != nil {
		return err
	}
	if start < 0 { // first start with read_from: end
		t.pos.Set(t.positionAt(f, fp, path, dev, ino, size, now))
		return nil
	}
	if size == start {
		return nil // nothing new; the next scan looks again
	}
	r = newReader(f, path, fp, dev, ino, start, t.cfg.MaxLineBytes)
	if r.headLen = min(HeadBytes, start); r.headLen > 0 {
		sum, ok, err := hashAt(f, 0, r.headLen)
		if err != nil || !ok {
			return fmt.Errorf("hash the head of %s: ok %v, %v", path, ok, err)
		}
		r.headHash = sum
	}
	keep = true
	t.mu.Lock()
	t.byKey[key] = r
	t.byInode[[2]uint64{dev, ino}] = r
	t.mu.Unlock()
	t.metrics.open.Inc()
	t.log.Info("following file", "path", path, "fingerprint", fp, "offset", start)
	wg.Add(1)
	go func() {
		defer wg.Done()
		t.follow(ctx, sendCtx, r)
	}()
	return nil
}

// copyOfOpen reports whether the file starts like a file being read, over
// its first min(HeadBytes, size) bytes: then it is a copy of that file, or
// holds nothing yet that tells it apart. A file that starts like one whose
// content was just replaced waits too.
func (t *Tailer) copyOfOpen(f *os.File, fp string, size int64) (bool, error) {
	t.mu.Lock()
	var open []*reader
	for _, r := range t.byKey {
		if r.fingerprint == fp {
			open = append(open, r)
		}
	}
	t.mu.Unlock()
	if len(open) == 0 {
		return false, nil
	}
	n := min(HeadBytes, size)
	mine, ok, err := hashAt(f, 0, n)
	if err != nil || !ok {
		return false, err
	}
	for _, r := range open {
		// An open file whose first line changed under its reader (truncated
		// by copytruncate) is about to be closed, and this may be its copy:
		// wait until it is, then match the copy to the saved position.
		if now, ready, err := fingerprint(r.f); err == nil && (!ready || now != fp) {
			return true, nil
		}
		theirs, ok, err := hashAt(r.f, 0, n)
		if err == nil && ok && theirs == mine {
			return true, nil
		}
	}
	return false, nil
}

// match is a saved position that a file on disk may be.
type match struct {
	pos               positions.Position
	sameInode, headOK bool
}

// resume decides where a file that is not open starts: the offset of the
// saved position that is this file (by content), 0 for a new or rewritten
// file, or -1 for a file present at the first start with read_from: end.
func (t *Tailer) resume(f *os.File, fi os.FileInfo, fp string, dev, ino uint64, path string, now time.Time) (int64, error) {
	size := fi.Size()
	var best *match
	for _, c := range t.pos.Candidates(fp) {
		t.mu.Lock()
		_, taken := t.byKey[c.Key]
		t.mu.Unlock()
		if taken {
			continue // that file is open under its own name
		}
		m := match{pos: c, sameInode: c.Dev == dev && c.Inode == ino}
		if c.HeadLen > 0 && size >= c.HeadLen {
			sum, _, err := hashAt(f, 0, c.HeadLen)
			if err != nil {
				return 0, err
			}
			if sum != c.HeadHash {
				continue // starts differently: another file
			}
			m.headOK = true
		}
		if c.TailLen > 0 && size >= c.Offset {
			sum, _, err := hashAt(f, c.Offset-c.TailLen, c.TailLen)
			if err != nil {
				return 0, err
			}
			if sum != c.TailHash {
				continue // different content where we stopped: rewritten
			}
		}
		if best == nil || better(m, *best) {
			best = &m
		}
	}
	if best == nil {
		if t.scans == 0 && !t.pos.Existed() && t.cfg.ReadFrom == "end" {
			return -1, nil
		}
		return 0, nil
	}
	c := best.pos
	t.pos.Touch(c.Key, now, t.touchEvery())
	if size >= c.Offset {
		return c.Offset, nil
	}
	// Shorter than what was read: a copy of a prefix of it (copytruncate
	// copied before the last lines were written) or the file truncated and
	// rewritten. Only a different file whose head matches and that was
	// last written before the last acknowledgement is taken for a copy;
	// when in doubt the file is read again (duplicates, never loss).
	if !best.sameInode && best.headOK && !fi.ModTime().After(c.Updated) {
		t.log.Info("file is a copy of a prefix of what was read: continuing from its end",
			"path", path, "size", size, "saved", c.Offset, "of", c.Path)
		t.metrics.rotations.WithLabelValues("copy_of_prefix").Inc()
		t.pos.Set(t.positionAt(f, fp, path, dev, ino, size, now))
		return size, nil
	}
	t.log.Info("file is shorter than its saved position and was rewritten: reading it from the start",
		"path", path, "size", size, "saved", c.Offset, "same_inode", best.sameInode)
	t.metrics.rotations.WithLabelValues("rewritten").Inc()
	return 0, nil
}

// better prefers the same inode, then a verified head, then more read.
func better(a, b match) bool {
	if a.sameInode != b.sameInode {
		return a.sameInode
	}
	if a.headOK != b.headOK {
		return a.headOK
	}
	return a.pos.Offset > b.pos.Offset
}

// positionAt builds a position at offset for a file not being read.
func (t *Tailer) positionAt(f *os.File, fp, path string, dev, ino uint64, offset int64, now time.Time) positions.Position {
	r := newReader(f, path, fp, dev, ino, offset, t.cfg.MaxLineBytes)
	return r.position(Line{TooLong: true}, now)
}

// result is the outcome of one batch sent by follow.
type result struct {
	seq uint64
	err error
}

// follow reads one file until it is closed: inactive, deleted, replaced, or
// shutdown. Up to MaxInFlight batches of the file are sent at once; the
// position advances over the contiguous prefix of acknowledged batches
// only (see window). Before the file is closed, the batches in flight are
// waited for, so their acknowledgements still move the position.
func (t *Tailer) follow(ctx, sendCtx context.Context, r *reader) {
	var win window
	// One slot per batch in flight: a sender never blocks on it.
	results := make(chan result, t.cfg.MaxInFlight)
	defer func() {
		for win.inFlight() > 0 {
			t.finished(r, &win, <-results)
		}
		r.f.Close()
		t.mu.Lock()
		delete(t.byKey, r.key)
		delete(t.byInode, [2]uint64{r.dev, r.ino})
		delete(t.oldest, r)
		t.mu.Unlock()
		t.metrics.open.Dec()
		t.metrics.lag.DeleteLabelValues(r.path)
	}()
	lastData := time.Now()
	for ctx.Err() == nil {
		// Take the outcomes that are in; when the window is full, wait for one.
	collect:
		for {
			var res result
			if win.inFlight() < t.cfg.MaxInFlight {
				select {
				case res = <-results:
				default:
					break collect
				}
			} else {
				select {
				case res = <-results:
				case <-ctx.Done():
					return
				}
			}
			if !t.finished(r, &win, res) {
				return // shutting down; the batch will be read again
			}
		}
		if changed, why, err := r.identityChanged(); err != nil {
			t.log.Warn("stat failed", "path", r.path, "err", err)
			return
		} else if changed {
			t.log.Info("file content changed under its reader: closing it; the next scan picks up copies and new content",
				"path", r.path, "reason", why, "acknowledged", r.acked)
			t.metrics.rotations.WithLabelValues(why).Inc()
			return
		}
		fi, err := r.f.Stat()
		if err != nil {
			return
		}
		r.observe(fi.Size(), time.Now())
		lines, err := r.read(t.cfg.BatchLines, t.cfg.BatchBytes)
		if err != nil {
			t.log.Warn("read failed", "path", r.path, "err", err)
			return
		}
		t.noteOldest(r)
		if len(lines) > 0 {
			lastData = time.Now()
			var bytesRead int
			for _, l := range lines {
				bytesRead += l.Length + 1
			}
			t.metrics.lines.Add(float64(len(lines)))
			t.metrics.bytes.Add(float64(bytesRead))
			seq := win.add(lines[len(lines)-1])
			b := Batch{Path: r.path, Fingerprint: r.fingerprint, Lines: lines}
			go func() { results <- result{seq: seq, err: t.handle(sendCtx, b)} }()
			continue
		}
		t.updateLag(r)
		if _, _, nlink := fileID(fi); nlink == 0 && len(r.pending) == 0 && !r.discarding {
			t.log.Info("file deleted and read to its end: closing", "path", r.path)
			t.metrics.rotations.WithLabelValues("deleted").Inc()
			return
		}
		if time.Since(lastData) > t.cfg.CloseInactive {
			t.log.Debug("file inactive: closing", "path", r.path)
			return
		}
		select {
		case <-ctx.Done():
		case res := <-results:
			if !t.finished(r, &win, res) {
				return
			}
		case <-time.After(t.cfg.PollInterval):
		}
	}
}

// finished applies one batch's outcome: the position moves over the
// acknowledged prefix and is saved with every move, so a crash re-sends at
// most the batches in flight. It reports whether the batch was acknowledged.
func (t *Tailer) finished(r *reader, win *window, res result) bool {
	win.finish(res.seq, res.err == nil)
	if last, ok := win.advance(); ok {
		r.acked = last.End
		t.pos.Set(r.position(last, time.Now()))
		t.save()
		t.noteOldest(r)
		t.updateLag(r)
	}
	return res.err == nil
}

// noteOldest publishes the reader's oldest unacknowledged line for the gauge.
func (t *Tailer) noteOldest(r *reader) {
	at := r.oldestUnacked()
	t.mu.Lock()
	t.oldest[r] = at
	t.mu.Unlock()
}

func (t *Tailer) updateLag(r *reader) {
	if fi, err := r.f.Stat(); err == nil {
		t.metrics.lag.WithLabelValues(r.path).Set(float64(fi.Size() - r.acked))
	}
}

type metrics struct {
	open      prometheus.Gauge
	lines     prometheus.Counter
	bytes     prometheus.Counter
	lag       *prometheus.GaugeVec
	rotations *prometheus.CounterVec
	oldest    prometheus.GaugeFunc
}

func newMetrics(reg prometheus.Registerer, oldestAge func() float64) (*metrics, error) {
	m := &metrics{
		open: prometheus.NewGauge(prometheus.GaugeOpts{Name: "assistlog_collector_files_open",
			Help: "Files currently being read."}),
		lines: prometheus.NewCounter(prometheus.CounterOpts{Name: "assistlog_collector_lines_read_total",
			Help: "Complete lines read from files (a batch read again after a restart counts again)."}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "assistlog_collector_bytes_read_total",
			Help: "Bytes of complete lines read from files."}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "assistlog_collector_file_lag_bytes",
			Help: "Bytes in an open file not yet acknowledged by Kafka."}, []string{"path"}),
		rotations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "assistlog_collector_file_changes_total",
			Help: "Rotations and truncations noticed, by kind."}, []string{"kind"}),
		oldest: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "assistlog_collector_oldest_unacked_line_seconds",
			Help: "Age of the oldest line in an open file not yet acknowledged by Kafka (since its bytes were first seen); 0 when everything read is acknowledged."},
			oldestAge),
	}
	for _, c := range []prometheus.Collector{m.open, m.lines, m.bytes, m.lag, m.rotations, m.oldest} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register tail metrics: %w", err)
		}
	}
	return m, nil
}
