package loki

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/assistlog/assistlog/internal/stacktest"

	"github.com/prometheus/client_golang/prometheus"
)

func newClient(t *testing.T) (*Client, string) {
	t.Helper()
	ep := stacktest.Require(t, stacktest.Loki)
	cfg := DefaultConfig()
	cfg.URL = ep.LokiURL
	cfg.RetryBackoffMax = time.Second
	c, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return c, ep.LokiURL
}

// query runs LogQL over the last 3 hours and returns the lines, sorted.
func query(t *testing.T, base, q string) []string {
	t.Helper()
	v := url.Values{"query": {q}, "limit": {"5000"}, "start": {strconv.FormatInt(time.Now().Add(-3*time.Hour).UnixNano(), 10)},
		"end": {strconv.FormatInt(time.Now().Add(time.Minute).UnixNano(), 10)}}
	resp, err := http.Get(base + "/loki/api/v1/query_range?" + v.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Data struct {
			Result []struct {
				Values [][2]string `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range r.Data.Result {
		for _, v := range s.Values {
			out = append(out, v[1])
		}
	}
	sort.Strings(out)
	return out
}

func eventually(t *testing.T, base, q string, want int) []string {
	t.Helper()
	var got []string
	stacktest.Eventually(t, time.Minute, "loki query "+q, func() error {
		if got = query(t, base, q); len(got) != want {
			return fmt.Errorf("%d lines, want %d", len(got), want)
		}
		return nil
	})
	return got
}

func TestPushAcknowledgedAndQueryable(t *testing.T) {
	c, base := newClient(t)
	run := fmt.Sprintf("r%d", time.Now().UnixNano())
	now := time.Now()
	var entries []Entry
	for i := 0; i < 20; i++ {
		typ := "message.received"
		if i%5 == 0 {
			typ = "appointment.confirmed"
		}
		entries = append(entries, Entry{
			Labels:   map[string]string{"app": "assistlog-test", "tenant": run, "event_type": typ, "level": "info"},
			Time:     now.Add(time.Duration(i-20) * time.Second),
			Line:     fmt.Sprintf(`{"event_id":"%s-%d","session_id":"s%d","event_type":%q}`, run, i, i%3, typ),
			Metadata: map[string]string{"session_id": fmt.Sprintf("s%d", i%3), "event_id": fmt.Sprintf("%s-%d", run, i)},
		})
	}
	if rej, err := c.Push(context.Background(), entries); err != nil || len(rej) != 0 {
		t.Fatalf("push: %v %v", rej, err)
	}
	eventually(t, base, fmt.Sprintf(`{tenant=%q}`, run), 20)
	eventually(t, base, fmt.Sprintf(`{tenant=%q, event_type="appointment.confirmed"}`, run), 4)
	// Structured metadata is filterable without being a label.
	eventually(t, base, fmt.Sprintf(`{tenant=%q} | session_id="s1"`, run), 7)
	// A replay (a crash before the Kafka commit) shows every line once.
	if _, err := c.Push(context.Background(), entries); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if got := query(t, base, fmt.Sprintf(`{tenant=%q}`, run)); len(got) != 20 {
		t.Errorf("after a replay the query returns %d lines, want 20", len(got))
	}
}

func TestRejectionsDoNotDropTheRest(t *testing.T) {
	c, base := newClient(t)
	run := fmt.Sprintf("r%d", time.Now().UnixNano())
	labels := map[string]string{"app": "assistlog-test", "tenant": run}
	now := time.Now()
	entries := []Entry{
		{Labels: labels, Time: now.Add(-time.Second), Line: "good 1", Ref: "g1"},
		{Labels: labels, Time: now.Add(-8 * 24 * time.Hour), Line: "too old", Ref: "old"},
		{Labels: labels, Time: now.Add(-time.Second), Line: strings.Repeat("x", 300<<10), Ref: "long"},
		{Labels: labels, Time: now.Add(time.Hour), Line: "future", Ref: "future"},
		{Labels: labels, Time: now, Line: "good 2", Ref: "g2"},
	}
	rej, err := c.Push(context.Background(), entries)
	if err != nil {
		t.Fatal(err)
	}
	refs := map[any]string{}
	for _, r := range rej {
		refs[r.Entry.Ref] = r.Reason
	}
	if len(rej) != 3 || refs["old"] == "" || refs["long"] == "" || refs["future"] == "" {
		t.Fatalf("rejections = %v", refs)
	}
	// Loki's own verdict on one stream of a batch (a label value over its
	// 2048-character limit): found by re-pushing one by one.
	badLabels := map[string]string{"app": "assistlog-test", "tenant": run, "bad": strings.Repeat("v", 3000)}
	mixed := []Entry{
		{Labels: badLabels, Time: now, Line: "bad stream", Ref: "badlabel"},
		{Labels: labels, Time: now.Add(time.Millisecond), Line: "good 3", Ref: "g3"},
	}
	rej, err = c.Push(context.Background(), mixed)
	if err != nil {
		t.Fatal(err)
	}
	if len(rej) != 1 || rej[0].Entry.Ref != "badlabel" || !strings.Contains(rej[0].Reason, "label value") {
		t.Fatalf("rejections = %+v", rej)
	}
	got := eventually(t, base, fmt.Sprintf(`{tenant=%q}`, run), 3)
	if strings.Join(got, ",") != "good 1,good 2,good 3" {
		t.Errorf("stored %v", got)
	}
}

// TestPushWaitsOutAnOutage stops the real Loki while a push is pending.
func TestPushWaitsOutAnOutage(t *testing.T) {
	c, base := newClient(t)
	run := fmt.Sprintf("r%d", time.Now().UnixNano())
	stacktest.DuringOutage(t, "loki", func() error {
		_, err := c.Push(context.Background(), []Entry{{Labels: map[string]string{"tenant": run}, Time: time.Now(), Line: "during the outage"}})
		return err
	})
	eventually(t, base, fmt.Sprintf(`{tenant=%q}`, run), 1)
}
