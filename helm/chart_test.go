package helm_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

const chartDir = "assistlog"

// TestMain quiets Helm's loader, which logs every symlink it follows (the
// chart's files/ are symlinks on purpose, see TestChartOpsFilesAreTheRepos).
func TestMain(m *testing.M) {
	log.SetOutput(io.Discard)
	os.Exit(m.Run())
}

// The Kubernetes version Helm renders and lints for; kubernetes-validate
// checks the output against several (kubeVersions).
var kube = chartutil.KubeVersion{Version: "v1.33.0", Major: "1", Minor: "33"}

// rendered is one chart rendering: the manifests by template, and every
// object decoded strictly.
type rendered struct {
	manifests map[string]string // template path → YAML
	docs      []doc
}

type doc struct {
	source string
	raw    []byte // JSON
	kind   string
	obj    any // the typed object (k8s.io/api or a CRD struct below)
}

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	return ch
}

func readValues(t *testing.T, files ...string) map[string]any {
	t.Helper()
	vals := map[string]any{}
	for _, f := range files {
		v, err := chartutil.ReadValuesFile(f)
		if err != nil {
			t.Fatalf("read %s: %v", f, err)
		}
		vals = chartutil.CoalesceTables(v.AsMap(), vals)
	}
	return vals
}

// render renders the chart like `helm template` would: the chart's
// values.yaml under vals, checked against values.schema.json.
func render(t *testing.T, vals map[string]any) (*rendered, error) {
	t.Helper()
	ch := loadChart(t)
	caps := chartutil.DefaultCapabilities.Copy()
	caps.KubeVersion = kube
	rv, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{Name: "demo", Namespace: "assistlog", IsInstall: true}, caps)
	if err != nil {
		return nil, err
	}
	out, err := engine.Render(ch, rv)
	if err != nil {
		return nil, err
	}
	r := &rendered{manifests: out}
	names := make([]string, 0, len(out))
	for n := range out {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if !strings.HasSuffix(n, ".yaml") {
			continue
		}
		for i, part := range regexp.MustCompile(`(?m)^---\s*$`).Split(out[n], -1) {
			if strings.TrimSpace(stripComments(part)) == "" {
				continue
			}
			d, err := decodeStrict([]byte(part))
			if err != nil {
				t.Fatalf("%s document %d: %v\n%s", n, i, err, part)
			}
			d.source = n
			r.docs = append(r.docs, d)
		}
	}
	return r, nil
}

func stripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// Strict decoding: unknown or misspelled fields, duplicate fields and wrong
// types fail, into the k8s.io/api type the apiVersion/kind names.
var strictCodec = kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme.Scheme, scheme.Scheme,
	kjson.SerializerOptions{Yaml: false, Strict: true})

func decodeStrict(y []byte) (doc, error) {
	j, err := yaml.YAMLToJSONStrict(y)
	if err != nil {
		return doc{}, fmt.Errorf("yaml: %w", err)
	}
	var tm struct{ APIVersion, Kind string }
	if err := json.Unmarshal(j, &tm); err != nil {
		return doc{}, err
	}
	d := doc{raw: j, kind: tm.Kind}
	if tm.APIVersion == "monitoring.coreos.com/v1" {
		// No Go types of the Prometheus Operator in this module: the fields
		// the chart uses, declared below from the operator's CRDs, decoded
		// with unknown fields refused.
		var target any
		switch tm.Kind {
		case "PrometheusRule":
			target = &prometheusRule{}
		case "PodMonitor":
			target = &podMonitor{}
		default:
			return d, fmt.Errorf("no schema for %s/%s", tm.APIVersion, tm.Kind)
		}
		dec := json.NewDecoder(bytes.NewReader(j))
		dec.DisallowUnknownFields()
		if err := dec.Decode(target); err != nil {
			return d, fmt.Errorf("strict decode %s: %w", tm.Kind, err)
		}
		d.obj = target
		return d, nil
	}
	obj, _, err := strictCodec.Decode(j, nil, nil)
	if err != nil {
		return d, fmt.Errorf("strict decode %s/%s: %w", tm.APIVersion, tm.Kind, err)
	}
	d.obj = obj
	return d, nil
}

// The Prometheus Operator objects' fields (monitoring.coreos.com/v1) the
// chart may set.
type objectMeta struct {
	Name        string            `json:"name"`
	Namespace   string            `json:"namespace,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type prometheusRule struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Metadata   objectMeta `json:"metadata"`
	Spec       struct {
		Groups []struct {
			Name     string `json:"name"`
			Interval string `json:"interval,omitempty"`
			Rules    []struct {
				Alert         string            `json:"alert,omitempty"`
				Record        string            `json:"record,omitempty"`
				Expr          string            `json:"expr"`
				For           string            `json:"for,omitempty"`
				KeepFiringFor string            `json:"keep_firing_for,omitempty"`
				Labels        map[string]string `json:"labels,omitempty"`
				Annotations   map[string]string `json:"annotations,omitempty"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

type podMonitor struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Metadata   objectMeta `json:"metadata"`
	Spec       struct {
		Selector struct {
			MatchLabels      map[string]string `json:"matchLabels,omitempty"`
			MatchExpressions []struct {
				Key      string   `json:"key"`
				Operator string   `json:"operator"`
				Values   []string `json:"values,omitempty"`
			} `json:"matchExpressions,omitempty"`
		} `json:"selector"`
		PodMetricsEndpoints []struct {
			Port        string `json:"port"`
			Path        string `json:"path,omitempty"`
			Interval    string `json:"interval,omitempty"`
			Relabelings []struct {
				SourceLabels []string `json:"sourceLabels,omitempty"`
				Regex        string   `json:"regex,omitempty"`
				TargetLabel  string   `json:"targetLabel,omitempty"`
				Replacement  string   `json:"replacement,omitempty"`
				Action       string   `json:"action,omitempty"`
			} `json:"relabelings,omitempty"`
		} `json:"podMetricsEndpoints"`
	} `json:"spec"`
}

func (r *rendered) all(kind string) []doc {
	var out []doc
	for _, d := range r.docs {
		if d.kind == kind {
			out = append(out, d)
		}
	}
	return out
}

func (r *rendered) one(t *testing.T, kind, nameSuffix string) doc {
	t.Helper()
	for _, d := range r.all(kind) {
		if m, ok := d.obj.(interface{ GetName() string }); ok && strings.HasSuffix(m.GetName(), nameSuffix) {
			return d
		}
	}
	t.Fatalf("no %s named *%s rendered", kind, nameSuffix)
	return doc{}
}

var valueSets = map[string][]string{
	"defaults": nil,
	"all-on":   {"testdata/all-on.yaml"},
	"minimal":  {"testdata/minimal.yaml"},
	"secured":  {"testdata/all-on.yaml", "testdata/secured.yaml"},
}

func TestChartLintsAndRenders(t *testing.T) {
	for name, files := range valueSets {
		t.Run(name, func(t *testing.T) {
			vals := readValues(t, files...)
			l := lint.AllWithKubeVersion(chartDir, vals, "assistlog", &kube)
			for _, m := range l.Messages {
				if m.Severity > support.InfoSev {
					t.Errorf("helm lint: %s", m)
				}
			}
			r, err := render(t, vals)
			if err != nil {
				t.Fatalf("render: %v", err)
			}
			if len(r.docs) == 0 {
				t.Fatal("nothing rendered")
			}
			checkInvariants(t, r)
		})
	}
}

// Values the chart must refuse, with the schema's (or the template's)
// message naming the value.
func TestChartRefusesBadValues(t *testing.T) {
	cases := []struct {
		name, values, want string
	}{
		{"misspelled key", "shiper: {replicas: 2}", "at '': additional properties 'shiper' not allowed"},
		{"log level outside the enum", "logLevel: verbose", "at '/logLevel': value must be one of 'debug', 'info', 'warn', 'error'"},
		{"no brokers", "kafka: {brokers: []}", "at '/kafka/brokers': minItems: got 0, want 1"},
		{"more shippers than partitions", "kafka: {partitions: 3}\nshipper: {replicas: 4}", "shipper.replicas (4) must not exceed kafka.partitions (3)"},
		{"autoscaling past the partitions", "kafka: {partitions: 4}\nshipper: {autoscaling: {enabled: true, maxReplicas: 8}}", "shipper.autoscaling.maxReplicas (8) must not exceed kafka.partitions (4)"},
		{"audit without tenants", "audit: {enabled: true}", "at '/audit/tenants': minItems: got 0, want 1"},
		{"ingress without TLS", "collector: {webhook: {enabled: true, tenants: [{tenant: a, secretName: s, tokenKey: t}], ingress: {enabled: true, host: h.example.com}}}", "at '/collector/webhook/ingress/tlsSecretName': minLength: got 0, want 1"},
		{"read_from outside the enum", "collector: {readFrom: middle}", "at '/collector/readFrom': value must be one of 'beginning', 'end'"},
		{"PII secret not named", "secrets: {piiHashSecret: {name: \"\"}}", "at '/secrets/piiHashSecret/name': minLength: got 0, want 1"},
		{"CRM without its Secret", "shipper: {crm: {enabled: true}}", "secrets.bitrix24WebhookUrl.name is required"},
		{"unpinned Kibana import image", "kibana: {import: {image: curlimages/curl}}", "at '/kibana/import/image': 'curlimages/curl' does not match pattern"},
		{"current PII key not in the ring", "pii: {keys: [{id: k1, secretName: pii, secretKey: k1}], currentKey: k2}", `pii.currentKey ("k2") must be the id of one of pii.keys (k1)`},
		{"PII keys without a current key", "pii: {keys: [{id: k1, secretName: pii, secretKey: k1}]}", `pii.currentKey ("") must be the id of one of pii.keys`},
		{"PII key id twice", "pii: {keys: [{id: k1, secretName: a, secretKey: k}, {id: k1, secretName: b, secretKey: k}], currentKey: k1}", `pii.keys: id "k1" is listed twice`},
		{"PII key id with a colon", "pii: {keys: [{id: \"k:1\", secretName: pii, secretKey: k1}], currentKey: \"k:1\"}", "at '/pii/keys/0/id': 'k:1' does not match pattern"},
		{"current key without keys", "pii: {currentKey: k1}", "pii.currentKey is set but pii.keys is empty"},
		{"Kafka CA with TLS off", "kafka: {tls: {caSecret: {name: kafka-ca}}}", "kafka.tls.caSecret, clientSecret or serverName set while kafka.tls.enabled is false"},
		{"SCRAM without the shipper's user", "kafka: {sasl: {mechanism: SCRAM-SHA-512, collector: {username: c, passwordSecret: {name: c}}}}", "kafka.sasl.shipper.username and kafka.sasl.shipper.passwordSecret.name are required"},
		{"SASL user without a mechanism", "kafka: {sasl: {shipper: {username: s, passwordSecret: {name: s}}}}", "kafka.sasl.shipper is set but kafka.sasl.mechanism is empty"},
		{"SASL mechanism outside the enum", "kafka: {sasl: {mechanism: PLAIN}}", "at '/kafka/sasl/mechanism': value must be one of"},
		{"Elasticsearch user without a password", "elasticsearch: {audit: {username: ops}}", "elasticsearch.audit.username and elasticsearch.audit.passwordSecret.name go together"},
		{"tenant aliases without tenants", "elasticsearch: {tenantAliases: true}", "elasticsearch.tenantAliases needs the tenants in audit.tenants"},
		{"webhook client CA without HTTPS", "collector: {webhook: {tls: {clientCASecret: {name: ca}}}}", "collector.webhook.tls.clientCASecret needs collector.webhook.tls.secretName"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "values.yaml")
			if err := os.WriteFile(f, []byte(c.values), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := render(t, readValues(t, f))
			if err == nil {
				t.Fatalf("values %q rendered; want them refused", c.values)
			}
			t.Logf("refused: %v", err)
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("refused with %q; want a message containing %q", err, c.want)
			}
		})
	}
}

func checkInvariants(t *testing.T, r *rendered) {
	t.Helper()
	stable := map[string]bool{"app.kubernetes.io/name": true, "app.kubernetes.io/instance": true, "app.kubernetes.io/component": true}
	type workload struct {
		name     string
		selector map[string]string
		pod      corev1.PodTemplateSpec
	}
	var workloads []workload
	for _, d := range r.docs {
		switch o := d.obj.(type) {
		case *appsv1.Deployment:
			workloads = append(workloads, workload{o.Name, o.Spec.Selector.MatchLabels, o.Spec.Template})
		case *appsv1.DaemonSet:
			workloads = append(workloads, workload{o.Name, o.Spec.Selector.MatchLabels, o.Spec.Template})
		case *batchv1.CronJob:
			workloads = append(workloads, workload{o.Name, nil, o.Spec.JobTemplate.Spec.Template})
		case *batchv1.Job:
			workloads = append(workloads, workload{o.Name, nil, o.Spec.Template})
		}
	}
	for _, w := range workloads {
		for k, v := range w.selector {
			if !stable[k] {
				t.Errorf("%s: selector label %s is not one of the stable labels", w.name, k)
			}
			if w.pod.Labels[k] != v {
				t.Errorf("%s: selector %s=%s does not match the pod label %q", w.name, k, v, w.pod.Labels[k])
			}
		}
		if w.selector != nil && len(w.selector) != len(stable) {
			t.Errorf("%s: selector %v; want exactly the stable labels", w.name, w.selector)
		}
		ps := w.pod.Spec
		for _, c := range append(ps.InitContainers, ps.Containers...) {
			if !regexp.MustCompile(`^[^:@]+(:[^:]+|@sha256:[0-9a-f]{64})$`).MatchString(c.Image) || strings.HasSuffix(c.Image, ":latest") {
				t.Errorf("%s/%s: image %q is not pinned", w.name, c.Name, c.Image)
			}
			sc := c.SecurityContext
			if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
				sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
				sc.Capabilities == nil || !reflect.DeepEqual(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
				t.Errorf("%s/%s: want a read-only root filesystem, no privilege escalation and every capability dropped; got %+v", w.name, c.Name, sc)
			}
			seccomp := ps.SecurityContext != nil && ps.SecurityContext.SeccompProfile != nil && ps.SecurityContext.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault
			if !seccomp {
				t.Errorf("%s: want the RuntimeDefault seccomp profile", w.name)
			}
		}
		isCollector := w.pod.Labels["app.kubernetes.io/component"] == "collector"
		if !isCollector {
			psc := ps.SecurityContext
			if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
				t.Errorf("%s: want a non-root pod; got %+v", w.name, psc)
			}
		}
		if c := w.pod.Labels["app.kubernetes.io/component"]; c == "collector" || c == "shipper" || c == "webhook" || strings.HasPrefix(c, "audit-") {
			if w.pod.Annotations["checksum/config"] == "" {
				t.Errorf("%s: no checksum/config annotation: pods would not roll on a config change", w.name)
			}
		}
	}

	for _, d := range r.all("DaemonSet") {
		checkCollector(t, d.obj.(*appsv1.DaemonSet))
	}

	// The Service selects the webhook pods.
	for _, d := range r.all("Service") {
		s := d.obj.(*corev1.Service)
		matched := 0
		for _, w := range workloads {
			if w.selector != nil && labelsMatch(s.Spec.Selector, w.pod.Labels) {
				matched++
			}
		}
		if matched != 1 {
			t.Errorf("Service %s selects the pods of %d workloads; want 1", s.Name, matched)
		}
	}

	// HPA and PDB target the shipper, and only the shipper.
	var shipper *appsv1.Deployment
	for _, d := range r.all("Deployment") {
		if dep := d.obj.(*appsv1.Deployment); dep.Spec.Template.Labels["app.kubernetes.io/component"] == "shipper" {
			shipper = dep
		}
	}
	for _, d := range r.all("HorizontalPodAutoscaler") {
		h := d.obj.(*autoscalingv2.HorizontalPodAutoscaler)
		if shipper == nil || h.Spec.ScaleTargetRef.Kind != "Deployment" || h.Spec.ScaleTargetRef.Name != shipper.Name {
			t.Errorf("HPA %s targets %+v; want the shipper Deployment", h.Name, h.Spec.ScaleTargetRef)
		}
		if shipper != nil && shipper.Spec.Replicas != nil {
			t.Errorf("shipper Deployment sets replicas while the HPA owns them")
		}
	}
	for _, d := range r.all("PodDisruptionBudget") {
		p := d.obj.(*policyv1.PodDisruptionBudget)
		for _, w := range workloads {
			isShipper := shipper != nil && w.name == shipper.Name
			if labelsMatch(p.Spec.Selector.MatchLabels, w.pod.Labels) != isShipper {
				t.Errorf("PDB %s selector %v: matches %s = %v; want only the shipper", p.Name, p.Spec.Selector.MatchLabels, w.name, !isShipper)
			}
		}
	}

	checkOpsFiles(t, r)
}

func labelsMatch(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// checkCollector: the node's logs are mounted read-only; the positions
// directory (a per-release hostPath, created if missing) is the only
// writable mount.
func checkCollector(t *testing.T, ds *appsv1.DaemonSet) {
	t.Helper()
	vols := map[string]corev1.Volume{}
	for _, v := range ds.Spec.Template.Spec.Volumes {
		vols[v.Name] = v
	}
	writable := 0
	for _, c := range ds.Spec.Template.Spec.Containers {
		for _, m := range c.VolumeMounts {
			v := vols[m.Name]
			if !m.ReadOnly {
				writable++
				if m.Name != "positions" || v.HostPath == nil || v.HostPath.Type == nil || *v.HostPath.Type != corev1.HostPathDirectoryOrCreate ||
					!strings.HasSuffix(v.HostPath.Path, "/assistlog-demo") {
					t.Errorf("collector: writable mount %s (%+v); only the per-release positions hostPath may be writable", m.Name, v.VolumeSource)
				}
			}
			if v.HostPath != nil && m.Name != "positions" && !m.ReadOnly {
				t.Errorf("collector: host directory %s mounted writable", v.HostPath.Path)
			}
		}
	}
	if writable != 1 {
		t.Errorf("collector: %d writable mounts; want the positions directory only", writable)
	}
}

// checkOpsFiles: what the chart deploys of dashboards/ and alerts/ is the
// repo's files, and each dashboard is valid JSON.
func checkOpsFiles(t *testing.T, r *rendered) {
	t.Helper()
	dashboards, _ := filepath.Glob("../dashboards/grafana/*.json")
	var dashboardCMs int
	for _, d := range r.all("ConfigMap") {
		cm := d.obj.(*corev1.ConfigMap)
		if cm.Labels["grafana_dashboard"] == "" {
			continue
		}
		dashboardCMs++
		for key, data := range cm.Data {
			if !json.Valid([]byte(data)) {
				t.Errorf("ConfigMap %s: %s is not valid JSON", cm.Name, key)
			}
			src, err := os.ReadFile(filepath.Join("../dashboards/grafana", key))
			if err != nil || string(src) != data {
				t.Errorf("ConfigMap %s: %s is not dashboards/grafana/%s (%v)", cm.Name, key, key, err)
			}
		}
	}
	if dashboardCMs != 0 && dashboardCMs != len(dashboards) {
		t.Errorf("%d dashboard ConfigMaps; the repo has %d dashboards", dashboardCMs, len(dashboards))
	}
	for _, d := range r.all("ConfigMap") {
		cm := d.obj.(*corev1.ConfigMap)
		if data, ok := cm.Data["assistlog.rules.yaml"]; ok {
			src, _ := os.ReadFile("../alerts/loki/assistlog.rules.yaml")
			if data != string(src) {
				t.Errorf("ConfigMap %s: the Loki rules differ from alerts/loki/assistlog.rules.yaml", cm.Name)
			}
		}
		if data, ok := cm.Data["assistlog-datasources.yaml"]; ok {
			// The repo's data sources with this cluster's URLs: all else equal.
			src, _ := os.ReadFile("../dashboards/grafana/provisioning/datasources/assistlog.yaml")
			var got, want struct {
				APIVersion  int              `json:"apiVersion"`
				Datasources []map[string]any `json:"datasources"`
			}
			if err := yaml.Unmarshal([]byte(data), &got); err != nil {
				t.Fatal(err)
			}
			if err := yaml.Unmarshal(src, &want); err != nil {
				t.Fatal(err)
			}
			for _, ds := range got.Datasources {
				if u, _ := ds["url"].(string); !strings.HasPrefix(u, "http") {
					t.Errorf("data source %v: url %q", ds["name"], u)
				}
				if ds["type"] == "elasticsearch" {
					ds["jsonData"].(map[string]any)["index"] = "assistant-events" // elasticsearch.alias
				}
			}
			for _, ds := range append(got.Datasources, want.Datasources...) {
				delete(ds, "url")
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("ConfigMap %s: data sources differ from the repo's beyond URLs and index:\n%+v\n%+v", cm.Name, got, want)
			}
		}
	}
	for _, d := range r.all("Secret") {
		sec := d.obj.(*corev1.Secret)
		src, _ := os.ReadFile("../alerts/alertmanager/alertmanager.yml")
		want := strings.ReplaceAll(string(src), "/etc/assistlog/secrets/", "/etc/alertmanager/secrets/assistlog-alertmanager-receivers/")
		want = strings.ReplaceAll(want, `"templates/*.tmpl"`, `"/etc/alertmanager/config/*.tmpl"`)
		if got := string(sec.Data["alertmanager.yaml"]); got != want || got == string(src) {
			t.Errorf("Secret %s: alertmanager.yaml is not alerts/alertmanager/alertmanager.yml with the secrets directory moved", sec.Name)
		}
		tmpls, _ := filepath.Glob("../alerts/alertmanager/templates/*.tmpl")
		for _, f := range tmpls {
			b, _ := os.ReadFile(f)
			if !bytes.Equal(sec.Data[filepath.Base(f)], b) {
				t.Errorf("Secret %s: %s differs from %s", sec.Name, filepath.Base(f), f)
			}
		}
	}
	for _, d := range r.all("PrometheusRule") {
		var src struct{ Groups json.RawMessage }
		b, _ := os.ReadFile("../alerts/prometheus/pipeline.rules.yaml")
		j, err := yaml.YAMLToJSON(b)
		if err != nil || json.Unmarshal(j, &src) != nil {
			t.Fatalf("read pipeline rules: %v", err)
		}
		var got struct {
			Spec struct{ Groups json.RawMessage }
		}
		_ = json.Unmarshal(d.raw, &got)
		if !jsonEqual(src.Groups, got.Spec.Groups) {
			t.Errorf("PrometheusRule groups differ from alerts/prometheus/pipeline.rules.yaml")
		}
	}
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// The chart's files/ are symlinks into the repo's single definitions, and
// what Helm loads through them is those files byte for byte: a chart copy
// that differs from its source fails here.
func TestChartOpsFilesAreTheRepos(t *testing.T) {
	links := map[string]string{
		"files/grafana":      "../dashboards/grafana",
		"files/kibana":       "../dashboards/kibana",
		"files/loki":         "../alerts/loki",
		"files/prometheus":   "../alerts/prometheus",
		"files/alertmanager": "../alerts/alertmanager",
	}
	ch := loadChart(t)
	loaded := map[string][]byte{}
	for _, f := range ch.Files {
		loaded[f.Name] = f.Data
	}
	ignored := map[string]bool{"files/prometheus/pipeline.rules.test.yaml": true, "files/loki/thresholds.yaml": true}
	for link, src := range links {
		fi, err := os.Lstat(filepath.Join(chartDir, link))
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("%s is not a symlink to %s (a copy can drift from its source)", link, src)
			continue
		}
		err = filepath.WalkDir(src, func(p string, e os.DirEntry, err error) error {
			if err != nil || e.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(src, p)
			name := filepath.ToSlash(filepath.Join(link, rel))
			want, _ := os.ReadFile(p)
			if ignored[name] {
				if _, ok := loaded[name]; ok {
					t.Errorf("%s is in the chart; .helmignore should leave it out", name)
				}
				return nil
			}
			got, ok := loaded[name]
			if !ok {
				t.Errorf("%s: Helm did not load %s", name, p)
			} else if !bytes.Equal(got, want) {
				t.Errorf("%s: the chart's copy differs from %s", name, p)
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	}
}

// `helm package` (chartutil.Save) stores what the symlinks point to, so a
// packaged chart (an OCI or repo release) holds the ops files themselves.
func TestChartPackageHoldsTheOpsFiles(t *testing.T) {
	tgz, err := chartutil.Save(loadChart(t), t.TempDir())
	if err != nil {
		t.Fatalf("package: %v", err)
	}
	ch, err := loader.Load(tgz)
	if err != nil {
		t.Fatalf("load %s: %v", tgz, err)
	}
	dashboards, _ := filepath.Glob("../dashboards/grafana/*.json")
	found := 0
	for _, f := range ch.Files {
		if strings.HasPrefix(f.Name, "files/grafana/") && strings.HasSuffix(f.Name, ".json") {
			src, err := os.ReadFile(filepath.Join("../dashboards/grafana", filepath.Base(f.Name)))
			if err != nil || !bytes.Equal(src, f.Data) {
				t.Errorf("packaged %s differs from its source (%v)", f.Name, err)
			}
			found++
		}
	}
	if found != len(dashboards) || found == 0 {
		t.Errorf("the package holds %d dashboards; the repo has %d", found, len(dashboards))
	}
}

// A config change rolls the pods: the checksum annotation follows it.
func TestChartChecksumFollowsConfig(t *testing.T) {
	checksums := func(level string) map[string]string {
		f := filepath.Join(t.TempDir(), "v.yaml")
		_ = os.WriteFile(f, []byte("logLevel: "+level+"\n"), 0o644)
		r, err := render(t, readValues(t, "testdata/all-on.yaml", f))
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, d := range r.all("DaemonSet") {
			out["collector"] = d.obj.(*appsv1.DaemonSet).Spec.Template.Annotations["checksum/config"]
		}
		for _, d := range r.all("Deployment") {
			dep := d.obj.(*appsv1.Deployment)
			out[dep.Name] = dep.Spec.Template.Annotations["checksum/config"]
		}
		return out
	}
	a, b := checksums("info"), checksums("debug")
	if len(a) < 3 {
		t.Fatalf("checksums of %d workloads; want the collector, webhook and shipper", len(a))
	}
	for k := range a {
		if a[k] == b[k] {
			t.Errorf("%s: checksum/config did not change with logLevel", k)
		}
	}
}

// The configuration files the chart writes, and those inline in
// docker-compose.yml, are accepted by the programs themselves (`--check`),
// with the Secrets' variables set as the containers would have them. One
// build of the programs serves both.
func TestConfigsPassTheProgramsCheck(t *testing.T) {
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "../collector", "../shipper")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	check := func(t *testing.T, prog, config string, env []string) {
		t.Helper()
		f := filepath.Join(t.TempDir(), prog+".yaml")
		if err := os.WriteFile(f, []byte(config), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(filepath.Join(bin, prog), "--config", f, "--check")
		cmd.Env = append(os.Environ(), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s --check refused it: %v\n%s\n%s", prog, err, out, config)
		}
	}
	t.Run("chart", func(t *testing.T) {
		r, err := render(t, readValues(t, "testdata/all-on.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		env := []string{"ASSISTLOG_PII_SECRET=0123456789abcdef0123", "ES_API_KEY=key",
			"BITRIX24_WEBHOOK_URL=https://example.bitrix24.ru/rest/1/abc/",
			"WEBHOOK_TOKEN_0=token-0-0123456789abcdef", "WEBHOOK_HMAC_0=hmac-0-0123456789abcdef", "WEBHOOK_TOKEN_1=token-1-0123456789abcdef"}
		checked := 0
		for _, d := range r.all("ConfigMap") {
			cm := d.obj.(*corev1.ConfigMap)
			for key, data := range cm.Data {
				if prog := strings.TrimSuffix(key, ".yaml"); prog == "collector" || prog == "shipper" {
					check(t, prog, data, env)
					checked++
				}
			}
		}
		if checked != 3 {
			t.Errorf("checked %d configs; want the collector's, the webhook's and the shipper's", checked)
		}
	})
	t.Run("compose", func(t *testing.T) {
		p, err := loadCompose(t, exampleEnv(t))
		if err != nil {
			t.Fatal(err)
		}
		for _, prog := range []string{"collector", "shipper"} {
			// The container's environment, as compose gives it.
			var env []string
			for k, v := range composeProgramOf(t, p, prog).env {
				env = append(env, k+"="+v)
			}
			check(t, prog, p.Configs[prog].Content, env)
		}
	})
	t.Run("compose secured", func(t *testing.T) { checkComposeSecured(t, bin) })
}

// Kubernetes versions the rendered objects are validated against with
// kubernetes-validate's bundled official OpenAPI schemas (strict: unknown
// fields fail). 1.29 is the chart's kubeVersion floor.
var kubeVersions = []string{"1.29.0", "1.31.0", "1.33.0", "1.37.0"}

// kubernetesValidate returns the kubernetes-validate program, installing it
// with pip into a venv under the cache (ASSISTLOG_CACHE, else the user
// cache dir + /assistlog) on the first run; offline afterwards. Where it
// cannot be installed the test skips, except under make test / CI
// (ASSISTLOG_INTEGRATION or CI set), where it fails.
func kubernetesValidate(t *testing.T) string {
	t.Helper()
	cache := os.Getenv("ASSISTLOG_CACHE")
	if cache == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			t.Fatalf("find the cache dir (set ASSISTLOG_CACHE): %v", err)
		}
		cache = filepath.Join(base, "assistlog")
	}
	const version = "1.37.0"
	venv := filepath.Join(cache, "venv-kubernetes-validate-"+version)
	prog := filepath.Join(venv, "bin", "kubernetes-validate")
	if _, err := os.Stat(prog); err == nil {
		return prog
	}
	fail := t.Skipf
	if os.Getenv("ASSISTLOG_INTEGRATION") != "" || os.Getenv("CI") != "" {
		fail = t.Fatalf
	}
	_ = os.RemoveAll(venv) // a half-made venv from an interrupted install
	for _, args := range [][]string{
		{"python3", "-m", "venv", venv},
		{filepath.Join(venv, "bin", "pip"), "install", "--quiet", "kubernetes-validate==" + version},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			_ = os.RemoveAll(venv)
			fail("install kubernetes-validate (%v): %v\n%s", args, err, out)
		}
	}
	return prog
}

func TestChartValidatesAgainstKubernetesSchemas(t *testing.T) {
	prog := kubernetesValidate(t)
	for name, files := range valueSets {
		t.Run(name, func(t *testing.T) {
			r, err := render(t, readValues(t, files...))
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			var paths []string
			for i, d := range r.docs {
				if _, crd := d.obj.(*prometheusRule); crd {
					continue // not a built-in kind: decoded strictly above
				}
				if _, crd := d.obj.(*podMonitor); crd {
					continue
				}
				p := filepath.Join(dir, fmt.Sprintf("%02d-%s.json", i, d.kind))
				if err := os.WriteFile(p, d.raw, 0o644); err != nil {
					t.Fatal(err)
				}
				paths = append(paths, p)
			}
			for _, v := range kubeVersions {
				args := append([]string{"--strict", "--quiet", "-k", v}, paths...)
				out, err := exec.Command(prog, args...).CombinedOutput()
				if err != nil || len(bytes.TrimSpace(out)) != 0 {
					t.Errorf("kubernetes-validate %s: %v\n%s", v, err, out)
				}
			}
		})
	}
}
