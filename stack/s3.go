package stack

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// The S3-compatible server is Versity's gateway (Apache-2.0) over a POSIX
// directory: a real S3 API (SigV4, multipart, ListObjectsV2) for the
// archive, built from the Go module proxy. Not MinIO, whose server is AGPL.
const (
	// VersityGW is the pinned module version of github.com/versity/versitygw.
	VersityGW = "v1.8.0"
	// S3Port is where the server listens on 127.0.0.1.
	S3Port = 19900
	// The stack's root account and the bucket `up` creates. Local-only
	// credentials: the server listens on 127.0.0.1.
	S3AccessKey = "assistlog"
	S3SecretKey = "assistlog-local-secret"
	S3Bucket    = "assistlog-archive"
	S3Region    = "us-east-1"
)

// S3Endpoints are the S3 server's client settings.
type S3Endpoints struct {
	URL, AccessKey, SecretKey, Bucket, Region string
	// Python runs internal/archive/read_archive.py (pyarrow + DuckDB).
	Python string
}

// S3 returns the S3 server's client settings for the layout.
func (l Layout) S3() S3Endpoints {
	return S3Endpoints{URL: "http://127.0.0.1:" + strconv.Itoa(S3Port), AccessKey: S3AccessKey,
		SecretKey: S3SecretKey, Bucket: S3Bucket, Region: S3Region, Python: l.ArchivePython()}
}

// s3Env lists the S3 settings as `stack env` variables.
func (e S3Endpoints) env() [][2]string {
	return [][2]string{{"ASSISTLOG_S3_URL", e.URL}, {"ASSISTLOG_S3_ACCESS_KEY", e.AccessKey},
		{"ASSISTLOG_S3_SECRET_KEY", e.SecretKey}, {"ASSISTLOG_S3_BUCKET", e.Bucket}, {"ASSISTLOG_S3_REGION", e.Region},
		{"ASSISTLOG_ARCHIVE_PYTHON", e.Python}}
}

// fromEnv overrides the settings with what `stack env` wrote.
func (e *S3Endpoints) fromEnv() {
	for name, p := range map[string]*string{"ASSISTLOG_S3_URL": &e.URL, "ASSISTLOG_S3_ACCESS_KEY": &e.AccessKey,
		"ASSISTLOG_S3_SECRET_KEY": &e.SecretKey, "ASSISTLOG_S3_BUCKET": &e.Bucket, "ASSISTLOG_S3_REGION": &e.Region, "ASSISTLOG_ARCHIVE_PYTHON": &e.Python} {
		if v := os.Getenv(name); v != "" {
			*p = v
		}
	}
}

// ArchiveReaderPackages are the PyPI packages of the independent archive
// reader (pyarrow reads Parquet through the S3 API, DuckDB runs the SQL):
// the tests and the demo prove the archive with a reader that shares no
// code with the writer.
var ArchiveReaderPackages = []string{"duckdb==2.0.1", "pyarrow==26.0.1"}

// ArchivePython is the Python interpreter of the archive reader's venv.
func (l Layout) ArchivePython() string {
	return filepath.Join(l.CacheDir, "venv-archive", "bin", "python")
}

// installArchiveReader makes a venv in the cache with the reader's
// packages from PyPI, once.
func installArchiveReader(ctx context.Context, in installer) error {
	venv := filepath.Dir(filepath.Dir(in.layout.ArchivePython()))
	// A venv's scripts name its path, so it is built in place and marked
	// complete last; an interrupted install is redone.
	done := filepath.Join(venv, "assistlog-installed")
	if exists(done) {
		return nil
	}
	in.log("s3: installing the archive reader (%v) from PyPI into %s", ArchiveReaderPackages, venv)
	_ = os.RemoveAll(venv)
	logPath := filepath.Join(in.layout.CacheDir, "logs", "install-venv-archive.log")
	if err := in.run(ctx, logPath, os.TempDir(), nil, "python3", "-m", "venv", venv); err != nil {
		return fmt.Errorf("%w (on Debian: apt-get install python3-venv)", err)
	}
	if err := in.run(ctx, logPath, os.TempDir(), nil, in.layout.ArchivePython(),
		append([]string{"-m", "pip", "install", "--quiet", "--disable-pip-version-check"}, ArchiveReaderPackages...)...); err != nil {
		return err
	}
	return os.WriteFile(done, nil, 0o644)
}

func (l Layout) versitygwBin() string {
	return filepath.Join(l.CacheDir, "bin", "versitygw-"+VersityGW)
}

func s3Component() *component {
	return &component{
		name:         "s3",
		version:      "versitygw " + VersityGW,
		readyTimeout: 60 * time.Second,
		stopGrace:    10 * time.Second,
		endpoint:     func(l Layout) string { return l.S3().URL },
		install: func(ctx context.Context, in installer) error {
			if err := installArchiveReader(ctx, in); err != nil {
				return err
			}
			bin := in.layout.versitygwBin()
			if exists(filepath.Join(bin, "versitygw")) {
				return nil
			}
			in.log("s3: building versitygw %s from the Go module proxy (about 2 minutes cold)", VersityGW)
			return in.goInstall(ctx, bin, "github.com/versity/versitygw/cmd/versitygw@"+VersityGW)
		},
		prepare: func(ctx context.Context, s *Stack) error {
			return os.MkdirAll(filepath.Join(s.layout.componentDir("s3"), "data"), 0o755)
		},
		command: func(s *Stack) (*exec.Cmd, error) {
			dir := s.layout.componentDir("s3")
			cmd := exec.Command(filepath.Join(s.layout.versitygwBin(), "versitygw"),
				"--access", S3AccessKey, "--secret", S3SecretKey,
				"--port", "127.0.0.1:"+strconv.Itoa(S3Port), "--health", "/health",
				"posix", filepath.Join(dir, "data"))
			cmd.Dir = dir
			return cmd, nil
		},
		ready: func(ctx context.Context, s *Stack) error {
			return httpReady(ctx, s.layout.S3().URL+"/health")
		},
		afterReady: func(ctx context.Context, s *Stack) error {
			return ensureBucket(ctx, s.layout.S3())
		},
	}
}

// ensureBucket creates the archive's bucket through the S3 API (so the
// gateway records its owner), once.
func ensureBucket(ctx context.Context, e S3Endpoints) error {
	u, err := url.Parse(e.URL)
	if err != nil {
		return err
	}
	c, err := minio.New(u.Host, &minio.Options{Creds: credentials.NewStaticV4(e.AccessKey, e.SecretKey, ""),
		Region: e.Region, BucketLookup: minio.BucketLookupPath})
	if err != nil {
		return err
	}
	ok, err := c.BucketExists(ctx, e.Bucket)
	if err != nil {
		return fmt.Errorf("check bucket %s: %w", e.Bucket, err)
	}
	if ok {
		return nil
	}
	if err := c.MakeBucket(ctx, e.Bucket, minio.MakeBucketOptions{Region: e.Region}); err != nil {
		return fmt.Errorf("create bucket %s: %w", e.Bucket, err)
	}
	return nil
}
