package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/assistlog/assistlog/internal/archive"
	"github.com/assistlog/assistlog/internal/config"
	"github.com/assistlog/assistlog/internal/errpolicy"
	"github.com/assistlog/assistlog/internal/kafka"
	"github.com/assistlog/assistlog/internal/pii"
	"github.com/assistlog/assistlog/internal/program"
	"github.com/assistlog/assistlog/internal/tenants"
)

// ArchiveConfig is the `archive:` section, read only by `shipper archive`.
// It lives in the shipper's file so the archive is masked with the same
// pii.hash_secret, from the same topic, as Elasticsearch and Loki.
type ArchiveConfig struct {
	S3 archive.StoreConfig `yaml:"s3"`
	// GroupID is the archiver's own consumer group: a slow object store
	// never holds up Elasticsearch and Loki.
	GroupID string `yaml:"group_id"`
	// TenantsFile gives each tenant's zone; dt= is the tenant's local date.
	TenantsFile string `yaml:"tenants_file"`
	// An object set (one chunk) is uploaded when it holds max_records
	// events or max_bytes of input, or roll_interval passed since its first
	// event, whichever comes first.
	MaxRecords   int           `yaml:"max_records"`
	MaxBytes     int           `yaml:"max_bytes"`
	RollInterval time.Duration `yaml:"roll_interval"`
	// Listen serves the archiver's /metrics, /healthz and /readyz.
	Listen string `yaml:"listen"`
}

func defaultArchiveConfig() ArchiveConfig {
	return ArchiveConfig{S3: archive.DefaultStoreConfig(), GroupID: "assistlog-archiver",
		MaxRecords: 200000, MaxBytes: 128 << 20, RollInterval: 10 * time.Minute, Listen: "127.0.0.1:19103"}
}

func (a ArchiveConfig) validate() error {
	errs := config.Prefixed("archive.s3.", a.S3.Validate())
	if a.GroupID == "" {
		errs = append(errs, errors.New("archive.group_id: is required"))
	}
	if a.TenantsFile == "" {
		errs = append(errs, errors.New("archive.tenants_file: is required (partition dates are in each tenant's zone)"))
	}
	if a.MaxRecords < 1 || a.MaxBytes < 1 || a.RollInterval <= 0 {
		errs = append(errs, errors.New("archive.max_records, archive.max_bytes, archive.roll_interval: must be positive"))
	}
	if a.Listen == "" {
		errs = append(errs, errors.New("archive.listen: is required"))
	}
	return errors.Join(errs...)
}

// LoadArchiveConfig is LoadConfig plus the archive section's checks.
func LoadArchiveConfig(path string) (Config, error) {
	cfg, err := LoadConfig(path)
	if err != nil {
		return cfg, err
	}
	if err := errors.Join(config.Expand("archive.s3.access_key", &cfg.Archive.S3.AccessKey),
		config.Expand("archive.s3.secret_key", &cfg.Archive.S3.SecretKey)); err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	if err := cfg.Archive.validate(); err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

const archiveUsage = `shipper archive — Kafka → masked Parquet in S3-compatible storage, for Athena, Trino and DuckDB.

Usage:
  shipper archive --config shipper.yaml          run (own consumer group: archive.group_id)
  shipper archive --config shipper.yaml --check  validate the configuration and exit
  shipper archive drop --config shipper.yaml --tenant T --before YYYY-MM-DD
                                                 delete the tenant's partitions dated before the day (retention)
  shipper archive erase --config shipper.yaml [--tenant T] [--event-id ID]... [--phone NUMBER]...
                                                 rewrite the objects holding those events / that person's events

Layout: s3://<bucket>/<prefix>/tenant=<t>/dt=<YYYY-MM-DD>/<topic>+<partition>+<first offset>.parquet
(the date in the tenant's zone). See docs/archive.md for the guarantees and the Athena/Trino DDL.

Flags:
`

func archiveMain(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && (args[0] == "drop" || args[0] == "erase") {
		return archiveAdmin(args[0], args[1:], stdout, stderr)
	}
	return program.Run(program.Spec[Config]{Name: "shipper archive", Usage: archiveUsage, Load: LoadArchiveConfig,
		Log: func(c Config) program.Log { return c.Log }, Serve: serveArchive}, args, stderr)
}

type archiveMetrics struct {
	events, objects, undecodable prometheus.Counter
}

func serveArchive(ctx context.Context, cfg Config, log *slog.Logger) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	pol, err := errpolicy.New(cfg.Retry, log, reg)
	if err != nil {
		return err
	}
	w, store, err := newArchiveWriter(cfg, pol, log)
	if err != nil {
		return err
	}
	m := archiveMetrics{
		events: prometheus.NewCounter(prometheus.CounterOpts{Name: "assistlog_archive_events_total",
			Help: "Events uploaded to the archive (a chunk uploaded again after a crash counts again; its objects are replaced)."}),
		objects: prometheus.NewCounter(prometheus.CounterOpts{Name: "assistlog_archive_objects_total",
			Help: "Parquet objects uploaded."}),
		undecodable: prometheus.NewCounter(prometheus.CounterOpts{Name: "assistlog_archive_undecodable_total",
			Help: "Messages that are not events, skipped (the shipper dead-letters them)."}),
	}
	reg.MustRegister(m.events, m.objects, m.undecodable)

	kc, err := kafka.NewConnector(cfg.Kafka.ClientConfig, log)
	if err != nil {
		return err
	}
	r := kc.Reader(kafkago.ReaderConfig{
		GroupID: cfg.Archive.GroupID, Topic: cfg.Kafka.Topic,
		MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 250 * time.Millisecond,
		CommitInterval: 0, // synchronous commits, after the upload
		StartOffset:    kafkago.FirstOffset,
		SessionTimeout: 10 * time.Second, HeartbeatInterval: 2 * time.Second, RebalanceTimeout: 15 * time.Second,
	})
	ln, err := program.Listen("archive.listen", cfg.Archive.Listen)
	if err != nil {
		r.Close()
		return err
	}
	defer ln.Close()
	mux := program.OpsMux(reg, func(r *http.Request) error { return store.Ping(r.Context()) })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	log.Info("archiver started", "topic", cfg.Kafka.Topic, "group", cfg.Archive.GroupID,
		"endpoint", cfg.Archive.S3.Endpoint, "bucket", cfg.Archive.S3.Bucket, "prefix", cfg.Archive.S3.Prefix, "http", cfg.Archive.Listen)
	a := &archiver{r: r, w: w, cfg: cfg, log: log, m: m}
	g, _ := program.NewGroup(ctx)
	g.Go("http server ("+cfg.Archive.Listen+")", func(ctx context.Context) error {
		return program.ServeHTTP(ctx, srv, ln, 5*time.Second)
	})
	g.Go("archiver of "+cfg.Kafka.Topic, a.run)
	if err := g.Wait(); err != nil {
		log.Error("archiver part failed; stopped", "err", err)
		return err
	}
	log.Info("archiver stopped")
	return nil
}

func newArchiveWriter(cfg Config, pol *errpolicy.Policy, log *slog.Logger) (*archive.Writer, *archive.Store, error) {
	store, err := archive.NewStore(cfg.Archive.S3, pol)
	if err != nil {
		return nil, nil, fmt.Errorf("archive.s3: %w", err)
	}
	masker, err := cfg.PII.masker()
	if err != nil {
		return nil, nil, err
	}
	ts, err := tenants.Load(cfg.Archive.TenantsFile)
	if err != nil {
		return nil, nil, fmt.Errorf("archive.tenants_file: %w", err)
	}
	w, err := archive.NewWriter(store, masker, ts, log)
	return w, store, err
}

type archiver struct {
	r   *kafkago.Reader
	w   *archive.Writer
	cfg Config
	log *slog.Logger
	m   archiveMetrics
}

// run reads the topic into one buffer per Kafka partition. A partition's
// buffer is uploaded when it holds max_records events or max_bytes of input
// (counted from the committed offset, so after a crash the same offsets give
// the same chunks and the same object names); roll_interval after the
// first event of a buffer, that buffer is uploaded (wall clock: a quiet topic
// must not hold events back; see archive.ObjectName for why a chunk ending
// elsewhere after a crash still archives each event once). Offsets
// are committed only after the chunk's objects are all uploaded.
func (a *archiver) run(ctx context.Context) error {
	defer a.r.Close()
	bufs := map[int][]kafkago.Message{}
	sizes := map[int]int{}
	firsts := map[int]time.Time{} // when each buffer got its first event
	flush := func(parts []int) error {
		var msgs []kafkago.Message
		for _, p := range parts {
			msgs = append(msgs, bufs[p]...)
			delete(bufs, p)
			delete(sizes, p)
			delete(firsts, p)
		}
		return a.upload(ctx, msgs)
	}
	due := func() (time.Time, []int) {
		var oldest time.Time
		var ps []int
		for p, t := range firsts {
			if oldest.IsZero() || t.Before(oldest) {
				oldest = t
			}
			if time.Since(t) >= a.cfg.Archive.RollInterval {
				ps = append(ps, p)
			}
		}
		return oldest, ps
	}
	all := func() []int {
		var ps []int
		for p := range bufs {
			ps = append(ps, p)
		}
		return ps
	}
	for {
		fctx, cancel := ctx, context.CancelFunc(func() {})
		if oldest, _ := due(); !oldest.IsZero() {
			fctx, cancel = context.WithDeadline(ctx, oldest.Add(a.cfg.Archive.RollInterval))
		}
		m, err := a.r.FetchMessage(fctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				if len(bufs) > 0 {
					// Shutdown: upload what is buffered (within the shutdown timeout).
					return flush(all())
				}
				return nil
			}
			if fctx.Err() != nil { // rolled by time
				if _, ps := due(); len(ps) > 0 {
					if err := flush(ps); err != nil {
						return err
					}
				}
				continue
			}
			return fmt.Errorf("fetch from kafka: %w", err)
		}
		if _, ok := firsts[m.Partition]; !ok {
			firsts[m.Partition] = time.Now()
		}
		bufs[m.Partition] = append(bufs[m.Partition], m)
		sizes[m.Partition] += len(m.Value)
		if len(bufs[m.Partition]) >= a.cfg.Archive.MaxRecords || sizes[m.Partition] >= a.cfg.Archive.MaxBytes {
			if err := flush([]int{m.Partition}); err != nil {
				return err
			}
		}
	}
}

// upload writes one chunk and commits its offsets.
func (a *archiver) upload(ctx context.Context, msgs []kafkago.Message) error {
	recs := make([]archive.Record, len(msgs))
	for i, m := range msgs {
		recs[i] = archive.Record{Partition: m.Partition, Offset: m.Offset, Value: m.Value}
	}
	// The upload and commit outlive a SIGTERM by the shutdown timeout.
	sendCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(a.cfg.ShutdownTimeout, cancel) })
	res, err := a.w.Write(sendCtx, a.cfg.Kafka.Topic, recs)
	if err == nil {
		err = a.commit(sendCtx, msgs)
	}
	stop()
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			a.log.Warn("shutdown before the chunk was uploaded and committed; it will be uploaded again, replacing its objects", "messages", len(msgs), "err", err)
			return nil
		}
		return err
	}
	a.m.events.Add(float64(res.Rows))
	a.m.objects.Add(float64(len(res.Objects)))
	a.m.undecodable.Add(float64(res.Undecodable))
	a.log.Info("chunk archived", "events", res.Rows, "objects", len(res.Objects))
	return nil
}

func (a *archiver) commit(ctx context.Context, msgs []kafkago.Message) error {
	err := a.r.CommitMessages(ctx, msgs...)
	if err == nil {
		return nil
	}
	if errors.Is(err, kafkago.RebalanceInProgress) || errors.Is(err, kafkago.IllegalGeneration) ||
		errors.Is(err, kafkago.UnknownMemberId) || errors.Is(err, kafkago.NotCoordinatorForGroup) {
		a.log.Warn("commit refused by a rebalance; the new owner uploads the chunk again, replacing its objects", "messages", len(msgs), "err", err)
		return nil
	}
	return fmt.Errorf("commit offsets: %w", err)
}

// archiveAdmin runs the archive-side retention and erasure operations.
func archiveAdmin(cmd string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("shipper archive "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "path to the shipper's YAML configuration (required)")
	tenant := fs.String("tenant", "", "tenant (required for drop)")
	before := fs.String("before", "", "drop: delete partitions dated before this day (YYYY-MM-DD, the tenant's zone)")
	var ids, phones multiFlag
	fs.Var(&ids, "event-id", "erase: an event id (repeatable)")
	fs.Var(&phones, "phone", "erase: a phone number, any format; the person's events go (repeatable)")
	fs.Usage = func() { fmt.Fprint(stderr, archiveUsage); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cfgPath == "" {
		fs.Usage()
		return errors.New("--config is required")
	}
	cfg, err := LoadArchiveConfig(*cfgPath)
	if err != nil {
		return err
	}
	log := cfg.Log.Logger(stderr)
	pol, err := errpolicy.New(cfg.Retry, log, prometheus.NewRegistry())
	if err != nil {
		return err
	}
	store, err := archive.NewStore(cfg.Archive.S3, pol)
	if err != nil {
		return fmt.Errorf("archive.s3: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch cmd {
	case "drop":
		if *tenant == "" || *before == "" {
			return errors.New("drop: --tenant and --before are required")
		}
		deleted, err := store.DropBefore(ctx, *tenant, *before)
		for _, k := range deleted {
			fmt.Fprintln(stdout, "deleted", k)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%d objects of tenant %s dated before %s deleted\n", len(deleted), *tenant, *before)
		return nil
	default:
		if len(ids) == 0 && len(phones) == 0 {
			return errors.New("erase: give --event-id or --phone")
		}
		masker, err := pii.New(cfg.PII.HashSecret)
		if err != nil {
			return err
		}
		var hashes []string
		for _, p := range phones {
			h := masker.HashPhone(p)
			if h == "" {
				return fmt.Errorf("erase: %q is not a phone number", p)
			}
			hashes = append(hashes, h)
		}
		n, err := store.Erase(ctx, *tenant, ids, hashes)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%d events erased from the archive\n", n)
		return nil
	}
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }
