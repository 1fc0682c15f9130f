package tail

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/assistlog/assistlog/internal/positions"
)

// FingerprintBytes bounds the first-line fingerprint: the first line, or
// the first FingerprintBytes bytes when that line is longer.
const FingerprintBytes = 4096

// HeadBytes is how much of a file's start, besides its first line, tells
// files apart: positions keep the hash of the first min(HeadBytes, offset)
// bytes. 1 KiB holds a few assistant lines (a few hundred bytes each), so
// two files that share a header or banner differ within it, while a file
// never has to reach it to be read.
const HeadBytes = 1024

// tailBytes bounds the bytes before a saved offset hashed when the last
// acknowledged line is not at hand (a line cut as too long).
const tailBytes = 256

// Line is one complete line of a file.
type Line struct {
	// Data is the line without its newline. For a TooLong line it holds only
	// the first MaxLineBytes bytes.
	Data []byte
	// Offset is where the line starts; End is just past its newline, the
	// position to save once the line is acknowledged.
	Offset, End int64
	// Length is the full length of the line without the newline.
	Length int
	// TooLong marks a line over the configured limit.
	TooLong bool
}

// fingerprint identifies the content of f: the SHA-256 of its first line
// (with the newline) or of its first FingerprintBytes bytes. ready is false
// while the file has neither a complete first line nor that many bytes: its
// identity is not settled yet.
func fingerprint(f *os.File) (fp string, ready bool, err error) {
	buf := make([]byte, FingerprintBytes)
	n, err := f.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", false, err
	}
	buf = buf[:n]
	if i := bytes.IndexByte(buf, '\n'); i >= 0 {
		buf = buf[:i+1]
	} else if n < FingerprintBytes {
		return "", false, nil
	}
	sum := sha256.Sum256(buf)
	return hex.EncodeToString(sum[:16]), true, nil
}

// hashAt returns the hash of the n bytes of f at off; ok is false when the
// file is shorter than off+n.
func hashAt(f *os.File, off, n int64) (sum string, ok bool, err error) {
	buf := make([]byte, n)
	m, err := f.ReadAt(buf, off)
	if int64(m) < n {
		if err != nil && !errors.Is(err, io.EOF) {
			return "", false, err
		}
		return "", false, nil
	}
	return hashBytes(buf), true, nil
}

func hashBytes(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:16])
}

// fileID returns device and inode numbers.
func fileID(fi os.FileInfo) (dev, ino uint64, nlink uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev), st.Ino, uint64(st.Nlink)
	}
	return 0, 0, 1
}

// reader reads complete lines from one open file, starting at an
// acknowledged offset. It holds a partial last line until its newline
// arrives, and cuts over-long lines to a prefix while skipping the rest.
type reader struct {
	f           *os.File
	path        string
	fingerprint string
	key         string // the position's key
	dev, ino    uint64
	maxLine     int

	// head is the hash of the first headLen bytes, kept up to HeadBytes
	// as the acknowledged offset grows.
	headLen  int64
	headHash string
	// seen records file sizes with the time they were first observed,
	// for the age of the oldest unacknowledged line.
	seen []sizeSeen

	acked   int64  // offset up to which lines were acknowledged downstream
	readPos int64  // offset of the next byte to read from the file
	pending []byte // bytes of the current, incomplete line
	// Over-long line state: the line's start, its prefix and its length so far.
	discarding   bool
	discardStart int64
	discardHead  []byte
	discardLen   int

	buf []byte
}

type sizeSeen struct {
	size int64
	at   time.Time
}

// maxSeen bounds the size observations kept while downstream is stuck;
// beyond it the oldest ones, the ones that matter, are kept.
const maxSeen = 1024

func newReader(f *os.File, path, fp string, dev, ino uint64, offset int64, maxLine int) *reader {
	return &reader{f: f, path: path, fingerprint: fp, key: positions.Key(fp, dev, ino), dev: dev, ino: ino,
		maxLine: maxLine, acked: offset, readPos: offset, buf: make([]byte, 64<<10)}
}

// completeEnd is the end of the last complete line read so far.
func (r *reader) completeEnd() int64 {
	if r.discarding {
		return r.discardStart
	}
	return r.readPos - int64(len(r.pending))
}

// observe notes the file's size at now.
func (r *reader) observe(size int64, now time.Time) {
	if size <= r.acked {
		return
	}
	if n := len(r.seen); (n == 0 || r.seen[n-1].size < size) && n < maxSeen {
		r.seen = append(r.seen, sizeSeen{size, now})
	}
}

// oldestUnacked returns when the oldest line not yet acknowledged was
// first seen in the file; zero when every complete line is acknowledged
// (a partial last line is the writer's, not ours).
func (r *reader) oldestUnacked() time.Time {
	done := func(size int64) bool {
		return size <= r.acked || (size <= r.readPos && r.acked == r.completeEnd())
	}
	i := 0
	for i < len(r.seen) && done(r.seen[i].size) {
		i++
	}
	r.seen = r.seen[i:]
	if len(r.seen) == 0 {
		return time.Time{}
	}
	return r.seen[0].at
}

// position builds the position after lines up to last were acknowledged:
// the head hash grows with the offset up to HeadBytes, and the tail hash
// covers the last acknowledged line.
func (r *reader) position(last Line, now time.Time) positions.Position {
	p := positions.Position{Key: r.key, Fingerprint: r.fingerprint, Path: r.path, Offset: r.acked,
		Dev: r.dev, Inode: r.ino, Updated: now, Seen: now}
	if want := min(HeadBytes, r.acked); r.headLen < want {
		if sum, ok, err := hashAt(r.f, 0, want); err == nil && ok {
			r.headLen, r.headHash = want, sum
		}
	}
	p.HeadLen, p.HeadHash = r.headLen, r.headHash
	if !last.TooLong && last.End == r.acked {
		p.TailLen, p.TailHash = int64(len(last.Data))+1, hashBytes(append(append([]byte(nil), last.Data...), '\n'))
	} else if n := min(tailBytes, r.acked); n > 0 {
		if sum, ok, err := hashAt(r.f, r.acked-n, n); err == nil && ok {
			p.TailLen, p.TailHash = n, sum
		}
	}
	return p
}

// read returns up to maxLines complete lines (and about maxBytes of data)
// that are available now; none at end of file.
func (r *reader) read(maxLines, maxBytes int) ([]Line, error) {
	var lines []Line
	size := 0
	for len(lines) < maxLines && size < maxBytes {
		n, err := r.f.ReadAt(r.buf, r.readPos)
		if n == 0 {
			if err == nil || errors.Is(err, io.EOF) {
				return lines, nil
			}
			return lines, fmt.Errorf("read %s at %d: %w", r.path, r.readPos, err)
		}
		chunk := r.buf[:n]
		consumed := 0
		for consumed < len(chunk) && len(lines) < maxLines && size < maxBytes {
			rest := chunk[consumed:]
			i := bytes.IndexByte(rest, '\n')
			if i < 0 {
				r.absorb(rest)
				consumed = len(chunk)
				break
			}
			l := r.complete(rest[:i])
			consumed += i + 1
			r.readPos += int64(i + 1)
			lines = append(lines, l)
			size += len(l.Data)
		}
		if n < len(r.buf) {
			return lines, nil
		}
	}
	return lines, nil
}

// absorb takes the bytes of a line whose newline has not arrived yet.
func (r *reader) absorb(b []byte) {
	r.readPos += int64(len(b))
	if r.discarding {
		r.discardLen += len(b)
		return
	}
	r.pending = append(r.pending, b...)
	if len(r.pending) > r.maxLine {
		r.discarding = true
		r.discardStart = r.readPos - int64(len(r.pending))
		r.discardHead = append([]byte(nil), r.pending[:r.maxLine]...)
		r.discardLen = len(r.pending)
		r.pending = r.pending[:0]
	}
}

// complete finishes the current line with its last bytes (before '\n').
func (r *reader) complete(tail []byte) Line {
	end := r.readPos + int64(len(tail)) + 1
	if r.discarding {
		l := Line{Data: r.discardHead, Offset: r.discardStart, End: end, Length: r.discardLen + len(tail), TooLong: true}
		r.discarding, r.discardHead, r.discardLen = false, nil, 0
		return l
	}
	var data []byte
	if len(r.pending) > 0 {
		data = append(append([]byte(nil), r.pending...), tail...)
		r.pending = r.pending[:0]
	} else {
		data = append([]byte(nil), tail...)
	}
	l := Line{Data: data, Offset: end - int64(len(data)) - 1, End: end, Length: len(data)}
	if len(data) > r.maxLine {
		l.Data, l.TooLong = data[:r.maxLine], true
	}
	return l
}

// identityChanged reports whether the file at our descriptor no longer
// starts with the content we fingerprinted (copytruncate, truncate and
// rewrite), or shrank below what we read.
func (r *reader) identityChanged() (bool, string, error) {
	fi, err := r.f.Stat()
	if err != nil {
		return false, "", err
	}
	if fi.Size() < r.readPos {
		return true, "truncated", nil
	}
	fp, ready, err := fingerprint(r.f)
	if err != nil {
		return false, "", err
	}
	if !ready || fp != r.fingerprint {
		return true, "content replaced", nil
	}
	// The same first line is not the same file: a rewrite that repeats a
	// header or banner differs within the head.
	if r.headLen > 0 {
		sum, ok, err := hashAt(r.f, 0, r.headLen)
		if err != nil {
			return false, "", err
		}
		if !ok || sum != r.headHash {
			return true, "content replaced", nil
		}
	}
	return false, "", nil
}
