package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/assistlog/assistlog/internal/errpolicy"
)

// Destination is the error policy's name for the object store.
const Destination = "s3"

// StoreConfig says where the archive is (the `archive.s3` section).
type StoreConfig struct {
	// Endpoint is the S3 API's URL: https://s3.eu-central-1.amazonaws.com,
	// https://storage.yandexcloud.net, or http://127.0.0.1:19900 for the
	// stack's server.
	Endpoint string `yaml:"endpoint"`
	Region   string `yaml:"region"`
	Bucket   string `yaml:"bucket"`
	// Prefix is the key prefix before tenant=…/dt=… (may be empty).
	Prefix string `yaml:"prefix"`
	// AccessKey and SecretKey, best written as ${ENV_VAR}. Both empty: the
	// usual chain is asked — AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, then
	// the shared credentials file (~/.aws/credentials, AWS_PROFILE), then
	// the instance's IAM role.
	AccessKey string `yaml:"access_key"`
	SecretKey string `yaml:"secret_key"`
	// PathStyle addresses endpoint/bucket/key rather than bucket.endpoint/key,
	// which most S3-compatible servers need.
	PathStyle bool `yaml:"path_style"`
	// PartSize is the multipart upload's part size (at least 5 MiB);
	// smaller objects go in one PUT.
	PartSize uint64 `yaml:"part_size"`
}

// DefaultStoreConfig is what an empty section means.
func DefaultStoreConfig() StoreConfig {
	return StoreConfig{Region: "us-east-1", Prefix: "events", PartSize: 16 << 20}
}

// Validate names the field at fault.
func (c StoreConfig) Validate() error {
	var errs []error
	if u, err := url.Parse(c.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("endpoint: must be an http(s) URL, got %q", c.Endpoint))
	}
	if c.Bucket == "" {
		errs = append(errs, errors.New("bucket: is required"))
	}
	if strings.HasPrefix(c.Prefix, "/") || strings.Contains(c.Prefix, "=") {
		errs = append(errs, fmt.Errorf("prefix: must not start with / or contain =, got %q", c.Prefix))
	}
	if (c.AccessKey == "") != (c.SecretKey == "") {
		errs = append(errs, errors.New("access_key, secret_key: set both or neither"))
	}
	if c.PartSize < 5<<20 {
		errs = append(errs, fmt.Errorf("part_size: must be at least 5 MiB, got %d", c.PartSize))
	}
	return errors.Join(errs...)
}

// Store puts, lists and deletes objects, every call under the error policy.
type Store struct {
	c      *minio.Client
	bucket string
	prefix string
	part   uint64
	pol    *errpolicy.Policy
}

// NewStore builds the client; it does not contact the server.
func NewStore(cfg StoreConfig, pol *errpolicy.Policy) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if pol == nil {
		return nil, errors.New("archive store: an error policy is required")
	}
	u, _ := url.Parse(cfg.Endpoint)
	creds := credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, "")
	if cfg.AccessKey == "" {
		creds = credentials.NewChainCredentials([]credentials.Provider{&credentials.EnvAWS{},
			&credentials.FileAWSCredentials{}, &credentials.IAM{}})
	}
	lookup := minio.BucketLookupAuto
	if cfg.PathStyle {
		lookup = minio.BucketLookupPath
	}
	c, err := minio.New(u.Host, &minio.Options{Creds: creds, Secure: u.Scheme == "https", Region: cfg.Region,
		BucketLookup: lookup,
		// One try per call: retries are the error policy's, so they show in
		// its metrics and a refusal pauses instead of being retried blindly.
		MaxRetries: 1})
	if err != nil {
		return nil, fmt.Errorf("archive store: %w", err)
	}
	pol.Declare(Destination)
	return &Store{c: c, bucket: cfg.Bucket, prefix: strings.TrimSuffix(cfg.Prefix, "/"), part: cfg.PartSize, pol: pol}, nil
}

// classify marks an S3 error for the policy: refused credentials, a
// missing bucket or a denied key refuse everything (pause); 5xx, throttling
// and network failures are retried; anything else about one object too.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var r minio.ErrorResponse
	if !errors.As(err, &r) { // wrapped with what was being done
		return err
	}
	switch r.Code {
	case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "NoSuchBucket", "AccountProblem", "InvalidToken", "ExpiredToken":
		return errpolicy.Mark(errpolicy.Pause, err)
	case "SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "RequestTimeTooSkewed":
		return errpolicy.Mark(errpolicy.Retry, err)
	}
	if r.StatusCode == 401 || r.StatusCode == 403 {
		return errpolicy.Mark(errpolicy.Pause, err)
	}
	// An object the archive writes is never refused for its content, so no
	// status dead-letters: whatever else failed is tried again.
	return err
}

// do runs op under the policy until it succeeds or ctx ends.
func (s *Store) do(ctx context.Context, op func(ctx context.Context) error) error {
	a := s.pol.Start(Destination)
	for {
		err := classify(op(ctx))
		if err == nil {
			a.Done()
			return nil
		}
		if werr := a.Wait(ctx, err); werr != nil {
			return werr
		}
	}
}

// Key joins the prefix and a key relative to it.
func (s *Store) Key(rel string) string {
	if s.prefix == "" {
		return rel
	}
	return s.prefix + "/" + rel
}

// Put uploads data under key, multipart when larger than the part size,
// replacing any object of that name.
func (s *Store) Put(ctx context.Context, key string, data []byte) error {
	return s.do(ctx, func(ctx context.Context) error {
		_, err := s.c.PutObject(ctx, s.bucket, key, bytes.NewReader(data), int64(len(data)),
			minio.PutObjectOptions{ContentType: "application/vnd.apache.parquet", PartSize: s.part})
		if err != nil {
			return fmt.Errorf("put s3://%s/%s: %w", s.bucket, key, err)
		}
		return nil
	})
}

// Get reads a whole object.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	var b []byte
	err := s.do(ctx, func(ctx context.Context) error {
		o, err := s.c.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
		if err == nil {
			b, err = io.ReadAll(o)
			o.Close()
		}
		if err != nil {
			return fmt.Errorf("get s3://%s/%s: %w", s.bucket, key, err)
		}
		return nil
	})
	return b, err
}

// List returns the keys under prefix (relative to the bucket), recursively.
func (s *Store) List(ctx context.Context, prefix string) ([]string, error) {
	var keys []string
	err := s.do(ctx, func(ctx context.Context) error {
		keys = keys[:0]
		for o := range s.c.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
			if o.Err != nil {
				return fmt.Errorf("list s3://%s/%s: %w", s.bucket, prefix, o.Err)
			}
			keys = append(keys, o.Key)
		}
		return nil
	})
	return keys, err
}

// Delete removes one object (absent is fine).
func (s *Store) Delete(ctx context.Context, key string) error {
	return s.do(ctx, func(ctx context.Context) error {
		if err := s.c.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{}); err != nil {
			return fmt.Errorf("delete s3://%s/%s: %w", s.bucket, key, err)
		}
		return nil
	})
}

// Ping checks that the bucket is reachable with the credentials.
func (s *Store) Ping(ctx context.Context) error {
	ok, err := s.c.BucketExists(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("s3 bucket %s: %w", s.bucket, err)
	}
	if !ok {
		return fmt.Errorf("s3 bucket %s does not exist", s.bucket)
	}
	return nil
}
