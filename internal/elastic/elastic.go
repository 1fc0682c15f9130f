// Package elastic writes assistant events to Elasticsearch or OpenSearch: an index
// template with explicit mappings, one index per month behind the
// assistant-events alias, and a bulk writer that handles every item on its
// own under the one error policy (internal/errpolicy): 429 and 5xx items are
// retried, 401/403 pause the stream until the credentials or privileges are
// fixed, "already exists" counts as written (the _id is the event_id, so a
// replay is harmless), and mapping or parse errors come back to the caller
// with Elasticsearch's reason, for the dead-letter topic. Nothing is retried
// blindly as a whole batch, nothing is dropped.
//
// Both stores are written through the same code: go-elasticsearch's request
// builders and bulk indexer over elastic-transport-go directly, which skips
// the go-elasticsearch client's product check (it refuses any server that
// is not Elasticsearch; OpenSearch's document, bulk and search APIs used
// here are wire-identical). What differs between the two lives in
// flavour.go.
package elastic

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/elastic/go-elasticsearch/v8/esapi"
	"github.com/elastic/go-elasticsearch/v8/esutil"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/assistlog/assistlog/internal/access"
	"github.com/assistlog/assistlog/internal/errpolicy"
	"github.com/assistlog/assistlog/internal/tenants"
)

// Destination names Elasticsearch in the error policy's metrics (an
// OpenSearch store is named "opensearch": Config.Destination).
const Destination = "elasticsearch"

// Template is the index template (mappings, settings, alias).
//
//go:embed template.json
var Template []byte

// DefaultAlias is the alias every monthly index joins, and the template's
// name; indices are named <alias>-YYYY.MM.
const DefaultAlias = "assistant-events"

// IndexFor is the monthly index of an event time: assistant-events-2026.11.
func (w *Writer) IndexFor(t time.Time) string {
	return w.cfg.Alias + "-" + t.UTC().Format("2006.01")
}

// Config configures a Writer.
type Config struct {
	URLs []string `yaml:"urls"`
	// Alias is what searches use; monthly indices are <alias>-YYYY.MM and
	// the index template is named after it.
	Alias    string `yaml:"alias"`
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	APIKey   string `yaml:"api_key"`
	// CAFile is a PEM file of the certificate authority that signed the
	// server's TLS certificate (managed clusters such as Yandex Managed
	// OpenSearch use their own CA); empty means the system roots.
	CAFile string `yaml:"ca_file"`
	// Store is the server's kind: "elasticsearch" (the default) or
	// "opensearch". It names the store in the error policy and metrics,
	// and picks the point-in-time API audit reads with (esread detects it
	// from GET / when unset).
	Store string `yaml:"store"`
	// FlushBytes bounds one bulk request.
	FlushBytes int `yaml:"flush_bytes"`
	// TenantsFile, when set, gives every monthly index one filtered alias
	// per tenant, <alias>-tenant-<name>, which that tenant's auditors read
	// through (docs/access.md). Only the writer's Setup uses it.
	TenantsFile string `yaml:"tenants_file"`
}

// DefaultConfig points at the local stack.
func DefaultConfig() Config {
	return Config{URLs: []string{"http://127.0.0.1:19200"}, Alias: DefaultAlias, FlushBytes: 5 << 20}
}

// Validate names the field at fault.
func (c Config) Validate() error {
	var errs []error
	if len(c.URLs) == 0 {
		errs = append(errs, errors.New("urls: at least one is required"))
	}
	if c.Alias == "" || strings.ToLower(c.Alias) != c.Alias || strings.ContainsAny(c.Alias, " *,/\\?\"<>|#") {
		errs = append(errs, fmt.Errorf("alias: must be a lower-case index name, got %q", c.Alias))
	}
	if c.Store != "" && c.Store != StoreElasticsearch && c.Store != StoreOpenSearch {
		errs = append(errs, fmt.Errorf("store: must be %q or %q, got %q", StoreElasticsearch, StoreOpenSearch, c.Store))
	}
	if c.CAFile != "" {
		if _, err := os.Stat(c.CAFile); err != nil {
			errs = append(errs, fmt.Errorf("ca_file: %w", err))
		}
	}
	if c.TenantsFile != "" {
		if _, err := tenants.Load(c.TenantsFile); err != nil {
			errs = append(errs, fmt.Errorf("tenants_file: %w", err))
		}
	}
	if c.FlushBytes < 1024 {
		errs = append(errs, fmt.Errorf("flush_bytes: must be at least 1024, got %d", c.FlushBytes))
	}
	return errors.Join(errs...)
}

// Doc is one bulk item. Action is "create" (index a new event; an existing
// _id counts as success) or "update" (Body is {"doc": {...}}).
type Doc struct {
	Action string
	Index  string
	ID     string
	Body   []byte
	// OnExists, for a create, is an update body ({"doc": {...}}) applied
	// when the document is already there: a replayed event whose
	// enrichment changed since it was first stored (its CRM id resolved)
	// brings the stored copy up to date instead of leaving it stale.
	OnExists []byte
}

// Failure is an item Elasticsearch will never accept as it is.
type Failure struct {
	Doc    Doc
	Status int
	Type   string // e.g. document_parsing_exception
	Reason string
}

func (f Failure) Error() string {
	return fmt.Sprintf("%s %s/%s: HTTP %d %s: %s", f.Doc.Action, f.Doc.Index, f.Doc.ID, f.Status, f.Type, f.Reason)
}

// Writer writes documents in bulk.
type Writer struct {
	es  *esapi.API
	tp  esapi.Transport
	cfg Config
	pol *errpolicy.Policy
	log *slog.Logger
	m   writerMetrics
	// tenants get a filtered alias each (Config.TenantsFile).
	tenants []string
}

type writerMetrics struct {
	items   *prometheus.CounterVec
	latency prometheus.Histogram
}

// New builds a writer; Setup installs the template. Failures follow pol.
func New(cfg Config, pol *errpolicy.Policy, log *slog.Logger, reg prometheus.Registerer) (*Writer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("elasticsearch config: %w", err)
	}
	if pol == nil || log == nil || reg == nil {
		return nil, errors.New("elasticsearch: an error policy, a logger and a metrics registry are required")
	}
	tp, err := NewTransport(cfg)
	if err != nil {
		return nil, err
	}
	// The store label tells two stores apart when the shipper writes both.
	store := prometheus.Labels{"store": cfg.Destination()}
	w := &Writer{es: esapi.New(tp), tp: tp, cfg: cfg, pol: pol, log: log, m: writerMetrics{
		items: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "assistlog_elasticsearch_items_total", ConstLabels: store,
			Help: "Bulk items by store, action and outcome (written, exists, retried, failed)."}, []string{"action", "outcome"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "assistlog_elasticsearch_write_seconds", ConstLabels: store,
			Help: "Time to get a batch acknowledged, retries included.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 14)}),
	}}
	for _, c := range []prometheus.Collector{w.m.items, w.m.latency} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register elasticsearch metrics: %w", err)
		}
	}
	if cfg.TenantsFile != "" {
		ts, err := tenants.Load(cfg.TenantsFile)
		if err != nil {
			return nil, fmt.Errorf("elasticsearch tenants_file: %w", err)
		}
		w.tenants = ts.Names()
	}
	pol.Declare(cfg.Destination())
	return w, nil
}

// Client exposes the request API (bound to this store) for searches.
func (w *Writer) Client() *esapi.API { return w.es }

// Destination is the store's name in the error policy and metrics.
func (w *Writer) Destination() string { return w.cfg.Destination() }

// Alias is the alias searches use.
func (w *Writer) Alias() string { return w.cfg.Alias }

// Setup installs (or updates) the index template for <alias>-* with the
// alias and, with a tenants file, each tenant's filtered alias, and adds
// those to the indices that exist already. Indices created later pick the
// template up; existing ones keep their mappings.
func (w *Writer) Setup(ctx context.Context) error {
	var t map[string]any
	if err := json.Unmarshal(Template, &t); err != nil {
		return fmt.Errorf("index template: %w", err)
	}
	t["index_patterns"] = []string{w.cfg.Alias + "-*"}
	aliases := map[string]any{w.cfg.Alias: map[string]any{}}
	for _, name := range w.tenants {
		aliases[access.TenantAlias(w.cfg.Alias, name)] = map[string]any{"filter": access.TenantFilter(name)}
	}
	t["template"].(map[string]any)["aliases"] = aliases
	body, _ := json.Marshal(t)
	res, err := w.es.Indices.PutIndexTemplate(w.cfg.Alias, bytes.NewReader(body), w.es.Indices.PutIndexTemplate.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("put index template %s: %w", w.cfg.Alias, err)
	}
	defer res.Body.Close()
	if res.IsError() {
		b, _ := io.ReadAll(res.Body)
		return fmt.Errorf("put index template %s: %s: %s", w.cfg.Alias, res.Status(), b)
	}
	return w.tenantAliases(ctx)
}

// tenantAliases adds every tenant's filtered alias to the indices already
// behind the alias (those made before the tenants file was set, or before
// a tenant was added). Adding an alias that is there is a no-op.
func (w *Writer) tenantAliases(ctx context.Context) error {
	if len(w.tenants) == 0 {
		return nil
	}
	res, err := w.es.Indices.GetAlias(w.es.Indices.GetAlias.WithName(w.cfg.Alias), w.es.Indices.GetAlias.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("list the indices of %s: %w", w.cfg.Alias, err)
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusNotFound {
		return nil // no index yet: the template gives the first one its aliases
	}
	raw, _ := io.ReadAll(res.Body)
	if res.IsError() {
		return fmt.Errorf("list the indices of %s: %s: %s", w.cfg.Alias, res.Status(), raw)
	}
	var indices map[string]json.RawMessage
	if err := json.Unmarshal(raw, &indices); err != nil {
		return fmt.Errorf("list the indices of %s: %w", w.cfg.Alias, err)
	}
	var actions []any
	for _, index := range sortedNames(indices) {
		for _, name := range w.tenants {
			actions = append(actions, map[string]any{"add": map[string]any{"index": index,
				"alias": access.TenantAlias(w.cfg.Alias, name), "filter": access.TenantFilter(name)}})
		}
	}
	body, _ := json.Marshal(map[string]any{"actions": actions})
	ur, err := w.es.Indices.UpdateAliases(bytes.NewReader(body), w.es.Indices.UpdateAliases.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("add tenant aliases to %d indices of %s: %w", len(indices), w.cfg.Alias, err)
	}
	defer ur.Body.Close()
	if ur.IsError() {
		b, _ := io.ReadAll(ur.Body)
		return fmt.Errorf("add tenant aliases to %d indices of %s: %s: %s", len(indices), w.cfg.Alias, ur.Status(), b)
	}
	return nil
}

func sortedNames[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Ping checks that the cluster answers (GET / is absent from the integ-test
// distribution, so cluster health is used).
func (w *Writer) Ping(ctx context.Context) error {
	res, err := w.es.Cluster.Health(w.es.Cluster.Health.WithContext(ctx))
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.IsError() {
		return fmt.Errorf("cluster health: %s", res.Status())
	}
	return nil
}

// flushStatus recovers the HTTP status of a bulk request Elasticsearch
// refused as a whole: esutil reports it only as "flush: [401 Unauthorized] …".
var flushStatus = regexp.MustCompile(`flush: \[(\d{3}) `)

// requestError classifies a failure of a whole request by its status.
func requestError(err error) error {
	if m := flushStatus.FindStringSubmatch(err.Error()); m != nil {
		code, _ := strconv.Atoi(m[1])
		if errpolicy.HTTPStatus(code) == errpolicy.Pause {
			return errpolicy.Mark(errpolicy.Pause, err)
		}
	}
	return err // network, cluster down, 5xx: retried
}

// Report is what one Write did.
type Report struct {
	// Failures are items Elasticsearch will never accept as they are.
	Failures []Failure
	// Existing are the ids of creates that found their document already
	// stored: the event was shipped before (a replay after a crash or a
	// rebalance, or a duplicate message in Kafka).
	Existing map[string]bool
}

// Write sends docs and returns once each is written or permanently
// rejected. Rejected items are returned; the others are retried under the
// error policy (backoff, or a slow pause while Elasticsearch refuses the
// credentials) until ctx ends (then the error is ctx's and the caller must
// not consider anything acknowledged).
func (w *Writer) Write(ctx context.Context, docs []Doc) ([]Failure, error) {
	r, err := w.WriteReport(ctx, docs)
	return r.Failures, err
}

// WriteReport is Write, also telling which creates found their document.
func (w *Writer) WriteReport(ctx context.Context, docs []Doc) (Report, error) {
	start := time.Now()
	pending := docs
	rep := Report{Existing: map[string]bool{}}
	att := w.pol.Start(w.cfg.Destination())
	for len(pending) > 0 {
		retry, failed, err := w.bulk(ctx, pending, rep.Existing)
		rep.Failures = append(rep.Failures, failed...)
		if len(retry) == 0 {
			break
		}
		if ctx.Err() != nil {
			return rep, fmt.Errorf("bulk write of %d items: %w", len(retry), ctx.Err())
		}
		if err == nil { // only follow-up updates of existing documents
			pending = retry
			continue
		}
		w.m.items.WithLabelValues("any", "retried").Add(float64(len(retry)))
		if werr := att.Wait(ctx, fmt.Errorf("%d of %d items not acknowledged: %w", len(retry), len(pending), err)); werr != nil {
			return rep, fmt.Errorf("bulk write: %w", werr)
		}
		pending = retry
	}
	att.Done()
	w.m.latency.Observe(time.Since(start).Seconds())
	return rep, nil
}

// flushBytes sizes one round's bulk buffer: the indexer allocates
// FlushBytes up front, so a batch of 1,000 events (≈ 0.6 MB) got a 5 MiB
// buffer each time, the shipper's largest allocation (bench/NOTES.md). The
// round's own size (with room for the action lines) keeps one request per
// round; limit, flush_bytes, still bounds it.
func flushBytes(docs []Doc, limit int) int {
	n := 0
	for _, d := range docs {
		n += len(d.Body) + len(d.OnExists) + len(d.Index) + len(d.ID) + 128
	}
	return max(min(n, limit), 1024)
}

// bulk runs one round through an esutil.BulkIndexer and sorts every item
// into written, retry or failed. An item with no callback at all is retried:
// nothing counts as written without Elasticsearch saying so. A create that
// found its document with OnExists set comes back in retry as the update;
// lastErr stays nil when only such updates are left.
func (w *Writer) bulk(ctx context.Context, docs []Doc, existing map[string]bool) (retry []Doc, failed []Failure, lastErr error) {
	bi, err := esutil.NewBulkIndexer(esutil.BulkIndexerConfig{Client: w.tp, NumWorkers: 1, FlushBytes: flushBytes(docs, w.cfg.FlushBytes),
		FlushInterval: time.Hour}) // flushed by Close below
	if err != nil {
		return docs, nil, err
	}
	const (
		unknown = iota
		written
		again
		rejected
	)
	var mu sync.Mutex
	outcome := make([]int, len(docs))
	failure := make([]Failure, len(docs))
	var followUps []Doc
	set := func(i, o int) { mu.Lock(); outcome[i] = o; mu.Unlock() }
	for i, d := range docs {
		item := esutil.BulkIndexerItem{Action: d.Action, Index: d.Index, DocumentID: d.ID, Body: bytes.NewReader(d.Body),
			OnSuccess: func(context.Context, esutil.BulkIndexerItem, esutil.BulkIndexerResponseItem) {
				w.m.items.WithLabelValues(d.Action, "written").Inc()
				set(i, written)
			},
			OnFailure: func(_ context.Context, _ esutil.BulkIndexerItem, r esutil.BulkIndexerResponseItem, err error) {
				switch {
				case err != nil: // the request itself failed: network, cluster down, refused credentials
					mu.Lock()
					lastErr = requestError(err)
					mu.Unlock()
					set(i, again)
				case r.Status == http.StatusConflict && d.Action == "create":
					w.m.items.WithLabelValues(d.Action, "exists").Inc() // already written: an idempotent replay
					mu.Lock()
					existing[d.ID] = true
					if d.OnExists != nil {
						followUps = append(followUps, Doc{Action: "update", Index: d.Index, ID: d.ID, Body: d.OnExists})
					}
					mu.Unlock()
					set(i, written)
				case errpolicy.HTTPStatus(r.Status) != errpolicy.DeadLetter:
					// 429/5xx: passing; 401/403: this user may not write here,
					// which is true of every item, so the stream pauses.
					mu.Lock()
					lastErr = errpolicy.Mark(errpolicy.HTTPStatus(r.Status), fmt.Errorf("HTTP %d %s: %s", r.Status, r.Error.Type, r.Error.Reason))
					mu.Unlock()
					set(i, again)
				default:
					w.m.items.WithLabelValues(d.Action, "failed").Inc()
					mu.Lock()
					failure[i] = Failure{Doc: d, Status: r.Status, Type: r.Error.Type, Reason: r.Error.Reason}
					mu.Unlock()
					set(i, rejected)
				}
			}}
		if err := bi.Add(ctx, item); err != nil {
			mu.Lock()
			lastErr = err
			mu.Unlock()
			break
		}
	}
	if err := bi.Close(ctx); err != nil {
		mu.Lock()
		if lastErr == nil {
			lastErr = err
		}
		mu.Unlock()
	}
	mu.Lock()
	defer mu.Unlock()
	for i, o := range outcome {
		switch o {
		case rejected:
			failed = append(failed, failure[i])
		case unknown, again:
			retry = append(retry, docs[i])
		}
	}
	if len(retry) > 0 && lastErr == nil {
		lastErr = errors.New("no answer for some items")
	}
	return append(retry, followUps...), failed, lastErr
}

// Refresh makes recent writes searchable now (tests, the demo summary).
func (w *Writer) Refresh(ctx context.Context) error {
	res, err := w.es.Indices.Refresh(w.es.Indices.Refresh.WithIndex(w.cfg.Alias), w.es.Indices.Refresh.WithContext(ctx))
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.IsError() && !strings.Contains(res.String(), "index_not_found") {
		return fmt.Errorf("refresh %s: %s", w.cfg.Alias, res.Status())
	}
	return nil
}

// FillSession sets fields on every document of one conversation that lacks
// field missing (e.g. the CRM id, once the lead is known) and returns how
// many it updated. It refreshes first so that events acknowledged just
// before are found; updates go item by item like any write.
func (w *Writer) FillSession(ctx context.Context, tenant, session, missing string, fields map[string]any) (int, error) {
	if err := w.Refresh(ctx); err != nil {
		return 0, fmt.Errorf("fill session %s/%s: %w", tenant, session, err)
	}
	q := map[string]any{"size": 10000, "_source": false, "query": map[string]any{"bool": map[string]any{
		"filter":   []any{map[string]any{"term": map[string]any{"tenant": tenant}}, map[string]any{"term": map[string]any{"session_id": session}}},
		"must_not": []any{map[string]any{"exists": map[string]any{"field": missing}}},
	}}}
	body, _ := json.Marshal(q)
	res, err := w.es.Search(w.es.Search.WithContext(ctx), w.es.Search.WithIndex(w.cfg.Alias), w.es.Search.WithBody(bytes.NewReader(body)),
		w.es.Search.WithIgnoreUnavailable(true), w.es.Search.WithAllowNoIndices(true))
	if err != nil {
		return 0, fmt.Errorf("fill session %s/%s: search: %w", tenant, session, err)
	}
	defer res.Body.Close()
	if res.IsError() {
		b, _ := io.ReadAll(res.Body)
		err := fmt.Errorf("fill session %s/%s: search: %s: %s", tenant, session, res.Status(), b)
		if a := errpolicy.HTTPStatus(res.StatusCode); a == errpolicy.Pause {
			return 0, errpolicy.Mark(a, err)
		}
		return 0, err
	}
	var r struct {
		Hits struct {
			Hits []struct {
				Index string `json:"_index"`
				ID    string `json:"_id"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := json.NewDecoder(res.Body).Decode(&r); err != nil {
		return 0, fmt.Errorf("fill session %s/%s: decode search: %w", tenant, session, err)
	}
	if len(r.Hits.Hits) == 0 {
		return 0, nil
	}
	upd, _ := json.Marshal(map[string]any{"doc": fields})
	docs := make([]Doc, 0, len(r.Hits.Hits))
	for _, h := range r.Hits.Hits {
		docs = append(docs, Doc{Action: "update", Index: h.Index, ID: h.ID, Body: upd})
	}
	failed, err := w.Write(ctx, docs)
	if err != nil {
		return 0, fmt.Errorf("fill session %s/%s: %w", tenant, session, err)
	}
	if len(failed) > 0 {
		return len(docs) - len(failed), fmt.Errorf("fill session %s/%s: %d updates refused, first: %w", tenant, session, len(failed), failed[0])
	}
	return len(docs), nil
}
