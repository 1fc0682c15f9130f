package event_test

import (
	"sync"
	"testing"

	"github.com/assistlog/assistlog/demo"
	"github.com/assistlog/assistlog/internal/event"
)

var (
	corpusOnce  sync.Once
	corpusLines [][]byte
	corpusErr   error
)

// generated is the benchmark's corpus: the lines make bench writes (the
// generator's events, as the collector reads them from a file).
func generated(b testing.TB) [][]byte {
	corpusOnce.Do(func() {
		cfg := demo.DefaultConfig()
		cfg.Days, cfg.Rounds = 2, 1
		evs, _, err := demo.FromShared(0, cfg)
		if err != nil {
			corpusErr = err
			return
		}
		for i := range evs[:min(len(evs), 20000)] {
			l, err := evs[i].Marshal()
			if err != nil {
				corpusErr = err
				return
			}
			corpusLines = append(corpusLines, l)
		}
	})
	if corpusErr != nil {
		b.Skipf("no generated events: %v", corpusErr)
	}
	return corpusLines
}

// BenchmarkParse is the collector's per-line cost on the generator's
// events. Run: go test -run '^$' -bench Parse -benchmem ./internal/event/
func BenchmarkParse(b *testing.B) {
	lines := generated(b)
	var n int64
	for _, l := range lines {
		n += int64(len(l))
	}
	b.SetBytes(n / int64(len(lines)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := event.ParseWithDefaultID(lines[i%len(lines)], "f-x-1"); err != nil {
			b.Fatal(err)
		}
	}
}
