package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/assistlog/assistlog/internal/config"
	"github.com/assistlog/assistlog/internal/mapping"
)

const mappingUsage = `collector mapping test — show what a mapping makes of sample input.

Usage:
  collector mapping test --config collector.yaml [--file PATH | --tenant NAME | --hook NAME] SAMPLES

For each line of SAMPLES (JSON lines, as the assistant writes them) it prints
the mapped event as it would go to Kafka, or the precise error: the mapping
step that failed (parse, fields, unmapped, timestamp, crm_id, validate) and
the field. For a telegram, whatsapp or instagram hook SAMPLES is one request
body as the platform sends it. Exit status 1 when any sample fails.

Which mapping: --file PATH takes the files.mappings entry matching PATH (by
default SAMPLES itself), --tenant the webhook tenant's, --hook the hook's.
Only the mapping is read from the configuration: secrets need not be set.

Examples:
  collector mapping test --config /etc/assistlog/collector.yaml --file /var/log/bot/today.jsonl sample.jsonl
  collector mapping test --config collector.yaml --hook telegram-bot update.json

Flags:
`

// mappingCommand runs "collector mapping …"; args follow "mapping".
func mappingCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "test" {
		fmt.Fprint(stderr, mappingUsage)
		return 2
	}
	fs := flag.NewFlagSet("collector mapping test", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, mappingUsage); fs.PrintDefaults() }
	cfgPath := fs.String("config", "", "the collector's configuration file (required)")
	file := fs.String("file", "", "use the files.mappings entry matching this path (default: SAMPLES)")
	tenant := fs.String("tenant", "", "use webhook.tenants[].mapping of this tenant")
	hookName := fs.String("hook", "", "use webhook.hooks[] of this name")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if *cfgPath == "" || fs.NArg() != 1 {
		fmt.Fprintln(stderr, "collector mapping test: --config and one SAMPLES file are required")
		fs.Usage()
		return 2
	}
	samples := fs.Arg(0)
	if err := mappingTest(*cfgPath, *file, *tenant, *hookName, samples, stdout); err != nil {
		fmt.Fprintln(stderr, "collector mapping test:", err)
		return 1
	}
	return 0
}

var errSamplesFailed = errors.New("some samples failed (see above)")

func mappingTest(cfgPath, file, tenant, hookName, samples string, out io.Writer) error {
	cfg := DefaultConfig()
	if err := config.Load(cfgPath, &cfg); err != nil {
		return err
	}
	data, err := os.ReadFile(samples)
	if err != nil {
		return fmt.Errorf("read samples: %w", err)
	}
	var mc mapping.Config
	var field string
	var hk *HookConfig
	switch {
	case hookName != "":
		for i := range cfg.Webhook.Hooks {
			if cfg.Webhook.Hooks[i].Name == hookName {
				hk, field = &cfg.Webhook.Hooks[i], fmt.Sprintf("webhook.hooks[%d].mapping", i)
			}
		}
		if hk == nil {
			return fmt.Errorf("no hook %q in webhook.hooks of %s", hookName, cfgPath)
		}
		mc = hk.Mapping
	case tenant != "":
		found := false
		for i, t := range cfg.Webhook.Tenants {
			if t.Tenant == tenant {
				mc, field, found = t.Mapping, fmt.Sprintf("webhook.tenants[%d].mapping", i), true
			}
		}
		if !found {
			return fmt.Errorf("no tenant %q in webhook.tenants of %s", tenant, cfgPath)
		}
	default:
		if file == "" {
			file = samples
		}
		idx := -1
		for i, fm := range cfg.Files.Mappings {
			if idx < 0 && globsMatch(fm.Match, file) {
				idx = i
			}
		}
		if idx < 0 {
			var globs []string
			for _, fm := range cfg.Files.Mappings {
				globs = append(globs, strings.Join(fm.Match, ", "))
			}
			return fmt.Errorf("no files.mappings entry matches %s (entries match: %s); pass --file with a path they match, --tenant or --hook",
				file, strings.Join(globs, " | "))
		}
		mc, field = cfg.Files.Mappings[idx].Mapping, fmt.Sprintf("files.mappings[%d].mapping", idx)
	}
	m, err := mapping.Compile(mc)
	if err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	fmt.Fprintf(out, "mapping: %s\n", field)
	failed := 0
	if hk != nil && hk.Kind != HookJSON {
		var items []item
		switch hk.Kind {
		case HookTelegram:
			items = telegramItems(hk.Name, data)
		case HookWhatsApp:
			items = whatsappItems(data)
		case HookInstagram:
			items = instagramItems(data)
		}
		for i, it := range items {
			switch {
			case it.skipped != "":
				fmt.Fprintf(out, "item %d: no event (%s)\n", i, it.skipped)
			case it.bad != "":
				failed++
				fmt.Fprintf(out, "item %d: ERROR %s\n", i, it.bad)
			default:
				_, b, err := m.ApplyObject(it.obj, mapping.Input{DefaultID: it.id, Tenant: hk.Tenant})
				failed += report(out, fmt.Sprintf("item %d", i), b, err)
			}
		}
	} else {
		if hk != nil {
			tenant = hk.Tenant
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(nil, 16<<20)
		for n := 1; sc.Scan(); n++ {
			line := bytes.TrimRight(sc.Bytes(), "\r")
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			_, b, err := m.Apply(line, mapping.Input{DefaultID: fileEventID("sample", int64(n), line), Tenant: tenant})
			failed += report(out, fmt.Sprintf("line %d", n), b, err)
		}
		if err := sc.Err(); err != nil {
			return fmt.Errorf("read samples: %w", err)
		}
	}
	if failed > 0 {
		return errSamplesFailed
	}
	return nil
}

func report(out io.Writer, where string, b []byte, err error) int {
	if err != nil {
		fmt.Fprintf(out, "%s: ERROR %v\n", where, err)
		return 1
	}
	fmt.Fprintf(out, "%s: ok %s\n", where, b)
	return 0
}
