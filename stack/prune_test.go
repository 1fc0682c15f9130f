package stack

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

// TestPruneDropsOnlyTestTopics: a Kafka of its own, started through the
// stack's own up. PruneTestTopics deletes the topics tests made (test-*,
// smoke-*) and every other topic, the pipeline's included, stays; a
// restart alone deletes nothing (the fault tests restart Kafka under their
// own topics).
func TestPruneDropsOnlyTestTopics(t *testing.T) {
	l, err := LayoutFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	// Kafka comes from the cache the shared stack's up filled (stacktest,
	// which says so for other tests, would be an import cycle here).
	if !exists(filepath.Join(l.kafkaHome(), "libs", ".complete")) {
		msg := "Kafka is not installed: run `go run ./stack/cmd/stack up` first"
		if os.Getenv("CI") == "true" || os.Getenv("ASSISTLOG_INTEGRATION") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	l.Dir = t.TempDir()
	l.Ports.Kafka, l.Ports.KafkaController = freePort(t), freePort(t)
	s := New(l, io.Discard)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	t.Cleanup(func() { _ = s.Down(context.Background(), "kafka") })
	if err := s.Up(ctx, "kafka"); err != nil {
		t.Fatal(err)
	}
	broker := l.Endpoints().KafkaBrokers
	client := &kafkago.Client{Addr: kafkago.TCP(broker), Timeout: 30 * time.Second}
	made := []string{"test-events-x", "test-dlq-x", "smoke-y", "keep-me", "tests-are-not-a-prefix"}
	req := &kafkago.CreateTopicsRequest{}
	for _, name := range made {
		req.Topics = append(req.Topics, kafkago.TopicConfig{Topic: name, NumPartitions: 2, ReplicationFactor: 1})
	}
	resp, err := client.CreateTopics(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	for name, err := range resp.Errors {
		if err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
	}
	topics := func() []string {
		t.Helper()
		md, err := client.Metadata(ctx, &kafkago.MetadataRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, tp := range md.Topics {
			if !strings.HasPrefix(tp.Name, "__") {
				names = append(names, tp.Name)
			}
		}
		sort.Strings(names)
		return names
	}
	all := strings.Join(topics(), " ")

	// Restarted: nothing is deleted.
	if err := s.Down(ctx, "kafka"); err != nil {
		t.Fatal(err)
	}
	if err := s.Up(ctx, "kafka"); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(topics(), " "); got != all {
		t.Fatalf("a restart changed the topics:\n%s\nwas\n%s", got, all)
	}

	// Pruned: the test topics are gone, the rest stay.
	n, err := s.PruneTestTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := topics()
	want := []string{"assistant.crm-links", "assistant.deadletter", "assistant.events", "keep-me", "tests-are-not-a-prefix"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("after the prune the topics are %v, want %v (before: %s)", got, want, all)
	}
	if n != 3 {
		t.Errorf("the prune says it deleted %d topics, want 3", n)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
