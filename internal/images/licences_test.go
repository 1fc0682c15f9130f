package images_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/assistlog/assistlog/internal/images"
)

// TestLicences: every module linked into a shipped binary carries a
// licence file that the classifier recognises as an allowed open-source
// licence (none AGPL, SSPL, BUSL, GPL, nor unrecognised). The table is
// logged: it is the images' dependency licence list.
func TestLicences(t *testing.T) {
	mods, err := images.PackageModules(root, images.Programs())
	if err != nil {
		t.Fatal(err)
	}
	if len(mods) < 10 {
		t.Fatalf("only %d modules listed: the listing is broken", len(mods))
	}
	for _, m := range mods {
		l := images.Classify(m)
		t.Logf("%-50s %-36s %s (%.0f%% of %s)", m.Path, m.Version, strings.Join(l.IDs, "+"), l.Percent, filepath.Base(l.File))
		if l.Problem != "" {
			t.Errorf("%s %s: %s", m.Path, m.Version, l.Problem)
		}
	}
}

// TestClassifyRefuses: the classifier lets a permissive licence through
// and refuses a copyleft one, terms nobody classified, and no licence.
func TestClassifyRefuses(t *testing.T) {
	module := func(name, text string) images.Module {
		dir := filepath.Join(t.TempDir(), name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if text != "" {
			if err := os.WriteFile(filepath.Join(dir, "LICENSE"), []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return images.Module{Path: "example.com/" + name, Version: "v1.0.0", Dir: dir}
	}
	// Debian's base-files ships the licence texts.
	read := func(name string) string {
		b, err := os.ReadFile("/usr/share/common-licenses/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if l := images.Classify(module("apache", read("Apache-2.0"))); l.Problem != "" {
		t.Errorf("Apache-2.0 refused: %s", l.Problem)
	}
	for name, text := range map[string]string{
		"gpl3":        read("GPL-3"),
		"lgpl3":       read("LGPL-3"),
		"proprietary": "Copyright 2026 Somebody. All rights reserved. You may not copy, run or redistribute this software without a paid subscription.",
		"none":        "",
	} {
		if l := images.Classify(module(name, text)); l.Problem == "" {
			t.Errorf("%s allowed (matched %v, %.0f%%), want refused", name, l.IDs, l.Percent)
		}
	}
}
