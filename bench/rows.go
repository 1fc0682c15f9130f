package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/elastic/go-elasticsearch/v8/esutil"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/assistlog/assistlog/internal/elastic"
	"github.com/assistlog/assistlog/internal/errpolicy"
	"github.com/assistlog/assistlog/internal/event"
	"github.com/assistlog/assistlog/internal/loki"
	"github.com/assistlog/assistlog/internal/pii"

	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
)

// Row 1: the collector tailing files into Kafka against kcat -P producing
// the same lines with the same keys (one kcat per file, as the collector
// tails each file), 6 partitions, acks=all, snappy. Both are timed from
// their start until Kafka holds every message.
func rowCollector(ctx context.Context, e *env) ([]Measure, error) {
	// 300k events (≈ 107 MB, the issue's own hand measurement) rather than
	// 1M: the full make bench must stay under 20 minutes on 2 cores with
	// every row, and generating 1M events holds ≈ 1.5 GB.
	n := e.size(300_000, 4_000)
	evs, lines, err := e.data(n)
	if err != nil {
		return nil, err
	}
	var out []Measure
	for _, files := range []int{1, 8} {
		m, err := e.collectorVsKcat(ctx, evs, lines, files)
		if err != nil {
			return out, err
		}
		out = append(out, m)
	}
	return out, nil
}

func (e *env) collectorVsKcat(ctx context.Context, evs []event.Event, lines [][]byte, files int) (Measure, error) {
	n := len(lines)
	m := Measure{What: fmt.Sprintf("file → Kafka, %d file(s), %d events", files, n), Unit: "events/s", PeerName: "kcat -P",
		HigherBetter: true, Target: "≥ 1.0×", Events: n}
	dir, err := e.dir("r1", strconv.Itoa(files))
	if err != nil {
		return m, err
	}
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return m, err
	}
	paths, err := writeFiles(data, evs, lines, files)
	if err != nil {
		return m, err
	}
	// kcat reads "key<TAB>line" (JSON escapes tabs, so the split is exact).
	keyed := make([][]byte, n)
	for i := range lines {
		keyed[i] = append(append(evs[i].Key(), '\t'), lines[i]...)
	}
	kdir := filepath.Join(dir, "kcat")
	if err := os.MkdirAll(kdir, 0o755); err != nil {
		return m, err
	}
	kpaths, err := writeFiles(kdir, evs, keyed, files)
	if err != nil {
		return m, err
	}

	peerTopic, ownTopic := e.name("r1", strconv.Itoa(files), "kcat"), e.name("r1", strconv.Itoa(files), "collector")
	for _, t := range []string{peerTopic, ownTopic} {
		if err := e.createTopic(ctx, t, 6); err != nil {
			return m, err
		}
	}
	if err := e.createTopic(ctx, ownTopic+"-dlq", 1); err != nil {
		return m, err
	}
	defer e.deleteTopics(peerTopic, ownTopic, ownTopic+"-dlq")

	// The peer.
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(kpaths))
	for i, p := range kpaths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.CommandContext(ctx, "kcat", "-P", "-b", e.ep.KafkaBrokers, "-t", peerTopic, "-z", "snappy",
				"-X", "acks=all", "-K", "\t", "-l", p)
			if out, err := cmd.CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("kcat: %w: %s", err, out)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return m, err
		}
	}
	done, err := e.waitTopic(ctx, 10*time.Minute, peerTopic, "", n)
	if err != nil {
		return m, err
	}
	m.Peer = float64(n) / done.Sub(start).Seconds()

	// assistlog.
	start = time.Now()
	c, err := e.startCollector(ctx, collectorRun{dir: dir, topic: ownTopic, include: []string{filepath.Join(data, "*.jsonl")}})
	if err != nil {
		return m, err
	}
	defer c.kill()
	done, err = e.waitTopic(ctx, 10*time.Minute, ownTopic, "", n)
	if err != nil {
		return m, fmt.Errorf("%w; collector log: %s", err, c.tail(10))
	}
	m.Assistlog = float64(n) / done.Sub(start).Seconds()
	_ = paths
	m.Complete, err = e.exactly(ctx, n, ownTopic, peerTopic)
	return m, err
}

// exactly checks each topic holds n messages: every line arrived, none twice.
func (e *env) exactly(ctx context.Context, n int, topics ...string) (bool, error) {
	for _, t := range topics {
		total, _, err := e.topicCount(ctx, t, "")
		if err != nil {
			return false, err
		}
		if total != int64(n) {
			e.logf("%s holds %d messages, want %d", t, total, n)
			return false, nil
		}
	}
	return true, nil
}

// Row 3: the shipper from a topic already full to Elasticsearch and Loki,
// against the ceiling: go-elasticsearch's BulkIndexer indexing the same
// documents (masked as the shipper stores them) from memory into the same
// node, Elasticsearch only.
func rowShipper(ctx context.Context, e *env) ([]Measure, error) {
	n := e.size(100_000, 3_000)
	evs, lines, err := e.data(n)
	if err != nil {
		return nil, err
	}
	m := Measure{What: fmt.Sprintf("Kafka → Elasticsearch + Loki, %d events", n), Unit: "events/s", PeerName: "BulkIndexer",
		HigherBetter: true, Target: "≥ 0.9×", Events: n}
	ceiling, ok, err := e.bulkCeiling(ctx, evs, false)
	if err != nil {
		return nil, err
	}
	m.Peer = ceiling
	// The same with Loki fed the same lines at once from memory: on a
	// small machine Loki's ingestion shares the cores with Elasticsearch,
	// which the Elasticsearch-only ceiling does not pay.
	both := Measure{What: fmt.Sprintf("Kafka → Elasticsearch + Loki, %d events, against both sinks fed from memory", n), Unit: "events/s",
		PeerName: "BulkIndexer + Loki push", HigherBetter: true, Target: "report", Events: n}
	var ok2 bool
	both.Peer, ok2, err = e.bulkCeiling(ctx, evs, true)
	if err != nil {
		return nil, err
	}
	rate, complete, err := e.shipOnce(ctx, "r3", evs, lines, 1)
	if err != nil {
		return nil, err
	}
	m.Assistlog, m.Complete = rate, complete && ok
	both.Assistlog, both.Complete = rate, complete && ok2
	return []Measure{m, both}, nil
}

// bulkCeiling indexes the documents with esutil.BulkIndexer (its default
// workers and flush size) into a fresh alias with assistlog's template.
func (e *env) bulkCeiling(ctx context.Context, evs []event.Event, withLoki bool) (float64, bool, error) {
	alias := e.name("ceiling", strconv.FormatBool(withLoki))
	defer e.dropIndices(alias + "-*")
	cfg := elastic.DefaultConfig()
	cfg.URLs, cfg.Alias = []string{e.ep.ElasticsearchURL}, alias
	if err := e.prepareIndices(ctx, alias, evs); err != nil {
		return 0, false, err
	}
	tp, err := elastic.NewTransport(cfg)
	if err != nil {
		return 0, false, err
	}
	masker, err := pii.New("bench-secret-0123456789abcdef")
	if err != nil {
		return 0, false, err
	}
	docs := make([][]byte, len(evs))
	index := make([]string, len(evs))
	now := time.Now()
	for i := range evs {
		ev := evs[i]
		mk := masker.Apply(&ev)
		b, _ := mk.Event.Marshal()
		var doc map[string]any
		_ = json.Unmarshal(b, &doc)
		doc["@timestamp"], doc["ingested_at"] = mk.Event.Timestamp, now.UTC().Format(time.RFC3339Nano)
		if mk.PhoneHash != "" {
			doc["user_phone_hash"] = mk.PhoneHash
		}
		docs[i], _ = json.Marshal(doc)
		index[i] = alias + "-" + ev.Time().UTC().Format("2006.01")
	}
	var entries []loki.Entry
	app := e.name("ceiling-loki")
	var lk *loki.Client
	if withLoki {
		lcfg := loki.DefaultConfig()
		lcfg.URL = e.ep.LokiURL
		// The stack's Loki limits, as the shipper's config states them.
		lcfg.MaxChunkAge, lcfg.PerStreamRateLimit, lcfg.PerStreamRateLimitBurst = 336*time.Hour, 32<<20, 64<<20
		log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
		pol, err := errpolicy.New(errpolicy.DefaultConfig(), log, prometheus.NewRegistry())
		if err != nil {
			return 0, false, err
		}
		if lk, err = loki.New(lcfg, pol, log, prometheus.NewRegistry()); err != nil {
			return 0, false, err
		}
		for i := range evs {
			ev := evs[i]
			mk := masker.Apply(&ev)
			line, _ := mk.Event.Marshal()
			entries = append(entries, loki.Entry{Labels: map[string]string{"app": app, "tenant": ev.Tenant, "channel": ev.Channel, "event_type": string(ev.Type), "level": ev.Level},
				Time: ev.Time(), Line: string(line), Metadata: map[string]string{"session_id": ev.SessionID, "event_id": ev.EventID}})
		}
	}
	var failed int64
	var mu sync.Mutex
	start := time.Now()
	lokiDone := make(chan error, 1)
	go func() {
		// Two pushes of 1,000 lines at a time, as the shipper's batches.
		var wg sync.WaitGroup
		errs := make(chan error, 2)
		for w := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w * 1000; i < len(entries); i += 2000 {
					if _, err := lk.Push(ctx, entries[i:min(i+1000, len(entries))]); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		lokiDone <- <-errs
	}()
	bi, err := esutil.NewBulkIndexer(esutil.BulkIndexerConfig{Client: tp, FlushBytes: 5 << 20})
	if err != nil {
		return 0, false, err
	}
	for i := range docs {
		err := bi.Add(ctx, esutil.BulkIndexerItem{Action: "create", Index: index[i], DocumentID: evs[i].EventID, Body: bytes.NewReader(docs[i]),
			OnFailure: func(context.Context, esutil.BulkIndexerItem, esutil.BulkIndexerResponseItem, error) {
				mu.Lock()
				failed++
				mu.Unlock()
			}})
		if err != nil {
			return 0, false, err
		}
	}
	if err := bi.Close(ctx); err != nil {
		return 0, false, err
	}
	if err := <-lokiDone; err != nil {
		return 0, false, fmt.Errorf("loki push: %w", err)
	}
	took := time.Since(start)
	st := bi.Stats()
	e.logf("BulkIndexer: %d created, %d failed, %d requests in %s", st.NumCreated, failed, st.NumRequests, took)
	count, err := e.esCount(ctx, alias)
	if err != nil {
		return 0, false, err
	}
	ok := count == len(evs) && failed == 0
	if withLoki {
		lines, err := e.lokiCount(ctx, fmt.Sprintf(`{app=%q}`, app))
		if err != nil {
			return 0, false, err
		}
		ok = ok && lines == len(evs)
	}
	return float64(len(evs)) / took.Seconds(), ok, nil
}

// prepareIndices installs assistlog's index template for alias and creates
// the monthly indices the events fall in, so that neither side of a
// comparison is timed creating indices (seconds on a busy node).
func (e *env) prepareIndices(ctx context.Context, alias string, evs []event.Event) error {
	cfg := elastic.DefaultConfig()
	cfg.URLs, cfg.Alias = []string{e.ep.ElasticsearchURL}, alias
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	pol, err := errpolicy.New(errpolicy.DefaultConfig(), log, prometheus.NewRegistry())
	if err != nil {
		return err
	}
	w, err := elastic.New(cfg, pol, log, prometheus.NewRegistry())
	if err != nil {
		return err
	}
	if err := w.Setup(ctx); err != nil {
		return err
	}
	seen := map[string]bool{}
	for i := range evs {
		idx := w.IndexFor(evs[i].Time())
		if seen[idx] {
			continue
		}
		seen[idx] = true
		if err := httpDo(ctx, http.MethodPut, e.ep.ElasticsearchURL+"/"+idx+"?wait_for_active_shards=1", []byte("{}"), nil); err != nil {
			return fmt.Errorf("create index %s: %w", idx, err)
		}
	}
	return nil
}

// shipOnce runs k shipper instances in one group on a fresh topic, then
// produces the events and waits until the group committed them all; it
// returns events/s (from the first event produced to the last commit) and whether Elasticsearch
// and Loki each hold exactly the events.
func (e *env) shipOnce(ctx context.Context, part string, evs []event.Event, lines [][]byte, k int) (float64, bool, error) {
	n := len(evs)
	topic, alias, app := e.name(part, "events"), e.name(part), e.name(part)
	dir, err := e.dir(part, strconv.Itoa(k))
	if err != nil {
		return 0, false, err
	}
	if err := e.createTopic(ctx, topic, 6); err != nil {
		return 0, false, err
	}
	if err := e.createTopic(ctx, topic+"-dlq", 1); err != nil {
		return 0, false, err
	}
	defer e.deleteTopics(topic, topic+"-dlq")
	defer e.dropIndices(alias + "-*")
	if err := e.prepareIndices(ctx, alias, evs); err != nil {
		return 0, false, err
	}
	var ps []*proc
	defer func() {
		for _, p := range ps {
			p.kill()
		}
	}()
	group := e.name(part, "group")
	for i := range k {
		p, err := e.startShipper(ctx, shipperRun{name: "shipper-" + strconv.Itoa(i+1), dir: dir, topic: topic, group: group, alias: alias, app: app})
		if err != nil {
			return 0, false, err
		}
		ps = append(ps, p)
	}
	// Timed from the first event produced once every instance holds its
	// partitions: a rebalance as instances join (up to the 15 s rebalance
	// timeout) is not what this row measures.
	if err := e.waitGroupStable(ctx, group, k); err != nil {
		return 0, false, err
	}
	start := time.Now()
	if err := e.produce(ctx, topic, evs, lines); err != nil {
		return 0, false, err
	}
	done, err := e.waitTopic(ctx, 15*time.Minute, topic, group, n)
	if err != nil {
		return 0, false, fmt.Errorf("%w; shipper log: %s", err, ps[0].tail(10))
	}
	rate := float64(n) / done.Sub(start).Seconds()
	ok, err := e.stored(ctx, alias, app, n)
	return rate, ok, err
}

// waitGroupStable waits until the consumer group is stable with k members
// each assigned partitions.
func (e *env) waitGroupStable(ctx context.Context, group string, k int) error {
	_, err := waitForEvery(ctx, 2*time.Minute, 250*time.Millisecond, fmt.Sprintf("group %s stable with %d members", group, k), func(ctx context.Context) (bool, error) {
		resp, err := e.kafka.DescribeGroups(ctx, &kafkago.DescribeGroupsRequest{GroupIDs: []string{group}})
		if err != nil || len(resp.Groups) != 1 {
			return false, err
		}
		g := resp.Groups[0]
		if g.Error != nil || g.GroupState != "Stable" || len(g.Members) != k {
			return false, g.Error
		}
		for _, m := range g.Members {
			if len(m.MemberAssignments.Topics) == 0 {
				return false, nil
			}
		}
		return true, nil
	})
	return err
}

// stored checks Elasticsearch's alias and Loki's app label each hold n
// events (Loki's count may lag its acknowledgement by a moment).
func (e *env) stored(ctx context.Context, alias, app string, n int) (bool, error) {
	es, err := e.esCount(ctx, alias)
	if err != nil {
		return false, err
	}
	var lk int
	_, err = waitForEvery(ctx, 30*time.Second, time.Second, "loki count", func(ctx context.Context) (bool, error) {
		var err error
		lk, err = e.lokiCount(ctx, fmt.Sprintf(`{app=%q}`, app))
		return lk == n, err
	})
	if es != n || lk != n {
		e.logf("stored: elasticsearch %d, loki %d, want %d (%v)", es, lk, n, err)
		return false, nil
	}
	return true, nil
}

// waitForEvery is waitFor with a polling interval (for costly queries).
func waitForEvery(ctx context.Context, timeout, every time.Duration, what string, cond func(context.Context) (bool, error)) (time.Time, error) {
	var next time.Time
	return waitFor(ctx, timeout, what, func(ctx context.Context) (bool, error) {
		if time.Now().Before(next) {
			return false, nil
		}
		next = time.Now().Add(every)
		return cond(ctx)
	})
}

// percentile of sorted durations, in milliseconds.
func percentile(d []time.Duration, p float64) float64 {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	i := int(float64(len(d)-1) * p)
	return float64(d[i].Microseconds()) / 1000
}
