package kafka_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/assistlog/assistlog/internal/errpolicy"
	"github.com/assistlog/assistlog/internal/kafka"
	"github.com/assistlog/assistlog/internal/proctest"
	"github.com/assistlog/assistlog/internal/stacktest"
	"github.com/assistlog/assistlog/stack"
)

func port(t *testing.T) int {
	_, p, err := net.SplitHostPort(proctest.FreeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

// readBack reads the first n messages of topic/0 through conn.
func readBack(t *testing.T, ctx context.Context, conn *kafka.Connector, topic string, n int) []string {
	t.Helper()
	r := conn.Reader(kafkago.ReaderConfig{Topic: topic, Partition: 0, MaxWait: 200 * time.Millisecond})
	defer r.Close()
	var out []string
	for len(out) < n {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("read %s back: %v (got %q)", topic, err, out)
		}
		out = append(out, string(m.Value))
	}
	return out
}

// TestSecuredBroker runs the clients against a broker whose only listener
// is SASL_SSL with SCRAM: the configured clients produce and read back;
// without the CA, in plaintext or with a wrong password they are refused,
// and a refused password pauses the producer until the broker's
// credentials match, when the very send in flight completes.
func TestSecuredBroker(t *testing.T) {
	stacktest.Require(t, stacktest.Kafka)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	k, err := stack.StartSecuredKafka(ctx, stack.SecuredKafkaConfig{Name: "clients", BrokerPort: port(t), ControllerPort: port(t),
		Users: map[string]string{"writer": "writer-pw", "late": "not-yet-the-clients"}})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Stop()
	topic := fmt.Sprintf("secured-%d", time.Now().UnixNano())
	if err := k.CreateTopics(ctx, map[string]int{topic: 1}); err != nil {
		t.Fatal(err)
	}
	newProducer := func(cc kafka.ClientConfig) (*kafka.Producer, *prometheus.Registry, *syncBuffer) {
		reg := prometheus.NewRegistry()
		logs := &syncBuffer{}
		log := slog.New(slog.NewJSONHandler(logs, nil))
		pol, err := errpolicy.New(errpolicy.Config{RetryMin: 100 * time.Millisecond, RetryMax: time.Second, PauseInterval: time.Second}, log, reg)
		if err != nil {
			t.Fatal(err)
		}
		cfg := kafka.DefaultProducerConfig()
		cfg.ClientConfig = cc
		p, err := kafka.NewProducer(cfg, pol, log, reg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		return p, reg, logs
	}

	t.Run("scram over tls", func(t *testing.T) {
		p, _, _ := newProducer(k.ClientConfig("writer", "writer-pw", "SCRAM-SHA-256"))
		if err := p.Send(ctx, []kafkago.Message{{Topic: topic, Key: []byte("k"), Value: []byte("sealed")}}); err != nil {
			t.Fatal(err)
		}
		reader, err := kafka.NewConnector(k.ClientConfig("writer", "writer-pw", "SCRAM-SHA-512"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := readBack(t, ctx, reader, topic, 1); got[0] != "sealed" {
			t.Fatalf("read back %q", got)
		}
	})

	metadata := func(cc kafka.ClientConfig) error {
		conn, err := kafka.NewConnector(cc, nil)
		if err != nil {
			t.Fatal(err)
		}
		mctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		_, err = conn.Client(10*time.Second).Metadata(mctx, &kafkago.MetadataRequest{Topics: []string{topic}})
		return err
	}
	t.Run("no ca", func(t *testing.T) {
		cc := k.ClientConfig("writer", "writer-pw", "SCRAM-SHA-512")
		cc.TLS.CAFile = "" // the system's roots do not know the broker's CA
		err := metadata(cc)
		var unknown x509.UnknownAuthorityError
		if !errors.As(err, &unknown) {
			t.Fatalf("want a certificate verification error, got %v", err)
		}
	})
	t.Run("plaintext", func(t *testing.T) {
		for name, cc := range map[string]kafka.ClientConfig{
			"no tls, no sasl": {Brokers: []string{k.Brokers}},
			"sasl without tls": {Brokers: []string{k.Brokers},
				SASL: kafka.SASLConfig{Mechanism: "SCRAM-SHA-512", Username: "writer", Password: "writer-pw"}},
		} {
			if err := metadata(cc); err == nil {
				t.Errorf("%s: the TLS listener answered a plaintext client", name)
			} else {
				t.Logf("%s: refused: %v", name, err)
			}
		}
	})
	t.Run("no sasl", func(t *testing.T) {
		cc := k.ClientConfig("", "", "")
		err := metadata(cc)
		if err == nil {
			t.Fatal("the broker answered a client that did not authenticate")
		}
		t.Logf("refused: %v", err)
	})
	t.Run("wrong password pauses, then resumes", func(t *testing.T) {
		p, reg, logs := newProducer(k.ClientConfig("late", "the-clients-password", "SCRAM-SHA-512"))
		done := make(chan error, 1)
		go func() {
			done <- p.Send(ctx, []kafkago.Message{{Topic: topic, Key: []byte("k"), Value: []byte("kept while refused")}})
		}()
		stacktest.Eventually(t, time.Minute, "kafka paused on the refused password", func() error {
			if v := pausedGauge(t, reg); v != 1 {
				return fmt.Errorf("paused gauge = %v", v)
			}
			return nil
		})
		if !strings.Contains(logs.String(), "SASL Authentication Failed") {
			t.Fatalf("the log does not say the password was refused:\n%s", logs.String())
		}
		select {
		case err := <-done:
			t.Fatalf("send returned while the password was refused: %v", err)
		default:
		}
		if err := k.SetPassword(ctx, "late", "the-clients-password"); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("send after the password was fixed: %v", err)
			}
		case <-time.After(time.Minute):
			t.Fatal("send did not resume after the password was fixed")
		}
		if v := pausedGauge(t, reg); v != 0 {
			t.Fatalf("paused gauge after resuming = %v", v)
		}
		reader, err := k.AdminConnector()
		if err != nil {
			t.Fatal(err)
		}
		if got := readBack(t, ctx, reader, topic, 2); got[1] != "kept while refused" {
			t.Fatalf("read back %q", got)
		}
	})
}

func pausedGauge(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "assistlog_destination_paused" {
			for _, m := range mf.GetMetric() {
				if m.GetLabel()[0].GetValue() == kafka.Destination {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatal(`assistlog_destination_paused{destination="kafka"} is not registered`)
	return 0
}
