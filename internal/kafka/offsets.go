package kafka

import (
	"context"
	"fmt"
	"sort"

	kafkago "github.com/segmentio/kafka-go"
)

// PartitionOffsets is where one partition of a topic stands for a group.
type PartitionOffsets struct {
	Partition   int
	First, Last int64 // the partition's first offset and its end (the next offset written)
	// Committed is the group's committed offset, or First when the group
	// has committed nothing there (it starts at the beginning).
	Committed int64
}

// GroupOffsets asks the brokers for topic's partitions, their ends and what
// group committed, in partition order. The shipper's lag gauge and
// `dlq replay` read the same three answers.
func GroupOffsets(ctx context.Context, client *kafkago.Client, topic, group string) ([]PartitionOffsets, error) {
	meta, err := client.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("metadata of %s: %w", topic, err)
	}
	var ids []int
	var reqs []kafkago.OffsetRequest
	for _, t := range meta.Topics {
		if t.Error != nil {
			return nil, fmt.Errorf("metadata of %s: %w", topic, t.Error)
		}
		for _, p := range t.Partitions {
			ids = append(ids, p.ID)
			reqs = append(reqs, kafkago.FirstOffsetOf(p.ID), kafkago.LastOffsetOf(p.ID))
		}
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("topic %s has no partitions", topic)
	}
	offs, err := client.ListOffsets(ctx, &kafkago.ListOffsetsRequest{Topics: map[string][]kafkago.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, fmt.Errorf("offsets of %s: %w", topic, err)
	}
	done, err := client.OffsetFetch(ctx, &kafkago.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: ids}})
	if err == nil && done.Error != nil {
		err = done.Error
	}
	if err != nil {
		return nil, fmt.Errorf("committed offsets of group %s: %w", group, err)
	}
	committed := map[int]int64{}
	for _, p := range done.Topics[topic] {
		if p.Error != nil {
			return nil, fmt.Errorf("committed offset of group %s on %s/%d: %w", group, topic, p.Partition, p.Error)
		}
		committed[p.Partition] = p.CommittedOffset
	}
	var out []PartitionOffsets
	for _, p := range offs.Topics[topic] {
		if p.Error != nil {
			return nil, fmt.Errorf("offsets of %s/%d: %w", topic, p.Partition, p.Error)
		}
		c, ok := committed[p.Partition]
		if !ok || c < p.FirstOffset {
			c = p.FirstOffset // nothing committed (-1), or committed before what retention kept
		}
		out = append(out, PartitionOffsets{Partition: p.Partition, First: p.FirstOffset, Last: p.LastOffset, Committed: c})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Partition < out[j].Partition })
	return out, nil
}
