package stack_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/assistlog/assistlog/internal/stacktest"
	"github.com/assistlog/assistlog/stack"
)

// TestExtraLokiIsMultiTenant: an extra Loki with auth on refuses a push
// without X-Scope-OrgID and keeps what tenant a pushed out of tenant b's
// reads.
func TestExtraLokiIsMultiTenant(t *testing.T) {
	stacktest.Require(t, stacktest.Loki)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l, err := stack.StartLoki(ctx, stack.ExtraLokiConfig{Name: "smoke", HTTPPort: 13111, GRPCPort: 19111, AuthEnabled: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	ts := time.Now().UnixNano()
	body := `{"streams":[{"stream":{"app":"smoke"},"values":[["` + itoa(ts) + `","hello"]]}]}`
	push := func(org string) int {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, l.URL+"/loki/api/v1/push", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if org != "" {
			req.Header.Set("X-Scope-OrgID", org)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := push(""); code != http.StatusUnauthorized {
		t.Fatalf("push without a tenant: HTTP %d, want 401", code)
	}
	if code := push("a"); code != http.StatusNoContent {
		t.Fatalf("push as a: HTTP %d", code)
	}
	count := func(org string) int {
		return stacktest.LokiScalarAs(t, l.URL, org, `sum(count_over_time({app="smoke"}[1h]))`)
	}
	stacktest.Eventually(t, 30*time.Second, "tenant a reads its line", func() error {
		if n := count("a"); n != 1 {
			return errorf("tenant a sees %d lines", n)
		}
		return nil
	})
	if n := count("b"); n != 0 {
		t.Fatalf("tenant b sees %d of tenant a's lines", n)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func errorf(format string, a ...any) error { return fmt.Errorf(format, a...) }
