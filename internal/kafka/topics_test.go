package kafka_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/assistlog/assistlog/internal/kafka"
	"github.com/assistlog/assistlog/internal/stacktest"
)

// TestTopicRetentionOnTheBroker creates the pipeline's topics (under
// unique names) with EnsureTopics, as `stack up` does, and reads their
// configs back from the broker (DescribeConfigs): the events topic keeps
// 7 days, the dead letters 30, the links topic is compacted with a
// week's tombstones, each rolling a segment daily. A topic that existed
// with other configs gets them on the next run.
func TestTopicRetentionOnTheBroker(t *testing.T) {
	ep := stacktest.Require(t, stacktest.Kafka)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	prefix := fmt.Sprintf("test-retention-%d-", time.Now().UnixNano()%1e9)
	var specs []kafka.TopicSpec
	for _, s := range kafka.Topics() {
		s.Name = prefix + s.Name
		specs = append(specs, s)
	}
	// The events topic exists already, as made before retention was set.
	stacktest.CreateTopics(t, ep.KafkaBrokers, map[string]int{specs[0].Name: 1})
	if err := kafka.EnsureTopics(ctx, ep.KafkaBrokers, specs); err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]string{
		prefix + kafka.EventsTopic:     {"cleanup.policy": "delete", "retention.ms": "604800000", "segment.ms": "86400000"},
		prefix + kafka.DeadLetterTopic: {"cleanup.policy": "delete", "retention.ms": "2592000000", "segment.ms": "86400000"},
		prefix + kafka.CRMLinksTopic:   {"cleanup.policy": "compact", "delete.retention.ms": "604800000", "segment.ms": "86400000"},
	}
	client := &kafkago.Client{Addr: kafkago.TCP(ep.KafkaBrokers), Timeout: 30 * time.Second}
	req := &kafkago.DescribeConfigsRequest{}
	for name, cfg := range want {
		r := kafkago.DescribeConfigRequestResource{ResourceType: kafkago.ResourceTypeTopic, ResourceName: name}
		for k := range cfg {
			r.ConfigNames = append(r.ConfigNames, k)
		}
		req.Resources = append(req.Resources, r)
	}
	// A changed config reaches the broker's metadata a moment after the
	// controller accepted it.
	stacktest.Eventually(t, 30*time.Second, "the topics' configs read back", func() error {
		resp, err := client.DescribeConfigs(ctx, req)
		if err != nil {
			return err
		}
		if len(resp.Resources) != len(want) {
			return fmt.Errorf("described %d topics, want %d", len(resp.Resources), len(want))
		}
		for _, r := range resp.Resources {
			if r.Error != nil {
				return fmt.Errorf("%s: %w", r.ResourceName, r.Error)
			}
			got := map[string]string{}
			for _, e := range r.ConfigEntries {
				got[e.ConfigName] = e.ConfigValue
			}
			if fmt.Sprint(got) != fmt.Sprint(want[r.ResourceName]) {
				return fmt.Errorf("%s: configs %v, want %v", r.ResourceName, got, want[r.ResourceName])
			}
		}
		return nil
	})
	// Running it again (every `stack up`) is harmless.
	if err := kafka.EnsureTopics(ctx, ep.KafkaBrokers, specs); err != nil {
		t.Fatalf("second run: %v", err)
	}
}
