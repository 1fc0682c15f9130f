package program

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// ReadyURL is the /readyz URL of a program listening on listen (its
// http.listen). A wildcard host (":19101", "0.0.0.0:19101", "[::]:19101")
// is asked on loopback: the health check runs beside the program, in its
// container.
func ReadyURL(listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("http.listen %q: %w", listen, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/readyz", nil
}

// CheckReady asks url once and returns nil only for a 200; otherwise the
// error says why: the program's own answer (e.g. "kafka: last produce
// failed") or why it could not be asked.
func CheckReady(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("not ready: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("not ready: %s answered %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

const healthUsage = `%[1]s health — exit 0 when the running %[1]s says it is ready (/readyz), 1 with the reason otherwise.
For health checks in images with no shell (Kubernetes exec probes, compose healthcheck).

Usage:
  %[1]s health --config %[1]s.yaml   ask the address in http.listen (a wildcard host is asked on 127.0.0.1)
  %[1]s health --url http://127.0.0.1:PORT/readyz

Flags:
`

// health runs `NAME health`: listenOf loads the configuration and returns
// its http.listen.
func health(ctx context.Context, name string, listenOf func(path string) (string, error), args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(name+" health", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "the program's configuration: ask the address in its http.listen")
	url := fs.String("url", "", "the /readyz URL to ask instead (a bare http://host:port gets /readyz)")
	timeout := fs.Duration("timeout", 5*time.Second, "give up after this long")
	fs.Usage = func() { fmt.Fprintf(stderr, healthUsage, name); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		return err
	}
	if (*cfgPath == "") == (*url == "") {
		fs.Usage()
		return errors.New("health: give exactly one of --config and --url")
	}
	target := *url
	if *cfgPath != "" {
		listen, err := listenOf(*cfgPath)
		if err != nil {
			return err
		}
		if target, err = ReadyURL(listen); err != nil {
			return err
		}
	} else if u := strings.TrimSuffix(target, "/"); !strings.HasSuffix(u, "/readyz") && strings.Count(u, "/") == 2 {
		target = u + "/readyz"
	}
	if err := CheckReady(ctx, target, *timeout); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "ready")
	return nil
}
