package stack

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// esUser is the unprivileged account Elasticsearch runs as when the stack is
// started by root (Elasticsearch refuses to run as root).
const esUser = "assistlog-es"

func elasticsearchComponent() *component {
	return &component{
		name:         "elasticsearch",
		version:      Versions.Elasticsearch,
		readyTimeout: 180 * time.Second,
		stopGrace:    30 * time.Second,
		endpoint:     func(l Layout) string { return l.Endpoints().ElasticsearchURL },
		install: func(ctx context.Context, in installer) error {
			// The integ-test zip is the only Elasticsearch distribution on
			// Maven Central: no bundled JDK and only a few modules (see README).
			return in.mavenZip(ctx, "elasticsearch", "org.elasticsearch.distribution.integ-test-zip:elasticsearch:"+Versions.Elasticsearch+":zip", in.layout.esZip())
		},
		prepare: func(ctx context.Context, s *Stack) error {
			dir := s.layout.componentDir("elasticsearch")
			home, err := unpackHome(s.layout.esZip(), dir, Versions.Elasticsearch)
			if err != nil {
				return err
			}
			conf := fmt.Sprintf(`# Written by assistlog's stack: one node on loopback, security off.
cluster.name: assistlog
node.name: assistlog-1
network.host: 127.0.0.1
http.port: %d
transport.port: %d
discovery.type: single-node
path.data: %s
path.logs: %s
xpack.security.enabled: false
# A test stack must not turn indices read-only because the disk is fuller than 90%%.
cluster.routing.allocation.disk.threshold_enabled: false
# Tests clean up with wildcards.
action.destructive_requires_name: false
`, s.layout.Ports.Elasticsearch, s.layout.Ports.ESTransport, filepath.Join(dir, "data"), filepath.Join(dir, "logs"))
			if err := writeFileAtomic(filepath.Join(home, "config", "elasticsearch.yml"), []byte(conf), 0o644); err != nil {
				return err
			}
			return handToESUser(ctx, "elasticsearch", dir)
		},
		command: func(s *Stack) (*exec.Cmd, error) {
			dir := s.layout.componentDir("elasticsearch")
			home := filepath.Join(dir, "home")
			cmd := exec.Command(filepath.Join(home, "bin", "elasticsearch"))
			cmd.Dir = dir
			cmd.Env = append(os.Environ(),
				"ES_JAVA_HOME="+javaHome(),
				"ES_JAVA_OPTS=-Xms512m -Xmx512m",
				"ES_PATH_CONF="+filepath.Join(home, "config"),
				"ES_TMPDIR="+filepath.Join(dir, "tmp"),
				"HOME="+dir,
			)
			return cmd, runAsESUser(cmd)
		},
		ready: func(ctx context.Context, s *Stack) error {
			// GET / lives in the rest-root module, which the integ-test zip
			// lacks; cluster health is in the server itself.
			return httpReady(ctx, s.layout.Endpoints().ElasticsearchURL+"/_cluster/health?wait_for_status=yellow&timeout=1s")
		},
	}
}

// handToESUser gives dir, as root, to the unprivileged user the search
// servers run as (they refuse to run as root) and checks that the user can
// reach it.
func handToESUser(ctx context.Context, server, dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	uid, gid, err := runAsES(ctx)
	if err != nil {
		return err
	}
	if err := chownTree(dir, uid, gid); err != nil {
		return fmt.Errorf("chown %s to %s: %w", dir, esUser, err)
	}
	// Every directory above must be traversable by that user.
	if err := checkTraversable(dir); err != nil {
		return fmt.Errorf("%s runs as %s and %w; set %s to a directory outside a private home", server, esUser, err, EnvDir)
	}
	return nil
}

// runAsESUser makes cmd run as that user when the stack runs as root.
func runAsESUser(cmd *exec.Cmd) error {
	if os.Geteuid() != 0 {
		return nil
	}
	uid, gid, err := runAsES(context.Background())
	if err != nil {
		return err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	return nil
}

// runAsES makes sure the unprivileged user exists and returns its ids.
func runAsES(ctx context.Context) (uid, gid int, err error) {
	if err := ensureESUser(ctx); err != nil {
		return 0, 0, err
	}
	u, err := user.Lookup(esUser)
	if err != nil {
		return 0, 0, err
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid, nil
}

func ensureESUser(ctx context.Context) error {
	if _, err := user.Lookup(esUser); err == nil {
		return nil
	}
	out, err := exec.CommandContext(ctx, "useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", esUser).CombinedOutput()
	if err != nil {
		return fmt.Errorf("useradd %s: %w: %s", esUser, err, out)
	}
	return nil
}

func chownTree(dir string, uid, gid int) error {
	return filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, gid)
	})
}

// checkTraversable makes sure "other" may enter every parent of dir.
func checkTraversable(dir string) error {
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("cannot enter %s (mode %v)", d, fi.Mode().Perm())
		}
		if d == "/" || d == filepath.Dir(d) {
			return nil
		}
	}
}

// httpReady is a readiness probe: a 200 answer means ready.
func httpReady(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
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
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}
