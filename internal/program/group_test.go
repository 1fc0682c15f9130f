package program_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/assistlog/assistlog/internal/program"
)

// TestGroupStopsOnFirstFailure: a failing part stops the others and its
// error names it; a part returning early without an error counts as
// failing; a stop asked for (the context ending) is no failure.
func TestGroupStopsOnFirstFailure(t *testing.T) {
	untilStopped := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }

	g, _ := program.NewGroup(context.Background())
	g.Go("reader", untilStopped)
	g.Go("crm stage", func(context.Context) error { return errors.New("bitrix24 gone") })
	if err := g.Wait(); err == nil || !strings.Contains(err.Error(), "crm stage: bitrix24 gone") {
		t.Errorf("failing part: Wait() = %v, want it named", err)
	}

	g, _ = program.NewGroup(context.Background())
	g.Go("reader", untilStopped)
	g.Go("positions saver", func(context.Context) error { return nil })
	if err := g.Wait(); err == nil || !strings.Contains(err.Error(), "positions saver: stopped on its own") {
		t.Errorf("part returning early: Wait() = %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	g, _ = program.NewGroup(ctx)
	g.Go("reader", untilStopped)
	g.Go("writer", func(ctx context.Context) error { <-ctx.Done(); return nil })
	cancel()
	if err := g.Wait(); err != nil {
		t.Errorf("asked to stop: Wait() = %v, want nil", err)
	}
}

// TestServeHTTPFailsWhenTheListenerDies: a server whose listener stops
// serving returns an error instead of logging and carrying on.
func TestServeHTTPFailsWhenTheListenerDies(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- program.ServeHTTP(context.Background(), &http.Server{}, ln, time.Second) }()
	time.Sleep(50 * time.Millisecond)
	ln.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Error("ServeHTTP returned nil after its listener died")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ServeHTTP still running after its listener died")
	}
}

// TestListenNamesTheField: a taken port is an error naming the field.
func TestListenNamesTheField(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	if _, err := program.Listen("webhook.listen", taken.Addr().String()); err == nil || !strings.Contains(err.Error(), "webhook.listen") {
		t.Errorf("Listen on a taken port: %v", err)
	}
}
