// Package kafka holds what both pipeline programs and the local stack agree on
// about Kafka: topic names and how each topic is laid out.
package kafka

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

// Topics returns the topics the pipeline needs.
func Topics() []TopicSpec {
	return []TopicSpec{
		{Name: EventsTopic, Partitions: 6, Configs: map[string]string{
			"retention.ms":        "604800000", // 7 days: Kafka is a buffer, Elasticsearch is the archive
			"min.insync.replicas": "1",
		}},
		{Name: DeadLetterTopic, Partitions: 1, Configs: map[string]string{
			"retention.ms": "2592000000", // 30 days: long enough to fix and replay
		}},
		{Name: CRMLinksTopic, Partitions: 6, Configs: map[string]string{
			"cleanup.policy": "compact",
		}},
	}
}
