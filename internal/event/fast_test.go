package event_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/assistlog/assistlog/internal/event"
)

// trickyLines are inputs where encoding/json has rules of its own: the
// fast path must either decode them exactly as it does or leave them to
// the strict decoder.
var trickyLines = []string{
	`{}`,
	` {"event_id":"e1"} `,
	"\t{\"event_id\":\"e1\"}\r\n",
	`{"event_id":"e1","Tenant":"t"}`,
	`{"event_id":"e1","tenant":"a","tenant":"b"}`,
	`{"event_id":"e1","TENANT":"a","tenant":"b"}`,
	`{"event_id":"e1","tenant":null}`,
	`{"event_id":"e1","payload":null}`,
	`{"event_id":"e1","scenario":null}`,
	`{"event_id":"e1","pii_masked":null}`,
	`{"event_id":"e1","pii_masked":[]}`,
	`{"event_id":"e1","pii_masked":["a",null]}`,
	`{"event_id":"e1","payload":{}}`,
	`{"event_id":"e1","payload":{"a":1,"a":"two"}}`,
	`{"event_id":"e1","payload":{"a":{"b":1},"a":{"c":2}}}`,
	`{"event_id":"e1","payload":{"x":[],"y":{},"z":[[[]]],"n":null,"t":true,"f":false}}`,
	`{"event_id":"e1","payload":{"n":1e400}}`,
	`{"event_id":"e1","payload":{"n":-0,"m":0.5e-3,"k":1E+2,"big":123456789012345678901234567890}}`,
	`{"event_id":"e1","payload":{"n":01}}`,
	`{"event_id":"e1","payload":{"n":1.}}`,
	`{"event_id":"e1","payload":{"n":.5}}`,
	`{"event_id":"e1","payload":{"n":+1}}`,
	`{"event_id":"e1","payload":{"n":-}}`,
	`{"event_id":"e1","payload":{"n":tru}}`,
	`{"event_id":"e1","payload":{"n":nulll}}`,
	`{"event_id":"e1","confidence":1e400}`,
	`{"event_id":"e1","confidence":-0}`,
	`{"event_id":"e1","latency_ms":1.0}`,
	`{"event_id":"e1","latency_ms":1e3}`,
	`{"event_id":"e1","latency_ms":99999999999999999999}`,
	`{"event_id":"e1","latency_ms":-0}`,
	`{"event_id":"e1","schema_version":"1"}`,
	`{"event_id":"e1","schema_minor":3,"sentiment":"x"}`,
	`{"event_id":"\u0065\u0031"}`,
	`{"event_id":"e\"1"}`,
	`{"event_id":"e\/1"}`,
	`{"event_id":"e\'1"}`,
	`{"event_id":"e\x1"}`,
	`{"event_id":"\ud800"}`,
	`{"event_id":"\ud83d\ude00"}`,
	`{"event_i\u0064":"e1"}`,
	`{"event_id":"e1","payload":{"te\u0078t":"hi","text":"\u003c"}}`,
	"{\"event_id\":\"e\t1\"}",
	`{"event_id":"e1",}`,
	`{"event_id":"e1"`,
	`{"event_id":"e1"}}`,
	`{"event_id":"e1"} x`,
	`{"event_id":"e1"}{}`,
	`{"event_id" "e1"}`,
	`{"event_id":"e1" "tenant":"t"}`,
	`{,"event_id":"e1"}`,
	`{"scenario":{"from":"a","to":"b","to":"c"}}`,
	`{"scenario":{"From":"a","to":"b"}}`,
	`{"scenario":{"to":"b","via":"c"}}`,
	`{"scenario":{}}`,
	`{"scenario":{"to":null}}`,
	`{"scenario":[]}`,
	`{"payload":[]}`,
	`{"payload":"x"}`,
	`[]`,
	`"x"`,
	`null`,
	``,
	`   `,
	`{"payload":{"a":` + strings.Repeat(`[`, 100) + strings.Repeat(`]`, 100) + `}}`,
}

// plain is a complete valid event for building tricky variants on.
const plain = `{"event_id":"e-1","timestamp":"2026-11-23T14:05:09.120+03:00","tenant":"salon-aurora","channel":"whatsapp","session_id":"s-42","user_id":"wa-1","user_phone":"+79161234567","event_type":"message.received","level":"info","intent":"BookAppointment","confidence":0.91,"crm_id":"12","outcome":"ok","payload":{"text":"hi"},"seq":1,"schema_version":1}`

func tricky() [][]byte {
	var out [][]byte
	for _, l := range trickyLines {
		out = append(out, []byte(l))
		// The same rule on a complete event, so validation passes and the
		// decoded values themselves are compared.
		if strings.HasPrefix(l, `{"event_id":"e1",`) {
			out = append(out, []byte(strings.Replace(plain, `"event_id":"e-1",`, l[1:len(l)-1]+",", 1)))
		}
	}
	big := func(text string) []byte {
		return []byte(strings.Replace(plain, `{"text":"hi"}`, `{"text":"hi","blob":"`+text+`"}`, 1))
	}
	// Around the payload size the fast path does not re-encode to measure.
	out = append(out, big(strings.Repeat("<", 4000)), big(strings.Repeat("<", 4090)), big(strings.Repeat("<", 5500)),
		big(strings.Repeat("<", 6000)), big(strings.Repeat("y", 33000)), big(strings.Repeat(`\u003c`, 700)))
	return out
}

// mutate breaks or bends a line the ways real files do: a byte lost or
// doubled, a cut, a key's case, a value nulled, white space added.
func mutate(r *rand.Rand, line []byte) []byte {
	l := bytes.Clone(line)
	if len(l) == 0 {
		return l
	}
	i := r.IntN(len(l))
	switch r.IntN(9) {
	case 0:
		return append(l[:i:i], l[i+1:]...)
	case 1:
		return append(l[:i+1:i+1], l[i:]...)
	case 2:
		return l[:i]
	case 3:
		const chars = "{}[],:\"\\ 0-.eE1ntfx\x01"
		l[i] = chars[r.IntN(len(chars))]
		return l
	case 4:
		return bytes.Replace(l, []byte(`"tenant"`), []byte(`"Tenant"`), 1)
	case 5:
		return bytes.Replace(l, []byte(`"level":"info"`), []byte(`"level":null`), 1)
	case 6:
		return bytes.ReplaceAll(l, []byte(`,"`), []byte(" ,\n\t\"")) // still valid
	case 7:
		return bytes.Replace(l, []byte(`}`), []byte(`,"tenant":"x"}`), 1) // a repeated key
	default:
		return bytes.Replace(l, []byte(`":"`), []byte(`":"\u00e9\n`), 1) // escapes
	}
}

// agree checks the fast path against the strict decoder on one line:
// ParseWithDefaultID must return what parseStrict returns (the same event,
// or the same error text and kind), and whatever the fast decoder takes it
// must decode exactly as encoding/json does.
func agree(t *testing.T, line []byte) (fastTook, valid bool) {
	t.Helper()
	const id = "f-default-1"
	want, wantErr := event.ParseStrict(line, id)
	got, gotErr := event.ParseWithDefaultID(line, id)
	if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) || event.KindOf(gotErr) != event.KindOf(wantErr) {
		t.Fatalf("line %.300q:\n  got error  %v (%s)\n  want error %v (%s)", line, gotErr, event.KindOf(gotErr), wantErr, event.KindOf(wantErr))
	}
	if wantErr == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("line %.300q:\n  got  %#v\n  want %#v", line, got, want)
	}
	if k := event.KindOf(wantErr); k == event.KindTooLarge || k == event.KindInvalidUTF8 {
		return false, false // refused before any decoder runs
	}
	fast, ok := event.FastDecode(line)
	if !ok {
		return false, wantErr == nil
	}
	// Taken by the fast decoder: with the same id, validation must reach
	// the strict verdict, and a valid event must be the strict one.
	if fast.EventID == "" {
		fast.EventID = id
	}
	if err := fast.Validate(); fmt.Sprint(err) != fmt.Sprint(wantErr) {
		t.Fatalf("line %.300q: the fast decoder took it, validation says %v, strict says %v", line, err, wantErr)
	} else if err == nil && !reflect.DeepEqual(fast, want) {
		t.Fatalf("line %.300q: the fast decoder took it as\n  %#v\nstrict decodes\n  %#v", line, fast, want)
	}
	return true, wantErr == nil
}

// TestFastPathAgreesWithStrict: on the validation table's good and bad
// lines, the tricky inputs above, the generator's events and thousands of
// their mutations, the fast path gives the strict decoder's answer.
func TestFastPathAgreesWithStrict(t *testing.T) {
	lines := append(event.CaseLines(), tricky()...)
	for _, l := range lines {
		agree(t, l)
	}
	gen := generated(t)
	for _, l := range gen {
		agree(t, l)
	}
	r := rand.New(rand.NewPCG(14, 1))
	counts := map[[2]bool]int{}
	for i := 0; i < 20000; i++ {
		src := gen[r.IntN(len(gen))]
		if i%4 == 0 {
			src = lines[r.IntN(len(lines))]
		}
		l := mutate(r, src)
		if r.IntN(3) == 0 {
			l = mutate(r, l)
		}
		took, valid := agree(t, l)
		counts[[2]bool{took, valid}]++
	}
	// The mutations must reach both sides of every verdict, or the
	// comparison proves little.
	t.Logf("mutations: fast+valid %d, fast+invalid %d, strict+valid %d, strict+invalid %d",
		counts[[2]bool{true, true}], counts[[2]bool{true, false}], counts[[2]bool{false, true}], counts[[2]bool{false, false}])
	for k, n := range counts {
		if n < 100 {
			t.Errorf("only %d mutated lines with fast path taken=%v, valid=%v", n, k[0], k[1])
		}
	}
}

// TestFastPathTakesGeneratedEvents: the generator's events — what an
// assistant writes — are decoded without the strict decoder. Fails if the
// fast path declines plain events (and so saves nothing).
func TestFastPathTakesGeneratedEvents(t *testing.T) {
	for _, l := range generated(t) {
		if _, ok := event.FastDecode(l); !ok {
			t.Fatalf("the fast decoder declined a generated event: %s", l)
		}
	}
}

// FuzzFastPath: go test -run '^$' -fuzz FuzzFastPath ./internal/event/
func FuzzFastPath(f *testing.F) {
	f.Add([]byte(plain))
	for _, l := range append(event.CaseLines(), tricky()...) {
		f.Add(l)
	}
	f.Fuzz(func(t *testing.T, line []byte) { agree(t, line) })
}
