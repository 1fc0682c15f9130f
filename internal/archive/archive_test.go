package archive

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/assistlog/assistlog/demo"
	"github.com/assistlog/assistlog/internal/errpolicy"
	"github.com/assistlog/assistlog/internal/event"
	"github.com/assistlog/assistlog/internal/pii"
	"github.com/assistlog/assistlog/internal/stacktest"
	"github.com/assistlog/assistlog/stack"
)

func TestDirIsTheTenantsLocalDate(t *testing.T) {
	ufa, _ := time.LoadLocation("Asia/Yekaterinburg")
	e := &event.Event{Tenant: "salon-aurora", Timestamp: "2026-11-22T20:30:00Z"} // 01:30 on the 23rd in Ufa
	if got := Dir("events/", e, ufa); got != "events/tenant=salon-aurora/dt=2026-11-23" {
		t.Errorf("Dir = %s", got)
	}
	if got := ObjectName("assistant.events", 2, 1234); got != "assistant.events+2+00000000000000001234.parquet" {
		t.Errorf("ObjectName = %s", got)
	}
}

// s3env is the stack's S3 server with a fresh prefix.
func s3env(t *testing.T) (stack.Endpoints, *minio.Client, *Store, string) {
	ep := stacktest.Require(t, stacktest.S3)
	prefix := fmt.Sprintf("test/archive%d", time.Now().UnixNano()%1e9)
	pol, err := errpolicy.New(errpolicy.DefaultConfig(), slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	st, err := NewStore(StoreConfig{Endpoint: ep.S3.URL, Region: ep.S3.Region, Bucket: ep.S3.Bucket, Prefix: prefix,
		AccessKey: ep.S3.AccessKey, SecretKey: ep.S3.SecretKey, PathStyle: true, PartSize: 5 << 20}, pol)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(ep.S3.URL)
	c, err := minio.New(u.Host, &minio.Options{Creds: credentials.NewStaticV4(ep.S3.AccessKey, ep.S3.SecretKey, ""),
		Region: ep.S3.Region, BucketLookup: minio.BucketLookupPath})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for o := range c.ListObjects(context.Background(), ep.S3.Bucket, minio.ListObjectsOptions{Prefix: prefix + "/", Recursive: true}) {
			c.RemoveObject(context.Background(), ep.S3.Bucket, o.Key, minio.RemoveObjectOptions{})
		}
	})
	return ep, c, st, prefix
}

// readRows reads the prefix back with the independent reader.
func readRows(t *testing.T, ep stack.Endpoints, prefix string) []map[string]any {
	if _, err := os.Stat(ep.S3.Python); err != nil {
		if stacktest.Required() {
			t.Fatalf("archive reader venv missing: %v", err)
		}
		t.Skip("archive reader venv missing; `stack up s3` installs it")
	}
	cmd := exec.Command(ep.S3.Python, "read_archive.py", "rows")
	cmd.Env = append(os.Environ(), "ASSISTLOG_S3_URL="+ep.S3.URL, "ASSISTLOG_S3_ACCESS_KEY="+ep.S3.AccessKey,
		"ASSISTLOG_S3_SECRET_KEY="+ep.S3.SecretKey, "ASSISTLOG_S3_BUCKET="+ep.S3.Bucket, "ARCHIVE_PREFIX="+prefix)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("reader: %v\n%s", err, stderr.String())
	}
	var rows []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var r map[string]any
		json.Unmarshal(sc.Bytes(), &r)
		rows = append(rows, r)
	}
	return rows
}

// TestDropAndErase archives generated events, drops one tenant's older
// days and erases one person by phone number, then reads the archive back.
func TestDropAndErase(t *testing.T) {
	ep, _, st, prefix := s3env(t)
	cfg := demo.DefaultConfig()
	cfg.End = time.Now().UTC().Truncate(time.Minute)
	evs, _, err := demo.FromShared(60, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := demo.Tenants()
	if err != nil {
		t.Fatal(err)
	}
	masker, _ := pii.New("archive-test-secret-0123")
	w, err := NewWriter(st, masker, ts, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	var recs []Record
	for i := range evs {
		b, _ := evs[i].Marshal()
		recs = append(recs, Record{Partition: 0, Offset: int64(i), Value: b})
	}
	if _, err := w.Write(context.Background(), "t", recs); err != nil {
		t.Fatal(err)
	}

	// Ground truth from the events: the victim tenant's days, a cut-off in
	// the middle, and one phone number's events.
	victim := evs[0].Tenant
	loc := map[string]*time.Location{}
	for _, n := range ts.Names() {
		tn, _ := ts.Get(n)
		loc[n] = tn.Location()
	}
	var days []string
	for _, e := range evs {
		if e.Tenant == victim {
			days = append(days, e.Time().In(loc[victim]).Format(time.DateOnly))
		}
	}
	cut := days[len(days)/2]
	var phone string
	for _, e := range evs {
		if e.UserPhone != "" {
			phone = e.UserPhone
			break
		}
	}
	wantLeft := map[string]bool{}
	for _, e := range evs {
		if e.Tenant == victim && e.Time().In(loc[victim]).Format(time.DateOnly) < cut {
			continue
		}
		if pii.Normalize(e.UserPhone) == pii.Normalize(phone) && phone != "" {
			continue
		}
		wantLeft[e.EventID] = true
	}
	if phone == "" || len(wantLeft) == len(evs) {
		t.Fatal("the data must have a phone number and days to drop")
	}

	if _, err := st.DropBefore(context.Background(), victim, cut); err != nil {
		t.Fatal(err)
	}
	// Erase by the number as a person would type it.
	if _, err := st.Erase(context.Background(), "", nil, []string{masker.HashPhone(phone)}); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, r := range readRows(t, ep, prefix) {
		id := r["event_id"].(string)
		if got[id] {
			t.Errorf("event %s twice", id)
		}
		got[id] = true
		if r["tenant"] == victim && r["dt"].(string) < cut {
			t.Errorf("event %s of %s on %s survived the drop before %s", id, victim, r["dt"], cut)
		}
	}
	missing, extra := 0, 0
	for id := range wantLeft {
		if !got[id] {
			missing++
		}
	}
	for id := range got {
		if !wantLeft[id] {
			extra++
			if extra < 5 {
				t.Errorf("event %s should have been dropped or erased", id)
			}
		}
	}
	if missing > 0 || extra > 0 {
		t.Errorf("after drop and erase: %d events wrongly removed, %d wrongly kept (want %d left)", missing, extra, len(wantLeft))
	}
	if !strings.HasPrefix(cut, "20") {
		t.Errorf("cut-off %q", cut)
	}
}

// TestRefusedCredentialsPause: a wrong secret refuses every request, so the
// store pauses (the paused gauge is what the alert watches) instead of
// retrying blindly or giving up.
func TestRefusedCredentialsPause(t *testing.T) {
	ep := stacktest.Require(t, stacktest.S3)
	reg := prometheus.NewRegistry()
	cfg := errpolicy.DefaultConfig()
	cfg.PauseInterval = 200 * time.Millisecond
	pol, err := errpolicy.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := NewStore(StoreConfig{Endpoint: ep.S3.URL, Region: ep.S3.Region, Bucket: ep.S3.Bucket, Prefix: "test/refused",
		AccessKey: ep.S3.AccessKey, SecretKey: "not-the-secret", PathStyle: true, PartSize: 5 << 20}, pol)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := st.Put(ctx, "test/refused/x.parquet", []byte("x")); err == nil {
		t.Fatal("a put with a wrong secret succeeded")
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	paused, retried := -1.0, 0.0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["destination"] != Destination {
				continue
			}
			switch mf.GetName() {
			case "assistlog_destination_paused":
				paused = m.GetGauge().GetValue()
			case "assistlog_destination_retries_total":
				if labels["action"] == "retry" {
					retried += m.GetCounter().GetValue()
				}
			}
		}
	}
	if paused != 1 || retried != 0 {
		t.Errorf("after refused credentials: paused %v (want 1), plain retries %v (want 0)", paused, retried)
	}
}

// TestMultipartUpload: an object larger than the part size goes up in parts
// and reads back byte for byte.
func TestMultipartUpload(t *testing.T) {
	ep, c, st, prefix := s3env(t)
	data := make([]byte, 11<<20+123)
	for i := range data {
		data[i] = byte(i * 7 % 251)
	}
	key := prefix + "/big.parquet"
	if err := st.Put(context.Background(), key, data); err != nil {
		t.Fatal(err)
	}
	info, err := c.StatObject(context.Background(), ep.S3.Bucket, key, minio.StatObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// A multipart object's ETag is the hash of the parts' hashes, "-<parts>".
	if !strings.HasSuffix(info.ETag, "-3") {
		t.Errorf("ETag %q: not a 3-part upload", info.ETag)
	}
	o, err := c.GetObject(context.Background(), ep.S3.Bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	back, err := io.ReadAll(o)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back, data) {
		t.Errorf("read back %d bytes, differing from the %d uploaded", len(back), len(data))
	}
}
