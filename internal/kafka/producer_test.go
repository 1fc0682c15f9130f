package kafka_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/assistlog/assistlog/internal/errpolicy"
	"github.com/assistlog/assistlog/internal/kafka"
	"github.com/assistlog/assistlog/internal/stacktest"
)

// syncBuffer is a log destination read while the producer writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestMissingTopicPauses points the producer at a topic that does not exist
// (auto-creation is off in the stack, as in production): the send neither
// spins silently nor gives up; the paused gauge is 1 and the log says what
// is wrong. Once an operator creates the topic, the same send completes and
// the message is in Kafka.
func TestMissingTopicPauses(t *testing.T) {
	ep := stacktest.Require(t, stacktest.Kafka)
	reg := prometheus.NewRegistry()
	var logs syncBuffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	pol, err := errpolicy.New(errpolicy.Config{RetryMin: 100 * time.Millisecond, RetryMax: time.Second, PauseInterval: time.Second}, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := kafka.DefaultProducerConfig()
	cfg.Brokers = []string{ep.KafkaBrokers}
	p, err := kafka.NewProducer(cfg, pol, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	topic := fmt.Sprintf("test-missing-%d", time.Now().UnixNano())
	done := make(chan error, 1)
	go func() {
		done <- p.Send(context.Background(), []kafkago.Message{{Topic: topic, Key: []byte("k"), Value: []byte("kept while paused")}})
	}()
	paused := func() float64 {
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
		t.Fatal("assistlog_destination_paused{destination=\"kafka\"} is not registered")
		return 0
	}
	stacktest.Eventually(t, 30*time.Second, "kafka paused", func() error {
		if v := paused(); v != 1 {
			return fmt.Errorf("paused gauge = %v", v)
		}
		return nil
	})
	if !strings.Contains(logs.String(), "Unknown Topic Or Partition") || !strings.Contains(logs.String(), "paused") {
		t.Fatalf("the log does not say the topic is missing and the stream paused:\n%s", logs.String())
	}
	select {
	case err := <-done:
		t.Fatalf("send returned while the topic was missing: %v", err)
	default:
	}
	stacktest.CreateTopics(t, ep.KafkaBrokers, map[string]int{topic: 1})
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("send after the topic was created: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("send did not resume after the topic was created")
	}
	if v := paused(); v != 0 {
		t.Fatalf("paused gauge after resuming = %v", v)
	}
	if n, err := testutil.GatherAndCount(reg, "assistlog_kafka_messages_produced_total"); err != nil || n != 1 {
		t.Fatalf("produced series = %d (%v)", n, err)
	}
	msgs := stacktest.ReadTopic(t, ep.KafkaBrokers, topic)
	if len(msgs) != 1 || string(msgs[0].Value) != "kept while paused" {
		t.Fatalf("topic holds %d messages", len(msgs))
	}
}
