// Command stack starts, stops and reports the real components assistlog runs
// against: Kafka, Elasticsearch, Loki, Prometheus, Alertmanager and OpenSearch.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/assistlog/assistlog/stack"
)

const usage = `stack — run assistlog's real components on this machine (no Docker).

Usage:
  stack up [component...]      install what is missing, start what is not running, wait until ready
  stack down [component...]    stop what 'up' started (by pid file); nothing else is touched
  stack status                 versions, pids, readiness, endpoints and log paths
  stack logs [-n N] component  the last N lines of a component's log (default 100)
  stack env                    shell exports of every endpoint, for tests and tools
  stack install [component...] only download and build into the cache
  stack prune-test-topics      delete the Kafka topics tests made (test-*, smoke-*); run it
                               when no test is running (make test does, before its first)

Components: kafka, elasticsearch, loki, prometheus, alertmanager, opensearch, s3, elasticsearch-secure
(all when none named).

Environment:
  ASSISTLOG_CACHE      downloads and builds (default ~/.cache/assistlog); keep it between runs
  ASSISTLOG_STACK_DIR  data, configs, logs and pid files (default /tmp/assistlog-stack)
  ASSISTLOG_JAVA_HOME  Java 17+ for Kafka and Elasticsearch (default: JAVA_HOME, then java on PATH)

A cold first 'up' downloads Kafka and Elasticsearch from Maven Central and builds
Loki, Prometheus and Alertmanager from the Go module proxy: about 20 minutes on
2 cores. Later runs start in under a minute.
`

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "stack:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("stack", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return fmt.Errorf("no command given")
	}
	layout, err := stack.LayoutFromEnv()
	if err != nil {
		return err
	}
	s := stack.New(layout, stdout)
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()

	cmd, rest := fs.Arg(0), fs.Args()[1:]
	switch cmd {
	case "up":
		fmt.Fprintf(stdout, "stack dir %s, cache %s\n", layout.Dir, layout.CacheDir)
		if err := s.Up(ctx, rest...); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "stack is up; 'stack status' shows endpoints, 'stack down' stops it")
		return nil
	case "down":
		return s.Down(ctx, rest...)
	case "install":
		return s.Install(ctx, rest...)
	case "prune-test-topics":
		n, err := s.PruneTestTopics(ctx)
		fmt.Fprintf(stdout, "kafka: deleted %d test topics (test-*, smoke-*)\n", n)
		return err
	case "status":
		return status(ctx, s, stdout)
	case "env":
		for _, kv := range layout.Endpoints().Env() {
			fmt.Fprintf(stdout, "export %s=%q\n", kv[0], kv[1])
		}
		return nil
	case "logs":
		lfs := flag.NewFlagSet("logs", flag.ContinueOnError)
		n := lfs.Int("n", 100, "lines to show")
		if err := lfs.Parse(rest); err != nil {
			return err
		}
		if lfs.NArg() != 1 {
			return fmt.Errorf("logs takes one component (%s)", strings.Join(s.Names(), ", "))
		}
		path, err := s.LogPath(lfs.Arg(0))
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "==> %s <==\n", path)
		c := exec.CommandContext(ctx, "tail", "-n", fmt.Sprint(*n), path)
		c.Stdout, c.Stderr = stdout, stderr
		return c.Run()
	case "help":
		fs.Usage()
		return nil
	default:
		fs.Usage()
		return fmt.Errorf("unknown command %q", cmd)
	}
}

func status(ctx context.Context, s *stack.Stack, out io.Writer) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "COMPONENT\tVERSION\tPID\tSTATE\tENDPOINT\tLOG")
	notReady := 0
	for _, st := range s.Status(ctx) {
		state, pid := "stopped", "-"
		switch {
		case st.Ready && st.Running:
			state = "ready"
		case st.Ready:
			state = "ready (not started by this stack)"
		case st.Running:
			state = "starting: " + st.Detail
		}
		if st.Running {
			pid = fmt.Sprint(st.PID)
		}
		if !st.Ready {
			notReady++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", st.Name, st.Version, pid, state, st.Endpoint, st.Log)
	}
	return tw.Flush()
}
