package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress/zstd"

	"github.com/assistlog/assistlog/internal/event"
	"github.com/assistlog/assistlog/internal/pii"
	"github.com/assistlog/assistlog/internal/tenants"
)

// Record is one Kafka message to archive.
type Record struct {
	Partition int
	Offset    int64
	Value     []byte
}

// Writer turns chunks of records into Parquet objects.
type Writer struct {
	store   *Store
	masker  *pii.Masker
	tenants *tenants.Set
	log     *slog.Logger
}

// NewWriter needs the store, the shipper's masker (the same step every sink
// applies) and the tenants whose zones date the partitions.
func NewWriter(store *Store, masker *pii.Masker, ts *tenants.Set, log *slog.Logger) (*Writer, error) {
	if store == nil || masker == nil || ts == nil || log == nil {
		return nil, errors.New("archive writer: store, masker, tenants and logger are required")
	}
	return &Writer{store: store, masker: masker, tenants: ts, log: log}, nil
}

// Result says what one chunk became.
type Result struct {
	Objects []string
	Rows    int
	// Undecodable counts messages that are not events (the shipper
	// dead-letters them; the archive holds events only).
	Undecodable int
}

type group struct {
	key  string
	rows []Row
}

// Write archives one chunk: per Kafka partition its records must be
// contiguous and start at the group's committed offset. It returns once
// every object is uploaded; only then may the offsets be committed.
func (w *Writer) Write(ctx context.Context, topic string, recs []Record) (Result, error) {
	var res Result
	groups := map[string]*group{}
	for _, rec := range recs {
		e, err := event.Parse(rec.Value)
		if err != nil {
			res.Undecodable++
			w.log.Warn("not an event; not archived (the shipper dead-letters it)", "partition", rec.Partition, "offset", rec.Offset, "err", err)
			continue
		}
		loc := time.UTC
		if t, err := w.tenants.Get(e.Tenant); err == nil {
			loc = t.Location()
		} else {
			w.log.Warn("tenant not in the tenants file; its partition date is in UTC", "tenant", e.Tenant)
		}
		dir := Dir(w.store.prefix, e, loc)
		gk := fmt.Sprintf("%s\x00%d", dir, rec.Partition)
		g := groups[gk]
		if g == nil {
			g = &group{key: dir + "/" + ObjectName(topic, rec.Partition, rec.Offset)}
			groups[gk] = g
		}
		// The same step as the shipper: a number the collector sealed is
		// opened for its hash, then everything is masked.
		if e, err = w.masker.Reveal(e); err != nil {
			return res, fmt.Errorf("archive %s/%d at %d: %w", topic, rec.Partition, rec.Offset, err)
		}
		row, err := NewRow(w.masker.Apply(e), rec.Partition, rec.Offset)
		if err != nil {
			return res, err
		}
		g.rows = append(g.rows, row)
	}
	keys := make([]string, 0, len(groups))
	for _, g := range groups {
		keys = append(keys, g.key)
	}
	sort.Strings(keys)
	byKey := map[string]*group{}
	for _, g := range groups {
		byKey[g.key] = g
	}
	for _, k := range keys {
		g := byKey[k]
		data, err := Encode(g.rows)
		if err != nil {
			return res, fmt.Errorf("encode %s: %w", k, err)
		}
		if err := w.store.Put(ctx, k, data); err != nil {
			return res, err
		}
		res.Objects = append(res.Objects, k)
		res.Rows += len(g.rows)
	}
	return res, nil
}

// Encode writes rows as one zstd-compressed Parquet file.
func Encode(rows []Row) ([]byte, error) {
	var buf bytes.Buffer
	pw := parquet.NewGenericWriter[Row](&buf, parquet.Compression(&zstd.Codec{}))
	if _, err := pw.Write(rows); err != nil {
		return nil, err
	}
	if err := pw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Decode reads a file Encode wrote (retention and erasure rewrite objects).
func Decode(data []byte) ([]Row, error) {
	return parquet.Read[Row](bytes.NewReader(data), int64(len(data)))
}
