package stack

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// prerequisite is a command the stack needs and the Debian package that
// provides it; probe, when set, is run instead of looking the command up
// (a package that adds a module, not a command).
type prerequisite struct {
	command, debian string
	probe           []string
}

var prerequisites = []prerequisite{
	{command: "java", debian: "openjdk-17-jre-headless"}, // Kafka 4 and Elasticsearch 8.19 need Java 17+
	{command: "mvn", debian: "maven"},                    // resolves Kafka and Elasticsearch from Maven Central
	{command: "curl", debian: "curl"},                    // the demo script reads /metrics
	{command: "python3", debian: "python3"},              // the demo script reads JSON replies
	{command: "chromium", debian: "chromium"},            // audit's report test renders the owner report in headless Chromium
	{command: "node", debian: "nodejs"},                  // the webhook sink's tests run the Google Apps Script receiver
	{command: "kcat", debian: "kcat"},                    // make bench: the collector's peer producing the same lines (issue 14)
	// The archive's and the chart's Python tools live in venvs; Debian's
	// python3 lacks ensurepip (so `python3 -m venv`) without this package.
	{command: "python3", debian: "python3-venv", probe: []string{"python3", "-c", "import ensurepip"}},
}

// ensurePrerequisites installs missing tools from Debian's packages when
// running as root, so a bare machine needs nothing done by hand.
func (s *Stack) ensurePrerequisites(ctx context.Context) error {
	var missing []string
	for _, p := range prerequisites {
		if p.command == "java" && exists(javaBinary()) {
			continue
		}
		if p.probe != nil {
			if err := exec.CommandContext(ctx, p.probe[0], p.probe[1:]...).Run(); err != nil {
				missing = append(missing, p.debian)
			}
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
