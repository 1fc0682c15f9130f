package event

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

// TestMatchersAgreeWithPatterns holds each hand-written matcher to the
// regexp it replaced (the patterns of schema.v1.json) on hand-picked
// strings and on random ones built from the characters that matter.
func TestMatchersAgreeWithPatterns(t *testing.T) {
	nonBlank := regexp.MustCompile("[^\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]")
	cases := []struct {
		name    string
		re      *regexp.Regexp
		match   func(string) bool
		samples []string
	}{
		{"event_id", regexp.MustCompile(`^[A-Za-z0-9._:-]+$`), matchEventID,
			[]string{"", "a", "sgd-33_00105-0001", "a/b", "a b", "é", "f-0123456789abcdef-12-deadbeef", "a\n"}},
		{"tenant", regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`), matchTenant,
			[]string{"", "a", "-a", "salon-aurora", "Salon", "a_b", strings.Repeat("a", 63), strings.Repeat("a", 64), "0-", "a\n"}},
		{"user_phone", regexp.MustCompile(`^\+[1-9][0-9]{7,14}$`), matchPhone,
			[]string{"", "+79161234567", "+09161234567", "79161234567", "+1234567", "+12345678", "+123456789012345", "+1234567890123456", "+7916123456x", "+7916123456\n"}},
		{"user_phone_sealed", regexp.MustCompile(`^[A-Za-z0-9_.-]{1,32}:[A-Za-z0-9_-]{16,}$`), matchSealed,
			[]string{"", ":", "k2026:3q2-7wAbCdEfGhIjKlMnOpQrStUv", "k:abcdefghijklmnop", "k:abcdefghijklmno", ":abcdefghijklmnop",
				strings.Repeat("k", 32) + ":abcdefghijklmnop", strings.Repeat("k", 33) + ":abcdefghijklmnop", "k:abcdefghijklmnop:", "k.1:abcdefghijklm.op", "+79161234567"}},
		{"crm_id", regexp.MustCompile(`^[0-9]{1,20}$`), matchCRMID,
			[]string{"", "0", "789", "L-12", strings.Repeat("9", 20), strings.Repeat("9", 21), "1\n"}},
		{"timestamp", regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$`), matchRFC3339,
			[]string{"", "2026-11-23T14:05:09.120+03:00", "2026-11-23T11:05:09Z", "2026-11-23T14:05:09", "2026-11-23", "2026-11-23 14:05:09+03:00",
				"2026-11-23T14:05:09.+03:00", "2026-11-23T14:05:09.123456789Z", "2026-11-23T14:05:09.1234567890Z", "2026-11-23t14:05:09Z",
				"2026-11-23T14:05:09z", "2026-11-23T14:05:09+0300", "2026-11-23T14:05:09+03:00\n", "2026-11-23T14:05:09-03:00", "2026-11-23T14:05:09Z "}},
		{"blank", nonBlank, func(s string) bool { return !Blank(s) },
			[]string{"", " ", "\u00a0да\u3000", " \t\n\u00a0\u2003\u3000\ufeff", "\u200b", "\u2000\u200a\u200b", "a", "\xff", "\u180e"}},
	}
	alphabet := []string{"0", "1", "7", "9", "a", "k", "z", "A", "Z", "T", "t", "-", "_", ".", ":", "+", "/", " ", "\n", "\t", "Z",
		"\u00a0", "\u2000", "\u200a", "\u200b", "\u3000", "\ufeff", "я", "\xff", "2026-11-23T14:05:09", ".120", "+03:00", "abcdefghijklmnop"}
	r := rand.New(rand.NewPCG(3, 14))
	for _, c := range cases {
		samples := c.samples
		for i := 0; i < 20000; i++ {
			var b strings.Builder
			for n := r.IntN(8); n >= 0; n-- {
				b.WriteString(alphabet[r.IntN(len(alphabet))])
			}
			samples = append(samples, b.String())
		}
		for _, s := range samples {
			if got, want := c.match(s), c.re.MatchString(s); got != want {
				t.Errorf("%s: %q: matcher says %v, the pattern %v", c.name, s, got, want)
			}
		}
	}
}
