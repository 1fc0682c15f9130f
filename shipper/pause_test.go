package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/assistlog/assistlog/internal/proctest"
	"github.com/assistlog/assistlog/internal/stacktest"
	"github.com/assistlog/assistlog/stack"
)

// freePort is a loopback port nothing listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	_, p, err := net.SplitHostPort(proctest.FreeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

// metricValue reads one sample from a program's /metrics; -1 when absent.
func metricValue(t *testing.T, addr, series string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// TestElasticsearchPrivilegePause runs the real shipper against an
// Elasticsearch with security on, as a user that may read but not write the
// event indices — what an expired or under-privileged API key looks like.
// Every item then comes back 403: the shipper must pause (gauge 1, nothing
// committed), not dead-letter the stream. Once an operator grants the
// privilege through the security API, everything is written and nothing was
// dead-lettered. Before the one error policy, each 403 item went to the
// dead-letter topic and the offsets moved on.
func TestElasticsearchPrivilegePause(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	roles := func(privileges ...string) string {
		return fmt.Sprintf(`assistlog_shipper:
  cluster: [monitor, manage_index_templates]
  indices:
    - names: [%q, %q]
      privileges: [%s]
    - names: ["unrelated-%s-*"]
      privileges: [%s]
`, e.alias, e.alias+"-*", strings.Join(privileges, ", "), e.run, "%s")
	}
	// First no write privilege at all (Elasticsearch refuses the whole
	// bulk request), then write privilege on other indices only (the
	// request is allowed and every item is refused with 403, which is what
	// used to be dead-lettered).
	noWrite := fmt.Sprintf(roles("read", "view_index_metadata"), "read")
	elsewhere := fmt.Sprintf(roles("read", "view_index_metadata"), "create_doc, create_index")
	granted := fmt.Sprintf(roles("read", "view_index_metadata", "create_doc", "create_index", "index"), "read")
	es, err := stack.StartSecuredElasticsearch(ctx, stack.SecuredElasticsearchConfig{
		Name: e.run, HTTPPort: freePort(t), TransportPort: freePort(t),
		Users: map[string]string{"shipper": "shipper-password"}, UserRoles: map[string][]string{"shipper": {"assistlog_shipper"}},
		Roles: noWrite,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(es.Stop)

	evs, _ := e.generate(3)
	e.produce(evs)
	e.esURL, e.esAuth = es.URL, "  username: shipper\n  password: shipper-password\n"
	p := e.start()
	addr := e.addrs[len(e.addrs)-1]

	paused := `assistlog_destination_paused{destination="elasticsearch"}`
	stacktest.Eventually(t, 90*time.Second, "the shipper pauses on 403", func() error {
		if v := metricValue(t, addr, paused); v != 1 {
			return fmt.Errorf("%s = %v", paused, v)
		}
		return nil
	})
	if n := len(stacktest.ReadTopic(t, e.ep.KafkaBrokers, e.dlq)); n != 0 {
		t.Fatalf("%d events dead-lettered while Elasticsearch refused the user's privileges: they should wait", n)
	}
	log, _ := os.ReadFile(p.LogPath)
	refusal := regexp.MustCompile(`.*destination refuses everything.*`).Find(log)
	if refusal == nil || !strings.Contains(string(refusal), "security_exception") {
		t.Fatalf("the shipper's log does not name Elasticsearch's refusal:\n%s", p.LogTail(20))
	}
	t.Logf("the shipper says: %s", refusal)
	if err := es.SetRoles(elsewhere); err != nil {
		t.Fatal(err)
	}
	itemRefusal := regexp.MustCompile(`.*HTTP 403 security_exception.*`)
	stacktest.Eventually(t, time.Minute, "every item refused on its own", func() error {
		log, _ := os.ReadFile(p.LogPath)
		if m := itemRefusal.Find(log); m != nil {
			t.Logf("then: %.400s", m)
			return nil
		}
		return fmt.Errorf("no item-level 403 in the log yet")
	})
	time.Sleep(3 * time.Second) // a few more paused tries: still nothing dead-lettered
	if v := metricValue(t, addr, paused); v != 1 {
		t.Fatalf("%s = %v while every item is refused", paused, v)
	}
	if n := len(stacktest.ReadTopic(t, e.ep.KafkaBrokers, e.dlq)); n != 0 {
		t.Fatalf("%d events dead-lettered during the pause", n)
	}

	// The operator's fix: the role may now create documents and indices.
	if err := es.SetRoles(granted); err != nil {
		t.Fatal(err)
	}
	count := func() int {
		_ = es.AsAdmin(ctx, http.MethodPost, "/"+e.alias+"/_refresh", nil)
		code, b, err := es.Do(ctx, http.MethodGet, "/"+e.alias+"/_count", es.Admin, es.AdminPassword, nil)
		if err != nil || code != http.StatusOK {
			return -1
		}
		var r struct{ Count int }
		_ = json.Unmarshal(b, &r)
		return r.Count
	}
	stacktest.Eventually(t, 2*time.Minute, "everything written after the grant", func() error {
		if n := count(); n != len(evs) {
			return fmt.Errorf("%d of %d events in Elasticsearch", n, len(evs))
		}
		if v := metricValue(t, addr, paused); v != 0 {
			return fmt.Errorf("%s = %v", paused, v)
		}
		return nil
	})
	if n := len(stacktest.ReadTopic(t, e.ep.KafkaBrokers, e.dlq)); n != 0 {
		t.Fatalf("%d events dead-lettered", n)
	}
}
