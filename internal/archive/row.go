// Package archive writes masked events as Parquet objects into S3-compatible
// storage, Hive-partitioned by tenant and the tenant's local date, named so a
// re-upload after a crash replaces an object rather than duplicating it.
package archive

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/assistlog/assistlog/internal/event"
	"github.com/assistlog/assistlog/internal/pii"
)

// Row is one archived event. The partition columns (tenant, dt) are not in
// the file: Athena, Trino and DuckDB take them from the object's path.
type Row struct {
	EventID   string    `parquet:"event_id"`
	Timestamp time.Time `parquet:"timestamp,timestamp(microsecond)"`
	Channel   string    `parquet:"channel"`
	SessionID string    `parquet:"session_id"`
	UserID    *string   `parquet:"user_id,optional"`
	// UserPhone is masked ("+7 9** ***-**-67"); UserPhoneHash is the keyed
	// hash auditors search by, the same as in Elasticsearch.
	UserPhone     *string  `parquet:"user_phone,optional"`
	UserPhoneHash *string  `parquet:"user_phone_hash,optional"`
	EventType     string   `parquet:"event_type"`
	Level         string   `parquet:"level"`
	Intent        *string  `parquet:"intent,optional"`
	Confidence    *float64 `parquet:"confidence,optional"`
	CRMID         *string  `parquet:"crm_id,optional"`
	Outcome       *string  `parquet:"outcome,optional"`
	LatencyMS     *int64   `parquet:"latency_ms,optional"`
	Seq           *int64   `parquet:"seq,optional"`
	// Text is payload.text (masked), the column most queries read.
	Text *string `parquet:"text,optional"`
	// Payload and Scenario are the masked JSON objects as strings.
	Payload       *string `parquet:"payload,optional"`
	Scenario      *string `parquet:"scenario,optional"`
	PIIMasked     *string `parquet:"pii_masked,optional"` // comma-separated field names
	SchemaVersion int32   `parquet:"schema_version"`
	// KafkaPartition and KafkaOffset say where the event was read: the
	// lineage an object's name refers to.
	KafkaPartition int32 `parquet:"kafka_partition"`
	KafkaOffset    int64 `parquet:"kafka_offset"`
}

func opt(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// NewRow renders a masked event; it holds nothing the masker did not pass.
func NewRow(m pii.Masked, partition int, offset int64) (Row, error) {
	e := m.Event
	r := Row{EventID: e.EventID, Timestamp: e.Time().UTC(), Channel: e.Channel, SessionID: e.SessionID,
		UserID: opt(e.UserID), UserPhone: opt(e.UserPhone), UserPhoneHash: opt(m.PhoneHash),
		EventType: string(e.Type), Level: e.Level, Intent: opt(e.Intent), Confidence: e.Confidence,
		CRMID: opt(e.CRMID), Outcome: opt(e.Outcome), LatencyMS: e.LatencyMS, Seq: e.Seq,
		Text: opt(e.Text()), PIIMasked: opt(strings.Join(m.Fields, ",")), SchemaVersion: int32(e.SchemaVersion),
		KafkaPartition: int32(partition), KafkaOffset: offset}
	if e.Payload != nil {
		b, err := json.Marshal(e.Payload)
		if err != nil {
			return r, fmt.Errorf("event %s: payload: %w", e.EventID, err)
		}
		r.Payload = opt(string(b))
	}
	if e.Scenario != nil {
		b, err := json.Marshal(e.Scenario)
		if err != nil {
			return r, fmt.Errorf("event %s: scenario: %w", e.EventID, err)
		}
		r.Scenario = opt(string(b))
	}
	return r, nil
}

// Dir is the Hive partition of an event: prefix/tenant=<t>/dt=<YYYY-MM-DD>,
// the date in the tenant's zone, so a day in Athena is the business's day.
func Dir(prefix string, e *event.Event, loc *time.Location) string {
	p := "tenant=" + e.Tenant + "/dt=" + e.Time().In(loc).Format(time.DateOnly)
	if prefix == "" {
		return p
	}
	return strings.TrimSuffix(prefix, "/") + "/" + p
}

// ObjectName is an object's name in its partition: topic, Kafka partition
// and the offset of the first event it holds, zero-padded so names sort by
// offset. Like Kafka Connect's S3 sink it does not carry the last offset:
// after a crash the events from the committed offset on are read again,
// and whatever chunk they fall into, an event that began an object begins
// it again (no earlier event of its partition and day was in that chunk
// either), so the object is replaced, never joined by an overlapping one.
func ObjectName(topic string, partition int, first int64) string {
	return fmt.Sprintf("%s+%d+%020d.parquet", topic, partition, first)
}
