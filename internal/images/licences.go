package images

import (
	"debug/buildinfo"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"unicode"

	"github.com/google/licensecheck"
)

// Module is one dependency linked into a binary, and where its source
// (with its licence file) is on this machine.
type Module struct {
	Path, Version, Dir string
}

// BinaryModules lists the modules the Go toolchain recorded as linked into
// bin (what `go version -m bin` prints), located in the module cache.
func BinaryModules(bin string) ([]Module, error) {
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		return nil, fmt.Errorf("licences: build info of %s: %w", bin, err)
	}
	cache, err := modCache()
	if err != nil {
		return nil, err
	}
	var mods []Module
	for _, d := range bi.Deps {
		if d.Replace != nil {
			d = d.Replace
		}
		dir := d.Path // a replacement by a local directory
		if d.Version != "" {
			dir = filepath.Join(cache, escapePath(d.Path)+"@"+d.Version)
		}
		mods = append(mods, Module{Path: d.Path, Version: d.Version, Dir: dir})
	}
	return mods, nil
}

func modCache() (string, error) {
	out, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		return "", fmt.Errorf("licences: go env GOMODCACHE: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// escapePath is the module cache's case encoding: an upper-case letter is
// '!' and the letter in lower case.
func escapePath(p string) string {
	var b strings.Builder
	for _, r := range p {
		if unicode.IsUpper(r) {
			b.WriteByte('!')
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Licence is what a module's licence file was recognised as.
type Licence struct {
	Module  Module
	File    string   // the licence file read
	IDs     []string // SPDX ids matched
	Percent float64  // how much of the file the matches cover
	Problem string   // empty when the licence is allowed
}

// minCoverage: below this share of the file recognised as licence text,
// the file holds terms nobody has classified, and the module is refused.
const minCoverage = 75

// Classify reads a module's licence file and classifies it. Allowed:
// licences without conditions or with notice conditions only (MIT, BSD,
// Apache-2.0, ISC, ...) and MPL-2.0's file-level sharing of changes (we
// change no dependency). Refused: anything else — GPL's whole-program
// sharing, AGPL/SSPL's server clause, non-commercial or source-available
// terms (BUSL), unrecognised or partly recognised text, no file at all.
func Classify(m Module) Licence {
	l := Licence{Module: m}
	l.File = licenceFile(m.Dir)
	if l.File == "" {
		l.Problem = "no licence file in " + m.Dir
		return l
	}
	text, err := os.ReadFile(l.File)
	if err != nil {
		l.Problem = err.Error()
		return l
	}
	cov := licensecheck.Scan(text)
	l.Percent = cov.Percent
	for _, match := range cov.Match {
		l.IDs = append(l.IDs, match.ID)
		if l.Problem == "" {
			l.Problem = refused(match.ID)
		}
	}
	switch {
	case l.Problem != "":
	case len(cov.Match) == 0:
		l.Problem = "licence not recognised"
	case cov.Percent < minCoverage:
		l.Problem = fmt.Sprintf("only %.0f%% of the licence file recognised (%s): unclassified terms", cov.Percent, strings.Join(l.IDs, ", "))
	}
	return l
}

// allowed are the licences a dependency linked into a shipped binary may
// have: permissive ones, and MPL-2.0 (its sharing is per file, of changes
// to that file; we change no dependency).
var allowedPrefixes = []string{"MIT", "BSD-", "0BSD", "Apache-2.0", "ISC", "Zlib", "Unlicense", "CC0-1.0", "MPL-2.0", "BSL-1.0", "Python-2.0"}

// forbidden names what is refused by name, for a clearer message than
// "not recognised": network copyleft and source-available licences, and
// the GPL family, whose terms reach the whole static binary.
var forbiddenPrefixes = []string{"AGPL", "SSPL", "BUSL", "Elastic-", "Commons-Clause", "GPL", "LGPL", "EUPL", "CPAL", "OSL"}

// refused says why a matched licence id is not allowed ("" = allowed).
func refused(id string) string {
	for _, p := range forbiddenPrefixes {
		if strings.HasPrefix(id, p) {
			return id + " is forbidden in the images (copyleft reaching assistlog, or not open source)"
		}
	}
	for _, p := range allowedPrefixes {
		if strings.HasPrefix(id, p) {
			return ""
		}
	}
	return id + " is not on the allowed list"
}

// licenceFile is the module's top-level LICENSE/LICENCE/COPYING file.
func licenceFile(dir string) string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return ""
	}
	var found []string
	for _, e := range entries {
		n := strings.ToUpper(e.Name())
		if !e.IsDir() && (strings.HasPrefix(n, "LICENSE") || strings.HasPrefix(n, "LICENCE") || strings.HasPrefix(n, "COPYING")) {
			found = append(found, filepath.Join(dir, e.Name()))
		}
	}
	sort.Strings(found) // LICENSE before LICENSE-xyz
	if len(found) == 0 {
		return ""
	}
	return found[0]
}

// CheckLicences classifies every module and returns one line per module
// refused (none: all allowed).
func CheckLicences(mods []Module) []string {
	var bad []string
	for _, m := range mods {
		if l := Classify(m); l.Problem != "" {
			bad = append(bad, fmt.Sprintf("%s %s: %s", m.Path, m.Version, l.Problem))
		}
	}
	return bad
}

// PackageModules lists the modules that the programs' packages import, as
// a static Linux build sees them (CGO_ENABLED=0): the modules the linker
// links, without building anything.
func PackageModules(root string, programs []Program) ([]Module, error) {
	args := []string{"list", "-deps", "-f", "{{if and .Module (not .Module.Main)}}{{.Module.Path}}\t{{.Module.Version}}\t{{.Module.Dir}}{{end}}"}
	for _, p := range programs {
		args = append(args, p.Package)
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, ee.Stderr)
		}
		return nil, fmt.Errorf("licences: go list: %w", err)
	}
	seen := map[string]bool{}
	var mods []Module
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 3 || seen[f[0]] {
			continue
		}
		seen[f[0]] = true
		mods = append(mods, Module{Path: f[0], Version: f[1], Dir: f[2]})
	}
	sort.Slice(mods, func(i, j int) bool { return mods[i].Path < mods[j].Path })
	return mods, nil
}

// DocDir is where an image keeps the licence texts of what its binary
// links (Apache-2.0 and BSD require them with every binary copy).
const DocDir = "/usr/share/doc/assistlog"

// Notices maps the licence and NOTICE files of each module (and Go's own
// licence, for the standard library and runtime) to their place under
// DocDir/licenses/MODULE/ in an image.
func Notices(mods []Module) (map[string]string, error) {
	out := map[string]string{}
	goroot, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return nil, fmt.Errorf("licences: go env GOROOT: %w", err)
	}
	out[DocDir+"/licenses/go/LICENSE"] = filepath.Join(strings.TrimSpace(string(goroot)), "LICENSE")
	for _, m := range mods {
		entries, err := os.ReadDir(m.Dir)
		if err != nil {
			return nil, fmt.Errorf("licences: %s: %w", m.Path, err)
		}
		for _, e := range entries {
			n := strings.ToUpper(e.Name())
			if e.IsDir() || !(strings.HasPrefix(n, "LICENSE") || strings.HasPrefix(n, "LICENCE") || strings.HasPrefix(n, "COPYING") || strings.HasPrefix(n, "NOTICE")) {
				continue
			}
			out[DocDir+"/licenses/"+m.Path+"/"+e.Name()] = filepath.Join(m.Dir, e.Name())
		}
	}
	return out, nil
}

// WriteNotices copies Notices(mods) under dir as they would sit under
// DocDir (for the Dockerfile, which copies dir to DocDir).
func WriteNotices(mods []Module, dir string) error {
	files, err := Notices(mods)
	if err != nil {
		return err
	}
	for dst, src := range files {
		b, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		p := filepath.Join(dir, filepath.FromSlash(strings.TrimPrefix(dst, DocDir)))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
