package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/scram"

	"github.com/assistlog/assistlog/internal/config"
)

// ClientConfig is how every Kafka client of a program reaches the brokers:
// the producer, consumers, the CRM links follower and worker, and the
// admin requests (lag, replay) all take it from the one kafka: section.
type ClientConfig struct {
	Brokers []string   `yaml:"brokers"`
	TLS     TLSConfig  `yaml:"tls"`
	SASL    SASLConfig `yaml:"sasl"`
}

// TLSConfig encrypts the connections and checks the brokers' certificate.
type TLSConfig struct {
	Enabled bool `yaml:"enabled"`
	// CAFile is the PEM bundle the brokers' certificates must chain to;
	// empty trusts the system's roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are this client's certificate, for brokers that
	// authenticate clients by certificate (ssl.client.auth=required).
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName is the name checked in the brokers' certificates; empty
	// checks the host each broker is dialled by.
	ServerName string `yaml:"server_name"`
}

// SASLConfig authenticates the client to the brokers.
type SASLConfig struct {
	// Mechanism is SCRAM-SHA-256 or SCRAM-SHA-512; empty: no SASL.
	Mechanism string `yaml:"mechanism"`
	Username  string `yaml:"username"`
	// Password is written as ${ENV_VAR}.
	Password string `yaml:"password"`
}

var scramAlgorithms = map[string]scram.Algorithm{"SCRAM-SHA-256": scram.SHA256, "SCRAM-SHA-512": scram.SHA512}

// ExpandSecrets replaces ${VAR} in the SASL credentials; prefix is the
// section's path ("kafka.") for the error.
func (c *ClientConfig) ExpandSecrets(prefix string) error {
	return errors.Join(config.Expand(prefix+"sasl.username", &c.SASL.Username),
		config.Expand(prefix+"sasl.password", &c.SASL.Password))
}

// Validate names the field at fault. It reads the TLS files, so a missing
// or unreadable certificate is reported at start (and by --check).
func (c ClientConfig) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("brokers: at least one broker is required"))
	}
	if _, err := c.TLS.build(); err != nil {
		errs = append(errs, err)
	}
	if _, err := c.SASL.build(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (t TLSConfig) build() (*tls.Config, error) {
	if !t.Enabled {
		for field, v := range map[string]string{"ca_file": t.CAFile, "cert_file": t.CertFile, "key_file": t.KeyFile, "server_name": t.ServerName} {
			if v != "" {
				return nil, fmt.Errorf("tls.%s: set while tls.enabled is false; enable TLS or remove it", field)
			}
		}
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		b, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("tls.ca_file: %s holds no PEM certificate", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, errors.New("tls.cert_file, tls.key_file: set both or neither")
	}
	if t.CertFile != "" {
		pair, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls.cert_file, tls.key_file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

func (s SASLConfig) build() (sasl.Mechanism, error) {
	if s.Mechanism == "" {
		if s.Username != "" || s.Password != "" {
			return nil, errors.New("sasl.mechanism: required when sasl.username or sasl.password is set (SCRAM-SHA-256 or SCRAM-SHA-512)")
		}
		return nil, nil
	}
	alg, ok := scramAlgorithms[s.Mechanism]
	if !ok {
		return nil, fmt.Errorf("sasl.mechanism: must be SCRAM-SHA-256 or SCRAM-SHA-512, got %q", s.Mechanism)
	}
	if s.Username == "" || s.Password == "" {
		return nil, errors.New("sasl.username, sasl.password: both required with sasl.mechanism")
	}
	m, err := scram.Mechanism(alg, s.Username, s.Password)
	if err != nil {
		return nil, fmt.Errorf("sasl: %w", err)
	}
	return m, nil
}

// Connector turns a ClientConfig into what kafka-go needs, once per
// program, so that every reader, writer and admin request encrypts and
// authenticates the same way: none can be left on plaintext by mistake.
type Connector struct {
	brokers   []string
	dialer    *kafkago.Dialer
	transport *kafkago.Transport
	log       *slog.Logger
}

// clientID names assistlog's connections in the brokers' logs and quotas.
const clientID = "assistlog"

// NewConnector validates cfg and builds the dialer (readers, connections)
// and the transport (writers, admin requests). log receives the readers'
// errors (a refused password, an unknown certificate), which kafka-go
// otherwise retries silently; nil discards them.
func NewConnector(cfg ClientConfig, log *slog.Logger) (*Connector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("kafka config: %w", err)
	}
	tc, _ := cfg.TLS.build()
	mech, _ := cfg.SASL.build()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &kafkago.Dialer{Timeout: 10 * time.Second, DualStack: true, ClientID: clientID, TLS: tc, SASLMechanism: mech}
	return &Connector{brokers: cfg.Brokers, dialer: d, log: log,
		transport: &kafkago.Transport{DialTimeout: 10 * time.Second, ClientID: clientID, TLS: tc, SASL: mech}}, nil
}

// Brokers are the bootstrap addresses.
func (c *Connector) Brokers() []string { return c.brokers }

// Dialer is for kafka-go readers and direct connections.
func (c *Connector) Dialer() *kafkago.Dialer { return c.dialer }

// Transport is for kafka-go writers and clients.
func (c *Connector) Transport() *kafkago.Transport { return c.transport }

// Client returns an admin client whose requests time out after timeout.
func (c *Connector) Client(timeout time.Duration) *kafkago.Client {
	return &kafkago.Client{Addr: kafkago.TCP(c.brokers...), Timeout: timeout, Transport: c.transport}
}

// Reader builds a reader of rc over the brokers and the dialer; its errors
// are logged at warn, so a stalled consumer says why.
func (c *Connector) Reader(rc kafkago.ReaderConfig) *kafkago.Reader {
	rc.Brokers = c.brokers
	rc.Dialer = c.dialer
	if rc.ErrorLogger == nil {
		topic := rc.Topic
		rc.ErrorLogger = kafkago.LoggerFunc(func(msg string, args ...any) {
			c.log.Warn("kafka reader: "+fmt.Sprintf(msg, args...), "topic", topic)
		})
	}
	return kafkago.NewReader(rc)
}

// Dial connects to the first broker that answers.
func (c *Connector) Dial(ctx context.Context) (*kafkago.Conn, error) {
	var errs []error
	for _, b := range c.brokers {
		conn, err := c.dialer.DialContext(ctx, "tcp", b)
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("dial kafka %v: %w", c.brokers, errors.Join(errs...))
}

// DialLeader connects to the leader of topic/partition, found through the
// first broker that answers.
func (c *Connector) DialLeader(ctx context.Context, topic string, partition int) (*kafkago.Conn, error) {
	var errs []error
	for _, b := range c.brokers {
		conn, err := c.dialer.DialLeader(ctx, "tcp", b, topic, partition)
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("dial leader of %s/%d: %w", topic, partition, errors.Join(errs...))
}
