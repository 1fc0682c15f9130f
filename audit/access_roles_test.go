package main

import (
	"slices"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/assistlog/assistlog/demo"
)

// TestAccessRoles: `audit access roles` prints a roles.yml with the
// shipper's, ops' and one auditor role per tenant of the tenants file, each
// auditor holding search-type privileges on its own filtered alias only
// (never read, which includes get by id), and the same on its filtered
// alias of the review labels' index. The stack's secured node runs
// the same renderer's output (TestTenantAuditorReadsOnlyItsTenant).
func TestAccessRoles(t *testing.T) {
	cfg := writeConfig(t, "http://127.0.0.1:1", "events-x", "")
	out, stderr, err := runAudit(t, "access", "roles", "--config", cfg)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	var roles map[string]struct {
		Cluster []string
		Indices []struct {
			Names      []string
			Privileges []string
		}
	}
	if err := yaml.Unmarshal([]byte(out), &roles); err != nil {
		t.Fatalf("not YAML: %v\n%s", err, out)
	}
	ts, err := demo.Tenants()
	if err != nil {
		t.Fatal(err)
	}
	if len(roles) != len(ts.Names())+2 {
		t.Errorf("%d roles, want shipper, ops and %d auditors:\n%s", len(roles), len(ts.Names()), out)
	}
	for _, name := range ts.Names() {
		r, ok := roles["assistlog_auditor_"+snake(name)]
		if !ok || len(r.Indices) != 1 || len(r.Cluster) != 0 {
			t.Fatalf("auditor role of %s: %+v", name, r)
		}
		ix := r.Indices[0]
		if !slices.Equal(ix.Names, []string{"events-x-tenant-" + name, "assistant-reviews-tenant-" + name}) {
			t.Errorf("auditors of %s hold %v, want their events alias and their reviews alias only", name, ix.Names)
		}
		for _, p := range ix.Privileges {
			if p != "indices:data/read/search" && p != "indices:data/read/field_caps" {
				t.Errorf("auditors of %s hold %q: only search-type actions ignore no alias filter", name, p)
			}
		}
	}
	for _, p := range roles["assistlog_shipper"].Indices[0].Privileges {
		if p == "delete" || p == "delete_index" || p == "all" || p == "manage" || p == "write" {
			t.Errorf("the shipper holds %q", p)
		}
	}
	if _, stderr, err := runAudit(t, "access"); err == nil {
		t.Errorf("audit access without a subcommand succeeded:\n%s", stderr)
	}
}

func snake(s string) string {
	b := []byte(s)
	for i := range b {
		if b[i] == '-' {
			b[i] = '_'
		}
	}
	return string(b)
}
