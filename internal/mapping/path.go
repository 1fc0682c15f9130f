package mapping

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/assistlog/assistlog/internal/event"
)

// A path addresses a value inside decoded JSON: object keys separated by
// dots, array elements by [index] — "message.chat.id",
// "entry[0].changes[0].value". It is a deliberately small language (no
// wildcards, filters or recursion): a mapping moves one value to one field,
// and every path is checked when the mapping is compiled.
type path []step

type step struct {
	key   string
	index int // >= 0 for an array element; then key is ""
}

func (p path) String() string {
	var b strings.Builder
	for i, s := range p {
		if s.index >= 0 {
			fmt.Fprintf(&b, "[%d]", s.index)
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(s.key)
	}
	return b.String()
}

// parsePath compiles a path, saying what is wrong with a bad one.
func parsePath(s string) (path, error) {
	if s == "" {
		return nil, fmt.Errorf("empty path")
	}
	var p path
	for i := 0; i < len(s); {
		switch c := s[i]; {
		case c == '[':
			end := strings.IndexByte(s[i:], ']')
			if end < 0 {
				return nil, fmt.Errorf("path %q: [ at byte %d is not closed", s, i)
			}
			n, err := strconv.Atoi(s[i+1 : i+end])
			if err != nil || n < 0 {
				return nil, fmt.Errorf("path %q: index %q at byte %d must be a non-negative integer", s, s[i+1:i+end], i)
			}
			p = append(p, step{index: n})
			i += end + 1
			if i < len(s) && s[i] != '.' && s[i] != '[' {
				return nil, fmt.Errorf("path %q: expected . or [ after ] at byte %d", s, i)
			}
		case c == '.':
			if i == 0 || i == len(s)-1 || s[i+1] == '.' || s[i+1] == '[' {
				return nil, fmt.Errorf("path %q: empty key at byte %d", s, i)
			}
			i++
		default:
			end := strings.IndexAny(s[i:], ".[]")
			if end < 0 {
				end = len(s) - i
			}
			if i+end < len(s) && s[i+end] == ']' {
				return nil, fmt.Errorf("path %q: ] at byte %d without [", s, i+end)
			}
			p = append(p, step{key: s[i : i+end], index: -1})
			i += end
		}
	}
	return p, nil
}

// get returns the value at p in v.
func (p path) get(v any) (any, bool) {
	for _, s := range p {
		if s.index >= 0 {
			a, ok := v.([]any)
			if !ok || s.index >= len(a) {
				return nil, false
			}
			v = a[s.index]
			continue
		}
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[s.key]; !ok {
			return nil, false
		}
	}
	return v, true
}

// remove deletes the value at p (object keys only; an array element is
// left in place, its array being removed when nothing else of it is
// used) and prunes objects it leaves empty.
func (p path) remove(v any) {
	if len(p) == 0 {
		return
	}
	parent, ok := p[:len(p)-1].get(v)
	if !ok {
		return
	}
	last := p[len(p)-1]
	if m, ok := parent.(map[string]any); ok && last.index < 0 {
		delete(m, last.key)
		if len(m) == 0 {
			p[:len(p)-1].remove(v)
		}
	}
}

// set writes val at p in the object root, creating objects on the way.
// Target paths are object keys only (checked at compile time).
func (p path) set(root map[string]any, val any) error {
	m := root
	for i, s := range p[:len(p)-1] {
		next, ok := m[s.key]
		if !ok {
			n := map[string]any{}
			m[s.key] = n
			m = n
			continue
		}
		if m, ok = next.(map[string]any); !ok {
			return fmt.Errorf("%s is %s, not an object", p[:i+1], event.JSONType(next))
		}
	}
	m[p[len(p)-1].key] = val
	return nil
}
