package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/assistlog/assistlog/internal/esread"
)

// canonicalDefinition is written into every proof: how to recompute its
// digest without this program.
const canonicalDefinition = `SHA-256 (lower-case hex) over the concatenation, in the order of "events", of: _index, "\n", _id, "\n", the canonical JSON of _source, "\n". Canonical JSON of a value: objects with their keys sorted by byte order (UTF-8) and no duplicate keys, arrays in their order, no white space outside strings, numbers written exactly as stored (the literal digits, not re-formatted), true/false/null as such, strings in double quotes escaping only " as \", \ as \\, the control characters U+0000–U+001F (\b, \f, \n, \r and \t as such, the others as \u00XX lower-case hex) and U+2028/U+2029 as \u2028/\u2029, an invalid UTF-8 byte as U+FFFD; every other character as itself in UTF-8 (this is Go's encoding/json with HTML escaping off).`

// proofEvent is one stored event in a proof, verbatim.
type proofEvent struct {
	Index  string          `json:"_index"`
	ID     string          `json:"_id"`
	Source json.RawMessage `json:"_source"`
}

// Proof is the consent proof record.
type Proof struct {
	Kind      string        `json:"kind"`
	Version   int           `json:"version"`
	CreatedAt string        `json:"created_at"`
	Alias     string        `json:"alias"`
	Scope     string        `json:"scope"`
	Leads     []LeadConsent `json:"leads"`
	Totals    Totals        `json:"totals"`
	Events    []proofEvent  `json:"events"`
	Digest    struct {
		Algorithm  string `json:"algorithm"`
		Value      string `json:"value"`
		Definition string `json:"definition"`
	} `json:"digest"`
}

const proofKind = "assistlog consent proof"

// canonical re-encodes a JSON value by canonicalDefinition.
func canonical(raw []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("canonical JSON: %w", err)
	}
	if dec.More() {
		return nil, errors.New("canonical JSON: more than one value")
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("canonical JSON: %w", err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// digest is the proof's SHA-256 over its events by canonicalDefinition.
func digest(evs []proofEvent) (string, error) {
	h := sha256.New()
	for _, e := range evs {
		c, err := canonical(e.Source)
		if err != nil {
			return "", fmt.Errorf("%s/%s: %w", e.Index, e.ID, err)
		}
		fmt.Fprintf(h, "%s\n%s\n%s\n", e.Index, e.ID, c)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// proofEvents are the events the leads rest on, each once, lead by lead.
func (r *consentReport) proofEvents() []proofEvent {
	var out []proofEvent
	seen := map[string]bool{}
	for _, l := range r.Leads {
		for _, s := range l.evidence {
			if k := s.Index + "/" + s.ID; !seen[k] {
				seen[k] = true
				out = append(out, proofEvent{Index: s.Index, ID: s.ID, Source: s.Source})
			}
		}
	}
	return out
}

// writeProof writes the JSON record to path and its Markdown rendering
// next to it; it returns the Markdown file's path.
func (r *consentReport) writeProof(path, alias string, now time.Time) (string, error) {
	p := Proof{Kind: proofKind, Version: 1, CreatedAt: now.UTC().Format(time.RFC3339), Alias: alias,
		Scope: r.Scope, Leads: r.Leads, Totals: r.Totals, Events: r.proofEvents()}
	var err error
	if p.Digest.Value, err = digest(p.Events); err != nil {
		return "", err
	}
	p.Digest.Algorithm, p.Digest.Definition = "sha256", canonicalDefinition
	r.digest = p.Digest.Value
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(p); err != nil {
		return "", err
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		return "", fmt.Errorf("--proof: %w", err)
	}
	md := strings.TrimSuffix(path, ".json") + ".md"
	if err := os.WriteFile(md, p.markdown(r), 0o644); err != nil {
		return "", fmt.Errorf("--proof: %w", err)
	}
	return md, nil
}

func (p *Proof) markdown(r *consentReport) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Proof of consent\n\n- scope: %s\n- made: %s from Elasticsearch `%s`\n", p.Scope, p.CreatedAt, p.Alias)
	fmt.Fprintf(&b, "- leads: %d — ok %d, missing %d, after_contact %d\n", p.Totals.Leads, p.Totals.OK, p.Totals.Missing, p.Totals.AfterContact)
	fmt.Fprintf(&b, "- events included: %d\n- SHA-256: `%s`\n\n", len(p.Events), p.Digest.Value)
	fmt.Fprintf(&b, "The digest: %s\n\nCheck that the stored events are unchanged: `audit consent verify FILE.json`.\n\n## Leads\n\n", p.Digest.Definition)
	r.table().Markdown(&b)
	for _, l := range p.Leads {
		fmt.Fprintf(&b, "\n### %s / %s — %s\n\n", l.Tenant, l.SessionID, l.Verdict)
		if c := l.Consent; c != nil {
			fmt.Fprintf(&b, "- consent: `%s` at %s via %s\n- the customer agreed to: «%s» (%s)\n", c.EventID, c.Time, c.Channel, c.Text, c.TextFrom)
		} else {
			b.WriteString("- consent: **none** (no consent.given)\n")
		}
		if k := l.Contact; k != nil {
			fmt.Fprintf(&b, "- first contact data: `%s` (%s) at %s in %s\n", k.EventID, k.Type, k.Time, strings.Join(k.Fields, ", "))
		}
		fmt.Fprintf(&b, "- lead: `%s` at %s", l.LeadEventID, l.LeadTime)
		if l.CRMID != "" {
			fmt.Fprintf(&b, ", CRM lead %s", l.CRMID)
		}
		b.WriteString("\n")
	}
	b.WriteString("\n## Events, as stored\n")
	for _, e := range p.Events {
		var pretty bytes.Buffer
		if json.Indent(&pretty, e.Source, "", "  ") != nil {
			pretty.Write(e.Source)
		}
		fmt.Fprintf(&b, "\n`%s` / `%s`\n\n```json\n%s\n```\n", e.Index, e.ID, pretty.String())
	}
	return b.Bytes()
}

const verifyUsage = `audit consent verify — check a consent proof against Elasticsearch.

Usage:
  audit consent verify FILE [--config FILE]

Recomputes the file's digest over the events it holds (is the file as it was
written?), then reads every event again by its index and _id and compares its
canonical JSON with the copy in the file. Exit 0: everything matches; exit 2:
the list of events that differ (with the fields) or are missing; exit 1: the
check could not be made. A lead still pending in the CRM when the proof was
made gets crm_id/crm_status filled in by the shipper later; verify reports
that change as such (make proofs of resolved leads).

Flags:
`

func runConsentVerify(ctx context.Context, a *app, args []string) error {
	fs := flag.NewFlagSet("audit consent verify", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	fs.Usage = func() { fmt.Fprint(a.stderr, verifyUsage); fs.PrintDefaults() }
	var c common
	fs.StringVar(&c.configPath, "config", os.Getenv("ASSISTLOG_AUDIT_CONFIG"), "audit config file (see audit/audit.example.yaml)")
	pos, help, err := parse(fs, args)
	if help || err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return errors.New("audit consent verify needs the proof FILE")
	}
	raw, err := os.ReadFile(pos[0])
	if err != nil {
		return err
	}
	var p Proof
	if err := json.Unmarshal(raw, &p); err != nil {
		return fmt.Errorf("read proof %s: %w", pos[0], err)
	}
	if p.Kind != proofKind || p.Version != 1 || p.Digest.Algorithm != "sha256" {
		return fmt.Errorf("%s is not a version 1 %s with a sha256 digest", pos[0], proofKind)
	}
	e, err := c.load(false)
	if err != nil {
		return err
	}
	var bad []string
	got, err := digest(p.Events)
	if err != nil {
		return err
	}
	if got != p.Digest.Value {
		bad = append(bad, fmt.Sprintf("the file itself: its events digest to %s, it says %s (the file was edited)", got, p.Digest.Value))
	}
	for _, ev := range p.Events {
		var doc struct {
			Found  bool            `json:"found"`
			Source json.RawMessage `json:"_source"`
		}
		err := e.es.Do(ctx, http.MethodGet, ev.Index+"/_doc/"+url.PathEscape(ev.ID), nil, &doc)
		switch {
		case errors.Is(err, esread.ErrNotFound) || (err == nil && !doc.Found):
			bad = append(bad, fmt.Sprintf("%s/%s: missing from Elasticsearch", ev.Index, ev.ID))
			continue
		case err != nil:
			return fmt.Errorf("read %s/%s: %w", ev.Index, ev.ID, err)
		}
		want, err := canonical(ev.Source)
		if err != nil {
			return err
		}
		have, err := canonical(doc.Source)
		if err != nil {
			return err
		}
		if !bytes.Equal(want, have) {
			fields := changedFields(want, have)
			msg := fmt.Sprintf("%s/%s: differs in %s", ev.Index, ev.ID, strings.Join(fields, ", "))
			if onlyEnrichment(fields) {
				// The shipper fills the CRM lead into a conversation's
				// events once Bitrix24 answers: a real change, but not of
				// what the customer or the assistant said.
				msg += " — only the shipper's CRM enrichment (the lead was resolved after the proof was made)"
			}
			bad = append(bad, msg)
		}
	}
	if len(bad) > 0 {
		for _, b := range bad {
			fmt.Fprintln(a.stdout, "MISMATCH", b)
		}
		return &exitError{code: 2, err: fmt.Errorf("proof %s does not match Elasticsearch: %d problem(s)", pos[0], len(bad))}
	}
	fmt.Fprintf(a.stdout, "OK: %d events match Elasticsearch; sha256 %s\n", len(p.Events), p.Digest.Value)
	return nil
}

// changedFields names the top-level fields whose canonical JSON differs.
func changedFields(a, b []byte) []string {
	var x, y map[string]json.RawMessage
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return []string{"(the whole document)"}
	}
	var out []string
	for k, v := range x {
		w, ok := y[k]
		if !ok {
			out = append(out, k+" (removed)")
			continue
		}
		cv, _ := canonical(v)
		cw, _ := canonical(w)
		if !bytes.Equal(cv, cw) {
			out = append(out, k)
		}
	}
	for k := range y {
		if _, ok := x[k]; !ok {
			out = append(out, k+" (added)")
		}
	}
	sort.Strings(out)
	return out
}

// onlyEnrichment: every changed field is one the shipper fills in later.
func onlyEnrichment(fields []string) bool {
	for _, f := range fields {
		switch strings.TrimSuffix(strings.TrimSuffix(f, " (added)"), " (removed)") {
		case "crm_id", "crm_status":
		default:
			return false
		}
	}
	return len(fields) > 0
}
