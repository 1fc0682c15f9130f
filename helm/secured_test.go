package helm_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/assistlog/assistlog/internal/certs"
	"github.com/assistlog/assistlog/internal/pii"
	"github.com/assistlog/assistlog/internal/tenants"
)

// cluster is what the Secrets the values name hold, as a cluster would
// have them: Secret name → key → value. Certificates are real (one CA
// signs every pair), so the programs' --check can load them.
type cluster map[string]map[string]string

func securedCluster(t *testing.T) cluster {
	t.Helper()
	ca, err := certs.NewCA("test cluster CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair := func(name string) certs.Pair {
		p, err := ca.Server(name, time.Hour, name)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	kafkaClient, webhook := pair("assistlog-shipper"), pair("events.example.com")
	secret := func(name string) string { return "secret-" + name + "-0123456789abcdef0123456789abcdef" }
	return cluster{
		"assistlog":                 {"pii-hash-secret": secret("pii-hash")},
		"assistlog-crm":             {"webhook-url": "https://example.bitrix24.ru/rest/1/" + secret("crm") + "/"},
		"aurora-webhook":            {"token": secret("aurora-token"), "hmac": secret("aurora-hmac")},
		"smile-webhook":             {"token": secret("smile-token")},
		"assistlog-pii":             {"k2025": secret("pii-k2025"), "k2026": secret("pii-k2026")},
		"assistlog-collector":       {"password": secret("kafka-collector")},
		"assistlog-shipper":         {"password": secret("kafka-shipper")},
		"assistlog-es-shipper":      {"password": secret("es-shipper")},
		"assistlog-es-ops":          {"password": secret("es-ops")},
		"assistlog-cluster-ca-cert": {"ca.crt": string(ca.PEM)},
		"assistlog-shipper-tls":     {"user.crt": string(kafkaClient.CertPEM), "user.key": string(kafkaClient.KeyPEM)},
		"es-es-http-certs-public":   {"ca.crt": string(ca.PEM)},
		"events-tls":                {"tls.crt": string(webhook.CertPEM), "tls.key": string(webhook.KeyPEM)},
		"panel-clients-ca":          {"ca.crt": string(ca.PEM)},
	}
}

// program is one of assistlog's containers as the chart deploys it.
type program struct {
	workload string // e.g. DaemonSet demo-assistlog-collector
	binary   string // collector, shipper or audit
	pod      corev1.PodSpec
	c        corev1.Container
	config   string // the config file's text (from its ConfigMap)
	cm       *corev1.ConfigMap
}

// programs returns the containers of collector, webhook, shipper and the
// audit CronJobs, each with the ConfigMap its config volume mounts.
func programs(t *testing.T, r *rendered) []program {
	t.Helper()
	cms := map[string]*corev1.ConfigMap{}
	for _, d := range r.all("ConfigMap") {
		cm := d.obj.(*corev1.ConfigMap)
		cms[cm.Name] = cm
	}
	var out []program
	add := func(workload string, pod corev1.PodSpec) {
		for _, c := range pod.Containers {
			bin := filepath.Base(strings.SplitN(c.Image, ":", 2)[0])
			if bin != "collector" && bin != "shipper" && bin != "audit" {
				continue
			}
			p := program{workload: workload, binary: bin, pod: pod, c: c}
			for _, v := range pod.Volumes {
				if v.Name == "config" && v.ConfigMap != nil {
					p.cm = cms[v.ConfigMap.Name]
				}
			}
			if p.cm == nil {
				t.Fatalf("%s: no config ConfigMap", workload)
			}
			p.config = p.cm.Data[bin+".yaml"]
			if p.config == "" {
				t.Fatalf("%s: ConfigMap %s has no %s.yaml", workload, p.cm.Name, bin)
			}
			out = append(out, p)
		}
	}
	for _, d := range r.docs {
		switch o := d.obj.(type) {
		case *appsv1.DaemonSet:
			add("DaemonSet "+o.Name, o.Spec.Template.Spec)
		case *appsv1.Deployment:
			add("Deployment "+o.Name, o.Spec.Template.Spec)
		case *batchv1.CronJob:
			add("CronJob "+o.Name, o.Spec.JobTemplate.Spec.Template.Spec)
		}
	}
	return out
}

// env is the program's environment as the kubelet would give it: each
// variable from its secretKeyRef in cl (refs says which), a field
// reference as a pod name, a literal as written.
func (p program) env(t *testing.T, cl cluster) (env map[string]string, refs map[string]corev1.SecretKeySelector) {
	t.Helper()
	env, refs = map[string]string{}, map[string]corev1.SecretKeySelector{}
	for _, e := range p.c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			ref := *e.ValueFrom.SecretKeyRef
			v, ok := cl[ref.Name][ref.Key]
			if !ok {
				t.Fatalf("%s: %s refers to Secret %s key %s, which the test cluster lacks", p.workload, e.Name, ref.Name, ref.Key)
			}
			env[e.Name], refs[e.Name] = v, ref
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil:
			env[e.Name] = "pod-0"
		default:
			env[e.Name] = e.Value
		}
	}
	return env, refs
}

// materialise lays out under root the files the container sees: its
// ConfigMap and Secret volumes at their mount paths (items as the kubelet
// projects them). It returns the config text and args with every mounted
// path moved under root.
func (p program) materialise(t *testing.T, cl cluster, root string) (config string, args []string) {
	t.Helper()
	vols := map[string]corev1.Volume{}
	for _, v := range p.pod.Volumes {
		vols[v.Name] = v
	}
	config, args = p.config, append([]string(nil), p.c.Args...)
	for _, m := range p.c.VolumeMounts {
		v := vols[m.Name]
		files := map[string]string{}
		switch {
		case v.ConfigMap != nil:
			for k, d := range p.cm.Data {
				files[k] = d
			}
		case v.Secret != nil:
			if m.SubPath != "" || !m.ReadOnly {
				t.Errorf("%s: Secret %s mounted with subPath %q, readOnly %v; want the whole volume read-only (a renewed certificate reaches the pod only then)",
					p.workload, v.Secret.SecretName, m.SubPath, m.ReadOnly)
			}
			for _, it := range v.Secret.Items {
				d, ok := cl[v.Secret.SecretName][it.Key]
				if !ok {
					t.Fatalf("%s: volume %s wants Secret %s key %s, which the test cluster lacks", p.workload, m.Name, v.Secret.SecretName, it.Key)
				}
				files[it.Path] = d
			}
		default:
			continue // host directories, the outputs PVC: not read by --check
		}
		dir := filepath.Join(root, m.MountPath)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, d := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(d), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		config = strings.ReplaceAll(config, m.MountPath+"/", dir+"/")
		for i := range args {
			args[i] = strings.ReplaceAll(args[i], m.MountPath+"/", dir+"/")
		}
	}
	return config, args
}

var varRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// Config fields that hold secret material: in a ConfigMap they may only be
// a ${VAR} reference (or empty).
var secretFields = map[string]bool{"password": true, "key": true, "hash_secret": true, "api_key": true,
	"tokens": true, "hmac_secret": true, "webhook_url": true, "access_token": true, "secret": true,
	"secret_token": true, "app_secret": true, "verify_token": true, "bearer_token": true,
	"access_key": true, "secret_key": true}

func checkSecretFields(t *testing.T, where string, v any, path string) {
	t.Helper()
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			if secretFields[k] {
				vals := []any{c}
				if l, ok := c.([]any); ok {
					vals = l
				}
				for _, s := range vals {
					if str, ok := s.(string); !ok || (str != "" && !regexp.MustCompile(`^\$\{[A-Z0-9_]+\}$`).MatchString(str)) {
						t.Errorf("%s: %s.%s is %v; a secret field must be a ${VAR} filled from a Secret", where, path, k, s)
					}
				}
				continue
			}
			checkSecretFields(t, where, c, path+"."+k)
		}
	case []any:
		for i, c := range x {
			checkSecretFields(t, where, c, fmt.Sprintf("%s[%d]", path, i))
		}
	}
}

// TestChartSecuredConfigsLoad: with the PII key ring, Kafka TLS + SCRAM,
// Elasticsearch over HTTPS with users and the webhook's own HTTPS (mutual
// TLS) set, every program's rendered config loads and validates through
// the program itself (collector/shipper --check, audit check) with only
// the environment and files its pod would have: variables from the
// Secrets named, Secret volumes laid out at their mount paths (the
// certificates real, so the programs load them). Each ${VAR} is filled
// from a secretKeyRef, each secret field of a config is a ${VAR}, and no
// Secret value is written in any rendered object.
func TestChartSecuredConfigsLoad(t *testing.T) {
	r, err := render(t, readValues(t, "testdata/all-on.yaml", "testdata/secured.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cl := securedCluster(t)
	for name, m := range r.manifests {
		for sname, keys := range cl {
			for k, v := range keys {
				if strings.Contains(m, strings.TrimSpace(v)) {
					t.Errorf("%s holds the value of Secret %s key %s", name, sname, k)
				}
			}
		}
	}

	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "../collector", "../shipper", "../audit")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	progs := programs(t, r)
	seen := map[string]int{}
	for _, p := range progs {
		seen[p.binary]++
		t.Run(p.workload, func(t *testing.T) {
			var doc map[string]any
			if err := yaml.Unmarshal([]byte(p.config), &doc); err != nil {
				t.Fatalf("config: %v", err)
			}
			checkSecretFields(t, p.workload, doc, "")
			env, refs := p.env(t, cl)
			for _, m := range varRef.FindAllStringSubmatch(p.config, -1) {
				if _, ok := refs[m[1]]; !ok {
					t.Errorf("the config refers to ${%s}, which the pod does not take from a Secret", m[1])
				}
			}
			config, args := p.materialise(t, cl, t.TempDir())
			cfgPath := args[len(args)-1]
			for i, a := range args {
				if a == "--config" {
					cfgPath = args[i+1]
				}
			}
			if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
				t.Fatal(err)
			}
			cmdArgs := []string{"--config", cfgPath, "--check"}
			if p.binary == "audit" {
				cmdArgs = []string{"check", "--config", cfgPath}
			}
			cmd := exec.Command(filepath.Join(bin, p.binary), cmdArgs...)
			cmd.Env = []string{}
			for k, v := range env {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("%s refused its config: %v\n%s\n%s", p.binary, err, out, config)
			}
		})
	}
	if seen["collector"] != 2 || seen["shipper"] != 1 || seen["audit"] < 1 {
		t.Errorf("checked %v; want the collector and webhook, the shipper and the audit CronJobs", seen)
	}
}

// ring is a program's PII key ring as its pod resolves it: each key's id,
// the Secret it comes from, and the current key.
type ring struct {
	keys    []string // "id=secret/key"
	current string
	config  pii.KeysConfig
}

func (p program) ring(t *testing.T, cl cluster) ring {
	t.Helper()
	keys, current := ringVars(t, p.workload, p.config)
	env, refs := p.env(t, cl)
	var rg ring
	for _, k := range keys {
		ref := refs[k.Var]
		rg.keys = append(rg.keys, k.ID+"="+ref.Name+"/"+ref.Key)
		rg.config.Keys = append(rg.config.Keys, pii.KeyConfig{ID: k.ID, Key: env[k.Var]})
	}
	sort.Strings(rg.keys)
	rg.current, rg.config.CurrentKey = current, current
	return rg
}

// ringVar is a key of a config's pii ring: its id and the ${VAR} holding it.
type ringVar struct{ ID, Var string }

// ringVars reads the pii key ring of a program's config text: each key's
// id and variable (a key that is not a ${VAR} fails the test) and the
// current key's id.
func ringVars(t *testing.T, program, config string) ([]ringVar, string) {
	t.Helper()
	var doc struct {
		PII struct {
			Keys       []struct{ ID, Key string } `json:"keys"`
			CurrentKey string                     `json:"current_key"`
		} `json:"pii"`
	}
	if err := yaml.Unmarshal([]byte(config), &doc); err != nil {
		t.Fatal(err)
	}
	var keys []ringVar
	for _, k := range doc.PII.Keys {
		m := varRef.FindStringSubmatch(k.Key)
		if m == nil {
			t.Fatalf("%s: pii key %s is %q, not a ${VAR}", program, k.ID, k.Key)
		}
		keys = append(keys, ringVar{ID: k.ID, Var: m[1]})
	}
	return keys, doc.PII.CurrentKey
}

// TestChartPIIKeysReachCollectorAndShipper: pii.keys gives the collector
// (both the DaemonSet and the webhook) and the shipper the same key ring
// from the same Secrets and the same current key, so a number the
// collector seals is opened by the shipper: sealed with the collector's
// ring as the pods resolve it, opened with the shipper's.
func TestChartPIIKeysReachCollectorAndShipper(t *testing.T) {
	r, err := render(t, readValues(t, "testdata/all-on.yaml", "testdata/secured.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cl := securedCluster(t)
	var shipper *ring
	var collectors []program
	for _, p := range programs(t, r) {
		switch p.binary {
		case "shipper":
			rg := p.ring(t, cl)
			shipper = &rg
		case "collector":
			collectors = append(collectors, p)
		}
	}
	if shipper == nil || len(collectors) != 2 {
		t.Fatalf("shipper %v, %d collectors; want the shipper, the collector and the webhook", shipper != nil, len(collectors))
	}
	want := []string{"k2025=assistlog-pii/k2025", "k2026=assistlog-pii/k2026"}
	if !reflect.DeepEqual(shipper.keys, want) || shipper.current != "k2026" {
		t.Errorf("shipper's ring %v current %q; want %v current k2026", shipper.keys, shipper.current, want)
	}
	open, err := pii.NewRing(shipper.config)
	if err != nil {
		t.Fatalf("shipper's ring: %v", err)
	}
	for _, c := range collectors {
		rg := c.ring(t, cl)
		if !reflect.DeepEqual(rg.keys, shipper.keys) || rg.current != shipper.current {
			t.Errorf("%s: ring %v current %q; the shipper's is %v current %q", c.workload, rg.keys, rg.current, shipper.keys, shipper.current)
			continue
		}
		seal, err := pii.NewRing(rg.config)
		if err != nil {
			t.Fatalf("%s: %v", c.workload, err)
		}
		sealed := seal.SealString(pii.PurposeUserPhone, "+79171234567")
		if got, err := open.OpenString(pii.PurposeUserPhone, sealed); err != nil || got != "+79171234567" {
			t.Errorf("%s sealed %q; the shipper opened %q, %v", c.workload, sealed, got, err)
		}
	}
}

// TestChartTenantAliases: elasticsearch.tenantAliases gives the shipper
// the tenants file audit has (the same audit.tenants), as its
// elasticsearch.tenants_file in its config directory, so every monthly
// index carries one filtered alias per tenant for the tenants' auditors;
// off (the default), the shipper has neither.
func TestChartTenantAliases(t *testing.T) {
	r, err := render(t, readValues(t, "testdata/all-on.yaml", "testdata/secured.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cms := map[string]*corev1.ConfigMap{}
	for _, d := range r.all("ConfigMap") {
		cm := d.obj.(*corev1.ConfigMap)
		cms[strings.TrimPrefix(cm.Name, "demo-assistlog-")] = cm
	}
	shipper, audit := cms["shipper"], cms["audit"]
	if shipper == nil || audit == nil {
		t.Fatalf("ConfigMaps %v; want the shipper's and audit's", cms)
	}
	if shipper.Data["tenants.yaml"] == "" || shipper.Data["tenants.yaml"] != audit.Data["tenants.yaml"] {
		t.Errorf("the shipper's tenants file %q is not audit's %q", shipper.Data["tenants.yaml"], audit.Data["tenants.yaml"])
	}
	set, err := tenants.Parse([]byte(shipper.Data["tenants.yaml"]))
	if err != nil || !reflect.DeepEqual(set.Names(), []string{"dental-smile", "salon-aurora"}) {
		t.Errorf("the shipper's tenants: %v, %v; want audit.tenants", err, set)
	}
	var cfg struct {
		Elasticsearch struct {
			TenantsFile string `json:"tenants_file"`
		} `json:"elasticsearch"`
	}
	if err := yaml.Unmarshal([]byte(shipper.Data["shipper.yaml"]), &cfg); err != nil {
		t.Fatal(err)
	}
	mounted := false
	for _, p := range programs(t, r) {
		if p.binary != "shipper" {
			continue
		}
		for _, m := range p.c.VolumeMounts {
			if m.Name == "config" && cfg.Elasticsearch.TenantsFile == m.MountPath+"/tenants.yaml" {
				mounted = true
			}
		}
	}
	if !mounted {
		t.Errorf("the shipper's elasticsearch.tenants_file %q is not its ConfigMap's tenants.yaml", cfg.Elasticsearch.TenantsFile)
	}

	r, err = render(t, readValues(t, "testdata/all-on.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range r.all("ConfigMap") {
		cm := d.obj.(*corev1.ConfigMap)
		if strings.HasSuffix(cm.Name, "-shipper") && (cm.Data["tenants.yaml"] != "" || strings.Contains(cm.Data["shipper.yaml"], "tenants_file")) {
			t.Errorf("tenantAliases off, yet the shipper has a tenants file:\n%s", cm.Data["shipper.yaml"])
		}
	}
}
