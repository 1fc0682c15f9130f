package bitrix24test

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// params merges query-string and body parameters the way Bitrix24 accepts
// them: a JSON body, or PHP bracket notation (fields[PHONE][0][VALUE]=…) in
// the query, a form body or multipart. Body values win over the query.
func params(r *http.Request) (map[string]any, error) {
	out := map[string]any{}
	if err := mergeForm(out, r.URL.Query()); err != nil {
		return nil, err
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	if err != nil {
		return nil, err
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch {
	case len(strings.TrimSpace(string(body))) == 0:
	case ct == "application/json" || (ct == "" && strings.HasPrefix(strings.TrimSpace(string(body)), "{")):
		var m map[string]any
		dec := json.NewDecoder(strings.NewReader(string(body)))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			return nil, fmt.Errorf("invalid JSON body: %w", err)
		}
		for k, v := range m {
			out[k] = v
		}
	default:
		vals, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, err
		}
		if err := mergeForm(out, vals); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// mergeForm decodes PHP bracket notation into nested maps; numeric keys
// make arrays when they run 0..n-1.
func mergeForm(out map[string]any, vals url.Values) error {
	keys := make([]string, 0, len(vals))
	for k := range vals {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, v := range vals[k] {
			path := splitBrackets(k)
			setPath(out, path, v)
		}
	}
	for k, v := range out {
		out[k] = arrays(v)
	}
	return nil
}

func splitBrackets(k string) []string {
	i := strings.IndexByte(k, '[')
	if i < 0 {
		return []string{k}
	}
	parts := []string{k[:i]}
	rest := k[i:]
	for len(rest) > 0 && rest[0] == '[' {
		j := strings.IndexByte(rest, ']')
		if j < 0 {
			break
		}
		parts = append(parts, rest[1:j])
		rest = rest[j+1:]
	}
	return parts
}

func setPath(m map[string]any, path []string, v string) {
	for i, p := range path {
		last := i == len(path)-1
		if p == "" { // select[]=ID: append
			p = strconv.Itoa(len(m))
		}
		if last {
			m[p] = v
			return
		}
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
}

// arrays turns maps keyed 0..n-1 into slices, recursively.
func arrays(v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	for k, x := range m {
		m[k] = arrays(x)
	}
	if len(m) == 0 {
		return m
	}
	list := make([]any, len(m))
	for k, x := range m {
		i, err := strconv.Atoi(k)
		if err != nil || i < 0 || i >= len(m) {
			return m
		}
		list[i] = x
	}
	return list
}

// param returns a parameter by name, treating "id" and "ID" alike.
func param(p map[string]any, name string) (any, bool) {
	if v, ok := p[name]; ok {
		return v, true
	}
	if v, ok := p[strings.ToUpper(name)]; ok {
		return v, true
	}
	v, ok := p[strings.ToLower(name)]
	return v, ok
}

// asInt reads a positive integer from a JSON number or a string.
func asInt(v any) (int64, bool) {
	switch x := v.(type) {
	case json.Number:
		n, err := x.Int64()
		return n, err == nil && n > 0
	case float64:
		return int64(x), x > 0 && x == float64(int64(x))
	case string:
		n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
		return n, err == nil && n > 0
	case int64:
		return x, x > 0
	case int:
		return int64(x), x > 0
	}
	return 0, false
}

func asString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func asSlice(v any) []any {
	switch x := v.(type) {
	case []any:
		return x
	case map[string]any: // an object with non-sequential keys
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out := make([]any, 0, len(x))
		for _, k := range keys {
			out = append(out, x[k])
		}
		return out
	case nil:
		return nil
	}
	return []any{v}
}
