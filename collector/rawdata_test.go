package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/assistlog/assistlog/internal/deadletter"
	"github.com/assistlog/assistlog/internal/pii"
	"github.com/assistlog/assistlog/internal/pipelinetest"
	"github.com/assistlog/assistlog/internal/proctest"
	"github.com/assistlog/assistlog/internal/stacktest"
)

// The rotation test's keys: k1 first, then k2.
const (
	rawdataKey1 = "rawdata-test-key-one-0123456789abcdef0123"
	rawdataKey2 = "rawdata-test-key-two-0123456789abcdef0123"
)

// withPII turns the collector's edge step on (pii:, the shipper's hash
// secret, keys k1 and k2, current the one given).
func withPII(current string) envOption {
	return func(_ *env, s *envSettings) {
		s.extra += fmt.Sprintf("pii:\n  hash_secret: %s\n  keys:\n    - {id: k1, key: %s}\n    - {id: k2, key: %s}\n  current_key: %s\n",
			pipelinetest.HashSecret, rawdataKey1, rawdataKey2, current)
	}
}

// shipperKeys is the shipper's pii section past hash_secret.
func shipperKeys(current string, ids ...string) string {
	s := "  keys:\n"
	for _, id := range ids {
		s += fmt.Sprintf("    - {id: %s, key: %s}\n", id, map[string]string{"k1": rawdataKey1, "k2": rawdataKey2}[id])
	}
	return s + "  current_key: " + current + "\n"
}

// TestNoRawPersonalData (issue 12 §3): phone numbers and e-mails go in
// through every door — valid v1 lines, a mapped business line, a WhatsApp
// webhook whose ids are the customer's number, invalid lines (dead
// letters), and, after the collector rotated to a key the shipper does not
// have yet, events the shipper dead-letters until it gets the key. The real
// collector, shipper (CRM sync with the Bitrix24 fake) and `shipper dlq
// replay` run on the real Kafka, Elasticsearch and Loki. Then every topic
// the run used (events, both dead-letter topics, CRM links: keys, headers,
// values) and both sinks (Elasticsearch _search, Loki query_range) are read
// back, and no input number in any format (+7…, 8…, digits only, with
// separators) and no input e-mail may appear. Meanwhile the CRM got the
// numbers it needed (leads made with them), WhatsApp's conversation kept
// one id, a replay without the dead letters' key fails naming it, and the
// replay with it delivers.
func TestNoRawPersonalData(t *testing.T) {
	e := newEnv(t, withHooks(), withPII("k1"))
	stacktest.Require(t, stacktest.Elasticsearch, stacktest.Loki)
	run := fmt.Sprintf("raw%d", time.Now().UnixNano()%1e9)
	alias, shipperDLQ, links := "test-"+run, e.dlq+"-shipper", "test-links-"+run
	stacktest.CreateTopics(t, e.ep.KafkaBrokers, map[string]int{shipperDLQ: 1, links: 3})
	pipelinetest.DropIndicesAtCleanup(t, e.ep, alias)
	shipDir := t.TempDir()
	fake, crmYAML := pipelinetest.FakeCRM(t, shipDir, 25, links, run)
	shipper := func(name, pii string) pipelinetest.Shipper {
		return pipelinetest.Shipper{Dir: shipDir, Name: name, Topic: e.topic, DLQ: shipperDLQ, Group: run, Alias: alias,
			Labels: "{app: assistlog-test, deployment: " + run + "}", ExtraYAML: crmYAML, PII: pii}
	}
	first := pipelinetest.StartShipper(t, e.ep, shipper("shipper-k1", shipperKeys("k1", "k1")))

	// The input: every number and e-mail below must not be found afterwards.
	phones := []string{"+79161112233", "+79172223344", "+79174561234", "+79163334455", "+79165556677", "+79167778899"}
	emails := []string{"anna.petrova@mail.ru", "ivan@example.com", "olga@mail.ru", "pavel.s@yandex.ru"}
	now := time.Now().UTC().Add(-10 * time.Minute)
	ts := func(i int) string {
		return now.Add(time.Duration(i) * time.Second).Format("2006-01-02T15:04:05.000Z07:00")
	}
	v1 := func(i int, session, typ, extra string) string {
		return fmt.Sprintf(`{"timestamp":%q,"tenant":"salon-aurora","channel":%q,"session_id":%q,"event_type":%q,"level":"info","schema_version":1%s}`,
			ts(i), strings.SplitN(session, ":", 2)[0], session, typ, extra) + "\n"
	}
	waSession := "whatsapp:79161112233"
	lines := v1(1, waSession, "session.started", `,"user_id":"79161112233"`) +
		v1(2, waSession, "message.received", `,"user_id":"79161112233","payload":{"text":"Мой номер 8 (916) 111-22-33, почта anna.petrova@mail.ru"}`) +
		v1(3, waSession, "lead.created", `,"user_id":"79161112233","user_phone":"+79161112233"`) +
		v1(4, "web:"+run, "message.received", `,"payload":{"text":"звоните +7 917 222-33-44 или ivan@example.com"}`) +
		v1(5, "web:"+run, "lead.created", `,"user_phone":"+79172223344"`) +
		// Dead letters: the validator's error quotes the number; a broken line.
		v1(6, "web:bad-"+run, "message.received", `,"user_phone":"8 916 333-44-55","payload":{"text":"пишите olga@mail.ru"}`) +
		`{"tenant":"salon-aurora","user_phone":"79163334455","payload":{"text":"olga@mail.ru"` + "\n"
	business := fmt.Sprintf(`{ "timestamp":%q, "channel":"whatsapp", "session_id":"sess_%s", "user_phone":"+79165556677", "event_type":"appointment.confirmed", "intent":"book_appointment", "confidence":0.92, "crm_id":"LEAD_789" }`+"\n"+
		`{ "timestamp":%q, "channel":"whatsapp", "session_id":"sess_%s", "user_phone":"89165556677", "event_type":"appointment.confirmed", "crm_id":"DEAL-789" }`+"\n",
		ts(7), run, ts(8), run)
	if err := os.WriteFile(filepath.Join(e.logDir, "a.jsonl"), []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.logDir, "business-1.jsonl"), []byte(business), 0o644); err != nil {
		t.Fatal(err)
	}
	e.start()
	wa := uniq(testdata(t, "hooks/whatsapp-text.json"), "wamid.HBgL", "wamid."+run)
	wa = uniq(wa, "1764234000", strconv.FormatInt(now.Unix(), 10)) // within Loki's window
	if code, r := hookPost(t, e.webhookAddr, "aurora-whatsapp", wa, metaSign(wa)); code != 200 || r.Accepted != 1 {
		t.Fatalf("whatsapp: %d %+v", code, r)
	}
	es := func(q string) (int, string) {
		http.Post(e.ep.ElasticsearchURL+"/"+alias+"/_refresh", "application/json", nil)
		body := fmt.Sprintf(`{"size":1000,"track_total_hits":true,"query":{"query_string":{"query":%q}}}`, q)
		resp, err := http.Post(e.ep.ElasticsearchURL+"/"+alias+"/_search", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var r struct {
			Hits struct{ Total struct{ Value int } }
		}
		json.Unmarshal(b, &r)
		return r.Hits.Total.Value, string(b)
	}
	// Shipped to both sinks, and every CRM link answered (its last record
	// is what compaction keeps).
	settled := func(want int) func() error {
		return func() error {
			if n, _ := es("*"); n != want {
				return fmt.Errorf("%d of %d events in Elasticsearch", n, want)
			}
			last := map[string]string{}
			for _, m := range stacktest.ReadTopic(t, e.ep.KafkaBrokers, links) {
				var l struct{ State string }
				json.Unmarshal(m.Value, &l)
				last[string(m.Key)] = l.State
			}
			for k, state := range last {
				if state == "pending" {
					return fmt.Errorf("crm link %s still pending", k)
				}
			}
			if len(last) == 0 {
				return fmt.Errorf("no crm link yet")
			}
			if n := stacktest.LokiScalar(t, e.ep.LokiURL, fmt.Sprintf(`sum(count_over_time({deployment=%q}[1d]))`, run)); n != want {
				return fmt.Errorf("%d of %d events in Loki", n, want)
			}
			return nil
		}
	}
	stacktest.Eventually(t, 3*time.Minute, "the first events shipped and linked", settled(7))

	// The collector rotates to k2 before the shipper has it: the shipper
	// dead-letters what it cannot open, naming the key.
	e.stop()
	b, _ := os.ReadFile(e.cfgPath)
	os.WriteFile(e.cfgPath, []byte(strings.Replace(string(b), "current_key: k1", "current_key: k2", 1)), 0o644)
	e.start()
	rotSession := "whatsapp:79167778899"
	appendFile(t, filepath.Join(e.logDir, "a.jsonl"), []byte(
		v1(20, rotSession, "message.received", `,"user_phone":"+79167778899","payload":{"text":"pavel.s@yandex.ru, +7(916)777-88-99"}`)+
			v1(21, rotSession, "lead.created", `,"user_phone":"+79167778899"`)))
	stacktest.Eventually(t, 2*time.Minute, "the shipper dead-letters the events sealed with k2", func() error {
		n := 0
		for _, m := range stacktest.ReadTopic(t, e.ep.KafkaBrokers, shipperDLQ) {
			r := deadletter.FromMessage(m)
			if r.Reason != "pii_key" || !strings.Contains(r.Error, `key "k2"`) || r.KeyID != "k1" {
				return fmt.Errorf("unexpected dead letter %+v", r)
			}
			n++
		}
		if n != 2 {
			return fmt.Errorf("%d of 2 dead letters", n)
		}
		return nil
	})

	// Replay without the dead letters' key (k1) fails, naming it; with it,
	// after the shipper got k2, it delivers.
	bin := proctest.Build(t, filepath.Join(pipelinetest.Root, "shipper"))
	replay := func(s pipelinetest.Shipper) (string, error) {
		out, err := exec.Command(bin, "dlq", "replay", "--config", pipelinetest.ShipperConfig(t, e.ep, &s), "--format", "json").CombinedOutput()
		return string(out), err
	}
	if out, err := replay(shipper("replay-k2-only", shipperKeys("k2", "k2"))); err == nil ||
		!strings.Contains(out, `sealed with key "k1", which is not configured`) {
		t.Fatalf("replay without key k1: %v\n%s", err, out)
	}
	first.Stop(30 * time.Second)
	pipelinetest.StartShipper(t, e.ep, shipper("shipper-k2", shipperKeys("k2", "k1", "k2")))
	out, err := replay(shipper("replay", shipperKeys("k2", "k1", "k2")))
	var rep struct {
		Redriven  int  `json:"redriven"`
		Committed bool `json:"committed"`
	}
	if err != nil || json.Unmarshal([]byte(out[strings.LastIndex(out, "{"):]), &rep) != nil || rep.Redriven != 2 || !rep.Committed {
		t.Fatalf("replay with the keys: %v %+v\n%s", err, rep, out)
	}
	stacktest.Eventually(t, 3*time.Minute, "the replayed events shipped and linked", settled(9))

	// The CRM got the numbers it needed: each lead made with its number.
	// Waited for: the replayed conversation's link request is written
	// after its events reached the sinks, so "nothing pending" can be read
	// an instant before it exists.
	stacktest.Eventually(t, time.Minute, "a lead made with each number", func() error {
		leadPhones := map[string]bool{}
		for _, l := range fake.Leads() {
			for _, p := range phones {
				if strings.Contains(fmt.Sprint(l["PHONE"]), p) {
					leadPhones[p] = true
				}
			}
		}
		for _, p := range []string{"+79161112233", "+79172223344", "+79167778899"} {
			if !leadPhones[p] {
				return fmt.Errorf("no lead made with %s (leads: %v)", p, fake.Leads())
			}
		}
		return nil
	})
	// A WhatsApp conversation whose id is the number keeps one id.
	masker, _ := pii.New(pipelinetest.HashSecret)
	if n, _ := es(fmt.Sprintf(`session_id:%q`, "whatsapp:"+masker.PhoneToken("79161112233"))); n != 3 {
		t.Errorf("%d events of the WhatsApp conversation under its token, want 3", n)
	}
	if n, _ := es("user_phone_hash:" + masker.HashPhone("+79167778899")); n != 2 {
		t.Errorf("%d events found by the replayed conversation's phone hash, want 2", n)
	}

	// Everything the run wrote, read back.
	haystacks := map[string]string{}
	for _, topic := range []string{e.topic, e.dlq, shipperDLQ, links} {
		var sb strings.Builder
		msgs := stacktest.ReadTopic(t, e.ep.KafkaBrokers, topic)
		for _, m := range msgs {
			sb.WriteString(dumpMessage(m))
		}
		if len(msgs) == 0 {
			t.Errorf("topic %s is empty: the test reads nothing there", topic)
		}
		haystacks["kafka "+topic] = sb.String()
	}
	_, haystacks["elasticsearch"] = es("*")
	haystacks["loki"] = lokiRange(t, e.ep.LokiURL, run)
	// The search can fail: it finds every way the input writes a number,
	// and the events topic does carry the sealed ones.
	for _, form := range []string{"8 (916) 111-22-33", "+7 917 222-33-44", "79163334455", "+7(916)777-88-99"} {
		if findPhone("x "+form+" y", "+7"+pii.Digits(form)[1:]) == "" {
			t.Fatalf("findPhone misses %q", form)
		}
	}
	if findEncodedPhone("wamid.HBgLNzkxNzQ1NjEyMzQVAgASGBQzRUIwQjQxQzk1RkE3MDM2QkQ0MAA=", "+79174561234") == "" {
		t.Fatal("findEncodedPhone misses the number in a WhatsApp message id")
	}
	if !strings.Contains(haystacks["kafka "+e.topic], `"user_phone_sealed":"k1:`) || !strings.Contains(haystacks["kafka "+e.topic], `"user_phone_sealed":"k2:`) {
		t.Error("the events topic holds no sealed number of each key")
	}
	for where, hay := range haystacks {
		if where == "kafka "+e.dlq && !strings.Contains(hay, "key_id=k1") {
			t.Errorf("the collector's dead letters are not sealed:\n%s", hay)
		}
		for _, p := range phones {
			if found := findPhone(hay, p); found != "" {
				t.Errorf("%s holds the number %s as %q", where, p, found)
			}
			if found := findEncodedPhone(hay, p); found != "" {
				t.Errorf("%s holds the number %s base64-encoded in %q", where, p, found)
			}
		}
		for _, m := range emails {
			if strings.Contains(strings.ToLower(hay), m) || strings.Contains(hay, strings.Split(m, "@")[0]+"@") {
				t.Errorf("%s holds the e-mail %s", where, m)
			}
		}
	}
	t.Logf("read back %d bytes from 4 topics, Elasticsearch and Loki: no number of %d, no e-mail of %d", func() int {
		n := 0
		for _, h := range haystacks {
			n += len(h)
		}
		return n
	}(), len(phones), len(emails))
}

// dumpMessage renders everything a reader of the topic sees.
func dumpMessage(m kafkago.Message) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "key=%s\n", m.Key)
	for _, h := range m.Headers {
		fmt.Fprintf(&sb, "%s=%s\n", h.Key, h.Value)
	}
	fmt.Fprintf(&sb, "value=%s\n\n", m.Value)
	return sb.String()
}

// lokiRange returns the raw answer of a query for the deployment's lines.
func lokiRange(t *testing.T, base, deployment string) string {
	t.Helper()
	v := url.Values{"query": {fmt.Sprintf(`{deployment=%q}`, deployment)}, "limit": {"5000"},
		"start": {strconv.FormatInt(time.Now().Add(-24*time.Hour).UnixNano(), 10)}}
	resp, err := http.Get(base + "/loki/api/v1/query_range?" + v.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"result"`) {
		t.Fatalf("loki query: %d %s", resp.StatusCode, b)
	}
	return string(b)
}

// digitRuns are digits with the separators people write numbers with.
var digitRuns = regexp.MustCompile(`\d[\d\s\-().]*\d`)

// base64Runs are what could be base64 (WhatsApp's message ids, "wamid.…",
// are base64 of a record that holds the customer's number).
var base64Runs = regexp.MustCompile(`[A-Za-z0-9+/_-]{16,}=*`)

// findEncodedPhone returns a base64 run of hay that decodes (at any
// alignment, standard or URL alphabet) to bytes holding the number's ten
// national digits, or "".
func findEncodedPhone(hay, phone string) string {
	national := pii.Digits(phone)
	national = national[len(national)-10:]
	for _, run := range base64Runs.FindAllString(hay, -1) {
		run = strings.TrimRight(run, "=")
		for shift := 0; shift < 4 && shift < len(run); shift++ {
			s := run[shift:]
			s = s[:len(s)/4*4]
			for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
				if b, err := enc.DecodeString(s); err == nil && strings.Contains(string(b), national) {
					return run
				}
			}
		}
	}
	return ""
}

// findPhone returns how hay writes the number phone (+7…, 8…, digits only,
// with separators), or "": any run of digits holding its ten national
// digits.
func findPhone(hay, phone string) string {
	national := pii.Digits(phone)
	national = national[len(national)-10:]
	for _, m := range digitRuns.FindAllString(hay, -1) {
		if strings.Contains(pii.Digits(m), national) {
			return m
		}
	}
	return ""
}
