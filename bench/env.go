package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/assistlog/assistlog/demo"
	"github.com/assistlog/assistlog/internal/event"
	"github.com/assistlog/assistlog/internal/kafka"
	"github.com/assistlog/assistlog/stack"
)

// env is what every row shares: the stack's endpoints, the built programs,
// the generated events and a unique run id for topics, indices and labels.
type env struct {
	o         Options
	ep        stack.Endpoints
	layout    stack.Layout
	run       string
	work      string
	collector string // binaries
	shipper   string
	kafka     *kafkago.Client

	mu     sync.Mutex
	events []event.Event // generated once, the largest size any row needs
	lines  [][]byte      // events[i] as written by an assistant (JSON line, no newline)
	procs  []*proc
}

func newEnv(ctx context.Context, o Options) (*env, error) {
	ep, err := stack.EndpointsFromEnv()
	if err != nil {
		return nil, err
	}
	layout, err := stack.LayoutFromEnv()
	if err != nil {
		return nil, err
	}
	e := &env{o: o, ep: ep, layout: layout, run: strconv.FormatInt(time.Now().Unix()%1_000_000, 36) + strconv.Itoa(os.Getpid()%1000),
		kafka: &kafkago.Client{Addr: kafkago.TCP(ep.KafkaBrokers), Timeout: 30 * time.Second}}
	if err := e.checkStack(ctx); err != nil {
		return nil, err
	}
	e.work = o.Work
	if e.work == "" {
		if e.work, err = os.MkdirTemp("", "assistlog-bench-"); err != nil {
			return nil, err
		}
	}
	bin := filepath.Join(e.work, "bin")
	for _, p := range []struct {
		name string
		dst  *string
	}{{"collector", &e.collector}, {"shipper", &e.shipper}} {
		*p.dst = filepath.Join(bin, p.name)
		e.logf("building %s", p.name)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", *p.dst, "./"+p.name)
		cmd.Dir = o.Root
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build ./%s: %w\n%s", p.name, err, out)
		}
	}
	return e, nil
}

func (e *env) checkStack(ctx context.Context) error {
	for name, u := range map[string]string{"elasticsearch": e.ep.ElasticsearchURL + "/_cluster/health", "loki": e.ep.LokiURL + "/ready"} {
		if err := httpOK(ctx, u); err != nil {
			return fmt.Errorf("%s not answering (start the stack: go run ./stack/cmd/stack up): %w", name, err)
		}
	}
	c, err := net.DialTimeout("tcp", e.ep.KafkaBrokers, 3*time.Second)
	if err != nil {
		return fmt.Errorf("kafka not answering (start the stack: go run ./stack/cmd/stack up): %w", err)
	}
	return c.Close()
}

func (e *env) close() {
	e.mu.Lock()
	procs := e.procs
	e.mu.Unlock()
	for _, p := range procs {
		p.kill()
	}
	if !e.o.Keep && e.o.Work == "" {
		_ = os.RemoveAll(e.work)
	}
}

func (e *env) logf(format string, args ...any) {
	fmt.Fprintf(e.o.Log, time.Now().Format("15:04:05")+" bench: "+format+"\n", args...)
}

// size picks the full or the quick size.
func (e *env) size(full, quick int) int {
	if e.o.Quick {
		return quick
	}
	return full
}

func (e *env) dur(full, quick time.Duration) time.Duration {
	if e.o.Quick {
		return quick
	}
	return full
}

// name is unique per run and row part: topics, indices, groups, labels.
func (e *env) name(parts ...string) string {
	return "bench-" + e.run + "-" + strings.Join(parts, "-")
}

// dir makes a fresh directory under the work directory.
func (e *env) dir(parts ...string) (string, error) {
	d := filepath.Join(e.work, strings.Join(parts, "-"))
	_ = os.RemoveAll(d)
	return d, os.MkdirAll(d, 0o755)
}

// data returns the first n generated events (the generator's dialogues
// replayed as distinct sessions until there are n) and their lines.
// Timestamps lie in the last two days, inside what Loki accepts.
func (e *env) data(n int) ([]event.Event, [][]byte, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.events) < n {
		cfg := demo.DefaultConfig()
		cfg.Days = 2
		const perRound = 37_000 // the 1,335 shared dialogues give about 37.6k events a round
		cfg.Rounds = max(1, (n+perRound-1)/perRound)
		e.logf("generating %d rounds of the shared dialogues for %d events", cfg.Rounds, n)
		evs, _, err := demo.FromShared(0, cfg)
		if err != nil {
			return nil, nil, fmt.Errorf("generate events: %w", err)
		}
		if len(evs) < n {
			return nil, nil, fmt.Errorf("generated %d events, need %d", len(evs), n)
		}
		lines := make([][]byte, len(evs))
		for i := range evs {
			if lines[i], err = evs[i].Marshal(); err != nil {
				return nil, nil, err
			}
		}
		e.events, e.lines = evs, lines
	}
	return e.events[:n], e.lines[:n], nil
}

// writeFiles writes the lines into files assistant-1.jsonl … spread by
// session (as an assistant's instances would), returning the paths.
func writeFiles(dir string, evs []event.Event, lines [][]byte, files int) ([]string, error) {
	ws := make([]*bufio.Writer, files)
	fs := make([]*os.File, files)
	paths := make([]string, files)
	for i := range ws {
		paths[i] = filepath.Join(dir, fmt.Sprintf("assistant-%d.jsonl", i+1))
		f, err := os.Create(paths[i])
		if err != nil {
			return nil, err
		}
		fs[i], ws[i] = f, bufio.NewWriterSize(f, 1<<20)
	}
	for i := range lines {
		h := fnv.New32a()
		h.Write([]byte(evs[i].SessionID))
		w := ws[int(h.Sum32())%files]
		w.Write(lines[i])
		w.WriteByte('\n')
	}
	for i := range ws {
		if err := ws[i].Flush(); err != nil {
			return nil, err
		}
		if err := fs[i].Close(); err != nil {
			return nil, err
		}
	}
	return paths, nil
}

// createTopic creates a topic with parts partitions.
func (e *env) createTopic(ctx context.Context, name string, parts int) error {
	resp, err := e.kafka.CreateTopics(ctx, &kafkago.CreateTopicsRequest{Topics: []kafkago.TopicConfig{{Topic: name, NumPartitions: parts, ReplicationFactor: 1}}})
	if err != nil {
		return fmt.Errorf("create topic %s: %w", name, err)
	}
	if err := resp.Errors[name]; err != nil {
		return fmt.Errorf("create topic %s: %w", name, err)
	}
	return nil
}

// deleteTopics removes the run's topics (best effort).
func (e *env) deleteTopics(names ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _ = e.kafka.DeleteTopics(ctx, &kafkago.DeleteTopicsRequest{Topics: names})
}

// topicCount is how many messages the topic holds, and how many of them the
// group committed (group may be "").
func (e *env) topicCount(ctx context.Context, topic, group string) (total, committed int64, err error) {
	if group == "" {
		group = "bench-nobody"
	}
	parts, err := kafka.GroupOffsets(ctx, e.kafka, topic, group)
	if err != nil {
		return 0, 0, err
	}
	for _, p := range parts {
		total += p.Last - p.First
		committed += p.Committed - p.First
	}
	return total, committed, nil
}

// waitFor polls cond every 50ms until it reports done, ctx ends or
// timeout passes; it returns when cond was first seen done.
func waitFor(ctx context.Context, timeout time.Duration, what string, cond func(context.Context) (bool, error)) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		ok, err := cond(ctx)
		if ok {
			return time.Now(), nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("%s: not done after %s (last error: %v)", what, timeout, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitTopic waits until topic holds n messages (group "") or group
// committed n.
func (e *env) waitTopic(ctx context.Context, timeout time.Duration, topic, group string, n int) (time.Time, error) {
	return waitFor(ctx, timeout, fmt.Sprintf("%d messages in %s (group %q)", n, topic, group), func(ctx context.Context) (bool, error) {
		total, committed, err := e.topicCount(ctx, topic, group)
		if group != "" {
			return committed >= int64(n), err
		}
		return total >= int64(n), err
	})
}

// produce writes the lines to topic keyed like the collector
// (tenant/session), acks from all replicas, snappy.
func (e *env) produce(ctx context.Context, topic string, evs []event.Event, lines [][]byte) error {
	w := &kafkago.Writer{Addr: kafkago.TCP(e.ep.KafkaBrokers), Topic: topic, Balancer: &kafkago.Hash{}, RequiredAcks: kafkago.RequireAll,
		Compression: kafkago.Snappy, BatchSize: 2000, BatchBytes: 8 << 20, BatchTimeout: 20 * time.Millisecond}
	defer w.Close()
	const chunk = 10000
	for i := 0; i < len(lines); i += chunk {
		end := min(i+chunk, len(lines))
		msgs := make([]kafkago.Message, 0, end-i)
		for j := i; j < end; j++ {
			msgs = append(msgs, kafkago.Message{Key: evs[j].Key(), Value: lines[j]})
		}
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			return fmt.Errorf("produce to %s: %w", topic, err)
		}
	}
	return nil
}

// esCount counts the documents of an alias or index after a refresh.
func (e *env) esCount(ctx context.Context, index string) (int, error) {
	if err := httpDo(ctx, http.MethodPost, e.ep.ElasticsearchURL+"/"+index+"/_refresh?ignore_unavailable=true&allow_no_indices=true", nil, nil); err != nil {
		return 0, err
	}
	var r struct {
		Count int `json:"count"`
	}
	err := httpDo(ctx, http.MethodGet, e.ep.ElasticsearchURL+"/"+index+"/_count?ignore_unavailable=true&allow_no_indices=true", nil, &r)
	return r.Count, err
}

func (e *env) dropIndices(pattern string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = httpDo(ctx, http.MethodDelete, e.ep.ElasticsearchURL+"/"+pattern, nil, nil)
	_ = httpDo(ctx, http.MethodDelete, e.ep.ElasticsearchURL+"/_index_template/"+strings.TrimSuffix(pattern, "-*"), nil, nil)
}

// lokiCount counts the lines of a stream selector over the last three days.
func (e *env) lokiCount(ctx context.Context, selector string) (int, error) {
	q := fmt.Sprintf("sum(count_over_time(%s[3d]))", selector)
	var r struct {
		Data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := httpDo(ctx, http.MethodGet, e.ep.LokiURL+"/loki/api/v1/query?"+url.Values{"query": {q}}.Encode(), nil, &r); err != nil {
		return 0, err
	}
	if len(r.Data.Result) == 0 {
		return 0, nil
	}
	n, err := strconv.Atoi(fmt.Sprint(r.Data.Result[0].Value[1]))
	return n, err
}

func httpOK(ctx context.Context, u string) error { return httpDo(ctx, http.MethodGet, u, nil, nil) }

// httpDo sends a request and decodes a JSON answer into out (if not nil);
// a status ≥ 300 is an error carrying the body.
func httpDo(ctx context.Context, method, u string, body []byte, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s: %s", method, u, resp.Status, trunc(string(b), 300))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// freeAddr is a loopback address nothing listens on now.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// proc is a program the bench started.
type proc struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{}
	log    string
}

// start runs bin with args (output to dir/name.log) and, when readyURL is
// set, waits until it answers 200.
func (e *env) start(ctx context.Context, name, dir, bin string, args []string, readyURL string) (*proc, error) {
	logPath := filepath.Join(dir, name+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, exited: make(chan struct{}), log: logPath}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	e.mu.Lock()
	e.procs = append(e.procs, p)
	e.mu.Unlock()
	if readyURL == "" {
		return p, nil
	}
	_, err = waitFor(ctx, 90*time.Second, name+" ready", func(ctx context.Context) (bool, error) {
		select {
		case <-p.exited:
			return false, fmt.Errorf("%s exited: %s", name, p.tail(20))
		default:
		}
		return httpOK(ctx, readyURL) == nil, nil
	})
	if err != nil {
		p.kill()
		return nil, fmt.Errorf("%w; log: %s", err, p.tail(20))
	}
	return p, nil
}

func (p *proc) kill() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// stop ends the program with SIGTERM (a clean shutdown), SIGKILL after 20s.
func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		p.kill()
	}
}

// peakRSS is the process's high-water mark of resident memory (VmHWM), MiB.
func (p *proc) peakRSS() (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			var kb float64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			return kb / 1024, nil
		}
	}
	return 0, fmt.Errorf("no VmHWM for %s", p.name)
}

func (p *proc) tail(n int) string {
	b, _ := os.ReadFile(p.log)
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "\n")
}
