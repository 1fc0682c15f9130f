// Package tail follows JSON-lines files matching globs: it discovers files
// while running, identifies them by content fingerprint (plus device and
// inode), reads complete lines, and hands them downstream in batches. A
// file's position is saved only after the handler returned, that is after
// downstream acknowledged the batch.
//
// Rotation: a renamed file keeps being read through its open descriptor to
// its end; a copy made by copytruncate has the same fingerprint, so it is
// continued from the saved offset rather than read again; a file whose
// content was replaced (truncated and rewritten) gets a new fingerprint and
// is read from its start; a deleted file is read to its end and closed.
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
	// ReadFrom is where a file never seen before starts: "beginning" or "end".
	ReadFrom string
	// DrainTimeout bounds how long in-flight batches may take to be
	// acknowledged after Run's context ends.
	DrainTimeout time.Duration
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
		"close_inactive": c.CloseInactive, "drain_timeout": c.DrainTimeout} {
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
	byFP     map[string]*reader
	byInode  map[[2]uint64]*reader
	notReady map[string]bool
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
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &Tailer{cfg: cfg, pos: pos, handle: h, log: log, metrics: m,
		byFP: map[string]*reader{}, byInode: map[[2]uint64]*reader{}, notReady: map[string]bool{}}, nil
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
	for _, r := range t.byFP {
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
}

func (t *Tailer) consider(ctx, sendCtx context.Context, wg *sync.WaitGroup, path string) error {
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return nil // gone since the glob, or not a file
	}
	dev, ino, _ := fileID(fi)
	t.mu.Lock()
	_, open := t.byInode[[2]uint64{dev, ino}]
	t.mu.Unlock()
	if open {
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
	t.mu.Lock()
	_, busy := t.byFP[fp]
	t.mu.Unlock()
	if busy {
		// Same content as a file being read (a copy made by copytruncate,
		// or a hard link): the reader of the original covers it.
		return nil
	}
	size := fi.Size()
	var start int64
	if p, known := t.pos.Get(fp); known {
		start = p.Offset
		if size < start {
			// A copy of a prefix of what was read (copytruncate), or a file
			// truncated to a point and appended to since: what follows the
			// end is new.
			t.log.Info("file is shorter than its saved position: continuing from its end", "path", path, "size", size, "saved", start)
			t.metrics.rotations.WithLabelValues("shorter_than_position").Inc()
			start = size
			t.pos.Set(positions.Position{Fingerprint: fp, Path: path, Offset: size, Dev: dev, Inode: ino})
		}
		if size == start {
			return nil // nothing new; the next scan looks again
		}
	} else if t.cfg.ReadFrom == "end" {
		start = size
		t.pos.Set(positions.Position{Fingerprint: fp, Path: path, Offset: size, Dev: dev, Inode: ino})
		return nil
	}
	r := newReader(f, path, fp, dev, ino, start, t.cfg.MaxLineBytes)
	keep = true
	t.mu.Lock()
	t.byFP[fp] = r
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

// follow reads one file until it is closed: inactive, deleted, replaced, or
// shutdown.
func (t *Tailer) follow(ctx, sendCtx context.Context, r *reader) {
	defer func() {
		r.f.Close()
		t.mu.Lock()
		delete(t.byFP, r.fingerprint)
		delete(t.byInode, [2]uint64{r.dev, r.ino})
		t.mu.Unlock()
		t.metrics.open.Dec()
		t.metrics.lag.DeleteLabelValues(r.path)
	}()
	lastData := time.Now()
	for ctx.Err() == nil {
		if changed, why, err := r.identityChanged(); err != nil {
			t.log.Warn("stat failed", "path", r.path, "err", err)
			return
		} else if changed {
			t.log.Info("file content changed under its reader: closing it; the next scan picks up copies and new content",
				"path", r.path, "reason", why, "acknowledged", r.acked)
			t.metrics.rotations.WithLabelValues(why).Inc()
			return
		}
		lines, err := r.read(t.cfg.BatchLines, t.cfg.BatchBytes)
		if err != nil {
			t.log.Warn("read failed", "path", r.path, "err", err)
			return
		}
		if len(lines) > 0 {
			lastData = time.Now()
			var bytesRead int
			for _, l := range lines {
				bytesRead += l.Length + 1
			}
			t.metrics.lines.Add(float64(len(lines)))
			t.metrics.bytes.Add(float64(bytesRead))
			if err := t.handle(sendCtx, Batch{Path: r.path, Fingerprint: r.fingerprint, Lines: lines}); err != nil {
				return // shutting down; the batch will be read again
			}
			r.acked = lines[len(lines)-1].End
			t.pos.Set(positions.Position{Fingerprint: r.fingerprint, Path: r.path, Offset: r.acked, Dev: r.dev, Inode: r.ino})
			t.updateLag(r)
			continue
		}
		t.updateLag(r)
		fi, err := r.f.Stat()
		if err != nil {
			return
		}
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
		case <-time.After(t.cfg.PollInterval):
		}
	}
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
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, errors.New("tail: a metrics registry is required")
	}
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
	}
	for _, c := range []prometheus.Collector{m.open, m.lines, m.bytes, m.lag, m.rotations} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register tail metrics: %w", err)
		}
	}
	return m, nil
}
