package elastic

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/assistlog/assistlog/internal/stacktest"
)

// TestISMPolicyRenders: the policy deletes the alias's indices after the
// given days and attaches itself to every future monthly index.
func TestISMPolicyRenders(t *testing.T) {
	b, err := ISMPolicy("assistant-events", 400)
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		Policy struct {
			DefaultState string `json:"default_state"`
			States       []struct {
				Name    string
				Actions []map[string]any
				Trans   []struct {
					StateName  string `json:"state_name"`
					Conditions struct {
						MinIndexAge string `json:"min_index_age"`
					}
				} `json:"transitions"`
			}
			ISMTemplate []struct {
				IndexPatterns []string `json:"index_patterns"`
			} `json:"ism_template"`
		}
	}
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	st := p.Policy.States
	if p.Policy.DefaultState != "hot" || len(st) != 2 || st[0].Name != "hot" || len(st[0].Trans) != 1 ||
		st[0].Trans[0].StateName != "delete" || st[0].Trans[0].Conditions.MinIndexAge != "400d" {
		t.Errorf("hot state does not move to delete after 400d: %s", b)
	}
	if _, ok := st[1].Actions[0]["delete"]; st[1].Name != "delete" || !ok {
		t.Errorf("delete state does not delete: %s", b)
	}
	if len(p.Policy.ISMTemplate) != 1 || len(p.Policy.ISMTemplate[0].IndexPatterns) != 1 || p.Policy.ISMTemplate[0].IndexPatterns[0] != "assistant-events-*" {
		t.Errorf("ism_template does not cover the monthly indices: %s", b)
	}
	if _, err := ISMPolicy("x", 0); err == nil {
		t.Error("0 days accepted")
	}
}

// TestSetupRetentionSaysWhenISMIsMissing: the stack's OpenSearch (the
// integ-test zip) has no ISM plugin; installing the policy must say so
// plainly rather than fail with an opaque 400 or pretend it worked.
func TestSetupRetentionSaysWhenISMIsMissing(t *testing.T) {
	ep := stacktest.Require(t, stacktest.OpenSearch)
	w := storeWriter(t, ep.OpenSearchURL, StoreOpenSearch)
	if err := w.SetupRetention(context.Background(), 30); !errors.Is(err, ErrNoISM) {
		t.Fatalf("SetupRetention = %v, want ErrNoISM", err)
	}
}
