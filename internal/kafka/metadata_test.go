package kafka_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/assistlog/assistlog/internal/errpolicy"
	"github.com/assistlog/assistlog/internal/kafka"
	"github.com/assistlog/assistlog/internal/stacktest"
)

// TestProducerCachesOnlyItsTopics: a producer given its topics keeps the
// metadata of those alone, not of every topic in the cluster (the shared
// stack holds thousands), and refuses at once a message for another topic
// rather than pausing on it forever.
func TestProducerCachesOnlyItsTopics(t *testing.T) {
	ep := stacktest.Require(t, stacktest.Kafka)
	suffix := time.Now().UnixNano()
	mine, other := fmt.Sprintf("test-meta-mine-%d", suffix), fmt.Sprintf("test-meta-other-%d", suffix)
	stacktest.CreateTopics(t, ep.KafkaBrokers, map[string]int{mine: 2, other: 1})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := prometheus.NewRegistry()
	pol, err := errpolicy.New(errpolicy.Config{RetryMin: 100 * time.Millisecond, RetryMax: time.Second, PauseInterval: time.Second}, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := kafka.DefaultProducerConfig()
	cfg.Brokers = []string{ep.KafkaBrokers}
	cfg.Topics = []string{mine}
	p, err := kafka.NewProducer(cfg, pol, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.Send(ctx, []kafkago.Message{{Topic: mine, Key: []byte("k"), Value: []byte("v")}}); err != nil {
		t.Fatal(err)
	}
	// What the transport's cache holds: a request for all topics is
	// answered from it.
	client := &kafkago.Client{Addr: kafkago.TCP(ep.KafkaBrokers), Transport: p.Transport(), Timeout: 10 * time.Second}
	meta, err := client.Metadata(ctx, &kafkago.MetadataRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tp := range meta.Topics {
		names = append(names, tp.Name)
	}
	if len(names) != 1 || names[0] != mine || len(meta.Topics[0].Partitions) != 2 {
		t.Fatalf("the producer's metadata cache holds %d topics (want only %s): %.200v", len(names), mine, names)
	}
	err = p.Send(ctx, []kafkago.Message{{Topic: other, Value: []byte("v")}})
	if err == nil || !strings.Contains(err.Error(), "is not one of the producer's topics") {
		t.Fatalf("send to another topic: %v", err)
	}
}
