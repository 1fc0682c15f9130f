package main

import (
	"bytes"
	"path/filepath"
	"testing"
	"time"
)

// TestKillWithBatchesInFlight: one large file is sent with max_in_flight
// batches at once; the collector is killed with SIGKILL while batches are
// in flight, three times, and restarted. At each kill every line up to the
// saved position is in Kafka already (the position never passes a line
// Kafka has not acknowledged, however the batches' acknowledgements were
// ordered), and in the end every line is in Kafka, none missing.
func TestKillWithBatchesInFlight(t *testing.T) {
	const total, kills = 60000, 3
	e := newEnv(t)
	path := filepath.Join(e.logDir, "big.jsonl")
	data, ids := newLines(t, total).take(total)
	// ends[i] is the offset just past line i.
	ends := make([]int64, 0, total)
	var off int64
	for _, l := range bytes.SplitAfter(data, []byte("\n"))[:total] {
		off += int64(len(l))
		ends = append(ends, off)
	}
	appendFile(t, path, data)

	topic := &topicReader{broker: e.ep.KafkaBrokers, topic: e.topic, next: map[int]int64{}}
	inKafka := map[string]bool{}
	var last int64
	hit := 0
	e.start()
	for hit < kills {
		// Kill as soon as the position moved on, while the file is not done.
		var saved int64
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			if saved = savedOffsets(t, e.positionsPath())[inode(t, path)]; saved > last {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the saved position stayed at %d for 60s\ncollector log:\n%s", last, e.logTail())
			}
		}
		e.kill()
		if saved = savedOffsets(t, e.positionsPath())[inode(t, path)]; saved == int64(len(data)) {
			t.Fatalf("the whole file was acknowledged before kill %d: make the file bigger", hit+1)
		}
		for _, id := range topic.readNew(t) {
			inKafka[id] = true
		}
		covered, beyond := 0, 0
		for i, end := range ends {
			switch {
			case end <= saved && !inKafka[ids[i]]:
				t.Fatalf("kill %d: the saved position %d covers line %d (ending at %d), which is not in Kafka", hit+1, saved, i, end)
			case end <= saved:
				covered++
			case inKafka[ids[i]]:
				beyond++
			}
		}
		if beyond > maxInFlight*batchLines {
			t.Errorf("kill %d: %d lines in Kafka beyond the saved position: more than the batches in flight (%d lines)", hit+1, beyond, maxInFlight*batchLines)
		}
		t.Logf("kill %d: saved offset %d of %d covers %d lines, all in Kafka; %d more lines in Kafka beyond it", hit+1, saved, len(data), covered, beyond)
		last = saved
		hit++
		e.start()
	}
	dups := e.waitForIDs(ids, 180*time.Second)
	t.Logf("%d lines, %d kill -9 with batches in flight, none missing, %d duplicates", total, kills, dups)
	e.stop()
}
