package program

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// Set by the image build (and anyone building a release) with
//
//	-ldflags "-X github.com/assistlog/assistlog/internal/program.version=v1.2.3
//	          -X github.com/assistlog/assistlog/internal/program.commit=<sha>"
//
// A plain `go build` leaves them empty and Build falls back to what the Go
// toolchain recorded in the binary. These are the only package variables:
// the linker can set nothing else.
var version, commit string

// BuildInfo is what `PROGRAM version` prints.
type BuildInfo struct {
	Version, Commit, GoVersion string
}

// Build returns the version and commit the binary was built with: the
// linker's values when given, else the module version and VCS revision the
// toolchain stamped, else "devel" and "unknown".
func Build() BuildInfo {
	b := BuildInfo{Version: version, Commit: commit, GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if b.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			b.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && b.Commit == "" {
				b.Commit = s.Value
			}
		}
	}
	if b.Version == "" {
		b.Version = "devel"
	}
	if b.Commit == "" {
		b.Commit = "unknown"
	}
	return b
}

// PrintVersion writes one line: NAME VERSION (commit C, GOVERSION).
func PrintVersion(w io.Writer, name string) {
	b := Build()
	fmt.Fprintf(w, "%s %s (commit %s, %s)\n", name, b.Version, b.Commit, b.GoVersion)
}
