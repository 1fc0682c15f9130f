package stack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/bcrypt"
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
	conf := filepath.Join(dir, "config")
	for _, d := range []string{conf, filepath.Join(dir, "data"), filepath.Join(dir, "logs"), filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	for _, f := range []string{"jvm.options", "log4j2.properties", "role_mapping.yml"} {
		b, err := os.ReadFile(filepath.Join(home, "config", f))
		if err != nil {
			return nil, fmt.Errorf("secured elasticsearch: %w", err)
		}
		if err := os.WriteFile(filepath.Join(conf, f), b, 0o644); err != nil {
			return nil, err
		}
	}
	s := &SecuredElasticsearch{URL: fmt.Sprintf("http://127.0.0.1:%d", cfg.HTTPPort), Admin: "assistlog-admin",
		AdminPassword: "admin-" + strconv.FormatInt(time.Now().UnixNano(), 36), dir: dir, conf: conf, uid: -1, gid: -1,
		proc: newProcess(l, name)}
	users := map[string]string{s.Admin: s.AdminPassword}
	roles := map[string][]string{"superuser": {s.Admin}}
	for u, pw := range cfg.Users {
		users[u] = pw
	}
	for u, rs := range cfg.UserRoles {
		for _, r := range rs {
			roles[r] = append(roles[r], u)
		}
	}
	var ub, rb strings.Builder
	for u, pw := range users {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&ub, "%s:%s\n", u, h)
	}
	for r, us := range roles {
		fmt.Fprintf(&rb, "%s:%s\n", r, strings.Join(us, ","))
	}
	yml := fmt.Sprintf(`# Written by assistlog's stack for a test: one node, security on, no TLS on loopback.
cluster.name: assistlog-secured-%[1]s
node.name: %[1]s
network.host: 127.0.0.1
http.port: %[2]d
transport.port: %[3]d
discovery.type: single-node
path.data: %[4]s/data
path.logs: %[4]s/logs
xpack.security.enabled: true
xpack.security.http.ssl.enabled: false
xpack.security.transport.ssl.enabled: false
xpack.security.authc.realms.file.file1.order: 0
# roles.yml is read again within seconds of a change (SetRoles).
resource.reload.interval.high: 1s
cluster.routing.allocation.disk.threshold_enabled: false
action.destructive_requires_name: false
`, cfg.Name, cfg.HTTPPort, cfg.TransportPort, dir)
	for f, b := range map[string]string{"elasticsearch.yml": yml, "users": ub.String(), "users_roles": rb.String(), "roles.yml": cfg.Roles} {
		if err := os.WriteFile(filepath.Join(conf, f), []byte(b), 0o644); err != nil {
			return nil, err
		}
	}
	cmd := exec.Command(filepath.Join(home, "bin", "elasticsearch"))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "ES_JAVA_HOME="+javaHome(), "ES_JAVA_OPTS=-Xms256m -Xmx256m",
		"ES_PATH_CONF="+conf, "ES_TMPDIR="+filepath.Join(dir, "tmp"), "HOME="+dir)
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
	resp, err := http.DefaultClient.Do(req)
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
