// Package bench measures assistlog against real peers on the shared local
// stack (issue 14): each row runs the peer (or the raw ceiling) and
// assistlog in the same run, on the same generated events, against the same
// broker and servers, and reports the ratio. Absolute numbers on a shared
// machine are noisy; the ratios are what is compared.
//
// `make bench` runs every row at full size (bench/cmd/bench); TestBenchQuick
// runs every row at a tiny size inside `make test` to keep the harness
// working, asserting only that each row produced its numbers with the data
// complete, never a time.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/assistlog/assistlog/stack"
)

// Options say what to run.
type Options struct {
	// Quick runs every row at a tiny size (seconds): CI's smoke mode.
	Quick bool
	// Rows to run (1-8); empty: all.
	Rows []int
	// Root is the repository root (where go.mod is).
	Root string
	// Work holds generated files, configurations and logs; it is removed
	// unless Keep.
	Work string
	Keep bool
	// Log receives progress.
	Log io.Writer
}

// Validate names the field at fault.
func (o Options) Validate() error {
	var errs []error
	for _, r := range o.Rows {
		if r < 1 || r > len(rows) {
			errs = append(errs, fmt.Errorf("rows: %d is not a row (1-%d)", r, len(rows)))
		}
	}
	if o.Root == "" {
		errs = append(errs, errors.New("root: required"))
	} else if _, err := os.Stat(filepath.Join(o.Root, "go.mod")); err != nil {
		errs = append(errs, fmt.Errorf("root: %w", err))
	}
	if o.Log == nil {
		errs = append(errs, errors.New("log: required"))
	}
	return errors.Join(errs...)
}

// Measure is one line of the table: assistlog's figure beside the peer's
// (or the ceiling's) on the same data, and their ratio.
type Measure struct {
	Row  int
	What string
	// Assistlog and Peer are in Unit; Peer is 0 when the row has no peer.
	Assistlog, Peer float64
	Unit            string
	PeerName        string
	// HigherBetter says which way the ratio reads: events/s (true) or
	// seconds and bytes (false). Ratio is always assistlog relative to the
	// peer such that ≥ 1 means assistlog is at least as good.
	HigherBetter bool
	Target       string
	// Events is how many events the measurement moved, all of them checked
	// to have arrived (Complete).
	Events   int
	Complete bool
	Note     string
}

// Ratio is assistlog relative to the peer, ≥ 1 meaning at least as good; 0
// without a peer.
func (m Measure) Ratio() float64 {
	if m.Peer == 0 || m.Assistlog == 0 {
		return 0
	}
	if m.HigherBetter {
		return m.Assistlog / m.Peer
	}
	return m.Peer / m.Assistlog
}

// RowResult is one row of the table.
type RowResult struct {
	Row      int
	Title    string
	Command  string // reproduces the row alone
	Measures []Measure
	Err      error
	Took     time.Duration
}

// row is one benchmark of the table.
type row struct {
	title string
	run   func(ctx context.Context, e *env) ([]Measure, error)
}

var rows = []row{
	{"collector file → Kafka vs kcat -P", rowCollector},
	{"webhook → Kafka (NDJSON, authenticated)", rowWebhook},
	{"shipper Kafka → Elasticsearch + Loki vs BulkIndexer ceiling", rowShipper},
	{"file → Loki vs Promtail", rowLoki},
	{"end-to-end latency: line written → searchable", rowLatency},
	{"peak RSS (VmHWM) of collector and shipper", rowRSS},
	{"scaling: shipper instances, collector files", rowScaling},
	{"Bitrix24 worker: drain new leads at 2 requests/s", rowBitrix24},
}

// Run runs the selected rows one after the other and returns their
// results; a row that fails is reported with its error and the others
// still run.
func Run(ctx context.Context, o Options) ([]RowResult, error) {
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("bench options: %w", err)
	}
	sel := o.Rows
	if len(sel) == 0 {
		for i := range rows {
			sel = append(sel, i+1)
		}
	}
	sort.Ints(sel)
	e, err := newEnv(ctx, o)
	if err != nil {
		return nil, err
	}
	defer e.close()
	var out []RowResult
	for _, n := range sel {
		r := rows[n-1]
		e.logf("row %d: %s", n, r.title)
		start := time.Now()
		ms, err := r.run(ctx, e)
		for i := range ms {
			ms[i].Row = n
		}
		res := RowResult{Row: n, Title: r.title, Command: command(n, o.Quick), Measures: ms, Err: err, Took: time.Since(start)}
		if err != nil {
			e.logf("row %d failed: %v", n, err)
		}
		for _, m := range ms {
			e.logf("  %s", m.line())
		}
		out = append(out, res)
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
	}
	return out, nil
}

func command(n int, quick bool) string {
	c := fmt.Sprintf("go run ./bench/cmd/bench --rows %d", n)
	if quick {
		c += " --quick"
	}
	return c
}

func (m Measure) line() string {
	s := fmt.Sprintf("%s: assistlog %s %s", m.What, num(m.Assistlog), m.Unit)
	if m.Peer != 0 {
		s += fmt.Sprintf(", %s %s, ratio %.2f×", m.PeerName, num(m.Peer), m.Ratio())
	}
	if !m.Complete {
		s += " (INCOMPLETE)"
	}
	return s
}

func num(v float64) string {
	switch {
	case v == 0:
		return "—"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

// Machine describes where the numbers came from.
type Machine struct {
	Cores    int
	MemoryMB int
	CPU      string
	Go       string
}

// MachineInfo reads the cores, memory and Go version of this machine.
func MachineInfo(ctx context.Context) Machine {
	m := Machine{}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "processor") {
				m.Cores++
			}
			if m.CPU == "" && strings.HasPrefix(l, "model name") {
				if _, v, ok := strings.Cut(l, ":"); ok {
					m.CPU = strings.TrimSpace(v)
				}
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "MemTotal:") {
				fmt.Sscan(strings.TrimSpace(strings.TrimPrefix(l, "MemTotal:")), &kb)
			}
		}
		m.MemoryMB = kb / 1024
	}
	if out, err := exec.CommandContext(ctx, "go", "version").Output(); err == nil {
		m.Go = strings.TrimSpace(string(out))
	}
	return m
}

// Markdown renders the results as bench/RESULTS.md.
func Markdown(w io.Writer, res []RowResult, m Machine, versions map[string]string, quick bool, took time.Duration) {
	mode := "full"
	if quick {
		mode = "quick (smoke sizes: numbers mean nothing)"
	}
	fmt.Fprintf(w, "# Benchmark results\n\n")
	fmt.Fprintf(w, "Generated by `make bench` (`go run ./bench/cmd/bench`), mode %s, on %s, in %s.\n\n", mode, time.Now().UTC().Format("2006-01-02 15:04 MST"), took.Round(time.Second))
	fmt.Fprintf(w, "Machine: %d cores (%s), %d MiB memory; %s. The machine is shared: absolute figures are noisy, compare the ratios (≥ 1.00× means assistlog is at least as good as the peer).\n\n", m.Cores, m.CPU, m.MemoryMB, m.Go)
	var keys []string
	for k := range versions {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprintf(w, "Versions:")
	for i, k := range keys {
		sep := ","
		if i == len(keys)-1 {
			sep = "."
		}
		fmt.Fprintf(w, " %s %s%s", k, versions[k], sep)
	}
	fmt.Fprintf(w, "\n\n")
	fmt.Fprintf(w, "| # | measurement | assistlog | peer / ceiling | ratio | target | events | complete |\n|---|---|---|---|---|---|---|---|\n")
	for _, r := range res {
		if r.Err != nil {
			fmt.Fprintf(w, "| %d | %s | **failed**: %s | | | | | no |\n", r.Row, r.Title, strings.ReplaceAll(r.Err.Error(), "|", "/"))
		}
		for _, m := range r.Measures {
			peer, ratio := "—", "—"
			if m.Peer != 0 {
				peer = fmt.Sprintf("%s %s", m.PeerName, num(m.Peer))
				ratio = fmt.Sprintf("%.2f×", m.Ratio())
			}
			complete := "yes"
			if !m.Complete {
				complete = "**no**"
			}
			what := m.What
			if m.Note != "" {
				what += " — " + m.Note
			}
			fmt.Fprintf(w, "| %d | %s | %s %s | %s | %s | %s | %d | %s |\n", m.Row, strings.ReplaceAll(what, "|", "/"), num(m.Assistlog), m.Unit, peer, ratio, m.Target, m.Events, complete)
		}
	}
	fmt.Fprintf(w, "\nTo reproduce one row (stack up and warm: `go run ./stack/cmd/stack up`):\n\n")
	for _, r := range res {
		fmt.Fprintf(w, "- row %d (%s, took %s): `%s`\n", r.Row, r.Title, r.Took.Round(time.Second), r.Command)
	}
	fmt.Fprintf(w, "\nWhat each row does and why its sizes are what they are: bench/README.md. Profiles behind fixes: bench/NOTES.md.\n")
}

// Text renders the table for a terminal.
func Text(w io.Writer, res []RowResult) {
	fmt.Fprintf(w, "\n%-3s %-62s %14s %22s %8s\n", "#", "measurement", "assistlog", "peer/ceiling", "ratio")
	for _, r := range res {
		if r.Err != nil {
			fmt.Fprintf(w, "%-3d %-62s FAILED: %v\n", r.Row, r.Title, r.Err)
		}
		for _, m := range r.Measures {
			peer, ratio := "—", "—"
			if m.Peer != 0 {
				peer = num(m.Peer)
				ratio = fmt.Sprintf("%.2f×", m.Ratio())
			}
			what := m.What
			if !m.Complete {
				what += " (INCOMPLETE)"
			}
			fmt.Fprintf(w, "%-3d %-62s %14s %22s %8s\n", m.Row, trunc(what, 62), num(m.Assistlog)+" "+m.Unit, trunc(m.PeerName+" "+peer, 22), ratio)
		}
	}
}

func trunc(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// Versions are what the numbers were measured against.
func Versions(e string) map[string]string {
	return map[string]string{
		"Kafka": stack.Versions.Kafka, "Elasticsearch": stack.Versions.Elasticsearch, "Loki": stack.Versions.Loki,
		"Promtail": stack.PromtailVersion, "kcat": e, "assistlog": gitRev(),
	}
}

func gitRev() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}
