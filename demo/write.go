package demo

import (
	"bufio"
	"context"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/assistlog/assistlog/internal/event"
	"github.com/assistlog/assistlog/internal/kafka"
)

// FileOptions says how to lay events out in files, like assistant
// processes writing their own logs.
type FileOptions struct {
	Dir string
	// Files spreads sessions over this many files (assistant-1.jsonl …);
	// one session always goes to one file.
	Files int
	// RotateBytes rotates a file logrotate-style (name.jsonl → name.jsonl.1,
	// .1 → .2, …) before it would grow past this size; 0 never rotates.
	RotateBytes int64
}

// fileWriter is one log file with rotation.
type fileWriter struct {
	path        string
	f           *os.File
	w           *bufio.Writer
	size        int64
	rotateBytes int64
	rotations   int
}

func (fw *fileWriter) open() error {
	f, err := os.OpenFile(fw.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	fw.f, fw.w, fw.size = f, bufio.NewWriterSize(f, 64<<10), fi.Size()
	return nil
}

func (fw *fileWriter) close() error {
	if fw.f == nil {
		return nil
	}
	if err := fw.w.Flush(); err != nil {
		fw.f.Close()
		return err
	}
	err := fw.f.Close()
	fw.f = nil
	return err
}

func (fw *fileWriter) rotate() error {
	if err := fw.close(); err != nil {
		return err
	}
	for i := fw.rotations; i >= 1; i-- {
		if err := os.Rename(fmt.Sprintf("%s.%d", fw.path, i), fmt.Sprintf("%s.%d", fw.path, i+1)); err != nil {
			return err
		}
	}
	if err := os.Rename(fw.path, fw.path+".1"); err != nil {
		return err
	}
	fw.rotations++
	return fw.open()
}

func (fw *fileWriter) write(line []byte) error {
	if fw.rotateBytes > 0 && fw.size > 0 && fw.size+int64(len(line)) > fw.rotateBytes {
		if err := fw.rotate(); err != nil {
			return fmt.Errorf("rotate %s: %w", fw.path, err)
		}
	}
	n, err := fw.w.Write(line)
	fw.size += int64(n)
	return err
}

// WriteFiles writes events as JSON lines, returning the paths written
// (rotated files included).
func WriteFiles(evs []event.Event, opt FileOptions) ([]string, error) {
	if opt.Files < 1 {
		opt.Files = 1
	}
	if err := os.MkdirAll(opt.Dir, 0o755); err != nil {
		return nil, err
	}
	writers := make([]*fileWriter, opt.Files)
	for i := range writers {
		writers[i] = &fileWriter{path: filepath.Join(opt.Dir, fmt.Sprintf("assistant-%d.jsonl", i+1)), rotateBytes: opt.RotateBytes}
		if err := writers[i].open(); err != nil {
			return nil, err
		}
	}
	var firstErr error
	for i := range evs {
		line, err := evs[i].Marshal()
		if err != nil {
			firstErr = err
			break
		}
		h := fnv.New32a()
		h.Write([]byte(evs[i].SessionID))
		if err := writers[int(h.Sum32())%opt.Files].write(append(line, '\n')); err != nil {
			firstErr = err
			break
		}
	}
	var paths []string
	for _, w := range writers {
		if err := w.close(); err != nil && firstErr == nil {
			firstErr = err
		}
		paths = append(paths, w.path)
		for i := 1; i <= w.rotations; i++ {
			paths = append(paths, fmt.Sprintf("%s.%d", w.path, i))
		}
	}
	return paths, firstErr
}

// Stream appends events to path at rate events per second until all are
// written or ctx ends. With live, each event's timestamp becomes the moment
// it is written, as a running assistant would log it. progress, if set, is
// called about once a second with the count written so far.
func Stream(ctx context.Context, evs []event.Event, path string, rate float64, live bool, progress func(n int)) (int, error) {
	if rate <= 0 {
		return 0, fmt.Errorf("rate: must be positive, got %g", rate)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	start := time.Now()
	lastReport := start
	for i := range evs {
		// Pace by schedule, not by sleeping a fixed gap, so rate holds
		// even when writes take time.
		due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
		if d := time.Until(due); d > 0 {
			select {
			case <-ctx.Done():
				return i, ctx.Err()
			case <-time.After(d):
			}
		}
		e := evs[i]
		if live {
			zone := e.Time().Location()
			e.Timestamp = time.Now().In(zone).Format("2006-01-02T15:04:05.000Z07:00")
		}
		line, err := e.Marshal()
		if err != nil {
			return i, err
		}
		// One write per line: a reader never sees half a line from us
		// except while the write itself is under way.
		if _, err := f.Write(append(line, '\n')); err != nil {
			return i, fmt.Errorf("append to %s: %w", path, err)
		}
		if progress != nil && time.Since(lastReport) >= time.Second {
			lastReport = time.Now()
			progress(i + 1)
		}
	}
	return len(evs), nil
}

// Produce writes events straight to the events topic, keyed by
// tenant/session, acknowledged by all in-sync replicas.
func Produce(ctx context.Context, brokers []string, evs []event.Event, progress func(n int)) error {
	w := &kafkago.Writer{
		Addr:                   kafkago.TCP(brokers...),
		Topic:                  kafka.EventsTopic,
		Balancer:               &kafkago.Hash{},
		RequiredAcks:           kafkago.RequireAll,
		Compression:            kafkago.Snappy,
		BatchSize:              1000,
		BatchTimeout:           20 * time.Millisecond,
		AllowAutoTopicCreation: false,
	}
	defer w.Close()
	const chunk = 2000
	for i := 0; i < len(evs); i += chunk {
		end := min(i+chunk, len(evs))
		msgs := make([]kafkago.Message, 0, end-i)
		for j := i; j < end; j++ {
			v, err := evs[j].Marshal()
			if err != nil {
				return err
			}
			msgs = append(msgs, kafkago.Message{Key: evs[j].Key(), Value: v})
		}
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			return fmt.Errorf("produce events %d-%d to %s: %w", i, end, kafka.EventsTopic, err)
		}
		if progress != nil {
			progress(end)
		}
	}
	return nil
}
