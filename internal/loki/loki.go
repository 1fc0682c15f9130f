// Package loki pushes log lines to Grafana Loki and returns only once Loki
// acknowledged them (HTTP 204), so a Kafka offset can move on safely.
//
// grafana/loki-client-go is not used: its client batches in the background
// and, after its retries, drops a batch with a log line; the caller is never
// told whether lines were stored. This client pushes synchronously with
// Loki's own wire types (github.com/grafana/loki/pkg/push, protobuf +
// snappy), retries 429 and 5xx with backoff, and reports entries Loki will
// never take (too old, too long, too far behind) one by one, so the caller
// can dead-letter them without dropping the rest of the batch.
package loki

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a Client. The limits mirror Loki's defaults; set them
// to the server's if it was configured otherwise.
type Config struct {
	URL string `yaml:"url"`
	// TenantID is sent as X-Scope-OrgID when Loki runs with auth enabled.
	TenantID string        `yaml:"tenant_id"`
	Timeout  time.Duration `yaml:"timeout"`
	// RetryBackoffMax caps the wait between retries of 429/5xx.
	RetryBackoffMax time.Duration `yaml:"retry_backoff_max"`
	// MaxLineBytes (max_line_size), RejectOlderThan (reject_old_samples_max_age)
	// and CreationGrace (creation_grace_period): entries outside them are
	// rejected here, without a round trip.
	MaxLineBytes    int           `yaml:"max_line_bytes"`
	RejectOlderThan time.Duration `yaml:"reject_older_than"`
	CreationGrace   time.Duration `yaml:"creation_grace"`
}

// DefaultConfig points at the local stack with Loki's default limits.
func DefaultConfig() Config {
	return Config{URL: "http://127.0.0.1:13100", Timeout: 30 * time.Second, RetryBackoffMax: 10 * time.Second,
		MaxLineBytes: 256 << 10, RejectOlderThan: 7 * 24 * time.Hour, CreationGrace: 10 * time.Minute}
}

// Validate names the field at fault.
func (c Config) Validate() error {
	var errs []error
	if !strings.HasPrefix(c.URL, "http://") && !strings.HasPrefix(c.URL, "https://") {
		errs = append(errs, fmt.Errorf("url: must be http(s)://host:port, got %q", c.URL))
	}
	if c.Timeout <= 0 || c.RetryBackoffMax <= 0 || c.RejectOlderThan <= 0 || c.CreationGrace <= 0 || c.MaxLineBytes <= 0 {
		errs = append(errs, errors.New("timeout, retry_backoff_max, reject_older_than, creation_grace, max_line_bytes: must be positive"))
	}
	return errors.Join(errs...)
}

// Entry is one line for one stream.
type Entry struct {
	Labels   map[string]string // the stream: keep it low-cardinality
	Time     time.Time
	Line     string
	Metadata map[string]string // structured metadata: high-cardinality ids go here
	// Ref is the caller's handle, returned with a rejection.
	Ref any
}

// Rejection is an entry Loki will not accept, and why.
type Rejection struct {
	Entry  Entry
	Reason string
}

// Client pushes to one Loki.
type Client struct {
	cfg  Config
	http *http.Client
	log  *slog.Logger
	m    clientMetrics
	now  func() time.Time
}

type clientMetrics struct {
	entries *prometheus.CounterVec
	latency prometheus.Histogram
}

// New builds a client; its metrics go on reg (required).
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Client, error) {
	if reg == nil {
		return nil, errors.New("loki: a metrics registry is required")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("loki config: %w", err)
	}
	c := &Client{cfg: cfg, http: &http.Client{Timeout: cfg.Timeout}, log: log, now: time.Now, m: clientMetrics{
		entries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "assistlog_loki_entries_total",
			Help: "Entries by outcome (pushed, rejected, retried)."}, []string{"outcome"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "assistlog_loki_push_seconds",
			Help: "Time to get a batch acknowledged, retries included.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 14)}),
	}}
	for _, col := range []prometheus.Collector{c.m.entries, c.m.latency} {
		if err := reg.Register(col); err != nil {
			return nil, fmt.Errorf("register loki metrics: %w", err)
		}
	}
	return c, nil
}

// Push sends entries and returns once Loki acknowledged every one it will
// accept; the others come back as rejections. Retryable failures (429, 5xx,
// network) are retried until ctx ends, then ctx's error is returned and
// nothing should be taken as stored.
func (c *Client) Push(ctx context.Context, entries []Entry) ([]Rejection, error) {
	start := c.now()
	var ok []Entry
	var rejected []Rejection
	for _, e := range entries {
		if reason := c.precheck(e, start); reason != "" {
			rejected = append(rejected, Rejection{Entry: e, Reason: reason})
			continue
		}
		ok = append(ok, e)
	}
	if len(ok) > 0 {
		status, msg, err := c.pushRetrying(ctx, ok)
		if err != nil {
			return rejected, err
		}
		if status == http.StatusBadRequest {
			// Loki stored the valid entries and refused some: find them one
			// by one. Re-sending a stored entry is harmless (same stream,
			// timestamp and line are deduplicated).
			c.log.Warn("loki refused part of a batch; checking entries one by one", "entries", len(ok), "reason", msg)
			for _, e := range ok {
				st, msg, err := c.pushRetrying(ctx, []Entry{e})
				if err != nil {
					return rejected, err
				}
				if st == http.StatusBadRequest {
					rejected = append(rejected, Rejection{Entry: e, Reason: msg})
				}
			}
		}
	}
	c.m.entries.WithLabelValues("pushed").Add(float64(len(entries) - len(rejected)))
	c.m.entries.WithLabelValues("rejected").Add(float64(len(rejected)))
	c.m.latency.Observe(c.now().Sub(start).Seconds())
	return rejected, nil
}

// precheck applies Loki's limits locally.
func (c *Client) precheck(e Entry, now time.Time) string {
	switch {
	case len(e.Line) > c.cfg.MaxLineBytes:
		return fmt.Sprintf("line is %d bytes, Loki's max_line_size is %d", len(e.Line), c.cfg.MaxLineBytes)
	case e.Time.Before(now.Add(-c.cfg.RejectOlderThan)):
		return fmt.Sprintf("timestamp %s is older than Loki accepts (%s)", e.Time.Format(time.RFC3339), c.cfg.RejectOlderThan)
	case e.Time.After(now.Add(c.cfg.CreationGrace)):
		return fmt.Sprintf("timestamp %s is more than %s in the future", e.Time.Format(time.RFC3339), c.cfg.CreationGrace)
	case len(e.Labels) == 0:
		return "entry has no stream labels"
	}
	return ""
}

// pushRetrying pushes until Loki answers 204 or 400 (a final verdict).
func (c *Client) pushRetrying(ctx context.Context, entries []Entry) (int, string, error) {
	body, err := encode(entries)
	if err != nil {
		return 0, "", err
	}
	backoff := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		status, msg, err := c.pushOnce(ctx, body)
		if err == nil && (status == http.StatusNoContent || status == http.StatusOK || status == http.StatusBadRequest) {
			return status, msg, nil
		}
		if err == nil {
			err = fmt.Errorf("HTTP %d: %s", status, msg)
		}
		if ctx.Err() != nil {
			return 0, "", fmt.Errorf("loki push of %d entries: %w", len(entries), ctx.Err())
		}
		c.m.entries.WithLabelValues("retried").Add(float64(len(entries)))
		c.log.Warn("loki push failed; retrying", "entries", len(entries), "attempt", attempt, "backoff", backoff, "err", err)
		select {
		case <-ctx.Done():
			return 0, "", fmt.Errorf("loki push of %d entries: %w (last error: %v)", len(entries), ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, c.cfg.RetryBackoffMax)
	}
}

func (c *Client) pushOnce(ctx context.Context, body []byte) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(c.cfg.URL, "/")+"/loki/api/v1/push", bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "snappy")
	if c.cfg.TenantID != "" {
		req.Header.Set("X-Scope-OrgID", c.cfg.TenantID)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, strings.TrimSpace(string(msg)), nil
}

// encode groups entries into streams, sorted by time within a stream, as a
// snappy-compressed protobuf PushRequest.
func encode(entries []Entry) ([]byte, error) {
	streams := map[string]*push.Stream{}
	var keys []string
	for _, e := range entries {
		key := labelString(e.Labels)
		s, ok := streams[key]
		if !ok {
			s = &push.Stream{Labels: key}
			streams[key] = s
			keys = append(keys, key)
		}
		pe := push.Entry{Timestamp: e.Time, Line: e.Line}
		if len(e.Metadata) > 0 {
			names := make([]string, 0, len(e.Metadata))
			for k := range e.Metadata {
				names = append(names, k)
			}
			sort.Strings(names)
			for _, k := range names {
				pe.StructuredMetadata = append(pe.StructuredMetadata, push.LabelAdapter{Name: k, Value: e.Metadata[k]})
			}
		}
		s.Entries = append(s.Entries, pe)
	}
	req := push.PushRequest{}
	for _, k := range keys {
		s := streams[k]
		sort.SliceStable(s.Entries, func(i, j int) bool { return s.Entries[i].Timestamp.Before(s.Entries[j].Timestamp) })
		req.Streams = append(req.Streams, *s)
	}
	raw, err := req.Marshal()
	if err != nil {
		return nil, fmt.Errorf("encode push request: %w", err)
	}
	return snappy.Encode(nil, raw), nil
}

// labelString renders {a="x", b="y"} with sorted names.
func labelString(labels map[string]string) string {
	names := make([]string, 0, len(labels))
	for k := range labels {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s=%q", k, labels[k])
	}
	b.WriteByte('}')
	return b.String()
}
