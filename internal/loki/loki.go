// Package loki pushes log lines to Grafana Loki and returns only once Loki
// acknowledged them (HTTP 204), so a Kafka offset can move on safely.
//
// grafana/loki-client-go is not used: its client batches in the background
// and, after its retries, drops a batch with a log line; the caller is never
// told whether lines were stored. This client pushes synchronously with
// Loki's own wire types (github.com/grafana/loki/pkg/push, protobuf +
// snappy) under the one error policy (internal/errpolicy): 429, 5xx and
// network failures are retried with backoff; 401/403/404 (credentials, or a
// URL that is not Loki's push API) pause the stream until fixed; a push too
// large for Loki (413) is split until each entry goes alone; entries Loki
// will never take (too old, too long, too far behind, alone and still too
// large) are reported one by one, so the caller can dead-letter them without
// dropping the rest of the batch.
package loki

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/assistlog/assistlog/internal/errpolicy"
	"github.com/assistlog/assistlog/internal/tenants"
)

// Destination names Loki in the error policy's metrics.
const Destination = "loki"

// Config configures a Client. The limits mirror Loki's defaults; set them
// to the server's if it was configured otherwise.
type Config struct {
	URL string `yaml:"url"`
	// TenantID is sent as X-Scope-OrgID when Loki runs with auth enabled
	// and every entry goes to one Loki tenant (tenancy single).
	TenantID string `yaml:"tenant_id"`
	// Tenancy is single (default: every entry under TenantID, or no
	// header) or per_tenant: each entry under its own business's Loki
	// tenant, the entry's "tenant" label (mapped through TenantsFile when
	// set), so a reader holding one business's org id reads only it.
	Tenancy string `yaml:"tenancy"`
	// TenantsFile (per_tenant only; optional) is the tenants file: a
	// tenant's Loki org id is its loki_tenant (default its name), and an
	// entry of a tenant missing from the file is rejected (dead-lettered
	// by the shipper) rather than pushed under a guessed org id.
	TenantsFile string `yaml:"tenants_file"`
	// Username and Password (basic auth) or BearerToken, for the proxy that
	// guards a Loki reachable from other hosts (Loki has no auth of its own).
	Username    string        `yaml:"username"`
	Password    string        `yaml:"password"`
	BearerToken string        `yaml:"bearer_token"`
	Timeout     time.Duration `yaml:"timeout"`
	// MaxLineBytes (max_line_size), RejectOlderThan (reject_old_samples_max_age)
	// and CreationGrace (creation_grace_period): entries outside them are
	// rejected here, without a round trip.
	MaxLineBytes    int           `yaml:"max_line_bytes"`
	RejectOlderThan time.Duration `yaml:"reject_older_than"`
	CreationGrace   time.Duration `yaml:"creation_grace"`
	// MaxChunkAge (the ingester's max_chunk_age), PerStreamRateLimit and
	// PerStreamRateLimitBurst (bytes; per_stream_rate_limit and _burst)
	// decide which streams may share a request: Loki reports only the
	// last stream's refusal of a request, so a stream that Loki could
	// refuse (entries near the edge of its out-of-order window, or near
	// its rate limit) goes in a request of its own. With several shippers
	// writing the same streams, give each its share of the rate limits.
	MaxChunkAge             time.Duration `yaml:"max_chunk_age"`
	PerStreamRateLimit      int           `yaml:"per_stream_rate_limit"`
	PerStreamRateLimitBurst int           `yaml:"per_stream_rate_limit_burst"`
}

// OutOfOrderWindow is how far behind its stream's newest entry Loki still
// takes one (half of max_chunk_age).
func (c Config) OutOfOrderWindow() time.Duration { return c.MaxChunkAge / 2 }

// DefaultConfig points at the local stack with Loki's default limits.
func DefaultConfig() Config {
	return Config{URL: "http://127.0.0.1:13100", Timeout: 30 * time.Second,
		MaxLineBytes: 256 << 10, RejectOlderThan: 7 * 24 * time.Hour, CreationGrace: 10 * time.Minute,
		MaxChunkAge: 2 * time.Hour, PerStreamRateLimit: 3 << 20, PerStreamRateLimitBurst: 15 << 20}
}

// Validate names the field at fault.
func (c Config) Validate() error {
	var errs []error
	if c.BearerToken != "" && c.Username != "" {
		errs = append(errs, errors.New("bearer_token, username: set one way to authenticate, not both"))
	}
	switch c.Tenancy {
	case "", TenancySingle:
		if c.TenantsFile != "" {
			errs = append(errs, errors.New("tenants_file: used only with tenancy per_tenant"))
		}
	case TenancyPerTenant:
		if c.TenantID != "" {
			errs = append(errs, errors.New("tenant_id: must be empty with tenancy per_tenant (each entry names its own)"))
		}
	default:
		errs = append(errs, fmt.Errorf("tenancy: must be %s or %s, got %q", TenancySingle, TenancyPerTenant, c.Tenancy))
	}
	if c.TenantID != "" {
		if err := ValidOrgID(c.TenantID); err != nil {
			errs = append(errs, fmt.Errorf("tenant_id: %w", err))
		}
	}
	if !strings.HasPrefix(c.URL, "http://") && !strings.HasPrefix(c.URL, "https://") {
		errs = append(errs, fmt.Errorf("url: must be http(s)://host:port, got %q", c.URL))
	}
	if c.Timeout <= 0 || c.RejectOlderThan <= 0 || c.CreationGrace <= 0 || c.MaxLineBytes <= 0 {
		errs = append(errs, errors.New("timeout, reject_older_than, creation_grace, max_line_bytes: must be positive"))
	}
	if c.MaxChunkAge <= 0 || c.PerStreamRateLimit <= 0 || c.PerStreamRateLimitBurst <= 0 {
		errs = append(errs, errors.New("max_chunk_age, per_stream_rate_limit, per_stream_rate_limit_burst: must be positive (Loki's defaults: 2h, 3145728, 15728640)"))
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
	// Stream is Selector(Labels) when the caller has rendered it already
	// (the shipper does, once per entry); empty: rendered when needed.
	Stream string
}

// StreamSelector is the entry's stream: Stream, or its labels rendered.
func (e Entry) StreamSelector() string {
	if e.Stream != "" {
		return e.Stream
	}
	return Selector(e.Labels)
}

// Rejection is an entry Loki will not accept, and why.
type Rejection struct {
	Entry  Entry
	Reason string
}

// Client pushes to one Loki.
type Client struct {
	cfg Config
	// orgs maps a tenant to its Loki org id (per_tenant with a tenants
	// file); nil: the tenant is its own org id.
	orgs map[string]string
	pol  *errpolicy.Policy
	http *http.Client
	log  *slog.Logger
	m    clientMetrics
	now  func() time.Time
	// storedWindow bounds the time range of one Stored query.
	storedWindow time.Duration
	budget       *streamBudget
}

type clientMetrics struct {
	entries  *prometheus.CounterVec
	requests *prometheus.CounterVec
	latency  prometheus.Histogram
}

// New builds a client whose failures follow pol.
func New(cfg Config, pol *errpolicy.Policy, log *slog.Logger, reg prometheus.Registerer) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("loki config: %w", err)
	}
	if pol == nil || log == nil || reg == nil {
		return nil, errors.New("loki: an error policy, a logger and a metrics registry are required")
	}
	var orgs map[string]string
	if cfg.TenantsFile != "" {
		set, err := tenants.Load(cfg.TenantsFile)
		if err != nil {
			return nil, fmt.Errorf("loki config: tenants_file: %w", err)
		}
		if orgs, err = OrgIDs(set); err != nil {
			return nil, fmt.Errorf("loki config: tenants_file %s: %w", cfg.TenantsFile, err)
		}
	}
	c := &Client{cfg: cfg, orgs: orgs, pol: pol, storedWindow: defaultStoredWindow, http: newHTTPClient(cfg.Timeout), log: log, now: time.Now,
		budget: newStreamBudget(cfg.PerStreamRateLimit, cfg.PerStreamRateLimitBurst), m: clientMetrics{
			entries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "assistlog_loki_entries_total",
				Help: "Entries by outcome (pushed, rejected, retried) and the Loki tenant they were sent as."}, []string{"outcome", "loki_tenant"}),
			requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "assistlog_loki_push_requests_total",
				Help: "Push requests by kind: shared (streams Loki cannot refuse, together) or alone (one stream that Loki could refuse in part)."}, []string{"kind"}),
			latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "assistlog_loki_push_seconds",
				Help: "Time to get a batch acknowledged, retries included.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 14)}),
		}}
	for _, col := range []prometheus.Collector{c.m.entries, c.m.requests, c.m.latency} {
		if err := reg.Register(col); err != nil {
			return nil, fmt.Errorf("register loki metrics: %w", err)
		}
	}
	pol.Declare(Destination)
	return c, nil
}

// Push sends entries and returns once Loki acknowledged every one it will
// accept; the others come back as rejections. Other failures follow the
// error policy until ctx ends, then ctx's error is returned and nothing
// should be taken as stored. With tenancy per_tenant a batch mixing
// businesses goes as one request per Loki tenant (X-Scope-OrgID names
// one), each under the same policy.
func (c *Client) Push(ctx context.Context, entries []Entry) ([]Rejection, error) {
	start := c.now()
	var rejected []Rejection
	byOrg := map[string][]Entry{}
	var orgs []string
	for _, e := range entries {
		org, err := c.orgOf(e)
		reason := c.precheck(e, start)
		if err != nil {
			reason = err.Error()
		}
		if reason != "" {
			rejected = append(rejected, Rejection{Entry: e, Reason: reason})
			c.m.entries.WithLabelValues("rejected", org).Inc()
			continue
		}
		if _, seen := byOrg[org]; !seen {
			orgs = append(orgs, org)
		}
		byOrg[org] = append(byOrg[org], e)
	}
	for _, org := range orgs {
		r, err := c.pushStreams(ctx, org, byOrg[org])
		if err != nil {
			return rejected, err
		}
		rejected = append(rejected, r...)
		c.m.entries.WithLabelValues("pushed", org).Add(float64(len(byOrg[org]) - len(r)))
		c.m.entries.WithLabelValues("rejected", org).Add(float64(len(r)))
	}
	c.m.latency.Observe(c.now().Sub(start).Seconds())
	return rejected, nil
}

// streamsAtOnce bounds the requests one Push has under way.
const streamsAtOnce = 8

// clockSkew is the margin allowed between this host's clock and Loki's
// when judging whether an entry lies safely inside Loki's window.
const clockSkew = 5 * time.Minute

// pushStreams pushes entries with a verdict for every stream. Loki (3.7,
// pkg/ingester/instance.go Push) answers a request with the verdict of its
// last stream only: a stream refused earlier in the request ("entry too far
// behind", a per-stream rate limit) is dropped behind a 204
// (TestStreamRefusalIsReported). So only streams Loki cannot refuse share
// one request (packable); each of the others goes in a request of its own,
// streamsAtOnce at a time. A shared request that comes back 400 or 413 is
// pushed again stream by stream; re-sending stored entries is harmless.
func (c *Client) pushStreams(ctx context.Context, org string, entries []Entry) ([]Rejection, error) {
	byStream := map[string][]Entry{}
	var keys []string
	for _, e := range entries {
		k := e.StreamSelector()
		if _, seen := byStream[k]; !seen {
			keys = append(keys, k)
		}
		byStream[k] = append(byStream[k], e)
	}
	now := c.now()
	var packed []Entry
	var packedKeys, alone []string
	for _, k := range keys {
		if c.packable(k, byStream[k], now) {
			packed = append(packed, byStream[k]...)
			packedKeys = append(packedKeys, k)
		} else {
			alone = append(alone, k)
		}
	}
	if len(packedKeys) == 1 {
		alone, packedKeys = append(alone, packedKeys[0]), nil
	}
	var (
		mu       sync.Mutex
		rejected []Rejection
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(streamsAtOnce)
	verdicts := func(k string) error {
		r, err := c.pushVerdicts(gctx, org, byStream[k])
		mu.Lock()
		rejected = append(rejected, r...)
		mu.Unlock()
		return err
	}
	if len(packedKeys) > 0 {
		g.Go(func() error {
			c.m.requests.WithLabelValues("shared").Inc()
			status, msg, err := c.pushRetrying(gctx, org, packed)
			if err != nil || (status != http.StatusBadRequest && status != http.StatusRequestEntityTooLarge) {
				return err
			}
			c.log.Warn("loki refused part of a shared push; pushing its streams one by one", "streams", len(packedKeys), "loki_tenant", org, "reason", msg)
			for _, k := range packedKeys {
				c.m.requests.WithLabelValues("alone").Inc()
				if err := verdicts(k); err != nil {
					return err
				}
			}
			return nil
		})
	}
	for _, k := range alone {
		g.Go(func() error {
			c.m.requests.WithLabelValues("alone").Inc()
			return verdicts(k)
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return rejected, nil
}

// packable reports whether Loki cannot refuse any entry of one stream (in
// a request shared with others), charging the entries to the stream's rate
// budget either way. Loki refuses an entry "too far behind" when it is
// older than its stream's newest minus max_chunk_age/2; the newest can be
// at most creation_grace ahead of Loki's clock.
func (c *Client) packable(key string, entries []Entry, now time.Time) bool {
	oldestSafe := now.Add(c.cfg.CreationGrace + clockSkew - c.cfg.OutOfOrderWindow())
	inWindow := true
	n := 0
	for _, e := range entries {
		n += entryBytes(e)
		if e.Time.Before(oldestSafe) {
			inWindow = false
		}
	}
	withinRate := c.budget.take(key, n, now)
	return inWindow && withinRate
}

// entryBytes is an entry's size as Loki's rate limits count it
// (util.EntryTotalSize: the line and the structured metadata).
func entryBytes(e Entry) int {
	n := len(e.Line)
	for k, v := range e.Metadata {
		n += len(k) + len(v)
	}
	return n
}

// streamBudget mirrors Loki's per-stream rate limiter, a token bucket per
// stream, over this client's own pushes.
type streamBudget struct {
	rate, burst float64
	mu          sync.Mutex
	streams     map[string]*bucket
	swept       time.Time
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newStreamBudget(rate, burst int) *streamBudget {
	return &streamBudget{rate: float64(rate), burst: float64(burst), streams: map[string]*bucket{}}
}

// take charges n bytes to a stream and reports whether its bucket held
// them, as Loki's would with the same limits and no other writer.
func (b *streamBudget) take(key string, n int, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.streams[key]
	if s == nil {
		s = &bucket{tokens: b.burst, at: now}
		b.streams[key] = s
	}
	s.tokens = min(b.burst, s.tokens+now.Sub(s.at).Seconds()*b.rate)
	s.at = now
	ok := s.tokens >= float64(n)
	s.tokens -= float64(n)
	if now.Sub(b.swept) > time.Minute {
		// A bucket full again is the same as no bucket: forget it.
		for k, s := range b.streams {
			if s.tokens+now.Sub(s.at).Seconds()*b.rate >= b.burst {
				delete(b.streams, k)
			}
		}
		b.swept = now
	}
	return ok
}

// newHTTPClient keeps enough connections to Loki open for a push per
// stream, several batches at once: the default transport keeps 2 idle per
// host and opened (and closed) a connection for nearly every request.
func newHTTPClient(timeout time.Duration) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 64
	return &http.Client{Timeout: timeout, Transport: t}
}

// orgOf is the Loki tenant an entry is sent as ("": no header).
func (c *Client) orgOf(e Entry) (string, error) {
	if c.cfg.Tenancy != TenancyPerTenant {
		return c.cfg.TenantID, nil
	}
	tenant := e.Labels["tenant"]
	if c.orgs != nil {
		org, ok := c.orgs[tenant]
		if !ok {
			return "", fmt.Errorf("tenant %q is not in the tenants file (%s): no Loki tenant to send it as", tenant, c.cfg.TenantsFile)
		}
		return org, nil
	}
	if err := ValidOrgID(tenant); err != nil {
		return "", fmt.Errorf("tenant label %q as a Loki tenant: %w", tenant, err)
	}
	return tenant, nil
}

// pushVerdicts pushes entries, as Loki tenant org, until each is stored or
// refused for good.
func (c *Client) pushVerdicts(ctx context.Context, org string, entries []Entry) ([]Rejection, error) {
	status, msg, err := c.pushRetrying(ctx, org, entries)
	if err != nil {
		return nil, err
	}
	switch {
	case status != http.StatusBadRequest && status != http.StatusRequestEntityTooLarge:
		return nil, nil
	case len(entries) == 1:
		return []Rejection{{Entry: entries[0], Reason: fmt.Sprintf("HTTP %d: %s", status, msg)}}, nil
	case status == http.StatusRequestEntityTooLarge:
		// The request as a whole is over Loki's size limit: halves until
		// each part fits, so one huge entry cannot hold up the others.
		c.log.Warn("loki refused a push as too large; splitting it", "entries", len(entries), "loki_tenant", org, "reason", msg)
		mid := len(entries) / 2
		first, err := c.pushVerdicts(ctx, org, entries[:mid])
		if err != nil {
			return nil, err
		}
		second, err := c.pushVerdicts(ctx, org, entries[mid:])
		return append(first, second...), err
	}
	// Loki stored the valid entries and refused some: find them one by
	// one. Re-sending a stored entry is harmless (same stream, timestamp
	// and line are deduplicated).
	c.log.Warn("loki refused part of a batch; checking entries one by one", "entries", len(entries), "loki_tenant", org, "reason", msg)
	var rejected []Rejection
	for _, e := range entries {
		r, err := c.pushVerdicts(ctx, org, []Entry{e})
		if err != nil {
			return rejected, err
		}
		rejected = append(rejected, r...)
	}
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

// pushRetrying pushes until Loki gives a verdict: 2xx, 400 (some entries
// refused) or 413 (the request is too large). 401/403/404 say every push
// will fail the same way (credentials, tenant, a wrong URL): the stream
// pauses. Everything else is retried with backoff.
func (c *Client) pushRetrying(ctx context.Context, org string, entries []Entry) (int, string, error) {
	body, err := encode(entries)
	if err != nil {
		return 0, "", err
	}
	att := c.pol.Start(Destination)
	for {
		status, msg, err := c.pushOnce(ctx, org, body)
		if err == nil {
			switch status {
			case http.StatusNoContent, http.StatusOK, http.StatusBadRequest, http.StatusRequestEntityTooLarge:
				att.Done()
				return status, msg, nil
			case http.StatusInternalServerError:
				if tooLargeForGRPC(msg) {
					// Under the distributor's HTTP limit but over the gRPC
					// limit to the ingesters (4 MiB by default): no retry
					// of this request can pass; a smaller one can.
					att.Done()
					return http.StatusRequestEntityTooLarge, msg, nil
				}
				err = fmt.Errorf("HTTP %d: %s", status, msg)
			case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound:
				err = errpolicy.Mark(errpolicy.Pause, fmt.Errorf("HTTP %d: %s", status, msg))
			default:
				err = fmt.Errorf("HTTP %d: %s", status, msg)
			}
		}
		if ctx.Err() != nil {
			return 0, "", fmt.Errorf("loki push of %d entries as tenant %q: %w (last error: %v)", len(entries), org, ctx.Err(), err)
		}
		c.m.entries.WithLabelValues("retried", org).Add(float64(len(entries)))
		if werr := att.Wait(ctx, fmt.Errorf("push of %d entries as tenant %q: %w", len(entries), org, err)); werr != nil {
			return 0, "", fmt.Errorf("loki: %w", werr)
		}
	}
}

func (c *Client) pushOnce(ctx context.Context, org string, body []byte) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(c.cfg.URL, "/")+"/loki/api/v1/push", bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "snappy")
	c.authorize(req, org)
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, strings.TrimSpace(string(msg)), nil
}

// tooLargeForGRPC reports Loki's 500 for a push whose decoded request
// exceeds the gRPC message limit between its distributor and ingesters.
func tooLargeForGRPC(msg string) bool {
	return strings.Contains(msg, "ResourceExhausted") && strings.Contains(msg, "larger than max")
}

// authorize adds the Loki tenant and the credentials to a request.
func (c *Client) authorize(req *http.Request, org string) {
	if org != "" {
		req.Header.Set("X-Scope-OrgID", org)
	}
	switch {
	case c.cfg.BearerToken != "":
		req.Header.Set("Authorization", "Bearer "+c.cfg.BearerToken)
	case c.cfg.Username != "":
		req.SetBasicAuth(c.cfg.Username, c.cfg.Password)
	}
}

// encode groups entries into streams, sorted by time within a stream, as a
// snappy-compressed protobuf PushRequest.
func encode(entries []Entry) ([]byte, error) {
	streams := map[string]*push.Stream{}
	var keys []string
	for _, e := range entries {
		key := e.StreamSelector()
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

// Selector renders labels as a LogQL stream selector, {a="x", b="y"} with
// sorted names: one string per stream, also used to group entries by stream.
// It is on the shipper's path for every entry (once, kept in Entry.Stream),
// so it avoids fmt and sort (fmt made it a tenth of the shipper's CPU).
func Selector(labels map[string]string) string {
	var arr [12]string
	names := arr[:0]
	size := 2
	for k, v := range labels {
		names = append(names, k)
		size += len(k) + len(v) + 5
	}
	for i := 1; i < len(names); i++ { // insertion sort: a handful of names
		for j := i; j > 0 && names[j] < names[j-1]; j-- {
			names[j], names[j-1] = names[j-1], names[j]
		}
	}
	b := make([]byte, 0, size)
	b = append(b, '{')
	for i, k := range names {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, k...)
		b = append(b, '=')
		b = strconv.AppendQuote(b, labels[k])
	}
	b = append(b, '}')
	return string(b)
}

// storedBatch bounds the ids asked about in one query (Loki returns at
// most max_entries_limit_per_query, 5000 by default, lines a query).
const storedBatch = 500

// Stored returns, of entries, the values of the structured-metadata key
// (e.g. event_id) that Loki already holds. The shipper asks this only for
// events it may have pushed before (their Elasticsearch create found the
// document): Loki drops an identical entry pushed again while the first
// is still in the ingester's head chunk, but not once that chunk was
// flushed, so the flushed copies are what must be looked up.
//
// One query per tenant (and per storedBatch ids), selecting the labels all
// of that tenant's entries share, over the entries' own time range in
// windows under Loki's max_query_length: a batch's events span minutes to
// hours, so the lookup reads little. A range reaching into the last
// query_ingesters_within is answered by the ingesters too; an older one by
// the store, which holds exactly the flushed chunks that need it.
func (c *Client) Stored(ctx context.Context, entries []Entry, key string) (map[string]bool, error) {
	type group struct {
		org        string            // the Loki tenant asked
		labels     map[string]string // shared by every entry of the group
		ids        []string
		start, end time.Time
	}
	current := map[string]*group{} // by tenant: the group being filled
	var groups []*group
	now := c.now()
	for _, e := range entries {
		id := e.Metadata[key]
		org, err := c.orgOf(e)
		if id == "" || err != nil || c.precheck(e, now) != "" {
			continue // Push refuses it without asking Loki, stored or not
		}
		tenant := e.Labels["tenant"]
		g := current[tenant]
		if g == nil || len(g.ids) == storedBatch {
			g = &group{org: org, labels: maps.Clone(e.Labels), start: e.Time, end: e.Time}
			current[tenant] = g
			groups = append(groups, g)
		}
		for k, v := range g.labels {
			if e.Labels[k] != v {
				delete(g.labels, k)
			}
		}
		g.ids = append(g.ids, id)
		if e.Time.Before(g.start) {
			g.start = e.Time
		}
		if e.Time.After(g.end) {
			g.end = e.Time
		}
	}
	found := map[string]bool{}
	for _, g := range groups {
		quoted := make([]string, len(g.ids))
		for i, id := range g.ids {
			quoted[i] = regexp.QuoteMeta(id)
		}
		// line_format drops the lines from the answer (the key comes back
		// among the stream's labels): up to storedBatch lines of up to
		// max_line_size would exceed the 4 MiB gRPC message limit between
		// Loki's querier and its ingesters, a 500 no retry can pass.
		q := fmt.Sprintf("%s | %s=~`%s` | line_format \"\"", Selector(g.labels), key, strings.Join(quoted, "|"))
		end := g.end.Add(time.Millisecond) // the range's end is exclusive
		for from := g.start; from.Before(end); from = from.Add(c.storedWindow) {
			to := from.Add(c.storedWindow)
			if to.After(end) {
				to = end
			}
			form := url.Values{"query": {q}, "start": {strconv.FormatInt(from.UnixNano(), 10)},
				"end": {strconv.FormatInt(to.UnixNano(), 10)}, "limit": {strconv.Itoa(2*len(g.ids) + 10)}, "direction": {"forward"}}
			var ids []string
			err := c.pol.Do(ctx, Destination, func(ctx context.Context) error {
				var err error
				ids, err = c.queryKey(ctx, g.org, form, key)
				return err
			})
			if errpolicy.Classify(err) == errpolicy.DeadLetter {
				// Loki will not answer this question (a limit of its own):
				// push rather than stall shipping.
				c.log.Warn("loki cannot say which entries it holds; pushing them", "entries", len(g.ids), "err", err)
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("loki: which of %d entries are stored: %w", len(g.ids), err)
			}
			for _, id := range ids {
				found[id] = true
			}
		}
	}
	return found, nil
}

// defaultStoredWindow bounds one lookup's time range.
const defaultStoredWindow = 7 * 24 * time.Hour

// queryKey runs one query_range and returns the key's value of each stream
// in the answer (structured metadata comes back among a stream's labels).
func (c *Client) queryKey(ctx context.Context, org string, form url.Values, key string) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(c.cfg.URL, "/")+"/loki/api/v1/query_range",
		strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	c.authorize(req, org)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		err := fmt.Errorf("query: HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(msg)))
		switch {
		case resp.StatusCode == http.StatusUnauthorized, resp.StatusCode == http.StatusForbidden, resp.StatusCode == http.StatusNotFound:
			return nil, errpolicy.Mark(errpolicy.Pause, err)
		case resp.StatusCode == http.StatusBadRequest:
			return nil, errpolicy.Mark(errpolicy.DeadLetter, err) // this query, as asked, is refused
		}
		return nil, err
	}
	var r struct {
		Data struct {
			Result []struct {
				Stream map[string]string `json:"stream"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("query: decode: %w", err)
	}
	var out []string
	for _, s := range r.Data.Result {
		if v := s.Stream[key]; v != "" {
			out = append(out, v)
		}
	}
	return out, nil
}
