// Command bench runs assistlog's benchmarks against real peers on the
// local stack (issue 14) and writes the table to bench/RESULTS.md.
//
//	go run ./bench/cmd/bench                  every row, full size (make bench)
//	go run ./bench/cmd/bench --rows 1,3,5     some rows
//	go run ./bench/cmd/bench --quick          every row at smoke size
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/assistlog/assistlog/bench"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `bench — assistlog against real peers on the local stack; ratios are what count.

Usage:
  go run ./bench/cmd/bench [--quick] [--rows 1,3,5] [--out bench/RESULTS.md] [--keep]

The stack must be up (go run ./stack/cmd/stack up). Rows:
  1 collector file → Kafka vs kcat -P        5 latency written → searchable
  2 webhook → Kafka                          6 peak RSS of collector and shipper
  3 shipper → ES + Loki vs BulkIndexer       7 scaling (shippers, files)
  4 file → Loki vs Promtail                  8 Bitrix24 lead drain at 2 req/s

Flags:
`)
		fs.PrintDefaults()
	}
	quick := fs.Bool("quick", false, "every row at a tiny size (seconds): the CI smoke mode")
	rowsFlag := fs.String("rows", "", "rows to run, e.g. 1,3,5 (default: all)")
	out := fs.String("out", "bench/RESULTS.md", "where to write the results table (empty: nowhere)")
	keep := fs.Bool("keep", false, "keep the work directory (generated files, configs, logs)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var sel []int
	if *rowsFlag != "" {
		for _, s := range strings.Split(*rowsFlag, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil {
				return fmt.Errorf("--rows: %q is not a row number", s)
			}
			sel = append(sel, n)
		}
	}
	root, err := repoRoot()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	res, err := bench.Run(ctx, bench.Options{Quick: *quick, Rows: sel, Root: root, Keep: *keep, Log: os.Stderr})
	if err != nil && len(res) == 0 {
		return err
	}
	bench.Text(os.Stdout, res)
	if *out != "" {
		var b bytes.Buffer
		bench.Markdown(&b, res, bench.MachineInfo(ctx), bench.Versions(kcatVersion()), *quick, time.Since(start))
		if err := os.WriteFile(*out, b.Bytes(), 0o644); err != nil {
			return err
		}
		fmt.Printf("\nwritten to %s\n", *out)
	}
	var failed []string
	for _, r := range res {
		if r.Err != nil {
			failed = append(failed, strconv.Itoa(r.Row))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("rows %s failed", strings.Join(failed, ", "))
	}
	return err
}

func repoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if d == filepath.Dir(d) {
			return "", errors.New("run from inside the repository (no go.mod above)")
		}
	}
}

func kcatVersion() string {
	out, err := exec.Command("kcat", "-V").Output()
	if err != nil {
		return "missing"
	}
	f := strings.Fields(string(out))
	for i, w := range f {
		if w == "kcat" && i+2 < len(f) && f[i+1] == "-" {
			continue
		}
		if strings.HasPrefix(w, "1.") {
			return w
		}
	}
	return "unknown"
}
