package stack

import (
	"encoding/base64"
	"testing"
)

// TestClusterIDIsNeverTakenForAnOption: StorageTool's parser reads an id
// that starts with '-' as an option and refuses to format. One draw in 64
// did; 10,000 draws would meet one with certainty (1 − (63/64)^10000).
func TestClusterIDIsNeverTakenForAnOption(t *testing.T) {
	for i := 0; i < 10000; i++ {
		id := clusterID()
		if id[0] == '-' {
			t.Fatalf("draw %d: cluster id %q starts with '-'", i, id)
		}
		if b, err := base64.RawURLEncoding.DecodeString(id); err != nil || len(b) != 16 {
			t.Fatalf("draw %d: cluster id %q is not 16 bytes of URL-safe base64 (%v)", i, id, err)
		}
	}
}
