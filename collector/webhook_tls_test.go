package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/assistlog/assistlog/internal/certs"
	"github.com/assistlog/assistlog/internal/proctest"
)

// TestWebhookServesTLSAndReloads runs the real collector with
// webhook.tls: a client trusting the CA gets the first certificate and its
// event is accepted; a client that does not trust the CA and a plain-HTTP
// request are refused; files replaced by something that does not load are
// reported while the first certificate goes on being served; files
// replaced by a second pair are served to the next connection, without a
// restart.
func TestWebhookServesTLSAndReloads(t *testing.T) {
	ca, err := certs.NewCA("assistlog webhook test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pairs := make([]certs.Pair, 2)
	for i := range pairs {
		if pairs[i], err = ca.Server(fmt.Sprintf("webhook-%d", i+1), time.Hour, "127.0.0.1", "localhost"); err != nil {
			t.Fatal(err)
		}
	}
	tlsDir := t.TempDir()
	files, err := ca.WriteFiles(tlsDir, "webhook", pairs[0])
	if err != nil {
		t.Fatal(err)
	}
	const token = "webhook-tls-token-0123456789"
	e := newEnv(t, func(e *env, s *envSettings) {
		e.webhookAddr = proctest.FreeAddr(e.t)
		s.extra += fmt.Sprintf("webhook:\n  listen: %s\n  produce_timeout: 5s\n  tenants:\n    - tenant: salon-aurora\n      tokens: [%q]\n  tls:\n    cert_file: %s\n    key_file: %s\n",
			e.webhookAddr, token, files.Cert, files.Key)
	})
	e.start()

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.PEM)
	// served is the serial of the certificate a new connection gets.
	served := func() *big.Int {
		t.Helper()
		conn, err := tls.Dial("tcp", e.webhookAddr, &tls.Config{RootCAs: roots})
		if err != nil {
			t.Fatalf("TLS handshake with the webhook: %v", err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber
	}
	serial := func(p certs.Pair) *big.Int {
		b, _ := pem.Decode(p.CertPEM)
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return c.SerialNumber
	}
	https := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots}, DisableKeepAlives: true}}
	post := func(c *http.Client, scheme, id string) (int, string) {
		t.Helper()
		body := `{"event_id":"` + id + `","timestamp":"2026-11-27T10:00:00+05:00","tenant":"salon-aurora","channel":"web","session_id":"s-tls","event_type":"message.received","level":"info","payload":{"text":"Здравствуйте"},"schema_version":1}`
		req, _ := http.NewRequest(http.MethodPost, scheme+"://"+e.webhookAddr+"/v1/events", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("POST over %s: %v", scheme, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	replace := func(path string, content []byte) {
		t.Helper()
		tmp := path + ".new"
		if err := os.WriteFile(tmp, content, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}

	if got, want := served(), serial(pairs[0]); got.Cmp(want) != 0 {
		t.Fatalf("served serial %s, want pair 1's %s", got, want)
	}
	if code, body := post(https, "https", "tls-1"); code != http.StatusAccepted {
		t.Fatalf("POST over HTTPS: %d %s", code, body)
	}

	t.Run("refused", func(t *testing.T) {
		_, err := tls.Dial("tcp", e.webhookAddr, &tls.Config{})
		var unknown x509.UnknownAuthorityError
		if !errors.As(err, &unknown) {
			t.Errorf("a client without the CA: want an unknown-authority error, got %v", err)
		}
		code, body := post(http.DefaultClient, "http", "tls-plain")
		if code != http.StatusBadRequest || !strings.Contains(body, "HTTPS") {
			t.Errorf("plain HTTP to the TLS port: %d %q, want 400 saying it is HTTPS", code, body)
		}
	})

	t.Run("broken files keep the served pair", func(t *testing.T) {
		replace(files.Cert, []byte("not a certificate\n"))
		if got, want := served(), serial(pairs[0]); got.Cmp(want) != 0 {
			t.Fatalf("after broken files: served %s, want pair 1's %s", got, want)
		}
		m := e.metrics()
		for _, line := range []string{`assistlog_tls_reload_failing{listener="webhook"} 1`, `assistlog_tls_reloads_total{listener="webhook",result="error"} 1`} {
			if !strings.Contains(m, line+"\n") {
				t.Errorf("metrics lack %s:\n%s", line, grepLines(m, "assistlog_tls_"))
			}
		}
		if !strings.Contains(e.logTail(), "do not load") {
			t.Errorf("the log does not report the broken files:\n%s", e.logTail())
		}
	})

	t.Run("a new pair is served without a restart", func(t *testing.T) {
		replace(files.Key, pairs[1].KeyPEM)
		replace(files.Cert, pairs[1].CertPEM)
		if got, want := served(), serial(pairs[1]); got.Cmp(want) != 0 {
			t.Fatalf("after replacing the files: served %s, want pair 2's %s", got, want)
		}
		m := e.metrics()
		for _, line := range []string{`assistlog_tls_reload_failing{listener="webhook"} 0`, `assistlog_tls_reloads_total{listener="webhook",result="ok"} 1`} {
			if !strings.Contains(m, line+"\n") {
				t.Errorf("metrics lack %s:\n%s", line, grepLines(m, "assistlog_tls_"))
			}
		}
		if code, body := post(https, "https", "tls-2"); code != http.StatusAccepted {
			t.Fatalf("POST over HTTPS with pair 2: %d %s", code, body)
		}
	})

	// What was accepted is in Kafka; the plain-HTTP request is not.
	e.waitForIDs([]string{"tls-1", "tls-2"}, 30*time.Second)
}

func grepLines(text, substr string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestWebhookClientCertificates: with webhook.tls.client_ca_file, a client
// without a certificate from that CA is refused at the handshake even with
// a valid token; one with such a certificate is accepted.
func TestWebhookClientCertificates(t *testing.T) {
	ca, err := certs.NewCA("assistlog webhook server CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	clients, err := certs.NewCA("assistlog webhook clients CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	server, err := ca.Server("webhook", time.Hour, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files, err := ca.WriteFiles(dir, "webhook", server)
	if err != nil {
		t.Fatal(err)
	}
	clientCA := dir + "/clients-ca.pem"
	if err := os.WriteFile(clientCA, clients.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	const token = "webhook-mtls-token-0123456789"
	e := newEnv(t, func(e *env, s *envSettings) {
		e.webhookAddr = proctest.FreeAddr(e.t)
		s.extra += fmt.Sprintf("webhook:\n  listen: %s\n  produce_timeout: 5s\n  tenants:\n    - tenant: salon-aurora\n      tokens: [%q]\n  tls:\n    cert_file: %s\n    key_file: %s\n    client_ca_file: %s\n",
			e.webhookAddr, token, files.Cert, files.Key, clientCA)
	})
	e.start()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.PEM)
	post := func(certs []tls.Certificate, id string) (int, error) {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs}, DisableKeepAlives: true}}
		body := `{"event_id":"` + id + `","timestamp":"2026-11-27T10:00:00+05:00","tenant":"salon-aurora","channel":"web","session_id":"s-mtls","event_type":"message.received","level":"info","payload":{"text":"Здравствуйте"},"schema_version":1}`
		req, _ := http.NewRequest(http.MethodPost, "https://"+e.webhookAddr+"/v1/events", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	clientCert := func(ca *certs.CA) []tls.Certificate {
		p, err := ca.Server("panel", time.Hour, "panel.example")
		if err != nil {
			t.Fatal(err)
		}
		c, err := tls.X509KeyPair(p.CertPEM, p.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return []tls.Certificate{c}
	}
	if code, err := post(nil, "mtls-none"); err == nil {
		t.Errorf("a client without a certificate got %d", code)
	}
	if code, err := post(clientCert(ca), "mtls-other-ca"); err == nil {
		t.Errorf("a client with a certificate from another CA got %d", code)
	}
	if code, err := post(clientCert(clients), "mtls-ok"); err != nil || code != http.StatusAccepted {
		t.Fatalf("a client with a certificate from the client CA: %d %v", code, err)
	}
	e.waitForIDs([]string{"mtls-ok"}, 30*time.Second)
}
