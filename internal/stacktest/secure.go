package stacktest

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/assistlog/assistlog/stack"
)

// ESSecure requires the secured Elasticsearch node (HTTPS, users, roles)
// and returns its settings.
func ESSecure(t testing.TB) stack.ESSecureEndpoints {
	t.Helper()
	return Require(t, ElasticsearchSecure).ESSecure
}

// ESSecureDo sends one request to the secured node as user, trusting the
// stack's CA, and returns the status and body; a failed connection fails
// the test.
func ESSecureDo(t testing.TB, e stack.ESSecureEndpoints, user, password, method, path, body string) (int, string) {
	t.Helper()
	hc, err := e.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, e.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth(user, password)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s as %s: %v", method, path, user, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
