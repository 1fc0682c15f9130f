// Command images builds assistlog's container images without a Docker
// daemon (`make images`): see internal/images.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/assistlog/assistlog/internal/images"
)

const usage = `images — build assistlog's container images without a Docker daemon.

Usage:
  go run ./internal/images/cmd/images [--out build/images] [--version V] [--arch amd64] [collector shipper ...]

Writes an OCI image layout (OUT/oci: skopeo copy oci:OUT/oci:assistlog/collector:V ...,
crane push, or podman pull oci:...) and one tarball per program (OUT/NAME.tar: docker
load / podman load -i). Programs: collector, shipper, audit, bitrix24-fake (the demo's
Bitrix24 stand-in). Each binary's modules must carry an allowed licence.

  go run ./internal/images/cmd/images notices --bin DIR --out DIR
    writes the licence texts of what each binary in --bin links into --out/NAME
    (what the images hold under /usr/share/doc/assistlog; the Dockerfile uses it).

Flags:
`

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "images:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) > 0 && args[0] == "notices" {
		return notices(args[1:])
	}
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	cfg := images.DefaultConfig(root)
	fs := flag.NewFlagSet("images", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, usage); fs.PrintDefaults() }
	fs.StringVar(&cfg.Out, "out", filepath.Join("build", "images"), "output directory")
	fs.StringVar(&cfg.Version, "version", "", "version (tag, labels, `PROGRAM version`); default: git describe")
	fs.StringVar(&cfg.Commit, "commit", "", "commit; default: git rev-parse HEAD")
	fs.StringVar(&cfg.Arch, "arch", "", "GOARCH of the images; default: this machine's")
	fs.StringVar(&cfg.CACerts, "ca-certificates", cfg.CACerts, "the CA bundle to put in the images")
	fs.StringVar(&cfg.ZoneInfo, "zoneinfo", cfg.ZoneInfo, "the zoneinfo directory to put in the images")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		byName := map[string]images.Program{}
		for _, p := range images.Programs() {
			byName[p.Name] = p
		}
		cfg.Programs = []images.Program{}
		for _, n := range fs.Args() {
			p, ok := byName[n]
			if !ok {
				return fmt.Errorf("unknown program %q (have collector, shipper, audit, bitrix24-fake)", n)
			}
			cfg.Programs = append(cfg.Programs, p)
		}
	}
	if !filepath.IsAbs(cfg.Out) {
		cfg.Out = filepath.Join(root, cfg.Out)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return fmt.Errorf("run from the repository root: %w", err)
	}
	cfg.Log = os.Stderr
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	_, err = images.Build(ctx, cfg)
	return err
}

// notices writes each built program's licence texts, for the Dockerfile.
func notices(args []string) error {
	fs := flag.NewFlagSet("images notices", flag.ContinueOnError)
	bin := fs.String("bin", "", "directory holding the built programs (required)")
	out := fs.String("out", "", "write NAME/licenses/... here (required)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *bin == "" || *out == "" {
		return fmt.Errorf("notices: --bin and --out are required")
	}
	for _, p := range images.Programs() {
		mods, err := images.BinaryModules(filepath.Join(*bin, p.Name))
		if err != nil {
			return err
		}
		if bad := images.CheckLicences(mods); len(bad) > 0 {
			return fmt.Errorf("%s links modules without an allowed licence:\n  %s", p.Name, strings.Join(bad, "\n  "))
		}
		if err := images.WriteNotices(mods, filepath.Join(*out, p.Name)); err != nil {
			return err
		}
	}
	return nil
}
