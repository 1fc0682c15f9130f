package event

// The patterns of schema.v1.json, matched byte by byte: these run on every
// event, where a regexp cost as much as decoding the line. Each says the
// pattern it implements; TestMatchersAgreeWithPatterns holds each to its
// regexp on generated and hand-picked strings.

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
func isLower(c byte) bool { return 'a' <= c && c <= 'z' }
func isAlnum(c byte) bool { return isDigit(c) || isLower(c) || 'A' <= c && c <= 'Z' }

func all(s string, ok func(byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}

// matchEventID: ^[A-Za-z0-9._:-]+$
func matchEventID(s string) bool {
	return s != "" && all(s, func(c byte) bool { return isAlnum(c) || c == '.' || c == '_' || c == ':' || c == '-' })
}

// matchTenant: ^[a-z0-9][a-z0-9-]{0,62}$
func matchTenant(s string) bool {
	return len(s) >= 1 && len(s) <= 63 && (isLower(s[0]) || isDigit(s[0])) &&
		all(s[1:], func(c byte) bool { return isLower(c) || isDigit(c) || c == '-' })
}

// matchPhone: ^\+[1-9][0-9]{7,14}$
func matchPhone(s string) bool {
	return len(s) >= 9 && len(s) <= 16 && s[0] == '+' && s[1] >= '1' && s[1] <= '9' && all(s[2:], isDigit)
}

// matchSealed: ^[A-Za-z0-9_.-]{1,32}:[A-Za-z0-9_-]{16,}$ (neither part
// holds a colon, so the first one splits them).
func matchSealed(s string) bool {
	i := 0
	for i < len(s) && s[i] != ':' {
		i++
	}
	if i < 1 || i > 32 || i == len(s) {
		return false
	}
	keyID, sealed := s[:i], s[i+1:]
	return all(keyID, func(c byte) bool { return isAlnum(c) || c == '_' || c == '.' || c == '-' }) &&
		len(sealed) >= 16 && all(sealed, func(c byte) bool { return isAlnum(c) || c == '_' || c == '-' })
}

// matchCRMID: ^[0-9]{1,20}$
func matchCRMID(s string) bool { return len(s) >= 1 && len(s) <= 20 && all(s, isDigit) }

// matchRFC3339: ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$
func matchRFC3339(s string) bool {
	if len(s) < 20 {
		return false
	}
	for i := 0; i < 19; i++ {
		var ok bool
		switch i {
		case 4, 7:
			ok = s[i] == '-'
		case 10:
			ok = s[i] == 'T'
		case 13, 16:
			ok = s[i] == ':'
		default:
			ok = isDigit(s[i])
		}
		if !ok {
			return false
		}
	}
	rest := s[19:]
	if rest[0] == '.' {
		j := 1
		for j < len(rest) && isDigit(rest[j]) {
			j++
		}
		if j == 1 || j > 10 {
			return false
		}
		rest = rest[j:]
	}
	return rest == "Z" || len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && isDigit(rest[1]) && isDigit(rest[2]) &&
		rest[3] == ':' && isDigit(rest[4]) && isDigit(rest[5])
}

// isBlankRune is schema.v1.json's $defs.nonBlank negated: white space,
// spelt out so that Go and ECMA engines agree:
// [\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]
func isBlankRune(r rune) bool {
	switch r {
	case '\t', '\n', '\v', '\f', '\r', ' ', '\u0085', '\u00a0', '\u1680', '\u2028', '\u2029', '\u202f', '\u205f', '\u3000', '\ufeff':
		return true
	}
	return r >= '\u2000' && r <= '\u200a'
}
