// Package images builds assistlog's container images without a Docker
// daemon: static binaries (CGO_ENABLED=0) on an empty base with the build
// machine's CA certificates and time-zone data, a non-root user, and the
// OCI labels, written as an OCI image layout and one `docker load`-able
// tarball per program. internal/images/Dockerfile builds the same images
// for people who use Docker; a test keeps the two equivalent.
package images

import (
	"archive/tar"
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Program is one image: its name and the main package it is built from.
type Program struct {
	Name, Package string
}

// Programs are the images assistlog ships; bitrix24-fake is the demo's
// Bitrix24 stand-in, for the compose demo profile only.
func Programs() []Program {
	return []Program{
		{"collector", "./collector"},
		{"shipper", "./shipper"},
		{"audit", "./audit"},
		{"bitrix24-fake", "./demo/cmd/bitrix24-fake"},
	}
}

// What every image holds; the Dockerfile's final stages copy the same
// paths (the equivalence test compares them).
const (
	User       = "65532:65532" // nonroot in rootfs/etc/passwd, as in distroless
	Home       = "/home/nonroot"
	BinDir     = "/usr/local/bin"
	CACerts    = "/etc/ssl/certs/ca-certificates.crt" // where Go's crypto/x509 looks first on Linux
	ZoneInfo   = "/usr/share/zoneinfo"                // where Go's time looks first
	ImageRepo  = "assistlog/"                         // tags are assistlog/NAME:VERSION
	sourceRepo = "https://github.com/assistlog/assistlog"
	// License is assistlog's own licence as an SPDX expression. The
	// repository has no LICENSE file yet, so the label asserts none;
	// set it here (and in the Dockerfile) once the owner chooses one.
	License = "NOASSERTION"
)

// rootfs holds the files written into every image as they are (the
// Dockerfile copies the same directory).
//
//go:embed rootfs
var rootfs embed.FS

// Config says what to build and from where.
type Config struct {
	Root     string // the repository root
	Out      string // output directory: oci/ (an OCI image layout) and NAME.tar
	Version  string // image tag and `version` output; "" = from git, else "devel"
	Commit   string // "" = from git, else "unknown"
	Arch     string // GOARCH; "" = this machine's
	CACerts  string // the build machine's CA bundle (Debian's ca-certificates)
	ZoneInfo string // the build machine's zoneinfo directory (Debian's tzdata)
	// Created dates the image and every file in it; zero = the commit's
	// time (SOURCE_DATE_EPOCH when set), so one commit builds the same
	// image, digest and all, wherever it is built.
	Created  time.Time
	Programs []Program // nil = all
	Log      io.Writer // progress; nil = discarded
}

// DefaultConfig builds every program from root into root/build/images.
func DefaultConfig(root string) Config {
	return Config{Root: root, Out: filepath.Join(root, "build", "images"), CACerts: "/etc/ssl/certs/ca-certificates.crt",
		ZoneInfo: "/usr/share/zoneinfo"}
}

// Built is one image written.
type Built struct {
	Program Program
	Image   v1.Image
	Ref     string // assistlog/NAME:VERSION
	Tarball string // NAME.tar, for `docker load` / `podman load`
	Binary  string // the static binary as built, for its build info
	// Sizes in bytes: the layers as pulled (compressed) and as unpacked.
	Compressed, Uncompressed int64
}

func (c *Config) fill(ctx context.Context) error {
	if c.Root == "" {
		return errors.New("images: Root is required")
	}
	if c.Out == "" {
		return errors.New("images: Out is required")
	}
	if c.Arch == "" {
		c.Arch = runtime.GOARCH
	}
	if c.Created.IsZero() {
		epoch := os.Getenv("SOURCE_DATE_EPOCH")
		if epoch == "" {
			epoch = git(ctx, c.Root, "log", "-1", "--format=%ct")
		}
		if secs, err := strconv.ParseInt(epoch, 10, 64); err == nil {
			c.Created = time.Unix(secs, 0).UTC()
		} else {
			c.Created = time.Now().UTC().Truncate(time.Second)
		}
	}
	if c.Programs == nil {
		c.Programs = Programs()
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	if c.Version == "" {
		c.Version = git(ctx, c.Root, "describe", "--tags", "--always", "--dirty")
		if c.Version == "" {
			c.Version = "devel"
		}
	}
	if c.Commit == "" {
		if c.Commit = git(ctx, c.Root, "rev-parse", "HEAD"); c.Commit == "" {
			c.Commit = "unknown"
		}
	}
	if _, err := os.Stat(c.CACerts); err != nil {
		return fmt.Errorf("CA certificates: %w (install Debian's ca-certificates)", err)
	}
	if _, err := os.Stat(filepath.Join(c.ZoneInfo, "Asia", "Yekaterinburg")); err != nil {
		return fmt.Errorf("time-zone data: %w (install Debian's tzdata)", err)
	}
	return nil
}

func git(ctx context.Context, dir string, args ...string) string {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// Build compiles each program, refuses any whose modules are not under an
// allowed licence, and writes the images into cfg.Out.
func Build(ctx context.Context, cfg Config) ([]Built, error) {
	if err := cfg.fill(ctx); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return nil, fmt.Errorf("images: output: %w", err)
	}
	binDir, err := os.MkdirTemp("", "assistlog-images-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(binDir)

	base, err := baseLayer(cfg)
	if err != nil {
		return nil, err
	}
	ociDir := filepath.Join(cfg.Out, "oci")
	if err := os.RemoveAll(ociDir); err != nil {
		return nil, err
	}
	lp, err := layout.Write(ociDir, empty.Index)
	if err != nil {
		return nil, fmt.Errorf("images: OCI layout: %w", err)
	}
	var out []Built
	for _, p := range cfg.Programs {
		fmt.Fprintf(cfg.Log, "build %s (%s)\n", p.Name, p.Package)
		bin := filepath.Join(binDir, p.Name)
		if err := compile(ctx, cfg, p, bin); err != nil {
			return nil, err
		}
		mods, err := BinaryModules(bin)
		if err != nil {
			return nil, err
		}
		if bad := CheckLicences(mods); len(bad) > 0 {
			return nil, fmt.Errorf("images: %s links modules without an allowed licence:\n  %s", p.Name, strings.Join(bad, "\n  "))
		}
		notices, err := Notices(mods)
		if err != nil {
			return nil, err
		}
		b, err := image(cfg, p, bin, base, notices)
		if err != nil {
			return nil, err
		}
		if err := lp.AppendImage(b.Image, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": b.Ref})); err != nil {
			return nil, fmt.Errorf("images: %s: OCI layout: %w", p.Name, err)
		}
		tag, err := name.NewTag(b.Ref)
		if err != nil {
			return nil, err
		}
		b.Tarball = filepath.Join(cfg.Out, p.Name+".tar")
		if err := tarball.WriteToFile(b.Tarball, tag, b.Image); err != nil {
			return nil, fmt.Errorf("images: %s: tarball: %w", p.Name, err)
		}
		// Keep the binary beside the images: tests read its build info.
		b.Binary = filepath.Join(cfg.Out, "bin", p.Name)
		if err := os.MkdirAll(filepath.Dir(b.Binary), 0o755); err != nil {
			return nil, err
		}
		if err := os.Rename(bin, b.Binary); err != nil {
			return nil, err
		}
		fmt.Fprintf(cfg.Log, "  %s: %.1f MB compressed, %.1f MB unpacked → %s\n", b.Ref,
			float64(b.Compressed)/1e6, float64(b.Uncompressed)/1e6, b.Tarball)
		out = append(out, b)
	}
	fmt.Fprintf(cfg.Log, "OCI layout: %s\n", ociDir)
	return out, nil
}

// LDFlags are the linker flags of a release binary: stripped, with the
// version and commit `PROGRAM version` prints.
func LDFlags(version, commit string) string {
	const pkg = "github.com/assistlog/assistlog/internal/program"
	return fmt.Sprintf("-s -w -X %s.version=%s -X %s.commit=%s", pkg, version, pkg, commit)
}

func compile(ctx context.Context, cfg Config, p Program, bin string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", LDFlags(cfg.Version, cfg.Commit), "-o", bin, p.Package)
	cmd.Dir = cfg.Root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+cfg.Arch)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("images: go build %s: %w\n%s", p.Package, err, out)
	}
	return nil
}

// image is the base layer plus the program's binary, with its config.
func image(cfg Config, p Program, bin string, base v1.Layer, notices map[string]string) (Built, error) {
	binLayer, err := layerOf(cfg.Created, func(tw *tarWriter) error {
		tw.dir("/usr", 0o755, 0)
		tw.dir("/usr/local", 0o755, 0)
		tw.dir(BinDir, 0o755, 0)
		if err := tw.file(path.Join(BinDir, p.Name), bin, 0o755, 0); err != nil {
			return err
		}
		dsts := slices.Sorted(maps.Keys(notices))
		for _, dst := range dsts {
			var parents []string
			for d := path.Dir(dst); d != "/"; d = path.Dir(d) {
				parents = append(parents, d)
			}
			for i := len(parents) - 1; i >= 0; i-- {
				tw.dir(parents[i], 0o755, 0)
			}
			if err := tw.file(dst, notices[dst], 0o644, 0); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return Built{}, err
	}
	img, err := mutate.AppendLayers(empty.Image, base, binLayer)
	if err != nil {
		return Built{}, err
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return Built{}, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", cfg.Arch
	cf.Created = v1.Time{Time: cfg.Created}
	labels := Labels(p, cfg.Version, cfg.Commit, cfg.Created)
	cf.Config = v1.Config{
		User:       User,
		WorkingDir: Home,
		Entrypoint: []string{path.Join(BinDir, p.Name)},
		Env:        []string{"PATH=" + BinDir, "HOME=" + Home},
		Labels:     labels,
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return Built{}, err
	}
	img, ok := mutate.Annotations(img, labels).(v1.Image)
	if !ok {
		return Built{}, errors.New("images: annotating the manifest did not return an image")
	}
	b := Built{Program: p, Image: img, Ref: ImageRepo + p.Name + ":" + tagOf(cfg.Version)}
	layers, err := img.Layers()
	if err != nil {
		return Built{}, err
	}
	for _, l := range layers {
		n, err := l.Size()
		if err != nil {
			return Built{}, err
		}
		b.Compressed += n
		u, err := uncompressedSize(l)
		if err != nil {
			return Built{}, err
		}
		b.Uncompressed += u
	}
	return b, nil
}

// tagOf makes a git describe output a valid tag (no '+', at most 128).
func tagOf(v string) string {
	v = strings.Map(func(r rune) rune {
		if r == '.' || r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			return r
		}
		return '-'
	}, v)
	return v[:min(len(v), 128)]
}

// Labels are the OCI annotations, set both as image config labels (what
// `docker inspect` shows) and as manifest annotations (what registries
// show). The licence is assistlog's own (License); its dependencies' licences are
// checked by CheckLicences before an image is written.
func Labels(p Program, version, commit string, created time.Time) map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":       "assistlog " + p.Name,
		"org.opencontainers.image.version":     version,
		"org.opencontainers.image.revision":    commit,
		"org.opencontainers.image.created":     created.UTC().Format(time.RFC3339),
		"org.opencontainers.image.source":      sourceRepo,
		"org.opencontainers.image.licenses":    License,
		"org.opencontainers.image.description": "assistlog " + p.Name + ": static binary on an empty base, CA certificates, time-zone data, user 65532",
	}
}

func uncompressedSize(l v1.Layer) (int64, error) {
	rc, err := l.Uncompressed()
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	return io.Copy(io.Discard, rc)
}

// baseLayer holds what every image shares: rootfs/ (passwd, group), the
// CA bundle, the zoneinfo tree, and the home and /tmp directories.
func baseLayer(cfg Config) (v1.Layer, error) {
	return layerOf(cfg.Created, func(tw *tarWriter) error {
		err := fs.WalkDir(rootfs, "rootfs", func(p string, d fs.DirEntry, err error) error {
			if err != nil || p == "rootfs" {
				return err
			}
			dst := strings.TrimPrefix(p, "rootfs")
			if d.IsDir() {
				tw.dir(dst, 0o755, 0)
				return nil
			}
			b, err := rootfs.ReadFile(p)
			if err != nil {
				return err
			}
			tw.bytes(dst, b, 0o644, 0)
			return nil
		})
		if err != nil {
			return err
		}
		tw.dir("/etc/ssl", 0o755, 0)
		tw.dir("/etc/ssl/certs", 0o755, 0)
		if err := tw.file(CACerts, cfg.CACerts, 0o644, 0); err != nil {
			return err
		}
		tw.dir("/usr", 0o755, 0)
		tw.dir("/usr/share", 0o755, 0)
		if err := tw.tree(ZoneInfo, cfg.ZoneInfo); err != nil {
			return err
		}
		tw.dir("/home", 0o755, 0)
		tw.dir(Home, 0o700, 65532)
		tw.dir("/tmp", 0o1777, 0)
		return nil
	})
}

// layerOf writes a layer's tar in memory (a few MB) with every file
// dated mtime.
func layerOf(mtime time.Time, fill func(*tarWriter) error) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := &tarWriter{w: tar.NewWriter(&buf), mtime: mtime, seen: map[string]bool{}}
	if err := fill(tw); err != nil {
		return nil, err
	}
	if tw.err != nil {
		return nil, tw.err
	}
	if err := tw.w.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer))
}

// tarWriter writes image paths (absolute, stored without the leading
// slash) once each, keeping the first error.
type tarWriter struct {
	w     *tar.Writer
	mtime time.Time
	seen  map[string]bool
	err   error
}

func (t *tarWriter) header(h *tar.Header) bool {
	if t.err != nil || t.seen[h.Name] {
		return false
	}
	t.seen[h.Name] = true
	h.ModTime, h.Format = t.mtime, tar.FormatPAX
	h.Gid = h.Uid
	t.err = t.w.WriteHeader(h)
	return t.err == nil
}

func (t *tarWriter) dir(p string, mode int64, uid int) {
	t.header(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(p, "/") + "/", Mode: mode, Uid: uid})
}

func (t *tarWriter) bytes(p string, b []byte, mode int64, uid int) {
	if t.header(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(p, "/"), Mode: mode, Uid: uid, Size: int64(len(b))}) {
		_, t.err = t.w.Write(b)
	}
}

func (t *tarWriter) file(p, src string, mode int64, uid int) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("images: %s: %w", p, err)
	}
	t.bytes(p, b, mode, uid)
	return t.err
}

// tree copies a directory, keeping symbolic links as links (zoneinfo's
// aliases are relative links).
func (t *tarWriter) tree(dst, src string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := path.Join(dst, filepath.ToSlash(rel))
		switch {
		case d.IsDir():
			t.dir(target, 0o755, 0)
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			t.header(&tar.Header{Typeflag: tar.TypeSymlink, Name: strings.TrimPrefix(target, "/"), Linkname: link, Mode: 0o777})
		case d.Type().IsRegular():
			return t.file(target, p, 0o644, 0)
		}
		return t.err
	})
}
