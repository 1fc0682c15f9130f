package images

import "testing"

// TestRefusedByName: the licences the issue names are refused by name,
// and the common permissive ones pass.
func TestRefusedByName(t *testing.T) {
	for _, id := range []string{"AGPL-3.0", "SSPL-1.0", "BUSL-1.1", "GPL-2.0", "LGPL-2.1", "Elastic-2.0", "CommonsClause", "WTFPL"} {
		if refused(id) == "" {
			t.Errorf("%s allowed", id)
		}
	}
	for _, id := range []string{"MIT", "BSD-3-Clause", "BSD-2-Clause", "Apache-2.0", "ISC", "MPL-2.0"} {
		if why := refused(id); why != "" {
			t.Errorf("%s refused: %s", id, why)
		}
	}
}
