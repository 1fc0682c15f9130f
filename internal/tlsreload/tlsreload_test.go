package tlsreload_test

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/assistlog/assistlog/internal/certs"
	"github.com/assistlog/assistlog/internal/tlsreload"
)

// TestMissingFileKeepsServing: while a file is missing (an operator
// replacing it by delete-and-write) the pair already loaded is served and
// the gap reported once; the file back, the new pair is served.
func TestMissingFileKeepsServing(t *testing.T) {
	ca, err := certs.NewCA("reload test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p1, _ := ca.Server("one", time.Hour, "127.0.0.1")
	p2, _ := ca.Server("two", time.Hour, "127.0.0.1")
	files, err := ca.WriteFiles(t.TempDir(), "srv", p1)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	r, err := tlsreload.New(tlsreload.Config{Listener: "test", CertFile: files.Cert, KeyFile: files.Key},
		slog.New(slog.NewJSONHandler(&logs, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	serial := func(p certs.Pair) string {
		b, _ := pem.Decode(p.CertPEM)
		c, _ := x509.ParseCertificate(b.Bytes)
		return c.SerialNumber.String()
	}
	served := func() string {
		c, err := r.GetCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		return c.Leaf.SerialNumber.String()
	}
	if served() != serial(p1) {
		t.Fatal("the first pair is not served")
	}
	if err := os.Remove(files.Cert); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if served() != serial(p1) {
			t.Fatal("a missing file stopped the first pair being served")
		}
	}
	if r.Err() == nil || !strings.Contains(r.Err().Error(), "cert_file") {
		t.Fatalf("Err() = %v, want the missing cert_file", r.Err())
	}
	if n := strings.Count(logs.String(), "do not load"); n != 1 {
		t.Fatalf("the missing file was reported %d times, want once:\n%s", n, logs.String())
	}
	if v := gauge(t, reg, "assistlog_tls_reload_failing"); v != 1 {
		t.Fatalf("assistlog_tls_reload_failing = %v", v)
	}
	if err := os.WriteFile(files.Key, p2.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(files.Cert, p2.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if served() != serial(p2) || r.Err() != nil {
		t.Fatalf("the second pair is not served once the files are back (err %v)", r.Err())
	}
	if v := gauge(t, reg, "assistlog_tls_reload_failing"); v != 0 {
		t.Fatalf("assistlog_tls_reload_failing = %v after the files came back", v)
	}
}

// gauge is the value of a registered gauge with one series.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("%s is not registered", name)
	return 0
}
