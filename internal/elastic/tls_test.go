package elastic_test

import (
	"context"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/assistlog/assistlog/internal/elastic"
	"github.com/assistlog/assistlog/internal/errpolicy"
	"github.com/assistlog/assistlog/internal/esread"
	"github.com/assistlog/assistlog/internal/stacktest"
)

// TestManagedOpenSearchOverTLS: a managed OpenSearch (Yandex's) is HTTPS
// with a certificate from its own CA and basic auth. The stack's OpenSearch
// is put behind a TLS front with a private CA that demands a user, as such
// an endpoint does: with ca_file, username and password the writer stores
// an event and esread reads it back; without ca_file the certificate is
// refused.
func TestManagedOpenSearchOverTLS(t *testing.T) {
	ep := stacktest.Require(t, stacktest.OpenSearch)
	target, _ := url.Parse(ep.OpenSearchURL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	front := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "assistlog" || p != "s3cret-pass" {
			w.Header().Set("Content-Type", "application/json")
			http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
			return
		}
		r.Header.Del("Authorization")
		proxy.ServeHTTP(w, r)
	}))
	defer front.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: front.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pol, err := errpolicy.New(errpolicy.Config{RetryMin: 100 * time.Millisecond, RetryMax: time.Second, PauseInterval: time.Second}, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	cfg := elastic.DefaultConfig()
	cfg.URLs, cfg.Store, cfg.Alias = []string{front.URL}, elastic.StoreOpenSearch, "test-tls-"+strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	cfg.Username, cfg.Password = "assistlog", "s3cret-pass"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	noCA, err := elastic.New(cfg, pol, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if err := noCA.Setup(ctx); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("without ca_file: %v, want a certificate error", err)
	}

	cfg.CAFile = ca
	w, err := elastic.New(cfg, pol, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		req, _ := http.NewRequest(http.MethodDelete, ep.OpenSearchURL+"/"+cfg.Alias+"-*", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
		req, _ = http.NewRequest(http.MethodDelete, ep.OpenSearchURL+"/_index_template/"+cfg.Alias, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	})
	if err := w.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	ts := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	doc := elastic.Doc{Action: "create", Index: w.IndexFor(ts), ID: "tls-1",
		Body: []byte(`{"@timestamp":"2026-11-20T10:00:00Z","event_id":"tls-1","event_type":"session.started","tenant":"salon-aurora"}`)}
	if f, err := w.Write(ctx, []elastic.Doc{doc}); err != nil || len(f) != 0 {
		t.Fatalf("write over TLS: %v %v", f, err)
	}
	if err := w.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	rcfg := cfg
	rcfg.Store = "" // detected over TLS, through the same credentials
	r, err := esread.New(rcfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	if err := r.Each(ctx, esread.Search{}, func(h esread.Hit) error { ids = append(ids, h.ID); return nil }); err != nil {
		t.Fatal(err)
	}
	if store, _ := r.Store(ctx); store != elastic.StoreOpenSearch || len(ids) != 1 || ids[0] != "tls-1" {
		t.Fatalf("read back over TLS from %q: %v, want tls-1 from opensearch", store, ids)
	}
}
