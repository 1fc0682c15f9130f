// Package kafka holds what both pipeline programs and the local stack agree on
// about Kafka: topic names and how each topic is laid out.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

// Topic names. Both programs and the stack take them from here so a rename
// cannot leave one side behind.
const (
	// EventsTopic carries every valid assistant event, keyed by tenant/session
	// so one conversation stays in order on one partition.
	EventsTopic = "assistant.events"
	// DeadLetterTopic carries input that could not be accepted, with the
	// reason in headers and the raw bytes as the value.
	DeadLetterTopic = "assistant.deadletter"
	// CRMLinksTopic is compacted: the latest session → CRM id mapping per key,
	// shared by every shipper instance and surviving restarts.
	CRMLinksTopic = "assistant.crm-links"
)

// TopicSpec describes a topic the stack creates up front. Auto-creation is
// off on the broker, so a typo in a topic name fails loudly instead of
// creating a stray topic.
type TopicSpec struct {
	Name       string
	Partitions int
	Configs    map[string]string
}

// Retention of the topics (docs/retention.md). Kafka deletes or compacts
// whole closed segments only, so every topic also rolls a segment daily:
// with Kafka's default segment.ms of 7 days a record could outlive
// retention.ms by up to a week.
const (
	day = 24 * time.Hour
	// EventsRetention only has to outlive an outage of Elasticsearch or
	// Loki (the shipper resumes from its committed offsets): the stores
	// are the record, Kafka a buffer.
	EventsRetention = 7 * day
	// DeadLetterRetention is long enough to find, fix and replay.
	DeadLetterRetention = 30 * day
	// LinksTombstoneRetention keeps a deleted link's tombstone long enough
	// for every shipper reading the links topic to see it, even one that
	// was down as long as the events topic keeps events.
	LinksTombstoneRetention = 7 * day
	// SegmentRoll is how often a segment closes (and so becomes eligible
	// for deletion or compaction).
	SegmentRoll = day
)

func ms(d time.Duration) string { return fmt.Sprint(d.Milliseconds()) }

// Topics returns the topics the pipeline needs.
func Topics() []TopicSpec {
	return []TopicSpec{
		{Name: EventsTopic, Partitions: 6, Configs: map[string]string{
			"cleanup.policy":      "delete",
			"retention.ms":        ms(EventsRetention),
			"segment.ms":          ms(SegmentRoll),
			"min.insync.replicas": "1",
		}},
		{Name: DeadLetterTopic, Partitions: 1, Configs: map[string]string{
			"cleanup.policy": "delete",
			"retention.ms":   ms(DeadLetterRetention),
			"segment.ms":     ms(SegmentRoll),
		}},
		{Name: CRMLinksTopic, Partitions: 6, Configs: map[string]string{
			// Only the latest link per key is kept; a tombstone (a record
			// with a nil value) removes the key after delete.retention.ms.
			"cleanup.policy":      "compact",
			"delete.retention.ms": ms(LinksTombstoneRetention),
			"segment.ms":          ms(SegmentRoll),
		}},
	}
}

// EnsureTopics creates the topics that do not exist and sets the configs
// of those that do (an existing topic keeps its partitions), so a cluster
// made before a retention change gets it on the next run.
func EnsureTopics(ctx context.Context, broker string, specs []TopicSpec) error {
	client := &kafkago.Client{Addr: kafkago.TCP(broker), Timeout: 30 * time.Second}
	req := &kafkago.CreateTopicsRequest{Addr: kafkago.TCP(broker)}
	for _, t := range specs {
		tc := kafkago.TopicConfig{Topic: t.Name, NumPartitions: t.Partitions, ReplicationFactor: 1}
		for _, k := range sortedKeys(t.Configs) {
			tc.ConfigEntries = append(tc.ConfigEntries, kafkago.ConfigEntry{ConfigName: k, ConfigValue: t.Configs[k]})
		}
		req.Topics = append(req.Topics, tc)
	}
	// Right after start the controller may not yet accept topic creation.
	return retryAfterStart(ctx, func() error {
		resp, err := client.CreateTopics(ctx, req)
		if err != nil {
			return fmt.Errorf("create topics: %w", err)
		}
		var errs error
		var existing []TopicSpec
		for _, t := range specs {
			terr := resp.Errors[t.Name]
			switch {
			case errors.Is(terr, kafkago.TopicAlreadyExists):
				existing = append(existing, t)
			case terr != nil:
				errs = errors.Join(errs, fmt.Errorf("create topic %s: %w", t.Name, terr))
			}
		}
		if errs == nil && len(existing) > 0 {
			errs = alterConfigs(ctx, client, existing)
		}
		return errs
	})
}

// DeleteTopics deletes every topic whose name match accepts and returns
// how many. It returns once the broker's metadata no longer lists them,
// so what runs next does not see them.
func DeleteTopics(ctx context.Context, broker string, match func(name string) bool) (int, error) {
	client := &kafkago.Client{Addr: kafkago.TCP(broker), Timeout: time.Minute}
	var names []string
	list := func() error {
		md, err := client.Metadata(ctx, &kafkago.MetadataRequest{})
		if err != nil {
			return fmt.Errorf("list topics: %w", err)
		}
		names = names[:0]
		for _, t := range md.Topics {
			if match(t.Name) {
				names = append(names, t.Name)
			}
		}
		return nil
	}
	// Right after start the broker answers metadata before it takes admin
	// requests (a delete then got EOF).
	err := retryAfterStart(ctx, list)
	deleted := 0
	// A few hundred a request keeps each within the controller's timeout.
	for err == nil && len(names) > 0 {
		batch := names[:min(500, len(names))]
		names = names[len(batch):]
		err = retryAfterStart(ctx, func() error {
			resp, err := client.DeleteTopics(ctx, &kafkago.DeleteTopicsRequest{Topics: batch})
			if err != nil {
				return fmt.Errorf("delete %d topics: %w", len(batch), err)
			}
			var errs error
			for _, name := range batch {
				if terr := resp.Errors[name]; terr != nil && !errors.Is(terr, kafkago.UnknownTopicOrPartition) {
					errs = errors.Join(errs, fmt.Errorf("delete topic %s: %w", name, terr))
				}
			}
			return errs
		})
		if err == nil {
			deleted += len(batch)
		}
	}
	if err != nil || deleted == 0 {
		return deleted, err
	}
	// The broker's metadata follows the controller's a moment later.
	err = retryAfterStart(ctx, func() error {
		if err := list(); err != nil {
			return err
		}
		if len(names) > 0 {
			return fmt.Errorf("%d deleted topics still listed", len(names))
		}
		return nil
	})
	return deleted, err
}

// retryAfterStart tries an admin request once a second, 20 times at most:
// a broker that has just started answers some before it takes others.
func retryAfterStart(ctx context.Context, f func() error) error {
	var err error
	for attempt := 0; attempt < 20; attempt++ {
		if err = f(); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	return err
}

// alterConfigs sets each spec's configs on its existing topic, leaving
// the topic's other configs as they are.
func alterConfigs(ctx context.Context, client *kafkago.Client, specs []TopicSpec) error {
	req := &kafkago.IncrementalAlterConfigsRequest{}
	for _, t := range specs {
		r := kafkago.IncrementalAlterConfigsRequestResource{ResourceType: kafkago.ResourceTypeTopic, ResourceName: t.Name}
		for _, k := range sortedKeys(t.Configs) {
			r.Configs = append(r.Configs, kafkago.IncrementalAlterConfigsRequestConfig{Name: k, Value: t.Configs[k], ConfigOperation: kafkago.ConfigOperationSet})
		}
		req.Resources = append(req.Resources, r)
	}
	resp, err := client.IncrementalAlterConfigs(ctx, req)
	if err != nil {
		return fmt.Errorf("set topic configs: %w", err)
	}
	var errs []error
	for _, r := range resp.Resources {
		if r.Error != nil {
			errs = append(errs, fmt.Errorf("set the configs of topic %s: %w", r.ResourceName, r.Error))
		}
	}
	return errors.Join(errs...)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
