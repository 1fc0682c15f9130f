package elastic

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/elastic/elastic-transport-go/v8/elastictransport"
)

// The kinds of store assistlog writes to and reads from.
const (
	StoreElasticsearch = "elasticsearch"
	StoreOpenSearch    = "opensearch"
)

// Destination is the store's name in the error policy and metrics.
func (c Config) Destination() string {
	if c.Store == StoreOpenSearch {
		return StoreOpenSearch
	}
	return Destination
}

// NewTransport builds the HTTP transport both stores are spoken to
// through: URLs, basic auth or API key, a CA file for managed clusters,
// and a couple of quick retries on a gateway error. It is
// elastic-transport-go without go-elasticsearch's client on top, whose
// product check refuses OpenSearch ("the client noticed that the server is
// not Elasticsearch and we do not support this unknown product").
func NewTransport(cfg Config) (*elastictransport.Client, error) {
	var urls []*url.URL
	for _, raw := range cfg.URLs {
		u, err := url.Parse(raw)
		if err != nil || u.Scheme == "" || u.Host == "" {
			return nil, fmt.Errorf("%s urls: %q is not an http(s) URL", cfg.Destination(), raw)
		}
		urls = append(urls, u)
	}
	tc := elastictransport.Config{URLs: urls, Username: cfg.Username, Password: cfg.Password, APIKey: cfg.APIKey,
		RetryOnStatus: []int{502, 503, 504}, MaxRetries: 2}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%s ca_file: %w", cfg.Destination(), err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s ca_file %s: no PEM certificate in it", cfg.Destination(), cfg.CAFile)
		}
		tc.CACert = pem
	}
	tp, err := elastictransport.New(tc)
	if err != nil {
		return nil, fmt.Errorf("%s client: %w", cfg.Destination(), err)
	}
	return tp, nil
}

// Detect asks the server what it is: OpenSearch answers GET / with
// version.distribution "opensearch"; Elasticsearch has no distribution
// there (and the integ-test Elasticsearch has no GET / at all: 404), so
// anything else is taken for Elasticsearch. An explicit Config.Store wins.
func Detect(ctx context.Context, cfg Config, hc *http.Client) (string, error) {
	if cfg.Store != "" {
		return cfg.Store, nil
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cfg.URLs[0], nil)
	if err != nil {
		return "", fmt.Errorf("detect store: %w", err)
	}
	switch {
	case cfg.APIKey != "":
		req.Header.Set("Authorization", "ApiKey "+cfg.APIKey)
	case cfg.Username != "":
		req.SetBasicAuth(cfg.Username, cfg.Password)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("detect store: GET /: %w", err)
	}
	defer resp.Body.Close()
	var root struct {
		Version struct {
			Distribution string `json:"distribution"`
		} `json:"version"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode == http.StatusOK && json.Unmarshal(b, &root) == nil && root.Version.Distribution == StoreOpenSearch {
		return StoreOpenSearch, nil
	}
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		return "", fmt.Errorf("detect store: GET /: HTTP %d, credentials refused", resp.StatusCode)
	}
	return StoreElasticsearch, nil
}

// HTTPClient is a plain client for the store's JSON API (audit's reads)
// trusting cfg.CAFile when set.
func HTTPClient(cfg Config, timeout time.Duration) (*http.Client, error) {
	hc := &http.Client{Timeout: timeout}
	if cfg.CAFile == "" {
		return hc, nil
	}
	pem, err := os.ReadFile(cfg.CAFile)
	if err != nil {
		return nil, fmt.Errorf("%s ca_file: %w", cfg.Destination(), err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s ca_file %s: no PEM certificate in it", cfg.Destination(), cfg.CAFile)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	hc.Transport = tr
	return hc, nil
}

// PIT is how a store opens and closes a point in time, and the tiebreaker
// that keeps search_after paging stable. Searching with it is the same on
// both: "pit": {"id": …, "keep_alive": …} and no index in the path.
type PIT struct {
	// OpenPath follows the index: POST /<index>/<OpenPath>?keep_alive=…
	OpenPath string
	// IDField is where the open call's answer holds the id.
	IDField string
	// ClosePath is DELETE /<ClosePath> with CloseBody(id).
	ClosePath string
	CloseBody func(id string) any
	// Tiebreaker is the last sort key: Elasticsearch's _shard_doc, which
	// OpenSearch 2.19 lacks ("No mapping found for [_shard_doc]"); there
	// _id, unique since it is the event_id.
	Tiebreaker map[string]any
}

// PointInTime returns the point-in-time API of a store.
func PointInTime(store string) PIT {
	if store == StoreOpenSearch {
		return PIT{OpenPath: "_search/point_in_time", IDField: "pit_id", ClosePath: "_search/point_in_time",
			CloseBody:  func(id string) any { return map[string]any{"pit_id": []string{id}} },
			Tiebreaker: map[string]any{"_id": "asc"}}
	}
	return PIT{OpenPath: "_pit", IDField: "id", ClosePath: "_pit",
		CloseBody:  func(id string) any { return map[string]any{"id": id} },
		Tiebreaker: map[string]any{"_shard_doc": "asc"}}
}
