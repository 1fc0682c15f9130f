// Command bitrix24-fake runs the contract-faithful Bitrix24 portal of the
// tests (internal/bitrix24/bitrix24test) as a server, so the demo's shipper
// has a CRM to create leads in. It is a stand-in for a real portal, never a
// replacement: see ../shared/bitrix24/CONTRACT.md for what it follows.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/assistlog/assistlog/internal/bitrix24/bitrix24test"
	"github.com/assistlog/assistlog/internal/program"
)

const usage = `bitrix24-fake — a local Bitrix24 portal for the demo (HTTPS, webhook auth).

Usage:
  bitrix24-fake --listen 127.0.0.1:19180 --cert-out ca.pem [--state state.json]
  bitrix24-fake version
  bitrix24-fake health --addr 127.0.0.1:19180 --ca ca.pem
      exit 0 when the fake completes a TLS handshake with its certificate
      (for the compose health check; no request, so the rate limit is untouched)

It prints the incoming-webhook URL to give the shipper (crm.bitrix24.webhook_url)
and writes its certificate to --cert-out (crm.bitrix24.ca_file). Leads and
activities are kept in --state across restarts, so lead ids remembered in
Kafka's links topic stay valid. The leaky bucket answers 503
QUERY_LIMIT_EXCEEDED above --limit, draining --rate requests per second.

Flags:
`

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bitrix24-fake:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "version" {
		program.PrintVersion(stdout, "bitrix24-fake")
		return nil
	}
	if len(args) > 0 && args[0] == "health" {
		return health(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("bitrix24-fake", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	listen := fs.String("listen", "127.0.0.1:19180", "address to serve HTTPS on")
	certOut := fs.String("cert-out", "", "write the server certificate (PEM) here (required)")
	statePath := fs.String("state", "", "keep leads and activities in this file across restarts")
	rate := fs.Float64("rate", 2, "leaky-bucket drain, requests per second (the cloud: 2; enterprise: 5 and more)")
	limit := fs.Float64("limit", 50, "leaky-bucket size before 503 QUERY_LIMIT_EXCEEDED")
	secret := fs.String("secret", "demo0webhook0secret", "the webhook secret in /rest/1/<secret>/")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *certOut == "" {
		return errors.New("--cert-out is required (the shipper trusts the fake through it)")
	}
	srv, err := bitrix24test.Start(bitrix24test.Config{Listen: *listen, Drain: *rate, Limit: *limit, Secret: *secret})
	if err != nil {
		return err
	}
	defer srv.Close()
	if *statePath != "" {
		if err := srv.LoadState(*statePath); err != nil {
			return err
		}
	}
	if err := os.WriteFile(*certOut, srv.CertPEM(), 0o644); err != nil {
		return fmt.Errorf("--cert-out: %w", err)
	}
	fmt.Fprintln(stdout, srv.WebhookURL())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	save := func() error {
		if *statePath == "" {
			return nil
		}
		return srv.SaveState(*statePath)
	}
	// Saved every second as well as on exit: a kill -9 loses at most the
	// last second, as a portal's own backups would.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return save()
		case <-tick.C:
			if err := save(); err != nil {
				fmt.Fprintln(stderr, "bitrix24-fake:", err)
			}
		}
	}
}

// health checks that the fake is serving: a TLS handshake verified against
// its certificate (--ca, the --cert-out file). It sends no request, which
// would count against the leaky bucket the demo's shipper is measured by.
func health(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bitrix24-fake health", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:19180", "the fake's --listen address")
	caFile := fs.String("ca", "", "the certificate the fake wrote to --cert-out (required)")
	timeout := fs.Duration("timeout", 5*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *caFile == "" {
		return errors.New("health: --ca is required")
	}
	pem, err := os.ReadFile(*caFile)
	if err != nil {
		return fmt.Errorf("not ready: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return fmt.Errorf("health: %s holds no certificate", *caFile)
	}
	host, _, err := net.SplitHostPort(*addr)
	if err != nil {
		return fmt.Errorf("health: --addr: %w", err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
		_, port, _ := net.SplitHostPort(*addr)
		*addr = net.JoinHostPort(host, port)
	}
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: *timeout}, Config: &tls.Config{RootCAs: pool, ServerName: host}}
	conn, err := d.DialContext(context.Background(), "tcp", *addr)
	if err != nil {
		return fmt.Errorf("not ready: %w", err)
	}
	conn.Close()
	fmt.Fprintln(stdout, "ready")
	return nil
}
