// Package access renders who may read and write the events in
// Elasticsearch (docs/access.md): the shipper writes, ops read everything,
// a tenant's auditor reads that tenant only.
//
// Elasticsearch's basic licence has no document-level security, so a
// tenant's auditor reads through a filtered alias, <alias>-tenant-<name>
// (a term filter on the tenant field), that every monthly index joins
// (through the index template for new indices, elastic.Writer.Setup for
// existing ones), and holds privileges on that alias only. Only
// search-type actions are granted on it: a GET by id or _mget through an
// alias ignores the alias's filter and would show another tenant's
// document. The review labels' index (audit review import) carries the
// same per-tenant filtered aliases, <reviews>-tenant-<name>, so a tenant's
// auditor reads that tenant's labels and no other's.
package access

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// TenantAlias is the filtered alias tenant's documents are read through.
func TenantAlias(alias, tenant string) string { return alias + "-tenant-" + tenant }

// TenantFilter is the alias filter: the tenant's documents only.
func TenantFilter(tenant string) map[string]any {
	return map[string]any{"term": map[string]any{"tenant": tenant}}
}

// Role names rendered by Roles.
const (
	RoleShipper = "assistlog_shipper"
	RoleOps     = "assistlog_ops"
)

// AuditorRole is the role of tenant's auditors.
func AuditorRole(tenant string) string {
	return "assistlog_auditor_" + strings.ReplaceAll(tenant, "-", "_")
}

// AuditorPrivileges are what an auditor holds on the tenant's alias: a
// search (_count and aggregations are searches) and field capabilities.
// Not read: read includes get and _mget, which ignore the alias filter.
// No point in time either: Elasticsearch authorises a search through a
// PIT against the concrete indices, which an auditor may not read, so
// esread pages such a reader with search_after alone.
var AuditorPrivileges = []string{
	"indices:data/read/search",
	"indices:data/read/field_caps",
}

// Roles renders the file-realm roles.yml for alias and reviews, the
// review labels' index (exact names in a deployment; the local stack
// renders patterns so every test's own alias is covered), and tenants: the
// shipper writes, ops read everything, each tenant's auditor searches its
// own events alias and its own reviews alias only. The same bodies, as
// JSON, go to PUT /_security/role/<name> on a cluster with the native
// realm.
func Roles(alias, reviews string, tenants []string) (string, error) {
	for _, n := range []struct{ what, v string }{{"alias", alias}, {"reviews index", reviews}} {
		if n.v == "" || strings.ToLower(n.v) != n.v || strings.ContainsAny(n.v, " ,/\\?\"<>|#") {
			return "", fmt.Errorf("roles: %s must be a lower-case index name or pattern, got %q", n.what, n.v)
		}
	}
	if len(tenants) == 0 {
		return "", errors.New("roles: at least one tenant is required")
	}
	ts := append([]string(nil), tenants...)
	sort.Strings(ts)
	var b strings.Builder
	fmt.Fprintf(&b, `# Rendered by assistlog for the alias %[1]q and the tenants file (docs/access.md).
# The shipper: installs the index template, creates the monthly indices, writes and
# updates events, adds the tenant aliases, refreshes and searches (a conversation's
# late CRM id). It may not delete.
%[2]s:
  cluster: [monitor, manage_index_templates]
  indices:
    - names: [%[1]q, %[3]q]
      privileges: [create_doc, create_index, index, view_index_metadata, "indices:admin/aliases", "indices:admin/refresh*", "indices:data/read/search"]
# Ops: read everything, every tenant (events and review labels), and watch the cluster.
%[4]s:
  cluster: [monitor]
  indices:
    - names: [%[1]q, %[3]q, %[5]q, %[6]q]
      privileges: [read, view_index_metadata, monitor]
`, alias, RoleShipper, alias+"-*", RoleOps, reviews, reviews+"-*")
	for _, t := range ts {
		fmt.Fprintf(&b, `# The auditors of %[1]s: search %[1]s's filtered aliases only, of the events and of the
# review labels (no get by id: it ignores the filter).
%[2]s:
  indices:
    - names: [%[3]q, %[4]q]
      privileges: [%[5]s]
`, t, AuditorRole(t), TenantAlias(alias, t), TenantAlias(reviews, t), quoteAll(AuditorPrivileges))
	}
	return b.String(), nil
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}
