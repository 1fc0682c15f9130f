package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/assistlog/assistlog/internal/event"
	"github.com/assistlog/assistlog/internal/tenants"
)

// esHit finds a stored event by event_id through the alias: its index and
// source as stored.
func esHit(t *testing.T, es, alias, tenant, eventID string) (string, map[string]any) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": map[string]any{"bool": map[string]any{"filter": []any{
		map[string]any{"term": map[string]any{"event_id": eventID}}, map[string]any{"term": map[string]any{"tenant": tenant}}}}}})
	resp, err := http.Post(es+"/"+alias+"/_search", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Hits struct {
			Hits []struct {
				Index  string         `json:"_index"`
				Source map[string]any `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || len(r.Hits.Hits) != 1 {
		t.Fatalf("find %s: %v, %d hits", eventID, err, len(r.Hits.Hits))
	}
	return r.Hits.Hits[0].Index, r.Hits.Hits[0].Source
}

// esSend sends one request to Elasticsearch and fails the test unless it
// succeeded.
func esSend(t *testing.T, method, u string, body any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, u, rd)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s %s: HTTP %d %s", method, u, resp.StatusCode, b)
	}
}

func esPut(t *testing.T, es, index, id string, src map[string]any) {
	t.Helper()
	esSend(t, http.MethodPut, es+"/"+index+"/_doc/"+url.PathEscape(id)+"?refresh=true", src)
}

func esDelete(t *testing.T, es, index, id string) {
	t.Helper()
	esSend(t, http.MethodDelete, es+"/"+index+"/_doc/"+url.PathEscape(id)+"?refresh=true", nil)
}

// replayed is `audit conversation --format json` as a reader decodes it.
type replayed struct {
	Tenant    string `json:"tenant"`
	SessionID string `json:"session_id"`
	Zone      string `json:"zone"`
	Events    []struct {
		Index string `json:"_index"`
		ID    string `json:"_id"`
		Time  string `json:"time"`
		Who   string `json:"who"`
		Event struct {
			EventID    string   `json:"event_id"`
			Type       string   `json:"event_type"`
			Seq        *int64   `json:"seq"`
			Intent     string   `json:"intent"`
			Confidence *float64 `json:"confidence"`
			Payload    struct {
				Text string `json:"text"`
			} `json:"payload"`
		} `json:"event"`
	} `json:"events"`
	Verdict Verdict `json:"verdict"`
}

func replay(t *testing.T, cfg string, args ...string) replayed {
	t.Helper()
	out, errOut, err := runAudit(t, append([]string{"conversation", "--config", cfg, "--format", "json"}, args...)...)
	var ee *exitError
	damagedExit := errors.As(err, &ee) && ee.code == 2
	if err != nil && !damagedExit {
		t.Fatalf("audit conversation %v: %v\n%s", args, err, errOut)
	}
	var r replayed
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("decode %v: %v\n%s", args, err, out)
	}
	// A script reads the verdict from the exit status: 2 exactly when damaged.
	if damagedExit != (r.Verdict.Status == "damaged") {
		t.Errorf("audit conversation %v: status %s but exit error %v", args, r.Verdict.Status, err)
	}
	return r
}

// sessionsOf groups generated events by conversation, in generation order
// (which is seq order).
func sessionsOf(evs []event.Event) (map[string][]event.Event, []string) {
	by := map[string][]event.Event{}
	var order []string
	for _, e := range evs {
		k := e.Tenant + "/" + e.SessionID
		if _, ok := by[k]; !ok {
			order = append(order, k)
		}
		by[k] = append(by[k], e)
	}
	return by, order
}

func has(evs []event.Event, typ event.Type) bool {
	for _, e := range evs {
		if e.Type == typ {
			return true
		}
	}
	return false
}

// TestConversationReplay replays shipped conversations and compares them
// with what the generator made, then damages conversations in
// Elasticsearch and checks the exact verdict for each damage.
func TestConversationReplay(t *testing.T) {
	evs, _, stores, alias := shipped(t, 40)
	onStores(t, stores, func(t *testing.T, es string) {
		cfg := writeConfig(t, es, alias, "")
		zones, err := tenants.Load("../demo/tenants.yaml")
		if err != nil {
			t.Fatal(err)
		}
		bySession, order := sessionsOf(evs)

		// Pick conversations for each case; each is damaged at most once.
		used := map[string]bool{}
		pick := func(what string, ok func([]event.Event) bool) []event.Event {
			t.Helper()
			for _, k := range order {
				if !used[k] && ok(bySession[k]) {
					used[k] = true
					return bySession[k]
				}
			}
			t.Fatalf("the generated data has no conversation for %s", what)
			return nil
		}
		long := func(s []event.Event) bool { return len(s) >= 8 }
		withFollowUp := pick("a follow-up", func(s []event.Event) bool {
			return has(s, event.AppointmentAttended) || has(s, event.AppointmentNoShow)
		})
		plain := []([]event.Event){pick("replay 1", long), pick("replay 2", long), withFollowUp}

		t.Run("replay matches the generated events", func(t *testing.T) {
			for _, gen := range plain {
				r := replay(t, cfg, gen[0].SessionID)
				if r.Tenant != gen[0].Tenant || len(r.Events) != len(gen) {
					t.Fatalf("%s: %s with %d events, generated %s with %d", gen[0].SessionID, r.Tenant, len(r.Events), gen[0].Tenant, len(gen))
				}
				zone, _ := zones.Get(gen[0].Tenant)
				var followUps []string
				for i, g := range gen {
					got := r.Events[i]
					if got.Event.EventID != g.EventID || got.Event.Type != string(g.Type) || *got.Event.Seq != *g.Seq || got.Event.Intent != g.Intent {
						t.Errorf("%s #%d: %s %s seq %v %s, generated %s %s seq %d %s", g.SessionID, i, got.Event.EventID, got.Event.Type,
							got.Event.Seq, got.Event.Intent, g.EventID, g.Type, *g.Seq, g.Intent)
					}
					if (got.Event.Confidence == nil) != (g.Confidence == nil) || (g.Confidence != nil && *got.Event.Confidence != *g.Confidence) {
						t.Errorf("%s: confidence %v, generated %v", g.EventID, got.Event.Confidence, g.Confidence)
					}
					// Text without digits or @ cannot have been masked.
					if tx := g.Text(); !strings.ContainsAny(tx, "0123456789@") && got.Event.Payload.Text != tx {
						t.Errorf("%s: text %q, generated %q", g.EventID, got.Event.Payload.Text, tx)
					}
					if want := g.Time().In(zone.Location()).Format("2006-01-02 15:04:05.000"); got.Time != want {
						t.Errorf("%s: time %s, want %s in %s", g.EventID, got.Time, want, zone.TZ)
					}
					wantWho := map[event.Type]string{event.MessageReceived: "customer", event.MessageSent: "assistant",
						event.ManagerJoined: "manager", event.SessionStarted: "system", event.LeadCreated: "system"}[g.Type]
					if wantWho != "" && got.Who != wantWho {
						t.Errorf("%s (%s): who %s, want %s", g.EventID, g.Type, got.Who, wantWho)
					}
					if g.Type == event.AppointmentAttended || g.Type == event.AppointmentNoShow {
						followUps = append(followUps, g.EventID)
					}
				}
				v := r.Verdict
				if v.Status != "intact" || len(v.Problems) != 0 || v.SeqCheck != "complete" || v.MaxSeq != int64(len(gen)) || !v.Ended || !v.StartsOK {
					t.Errorf("%s: verdict %+v, want intact, seq 1–%d complete", gen[0].SessionID, v, len(gen))
				}
				if strings.Join(v.FollowUps, ",") != strings.Join(followUps, ",") {
					t.Errorf("%s: follow-ups %v, generated %v", gen[0].SessionID, v.FollowUps, followUps)
				}
			}
			if len(plain[2]) == 0 {
				t.Fatal("no follow-up case")
			}
		})

		t.Run("html, markdown and table carry every event", func(t *testing.T) {
			gen := plain[0]
			page := filepath.Join(t.TempDir(), "c.html")
			if _, errOut, err := runAudit(t, "conversation", gen[0].SessionID, "--config", cfg, "--format", "html", "--out", page); err != nil {
				t.Fatal(err, errOut)
			}
			b, err := os.ReadFile(page)
			if err != nil {
				t.Fatal(err)
			}
			doc := string(b)
			// Self-contained: nothing is loaded from elsewhere (links to
			// Kibana or the CRM are anchors, which load nothing).
			for _, re := range []string{`(?i)\ssrc\s*=`, `(?i)<link\b`, `(?i)@import`, `(?i)url\(`, `(?i)<script`, `(?i)<iframe`} {
				if m := regexp.MustCompile(re).FindString(doc); m != "" {
					t.Errorf("the page loads an outside resource: %q", m)
				}
			}
			if !strings.Contains(doc, "@media print") {
				t.Error("no print CSS")
			}
			if n := strings.Count(doc, "<tr class="); n != len(gen) {
				t.Errorf("html: %d transcript rows, %d events", n, len(gen))
			}
			for _, g := range gen {
				if !strings.Contains(doc, g.EventID) || !strings.Contains(doc, ">"+string(g.Type)+"<") {
					t.Errorf("html lacks %s (%s)", g.EventID, g.Type)
				}
				if tx := g.Text(); tx != "" && !strings.ContainsAny(tx, "0123456789@") && !strings.Contains(doc, html.EscapeString(tx)) {
					t.Errorf("html lacks the text of %s: %q", g.EventID, tx)
				}
			}
			md, _, err := runAudit(t, "conversation", gen[0].SessionID, "--config", cfg, "--format", "md")
			if err != nil {
				t.Fatal(err)
			}
			if n := strings.Count(md, "\n| "); n != len(gen)+1 || !strings.Contains(md, "status: INTACT") {
				t.Errorf("markdown: %d table lines, want %d\n%s", n, len(gen)+1, md)
			}
			tbl, _, err := runAudit(t, "conversation", gen[0].SessionID, "--config", cfg)
			if err != nil {
				t.Fatal(err)
			}
			rows := 0
			for _, l := range strings.Split(tbl, "\n") {
				if regexp.MustCompile(`^\d+\s+\d{4}-\d\d-\d\d `).MatchString(l) {
					rows++
				}
			}
			if rows != len(gen) {
				t.Errorf("table: %d rows, %d events\n%s", rows, len(gen), tbl)
			}
		})

		t.Run("a deleted event is a gap at its seq", func(t *testing.T) {
			gen := pick("a gap", long)
			k := len(gen) / 2
			idx, _ := esHit(t, es, alias, gen[k].Tenant, gen[k].EventID)
			esDelete(t, es, idx, gen[k].EventID)
			v := replay(t, cfg, gen[0].SessionID).Verdict
			s := *gen[k].Seq
			if v.Status != "damaged" || len(v.Missing) != 1 || v.Missing[0] != (SeqRange{s, s}) || len(v.Repeated) != 0 ||
				strings.Join(v.Problems, "|") != fmt.Sprintf("seq %d missing", s) {
				t.Errorf("verdict %+v, want exactly seq %d missing", v, s)
			}
		})

		t.Run("two deleted neighbours are one range", func(t *testing.T) {
			gen := pick("a gap range", long)
			for _, k := range []int{2, 3, 4} {
				idx, _ := esHit(t, es, alias, gen[k].Tenant, gen[k].EventID)
				esDelete(t, es, idx, gen[k].EventID)
			}
			v := replay(t, cfg, gen[0].SessionID).Verdict
			want := SeqRange{*gen[2].Seq, *gen[4].Seq}
			if len(v.Missing) != 1 || v.Missing[0] != want || strings.Join(v.Problems, "|") != "seq "+want.String()+" missing" {
				t.Errorf("verdict %+v, want seq %s missing", v, want)
			}
		})

		t.Run("a repeated seq with another event id", func(t *testing.T) {
			gen := pick("a repeat", long)
			k := 3
			idx, src := esHit(t, es, alias, gen[k].Tenant, gen[k].EventID)
			src["event_id"] = gen[k].EventID + "-again"
			esPut(t, es, idx, gen[k].EventID+"-again", src)
			v := replay(t, cfg, gen[0].SessionID).Verdict
			want := SeqRepeat{Seq: *gen[k].Seq, EventIDs: []string{gen[k].EventID, gen[k].EventID + "-again"}}
			if v.Status != "damaged" || len(v.Repeated) != 1 || v.Repeated[0].Seq != want.Seq ||
				strings.Join(v.Repeated[0].EventIDs, ",") != strings.Join(want.EventIDs, ",") || len(v.Missing) != 0 || len(v.Problems) != 1 {
				t.Errorf("verdict %+v, want only seq %d repeated by %v", v, want.Seq, want.EventIDs)
			}
		})

		t.Run("without session.ended it is open", func(t *testing.T) {
			gen := pick("an open one", func(s []event.Event) bool {
				return long(s) && s[len(s)-1].Type == event.SessionEnded
			})
			last := gen[len(gen)-1]
			idx, _ := esHit(t, es, alias, last.Tenant, last.EventID)
			esDelete(t, es, idx, last.EventID)
			v := replay(t, cfg, gen[0].SessionID).Verdict
			if v.Status != "open" || !v.Open || v.Ended || len(v.Problems) != 0 || v.MaxSeq != *last.Seq-1 {
				t.Errorf("verdict %+v, want open with no problem", v)
			}
		})

		t.Run("time going backwards", func(t *testing.T) {
			gen := pick("time backwards", long)
			k := 5
			idx, src := esHit(t, es, alias, gen[k].Tenant, gen[k].EventID)
			back := gen[k-1].Time().Add(-time.Second).Format(time.RFC3339Nano)
			src["@timestamp"], src["timestamp"] = back, back
			esPut(t, es, idx, gen[k].EventID, src)
			v := replay(t, cfg, gen[0].SessionID).Verdict
			if v.Status != "damaged" || len(v.Backwards) != 1 || v.Backwards[0].EventID != gen[k].EventID || v.Backwards[0].Seq != *gen[k].Seq ||
				v.Backwards[0].PrevEventID != gen[k-1].EventID || len(v.Problems) != 1 || len(v.Missing) != 0 {
				t.Errorf("verdict %+v, want one step back at %s after %s", v, gen[k].EventID, gen[k-1].EventID)
			}
		})

		// copyAs stores a generated conversation again under a new session id,
		// with seq removed where drop says so.
		copyAs := func(gen []event.Event, session string, drop func(i int) bool) {
			t.Helper()
			for i, g := range gen {
				idx, src := esHit(t, es, alias, g.Tenant, g.EventID)
				src["session_id"] = session
				src["event_id"] = session + fmt.Sprintf("-%04d", i+1)
				if drop(i) {
					delete(src, "seq")
				}
				esPut(t, es, idx, src["event_id"].(string), src)
			}
		}

		t.Run("without seq the check is none", func(t *testing.T) {
			gen := pick("no seq", long)
			copyAs(gen, gen[0].SessionID+"-noseq", func(int) bool { return true })
			r := replay(t, cfg, gen[0].SessionID+"-noseq")
			v := r.Verdict
			if v.SeqCheck != "none" || v.WithoutSeq != len(gen) || v.Status != "intact" || len(v.Missing) != 0 || len(r.Events) != len(gen) {
				t.Errorf("verdict %+v, want seq check none on %d events", v, len(gen))
			}
			out, _, _ := runAudit(t, "conversation", gen[0].SessionID+"-noseq", "--config", cfg)
			if !strings.Contains(out, "partial") {
				t.Errorf("the table does not say the check is partial:\n%s", out)
			}
		})

		t.Run("with seq on some events the check is partial", func(t *testing.T) {
			gen := pick("some seq", long)
			copyAs(gen, gen[0].SessionID+"-someseq", func(i int) bool { return i == 2 || i == 3 })
			v := replay(t, cfg, gen[0].SessionID+"-someseq").Verdict
			if v.SeqCheck != "partial" || v.WithoutSeq != 2 || v.Status != "intact" || len(v.Problems) != 0 ||
				len(v.Missing) != 1 || v.Missing[0] != (SeqRange{3, 4}) || len(v.Notes) != 1 {
				t.Errorf("verdict %+v, want partial: seq 3–4 not proven lost, 2 events without seq", v)
			}
		})

		t.Run("one session id, two tenants", func(t *testing.T) {
			gen := pick("two tenants", long)
			idx, src := esHit(t, es, alias, gen[0].Tenant, gen[0].EventID)
			other := "dental-smile"
			if gen[0].Tenant == other {
				other = "salon-aurora"
			}
			src["tenant"] = other
			esPut(t, es, idx, gen[0].EventID+"-"+other, src)
			_, _, err := runAudit(t, "conversation", gen[0].SessionID, "--config", cfg)
			if err == nil || !strings.Contains(err.Error(), "--tenant") || !strings.Contains(err.Error(), gen[0].Tenant+" (") || !strings.Contains(err.Error(), other+" (1 events)") {
				t.Errorf("error %v, want one naming both tenants", err)
			}
			r := replay(t, cfg, gen[0].SessionID, "--tenant", gen[0].Tenant)
			if len(r.Events) != len(gen) || r.Verdict.Status != "intact" {
				t.Errorf("--tenant %s: %d events, %s", gen[0].Tenant, len(r.Events), r.Verdict.Status)
			}
		})

		t.Run("unknown session", func(t *testing.T) {
			_, _, err := runAudit(t, "conversation", "no-such-session", "--config", cfg)
			if err == nil || !strings.Contains(err.Error(), `no conversation "no-such-session"`) {
				t.Errorf("error %v", err)
			}
			_, _, err = runAudit(t, "conversation", plain[0][0].SessionID, "--config", cfg, "--tenant", "no-such-tenant")
			if err == nil || !strings.Contains(err.Error(), "no-such-tenant") {
				t.Errorf("unknown tenant: %v", err)
			}
		})
	})
}
