package stack

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/assistlog/assistlog/demo"
	"github.com/assistlog/assistlog/internal/access"
)

// The secured Elasticsearch node (issue 12): security on, HTTPS with a
// certificate from the stack's private CA, file-realm users and the roles
// access.Roles renders from the demo's tenants file. The main stack node
// stays plain HTTP without users because thirty test packages read it; the
// security, TLS and per-tenant access tests use this one. Local-only
// credentials: it listens on 127.0.0.1.
const (
	ESSecureName = "elasticsearch-secure"
	// ESSecureAliasPattern is the alias the roles are rendered for: every
	// test writes its own alias under it (assistant-events-<run>).
	ESSecureAliasPattern = "assistant-events*"
	// ESSecureReviewsPattern is the review labels' index the roles are
	// rendered for (audit's reviews_index, assistant-reviews by default).
	ESSecureReviewsPattern = "assistant-reviews*"

	ESSecureAdminUser       = "assistlog-admin"
	ESSecureAdminPassword   = "admin-local-secret"
	ESSecureShipperUser     = "assistlog-shipper"
	ESSecureShipperPassword = "shipper-local-secret"
	ESSecureOpsUser         = "assistlog-ops"
	ESSecureOpsPassword     = "ops-local-secret"
	// Every demo tenant has an auditor, auditor-<tenant>, with this password.
	ESSecureAuditorPassword = "auditor-local-secret"
	// ESSecureDLSProbeUser holds a role with document-level security,
	// which the basic licence ignores: a test proves the refusal
	// (the reason tenants are kept apart by filtered aliases).
	ESSecureDLSProbeUser = "dls-probe"
)

// dlsProbeRole would let its user read one tenant of every index, if the
// licence allowed document-level security.
const dlsProbeRole = `# Not for use: the basic licence ignores document-level security (a test proves it).
assistlog_dls_probe:
  indices:
    - names: ["assistant-events*"]
      privileges: [read]
      query: '{"term": {"tenant": "salon-aurora"}}'
`

// ESSecureAuditor is the user name of tenant's auditor on the secured node.
func ESSecureAuditor(tenant string) string { return "auditor-" + tenant }

// ESSecureEndpoints are the secured node's client settings.
type ESSecureEndpoints struct {
	URL, CAFile                  string
	AdminUser, AdminPassword     string
	ShipperUser, ShipperPassword string
	OpsUser, OpsPassword         string
	AuditorPassword              string
}

// ESSecure returns the secured node's client settings for the layout.
func (l Layout) ESSecure() ESSecureEndpoints {
	return ESSecureEndpoints{URL: "https://127.0.0.1:" + strconv.Itoa(l.Ports.ESSecure),
		CAFile:    filepath.Join(l.componentDir(ESSecureName), "config", "certs", "ca.pem"),
		AdminUser: ESSecureAdminUser, AdminPassword: ESSecureAdminPassword,
		ShipperUser: ESSecureShipperUser, ShipperPassword: ESSecureShipperPassword,
		OpsUser: ESSecureOpsUser, OpsPassword: ESSecureOpsPassword, AuditorPassword: ESSecureAuditorPassword}
}

func (e *ESSecureEndpoints) fields() map[string]*string {
	return map[string]*string{"ASSISTLOG_ES_SECURE_URL": &e.URL, "ASSISTLOG_ES_SECURE_CA_FILE": &e.CAFile,
		"ASSISTLOG_ES_SECURE_ADMIN_USER": &e.AdminUser, "ASSISTLOG_ES_SECURE_ADMIN_PASSWORD": &e.AdminPassword,
		"ASSISTLOG_ES_SECURE_SHIPPER_USER": &e.ShipperUser, "ASSISTLOG_ES_SECURE_SHIPPER_PASSWORD": &e.ShipperPassword,
		"ASSISTLOG_ES_SECURE_OPS_USER": &e.OpsUser, "ASSISTLOG_ES_SECURE_OPS_PASSWORD": &e.OpsPassword,
		"ASSISTLOG_ES_SECURE_AUDITOR_PASSWORD": &e.AuditorPassword}
}

// env lists the settings as `stack env` variables.
func (e ESSecureEndpoints) env() [][2]string {
	f := e.fields()
	out := make([][2]string, 0, len(f))
	for _, k := range sortedKeys(f) {
		out = append(out, [2]string{k, *f[k]})
	}
	return out
}

// fromEnv overrides the settings with what `stack env` wrote.
func (e *ESSecureEndpoints) fromEnv() {
	for name, p := range e.fields() {
		if v := os.Getenv(name); v != "" {
			*p = v
		}
	}
}

// Client is an HTTP client that trusts the node's CA only.
func (e ESSecureEndpoints) Client() (*http.Client, error) { return caClient(e.CAFile) }

// esSecureConfig is the node's users and roles, from the demo's tenants.
func esSecureConfig(l Layout) (SecuredElasticsearchConfig, error) {
	ts, err := demo.Tenants()
	if err != nil {
		return SecuredElasticsearchConfig{}, err
	}
	roles, err := access.Roles(ESSecureAliasPattern, ESSecureReviewsPattern, ts.Names())
	if err != nil {
		return SecuredElasticsearchConfig{}, err
	}
	cfg := SecuredElasticsearchConfig{Name: ESSecureName, HTTPPort: l.Ports.ESSecure, TransportPort: l.Ports.ESSecureTransport, TLS: true,
		Roles: roles + dlsProbeRole,
		Users: map[string]string{ESSecureShipperUser: ESSecureShipperPassword, ESSecureOpsUser: ESSecureOpsPassword,
			ESSecureDLSProbeUser: ESSecureAuditorPassword},
		UserRoles: map[string][]string{ESSecureShipperUser: {access.RoleShipper}, ESSecureOpsUser: {access.RoleOps},
			ESSecureDLSProbeUser: {"assistlog_dls_probe"}}}
	for _, t := range ts.Names() {
		cfg.Users[ESSecureAuditor(t)] = ESSecureAuditorPassword
		cfg.UserRoles[ESSecureAuditor(t)] = []string{access.AuditorRole(t)}
	}
	return cfg, nil
}

func esSecureComponent() *component {
	return &component{
		name:         ESSecureName,
		version:      Versions.Elasticsearch + " (security, TLS)",
		readyTimeout: 180 * time.Second,
		stopGrace:    30 * time.Second,
		endpoint:     func(l Layout) string { return l.ESSecure().URL },
		install: func(ctx context.Context, in installer) error {
			// The same zip as the plain node; its own download directory,
			// so the two installs may run at once.
			return in.mavenZip(ctx, ESSecureName, "org.elasticsearch.distribution.integ-test-zip:elasticsearch:"+Versions.Elasticsearch+":zip", in.layout.esZip())
		},
		prepare: func(ctx context.Context, s *Stack) error {
			dir := s.layout.componentDir(ESSecureName)
			home, err := unpackHome(s.layout.esZip(), dir, Versions.Elasticsearch)
			if err != nil {
				return err
			}
			cfg, err := esSecureConfig(s.layout)
			if err != nil {
				return err
			}
			if _, err := writeSecuredES(home, dir, cfg, ESSecureAdminUser, ESSecureAdminPassword); err != nil {
				return err
			}
			return handToESUser(ctx, ESSecureName, dir)
		},
		command: func(s *Stack) (*exec.Cmd, error) {
			dir := s.layout.componentDir(ESSecureName)
			cmd := securedESCommand(filepath.Join(dir, "home"), dir, filepath.Join(dir, "config"))
			return cmd, runAsESUser(cmd)
		},
		ready: func(ctx context.Context, s *Stack) error {
			e := s.layout.ESSecure()
			return e.ready(ctx)
		},
	}
}

// ready asks cluster health as the admin over HTTPS.
func (e ESSecureEndpoints) ready(ctx context.Context) error {
	hc, err := e.Client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.URL+"/_cluster/health?wait_for_status=yellow&timeout=1s", nil)
	if err != nil {
		return err
	}
	req.SetBasicAuth(e.AdminUser, e.AdminPassword)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s/_cluster/health: %s", e.URL, resp.Status)
	}
	return nil
}

// Ready reports whether the secured node answers its admin over HTTPS.
func (e ESSecureEndpoints) Ready(ctx context.Context) error { return e.ready(ctx) }
