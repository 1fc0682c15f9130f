package elastic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// ErrNoISM means the OpenSearch cluster has no Index State Management
// plugin (the integ-test distribution the local stack runs has none;
// managed clusters such as Yandex Managed OpenSearch have it).
var ErrNoISM = errors.New("the cluster has no Index State Management plugin")

// ISMPolicy renders the OpenSearch Index State Management policy that
// deletes a monthly index once it is older than days (the index's age
// counts from its creation, i.e. from the month's first event), for every
// index of the alias now and later (ism_template).
func ISMPolicy(alias string, days int) ([]byte, error) {
	if days < 1 {
		return nil, fmt.Errorf("retention: days must be positive, got %d", days)
	}
	p := map[string]any{"policy": map[string]any{
		"description":   fmt.Sprintf("assistlog: delete %s-* indices %d days after creation", alias, days),
		"default_state": "hot",
		"states": []any{
			map[string]any{"name": "hot", "actions": []any{}, "transitions": []any{
				map[string]any{"state_name": "delete", "conditions": map[string]any{"min_index_age": fmt.Sprintf("%dd", days)}}}},
			map[string]any{"name": "delete", "actions": []any{map[string]any{"delete": map[string]any{}}}, "transitions": []any{}},
		},
		"ism_template": []any{map[string]any{"index_patterns": []string{alias + "-*"}, "priority": 100}},
	}}
	return json.MarshalIndent(p, "", "  ")
}

// ISMPolicyID is the policy's id for an alias.
func ISMPolicyID(alias string) string { return alias + "-retention" }

// SetupRetention installs the ISM policy on an OpenSearch store. It
// returns ErrNoISM when the cluster lacks the plugin, and an error on
// Elasticsearch (its lifecycle management is ILM, not this).
func (w *Writer) SetupRetention(ctx context.Context, days int) error {
	if w.cfg.Destination() != StoreOpenSearch {
		return fmt.Errorf("retention policy: %s is not OpenSearch (store: %s)", w.cfg.URLs[0], w.cfg.Destination())
	}
	body, err := ISMPolicy(w.cfg.Alias, days)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, "/_plugins/_ism/policies/"+ISMPolicyID(w.cfg.Alias), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := w.tp.Perform(req)
	if err != nil {
		return fmt.Errorf("put ISM policy: %w", err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode == http.StatusBadRequest && strings.Contains(string(b), "no handler found") {
		return fmt.Errorf("put ISM policy %s: %w", ISMPolicyID(w.cfg.Alias), ErrNoISM)
	}
	if res.StatusCode >= 300 {
		return fmt.Errorf("put ISM policy %s: HTTP %d: %s", ISMPolicyID(w.cfg.Alias), res.StatusCode, b)
	}
	return nil
}
