package stack

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// opensearchComponent runs OpenSearch beside Elasticsearch, on its own
// ports, as the second store the shipper and audit are tested against
// (issue 16: the managed search store a business in Russia can rent is
// OpenSearch). Like Elasticsearch it comes as the integ-test zip from Maven
// Central (Apache-2.0, only the transport-netty4 module: no security, no
// ISM) and runs on the machine's Java as the same unprivileged user.
func opensearchComponent() *component {
	return &component{
		name:         "opensearch",
		version:      Versions.OpenSearch,
		readyTimeout: 180 * time.Second,
		stopGrace:    30 * time.Second,
		endpoint:     func(l Layout) string { return l.Endpoints().OpenSearchURL },
		install: func(ctx context.Context, in installer) error {
			return in.mavenZip(ctx, "opensearch", "org.opensearch.distribution.integ-test-zip:opensearch:"+Versions.OpenSearch+":zip", in.layout.osZip())
		},
		prepare: func(ctx context.Context, s *Stack) error {
			dir := s.layout.componentDir("opensearch")
			home, err := unpackHome(s.layout.osZip(), dir, Versions.OpenSearch)
			if err != nil {
				return err
			}
			conf := fmt.Sprintf(`# Written by assistlog's stack: one node on loopback (the integ-test zip has no security plugin).
cluster.name: assistlog-os
node.name: assistlog-os-1
network.host: 127.0.0.1
http.port: %d
transport.port: %d
discovery.type: single-node
path.data: %s
path.logs: %s
cluster.routing.allocation.disk.threshold_enabled: false
action.destructive_requires_name: false
`, s.layout.Ports.OpenSearch, s.layout.Ports.OSTransport, filepath.Join(dir, "data"), filepath.Join(dir, "logs"))
			if err := writeFileAtomic(filepath.Join(home, "config", "opensearch.yml"), []byte(conf), 0o644); err != nil {
				return err
			}
			return handToESUser(ctx, "opensearch", dir)
		},
		command: func(s *Stack) (*exec.Cmd, error) {
			dir := s.layout.componentDir("opensearch")
			home := filepath.Join(dir, "home")
			cmd := exec.Command(filepath.Join(home, "bin", "opensearch"))
			cmd.Dir = dir
			cmd.Env = append(os.Environ(),
				"OPENSEARCH_JAVA_HOME="+javaHome(),
				"OPENSEARCH_JAVA_OPTS=-Xms512m -Xmx512m",
				"OPENSEARCH_PATH_CONF="+filepath.Join(home, "config"),
				"OPENSEARCH_TMPDIR="+filepath.Join(dir, "tmp"),
				"HOME="+dir,
			)
			return cmd, runAsESUser(cmd)
		},
		ready: func(ctx context.Context, s *Stack) error {
			return httpReady(ctx, s.layout.Endpoints().OpenSearchURL+"/_cluster/health?wait_for_status=yellow&timeout=1s")
		},
	}
}

func (l Layout) osZip() string {
	return filepath.Join(l.CacheDir, "opensearch-"+Versions.OpenSearch+".zip")
}
