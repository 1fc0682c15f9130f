package stack

import (
	"archive/zip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// installer fetches and builds components into the cache. Every step writes
// to a temporary name and renames when complete, so an interrupted install
// is redone rather than half-used.
type installer struct {
	layout Layout
	log    func(format string, args ...any)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// run executes a command, sending its output to logPath; on failure the
// error carries the log's tail so the reason is on screen.
func (in installer) run(ctx context.Context, logPath, dir string, env []string, name string, args ...string) error {
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return err
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "\n$ %s %s\n", name, strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w (log %s):\n%s", name, strings.Join(args, " "), err, logPath, tailFile(logPath, 15))
	}
	return nil
}

// goInstall builds Go commands at a pinned module version into binDir.
func (in installer) goInstall(ctx context.Context, binDir string, pkgs ...string) error {
	tmp := binDir + ".partial"
	_ = os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	logPath := filepath.Join(in.layout.CacheDir, "logs", "install-"+filepath.Base(binDir)+".log")
	// GOFLAGS from the caller (e.g. -mod=vendor) must not leak into a
	// module-mode install of someone else's module.
	env := []string{"GOBIN=" + tmp, "GOFLAGS=-buildvcs=false", "GOWORK=off", "CGO_ENABLED=0"}
	if err := in.run(ctx, logPath, os.TempDir(), env, "go", append([]string{"install"}, pkgs...)...); err != nil {
		return err
	}
	_ = os.RemoveAll(binDir)
	return os.Rename(tmp, binDir)
}

// mavenCopy resolves artifacts from Maven Central with the machine's mvn.
// goal is dependency:copy-dependencies for a pom, or dependency:copy for one
// artifact.
func (in installer) maven(ctx context.Context, workDir, logName string, args ...string) error {
	logPath := filepath.Join(in.layout.CacheDir, "logs", logName)
	return in.run(ctx, logPath, workDir, nil, "mvn", append([]string{"-B", "-q"}, args...)...)
}

// goModDir downloads a module into the module cache and returns its directory.
func (in installer) goModDir(ctx context.Context, mod string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", mod)
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off")
	cmd.Dir = os.TempDir()
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		return "", fmt.Errorf("go mod download %s: %w: %s%s", mod, err, out, stderr)
	}
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(out, &info); err != nil {
		return "", fmt.Errorf("go mod download %s: decode: %w", mod, err)
	}
	if info.Error != "" || info.Dir == "" {
		return "", fmt.Errorf("go mod download %s: %s", mod, info.Error)
	}
	return info.Dir, nil
}

// copyTree copies a directory (module cache copies are read-only, so the
// copy is made writable).
func copyTree(src, dst string) error {
	return filepath.Walk(src, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if fi.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		return copyFile(path, target, fi.Mode().Perm()|0o200)
	})
}

func copyFile(src, dst string, perm os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// mavenZip downloads a zip artifact (group:artifact:version:zip) from
// Maven Central to the cache path zip, once: through a partial directory,
// so an interrupted download is never taken for a finished one.
func (in installer) mavenZip(ctx context.Context, name, artifact, zip string) error {
	if exists(zip) {
		return nil
	}
	tmp := filepath.Join(in.layout.CacheDir, name+"-download.partial")
	_ = os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	in.log("%s: downloading %s from Maven Central", name, artifact)
	if err := in.maven(ctx, tmp, "install-"+name+".log", "dependency:copy", "-Dartifact="+artifact, "-DoutputDirectory="+tmp); err != nil {
		return err
	}
	parts := strings.Split(artifact, ":") // group:artifact:version:zip
	if err := os.Rename(filepath.Join(tmp, parts[1]+"-"+parts[2]+".zip"), zip); err != nil {
		return err
	}
	return os.RemoveAll(tmp)
}

// unpackHome extracts zip into dir/home unless that already holds version,
// and makes dir's data, logs and tmp folders. It is per stack directory,
// not in the cache: the cache sits in root's home, which the unprivileged
// user the servers run as cannot read.
func unpackHome(zip, dir, version string) (home string, err error) {
	home = filepath.Join(dir, "home")
	marker := filepath.Join(home, ".assistlog-version")
	if b, _ := os.ReadFile(marker); string(b) != version {
		_ = os.RemoveAll(home)
		if err := unzip(zip, home); err != nil {
			return "", err
		}
		if err := os.WriteFile(marker, []byte(version), 0o644); err != nil {
			return "", err
		}
	}
	for _, d := range []string{"data", "logs", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return "", err
		}
	}
	return home, nil
}

// unzip extracts archive into dst, dropping the archive's single top folder.
func unzip(archive, dst string) error {
	r, err := zip.OpenReader(archive)
	if err != nil {
		return fmt.Errorf("open %s: %w", archive, err)
	}
	defer r.Close()
	for _, f := range r.File {
		name := f.Name
		if i := strings.IndexByte(name, '/'); i >= 0 {
			name = name[i+1:]
		}
		if name == "" {
			continue
		}
		target := filepath.Join(dst, name)
		if !strings.HasPrefix(target, filepath.Clean(dst)+string(os.PathSeparator)) {
			return fmt.Errorf("unzip %s: entry %q escapes the target", archive, f.Name)
		}
		if f.FileInfo().IsDir() {
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		mode := f.Mode().Perm()
		if mode == 0 {
			mode = 0o644
		}
		rc, err := f.Open()
		if err != nil {
			return err
		}
		out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
		if err != nil {
			rc.Close()
			return err
		}
		_, err = io.Copy(out, rc)
		rc.Close()
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("unzip %s: %w", f.Name, err)
		}
	}
	return nil
}

// javaBinary finds a Java 17+ runtime: ASSISTLOG_JAVA_HOME, JAVA_HOME, or
// java on PATH (symlinks resolved so its home can be derived).
func javaBinary() string {
	for _, env := range []string{"ASSISTLOG_JAVA_HOME", "JAVA_HOME"} {
		if h := os.Getenv(env); h != "" && exists(filepath.Join(h, "bin", "java")) {
			return filepath.Join(h, "bin", "java")
		}
	}
	p, err := exec.LookPath("java")
	if err != nil {
		return "java"
	}
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return p
}

// javaHome is the directory above bin/java.
func javaHome() string {
	return filepath.Dir(filepath.Dir(javaBinary()))
}
