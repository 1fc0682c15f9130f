package stack

import (
	"context"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/assistlog/assistlog/internal/certs"
	"github.com/assistlog/assistlog/internal/kafka"
)

// SecuredKafka is a second, short-lived Kafka (one KRaft node) whose only
// client listener is SASL_SSL with SCRAM, for tests of what a deployment
// with an encrypted, authenticated cluster does. It runs the stack's Kafka
// distribution from its own directory; its certificate is issued by a CA
// made for it (internal/certs) and loaded as PEM.
type SecuredKafka struct {
	// Brokers is the SASL_SSL listener, host:port.
	Brokers string
	// CAFile is the CA the broker's certificate chains to (tls.ca_file).
	CAFile string
	// Admin is a user with SCRAM-SHA-256 and -512 credentials.
	Admin, AdminPassword string
	dir                  string
	proc                 process
	pid                  int
}

// SecuredKafkaConfig names the node and its users.
type SecuredKafkaConfig struct {
	// Name keeps two nodes apart (a directory under the stack directory).
	Name string
	// BrokerPort (SASL_SSL) and ControllerPort (loopback, plaintext) must
	// be free.
	BrokerPort, ControllerPort int
	// Users get SCRAM-SHA-256 and SCRAM-SHA-512 credentials when the
	// storage is formatted: name → password (letters, digits, - and _).
	Users map[string]string
}

var scramWord = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// StartSecuredKafka formats the node's storage with its users' SCRAM
// credentials, starts it and waits until the admin can read metadata over
// TLS. The stack must have been brought up once (it installs Kafka).
func StartSecuredKafka(ctx context.Context, cfg SecuredKafkaConfig) (*SecuredKafka, error) {
	if cfg.Name == "" || cfg.BrokerPort == 0 || cfg.ControllerPort == 0 {
		return nil, errors.New("secured kafka: name, broker and controller ports are required")
	}
	l, err := LayoutFromEnv()
	if err != nil {
		return nil, err
	}
	libs := filepath.Join(l.kafkaHome(), "libs")
	if !exists(filepath.Join(libs, ".complete")) {
		return nil, fmt.Errorf("secured kafka: Kafka is not installed in %s (run `stack up kafka` first)", libs)
	}
	name := "kafka-secured-" + cfg.Name
	dir := l.componentDir(name)
	_ = os.RemoveAll(dir)
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return nil, err
	}
	s := &SecuredKafka{Brokers: "127.0.0.1:" + strconv.Itoa(cfg.BrokerPort), Admin: "assistlog-admin",
		AdminPassword: "admin-" + strconv.FormatInt(time.Now().UnixNano(), 36), dir: dir, proc: newProcess(l, name)}
	users := map[string]string{s.Admin: s.AdminPassword}
	for u, pw := range cfg.Users {
		if !scramWord.MatchString(u) || !scramWord.MatchString(pw) {
			return nil, fmt.Errorf("secured kafka: user %q: names and passwords are letters, digits, - and _", u)
		}
		users[u] = pw
	}

	ca, err := certs.NewCA("assistlog secured kafka "+cfg.Name, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	pair, err := ca.Server("kafka-"+cfg.Name, 24*time.Hour, "127.0.0.1", "localhost")
	if err != nil {
		return nil, err
	}
	files, err := ca.WriteFiles(filepath.Join(dir, "tls"), "broker", pair)
	if err != nil {
		return nil, err
	}
	s.CAFile = files.CA
	// A PEM keystore is the key followed by its certificate chain.
	keystore := filepath.Join(dir, "tls", "keystore.pem")
	if err := os.WriteFile(keystore, append(append([]byte{}, pair.KeyPEM...), pair.CertPEM...), 0o600); err != nil {
		return nil, err
	}

	jaas := func(mech string) string {
		return fmt.Sprintf("listener.name.sasl_ssl.%s.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=%q password=%q;\n",
			strings.ToLower(mech), s.Admin, s.AdminPassword)
	}
	props := fmt.Sprintf(`# Written by assistlog's stack for a test: one KRaft node, clients on SASL_SSL only.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:%[2]d
listeners=SASL_SSL://127.0.0.1:%[1]d,CONTROLLER://127.0.0.1:%[2]d
advertised.listeners=SASL_SSL://127.0.0.1:%[1]d
controller.listener.names=CONTROLLER
inter.broker.listener.name=SASL_SSL
listener.security.protocol.map=CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
ssl.keystore.type=PEM
ssl.keystore.location=%[3]s
ssl.truststore.type=PEM
ssl.truststore.location=%[4]s
ssl.client.auth=none
log.dirs=%[5]s
num.partitions=1
auto.create.topics.enable=false
# One partition for group offsets: the first group starts in a second, not fifty.
offsets.topic.num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
`, cfg.BrokerPort, cfg.ControllerPort, keystore, files.CA, filepath.Join(dir, "data")) + jaas("SCRAM-SHA-256") + jaas("SCRAM-SHA-512")
	propsPath := filepath.Join(dir, "server.properties")
	log4j := filepath.Join(dir, "log4j2.properties")
	for path, b := range map[string]string{propsPath: props, log4j: kafkaLog4j} {
		if err := os.WriteFile(path, []byte(b), 0o644); err != nil {
			return nil, err
		}
	}

	// The users exist from the first record of the metadata log: nothing
	// has to talk to the broker before it is secured.
	cp := libs + "/*"
	java := func(args ...string) *exec.Cmd {
		return exec.CommandContext(ctx, javaBinary(), append([]string{"-Xshare:auto", "-XX:TieredStopAtLevel=1", "-cp", cp,
			"-Dlog4j2.configurationFile=" + log4j}, args...)...)
	}
	format := []string{"kafka.tools.StorageTool", "format", "-t", clusterID(), "-c", propsPath}
	for u, pw := range users {
		for _, mech := range []string{"SCRAM-SHA-256", "SCRAM-SHA-512"} {
			format = append(format, "--add-scram", fmt.Sprintf("%s=[name=%s,password=%s]", mech, u, pw))
		}
	}
	if out, err := java(format...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("secured kafka: format storage: %w: %s", err, out)
	}

	cmd := exec.Command(javaBinary(), "-Xms256m", "-Xmx256m", "-XX:+UseG1GC", "-cp", cp,
		"-Dlog4j2.configurationFile="+log4j, "kafka.Kafka", propsPath)
	cmd.Dir = dir
	if s.pid, err = s.proc.start(cmd); err != nil {
		return nil, err
	}
	admin, err := kafka.NewConnector(s.ClientConfig(s.Admin, s.AdminPassword, "SCRAM-SHA-512"), nil)
	if err != nil {
		s.Stop()
		return nil, err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := admin.Client(5*time.Second).Metadata(rctx, &kafkago.MetadataRequest{})
		cancel()
		if err == nil {
			return s, nil
		}
		if !alive(s.pid) || time.Now().After(deadline) || ctx.Err() != nil {
			s.Stop()
			return nil, fmt.Errorf("secured kafka %s did not start (%v); log:\n%s", cfg.Name, err, tailFile(s.proc.logPath, 30))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// clusterID is a random KRaft cluster id: 16 bytes, URL-safe base64. One
// in 64 of those starts with '-', which StorageTool's argument parser takes
// for an option ("argument --cluster-id/-t: expected one argument", a CI
// failure); Kafka's own Uuid.randomUuid draws again in that case, and so
// does this.
func clusterID() string {
	b := make([]byte, 16)
	for {
		_, _ = rand.Read(b)
		if id := base64.RawURLEncoding.EncodeToString(b); id[0] != '-' {
			return id
		}
	}
}

// ClientConfig is the kafka: section's client part for user over TLS
// with the node's CA.
func (s *SecuredKafka) ClientConfig(user, password, mechanism string) kafka.ClientConfig {
	return kafka.ClientConfig{Brokers: []string{s.Brokers},
		TLS:  kafka.TLSConfig{Enabled: true, CAFile: s.CAFile},
		SASL: kafka.SASLConfig{Mechanism: mechanism, Username: user, Password: password}}
}

// AdminConnector returns a connector authenticated as the admin.
func (s *SecuredKafka) AdminConnector() (*kafka.Connector, error) {
	return kafka.NewConnector(s.ClientConfig(s.Admin, s.AdminPassword, "SCRAM-SHA-512"), nil)
}

// SetPassword sets user's SCRAM-SHA-256 and -512 credentials, as an
// operator does with kafka-configs --alter --add-config; new connections
// authenticate with it at once.
func (s *SecuredKafka) SetPassword(ctx context.Context, user, password string) error {
	admin, err := s.AdminConnector()
	if err != nil {
		return err
	}
	const iterations = 4096
	// One credential per request: the broker refuses two for one user.
	for _, m := range []struct {
		mech kafkago.ScramMechanism
		h    func() hash.Hash
		size int
	}{{kafkago.ScramMechanismSha256, sha256.New, sha256.Size}, {kafkago.ScramMechanismSha512, sha512.New, sha512.Size}} {
		salt := make([]byte, 32)
		_, _ = rand.Read(salt)
		// SCRAM's SaltedPassword is PBKDF2 of the password (RFC 5802 Hi()).
		salted, err := pbkdf2.Key(m.h, password, salt, iterations, m.size)
		if err != nil {
			return err
		}
		resp, err := admin.Client(30*time.Second).AlterUserScramCredentials(ctx, &kafkago.AlterUserScramCredentialsRequest{
			Upsertions: []kafkago.UserScramCredentialsUpsertion{{Name: user, Mechanism: m.mech, Iterations: iterations, Salt: salt, SaltedPassword: salted}}})
		if err != nil {
			return fmt.Errorf("set the password of %s: %w", user, err)
		}
		for _, r := range resp.Results {
			if r.Error != nil {
				return fmt.Errorf("set the password of %s: %w", r.User, r.Error)
			}
		}
	}
	return nil
}

// CreateTopics creates topics (name → partitions) as the admin.
func (s *SecuredKafka) CreateTopics(ctx context.Context, topics map[string]int) error {
	admin, err := s.AdminConnector()
	if err != nil {
		return err
	}
	req := &kafkago.CreateTopicsRequest{}
	for name, n := range topics {
		req.Topics = append(req.Topics, kafkago.TopicConfig{Topic: name, NumPartitions: n, ReplicationFactor: 1})
	}
	resp, err := admin.Client(30*time.Second).CreateTopics(ctx, req)
	if err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	for name, terr := range resp.Errors {
		if terr != nil && !errors.Is(terr, kafkago.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", name, terr)
		}
	}
	return nil
}

// Log is the node's log file.
func (s *SecuredKafka) Log() string { return s.proc.logPath }

// Stop kills the node and removes its directory.
func (s *SecuredKafka) Stop() {
	if _, err := s.proc.stop(20 * time.Second); err != nil && !errors.Is(err, os.ErrNotExist) {
		_ = syscall.Kill(-s.pid, syscall.SIGKILL)
	}
	_ = os.RemoveAll(s.dir)
}
