package stacktest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

// CreateTopics creates topics with the given partition counts; it fails
// the test if any exists already.
func CreateTopics(t *testing.T, broker string, topics map[string]int) {
	t.Helper()
	client := &kafkago.Client{Addr: kafkago.TCP(broker), Timeout: 30 * time.Second}
	req := &kafkago.CreateTopicsRequest{}
	for name, parts := range topics {
		req.Topics = append(req.Topics, kafkago.TopicConfig{Topic: name, NumPartitions: parts, ReplicationFactor: 1})
	}
	resp, err := client.CreateTopics(context.Background(), req)
	if err != nil {
		t.Fatalf("create topics: %v", err)
	}
	for name, err := range resp.Errors {
		if err != nil {
			t.Fatalf("create topic %s: %v", name, err)
		}
	}
}

// ReadTopic reads every message of every partition of topic, from the
// first offset to the current end.
func ReadTopic(t *testing.T, broker, topic string) []kafkago.Message {
	t.Helper()
	return ReadTopicFrom(t, broker, topic, nil)
}

// ReadTopicFrom reads every partition of topic from next[partition] (or its
// first offset) to the current end, and moves next past what it read, so
// a test checking a topic again and again reads only what is new. next may
// be nil: the whole topic.
func ReadTopicFrom(t *testing.T, broker, topic string, next map[int]int64) []kafkago.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := kafkago.DialContext(ctx, "tcp", broker)
	if err != nil {
		t.Fatalf("dial kafka: %v", err)
	}
	parts, err := conn.ReadPartitions(topic)
	conn.Close()
	if err != nil {
		t.Fatalf("partitions of %s: %v", topic, err)
	}
	var out []kafkago.Message
	for _, p := range parts {
		lc, first, last, err := leaderOffsets(ctx, broker, topic, p.ID)
		if err != nil {
			t.Fatalf("offsets %s/%d: %v", topic, p.ID, err)
		}
		off := max(first, next[p.ID])
		for off < last {
			from := off
			if _, err := lc.Seek(off, kafkago.SeekAbsolute); err != nil {
				lc.Close()
				t.Fatal(err)
			}
			_ = lc.SetReadDeadline(time.Now().Add(10 * time.Second))
			b := lc.ReadBatch(1, 10<<20)
			for {
				m, err := b.ReadMessage()
				if err != nil {
					break
				}
				out = append(out, m)
				off = m.Offset + 1
			}
			if err := b.Close(); err != nil && !errors.Is(err, kafkago.ErrGenerationEnded) {
				lc.Close()
				t.Fatalf("read %s/%d at %d: %v", topic, p.ID, off, err)
			}
			if off == from {
				lc.Close()
				t.Fatalf("read %s/%d: no message at offset %d of %d", topic, p.ID, off, last)
			}
		}
		if next != nil {
			next[p.ID] = off
		}
		lc.Close()
	}
	return out
}

// leaderOffsets connects to a partition's leader and reads its first and
// last offsets, waiting out what a broker answers while it settles after a
// restart (the outage tests restart it): a not-yet-elected leader is
// "Not Leader For Partition", which is temporary.
func leaderOffsets(ctx context.Context, broker, topic string, part int) (*kafkago.Conn, int64, int64, error) {
	for {
		lc, err := kafkago.DialLeader(ctx, "tcp", broker, topic, part)
		if err == nil {
			first, last, rerr := lc.ReadOffsets()
			if rerr == nil {
				return lc, first, last, nil
			}
			lc.Close()
			err = rerr
		}
		var kerr kafkago.Error
		if !errors.As(err, &kerr) || !kerr.Temporary() {
			return nil, 0, 0, err
		}
		select {
		case <-ctx.Done():
			return nil, 0, 0, fmt.Errorf("%w (still after %v)", err, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}
