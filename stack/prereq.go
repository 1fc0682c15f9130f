package stack

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// prerequisite is a command the stack needs and the Debian package that
// provides it.
type prerequisite struct {
	command, debian string
}

var prerequisites = []prerequisite{
	{"java", "openjdk-17-jre-headless"}, // Kafka 4 and Elasticsearch 8.19 need Java 17+
	{"mvn", "maven"},                    // resolves Kafka and Elasticsearch from Maven Central
	{"curl", "curl"},                    // the demo script reads /metrics
	{"python3", "python3"},              // the demo script reads JSON replies
	{"chromium", "chromium"},            // audit's report test renders the owner report in headless Chromium
	{"node", "nodejs"},                  // the webhook sink's tests run the Google Apps Script receiver
	{"kcat", "kcat"},                    // make bench: the collector's peer producing the same lines (issue 14)
}

// ensurePrerequisites installs missing tools from Debian's packages when
// running as root, so a bare machine needs nothing done by hand.
func (s *Stack) ensurePrerequisites(ctx context.Context) error {
	var missing []string
	for _, p := range prerequisites {
		if p.command == "java" && exists(javaBinary()) {
			continue
		}
		if _, err := exec.LookPath(p.command); err != nil {
			missing = append(missing, p.debian)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("missing tools; install the Debian packages %s", strings.Join(missing, " "))
	}
	s.logf("installing missing Debian packages: %s", strings.Join(missing, " "))
	for _, args := range [][]string{{"update"}, append([]string{"install", "-y", "--no-install-recommends"}, missing...)} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get %s: %w\n%s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}
