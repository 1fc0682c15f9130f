package errpolicy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestHTTPStatus(t *testing.T) {
	want := map[int]Action{401: Pause, 403: Pause, 408: Retry, 429: Retry, 500: Retry, 503: Retry,
		400: DeadLetter, 404: DeadLetter, 409: DeadLetter, 413: DeadLetter}
	for code, a := range want {
		if got := HTTPStatus(code); got != a {
			t.Errorf("HTTPStatus(%d) = %s, want %s", code, got, a)
		}
	}
}

func TestClassifyUnwraps(t *testing.T) {
	base := Mark(Pause, errors.New("401"))
	if got := Classify(fmt.Errorf("push: %w", base)); got != Pause {
		t.Fatalf("wrapped pause classified %s", got)
	}
	if got := Classify(io.ErrUnexpectedEOF); got != Retry {
		t.Fatalf("unmarked error classified %s, want retry", got)
	}
	if Mark(DeadLetter, nil) != nil {
		t.Fatal("Mark(nil) must stay nil")
	}
}

func newPolicy(t *testing.T) (*Policy, *prometheus.Registry) {
	reg := prometheus.NewRegistry()
	p, err := New(Config{RetryMin: time.Millisecond, RetryMax: 2 * time.Millisecond, PauseInterval: 5 * time.Millisecond},
		slog.New(slog.NewTextHandler(io.Discard, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	return p, reg
}

// A paused destination sets the gauge while it refuses and clears it once
// it accepts; the call is never given up.
func TestDoPausesAndResumes(t *testing.T) {
	p, _ := newPolicy(t)
	p.Declare("es")
	calls := 0
	var seenPaused float64
	err := p.Do(context.Background(), "es", func(context.Context) error {
		calls++
		if calls == 3 {
			seenPaused = testutil.ToFloat64(p.paused.WithLabelValues("es"))
		}
		if calls < 4 {
			return Mark(Pause, errors.New("403 forbidden"))
		}
		return nil
	})
	if err != nil || calls != 4 {
		t.Fatalf("Do = %v after %d calls", err, calls)
	}
	if seenPaused != 1 {
		t.Fatalf("paused gauge while refusing = %v, want 1", seenPaused)
	}
	if v := testutil.ToFloat64(p.paused.WithLabelValues("es")); v != 0 {
		t.Fatalf("paused gauge after resuming = %v, want 0", v)
	}
	if v := testutil.ToFloat64(p.retries.WithLabelValues("es", "pause")); v != 3 {
		t.Fatalf("pause retries = %v, want 3", v)
	}
}

func TestDoReturnsDeadLetterAndCtx(t *testing.T) {
	p, _ := newPolicy(t)
	dl := Mark(DeadLetter, errors.New("mapper_parsing_exception"))
	if err := p.Do(context.Background(), "es", func(context.Context) error { return dl }); Classify(err) != DeadLetter {
		t.Fatalf("Do = %v, want the dead-letter error", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err := p.Do(ctx, "es", func(context.Context) error { return errors.New("connection refused") })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Do after ctx ended = %v", err)
	}
}

func TestNewValidates(t *testing.T) {
	_, err := New(Config{RetryMin: time.Second, RetryMax: time.Millisecond}, slog.Default(), prometheus.NewRegistry())
	if err == nil || !contains(err.Error(), "max_backoff") || !contains(err.Error(), "pause_interval") {
		t.Fatalf("New = %v, want errors naming max_backoff and pause_interval", err)
	}
	if _, err := New(DefaultConfig(), slog.Default(), nil); err == nil {
		t.Fatal("New without a registry must fail")
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
