package stack_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/assistlog/assistlog/internal/stacktest"
	"github.com/assistlog/assistlog/stack"
)

// TestSecuredElasticsearchRefuses proves what the secured node stands for:
// HTTPS only, with the stack's CA; a wrong password is 401; and what this
// distribution's basic licence lacks, which is why tenants are kept apart
// by filtered aliases and users live in the file realm: API keys cannot be
// created (the .security index needs analysis filters the integ-test zip
// does not ship) and a role with document-level security is ignored.
func TestSecuredElasticsearchRefuses(t *testing.T) {
	e := stacktest.ESSecure(t)
	ctx := context.Background()
	get := func(hc *http.Client, url string) (*http.Response, error) {
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		req.SetBasicAuth(e.AdminUser, e.AdminPassword)
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return resp, err
	}
	// Plain HTTP on the HTTPS port gets no answer.
	if resp, err := get(http.DefaultClient, strings.Replace(e.URL, "https://", "http://", 1)+"/_cluster/health"); err == nil {
		t.Fatalf("plain http answered %s, want the connection refused", resp.Status)
	}
	// Without the CA the certificate is not trusted.
	_, err := get(http.DefaultClient, e.URL+"/_cluster/health")
	var unknown *tls.CertificateVerificationError
	if !errors.As(err, &unknown) {
		t.Fatalf("without the CA: %v, want a certificate verification error", err)
	}
	if code, body := stacktest.ESSecureDo(t, e, e.OpsUser, "wrong-password", http.MethodGet, "/_cluster/health", ""); code != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d %s, want 401", code, body)
	}
	code, body := stacktest.ESSecureDo(t, e, e.AdminUser, e.AdminPassword, http.MethodGet, "/_license", "")
	if code != http.StatusOK || !strings.Contains(body, `"type" : "basic"`) {
		t.Fatalf("licence: %d %s, want basic", code, body)
	}
	// API keys: refused even to the superuser, with this reason.
	code, body = stacktest.ESSecureDo(t, e, e.AdminUser, e.AdminPassword, http.MethodPost, "/_security/api_key", `{"name":"probe"}`)
	if code < 400 || !strings.Contains(body, "Unknown filter type [pattern_capture]") {
		t.Fatalf("create an API key: %d %s, want the .security index's analysis error", code, body)
	}
	t.Logf("API key: HTTP %d %s", code, body)
	// Document-level security: the role is ignored, its user reads nothing.
	code, body = stacktest.ESSecureDo(t, e, stack.ESSecureDLSProbeUser, e.AuditorPassword, http.MethodPost, "/assistant-events*/_search", `{"size":0}`)
	if code != http.StatusForbidden || !strings.Contains(body, "were not found") {
		t.Fatalf("a role with document-level security: %d %s, want 403 (role ignored by the basic licence)", code, body)
	}
}
