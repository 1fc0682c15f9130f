package stack

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/assistlog/assistlog/internal/certs"
)

// SecuredElasticsearch is a second, short-lived Elasticsearch node with
// security on, for tests of what a deployment with users and privileges
// does (a user that may not write, then is granted the privilege). It runs
// the same distribution the stack extracted, from its own config and data
// directories, with file-realm users and file-based roles: the native realm
// and the role API need the .security index, whose mappings use analysis
// filters this distribution lacks (analysis-common).
type SecuredElasticsearch struct {
	URL string
	// Admin is a superuser's name and password.
	Admin, AdminPassword string
	dir                  string
	conf                 string
	uid, gid             int
	hc                   *http.Client
	proc                 process
	pid                  int
}

// SecuredElasticsearchConfig names the node and its users.
type SecuredElasticsearchConfig struct {
	// Name keeps two nodes apart (a directory under the stack directory).
	Name string
	// HTTPPort and TransportPort must be free.
	HTTPPort, TransportPort int
	// Users are file-realm users: name → password, and name → roles. The
	// superuser "assistlog-admin" is added.
	Users     map[string]string
	UserRoles map[string][]string
	// Roles is the roles.yml the node starts with (SetRoles changes it).
	Roles string
	// TLS turns HTTPS on with a certificate from a private CA (written
	// under the node's config directory; CAFile names it).
	TLS bool
}

// StartSecuredElasticsearch starts the node and waits until the admin can
// read cluster health. The stack must have been brought up once (it
// extracts the distribution).
func StartSecuredElasticsearch(ctx context.Context, cfg SecuredElasticsearchConfig) (*SecuredElasticsearch, error) {
	l, err := LayoutFromEnv()
	if err != nil {
		return nil, err
	}
	home := filepath.Join(l.componentDir("elasticsearch"), "home")
	if _, err := os.Stat(filepath.Join(home, "bin", "elasticsearch")); err != nil {
		return nil, fmt.Errorf("secured elasticsearch: the distribution is not extracted (run `stack up elasticsearch` first): %w", err)
	}
	name := "es-secured-" + cfg.Name
	dir := l.componentDir(name)
	_ = os.RemoveAll(dir)
	s := &SecuredElasticsearch{Admin: "assistlog-admin",
		AdminPassword: "admin-" + strconv.FormatInt(time.Now().UnixNano(), 36), dir: dir, uid: -1, gid: -1,
		proc: newProcess(l, name)}
	node, err := writeSecuredES(home, dir, cfg, s.Admin, s.AdminPassword)
	if err != nil {
		return nil, err
	}
	s.URL, s.conf, s.hc = node.url, node.conf, node.hc
	cmd := securedESCommand(home, dir, node.conf)
	if os.Geteuid() == 0 {
		u, err := user.Lookup(esUser)
		if err != nil {
			return nil, fmt.Errorf("secured elasticsearch: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := chownTree(dir, uid, gid); err != nil {
			return nil, err
		}
		s.uid, s.gid = uid, gid
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	}
	if s.pid, err = s.proc.start(cmd); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		code, _, err := s.Do(ctx, http.MethodGet, "/_cluster/health?wait_for_status=yellow&timeout=1s", s.Admin, s.AdminPassword, nil)
		if err == nil && code == http.StatusOK {
			return s, nil
		}
		if !alive(s.pid) || time.Now().After(deadline) || ctx.Err() != nil {
			s.Stop()
			return nil, fmt.Errorf("secured elasticsearch did not start (last: %d %v); log:\n%s", code, err, tailFile(s.proc.logPath, 30))
		}
		time.Sleep(time.Second)
	}
}

// securedNode is what writeSecuredES wrote: the config directory, the
// URL and a client that trusts the node's CA (when TLS is on).
type securedNode struct {
	conf, url string
	certs     certs.Files
	hc        *http.Client
}

// writeSecuredES writes a secured node's config directory under dir, for
// the distribution at home: elasticsearch.yml, the file realm's users and
// users_roles (admin is a superuser), roles.yml and, with cfg.TLS, the
// HTTP layer's certificate from a private CA (kept when already there, so
// a restart does not invalidate the CA file clients hold).
func writeSecuredES(home, dir string, cfg SecuredElasticsearchConfig, admin, adminPassword string) (securedNode, error) {
	n := securedNode{conf: filepath.Join(dir, "config"), url: fmt.Sprintf("http://127.0.0.1:%d", cfg.HTTPPort), hc: http.DefaultClient}
	for _, d := range []string{n.conf, filepath.Join(dir, "data"), filepath.Join(dir, "logs"), filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return n, err
		}
	}
	for _, f := range []string{"jvm.options", "log4j2.properties", "role_mapping.yml"} {
		b, err := os.ReadFile(filepath.Join(home, "config", f))
		if err != nil {
			return n, fmt.Errorf("secured elasticsearch: %w", err)
		}
		if err := os.WriteFile(filepath.Join(n.conf, f), b, 0o644); err != nil {
			return n, err
		}
	}
	users := map[string]string{admin: adminPassword}
	roles := map[string][]string{"superuser": {admin}}
	for u, pw := range cfg.Users {
		users[u] = pw
	}
	for u, rs := range cfg.UserRoles {
		for _, r := range rs {
			roles[r] = append(roles[r], u)
		}
	}
	var ub, rb strings.Builder
	for _, u := range sortedKeys(users) {
		h, err := bcrypt.GenerateFromPassword([]byte(users[u]), bcrypt.MinCost)
		if err != nil {
			return n, err
		}
		fmt.Fprintf(&ub, "%s:%s\n", u, h)
	}
	for _, r := range sortedKeys(roles) {
		us := append([]string(nil), roles[r]...)
		sort.Strings(us)
		fmt.Fprintf(&rb, "%s:%s\n", r, strings.Join(us, ","))
	}
	httpTLS := "xpack.security.http.ssl.enabled: false"
	if cfg.TLS {
		var err error
		if n.certs, err = nodeCertificate(filepath.Join(n.conf, "certs"), cfg.Name); err != nil {
			return n, err
		}
		httpTLS = fmt.Sprintf(`xpack.security.http.ssl.enabled: true
xpack.security.http.ssl.certificate: %s
xpack.security.http.ssl.key: %s
xpack.security.http.ssl.certificate_authorities: [%q]`, n.certs.Cert, n.certs.Key, n.certs.CA)
		n.url = fmt.Sprintf("https://127.0.0.1:%d", cfg.HTTPPort)
		if n.hc, err = caClient(n.certs.CA); err != nil {
			return n, err
		}
	}
	yml := fmt.Sprintf(`# Written by assistlog's stack: one node, security on.
cluster.name: assistlog-secured-%[1]s
node.name: %[1]s
network.host: 127.0.0.1
http.port: %[2]d
transport.port: %[3]d
discovery.type: single-node
path.data: %[4]s/data
path.logs: %[4]s/logs
xpack.security.enabled: true
%[5]s
xpack.security.transport.ssl.enabled: false
xpack.security.authc.realms.file.file1.order: 0
# roles.yml is read again within seconds of a change (SetRoles).
resource.reload.interval.high: 1s
cluster.routing.allocation.disk.threshold_enabled: false
action.destructive_requires_name: false
`, cfg.Name, cfg.HTTPPort, cfg.TransportPort, dir, httpTLS)
	for f, b := range map[string]string{"elasticsearch.yml": yml, "users": ub.String(), "users_roles": rb.String(), "roles.yml": cfg.Roles} {
		if err := writeFileAtomic(filepath.Join(n.conf, f), []byte(b), 0o644); err != nil {
			return n, err
		}
	}
	return n, nil
}

// securedESCommand runs the distribution at home with the config in conf.
func securedESCommand(home, dir, conf string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(home, "bin", "elasticsearch"))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "ES_JAVA_HOME="+javaHome(), "ES_JAVA_OPTS=-Xms256m -Xmx256m",
		"ES_PATH_CONF="+conf, "ES_TMPDIR="+filepath.Join(dir, "tmp"), "HOME="+dir)
	return cmd
}

// nodeCertificate makes (or keeps) a private CA and the node's HTTP
// certificate for 127.0.0.1 and localhost in dir.
func nodeCertificate(dir, name string) (certs.Files, error) {
	f := certs.Files{CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, "node.pem"), Key: filepath.Join(dir, "node-key.pem")}
	if exists(f.CA) && exists(f.Cert) && exists(f.Key) {
		return f, nil
	}
	ca, err := certs.NewCA("assistlog stack CA ("+name+")", 5*365*24*time.Hour)
	if err != nil {
		return f, err
	}
	pair, err := ca.Server(name, 5*365*24*time.Hour, "127.0.0.1", "localhost")
	if err != nil {
		return f, err
	}
	return ca.WriteFiles(dir, "node", pair)
}

// caClient is an HTTP client that trusts only the CA in caFile.
func caClient(caFile string) (*http.Client, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate", caFile)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: tr}, nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// SetRoles replaces roles.yml, as an operator granting or revoking a
// privilege does; the node reloads it within a few seconds.
func (s *SecuredElasticsearch) SetRoles(roles string) error {
	path := filepath.Join(s.conf, "roles.yml")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(roles), 0o644); err != nil {
		return err
	}
	if s.uid >= 0 {
		if err := os.Chown(tmp, s.uid, s.gid); err != nil {
			return err
		}
	}
	return os.Rename(tmp, path)
}

// Do sends one request as user and returns the status and body.
func (s *SecuredElasticsearch) Do(ctx context.Context, method, path, user, password string, body []byte) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, s.URL+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.SetBasicAuth(user, password)
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, err = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.Bytes(), err
}

// AsAdmin runs one request as the superuser and fails unless it succeeded.
func (s *SecuredElasticsearch) AsAdmin(ctx context.Context, method, path string, body []byte) error {
	code, b, err := s.Do(ctx, method, path, s.Admin, s.AdminPassword, body)
	if err != nil {
		return err
	}
	if code >= 300 {
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, code, b)
	}
	return nil
}

// Stop kills the node and removes its directory.
func (s *SecuredElasticsearch) Stop() {
	if _, err := s.proc.stop(20 * time.Second); err != nil && !errors.Is(err, os.ErrNotExist) {
		_ = syscall.Kill(-s.pid, syscall.SIGKILL)
	}
	_ = os.RemoveAll(s.dir)
}
