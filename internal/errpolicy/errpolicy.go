// Package errpolicy is the one error policy every client of assistlog
// shares (Kafka producer, Elasticsearch, Loki, Bitrix24, the CRM worker).
// A failure has exactly one of three outcomes:
//
//   - Retry: it may succeed soon (429, 5xx, network, timeouts, leader
//     changes). Tried again with exponential backoff.
//   - DeadLetter: this one record can never be accepted (mapping conflict,
//     schema violation, a line too long). It goes to the dead-letter topic
//     with the reason, and the stream moves on.
//   - Pause: the destination refuses everything (401/403, an unknown topic,
//     an expired token). Nothing is dead-lettered and nothing committed: the
//     caller keeps its data, a gauge says the destination is paused (an alert
//     rule fires on it), the call is tried again slowly, and the stream
//     resumes by itself once the destination is fixed.
//
// Clients classify what they see with HTTPStatus or Mark; callers read the
// outcome with Classify and wait with an Attempts from Policy.Start.
package errpolicy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Action is what to do about a failure.
type Action int

const (
	// Retry with backoff: the failure is passing.
	Retry Action = iota
	// DeadLetter the one record: it can never be accepted.
	DeadLetter
	// Pause the stream: the destination refuses everything until an
	// operator fixes it.
	Pause
)

func (a Action) String() string {
	switch a {
	case Retry:
		return "retry"
	case DeadLetter:
		return "dead_letter"
	case Pause:
		return "pause"
	}
	return fmt.Sprintf("action(%d)", int(a))
}

// Error carries a failure with its classification.
type Error struct {
	Action Action
	Err    error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Mark classifies err; nil stays nil.
func Mark(a Action, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Action: a, Err: err}
}

// Classify returns the action for err. Anything not marked is Retry: an
// unknown failure is never a reason to drop data, and a destination that
// keeps failing shows in the retry counter and the sinks' error alerts.
func Classify(err error) Action {
	var e *Error
	if errors.As(err, &e) {
		return e.Action
	}
	return Retry
}

// HTTPStatus classifies a status a server answered for a request or for one
// item of a bulk request: 401/403 pause (credentials or privileges are
// wrong for every record), 408/429/5xx retry, other 4xx dead-letter the
// record. Clients whose servers give a status another meaning (Loki's 404
// is a wrong URL, its 413 a batch too large) decide those before calling it.
func HTTPStatus(code int) Action {
	switch {
	case code == 401 || code == 403:
		return Pause
	case code == 408 || code == 429 || code >= 500:
		return Retry
	case code >= 400:
		return DeadLetter
	}
	return Retry
}

// Config sets the waits (the programs' `retry:` section).
type Config struct {
	// RetryMin and RetryMax bound the exponential backoff of Retry.
	RetryMin time.Duration `yaml:"min_backoff"`
	RetryMax time.Duration `yaml:"max_backoff"`
	// PauseInterval is how often a paused destination is tried again.
	PauseInterval time.Duration `yaml:"pause_interval"`
}

// DefaultConfig is what the programs use unless configured otherwise.
func DefaultConfig() Config {
	return Config{RetryMin: 200 * time.Millisecond, RetryMax: 10 * time.Second, PauseInterval: 30 * time.Second}
}

// Validate names the field at fault.
func (c Config) Validate() error {
	var errs []error
	if c.RetryMin <= 0 {
		errs = append(errs, fmt.Errorf("min_backoff: must be positive, got %s", c.RetryMin))
	}
	if c.RetryMax < c.RetryMin {
		errs = append(errs, fmt.Errorf("max_backoff: must be at least min_backoff (%s), got %s", c.RetryMin, c.RetryMax))
	}
	if c.PauseInterval <= 0 {
		errs = append(errs, fmt.Errorf("pause_interval: must be positive, got %s", c.PauseInterval))
	}
	return errors.Join(errs...)
}

// Policy applies the waits and owns the metrics every client reports
// through. One per program.
type Policy struct {
	cfg     Config
	log     *slog.Logger
	paused  *prometheus.GaugeVec
	retries *prometheus.CounterVec
}

// New builds the program's policy and registers its metrics on reg.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Policy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("error policy: %w", err)
	}
	if log == nil || reg == nil {
		return nil, errors.New("error policy: a logger and a metrics registry are required")
	}
	p := &Policy{cfg: cfg, log: log,
		paused: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "assistlog_destination_paused",
			Help: "1 while a destination refuses everything (credentials, privileges, a missing topic): the stream is paused, nothing is committed or dead-lettered."},
			[]string{"destination"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "assistlog_destination_retries_total",
			Help: "Failed calls that were tried again, by destination and action (retry, pause)."},
			[]string{"destination", "action"}),
	}
	for _, c := range []prometheus.Collector{p.paused, p.retries} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register error policy metrics: %w", err)
		}
	}
	return p, nil
}

// Declare makes a destination's series exist at 0 before its first failure,
// so an alert sees it go from 0 to 1 rather than appear.
func (p *Policy) Declare(destinations ...string) {
	for _, d := range destinations {
		p.paused.WithLabelValues(d).Set(0)
		p.retries.WithLabelValues(d, Retry.String())
		p.retries.WithLabelValues(d, Pause.String())
	}
}

// Attempts tracks one call's tries against one destination.
type Attempts struct {
	p       *Policy
	dest    string
	n       int
	backoff time.Duration
	paused  bool
}

// Start begins a call to dest.
func (p *Policy) Start(dest string) *Attempts {
	return &Attempts{p: p, dest: dest, backoff: p.cfg.RetryMin}
}

// Wait records a failed try and waits before the next one: exponential
// backoff for Retry, the pause interval (and the paused gauge set) for
// Pause. It returns an error only when ctx ended first. It must not be
// called for DeadLetter failures.
func (a *Attempts) Wait(ctx context.Context, err error) error {
	a.n++
	act := Classify(err)
	wait := a.backoff
	switch act {
	case Pause:
		if !a.paused {
			a.p.log.Error("destination refuses everything: paused, nothing is committed or dead-lettered; fix it and it resumes",
				"destination", a.dest, "err", err)
		} else {
			a.p.log.Warn("destination still refusing; paused", "destination", a.dest, "attempt", a.n, "err", err)
		}
		a.paused = true
		a.p.paused.WithLabelValues(a.dest).Set(1)
		wait = a.p.cfg.PauseInterval
	default:
		act = Retry
		a.p.log.Warn("call failed; retrying", "destination", a.dest, "attempt", a.n, "backoff", wait, "err", err)
		a.backoff = min(a.backoff*2, a.p.cfg.RetryMax)
	}
	a.p.retries.WithLabelValues(a.dest, act.String()).Inc()
	wait += time.Duration(rand.Int64N(int64(wait)/4 + 1)) // jitter: instances do not retry in step
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("%s: gave up after %d tries: %w (last error: %v)", a.dest, a.n, ctx.Err(), err)
	case <-t.C:
		return nil
	}
}

// Done records that the destination accepted the call: a pause ends.
func (a *Attempts) Done() {
	if a.paused {
		a.p.log.Info("destination accepts again: resumed", "destination", a.dest, "after_tries", a.n)
		a.p.paused.WithLabelValues(a.dest).Set(0)
		a.paused = false
	}
}

// Do runs op until it succeeds, returns a DeadLetter failure, or ctx ends.
func (p *Policy) Do(ctx context.Context, dest string, op func(context.Context) error) error {
	a := p.Start(dest)
	for {
		err := op(ctx)
		if err == nil {
			a.Done()
			return nil
		}
		if Classify(err) == DeadLetter {
			a.Done()
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w (last error: %v)", dest, ctx.Err(), err)
		}
		if werr := a.Wait(ctx, err); werr != nil {
			return werr
		}
	}
}
