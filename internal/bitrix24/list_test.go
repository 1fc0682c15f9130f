package bitrix24

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/assistlog/assistlog/internal/bitrix24/bitrix24test"
)

// TestLeadListReadsEveryPageAtTheRateLimit: a full export of more leads
// than a few pages, filtered by origin prefix and creation date, returns
// each matching lead exactly once; the portal's bucket (5 requests, then
// 10/s) never answers 503, because the client's limiter (4, then 8/s, a
// margin under the portal) spaces the pages.
func TestLeadListReadsEveryPageAtTheRateLimit(t *testing.T) {
	c, srv := newPair(t, bitrix24test.Config{Drain: 10, Limit: 5}, func(c *Config) { c.RatePerSecond, c.Burst = 8, 4 })
	base := time.Date(2026, 11, 16, 0, 0, 0, 0, time.FixedZone("UTC+5", 5*3600))
	want := map[ID]bool{}
	for i := 0; i < 620; i++ {
		created := base.Add(time.Duration(i-10) * time.Hour / 2) // from 5 h before base on
		origin := fmt.Sprintf("assistlog:t/s-%d", i)
		if i%7 == 0 {
			origin = "" // made by hand
		}
		id := ID(srv.AddLead(map[string]any{"TITLE": "x", "ORIGIN_ID": origin, "SOURCE_ID": "WEB",
			"PHONE": []any{map[string]any{"VALUE": fmt.Sprintf("+7912%07d", i), "VALUE_TYPE": "MOBILE"}}}, created))
		if origin != "" && !created.Before(base) && created.Before(base.AddDate(0, 0, 7)) {
			want[ID(id)] = true
		}
	}
	var pages []int
	leads, err := c.LeadList(context.Background(), map[string]any{"%ORIGIN_ID": "assistlog:",
		">=DATE_CREATE": base.Format(time.RFC3339), "<DATE_CREATE": base.AddDate(0, 0, 7).Format(time.RFC3339)},
		func(p, rows int) { pages = append(pages, rows) })
	if err != nil {
		t.Fatal(err)
	}
	got := map[ID]bool{}
	for _, l := range leads {
		if got[l.ID] {
			t.Errorf("lead %d twice", l.ID)
		}
		got[l.ID] = true
		if !want[l.ID] {
			t.Errorf("lead %d (%s, %s) is outside the filter", l.ID, l.OriginID, l.DateCreate)
		}
		if len(l.Phone) != 1 || l.Created().IsZero() {
			t.Errorf("lead %d: phone %v, created %q", l.ID, l.Phone, l.DateCreate)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d leads read, %d match the filter", len(got), len(want))
	}
	wantPages := len(want)/LeadPageSize + 1 // the last page is short (maybe empty)
	if srv.Calls("crm.lead.list") != wantPages || len(pages) != wantPages || pages[len(pages)-1] != len(want) {
		t.Errorf("%d list calls, progress %v; want %d pages ending at %d rows", srv.Calls("crm.lead.list"), pages, wantPages, len(want))
	}
	if srv.Requests() != srv.Calls("crm.lead.list") {
		t.Errorf("%d requests for %d list calls: the portal refused some (503 QUERY_LIMIT_EXCEEDED)", srv.Requests(), srv.Calls("crm.lead.list"))
	}
	t.Logf("%d of 620 leads in %d pages, %d requests", len(got), wantPages, srv.Requests())
}

// TestLeadListWaitsOutARefusal: a page the portal refuses with 503
// QUERY_LIMIT_EXCEEDED is asked again; no page is lost or repeated.
func TestLeadListWaitsOutARefusal(t *testing.T) {
	c, srv := newPair(t, bitrix24test.Config{}, nil)
	for i := 0; i < 120; i++ {
		srv.AddLead(map[string]any{"ORIGIN_ID": fmt.Sprintf("assistlog:t/s-%d", i)}, time.Now())
	}
	srv.FailNext("crm.lead.list", 2, 503, "QUERY_LIMIT_EXCEEDED", "Too many requests")
	leads, err := c.LeadList(context.Background(), map[string]any{"%ORIGIN_ID": "assistlog:"}, nil)
	if err != nil || len(leads) != 120 {
		t.Fatalf("%d leads, %v; want 120", len(leads), err)
	}
	for i := 1; i < len(leads); i++ {
		if leads[i].ID <= leads[i-1].ID {
			t.Fatalf("ids out of order or repeated at %d: %d after %d", i, leads[i].ID, leads[i-1].ID)
		}
	}
	if srv.Faults("crm.lead.list") != 0 || srv.Calls("crm.lead.list") != 3 {
		t.Errorf("%d faults left, %d calls; want 0 and 3", srv.Faults("crm.lead.list"), srv.Calls("crm.lead.list"))
	}
}
