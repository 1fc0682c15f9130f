package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/assistlog/assistlog/internal/stacktest"
)

// chromiumPath finds Debian's chromium (installed by the stack's setup,
// stack/prereq.go). Where integration tests are required (make test, CI)
// a missing browser fails the test instead of skipping it.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "the report test needs headless Chromium: `go run ./stack/cmd/stack install` installs the Debian package chromium as root"
	if stacktest.Required() {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// renderedChart is one svg.chart as the browser laid it out.
type renderedChart struct {
	ID     string  `json:"id"`
	Width  float64 `json:"width"`
	Height float64 `json:"height"`
	Marks  int     `json:"marks"`
	Drawn  int     `json:"drawn"` // marks with a non-zero width and height
}

// shown is one element carrying a number: its data attributes and text.
type shown struct {
	Group string `json:"group"` // the week, channel or intent of its row
	Key   string `json:"key"`
	Week  string `json:"week"`
	Value string `json:"value"`
	Text  string `json:"text"`
	Tag   string `json:"tag"`
}

// renderedPage is what the test reads from the page in the browser.
type renderedPage struct {
	Lang        string          `json:"lang"`
	Charts      []renderedChart `json:"charts"`
	KPIs        []shown         `json:"kpis"`
	Trend       []shown         `json:"trend"`
	Channels    []shown         `json:"channels"`
	LowConf     []shown         `json:"lowconf"`
	Rules       []string        `json:"rules"`
	Reconcile   string          `json:"reconcile"`
	ScrollWidth float64         `json:"scrollWidth"`
	InnerWidth  float64         `json:"innerWidth"`
	Text        string          `json:"text"`

	Problems []string `json:"-"` // console errors, exceptions, error log entries, fetches
	PNG      []byte   `json:"-"`
}

// readPage collects, from the rendered DOM, every chart with its drawn
// marks and every number with its data-value.
const readPage = `(() => {
  const rect = e => e.getBoundingClientRect();
  const charts = [...document.querySelectorAll('svg.chart')].map(svg => {
    const marks = [...svg.querySelectorAll('.mark')];
    return {id: svg.dataset.chart || '', width: rect(svg).width, height: rect(svg).height, marks: marks.length,
      drawn: marks.filter(m => rect(m).width > 0 && rect(m).height > 0).length};
  });
  const cells = (sel, key, group) => [...document.querySelectorAll(sel)].map(e => ({
    group: group(e) || '', key: e.dataset[key] || '', week: e.dataset.week || '',
    value: e.dataset.value === undefined ? '<missing>' : e.dataset.value, text: e.textContent.trim(), tag: e.tagName}));
  return {
    lang: document.documentElement.lang,
    charts,
    kpis: cells('[data-kpi]', 'kpi', e => ''),
    trend: cells('[data-trend]', 'trend', e => e.closest('tr').dataset.trendWeek),
    channels: cells('[data-channel-kpi]', 'channelKpi', e => e.closest('tr').dataset.channel),
    lowconf: cells('tr[data-intent] td[data-value]', 'none', e => e.closest('tr').dataset.intent),
    rules: [...document.querySelectorAll('[data-rule]')].map(e => e.dataset.rule),
    reconcile: (document.querySelector('[data-reconcile]') || {dataset: {}}).dataset.reconcile || '',
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
    text: document.body.innerText,
  };
})()`

// openInChromium loads file in headless Chromium at a width×height
// viewport and reads it back, with every console error, uncaught
// exception, error log entry and request for anything but the file itself
// listed as a problem.
func openInChromium(t *testing.T, browser, file string, width, height int64) renderedPage {
	t.Helper()
	abs, err := filepath.Abs(file)
	if err != nil {
		t.Fatal(err)
	}
	pageURL := (&url.URL{Scheme: "file", Path: abs}).String()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	actx, acancel := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.Headless,
		chromedp.UserDataDir(t.TempDir()))...)
	defer acancel()
	var mu sync.Mutex
	var problems []string
	problem := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		problems = append(problems, fmt.Sprintf(format, args...))
	}
	bctx, bcancel := chromedp.NewContext(actx, chromedp.WithListener(func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				problem("console.%s: %s", ev.Type, strings.Join(args, " "))
			}
		case *runtime.EventExceptionThrown:
			problem("uncaught exception: %s", ev.ExceptionDetails.Text)
		case *log.EventEntryAdded:
			if ev.Entry.Level == log.EntryLevelError {
				problem("console error (%s): %s %s", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL)
			}
		case *network.EventRequestWillBeSent:
			if u := ev.Request.URL; u != pageURL && !strings.HasPrefix(u, "data:") {
				problem("fetched %s: the report must be self-contained", u)
			}
		}
	}))
	defer bcancel()
	if err := chromedp.Do(bctx, chromedp.EmulateViewport(width, height), chromedp.Navigate(pageURL)); err != nil {
		t.Fatalf("open %s in Chromium: %v", file, err)
	}
	p, err := chromedp.Run(bctx, chromedp.Evaluate[renderedPage](readPage))
	if err != nil {
		t.Fatalf("read the rendered page: %v", err)
	}
	if p.PNG, err = chromedp.Run(bctx, chromedp.FullScreenshot(100)); err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	mu.Lock()
	p.Problems = append([]string(nil), problems...)
	mu.Unlock()
	return p
}

// TestBrowserHarnessSeesProblems proves the checks of the report test can
// fail: a page with a console error, an exception, a missing image and an
// empty chart is caught on each count.
func TestBrowserHarnessSeesProblems(t *testing.T) {
	browser := chromiumPath(t)
	bad := filepath.Join(t.TempDir(), "bad.html")
	html := `<!DOCTYPE html><html lang="ru"><body>
<svg class="chart" data-chart="empty" viewBox="0 0 100 50" width="100" height="50"><rect class="mark" x="0" y="0" width="0" height="10"/></svg>
<img src="http://127.0.0.1:9/missing.png">
<script>console.error("broken chart"); throw new Error("boom");</script>
</body></html>`
	if err := os.WriteFile(bad, []byte(html), 0o644); err != nil {
		t.Fatal(err)
	}
	p := openInChromium(t, browser, bad, 390, 844)
	all := strings.Join(p.Problems, "\n")
	for _, want := range []string{"console.error: ", "broken chart", "uncaught exception", "fetched http://127.0.0.1:9/missing.png"} {
		if !strings.Contains(all, want) {
			t.Errorf("the harness missed %q; it saw:\n%s", want, all)
		}
	}
	if len(p.Charts) != 1 || p.Charts[0].Marks != 1 || p.Charts[0].Drawn != 0 {
		t.Errorf("an empty chart reads as %+v, want one mark, none drawn", p.Charts)
	}
	if len(p.PNG) < 8 || string(p.PNG[1:4]) != "PNG" {
		t.Errorf("the screenshot is not a PNG (%d bytes)", len(p.PNG))
	}
}
