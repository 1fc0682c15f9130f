package images_test

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/x509"
	"errors"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/assistlog/assistlog/internal/images"
	"github.com/assistlog/assistlog/internal/proctest"
)

const root = "../.."

// TestImages builds every image once (as `make images` does, into a
// temporary directory), then checks each: its configuration and labels,
// its files (exported with mutate.Extract) and the program running from
// them in a chroot as the image's user, printing the version the build
// stamped and checking the example configuration; and that the Dockerfile
// describes the same image.
func TestImages(t *testing.T) {
	absRoot, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	cfg := images.DefaultConfig(absRoot)
	cfg.Out = t.TempDir()
	cfg.Version, cfg.Commit = "v0.0.0-imagetest", "0123456789abcdef"
	built, err := images.Build(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(built) != len(images.Programs()) {
		t.Fatalf("built %d images, want %d", len(built), len(images.Programs()))
	}
	df, err := os.Open("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	stages, err := images.ParseDockerfile(df)
	df.Close()
	if err != nil {
		t.Fatal(err)
	}

	// The OCI layout holds every image under its name.
	lp, err := layout.FromPath(filepath.Join(cfg.Out, "oci"))
	if err != nil {
		t.Fatal(err)
	}
	idx, err := lp.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var refs []string
	for _, m := range im.Manifests {
		refs = append(refs, m.Annotations["org.opencontainers.image.ref.name"])
	}

	for _, b := range built {
		t.Run(b.Program.Name, func(t *testing.T) {
			t.Logf("%s: %.1f MB compressed (pulled), %.1f MB unpacked", b.Ref, float64(b.Compressed)/1e6, float64(b.Uncompressed)/1e6)
			if !slices.Contains(refs, b.Ref) {
				t.Errorf("OCI layout lacks %s (has %v)", b.Ref, refs)
			}
			// What was written reads back as a valid image (digests, sizes,
			// diff ids), from the tarball docker/podman load.
			loaded, err := tarball.ImageFromPath(b.Tarball, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := validate.Image(loaded); err != nil {
				t.Errorf("%s: %v", b.Tarball, err)
			}
			// The pull size: an image much over this is carrying something
			// it should not.
			if b.Compressed > 25e6 {
				t.Errorf("%s is %.1f MB compressed, over 25 MB", b.Ref, float64(b.Compressed)/1e6)
			}
			cf, err := b.Image.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			checkConfig(t, b, cf)
			dir := extract(t, b.Image)
			checkFiles(t, dir, b.Program.Name)
			runInImage(t, dir, b.Program.Name)
			stage := stages[b.Program.Name]
			if stage == nil {
				t.Fatalf("Dockerfile has no stage %q", b.Program.Name)
			}
			checkDockerfile(t, stage, cf, dir)
			checkNotices(t, b, dir)
		})
	}
}

func checkConfig(t *testing.T, b images.Built, cf *v1.ConfigFile) {
	t.Helper()
	c := cf.Config
	if c.User != "65532:65532" {
		t.Errorf("user %q, want 65532:65532 (non-root)", c.User)
	}
	if want := []string{"/usr/local/bin/" + b.Program.Name}; !slices.Equal(c.Entrypoint, want) {
		t.Errorf("entrypoint %v, want %v", c.Entrypoint, want)
	}
	for k, want := range map[string]string{
		"org.opencontainers.image.version":  "v0.0.0-imagetest",
		"org.opencontainers.image.revision": "0123456789abcdef",
		"org.opencontainers.image.source":   "https://github.com/assistlog/assistlog",
		"org.opencontainers.image.licenses": images.License,
	} {
		if c.Labels[k] != want {
			t.Errorf("label %s = %q, want %q", k, c.Labels[k], want)
		}
	}
	if _, err := time.Parse(time.RFC3339, c.Labels["org.opencontainers.image.created"]); err != nil {
		t.Errorf("label created: %v", err)
	}
	m, err := b.Image.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.Annotations["org.opencontainers.image.version"] != "v0.0.0-imagetest" {
		t.Errorf("manifest annotations %v lack the version", m.Annotations)
	}
}

// extract writes the image's flattened filesystem into a directory.
func extract(t *testing.T, img v1.Image) string {
	t.Helper()
	dir := t.TempDir()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.FromSlash(path.Clean("/"+h.Name)))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, os.FileMode(h.Mode)&os.ModePerm|modeBits(h.Mode)); err != nil {
				t.Fatal(err)
			}
			if err := os.Lchown(p, h.Uid, h.Gid); err != nil && os.Geteuid() == 0 {
				t.Fatal(err)
			}
		case tar.TypeSymlink:
			if err := os.Symlink(h.Linkname, p); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode)&os.ModePerm)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(f, tr); err != nil {
				t.Fatal(err)
			}
			f.Close()
		default:
			t.Fatalf("unexpected entry %s type %c", h.Name, h.Typeflag)
		}
	}
	return dir
}

func modeBits(m int64) os.FileMode {
	if m&0o1000 != 0 {
		return os.ModeSticky
	}
	return 0
}

// checkFiles: the CA bundle parses, the demo tenants' zone loads from the
// image's zoneinfo, the user exists in /etc/passwd, the binary is static.
func checkFiles(t *testing.T, dir, program string) {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(dir, "etc/ssl/certs/ca-certificates.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(pem) {
		t.Error("the image's CA bundle holds no certificate")
	}
	tz, err := os.ReadFile(filepath.Join(dir, "usr/share/zoneinfo/Asia/Yekaterinburg"))
	if err != nil {
		t.Fatal(err)
	}
	loc, err := time.LoadLocationFromTZData("Asia/Yekaterinburg", tz)
	if err != nil {
		t.Fatal(err)
	}
	if _, off := time.Date(2026, 11, 27, 12, 0, 0, 0, loc).Zone(); off != 5*3600 {
		t.Errorf("Asia/Yekaterinburg from the image: offset %d, want +5h", off)
	}
	if _, err := os.Stat(filepath.Join(dir, "usr/share/zoneinfo/Europe/Moscow")); err != nil {
		t.Errorf("zoneinfo alias: %v", err)
	}
	passwd, err := os.ReadFile(filepath.Join(dir, "etc/passwd"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(passwd), ":65532:65532:") {
		t.Errorf("/etc/passwd has no user 65532:\n%s", passwd)
	}
	out, err := exec.Command("go", "version", "-m", filepath.Join(dir, "usr/local/bin", program)).CombinedOutput()
	if err != nil {
		t.Fatalf("go version -m: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "CGO_ENABLED=0") {
		t.Errorf("%s not built with CGO_ENABLED=0:\n%s", program, out)
	}
}

// runInImage runs the program from the extracted image in a chroot as
// user 65532 (the test runs as root, as CI does here): `version`, then the
// example configuration checked the way the image would check it.
func runInImage(t *testing.T, dir, program string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("running from the image needs chroot, so root (CI and the dev machines run as root)")
	}
	example := map[string]string{
		"collector": "collector/collector.example.yaml",
		"shipper":   "shipper/shipper.example.yaml",
		"audit":     "audit/audit.example.yaml",
	}[program]
	var yaml []byte
	// The image's environment, plus the secrets the example names as
	// ${VAR}, as a deployment passes them: nothing else from this machine.
	env := []string{"PATH=/usr/local/bin", "HOME=/home/nonroot"}
	if example != "" {
		var err error
		if yaml, err = os.ReadFile(filepath.Join(root, example)); err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`\$\{([A-Z0-9_]+)\}`).FindAllStringSubmatch(string(yaml), -1) {
			v := "image-test-secret-0123456789abcdef0123456789"
			if strings.HasSuffix(m[1], "_URL") {
				v = "https://example.invalid/rest/1/0123456789abcdef/"
			}
			env = append(env, m[1]+"="+v)
		}
	}
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("chroot", append([]string{"--userspec=65532:65532", dir, "/usr/local/bin/" + program}, args...)...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v in the image: %v\n%s", program, args, err, out)
		}
		return string(out)
	}
	out := run("version")
	if !strings.Contains(out, "v0.0.0-imagetest") || !strings.Contains(out, "0123456789abcdef") {
		t.Errorf("%s version in the image: %q, want the stamped version and commit", program, out)
	}
	if example == "" { // the demo's Bitrix24 stand-in: serve once
		serveFake(t, dir)
		return
	}
	if err := os.WriteFile(filepath.Join(dir, "tmp", "config.yaml"), yaml, 0o644); err != nil {
		t.Fatal(err)
	}
	check := []string{"--config", "/tmp/config.yaml", "--check"}
	if program == "audit" {
		check = []string{"check", "--config", "/tmp/config.yaml"}
	}
	if out := run(check...); !strings.Contains(out, "configuration OK") {
		t.Errorf("%s %v in the image: %q", program, check, out)
	}
}

// serveFake starts bitrix24-fake from the image and waits for it to print
// its webhook URL (it serves HTTPS with a certificate it writes to /tmp).
func serveFake(t *testing.T, dir string) {
	t.Helper()
	addr := proctest.FreeAddr(t)
	cmd := exec.Command("chroot", "--userspec=65532:65532", dir, "/usr/local/bin/bitrix24-fake", "--listen", addr, "--cert-out", "/tmp/ca.pem")
	cmd.Env = []string{"PATH=/usr/local/bin", "HOME=/home/nonroot"}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.Contains(line, addr) {
		t.Fatalf("bitrix24-fake in the image printed %q (%v); stderr:\n%s", line, err, stderr.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "tmp", "ca.pem")); err != nil {
		t.Errorf("certificate not written as user 65532: %v", err)
	}
}

// checkDockerfile: the Dockerfile's stage for the program copies the same
// paths the image holds (nothing more, nothing less), and sets the same
// user, working directory, environment, entrypoint and label keys.
func checkDockerfile(t *testing.T, s *images.Stage, cf *v1.ConfigFile, dir string) {
	t.Helper()
	c := cf.Config
	if s.User != c.User || s.WorkDir != c.WorkingDir || !slices.Equal(s.Entrypoint, c.Entrypoint) {
		t.Errorf("Dockerfile stage %s: user %q workdir %q entrypoint %v; image: %q %q %v",
			s.Name, s.User, s.WorkDir, s.Entrypoint, c.User, c.WorkingDir, c.Entrypoint)
	}
	var env []string
	for k, v := range s.Env {
		env = append(env, k+"="+v)
	}
	slices.Sort(env)
	imgEnv := slices.Sorted(slices.Values(c.Env))
	if !slices.Equal(env, imgEnv) {
		t.Errorf("Dockerfile ENV %v, image %v", env, imgEnv)
	}
	var keys, imgKeys []string
	for k := range s.Labels {
		keys = append(keys, k)
	}
	for k := range c.Labels {
		imgKeys = append(imgKeys, k)
	}
	slices.Sort(keys)
	slices.Sort(imgKeys)
	if !slices.Equal(keys, imgKeys) {
		t.Errorf("Dockerfile labels %v, image labels %v", keys, imgKeys)
	}
	for _, k := range []string{"org.opencontainers.image.source", "org.opencontainers.image.licenses"} {
		if s.Labels[k] != c.Labels[k] {
			t.Errorf("label %s: Dockerfile %q, image %q", k, s.Labels[k], c.Labels[k])
		}
	}

	// The paths the Dockerfile puts in the image: each COPY's destination,
	// and for a COPY of a directory of this repository, the files in it.
	var dests []string
	for _, cp := range s.Copies {
		if cp.From == "" && strings.HasSuffix(cp.Sources[0], "/") {
			src := filepath.Join(root, cp.Sources[0])
			err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				rel, _ := filepath.Rel(src, p)
				dests = append(dests, path.Join(cp.Dest, filepath.ToSlash(rel)))
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			continue
		}
		dests = append(dests, path.Clean(cp.Dest))
	}
	for _, d := range dests {
		if _, err := os.Lstat(filepath.Join(dir, d)); err != nil {
			t.Errorf("Dockerfile copies %s, the image has no such path", d)
		}
	}
	// Everything in the image is a destination, inside one, or a parent
	// directory of one.
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		ip := "/" + filepath.ToSlash(rel)
		for _, dst := range dests {
			if ip == dst || strings.HasPrefix(ip, dst+"/") || strings.HasPrefix(dst, ip+"/") {
				if ip == dst || strings.HasPrefix(ip, dst+"/") {
					return nil
				}
				if d.IsDir() {
					return nil
				}
			}
		}
		if strings.HasPrefix(ip, "/tmp/") { // written by this test's runs
			return nil
		}
		t.Errorf("the image holds %s, which the Dockerfile does not copy", ip)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// checkNotices: the image holds the licence text of every module its
// binary links, and of Go; and the files are exactly what the notices
// command (which the Dockerfile runs) writes for the same binary.
func checkNotices(t *testing.T, b images.Built, dir string) {
	t.Helper()
	mods, err := images.BinaryModules(b.Binary)
	if err != nil {
		t.Fatal(err)
	}
	doc := filepath.Join(dir, images.DocDir)
	for _, m := range append(mods, images.Module{Path: "go"}) {
		entries, err := os.ReadDir(filepath.Join(doc, "licenses", m.Path))
		if err != nil || len(entries) == 0 {
			t.Errorf("no licence text for %s in the image: %v", m.Path, err)
		}
	}
	want := t.TempDir()
	if err := images.WriteNotices(mods, want); err != nil {
		t.Fatal(err)
	}
	if a, b := treeOf(t, want), treeOf(t, doc); !slices.Equal(a, b) {
		t.Errorf("the notices command writes %d files, the image holds %d under %s", len(a), len(b), images.DocDir)
	}
}

func treeOf(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		files = append(files, rel+" "+strconv.Itoa(len(b)))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestReproducible: the same commit builds the same image, digest and all
// (files dated by the commit, not by the clock).
func TestReproducible(t *testing.T) {
	absRoot, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	var digests []v1.Hash
	for range 2 {
		cfg := images.DefaultConfig(absRoot)
		cfg.Out = t.TempDir()
		cfg.Version, cfg.Commit = "v0.0.0-reproducible", "0123456789abcdef"
		cfg.Programs = []images.Program{images.Programs()[3]} // the smallest
		built, err := images.Build(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		d, err := built[0].Image.Digest()
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, d)
		time.Sleep(1100 * time.Millisecond) // a clock-dated build would now differ
	}
	if digests[0] != digests[1] {
		t.Errorf("two builds of one commit: %s and %s", digests[0], digests[1])
	}
}
