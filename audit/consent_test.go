package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/assistlog/assistlog/internal/event"
	"github.com/assistlog/assistlog/internal/tenants"
)

// consentJSON runs audit consent --format json.
func consentJSON(t *testing.T, cfg string, args ...string) consentReport {
	t.Helper()
	out, errOut, err := runAudit(t, append([]string{"consent", "--config", cfg, "--format", "json"}, args...)...)
	if err != nil {
		t.Fatalf("audit consent %v: %v\n%s", args, err, errOut)
	}
	var r consentReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("decode: %v\n%s", err, out)
	}
	return r
}

// genLead is a generated lead as the generator made it: the truth.
type genLead struct {
	tenant, session string
	consent         event.Event // the consent.given
	contact         event.Event // the first message with the phone
	asked           event.Event // the contact.requested
	lead            event.Event
	events          []event.Event
}

// leadsOf lists the generated conversations with lead.created.
func leadsOf(t *testing.T, evs []event.Event) []genLead {
	by, order := sessionsOf(evs)
	var out []genLead
	for _, k := range order {
		s := by[k]
		if !has(s, event.LeadCreated) {
			continue
		}
		l := genLead{tenant: s[0].Tenant, session: s[0].SessionID, events: s}
		for _, e := range s {
			switch {
			case e.Type == event.ConsentGiven && l.consent.EventID == "":
				l.consent = e
			case e.Type == event.ContactRequested && l.asked.EventID == "":
				l.asked = e
			case e.Type == event.LeadCreated && l.lead.EventID == "":
				l.lead = e
			case e.Type == event.MessageReceived && e.Intent == "ProvideContact" && l.contact.EventID == "":
				l.contact = e
			}
		}
		if l.consent.EventID == "" || l.contact.EventID == "" || *l.consent.Seq > *l.contact.Seq {
			t.Fatalf("generated lead %s: consent %q, contact %q — the generator no longer gives consent first", k, l.consent.EventID, l.contact.EventID)
		}
		out = append(out, l)
	}
	return out
}

// TestConsent checks every lead's consent against the generated truth,
// then damages leads in Elasticsearch (consent deleted, consent moved after
// the phone, consent wording dropped) for exact verdicts and totals, and
// proves a proof verifies on untouched data and fails once a stored event
// changes or goes.
func TestConsent(t *testing.T) {
	evs, truth, stores, alias := shipped(t, 40)
	onStores(t, stores, func(t *testing.T, es string) {
		cfg := writeConfig(t, es, alias, "")
		zones, err := tenants.Load("../demo/tenants.yaml")
		if err != nil {
			t.Fatal(err)
		}
		leads := leadsOf(t, evs)
		if len(leads) < 8 || len(leads) != truth.Leads {
			t.Fatalf("%d generated leads (truth %d); the test needs at least 8", len(leads), truth.Leads)
		}
		from := truth.First.AddDate(0, 0, -2).Format("2006-01-02")
		to := truth.Last.AddDate(0, 0, 2).Format("2006-01-02")

		check := func(t *testing.T, got LeadConsent, g genLead, verdict string) {
			t.Helper()
			loc, _ := zones.Get(g.tenant)
			at := func(e event.Event) string { return e.Time().In(loc.Location()).Format("2006-01-02 15:04:05.000") }
			if got.Verdict != verdict || got.LeadEventID != g.lead.EventID {
				t.Errorf("%s: verdict %s (lead %s), want %s (lead %s)", g.session, got.Verdict, got.LeadEventID, verdict, g.lead.EventID)
			}
			if verdict != consentMissing {
				c := got.Consent
				if c == nil || c.EventID != g.consent.EventID || c.Time != at(g.consent) || c.Channel != g.consent.Channel ||
					c.Text != g.consent.Payload["consent_text"] || c.TextFrom != "payload.consent_text" {
					t.Errorf("%s: consent %+v, generated %s at %s via %s: %q", g.session, c, g.consent.EventID, at(g.consent), g.consent.Channel, g.consent.Payload["consent_text"])
				}
			} else if got.Consent != nil {
				t.Errorf("%s: consent %+v, want none", g.session, got.Consent)
			}
			if k := got.Contact; k == nil || k.EventID != g.contact.EventID || k.Time != at(g.contact) || k.Type != "message.received" {
				t.Errorf("%s: first contact %+v, generated %s at %s", g.session, k, g.contact.EventID, at(g.contact))
			}
		}

		t.Run("every generated lead is ok", func(t *testing.T) {
			r := consentJSON(t, cfg, "--from", from, "--to", to)
			if r.Totals != (Totals{Leads: len(leads), OK: len(leads)}) || len(r.Leads) != len(leads) {
				t.Fatalf("totals %+v, %d rows; want %d leads, all ok", r.Totals, len(r.Leads), len(leads))
			}
			got := map[string]LeadConsent{}
			for _, l := range r.Leads {
				got[l.Tenant+"/"+l.SessionID] = l
			}
			for _, g := range leads {
				check(t, got[g.tenant+"/"+g.session], g, consentOK)
			}
		})

		t.Run("one tenant, one day in its zone", func(t *testing.T) {
			g := leads[0]
			loc, _ := zones.Get(g.tenant)
			day := g.lead.Time().In(loc.Location()).Format("2006-01-02")
			want := 0
			for _, l := range leads {
				if l.tenant == g.tenant && l.lead.Time().In(loc.Location()).Format("2006-01-02") == day {
					want++
				}
			}
			r := consentJSON(t, cfg, "--tenant", g.tenant, "--from", day, "--to", day)
			if r.Totals.Leads != want || r.Totals.OK != want {
				t.Errorf("%s on %s: %+v, want %d leads", g.tenant, day, r.Totals, want)
			}
		})

		// Proof of an untouched lead, made before anything is damaged.
		proofLead := leads[len(leads)-1]
		proof := filepath.Join(t.TempDir(), "proof.json")
		if _, errOut, err := runAudit(t, "consent", "--config", cfg, "--session", proofLead.session, "--proof", proof); err != nil {
			t.Fatal(err, errOut)
		}

		missing, moved, reworded := leads[0], leads[1], leads[2]
		t.Run("a deleted consent is missing", func(t *testing.T) {
			idx, _ := esHit(t, es, alias, missing.tenant, missing.consent.EventID)
			esDelete(t, es, idx, missing.consent.EventID)
			r := consentJSON(t, cfg, "--session", missing.session)
			if len(r.Leads) != 1 || r.Totals != (Totals{Leads: 1, Missing: 1}) {
				t.Fatalf("%+v", r)
			}
			check(t, r.Leads[0], missing, consentMissing)
		})

		t.Run("a consent moved after the phone is after_contact", func(t *testing.T) {
			// Swap the consent and the phone message: seq and time.
			ci, cs := esHit(t, es, alias, moved.tenant, moved.consent.EventID)
			pi, ps := esHit(t, es, alias, moved.tenant, moved.contact.EventID)
			for _, f := range []string{"seq", "@timestamp", "timestamp"} {
				cs[f], ps[f] = ps[f], cs[f]
			}
			esPut(t, es, ci, moved.consent.EventID, cs)
			esPut(t, es, pi, moved.contact.EventID, ps)
			r := consentJSON(t, cfg, "--session", moved.session)
			if len(r.Leads) != 1 || r.Leads[0].Verdict != consentAfterContact || r.Totals != (Totals{Leads: 1, AfterContact: 1}) {
				t.Fatalf("%+v", r)
			}
			if r.Leads[0].Consent == nil || r.Leads[0].Consent.EventID != moved.consent.EventID ||
				r.Leads[0].Contact == nil || r.Leads[0].Contact.EventID != moved.contact.EventID {
				t.Errorf("%+v", r.Leads[0])
			}
		})

		t.Run("without consent_text the question's wording is used", func(t *testing.T) {
			idx, src := esHit(t, es, alias, reworded.tenant, reworded.consent.EventID)
			delete(src["payload"].(map[string]any), "consent_text")
			esPut(t, es, idx, reworded.consent.EventID, src)
			r := consentJSON(t, cfg, "--session", reworded.session)
			c := r.Leads[0].Consent
			if r.Leads[0].Verdict != consentOK || c == nil || c.Text != reworded.asked.Text() || c.TextFrom != "contact.requested "+reworded.asked.EventID {
				t.Errorf("%+v, want the text of %s: %q", c, reworded.asked.EventID, reworded.asked.Text())
			}
		})

		t.Run("period totals after the damage", func(t *testing.T) {
			r := consentJSON(t, cfg, "--from", from, "--to", to)
			want := Totals{Leads: len(leads), OK: len(leads) - 2, Missing: 1, AfterContact: 1}
			if r.Totals != want {
				t.Errorf("totals %+v, want %+v", r.Totals, want)
			}
			for _, l := range r.Leads {
				want := map[string]string{missing.session: consentMissing, moved.session: consentAfterContact}[l.SessionID]
				if want == "" {
					want = consentOK
				}
				if l.Verdict != want {
					t.Errorf("%s: %s, want %s", l.SessionID, l.Verdict, want)
				}
			}
			out, _, err := runAudit(t, "consent", "--config", cfg, "--from", from, "--to", to)
			if err != nil || !strings.Contains(out, "ok "+itoa(len(leads)-2)+", missing 1, after_contact 1") {
				t.Errorf("table totals: %v\n%s", err, out)
			}
		})

		t.Run("proof verifies until a stored event changes", func(t *testing.T) {
			b, err := os.ReadFile(proof)
			if err != nil {
				t.Fatal(err)
			}
			var p Proof
			if err := json.Unmarshal(b, &p); err != nil {
				t.Fatal(err)
			}
			ids := map[string]bool{}
			for _, e := range p.Events {
				ids[e.ID] = true
			}
			for _, id := range []string{proofLead.consent.EventID, proofLead.asked.EventID, proofLead.contact.EventID, proofLead.lead.EventID} {
				if !ids[id] {
					t.Errorf("the proof lacks %s: %v", id, ids)
				}
			}
			if len(p.Leads) != 1 || p.Leads[0].Verdict != consentOK || p.Digest.Definition == "" || len(p.Digest.Value) != 64 {
				t.Errorf("proof %+v", p)
			}
			if md, err := os.ReadFile(strings.TrimSuffix(proof, ".json") + ".md"); err != nil || !strings.Contains(string(md), p.Digest.Value) ||
				!strings.Contains(string(md), proofLead.consent.EventID) {
				t.Errorf("markdown rendering: %v", err)
			}

			out, _, err := runAudit(t, "consent", "verify", proof, "--config", cfg)
			if err != nil || !strings.HasPrefix(out, "OK: 4 events match") {
				t.Fatalf("untouched: %v\n%s", err, out)
			}
			// Change one stored event.
			idx, src := esHit(t, es, alias, proofLead.tenant, proofLead.consent.EventID)
			src["payload"].(map[string]any)["consent_text"] = "something else"
			esPut(t, es, idx, proofLead.consent.EventID, src)
			out, _, err = runAudit(t, "consent", "verify", proof, "--config", cfg)
			var ee *exitError
			if !errors.As(err, &ee) || ee.code != 2 || !strings.Contains(out, idx+"/"+proofLead.consent.EventID+": differs in payload") ||
				strings.Count(out, "MISMATCH") != 1 {
				t.Errorf("changed: %v\n%s", err, out)
			}
			// Delete another.
			idx, _ = esHit(t, es, alias, proofLead.tenant, proofLead.lead.EventID)
			esDelete(t, es, idx, proofLead.lead.EventID)
			out, _, err = runAudit(t, "consent", "verify", proof, "--config", cfg)
			if !errors.As(err, &ee) || ee.code != 2 || !strings.Contains(out, idx+"/"+proofLead.lead.EventID+": missing") || strings.Count(out, "MISMATCH") != 2 {
				t.Errorf("deleted: %v\n%s", err, out)
			}
			// An edited file no longer matches its own digest.
			edited := strings.ReplaceAll(string(b), proofLead.consent.Payload["consent_text"].(string), "edited")
			if err := os.WriteFile(proof, []byte(edited), 0o644); err != nil {
				t.Fatal(err)
			}
			out, _, _ = runAudit(t, "consent", "verify", proof, "--config", cfg)
			if !strings.Contains(out, "the file itself") {
				t.Errorf("edited file: %s", out)
			}
		})

		t.Run("usage errors", func(t *testing.T) {
			for _, c := range []struct {
				args []string
				want string
			}{
				{[]string{"consent", "--config", cfg}, "either --session"},
				{[]string{"consent", "--config", cfg, "--session", "x", "--last", "7d"}, "either --session"},
				{[]string{"consent", "--config", cfg, "--session", "no-such-session"}, `no conversation "no-such-session"`},
				{[]string{"consent", "--config", cfg, "--last", "7d", "--tenant", "nope"}, "nope"},
				{[]string{"consent", "--config", cfg, "--week", "2026-W99"}, "week 99"},
			} {
				_, _, err := runAudit(t, c.args...)
				if err == nil || !strings.Contains(err.Error(), c.want) {
					t.Errorf("%v: %v, want %q", c.args[1:], err, c.want)
				}
			}
		})
	})
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }
