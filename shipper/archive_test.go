package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	kafkago "github.com/segmentio/kafka-go"
	"gopkg.in/yaml.v3"

	"github.com/assistlog/assistlog/demo"
	"github.com/assistlog/assistlog/internal/event"
	"github.com/assistlog/assistlog/internal/kafka"
	"github.com/assistlog/assistlog/internal/pii"
	"github.com/assistlog/assistlog/internal/proctest"
	"github.com/assistlog/assistlog/internal/stacktest"
	"github.com/assistlog/assistlog/stack"
)

// archiveEnv is one archiver deployment under test: its own topic and key
// prefix in the stack's bucket.
type archiveEnv struct {
	t      *testing.T
	ep     stack.Endpoints
	dir    string
	topic  string
	prefix string
	s3     *minio.Client
	python string
}

func newArchiveEnv(t *testing.T) *archiveEnv {
	ep := stacktest.Require(t, stacktest.Kafka, stacktest.S3)
	py := ep.S3.Python
	if _, err := os.Stat(py); err != nil {
		msg := "the archive reader's venv is missing (" + py + "); `go run ./stack/cmd/stack up s3` installs it"
		if stacktest.Required() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	u, _ := url.Parse(ep.S3.URL)
	c, err := minio.New(u.Host, &minio.Options{Creds: credentials.NewStaticV4(ep.S3.AccessKey, ep.S3.SecretKey, ""),
		Region: ep.S3.Region, BucketLookup: minio.BucketLookupPath})
	if err != nil {
		t.Fatal(err)
	}
	run := fmt.Sprintf("archive%d", time.Now().UnixNano()%1e9)
	e := &archiveEnv{t: t, ep: ep, dir: t.TempDir(), topic: "test-" + run, prefix: "test/" + run, s3: c, python: py}
	stacktest.CreateTopics(t, ep.KafkaBrokers, map[string]int{e.topic: 3, "test-dlq-" + run: 1})
	t.Cleanup(func() {
		for o := range c.ListObjects(context.Background(), ep.S3.Bucket, minio.ListObjectsOptions{Prefix: e.prefix + "/", Recursive: true}) {
			c.RemoveObject(context.Background(), ep.S3.Bucket, o.Key, minio.RemoveObjectOptions{})
		}
	})
	return e
}

// config writes an archiver configuration for a consumer group.
func (e *archiveEnv) config(name, group string, maxRecords int, listen string) string {
	tenantsFile, err := filepath.Abs("../demo/tenants.yaml")
	if err != nil {
		e.t.Fatal(err)
	}
	cfg := fmt.Sprintf(`kafka:
  brokers: [%q]
  topic: %s
  dead_letter_topic: %s-dlq
pii:
  hash_secret: %s
archive:
  s3:
    endpoint: %s
    region: %s
    bucket: %s
    prefix: %s
    access_key: %s
    secret_key: %s
    path_style: true
  group_id: %s
  tenants_file: %s
  max_records: %d
  roll_interval: 2s
  listen: %s
retry: {min_backoff: 100ms, max_backoff: 1s, pause_interval: 2s}
`, e.ep.KafkaBrokers, e.topic, e.topic, testSecret, e.ep.S3.URL, e.ep.S3.Region, e.ep.S3.Bucket, e.prefix,
		e.ep.S3.AccessKey, e.ep.S3.SecretKey, group, tenantsFile, maxRecords, listen)
	path := filepath.Join(e.dir, name+".yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return path
}

func (e *archiveEnv) start(name, group string, maxRecords int) *proctest.Process {
	listen := proctest.FreeAddr(e.t)
	path := e.config(name, group, maxRecords, listen)
	p := proctest.Start(e.t, proctest.Build(e.t, "."), []string{"archive", "--config", path},
		filepath.Join(e.dir, name+".log"), "http://"+listen+"/readyz")
	e.t.Cleanup(p.Kill)
	return p
}

func (e *archiveEnv) objects() []string {
	var keys []string
	for o := range e.s3.ListObjects(context.Background(), e.ep.S3.Bucket, minio.ListObjectsOptions{Prefix: e.prefix + "/", Recursive: true}) {
		if o.Err != nil {
			e.t.Fatal(o.Err)
		}
		keys = append(keys, o.Key)
	}
	return keys
}

// waitCommitted waits until the group committed the whole topic.
func (e *archiveEnv) waitCommitted(group string, timeout time.Duration) {
	client := &kafkago.Client{Addr: kafkago.TCP(e.ep.KafkaBrokers), Timeout: 10 * time.Second}
	stacktest.Eventually(e.t, timeout, "group "+group+" committed the topic", func() error {
		parts, err := kafka.GroupOffsets(context.Background(), client, e.topic, group)
		if err != nil {
			return err
		}
		for _, p := range parts {
			if p.Committed < p.Last {
				return fmt.Errorf("partition %d: committed %d of %d", p.Partition, p.Committed, p.Last)
			}
		}
		return nil
	})
}

// read runs the independent reader (pyarrow over the S3 API, DuckDB).
func (e *archiveEnv) read(args ...string) []map[string]any {
	cmd := exec.Command(e.python, append([]string{"../internal/archive/read_archive.py"}, args...)...)
	cmd.Env = append(os.Environ(), "ASSISTLOG_S3_URL="+e.ep.S3.URL, "ASSISTLOG_S3_ACCESS_KEY="+e.ep.S3.AccessKey,
		"ASSISTLOG_S3_SECRET_KEY="+e.ep.S3.SecretKey, "ASSISTLOG_S3_BUCKET="+e.ep.S3.Bucket,
		"ASSISTLOG_S3_REGION="+e.ep.S3.Region, "ARCHIVE_PREFIX="+e.prefix)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		e.t.Fatalf("archive reader %v: %v\n%s", args, err, stderr.String())
	}
	var rows []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var r map[string]any
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			e.t.Fatalf("reader line %q: %v", sc.Text(), err)
		}
		rows = append(rows, r)
	}
	return rows
}

func produceEvents(t *testing.T, broker, topic string, evs []event.Event) {
	w := &kafkago.Writer{Addr: kafkago.TCP(broker), Topic: topic, Balancer: &kafkago.Hash{}, RequiredAcks: kafkago.RequireAll}
	defer w.Close()
	var msgs []kafkago.Message
	for i := range evs {
		b, _ := evs[i].Marshal()
		msgs = append(msgs, kafkago.Message{Key: evs[i].Key(), Value: b})
	}
	if err := w.WriteMessages(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
}

// zones reads the demo tenants' zones straight from the file.
func zones(t *testing.T) map[string]*time.Location {
	var f struct {
		Tenants []struct{ Name, TZ string } `yaml:"tenants"`
	}
	if err := yaml.Unmarshal(demo.TenantsFile, &f); err != nil {
		t.Fatal(err)
	}
	out := map[string]*time.Location{}
	for _, tn := range f.Tenants {
		loc, err := time.LoadLocation(tn.TZ)
		if err != nil {
			t.Fatal(err)
		}
		out[tn.Name] = loc
	}
	return out
}

// TestArchiveExactlyOnce archives generated dialogues, killing the archiver
// with SIGKILL mid-upload until a kill left objects uploaded but not
// committed, then lets a new one finish. The independent reader must find
// every event exactly once, in its tenant's local-day partition, masked,
// with the weekly confirmed appointments of the ground truth.
func TestArchiveExactlyOnce(t *testing.T) {
	e := newArchiveEnv(t)
	cfg := demo.DefaultConfig()
	cfg.End = time.Now().UTC().Truncate(time.Minute)
	evs, truth, err := demo.FromShared(200, cfg)
	if err != nil {
		t.Fatal(err)
	}
	produceEvents(t, e.ep.KafkaBrokers, e.topic, evs)

	// Kill -9 while uploading, until a kill left objects uploaded but not
	// committed (the case naming by first offset exists for): the next
	// archiver reads those events again and must replace the objects.
	group := e.topic + "-archiver"
	client := &kafkago.Client{Addr: kafkago.TCP(e.ep.KafkaBrokers), Timeout: 10 * time.Second}
	uncommitted := 0
	for round := 0; round < 15 && uncommitted == 0; round++ {
		before := len(e.objects())
		p := e.start(fmt.Sprintf("killed%d", round), group, 25)
		stacktest.Eventually(t, time.Minute, "new objects in the bucket", func() error {
			if n := len(e.objects()); n <= before+3 {
				return fmt.Errorf("%d objects, %d before", n, before)
			}
			return nil
		})
		p.Kill()
		parts, err := kafka.GroupOffsets(context.Background(), client, e.topic, group)
		if err != nil {
			t.Fatal(err)
		}
		committed := map[int]int64{}
		for _, pt := range parts {
			committed[pt.Partition] = pt.Committed
		}
		for _, k := range e.objects() {
			var part int
			var first int64
			name := k[strings.LastIndex(k, "/")+1:]
			if _, err := fmt.Sscanf(name[len(e.topic)+1:], "%d+%d", &part, &first); err != nil {
				t.Fatalf("object name %s: %v", k, err)
			}
			if first >= committed[part] {
				uncommitted++
			}
		}
		t.Logf("kill %d: %d objects, %d of them above the committed offsets", round, len(e.objects()), uncommitted)
	}
	if uncommitted == 0 {
		t.Fatal("no kill landed between an upload and its commit; the test proved nothing about replacing")
	}
	// The next archiver's chunks end elsewhere (as when the time roll fires
	// at another moment, or max_records was changed): the objects of the
	// interrupted chunk must still be replaced, not overlapped.
	p := e.start("last", group, 10)
	e.waitCommitted(group, 3*time.Minute)
	p.Stop(30 * time.Second)

	rows := e.read("rows")
	byID := map[string]event.Event{}
	for _, ev := range evs {
		byID[ev.EventID] = ev
	}
	loc := zones(t)
	seen := map[string]int{}
	var hashes int
	for _, r := range rows {
		id, _ := r["event_id"].(string)
		seen[id]++
		ev, ok := byID[id]
		if !ok {
			t.Errorf("archive holds an event never produced: %v", r["event_id"])
			continue
		}
		wantDT := ev.Time().In(loc[ev.Tenant]).Format(time.DateOnly)
		if r["tenant"] != ev.Tenant || r["dt"] != wantDT {
			t.Errorf("event %s in tenant=%v/dt=%v, want tenant=%s/dt=%s", id, r["tenant"], r["dt"], ev.Tenant, wantDT)
		}
		if r["user_phone_hash"] != nil {
			hashes++
		}
	}
	dup, missing := 0, 0
	for id, n := range seen {
		if n > 1 {
			dup++
			if dup <= 5 {
				t.Errorf("event %s archived %d times", id, n)
			}
		}
	}
	for id := range byID {
		if seen[id] == 0 {
			missing++
			if missing <= 5 {
				t.Errorf("event %s missing from the archive", id)
			}
		}
	}
	if dup > 0 || missing > 0 {
		t.Errorf("%d events duplicated, %d missing of %d", dup, missing, len(evs))
	}
	t.Logf("%d rows read back for %d events", len(rows), len(evs))

	// No input phone number, in any form, in any column.
	if len(truth.Phones) == 0 || hashes == 0 {
		t.Fatalf("the data must carry phone numbers for this check to mean anything (phones %d, hashed %d)", len(truth.Phones), hashes)
	}
	var national []string
	for _, ph := range truth.Phones {
		d := pii.Digits(ph)
		national = append(national, d[len(d)-10:])
	}
	for _, r := range rows {
		for col, v := range r {
			s, ok := v.(string)
			if !ok {
				continue
			}
			digits := pii.Digits(s)
			for _, n := range national {
				if strings.Contains(digits, n) {
					t.Fatalf("a phone number's digits %s appear in column %s of %s: %q", n, col, r["_key"], s)
				}
			}
		}
	}

	// Typed columns, as a SQL engine sees them.
	types := e.read("sql", "SELECT typeof(timestamp) AS ts, typeof(confidence) AS conf, typeof(latency_ms) AS lat FROM events LIMIT 1")
	if len(types) != 1 || !strings.HasPrefix(types[0]["ts"].(string), "TIMESTAMP") || types[0]["conf"] != "DOUBLE" || types[0]["lat"] != "BIGINT" {
		t.Errorf("column types %v, want timestamp, DOUBLE, BIGINT", types)
	}

	// Confirmed appointments per tenant and week (Monday of the tenant's
	// local date), from SQL over the archive against the generated events.
	want := map[string]float64{}
	for _, ev := range evs {
		if ev.Type != event.AppointmentConfirmed {
			continue
		}
		d := ev.Time().In(loc[ev.Tenant])
		day := time.Date(d.Year(), d.Month(), d.Day(), 0, 0, 0, 0, time.UTC)
		monday := day.AddDate(0, 0, -((int(day.Weekday()) + 6) % 7))
		want[ev.Tenant+" "+monday.Format(time.DateOnly)]++
	}
	got := map[string]float64{}
	for _, r := range e.read("sql", `SELECT tenant, CAST(date_trunc('week', dt) AS DATE) AS week, count(*) AS n
		FROM events WHERE event_type = 'appointment.confirmed' GROUP BY ALL`) {
		got[fmt.Sprintf("%v %v", r["tenant"], r["week"])] = r["n"].(float64)
	}
	if len(want) == 0 {
		t.Fatal("no confirmed appointments generated")
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("confirmed appointments per tenant and week from the archive:\n got %v\nwant %v", got, want)
	}
}
