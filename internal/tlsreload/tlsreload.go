// Package tlsreload serves a TLS certificate from files that an operator
// (or cert-manager, or certbot) replaces while the server runs: a
// handshake after the files changed gets the new pair, with no restart.
// New files that do not load (half-written, a key that does not match) are
// reported and the pair already served goes on being served.
package tlsreload

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config names the files and the listener (a metrics label).
type Config struct {
	Listener string
	CertFile string
	KeyFile  string
}

// Reloader holds the pair being served.
type Reloader struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   stamp // of the files the served pair came from
	tried   stamp // of the files last tried (good or bad)
	lastErr error

	reloads *prometheus.CounterVec
	failing prometheus.Gauge
	expiry  prometheus.Gauge
}

// stamp tells a file changed: its modification time and size, for both.
type stamp struct {
	certMod, keyMod   time.Time
	certSize, keySize int64
}

// New loads the pair (an error names the files) and registers
// assistlog_tls_reloads_total{listener,result}, assistlog_tls_reload_failing
// and assistlog_tls_certificate_expiry_timestamp_seconds on reg.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Reloader, error) {
	if cfg.Listener == "" || cfg.CertFile == "" || cfg.KeyFile == "" {
		return nil, errors.New("tlsreload: a listener name, a cert_file and a key_file are required")
	}
	if log == nil || reg == nil {
		return nil, errors.New("tlsreload: a logger and a metrics registry are required")
	}
	labels := prometheus.Labels{"listener": cfg.Listener}
	r := &Reloader{cfg: cfg, log: log,
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "assistlog_tls_reloads_total",
			Help: "Certificate files that changed on disk and were loaded (result=ok) or refused (result=error: the previous pair is still served).", ConstLabels: labels},
			[]string{"result"}),
		failing: prometheus.NewGauge(prometheus.GaugeOpts{Name: "assistlog_tls_reload_failing",
			Help: "1 while the certificate files on disk do not load: the previous pair is served; fix the files.", ConstLabels: labels}),
		expiry: prometheus.NewGauge(prometheus.GaugeOpts{Name: "assistlog_tls_certificate_expiry_timestamp_seconds",
			Help: "NotAfter of the certificate being served, as a Unix time.", ConstLabels: labels}),
	}
	st, err := r.stat()
	if err != nil {
		return nil, err
	}
	cert, err := load(cfg)
	if err != nil {
		return nil, err
	}
	r.cert, r.stamp, r.tried = cert, st, st
	for _, c := range []prometheus.Collector{r.reloads, r.failing, r.expiry} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register tls metrics: %w", err)
		}
	}
	r.reloads.WithLabelValues("ok")
	r.reloads.WithLabelValues("error")
	r.expiry.Set(float64(cert.Leaf.NotAfter.Unix()))
	return r, nil
}

func load(cfg Config) (*tls.Certificate, error) {
	pair, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("load %s and %s: %w", cfg.CertFile, cfg.KeyFile, err)
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("parse %s: %w", cfg.CertFile, err)
		}
	}
	return &pair, nil
}

func (r *Reloader) stat() (stamp, error) {
	c, err := os.Stat(r.cfg.CertFile)
	if err != nil {
		return stamp{}, fmt.Errorf("cert_file: %w", err)
	}
	k, err := os.Stat(r.cfg.KeyFile)
	if err != nil {
		return stamp{}, fmt.Errorf("key_file: %w", err)
	}
	return stamp{certMod: c.ModTime(), keyMod: k.ModTime(), certSize: c.Size(), keySize: k.Size()}, nil
}

// GetCertificate is tls.Config.GetCertificate: it looks at the files (two
// stats, negligible beside a handshake) and loads them again when they
// changed since they were last tried. Files that do not load are tried
// again only once they change again.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := r.stat()
	if err != nil {
		// A file missing (being replaced) is reported once, not at every
		// handshake; it is read again once it is back.
		if r.lastErr == nil || r.lastErr.Error() != err.Error() {
			r.refuse(stamp{}, err)
		}
		return r.cert, nil
	}
	if st == r.tried {
		return r.cert, nil
	}
	r.tried = st
	cert, err := load(r.cfg)
	if err != nil {
		r.refuse(st, err)
		return r.cert, nil
	}
	r.cert, r.stamp, r.lastErr = cert, st, nil
	r.reloads.WithLabelValues("ok").Inc()
	r.failing.Set(0)
	r.expiry.Set(float64(cert.Leaf.NotAfter.Unix()))
	r.log.Info("tls certificate reloaded", "listener", r.cfg.Listener, "cert_file", r.cfg.CertFile,
		"serial", cert.Leaf.SerialNumber.String(), "not_after", cert.Leaf.NotAfter)
	return r.cert, nil
}

// refuse records files that do not load; the served pair stays.
func (r *Reloader) refuse(st stamp, err error) {
	r.tried, r.lastErr = st, err
	r.reloads.WithLabelValues("error").Inc()
	r.failing.Set(1)
	r.log.Error("tls certificate files changed but do not load; still serving the previous certificate",
		"listener", r.cfg.Listener, "serial", r.cert.Leaf.SerialNumber.String(), "err", err)
}

// Err is why the files on disk are not being served (nil: they are).
func (r *Reloader) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastErr
}
