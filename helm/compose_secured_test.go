package helm_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"sigs.k8s.io/yaml"

	"github.com/assistlog/assistlog/internal/certs"
	"github.com/assistlog/assistlog/internal/pii"
)

const composePIIKey = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// composeProgram is collector's or shipper's config in a loaded compose
// project, as the container sees it.
type composeProgram struct {
	svc    types.ServiceConfig
	source string // the config's name
	config string // its content after interpolation
	env    map[string]string
}

func composeProgramOf(t *testing.T, p *types.Project, name string) composeProgram {
	t.Helper()
	svc, ok := p.Services[name]
	if !ok || len(svc.Configs) != 1 {
		t.Fatalf("service %s with one config: %+v", name, svc.Configs)
	}
	cp := composeProgram{svc: svc, source: svc.Configs[0].Source, env: map[string]string{}}
	cp.config = p.Configs[cp.source].Content
	if cp.config == "" {
		t.Fatalf("%s: config %s has no content", name, cp.source)
	}
	for k, v := range svc.Environment {
		if v != nil {
			cp.env[k] = *v
		}
	}
	return cp
}

func yamlMap(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("%v\n%s", err, s)
	}
	return m
}

// ring is the key ring the program's config and environment give it.
func (cp composeProgram) ring(t *testing.T) pii.KeysConfig {
	t.Helper()
	keys, current := ringVars(t, cp.svc.Name, cp.config)
	ring := pii.KeysConfig{CurrentKey: current}
	for _, k := range keys {
		ring.Keys = append(ring.Keys, pii.KeyConfig{ID: k.ID, Key: cp.env[k.Var]})
	}
	return ring
}

// TestComposePIIKeysOptional: without ASSISTLOG_PII_KEY the collector and
// the shipper run the configs they always had (no key ring); with it both
// switch to their -sealed configs, which differ from those by the key ring
// only, name the same key id as current, and take the key from the same
// variable, so a number the collector seals is opened by the shipper.
func TestComposePIIKeysOptional(t *testing.T) {
	p, err := loadCompose(t, exampleEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	plain := map[string]composeProgram{}
	for _, name := range []string{"collector", "shipper"} {
		cp := composeProgramOf(t, p, name)
		if cp.source != name {
			t.Errorf("%s runs config %s without ASSISTLOG_PII_KEY; want %s", name, cp.source, name)
		}
		if m, _ := yamlMap(t, cp.config)["pii"].(map[string]any); m["keys"] != nil || m["current_key"] != nil {
			t.Errorf("%s: a key ring without ASSISTLOG_PII_KEY: %v", name, m)
		}
		plain[name] = cp
	}

	env := exampleEnv(t)
	env["ASSISTLOG_PII_KEY"], env["ASSISTLOG_PII_KEY_ID"] = composePIIKey, "k2026"
	p, err = loadCompose(t, env)
	if err != nil {
		t.Fatal(err)
	}
	rings := map[string]pii.KeysConfig{}
	for _, name := range []string{"collector", "shipper"} {
		cp := composeProgramOf(t, p, name)
		if cp.source != name+"-sealed" {
			t.Errorf("%s runs config %s with ASSISTLOG_PII_KEY; want %s-sealed", name, cp.source, name)
		}
		rings[name] = cp.ring(t)
		want := pii.KeysConfig{Keys: []pii.KeyConfig{{ID: "k2026", Key: composePIIKey}}, CurrentKey: "k2026"}
		if !reflect.DeepEqual(rings[name], want) {
			t.Errorf("%s: ring %+v; want %+v", name, rings[name], want)
		}
		// The sealed config is the plain one and the ring.
		sealed, base := yamlMap(t, cp.config), yamlMap(t, plain[name].config)
		sp := sealed["pii"].(map[string]any)
		delete(sp, "keys")
		delete(sp, "current_key")
		if base["pii"] == nil {
			if !reflect.DeepEqual(sp, map[string]any{"hash_secret": "${ASSISTLOG_PII_SECRET}"}) {
				t.Errorf("%s-sealed pii: %v beyond the ring and the hash secret it needs", name, sp)
			}
			delete(sealed, "pii")
		}
		if !reflect.DeepEqual(sealed, base) {
			t.Errorf("%s-sealed differs from %s beyond pii:\n%v\n%v", name, name, sealed, base)
		}
	}
	seal, err := pii.NewRing(rings["collector"])
	if err != nil {
		t.Fatal(err)
	}
	open, err := pii.NewRing(rings["shipper"])
	if err != nil {
		t.Fatal(err)
	}
	sealed := seal.SealString(pii.PurposeUserPhone, "+79171234567")
	if got, err := open.OpenString(pii.PurposeUserPhone, sealed); err != nil || got != "+79171234567" {
		t.Errorf("the collector sealed %q; the shipper opened %q, %v", sealed, got, err)
	}
}

// composeSecuredEnv is an env file with every optional security setting:
// the key ring, a Kafka with TLS (CA and client certificate) and SCRAM,
// Elasticsearch over HTTPS with a user and CA. It returns the env and the
// secret values that must appear in no config.
func composeSecuredEnv(t *testing.T) (map[string]string, []string) {
	t.Helper()
	ca, err := certs.NewCA("compose test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ca.Server("assistlog", time.Hour, "assistlog")
	if err != nil {
		t.Fatal(err)
	}
	files, err := ca.WriteFiles(t.TempDir(), "client", pair)
	if err != nil {
		t.Fatal(err)
	}
	env := exampleEnv(t)
	for k, v := range map[string]string{
		"ASSISTLOG_PII_KEY": composePIIKey, "ASSISTLOG_PII_KEY_ID": "k2026",
		"KAFKA_BOOTSTRAP": "kafka.example.internal:9093", "KAFKA_TLS": "true",
		"KAFKA_TLS_CA_FILE": files.CA, "KAFKA_TLS_CERT_FILE": files.Cert, "KAFKA_TLS_KEY_FILE": files.Key,
		"KAFKA_TLS_SERVER_NAME": "kafka.example.internal", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
		"KAFKA_COLLECTOR_USERNAME": "assistlog-collector", "KAFKA_COLLECTOR_PASSWORD": "collector-password-0123456789",
		"KAFKA_SHIPPER_USERNAME": "assistlog-shipper", "KAFKA_SHIPPER_PASSWORD": "shipper-password-0123456789",
		"ES_URL": "https://es.example.internal:9200", "ES_USERNAME": "assistlog-shipper",
		"ES_PASSWORD": "es-password-0123456789", "ES_CA_FILE": files.CA,
	} {
		env[k] = v
	}
	return env, []string{composePIIKey, env["ASSISTLOG_PII_SECRET"], env["KAFKA_COLLECTOR_PASSWORD"],
		env["KAFKA_SHIPPER_PASSWORD"], env["ES_PASSWORD"]}
}

// checkComposeSecured runs the collector's and the shipper's --check (from
// bin) on their compose configs with every optional security setting, with
// the environment compose gives each container and its secrets' files at
// their targets. No secret value is in a config's text; every secret field
// is a ${VAR} the container's environment sets.
func checkComposeSecured(t *testing.T, bin string) {
	env, secrets := composeSecuredEnv(t)
	p, err := loadCompose(t, env)
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range p.Configs {
		for _, s := range secrets {
			if strings.Contains(c.Content, s) {
				t.Errorf("compose config %s holds a secret value", name)
			}
		}
	}
	for _, prog := range []string{"collector", "shipper"} {
		cp := composeProgramOf(t, p, prog)
		checkSecretFields(t, prog, yamlMap(t, cp.config), "")
		for _, m := range varRef.FindAllStringSubmatch(cp.config, -1) {
			if _, ok := cp.env[m[1]]; !ok {
				t.Errorf("%s: the config refers to ${%s}, which the container's environment lacks", prog, m[1])
			}
		}
		config := cp.config
		for _, s := range cp.svc.Secrets {
			src := p.Secrets[s.Source].File
			if src == "" || src == "/dev/null" {
				t.Errorf("%s: secret %s has no file with every setting on", prog, s.Source)
			}
			config = strings.ReplaceAll(config, `"`+s.Target+`"`, `"`+src+`"`)
		}
		for _, want := range []string{"ca_file", "cert_file", "key_file"} {
			if !strings.Contains(config, want+`: "/`) || strings.Contains(config, want+`: "/run/secrets/`) {
				t.Errorf("%s: %s does not point at a mounted secret file:\n%s", prog, want, config)
			}
		}
		f := filepath.Join(t.TempDir(), prog+".yaml")
		if err := os.WriteFile(f, []byte(config), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(filepath.Join(bin, prog), "--config", f, "--check")
		cmd.Env = []string{}
		for k, v := range cp.env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s --check refused compose's secured config: %v\n%s\n%s", prog, err, out, config)
		}
	}
}
