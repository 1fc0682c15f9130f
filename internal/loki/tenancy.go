package loki

import (
	"errors"
	"fmt"
	"strings"

	"github.com/assistlog/assistlog/internal/tenants"
)

// The values of Config.Tenancy.
const (
	TenancySingle    = "single"
	TenancyPerTenant = "per_tenant"
)

// maxOrgIDLength is Loki's limit on a tenant id.
const maxOrgIDLength = 150

// ValidOrgID checks a Loki tenant id the way Loki does (pkg/tenant): at
// most 150 characters of letters, digits and !-_.*'(), not "." or "..".
// "|" is not allowed: it separates the tenants of a multi-tenant query.
func ValidOrgID(id string) error {
	switch {
	case id == "":
		return errors.New("empty Loki tenant id")
	case len(id) > maxOrgIDLength:
		return fmt.Errorf("Loki tenant id %q is over %d characters", id, maxOrgIDLength)
	case id == "." || id == "..":
		return fmt.Errorf("Loki tenant id %q is not allowed", id)
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("!-_.*'()", r)) {
			return fmt.Errorf("Loki tenant id %q has %q (allowed: letters, digits and !-_.*'())", id, r)
		}
	}
	return nil
}

// OrgIDs maps each tenant of the tenants file to its Loki tenant id: its
// loki_tenant, or its name. Two businesses under one id would read each
// other's events, so that is refused.
func OrgIDs(set *tenants.Set) (map[string]string, error) {
	out := map[string]string{}
	owner := map[string]string{}
	var errs []error
	for _, name := range set.Names() {
		t, _ := set.Get(name)
		org := t.LokiTenant
		if org == "" {
			org = name
		}
		if err := ValidOrgID(org); err != nil {
			errs = append(errs, fmt.Errorf("tenants (%s).loki_tenant: %w", name, err))
			continue
		}
		if other, dup := owner[org]; dup {
			errs = append(errs, fmt.Errorf("tenants (%s).loki_tenant: %q is already tenant %s's: each business needs its own", name, org, other))
			continue
		}
		owner[org] = name
		out[name] = org
	}
	return out, errors.Join(errs...)
}

// MultiOrgID is the X-Scope-OrgID of a reader of several Loki tenants at
// once ("a|b|c"; Loki needs querier.multi_tenant_queries_enabled).
func MultiOrgID(orgs []string) string { return strings.Join(orgs, "|") }
