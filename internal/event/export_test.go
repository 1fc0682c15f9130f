package event

// For the external tests (fast_test.go), which need the generator's
// events and so cannot live in this package (demo imports event).

// ParseStrict is Parse as it was before the fast path: the same checks
// of size and UTF-8, then the reference decoder alone.
func ParseStrict(line []byte, defaultID string) (*Event, error) {
	if err := precheck(line); err != nil {
		return nil, err
	}
	return parseStrict(line, func() string { return defaultID })
}

// FastDecode is the fast path's decoder alone.
func FastDecode(line []byte) (*Event, bool) {
	e, _, ok := fastDecode(line)
	return &e, ok
}

// CaseLines are the lines of the validation table, good and bad.
func CaseLines() [][]byte {
	var out [][]byte
	for _, tc := range validationCases() {
		out = append(out, tc.line)
	}
	return out
}
