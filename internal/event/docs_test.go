package event

import (
	"os"
	"regexp"
	"testing"
)

// TestDocExamples validates every JSON example in docs/events.md and checks
// that each event type has one, so the documentation cannot rot.
func TestDocExamples(t *testing.T) {
	b, err := os.ReadFile("../../docs/events.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)### ([a-z_.]+)\n```json\n(.*?)\n```").FindAllSubmatch(b, -1)
	seen := map[Type]bool{}
	for _, m := range blocks {
		heading := Type(m[1])
		e, err := Parse(m[2])
		if err != nil {
			t.Errorf("example for %s does not validate: %v", heading, err)
			continue
		}
		if e.Type != heading {
			t.Errorf("example under %s has event_type %s", heading, e.Type)
		}
		seen[e.Type] = true
	}
	for _, typ := range Types {
		if !seen[typ] {
			t.Errorf("docs/events.md has no example for %s", typ)
		}
	}
}
