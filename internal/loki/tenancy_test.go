package loki

import (
	"context"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/assistlog/assistlog/internal/proctest"
	"github.com/assistlog/assistlog/internal/stacktest"
	"github.com/assistlog/assistlog/internal/tenants"
	"github.com/assistlog/assistlog/stack"
)

func TestTenancyConfigErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.Tenancy = "per_business" }, `tenancy: must be single or per_tenant, got "per_business"`},
		{func(c *Config) { c.Tenancy, c.TenantID = TenancyPerTenant, "x" }, "tenant_id: must be empty with tenancy per_tenant"},
		{func(c *Config) { c.TenantsFile = "t.yaml" }, "tenants_file: used only with tenancy per_tenant"},
		{func(c *Config) { c.TenantID = "a|b" }, `tenant_id: Loki tenant id "a|b" has '|'`},
	} {
		c := DefaultConfig()
		tc.mod(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want %q", err, tc.want)
		}
	}
	c := DefaultConfig()
	c.Tenancy, c.TenantsFile = TenancyPerTenant, "t.yaml"
	if err := c.Validate(); err != nil {
		t.Errorf("per_tenant with a tenants file: %v", err)
	}
}

// TestOrgIDs: a tenant's Loki tenant is its loki_tenant or its name; an
// id Loki refuses, or one shared by two businesses, is an error naming
// the tenant.
func TestOrgIDs(t *testing.T) {
	set, err := tenants.Parse([]byte("tenants:\n  - {name: salon-a, tz: UTC, loki_tenant: a}\n  - {name: salon-b, tz: UTC}\n"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := OrgIDs(set)
	if err != nil || got["salon-a"] != "a" || got["salon-b"] != "salon-b" || len(got) != 2 {
		t.Fatalf("OrgIDs = %v, %v", got, err)
	}
	for in, want := range map[string]string{
		"tenants:\n  - {name: x, tz: UTC, loki_tenant: 'a|b'}\n":                                     "tenants (x).loki_tenant",
		"tenants:\n  - {name: x, tz: UTC, loki_tenant: ..}\n":                                        "tenants (x).loki_tenant",
		"tenants:\n  - {name: x, tz: UTC, loki_tenant: a}\n  - {name: y, tz: UTC, loki_tenant: a}\n": `tenants (y).loki_tenant: "a" is already tenant x's`,
	} {
		set, err := tenants.Parse([]byte(in))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := OrgIDs(set); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want %q", in, err, want)
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	_, p, _ := net.SplitHostPort(proctest.FreeAddr(t))
	n, _ := strconv.Atoi(p)
	return n
}

// TestPerTenantPush: against a private Loki with auth on, one Push of a
// batch mixing two businesses stores each business's entries under its
// own Loki tenant only, the 413 of a push too large for Loki is split
// within the tenant, an entry without a usable tenant is rejected by
// itself (the rest stored), Stored answers per tenant, and the entries
// counter is labelled by Loki tenant. Before, every entry went under one
// tenant_id (or none: 401 on this Loki, a paused stream).
func TestPerTenantPush(t *testing.T) {
	stacktest.Require(t, stacktest.Loki)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	lk, err := stack.StartLoki(ctx, stack.ExtraLokiConfig{Name: "isolation-client", HTTPPort: freePort(t), GRPCPort: freePort(t), AuthEnabled: true})
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Stop()
	cfg := DefaultConfig()
	cfg.URL, cfg.Tenancy = lk.URL, TenancyPerTenant
	c, reg := newClientWith(t, cfg)

	rnd := rand.New(rand.NewPCG(3, 4))
	now := time.Now()
	var entries []Entry
	want := map[string]int{}
	for i := 0; i < 40; i++ {
		tenant := []string{"salon-x", "salon-y"}[i%2]
		line := fmt.Sprintf("%s line %d", tenant, i)
		if tenant == "salon-x" {
			// salon-x's push alone (20 × 240 KiB snappy cannot shrink) is
			// over the 4 MiB Loki takes: 413, split.
			raw := make([]byte, 180<<10)
			for j := range raw {
				raw[j] = byte(rnd.IntN(256))
			}
			line = base64.StdEncoding.EncodeToString(raw)
		}
		id := fmt.Sprintf("e%d", i)
		entries = append(entries, Entry{Labels: map[string]string{"app": "assistlog-test", "tenant": tenant},
			Time: now.Add(time.Duration(i-40) * time.Second), Line: line, Metadata: map[string]string{"event_id": id}, Ref: id})
		want[tenant]++
	}
	var x []Entry
	for _, e := range entries {
		if e.Labels["tenant"] == "salon-x" {
			x = append(x, e)
		}
	}
	if body, err := encode(x); err != nil || len(body) <= 4<<20 {
		t.Fatalf("salon-x's push is %d bytes (%v): it would not exercise the 413", len(body), err)
	}
	entries = append(entries,
		Entry{Labels: map[string]string{"app": "assistlog-test", "tenant": "a|b"}, Time: now, Line: "bad tenant", Ref: "bad"},
		Entry{Labels: map[string]string{"app": "assistlog-test"}, Time: now, Line: "no tenant", Ref: "none"})
	rej, err := c.Push(ctx, entries)
	if err != nil {
		t.Fatal(err)
	}
	refs := map[any]string{}
	for _, r := range rej {
		refs[r.Entry.Ref] = r.Reason
	}
	if len(rej) != 2 || !strings.Contains(refs["bad"], "has '|'") || !strings.Contains(refs["none"], "empty Loki tenant id") {
		t.Fatalf("rejections = %v", refs)
	}
	count := func(org string) int {
		return stacktest.LokiScalarAs(t, lk.URL, org, `sum(count_over_time({app="assistlog-test"}[1h]))`)
	}
	stacktest.Eventually(t, time.Minute, "each tenant's entries under its Loki tenant", func() error {
		for tenant, n := range want {
			if got := count(tenant); got != n {
				return fmt.Errorf("Loki tenant %s holds %d entries, want %d", tenant, got, n)
			}
		}
		return nil
	})
	if got := stacktest.LokiScalarAs(t, lk.URL, "salon-x", `sum(count_over_time({app="assistlog-test", tenant="salon-y"}[1h]))`); got != 0 {
		t.Errorf("salon-x reads %d of salon-y's entries", got)
	}
	// Flushed chunks, as the shipper asks after a crash.
	resp, err := http.Post(lk.URL+"/flush", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	time.Sleep(3 * time.Second)
	stored, err := c.Stored(ctx, entries, "event_id")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries[:40] {
		if !stored[e.Metadata["event_id"]] {
			t.Errorf("Stored does not find %s of %s", e.Metadata["event_id"], e.Labels["tenant"])
		}
	}
	for tenant, n := range want {
		if v := counterValue(t, reg, "assistlog_loki_entries_total", map[string]string{"outcome": "pushed", "loki_tenant": tenant}); int(v) != n {
			t.Errorf("pushed{loki_tenant=%q} = %v, want %d", tenant, v, n)
		}
	}
}

// counterValue reads one series of a counter vector from the registry.
func counterValue(t *testing.T, reg interface {
	Gather() ([]*dto.MetricFamily, error)
}, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}
