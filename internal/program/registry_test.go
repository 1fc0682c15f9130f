package program_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/assistlog/assistlog/internal/bitrix24"
	"github.com/assistlog/assistlog/internal/elastic"
	"github.com/assistlog/assistlog/internal/errpolicy"
	"github.com/assistlog/assistlog/internal/kafka"
	"github.com/assistlog/assistlog/internal/loki"
	"github.com/assistlog/assistlog/internal/positions"
	"github.com/assistlog/assistlog/internal/tail"
)

// TestRegistryRequired: every component that has metrics refuses to be
// built without a registry, rather than silently running unobserved.
func TestRegistryRequired(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pos, err := positions.Open(filepath.Join(t.TempDir(), "positions.json"))
	if err != nil {
		t.Fatal(err)
	}
	tcfg := tail.Config{}
	// A complete policy, so that only the missing registry is at fault.
	pol, err := errpolicy.New(errpolicy.DefaultConfig(), log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	for name, build := range map[string]func() error{
		"elastic.New":       func() error { _, err := elastic.New(elastic.DefaultConfig(), pol, log, nil); return err },
		"loki.New":          func() error { _, err := loki.New(loki.DefaultConfig(), pol, log, nil); return err },
		"kafka.NewProducer": func() error { _, err := kafka.NewProducer(kafka.DefaultProducerConfig(), pol, log, nil); return err },
		"bitrix24.New":      func() error { _, err := bitrix24.New(bitrix24.DefaultConfig(), nil, nil); return err },
		"tail.New": func() error {
			_, err := tail.New(tcfg, pos, func(context.Context, tail.Batch) error { return nil }, log, nil)
			return err
		},
	} {
		err := build()
		if err == nil || !strings.Contains(err.Error(), "registry") {
			t.Errorf("%s with a nil registry: err = %v, want one saying a registry is required", name, err)
		}
	}
}
