package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/assistlog/assistlog/internal/event"
	"github.com/assistlog/assistlog/internal/period"
	"github.com/assistlog/assistlog/internal/tenants"
)

// truthConv is the test's own view of a conversation with low turns.
type truthConv struct {
	tenant, session string
	turns           []event.Event // below 0.6, in time order
}

// primary is the intent of the least confident turn (earliest of equals).
func (c truthConv) primary() string {
	best := c.turns[0]
	for _, e := range c.turns[1:] {
		if *e.Confidence < *best.Confidence {
			best = e
		}
	}
	return best.Intent
}

// readSheet reads a review sheet CSV (BOM stripped) as header-keyed rows.
func readSheet(t *testing.T, b []byte, comma rune) []map[string]string {
	t.Helper()
	r := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(b, []byte("\ufeff"))))
	r.Comma = comma
	recs, err := r.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]string
	for _, rec := range recs[1:] {
		m := map[string]string{}
		for i, c := range recs[0] {
			m[c] = rec[i]
		}
		out = append(out, m)
	}
	return out
}

// TestReviewSampleImportSummary: the week's sample is reproducible, the
// right size, spread over tenants and intents, and made only of
// conversations that really had a turn below 0.6 (all of which are
// counted); the sheet, filled in as a reviewer would in Excel, imports;
// importing again changes nothing but what changed; the summary counts
// exactly the labels written.
func TestReviewSampleImportSummary(t *testing.T) {
	evs, _, stores, alias := shipped(t, 400)
	onStores(t, stores, func(t *testing.T, es string) {
		idx := "test-reviews-" + strings.TrimPrefix(alias, "test-")
		t.Cleanup(func() {
			req, _ := http.NewRequest(http.MethodDelete, es+"/"+idx, nil)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		})
		cfg := writeConfig(t, es, alias, "reviews_index: "+idx+"\nconversation_url: \"https://kibana.example/s/{tenant}/{session_id}\"\n")
		set, err := tenants.Load("../demo/tenants.yaml")
		if err != nil {
			t.Fatal(err)
		}

		// The truth: per ISO week (each tenant's own), the conversations with
		// a turn below 0.6.
		byWeek := map[string]map[string]*truthConv{}
		for _, e := range evs {
			if e.Confidence == nil || *e.Confidence >= 0.6 {
				continue
			}
			tn, err := set.Get(e.Tenant)
			if err != nil {
				t.Fatal(err)
			}
			w := period.WeekOf(e.Time(), tn.Location())
			if byWeek[w] == nil {
				byWeek[w] = map[string]*truthConv{}
			}
			k := e.Tenant + "/" + e.SessionID
			if byWeek[w][k] == nil {
				byWeek[w][k] = &truthConv{tenant: e.Tenant, session: e.SessionID}
			}
			byWeek[w][k].turns = append(byWeek[w][k].turns, e)
		}
		week := ""
		for w, m := range byWeek {
			if week == "" || len(m) > len(byWeek[week]) {
				week = w
			}
		}
		cands := byWeek[week]
		for _, c := range cands {
			sort.SliceStable(c.turns, func(i, j int) bool { return c.turns[i].Time().Before(c.turns[j].Time()) })
		}
		tenantsWith := map[string]map[string]bool{} // tenant → primary intents
		for _, c := range cands {
			if tenantsWith[c.tenant] == nil {
				tenantsWith[c.tenant] = map[string]bool{}
			}
			tenantsWith[c.tenant][c.primary()] = true
		}
		if len(cands) < 20 || len(tenantsWith) < 5 {
			t.Fatalf("%s has %d candidates in %d tenants; the test needs more", week, len(cands), len(tenantsWith))
		}

		dir := t.TempDir()
		sampleRun := func(name string, extra ...string) ([]byte, []byte, string) {
			t.Helper()
			csvPath, mdPath := filepath.Join(dir, name+".csv"), filepath.Join(dir, name+".md")
			args := append([]string{"review", "sample", "--config", cfg, "--week", week, "--out", csvPath, "--md", mdPath, "--format", "json"}, extra...)
			_, errOut, err := runAudit(t, args...)
			if err != nil {
				t.Fatalf("%v: %v\n%s", args, err, errOut)
			}
			c, _ := os.ReadFile(csvPath)
			m, _ := os.ReadFile(mdPath)
			return c, m, errOut
		}
		csvA, mdA, errOut := sampleRun("a")
		csvB, mdB, _ := sampleRun("b")
		if !bytes.Equal(csvA, csvB) || !bytes.Equal(mdA, mdB) {
			t.Error("the same week over the same data gave two different samples")
		}
		m := regexp.MustCompile(`(\d+) conversations with a turn below 0.6; sampled (\d+)`).FindStringSubmatch(errOut)
		if m == nil || m[1] != strconv.Itoa(len(cands)) || m[2] != "15" {
			t.Errorf("stderr %q; ground truth: %d candidates, 15 sampled", errOut, len(cands))
		}
		if !bytes.HasPrefix(csvA, []byte("\xef\xbb\xbf")) {
			t.Error("the sheet has no UTF-8 byte order mark; Excel would garble Cyrillic")
		}
		rows := readSheet(t, csvA, ',')
		if len(rows) != 15 {
			t.Fatalf("%d rows in the sheet, want 15", len(rows))
		}
		picked := map[string][]string{} // tenant → primary intents picked
		seen := map[string]bool{}
		for _, r := range rows {
			k := r["tenant"] + "/" + r["session_id"]
			c := cands[k]
			if c == nil {
				t.Errorf("sampled %s: it has no turn below 0.6 in %s", k, week)
				continue
			}
			if seen[k] {
				t.Errorf("%s sampled twice", k)
			}
			seen[k] = true
			picked[c.tenant] = append(picked[c.tenant], c.primary())
			lines := strings.Split(r["turns"], "\n")
			if r["low_turns"] != strconv.Itoa(len(c.turns)) || len(lines) != len(c.turns) {
				t.Errorf("%s: low_turns %s, %d turn lines; ground truth %d", k, r["low_turns"], len(lines), len(c.turns))
			}
			for i, e := range c.turns {
				if i < len(lines) && (!strings.Contains(lines[i], fmt.Sprintf("%.3f", *e.Confidence)) || !strings.Contains(lines[i], e.Intent)) {
					t.Errorf("%s: turn %q, ground truth %s %.3f", k, lines[i], e.Intent, *e.Confidence)
				}
			}
			if r["intent"] != c.primary() || r["conversation_url"] != "https://kibana.example/s/"+c.tenant+"/"+c.session || r["cause"] != "" || r["note"] != "" {
				t.Errorf("%s: row %v; primary intent %s", k, r, c.primary())
			}
			if !bytes.Contains(mdA, []byte(c.session)) {
				t.Errorf("%s is not in the Markdown sheet", k)
			}
		}
		// Spread: every tenant with candidates before any gets a second one,
		// and within a tenant every intent before any repeats.
		if want := min(15, len(tenantsWith)); len(picked) != want {
			t.Errorf("the sample covers %d tenants, %d have candidates", len(picked), len(tenantsWith))
		}
		for tenant, ins := range picked {
			distinct := map[string]bool{}
			for _, in := range ins {
				distinct[in] = true
			}
			if want := min(len(ins), len(tenantsWith[tenant])); len(distinct) != want {
				t.Errorf("%s: %d picks over %d intents (%v); it has %d intents", tenant, len(ins), len(distinct), ins, len(tenantsWith[tenant]))
			}
		}
		// A smaller sample is still spread over tenants.
		small, _, _ := sampleRun("small", "--size", "4")
		tenantsSmall := map[string]bool{}
		for _, r := range readSheet(t, small, ',') {
			tenantsSmall[r["tenant"]] = true
		}
		if len(tenantsSmall) != 4 {
			t.Errorf("--size 4 covers %d tenants", len(tenantsSmall))
		}
		// The files are not overwritten silently.
		if _, _, err := runAudit(t, "review", "sample", "--config", cfg, "--week", week, "--out", filepath.Join(dir, "a.csv"), "--md", "-"); err == nil ||
			!strings.Contains(err.Error(), "exists") {
			t.Errorf("overwriting a sheet: %v", err)
		}

		// The reviewer fills it in and Excel (Russian locale) saves it with
		// semicolons and a BOM.
		labels := map[string]string{}
		var filled bytes.Buffer
		filled.WriteString("\ufeff")
		w := csv.NewWriter(&filled)
		w.Comma = ';'
		rd := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(csvA, []byte("\ufeff"))))
		recs, _ := rd.ReadAll()
		col := map[string]int{}
		for i, c := range recs[0] {
			col[c] = i
		}
		for i, rec := range recs {
			if i > 0 {
				rec[col["cause"]] = reviewCausesList[i%len(reviewCausesList)]
				rec[col["note"]] = fmt.Sprintf("Клиент спросил «%d», ассистент не понял", i)
				labels[rec[col["tenant"]]+"/"+rec[col["session_id"]]] = rec[col["cause"]]
			}
			w.Write(rec)
		}
		w.Flush()
		filledPath := filepath.Join(dir, "filled.csv")
		os.WriteFile(filledPath, filled.Bytes(), 0o644)
		out, errOut, err := runAudit(t, "review", "import", filledPath, "--config", cfg)
		if err != nil || !strings.Contains(out, "15 labels stored in "+idx+" (15 new, 0 updated)") {
			t.Fatalf("import: %v\n%s%s", err, out, errOut)
		}
		if n := count(t, es, idx, "*"); n != 15 {
			t.Errorf("%d labels stored, want 15", n)
		}
		out, _, err = runAudit(t, "review", "import", filledPath, "--config", cfg)
		if err != nil || !strings.Contains(out, "(0 new, 15 updated)") {
			t.Errorf("re-import: %v %s", err, out)
		}
		if n := count(t, es, idx, "*"); n != 15 {
			t.Errorf("after a re-import %d labels stored, want 15", n)
		}
		// What a client reads back: the note with its Cyrillic, the cause.
		first := rows[0]
		var doc struct {
			Source reviewLabel `json:"_source"`
		}
		resp, err := http.Get(es + "/" + idx + "/_doc/" + url.PathEscape(week+"/"+first["tenant"]+"/"+first["session_id"]))
		if err != nil {
			t.Fatal(err)
		}
		json.NewDecoder(resp.Body).Decode(&doc)
		resp.Body.Close()
		if doc.Source.Note != "Клиент спросил «1», ассистент не понял" || doc.Source.Cause != labels[first["tenant"]+"/"+first["session_id"]] ||
			doc.Source.Intent != cands[first["tenant"]+"/"+first["session_id"]].primary() {
			t.Errorf("stored %+v", doc.Source)
		}

		// A corrected cause replaces the old one.
		fixed := bytes.Replace(filled.Bytes(), []byte(";"+labels[first["tenant"]+"/"+first["session_id"]]+";"), []byte(";technical_failure;"), 1)
		labels[first["tenant"]+"/"+first["session_id"]] = "technical_failure"
		os.WriteFile(filledPath, fixed, 0o644)
		if out, errOut, err := runAudit(t, "review", "import", filledPath, "--config", cfg); err != nil {
			t.Fatalf("import the correction: %v\n%s%s", err, out, errOut)
		}

		// The summary counts the labels written, per week and per intent.
		wantCause := map[string]int{}
		wantIntent := map[string]map[string]int{}
		for k, cause := range labels {
			wantCause[cause]++
			in := cands[k].primary()
			if wantIntent[in] == nil {
				wantIntent[in] = map[string]int{}
			}
			wantIntent[in][cause]++
		}
		out, errOut, err = runAudit(t, "review", "summary", "--config", cfg, "--weeks", "3", "--until", week, "--format", "json")
		if err != nil {
			t.Fatalf("summary: %v\n%s", err, errOut)
		}
		var sum struct {
			ByWeek   []map[string]string `json:"by_week"`
			ByIntent []map[string]string `json:"by_intent"`
		}
		if err := json.Unmarshal([]byte(out), &sum); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if len(sum.ByWeek) != 3 || sum.ByWeek[2]["week"] != week {
			t.Fatalf("by_week %v, want 3 weeks ending %s", sum.ByWeek, week)
		}
		for _, r := range sum.ByWeek {
			if r["week"] != week {
				if r["reviewed"] != "0" {
					t.Errorf("%s: %v, nothing was reviewed that week", r["week"], r)
				}
				if want := strconv.Itoa(len(byWeek[r["week"]])); r["low_conversations"] != want {
					t.Errorf("%s: low_conversations %s, ground truth %s", r["week"], r["low_conversations"], want)
				}
				continue
			}
			if r["reviewed"] != "15" || r["low_conversations"] != strconv.Itoa(len(cands)) {
				t.Errorf("%s: %v; want 15 reviewed of %d", week, r, len(cands))
			}
			for _, c := range reviewCausesList {
				if r[c] != strconv.Itoa(wantCause[c]) {
					t.Errorf("%s %s: %s, labelled %d", week, c, r[c], wantCause[c])
				}
			}
		}
		gotIntents := 0
		for _, r := range sum.ByIntent {
			gotIntents++
			for _, c := range reviewCausesList {
				if r["week"] != week || r[c] != strconv.Itoa(wantIntent[r["intent"]][c]) {
					t.Errorf("by intent %v: %s labelled %d", r, c, wantIntent[r["intent"]][c])
				}
			}
		}
		if gotIntents != len(wantIntent) {
			t.Errorf("%d intent rows, the labels have %d intents", gotIntents, len(wantIntent))
		}
		// The function the owner's report uses.
		var c common
		c.configPath = cfg
		e, err := c.load(true)
		if err != nil {
			t.Fatal(err)
		}
		got, err := reviewCauses(t.Context(), e, []string{week}, first["tenant"])
		if err != nil || got[week][labels[first["tenant"]+"/"+first["session_id"]]] < 1 || sum2(got[week]) != len(picked[first["tenant"]]) {
			t.Errorf("reviewCauses for %s: %v %v; %d labels", first["tenant"], got, err, len(picked[first["tenant"]]))
		}

		// And the owner's report, through its hook, over that tenant's week.
		{
			tn, _ := e.tenants.Get(first["tenant"])
			wr, err := period.Week(week, tn.Location())
			if err != nil {
				t.Fatal(err)
			}
			causes, err := reportReviewCauses(t.Context(), e, []Window{{Tenant: tn, Range: wr}})
			n := 0
			for _, rc := range causes {
				n += int(rc.Count)
			}
			if err != nil || n != len(picked[first["tenant"]]) {
				t.Errorf("report's review causes for %s: %v (%v), want %d labels", first["tenant"], causes, err, len(picked[first["tenant"]]))
			}
		}

		// A bad sheet: every error, with its line and column, and nothing
		// stored (the first row is good and must not be stored either).
		good := rows[1]
		bad := "week,tenant,session_id,cause,note\n" +
			fmt.Sprintf("%s,%s,%s,other,fine\n", week, good["tenant"], good["session_id"]) +
			fmt.Sprintf("%s,%s,%s,NLP,\n", week, good["tenant"], good["session_id"]) +
			fmt.Sprintf("%s,salon-nowhere,%s,other,\n", week, good["session_id"]) +
			fmt.Sprintf("2026-W99,%s,%s,other,\n", good["tenant"], good["session_id"]) +
			fmt.Sprintf("%s,%s,no-such-session,nlp_miss,\n", week, good["tenant"]) +
			fmt.Sprintf("%s,%s,%s,bad_scenario,\n", week, good["tenant"], good["session_id"]) +
			fmt.Sprintf("%s,%s,%s,,\"a note,\nover two lines\"\n", week, rows[2]["tenant"], rows[2]["session_id"]) +
			",,,,\n"
		badPath := filepath.Join(dir, "bad.csv")
		os.WriteFile(badPath, []byte(bad), 0o644)
		idx2 := idx + "-bad"
		cfg2 := writeConfig(t, es, alias, "reviews_index: "+idx2+"\n")
		_, errOut, err = runAudit(t, "review", "import", badPath, "--config", cfg2)
		want := []string{
			`bad.csv:3: cause: "NLP" is not one of nlp_miss, bad_scenario, technical_failure, other`,
			`bad.csv:4: tenant: unknown tenant "salon-nowhere" (the tenants file has clinic-family, clinic-zdorovie, dental-care, dental-smile, salon-aurora, salon-bellezza, therapy-balance, therapy-harmony)`,
			`bad.csv:5: week: "2026-W99" is not an ISO week like 2026-W47`,
			`bad.csv:6: session_id: no-such-session of ` + good["tenant"] + ` has no turn below 0.6 in ` + week,
			`bad.csv:7: session_id: ` + good["tenant"] + `/` + good["session_id"] + ` in ` + week + ` is already labelled on line 2`,
			`bad.csv:8: cause: empty; one of nlp_miss, bad_scenario, technical_failure, other (or delete the row if it is not reviewed yet)`,
		}
		if err == nil || !strings.Contains(err.Error(), "6 errors, nothing imported") || strings.TrimSpace(errOut) != strings.Join(want, "\n") {
			t.Errorf("bad sheet: %v\n got:\n%s\nwant:\n%s", err, errOut, strings.Join(want, "\n"))
		}
		if n := count(t, es, idx2, "*"); n != 0 {
			t.Errorf("a rejected sheet stored %d labels", n)
		}
		// Missing column, and a sheet saved in Windows-1251.
		os.WriteFile(badPath, []byte("week,tenant,session_id,note\n"), 0o644)
		if _, errOut, _ := runAudit(t, "review", "import", badPath, "--config", cfg2); !strings.Contains(errOut, "bad.csv:1: column cause is missing") {
			t.Errorf("missing column: %s", errOut)
		}
		os.WriteFile(badPath, []byte("week,tenant,session_id,cause,note\n2026-W47,salon-aurora,s1,other,\xcf\xf0\xe8\xec\xe5\xf0\n"), 0o644)
		if _, errOut, _ := runAudit(t, "review", "import", badPath, "--config", cfg2); !strings.Contains(errOut, "not UTF-8") {
			t.Errorf("cp1251: %s", errOut)
		}
		if n := count(t, es, idx2, "*"); n != 0 {
			t.Errorf("rejected sheets stored %d labels", n)
		}
	})
}

func sum2(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func TestReviewCommandLine(t *testing.T) {
	p := writeConfig(t, "http://127.0.0.1:1", "assistant-events", "")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"review", "nonsense"}, `unknown command "nonsense"`},
		{[]string{"review", "sample", "--config", p}, "--week is required"},
		{[]string{"review", "sample", "--config", p, "--week", "2026-W47", "--tenant", "salon-nowhere"}, `unknown tenant "salon-nowhere"`},
		{[]string{"review", "sample", "--config", p, "--week", "2026-47"}, "not an ISO week"},
		{[]string{"review", "sample", "--config", p, "--week", "2026-W47", "--threshold", "2"}, "--threshold"},
		{[]string{"review", "sample", "--config", p, "--week", "2026-W47", "--size", "0"}, "--size"},
		{[]string{"review", "import", "--config", p}, "takes one file"},
		{[]string{"review", "summary", "--config", p, "--until", "2026-W60"}, "--until"},
		{[]string{"review", "summary", "--config", p, "--tenant", "salon-nowhere"}, `unknown tenant "salon-nowhere"`},
	} {
		_, _, err := runAudit(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
	for _, sub := range []string{"sample", "import", "summary"} {
		_, errOut, err := runAudit(t, "review", sub, "--help")
		if err != nil || !strings.Contains(errOut, "audit review "+sub) {
			t.Errorf("review %s --help: %v\n%s", sub, err, errOut)
		}
	}
}
