package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/assistlog/assistlog/internal/event"
	"github.com/assistlog/assistlog/internal/stacktest"
)

// retentionTenants: a 6-month tenant in Ufa, a tenant on the file's
// 12-month default in Moscow; events of a tenant the file does not list
// get the default in UTC.
const retentionTenants = `retention: 12mo
tenants:
  - {name: ret-short, tz: Asia/Yekaterinburg, retention: 6mo}
  - {name: ret-long, tz: Europe/Moscow}
`

// monthsBack is the test's own reading of "n calendar months before
// today, at local midnight" (a missing day is the month's last).
func monthsBack(now time.Time, loc *time.Location, n int) time.Time {
	y, m, d := now.In(loc).Date()
	first := time.Date(y, m-time.Month(n), 1, 0, 0, 0, 0, loc)
	if last := first.AddDate(0, 1, -1).Day(); d > last {
		d = last
	}
	return time.Date(first.Year(), first.Month(), d, 0, 0, 0, 0, loc)
}

// retentionRow is one row of `audit retention apply --format json`.
type retentionRow struct {
	Store, Index, Tenant, Retention, Cutoff, Action string
	Past                                            string `json:"past_retention"`
	Deleted                                         string `json:"deleted"`
}

// TestRetentionApply writes events of three tenants at ages around each
// one's cutoff and far past it, with the real writer into monthly indices
// on each store, plus review labels, and runs `audit retention apply`:
// a dry run deletes nothing and counts exactly what is past retention;
// the run deletes exactly that (per tenant, as the server answers), keeps
// the rest, deletes the monthly indices everything in which is past
// retention, and removes only the review labels whose week is past.
func TestRetentionApply(t *testing.T) {
	for _, st := range stacktest.SearchStores(t) {
		t.Run(st.Name, func(t *testing.T) { testRetentionApply(t, st) })
	}
}

func testRetentionApply(t *testing.T, st stacktest.SearchStore) {
	now := time.Now()
	ufa, _ := time.LoadLocation("Asia/Yekaterinburg")
	msk, _ := time.LoadLocation("Europe/Moscow")
	cutoff := map[string]time.Time{
		"ret-short": monthsBack(now, ufa, 6),
		"ret-long":  monthsBack(now, msk, 12),
		"ret-other": monthsBack(now, time.UTC, 12),
	}
	var evs []event.Event
	past := map[string]int{}
	kept := map[string]map[string]bool{}
	add := func(tenant string, ts time.Time) {
		id := fmt.Sprintf("%s-%d", tenant, len(evs))
		evs = append(evs, crafted(id, ts.UTC().Format(time.RFC3339Nano), tenant, event.MessageReceived, ""))
		if kept[tenant] == nil {
			kept[tenant] = map[string]bool{}
		}
		if ts.Before(cutoff[tenant]) {
			past[tenant]++
		} else {
			kept[tenant][id] = true
		}
	}
	for tenant, c := range cutoff {
		// Either side of the cutoff, by a minute.
		add(tenant, c.Add(-time.Minute))
		add(tenant, c.Add(time.Minute))
		// Young and old, and 16–17 months back: those months hold nothing
		// any tenant may keep, so their indices go whole.
		for _, days := range []int{1, 40, 120, 170, 200, 260, 330, 390, 480, 510} {
			add(tenant, now.Add(-time.Duration(days)*24*time.Hour))
		}
	}
	es, alias := craftedAlias(t, evs, st)
	oldIndices := []string{alias + "-" + now.Add(-480*24*time.Hour).UTC().Format("2006.01"), alias + "-" + now.Add(-510*24*time.Hour).UTC().Format("2006.01")}

	// Review labels: ret-short's week 30 weeks ago is past its 6 months,
	// its week 10 weeks ago is not; ret-long keeps both.
	reviews := "reviews-" + alias
	do(t, http.MethodPut, es+"/"+reviews, reviewIndexMapping)
	t.Cleanup(func() { req, _ := http.NewRequest(http.MethodDelete, es+"/"+reviews, nil); http.DefaultClient.Do(req) })
	wantLabels := map[string]bool{}
	for _, tenant := range []string{"ret-short", "ret-long"} {
		for _, weeks := range []int{10, 30} {
			ws := now.AddDate(0, 0, -7*weeks).Truncate(24 * time.Hour)
			id := fmt.Sprintf("%s-%d", tenant, weeks)
			do(t, http.MethodPut, es+"/"+reviews+"/_doc/"+id, map[string]any{"week": ws.Format("2006-W01"), "week_start": ws, "tenant": tenant, "session_id": id, "cause": "asr"})
			if tenant == "ret-long" || weeks == 10 {
				wantLabels[id] = true
			}
		}
	}
	do(t, http.MethodPost, es+"/"+reviews+"/_refresh", nil)

	dir := t.TempDir()
	tf := filepath.Join(dir, "tenants.yaml")
	if err := os.WriteFile(tf, []byte(retentionTenants), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "audit.yaml")
	y := fmt.Sprintf("elasticsearch:\n  urls: [%q]\n  alias: %s\ntenants_file: %s\nreviews_index: %s\n", es, alias, tf, reviews)
	if err := os.WriteFile(cfg, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}

	total := func() map[string]int { return countByTenant(t, es, alias) }
	before := total()
	apply := func(args ...string) []retentionRow {
		t.Helper()
		// The cutoffs above were counted at now; the command counts at the
		// same instant, or a local midnight passing during the test (19:00
		// UTC in Ufa, 21:00 in Moscow, 00:00 UTC) would move them a day.
		out, errOut, err := runAt(t, now, append([]string{"retention", "apply", "--config", cfg, "--format", "json"}, args...)...)
		if err != nil {
			t.Fatalf("retention apply %v: %v\n%s", args, err, errOut)
		}
		var rows []retentionRow
		if err := json.Unmarshal([]byte(out), &rows); err != nil {
			t.Fatalf("json: %v\n%s", err, out)
		}
		return rows
	}
	sum := func(rows []retentionRow, field func(retentionRow) string) map[string]int {
		m := map[string]int{}
		for _, r := range rows {
			if strings.HasPrefix(r.Index, "reviews-") {
				continue
			}
			var n int
			fmt.Sscan(field(r), &n)
			m[r.Tenant] += n
		}
		return m
	}

	dry := apply("--dry-run")
	if got := sum(dry, func(r retentionRow) string { return r.Past }); fmt.Sprint(got) != fmt.Sprint(past) {
		t.Errorf("dry run counts past retention %v, want %v", got, past)
	}
	if got := sum(dry, func(r retentionRow) string { return r.Deleted }); fmt.Sprint(got) != fmt.Sprint(map[string]int{"ret-long": 0, "ret-other": 0, "ret-short": 0}) {
		t.Errorf("dry run reports deletions %v", got)
	}
	if after := total(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("the dry run changed the store: %v, before %v", after, before)
	}

	// One tenant first: only its events go.
	short := apply("--tenant", "ret-short")
	if got := sum(short, func(r retentionRow) string { return r.Deleted }); fmt.Sprint(got) != fmt.Sprint(map[string]int{"ret-short": past["ret-short"]}) {
		t.Errorf("apply --tenant ret-short says it deleted %v, want ret-short's %d", got, past["ret-short"])
	}
	after := total()
	for _, tenant := range []string{"ret-long", "ret-other"} {
		if after[tenant] != before[tenant] {
			t.Errorf("apply --tenant ret-short changed %s: %d events, before %d", tenant, after[tenant], before[tenant])
		}
	}
	if after["ret-short"] != len(kept["ret-short"]) {
		t.Errorf("ret-short holds %d events, want %d", after["ret-short"], len(kept["ret-short"]))
	}

	rows := apply()
	deleted := sum(rows, func(r retentionRow) string { return r.Deleted })
	for tenant, n := range sum(short, func(r retentionRow) string { return r.Deleted }) {
		deleted[tenant] += n
	}
	if fmt.Sprint(deleted) != fmt.Sprint(past) {
		t.Errorf("the two runs say they deleted %v, want %v", deleted, past)
	}
	// What the server holds now is exactly what each tenant keeps.
	for tenant, want := range kept {
		got := idsOf(t, es, alias, map[string]any{"term": map[string]any{"tenant": tenant}}, "event_id")
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s keeps %d events %v, want %d %v", tenant, len(got), got, len(want), want)
		}
	}
	for _, idx := range oldIndices {
		if code := status(t, es+"/"+idx); code != http.StatusNotFound {
			t.Errorf("index %s: HTTP %d, want it deleted (everything in it is past retention)", idx, code)
		}
	}
	var whole int
	for _, r := range rows {
		if r.Action == "index" {
			whole++
		}
	}
	if whole == 0 {
		t.Errorf("no index was deleted whole: %+v", rows)
	}
	if got := idsOf(t, es, reviews, nil, "session_id"); fmt.Sprint(got) != fmt.Sprint(wantLabels) {
		t.Errorf("review labels kept %v, want %v", got, wantLabels)
	}

	// Nothing is past retention any more: a second run deletes nothing.
	if got := sum(apply(), func(r retentionRow) string { return r.Deleted }); len(got) != 0 {
		t.Errorf("a second run deleted %v", got)
	}
}

func do(t *testing.T, method, url string, body any) {
	t.Helper()
	var b []byte
	if body != nil {
		b, _ = json.Marshal(body)
	}
	req, _ := http.NewRequest(method, url, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		t.Fatalf("%s %s: HTTP %d %v", method, url, resp.StatusCode, m)
	}
}

func status(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// countByTenant counts the alias's documents per tenant (a terms
// aggregation read back from the server).
func countByTenant(t *testing.T, es, alias string) map[string]int {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"size": 0, "aggs": map[string]any{"t": map[string]any{"terms": map[string]any{"field": "tenant", "size": 100}}}})
	resp, err := http.Post(es+"/"+alias+"/_search", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Aggregations struct {
			T struct {
				Buckets []struct {
					Key      string `json:"key"`
					DocCount int    `json:"doc_count"`
				} `json:"buckets"`
			} `json:"t"`
		} `json:"aggregations"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	m := map[string]int{}
	for _, b := range r.Aggregations.T.Buckets {
		m[b.Key] = b.DocCount
	}
	return m
}

// idsOf reads field of every document matching q (at most 10 000: the
// test writes far fewer).
func idsOf(t *testing.T, es, index string, q map[string]any, field string) map[string]bool {
	t.Helper()
	if q == nil {
		q = map[string]any{"match_all": map[string]any{}}
	}
	b, _ := json.Marshal(map[string]any{"size": 10000, "query": q, "_source": []string{field}})
	resp, err := http.Post(es+"/"+index+"/_search", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Hits struct {
			Hits []struct {
				Source map[string]any `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, h := range r.Hits.Hits {
		out[fmt.Sprint(h.Source[field])] = true
	}
	return out
}

var _ = context.Background
