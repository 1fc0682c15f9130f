package certs_test

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/assistlog/assistlog/internal/certs"
)

// TestServerTrustedOnlyThroughItsCA: a TLS server with an issued pair is
// reached by a client trusting the CA, and refused by one trusting the
// system roots only (and by one trusting another CA).
func TestServerTrustedOnlyThroughItsCA(t *testing.T) {
	ca, err := certs.NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ca.Server("server", time.Hour, "127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	files, err := ca.WriteFiles(t.TempDir(), "server", pair)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(files.Key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	kp, err := tls.LoadX509KeyPair(files.Cert, files.Key)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{kp}}
	srv.StartTLS()
	defer srv.Close()

	client := func(roots *x509.CertPool) *http.Client {
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca.PEM) {
		t.Fatal("CA PEM not parsed")
	}
	if resp, err := client(pool).Get(srv.URL); err != nil {
		t.Fatalf("trusted client refused: %v", err)
	} else {
		resp.Body.Close()
	}
	other, err := certs.NewCA("other CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	otherPool := x509.NewCertPool()
	otherPool.AppendCertsFromPEM(other.PEM)
	for name, roots := range map[string]*x509.CertPool{"system roots": nil, "another CA": otherPool} {
		if resp, err := client(roots).Get(srv.URL); err == nil {
			resp.Body.Close()
			t.Errorf("client trusting %s reached the server", name)
		}
	}
}
