package helm_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"sigs.k8s.io/yaml"

	"github.com/assistlog/assistlog/stack"
)

// docker-compose.yml lives at the top of the repo; this package is helm/.
const (
	repoRoot   = ".."
	composeYML = "../docker-compose.yml"
	envExample = "../docs/compose/compose.env.example"
)

// loadCompose loads docker-compose.yml the way `docker compose --env-file
// ENV --profile '*'` does (interpolation, the compose schema, consistency:
// every depends_on, volume and config named exists), with only ENV's
// variables (none of this process's environment).
func loadCompose(t *testing.T, env map[string]string) (*types.Project, error) {
	t.Helper()
	var envList []string
	for k, v := range env {
		envList = append(envList, k+"="+v)
	}
	opts, err := cli.NewProjectOptions([]string{composeYML},
		cli.WithWorkingDirectory(repoRoot),
		cli.WithEnv(envList),
		cli.WithProfiles([]string{"*"}),
		cli.WithConsistency(true),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		t.Fatal(err)
	}
	return opts.LoadProject(context.Background())
}

func exampleEnv(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(envExample)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			t.Fatalf("%s: %q is not NAME=value", envExample, l)
		}
		env[k] = v
	}
	return env
}

func TestComposeLoads(t *testing.T) {
	p, err := loadCompose(t, exampleEnv(t))
	if err != nil {
		t.Fatalf("docker-compose.yml with %s: %v", envExample, err)
	}
	want := []string{"kafka", "kafka-init", "elasticsearch", "kibana", "kibana-import", "loki", "prometheus",
		"alertmanager", "grafana", "collector", "shipper", "gen", "bitrix24-fake"}
	for _, s := range want {
		if _, ok := p.Services[s]; !ok {
			t.Errorf("no service %s", s)
		}
	}
	for _, s := range []string{"gen", "bitrix24-fake"} {
		if svc, ok := p.Services[s]; ok && !reflectContains(svc.Profiles, "demo") {
			t.Errorf("%s is not in the demo profile", s)
		}
	}
}

func reflectContains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// The required secrets are ${VAR:?}: without them compose refuses to start,
// naming the variable.
func TestComposeRequiresTheSecrets(t *testing.T) {
	for _, v := range []string{"ASSISTLOG_PII_SECRET", "GRAFANA_ADMIN_PASSWORD"} {
		env := exampleEnv(t)
		delete(env, v)
		_, err := loadCompose(t, env)
		if err == nil || !strings.Contains(err.Error(), v) {
			t.Errorf("without %s: %v; want an error naming it", v, err)
		}
	}
}

func TestComposeInvariants(t *testing.T) {
	p, err := loadCompose(t, exampleEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	root, _ := filepath.Abs(repoRoot)
	pinned := regexp.MustCompile(`^[a-z0-9./-]+(:[0-9]+)?/?[a-z0-9./_-]*:[A-Za-z0-9._-]+$`)
	hostPorts := map[string]string{}
	for name, s := range p.Services {
		// Pinned image tags.
		if !pinned.MatchString(s.Image) || strings.HasSuffix(s.Image, ":latest") {
			t.Errorf("%s: image %q has no pinned tag", name, s.Image)
		}
		// Long-running services have a health check; one-shot jobs
		// (restart "no") are waited on with service_completed_successfully.
		oneShot := s.Restart == "no"
		if !oneShot && (s.HealthCheck == nil || s.HealthCheck.Disable || len(s.HealthCheck.Test) < 2) {
			t.Errorf("%s: no health check", name)
		}
		// assistlog's own images have no shell: the health check runs the
		// program's health subcommand at the path the images put it
		// (internal/images: /usr/local/bin/NAME).
		if repo, ok := strings.CutPrefix(s.Image, "ghcr.io/assistlog/"); ok && s.HealthCheck != nil {
			prog, _, _ := strings.Cut(repo, ":")
			if tc := s.HealthCheck.Test; len(tc) < 3 || tc[0] != "CMD" || tc[1] != "/usr/local/bin/"+prog || tc[2] != "health" {
				t.Errorf("%s: health check %q is not [CMD /usr/local/bin/%s health …] (the image's binary)", name, tc, prog)
			}
		}
		for dep, d := range s.DependsOn {
			target := p.Services[dep]
			switch d.Condition {
			case types.ServiceConditionHealthy:
				if target.HealthCheck == nil || target.HealthCheck.Disable || len(target.HealthCheck.Test) < 2 {
					t.Errorf("%s waits for %s to be healthy, which has no health check", name, dep)
				}
			case types.ServiceConditionCompletedSuccessfully:
				if target.Restart != "no" {
					t.Errorf("%s waits for %s to complete, which restarts", name, dep)
				}
			default:
				t.Errorf("%s depends on %s with condition %q; want service_healthy or service_completed_successfully", name, dep, d.Condition)
			}
		}
		// Host ports do not clash.
		for _, port := range s.Ports {
			if port.Published == "" {
				continue
			}
			key := port.HostIP + ":" + port.Published + "/" + port.Protocol
			if other, ok := hostPorts[key]; ok {
				t.Errorf("%s and %s both publish %s", name, other, key)
			}
			hostPorts[key] = name
			if port.HostIP != "127.0.0.1" {
				t.Errorf("%s publishes %s on %q; want 127.0.0.1 only", name, port.Published, port.HostIP)
			}
		}
		// Bind mounts are the repo's own files (the demo's dialogue data
		// and a source checkout for the generator excepted).
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			if name == "gen" && (v.Target == "/data" || v.Target == "/src") {
				continue
			}
			rel, err := filepath.Rel(root, v.Source)
			if err != nil || strings.HasPrefix(rel, "..") {
				t.Errorf("%s: bind mount %s is outside the repo", name, v.Source)
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("%s: bind mount %s: %v", name, rel, err)
			}
			if !v.ReadOnly {
				t.Errorf("%s: repo file %s mounted writable", name, rel)
			}
			if out, err := exec.Command("git", "-C", root, "ls-files", "--error-unmatch", rel).CombinedOutput(); err != nil {
				t.Errorf("%s: %s is not a file of the repo: %s", name, rel, out)
			}
		}
	}

	// The ops files mounted are the repo's: every dashboard, both rule
	// files and the Alertmanager routing.
	mounted := map[string]bool{}
	for _, s := range p.Services {
		for _, v := range s.Volumes {
			if v.Type == types.VolumeTypeBind {
				rel, _ := filepath.Rel(root, v.Source)
				mounted[filepath.ToSlash(rel)] = true
			}
		}
	}
	wantMounted, _ := filepath.Glob(filepath.Join(repoRoot, "dashboards/grafana/*.json"))
	wantMounted = append(wantMounted, "../dashboards/grafana/provisioning/dashboards/assistlog.yaml",
		"../dashboards/kibana/assistlog.ndjson", "../alerts/loki/assistlog.rules.yaml",
		"../alerts/prometheus/pipeline.rules.yaml", "../alerts/alertmanager/alertmanager.yml",
		"../alerts/alertmanager/templates")
	for _, f := range wantMounted {
		rel, _ := filepath.Rel(repoRoot, f)
		if !mounted[filepath.ToSlash(rel)] {
			t.Errorf("%s is not mounted by any service", rel)
		}
	}
}

// Every credential file alertmanager.yml reads (*_file) is a compose
// secret at that path.
func TestComposeAlertmanagerSecrets(t *testing.T) {
	p, err := loadCompose(t, exampleEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("../alerts/alertmanager/alertmanager.yml")
	if err != nil {
		t.Fatal(err)
	}
	targets := map[string]bool{}
	for _, s := range p.Services["alertmanager"].Secrets {
		if _, ok := p.Secrets[s.Source]; !ok {
			t.Errorf("alertmanager: secret %s is not defined", s.Source)
		}
		targets[s.Target] = true
	}
	files := regexp.MustCompile(`_file:\s*(\S+)`).FindAllStringSubmatch(string(b), -1)
	if len(files) == 0 {
		t.Fatal("alertmanager.yml names no *_file: the test reads the wrong file")
	}
	for _, m := range files {
		if !targets[m[1]] {
			t.Errorf("alertmanager.yml reads %s; no compose secret is mounted there", m[1])
		}
	}
}

// Grafana's data sources in compose are the repo's file with this
// network's URLs: everything else (names, the uids the dashboards use,
// settings) agrees.
func TestComposeGrafanaDatasourcesAreTheRepos(t *testing.T) {
	p, err := loadCompose(t, exampleEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	type ds struct {
		APIVersion  int              `json:"apiVersion"`
		Datasources []map[string]any `json:"datasources"`
	}
	var got, want ds
	if err := yaml.Unmarshal([]byte(p.Configs["grafana-datasources"].Content), &got); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile("../dashboards/grafana/provisioning/datasources/assistlog.yaml")
	if err := yaml.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	for _, d := range append(got.Datasources, want.Datasources...) {
		delete(d, "url")
	}
	gj, _ := yaml.Marshal(got)
	wj, _ := yaml.Marshal(want)
	if string(gj) != string(wj) {
		t.Errorf("compose's data sources differ from the repo's beyond the URLs:\ncompose:\n%s\nrepo:\n%s", gj, wj)
	}
}

// The inline server configurations are checked by the servers' own tools,
// of the versions the stack pins (stack/layout.go), from the stack's cache:
// `loki -verify-config` and `promtool check config`. Without them (no stack
// install yet) the test skips, except under make test, which installs them.
func TestComposeServerConfigsCheck(t *testing.T) {
	l, err := stack.LayoutFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	p, err := loadCompose(t, exampleEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	loki := filepath.Join(l.CacheDir, "bin", "loki-"+stack.Versions.Loki)
	promtool := os.Getenv("ASSISTLOG_PROMTOOL")
	if promtool == "" {
		promtool = filepath.Join(l.CacheDir, "bin", "prometheus-"+stack.Versions.Prometheus, "promtool")
	}
	for _, c := range []struct {
		config string
		cmd    func(file string) []string
	}{
		{"loki", func(f string) []string { return []string{loki, "-verify-config", "-config.file=" + f} }},
		{"prometheus", func(f string) []string { return []string{promtool, "check", "config", "--syntax-only", f} }},
	} {
		f := filepath.Join(t.TempDir(), c.config+".yaml")
		if err := os.WriteFile(f, []byte(p.Configs[c.config].Content), 0o644); err != nil {
			t.Fatal(err)
		}
		args := c.cmd(f)
		if _, err := os.Stat(args[0]); err != nil {
			if os.Getenv("ASSISTLOG_INTEGRATION") != "" {
				t.Fatalf("%s: %v (make test installs it with stack up)", args[0], err)
			}
			t.Skipf("%s not installed (go run ./stack/cmd/stack up installs it)", args[0])
		}
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Errorf("%s refused compose's %s config: %v\n%s", filepath.Base(args[0]), c.config, err, out)
		}
	}
}
