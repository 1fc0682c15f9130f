package loki

import (
	"strings"
	"testing"

	"github.com/assistlog/assistlog/internal/tenants"
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
