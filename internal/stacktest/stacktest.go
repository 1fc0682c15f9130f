// Package stacktest is the one switch for integration tests: they run
// against the real local stack (see stack/) and never against fakes.
//
// Without the stack a plain `go test ./...` skips them and says why. Under
// the README's test command, and whenever CI=true or ASSISTLOG_INTEGRATION=1,
// a missing component fails the test instead.
package stacktest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/assistlog/assistlog/stack"
)

// Required reports whether integration tests must run.
func Required() bool {
	return os.Getenv("CI") == "true" || os.Getenv("ASSISTLOG_INTEGRATION") == "1"
}

// Component names accepted by Require.
const (
	Kafka         = "kafka"
	Elasticsearch = "elasticsearch"
	Loki          = "loki"
	Prometheus    = "prometheus"
	Alertmanager  = "alertmanager"
	// S3 is the S3-compatible server (versitygw) holding the archive.
	S3         = "s3"
	OpenSearch = "opensearch"
	// ElasticsearchSecure is the secured node: HTTPS, users and roles
	// (stack/elasticsearch_secure.go); Endpoints.ESSecure has its settings.
	ElasticsearchSecure = stack.ESSecureName
)

// SearchStore is one of the stores events are written to and read from.
type SearchStore struct {
	Name string // elastic.StoreElasticsearch or elastic.StoreOpenSearch
	URL  string
}

// SearchStores requires both search stores and returns them: tests of the
// sink and of audit run against each (issue 16).
func SearchStores(t testing.TB) []SearchStore {
	t.Helper()
	ep := Require(t, Elasticsearch, OpenSearch)
	return []SearchStore{{Elasticsearch, ep.ElasticsearchURL}, {OpenSearch, ep.OpenSearchURL}}
}

// Require returns the stack's endpoints once every named component answers.
// It skips the test when the stack is absent and integration tests are not
// required, and fails it when they are.
func Require(t testing.TB, components ...string) stack.Endpoints {
	t.Helper()
	ep, err := stack.EndpointsFromEnv()
	if err != nil {
		t.Fatalf("stack endpoints: %v", err)
	}
	var missing []string
	for _, c := range components {
		if err := probe(c, ep); err != nil {
			missing = append(missing, c+" ("+err.Error()+")")
		}
	}
	if len(missing) == 0 {
		return ep
	}
	msg := "integration test needs the real stack, not reachable: " + strings.Join(missing, ", ") +
		"; start it with `go run ./stack/cmd/stack up` or run `make test`"
	if Required() {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ep
}

func probe(component string, ep stack.Endpoints) error {
	switch component {
	case Kafka:
		c, err := net.DialTimeout("tcp", ep.KafkaBrokers, 3*time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	case Elasticsearch:
		return get(ep.ElasticsearchURL + "/_cluster/health")
	case OpenSearch:
		return get(ep.OpenSearchURL + "/_cluster/health")
	case Loki:
		return get(ep.LokiURL + "/ready")
	case Prometheus:
		return get(ep.PrometheusURL + "/-/ready")
	case Alertmanager:
		return get(ep.AlertmanagerURL + "/-/ready")
	case S3:
		return get(ep.S3.URL + "/health")
	case ElasticsearchSecure:
		return ep.ESSecure.Ready(context.Background())
	}
	return nil
}

func get(url string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return &statusError{resp.Status}
	}
	return nil
}

type statusError struct{ status string }

func (e *statusError) Error() string { return "status " + e.status }

// Eventually polls cond until it returns nil or the timeout passes, then
// fails with the last error. Use it for what a real server makes visible
// asynchronously (a search refresh, a rule evaluation), never as a speed
// assertion.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = cond(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %s: %v", what, timeout, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// DuringOutage stops a real component of the stack, runs op while it is
// down, checks op is still waiting after a few seconds (it must retry, not
// give up), starts the component again and requires op to finish without
// error.
func DuringOutage(t testing.TB, component string, op func() error) {
	t.Helper()
	layout, err := stack.LayoutFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	s := stack.New(layout, io.Discard)
	ctx := context.Background()
	t.Cleanup(func() { _ = s.Up(ctx, component) }) // whatever happens, leave it running
	if err := s.Down(ctx, component); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- op() }()
	select {
	case err := <-done:
		t.Fatalf("returned while %s was down: %v", component, err)
	case <-time.After(3 * time.Second):
	}
	if err := s.Up(ctx, component); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("after %s came back: %v", component, err)
		}
	case <-time.After(3 * time.Minute):
		t.Fatalf("did not complete within 3 minutes of %s coming back", component)
	}
}

// Sample is one series of a Prometheus instant query's result.
type Sample struct {
	Metric map[string]string
	Value  string
}

// PromInstant runs an instant PromQL query on a real Prometheus.
func PromInstant(base, expr string) ([]Sample, error) {
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("query %s: %w", expr, err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("query %s: %s", expr, r.Error)
	}
	out := make([]Sample, 0, len(r.Data.Result))
	for _, s := range r.Data.Result {
		out = append(out, Sample{Metric: s.Metric, Value: fmt.Sprint(s.Value[1])})
	}
	return out, nil
}

// LokiScalar runs a LogQL instant query whose answer is one number (a
// count, a sum) and returns it; 0 when the answer is empty.
func LokiScalar(t testing.TB, base, q string) int {
	t.Helper()
	return LokiScalarAs(t, base, "", q)
}

// LokiScalarAs is LokiScalar as one Loki tenant (X-Scope-OrgID; empty
// sends none, as to the stack's single-tenant Loki).
func LokiScalarAs(t testing.TB, base, org, q string) int {
	t.Helper()
	var err error
	// A query queued behind others past Loki's 30 s server write timeout
	// ends as EOF on the connection (seen under the full suite's load);
	// the query reads only, so it is asked again, at most three times.
	for attempt := 0; attempt < 3; attempt++ {
		var n int
		if n, err = LokiInstant(context.Background(), base, org, q, time.Time{}); err == nil {
			return n
		}
		var uerr *url.Error
		if !errors.As(err, &uerr) {
			break
		}
		t.Logf("loki query %s: %v; asking again", q, err)
		time.Sleep(time.Second)
	}
	t.Fatal(err)
	return 0
}

// LokiInstant runs an instant LogQL query whose answer is one number as
// org ("": no X-Scope-OrgID) at `at` (zero: now); 0 when the answer is
// empty. An error is returned for callers that retry (Loki restarting).
func LokiInstant(ctx context.Context, base, org, q string, at time.Time) (int, error) {
	v := url.Values{"query": {q}}
	if !at.IsZero() {
		v.Set("time", strconv.FormatInt(at.UnixNano(), 10))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/loki/api/v1/query?"+v.Encode(), nil)
	if err != nil {
		return 0, err
	}
	if org != "" {
		req.Header.Set("X-Scope-OrgID", org)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || r.Status != "success" {
		return 0, fmt.Errorf("loki query %s: HTTP %d %v %s", q, resp.StatusCode, err, r.Error)
	}
	if len(r.Data.Result) == 0 {
		return 0, nil
	}
	var n int
	fmt.Sscan(fmt.Sprint(r.Data.Result[0].Value[1]), &n)
	return n, nil
}
