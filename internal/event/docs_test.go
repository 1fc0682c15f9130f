package event

import (
	"bytes"
	"os"
	"regexp"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// TestDocExamples validates every JSON example in docs/events.md with both
// enforcers and checks that each event type has one, so the documentation
// cannot rot. A heading names the type, optionally followed by a note
// ("### message.received, a voice note").
func TestDocExamples(t *testing.T) {
	b, err := os.ReadFile("../../docs/events.md")
	if err != nil {
		t.Fatal(err)
	}
	sch := compileSchema(t)
	blocks := regexp.MustCompile("(?s)### ([a-z_.]+)[^\n`]*\n```json\n(.*?)\n```").FindAllSubmatch(b, -1)
	seen := map[Type]bool{}
	for _, m := range blocks {
		heading := Type(m[1])
		if inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(m[2])); err != nil {
			t.Errorf("example for %s is not JSON: %v", heading, err)
		} else if err := sch.Validate(inst); err != nil {
			t.Errorf("example for %s does not validate against schema.v1.json: %v", heading, err)
		}
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
