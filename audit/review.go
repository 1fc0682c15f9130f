package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/assistlog/assistlog/internal/esread"
	"github.com/assistlog/assistlog/internal/period"
	"github.com/assistlog/assistlog/internal/tenants"
)

const reviewHelp = `audit review — the weekly review of low-confidence conversations.

Usage:
  audit review sample  --week 2026-W47 [--size 15] [--threshold 0.6] [--tenant NAME] [--out FILE.csv] [--md FILE.md]
  audit review import  FILE.csv
  audit review summary [--weeks 8] [--until 2026-W47] [--tenant NAME] [--format table|csv|json|md]

The routine: on Monday, "sample" picks last week's conversations that had at least one turn the
classifier understood with confidence below the threshold (config low_confidence), spread over
tenants and intents, and writes a review sheet (CSV for Excel/Sheets, Markdown to read). The
reviewer opens each transcript, fills the cause column (nlp_miss, bad_scenario,
technical_failure, other) and a note, and "import" stores the labels in Elasticsearch
(reviews_index). "summary" shows the causes per week and per intent: whether the fixes work.

audit review COMMAND --help shows each command's flags.
`

// Review causes, as the reviewer writes them.
var reviewCausesList = []string{"nlp_miss", "bad_scenario", "technical_failure", "other"}

func runReview(ctx context.Context, a *app, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(a.stderr, reviewHelp)
		return nil
	}
	switch args[0] {
	case "sample":
		return runReviewSample(ctx, a, args[1:])
	case "import":
		return runReviewImport(ctx, a, args[1:])
	case "summary":
		return runReviewSummary(ctx, a, args[1:])
	}
	fmt.Fprint(a.stderr, reviewHelp)
	return fmt.Errorf("audit review: unknown command %q (sample, import or summary)", args[0])
}

// lowTurn is one event the classifier was unsure of.
type lowTurn struct {
	At         time.Time
	EventID    string
	Type       string
	Intent     string
	Confidence float64
	Text       string
}

// conversation is a conversation with low-confidence turns in a week.
type conversation struct {
	Tenant    tenants.Tenant
	SessionID string
	Channel   string
	Turns     []lowTurn // in time order
	rank      string
}

// Intent is the intent of the least confident turn (the earliest of
// equals): the one the conversation is filed under.
func (c *conversation) Intent() string {
	best := 0
	for i, t := range c.Turns {
		if t.Confidence < c.Turns[best].Confidence {
			best = i
		}
	}
	if c.Turns[best].Intent == "" {
		return "(none)"
	}
	return c.Turns[best].Intent
}

// MinConfidence is the lowest confidence of its turns.
func (c *conversation) MinConfidence() float64 {
	m := 1.0
	for _, t := range c.Turns {
		m = min(m, t.Confidence)
	}
	return m
}

// Intents lists the distinct intents of its low turns, sorted.
func (c *conversation) Intents() []string {
	seen := map[string]bool{}
	var out []string
	for _, t := range c.Turns {
		if t.Intent != "" && !seen[t.Intent] {
			seen[t.Intent] = true
			out = append(out, t.Intent)
		}
	}
	sort.Strings(out)
	return out
}

// lowQuery matches turns below threshold.
func lowQuery(threshold float64) map[string]any {
	return map[string]any{"range": map[string]any{"confidence": map[string]any{"lt": threshold}}}
}

// lowConversations reads every turn below threshold in the windows,
// grouped by conversation (tenant and session), sorted by tenant and
// session.
func lowConversations(ctx context.Context, e *env, ws []Window, threshold float64, extra map[string]any) ([]*conversation, error) {
	byTenant := map[string]tenants.Tenant{}
	for _, w := range ws {
		byTenant[w.Tenant.Name] = w.Tenant
	}
	convs := map[string]*conversation{}
	q := and(windowFilter(ws, ""), lowQuery(threshold), extra)
	err := e.es.Each(ctx, esread.Search{Query: q, Source: []string{"@timestamp", "event_id", "event_type", "tenant", "session_id", "channel",
		"intent", "confidence", "payload.text", "payload.attachments"}}, func(h esread.Hit) error {
		ev, err := h.Decode()
		if err != nil {
			return err
		}
		if ev.Confidence == nil {
			return nil
		}
		k := ev.Tenant + "\x00" + ev.SessionID
		c := convs[k]
		if c == nil {
			c = &conversation{Tenant: byTenant[ev.Tenant], SessionID: ev.SessionID, Channel: ev.Channel}
			convs[k] = c
		}
		c.Turns = append(c.Turns, lowTurn{At: ev.Timestamp, EventID: ev.EventID, Type: ev.Type, Intent: ev.Intent,
			Confidence: *ev.Confidence, Text: turnText(ev)})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the turns below %g: %w", threshold, err)
	}
	out := make([]*conversation, 0, len(convs))
	for _, c := range convs {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Tenant.Name != out[j].Tenant.Name {
			return out[i].Tenant.Name < out[j].Tenant.Name
		}
		return out[i].SessionID < out[j].SessionID
	})
	return out, nil
}

// turnText is what the customer sent, as stored (masked): the text, or
// the kinds of media when there are no words (a voice note the assistant
// transcribed shows as [audio]).
func turnText(ev esread.Event) string {
	if t := ev.Text(); t != "" {
		return t
	}
	var kinds []string
	if as, ok := ev.Payload["attachments"].([]any); ok {
		for _, a := range as {
			if m, ok := a.(map[string]any); ok {
				k, _ := m["kind"].(string)
				kinds = append(kinds, "["+k+"]")
			}
		}
	}
	return strings.Join(kinds, " ")
}

// sampleRank orders a week's candidates: a hash of the week, tenant and
// session, so the same week over the same data gives the same sample and
// another week another one, without any stored state.
func sampleRank(week, tenant, session string) string {
	h := sha256.Sum256([]byte(week + "\x00" + tenant + "\x00" + session))
	return hex.EncodeToString(h[:])
}

// sample picks size conversations, spread over tenants and, within each,
// over intents: tenants take turns (in an order that is itself ranked by
// the week, so small samples do not always favour the same tenants), each
// tenant's turn goes to its next intent in rotation, and each intent gives
// its best-ranked conversation.
func sample(week string, convs []*conversation, size int) []*conversation {
	type stratum struct {
		intents [][]*conversation // per intent, best rank first
		next    int
	}
	strata := map[string]*stratum{}
	byIntent := map[string]map[string][]*conversation{}
	for _, c := range convs {
		c.rank = sampleRank(week, c.Tenant.Name, c.SessionID)
		if byIntent[c.Tenant.Name] == nil {
			byIntent[c.Tenant.Name] = map[string][]*conversation{}
		}
		byIntent[c.Tenant.Name][c.Intent()] = append(byIntent[c.Tenant.Name][c.Intent()], c)
	}
	var order []string
	for tenant, m := range byIntent {
		s := &stratum{}
		for _, cs := range m {
			sort.Slice(cs, func(i, j int) bool { return cs[i].rank < cs[j].rank })
			s.intents = append(s.intents, cs)
		}
		sort.Slice(s.intents, func(i, j int) bool { return s.intents[i][0].rank < s.intents[j][0].rank })
		strata[tenant] = s
		order = append(order, tenant)
	}
	sort.Slice(order, func(i, j int) bool {
		return sampleRank(week, order[i], "") < sampleRank(week, order[j], "")
	})
	var out []*conversation
	for len(out) < size {
		took := false
		for _, tenant := range order {
			if len(out) == size {
				break
			}
			s := strata[tenant]
			for tries := 0; tries < len(s.intents); tries++ {
				i := s.next % len(s.intents)
				s.next++
				if len(s.intents[i]) > 0 {
					out = append(out, s.intents[i][0])
					s.intents[i] = s.intents[i][1:]
					took = true
					break
				}
			}
		}
		if !took {
			break
		}
	}
	return out
}

// weekWindows resolves an ISO week in each selected tenant's zone.
func weekWindows(c *common, e *env, week string) ([]Window, error) {
	if week == "" {
		return nil, fmt.Errorf("--week is required, e.g. --week %s", period.WeekOf(time.Now(), time.UTC))
	}
	c.period = period.Spec{Week: week}
	return c.windows(e, time.Now())
}

// thresholdValue parses --threshold, defaulting to the config.
func thresholdValue(flagValue string, cfg Config) (float64, error) {
	if flagValue == "" {
		return cfg.LowConfidence, nil
	}
	v, err := strconv.ParseFloat(strings.Replace(flagValue, ",", ".", 1), 64)
	if err != nil || v <= 0 || v > 1 {
		return 0, fmt.Errorf("--threshold: a confidence in (0, 1], e.g. 0.6, not %q", flagValue)
	}
	return v, nil
}

// reviewFlags are sample's own flags.
type reviewFlags struct {
	week, threshold, out, md string
	size                     int
	force                    bool
}

func (r *reviewFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&r.week, "week", "", "the ISO week to review, e.g. 2026-W47 (in each tenant's zone)")
	fs.IntVar(&r.size, "size", 15, "how many conversations to sample (all when fewer qualify)")
	fs.StringVar(&r.threshold, "threshold", "", "a turn below this confidence is low (default: low_confidence from the config)")
	fs.StringVar(&r.out, "out", "", "the review sheet, CSV for Excel/Sheets (default review-WEEK.csv)")
	fs.StringVar(&r.md, "md", "", "the same sheet in Markdown, to read (default review-WEEK.md; \"-\" for none)")
	fs.BoolVar(&r.force, "force", false, "overwrite existing sheet files (a filled-in sheet would be lost)")
}
