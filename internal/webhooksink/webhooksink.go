// Package webhooksink posts selected, already masked events as signed JSON
// to one URL: a Google Apps Script web app, a Make or Zapier hook — the
// path for a business without IT of its own.
//
// A request is a batch: {"schema": "assistlog.webhook.v1", "events": [...]},
// each event the masked event as stored plus "idempotency_key" (its
// event_id). Delivery is at least once: a batch is posted again after a
// crash or a retry whose answer was lost, so a receiver drops keys it has
// seen. Every attempt is signed afresh (see Sign) and carries its signature
// both as headers and as query parameters, because an Apps Script web app
// cannot read request headers.
//
// Failures follow the one error policy (internal/errpolicy): 408, 429, 5xx
// and network errors are retried with backoff; 401/403 pause the stream; any
// other 4xx is a refusal: a batch is split into single events, and each
// event still refused comes back as a Rejection for the caller to
// dead-letter with the receiver's reason. A receiver that cannot set HTTP
// statuses (Apps Script) answers 200 with {"ok": false, "status": N}, which
// counts as status N.
package webhooksink

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/assistlog/assistlog/internal/errpolicy"
	"github.com/assistlog/assistlog/internal/event"
)

// Destination names the webhook in the error policy's metrics.
const Destination = "webhook"

// Schema names the body's format; it changes only with an incompatible body.
const Schema = "assistlog.webhook.v1"

// Headers and query parameters of a request.
const (
	HeaderTimestamp = "X-Assistlog-Timestamp"
	HeaderSignature = "X-Assistlog-Signature"
	ParamTimestamp  = "assistlog_ts"
	ParamSignature  = "assistlog_sig"
)

// Config is the shipper's webhook: section.
type Config struct {
	Enabled bool `yaml:"enabled"`
	// URL receives the POSTs: https, or http to a loopback address.
	URL string `yaml:"url"`
	// Secret keys the HMAC-SHA256 signature (at least 16 characters; write
	// it as ${ENV_VAR}).
	Secret string `yaml:"secret"`
	// EventTypes are the event types posted (at least one).
	EventTypes []string `yaml:"event_types"`
	// Tenants, when set, limits the posts to these tenants.
	Tenants []string `yaml:"tenants"`
	// BatchEvents caps the events of one request.
	BatchEvents int `yaml:"batch_events"`
	// Timeout bounds one request.
	Timeout time.Duration `yaml:"timeout"`
}

// DefaultConfig is off, with the events an owner's sheet usually wants.
func DefaultConfig() Config {
	return Config{EventTypes: []string{string(event.LeadCreated), string(event.AppointmentConfirmed)},
		BatchEvents: 100, Timeout: 30 * time.Second}
}

// Validate names the field at fault (relative to the section).
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "" || err != nil || u.Host == "":
		add("url: must be an absolute https URL, got %q", c.URL)
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopback(u.Hostname()):
	default:
		add("url: must be https (events leave the machine; http only to a loopback address), got %q", c.URL)
	}
	if len(c.Secret) < 16 {
		add("secret: is required, at least 16 characters (write it as ${ENV_VAR})")
	}
	if len(c.EventTypes) == 0 {
		add("event_types: at least one event type is required")
	}
	for _, t := range c.EventTypes {
		if !slices.Contains(event.Types, event.Type(t)) {
			add("event_types: unknown event type %q", t)
		}
	}
	for _, t := range c.Tenants {
		if strings.TrimSpace(t) == "" {
			add("tenants: empty tenant name")
		}
	}
	if c.BatchEvents < 1 {
		add("batch_events: must be at least 1, got %d", c.BatchEvents)
	}
	if c.Timeout <= 0 {
		add("timeout: must be positive, got %s", c.Timeout)
	}
	return errors.Join(errs...)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Selects reports whether e is one the webhook posts.
func (c Config) Selects(e *event.Event) bool {
	return slices.Contains(c.EventTypes, string(e.Type)) && (len(c.Tenants) == 0 || slices.Contains(c.Tenants, e.Tenant))
}

// Sign is the signature of one request: "v1=" and the lowercase hex of
// HMAC-SHA256(secret, "<timestamp>.<body>"), the timestamp in Unix seconds
// as sent. The timestamp is signed too, so a receiver that refuses
// timestamps older than a few minutes cannot be fed a recorded request
// again.
func Sign(secret string, timestamp int64, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(strconv.FormatInt(timestamp, 10)))
	mac.Write([]byte("."))
	mac.Write(body)
	return "v1=" + hex.EncodeToString(mac.Sum(nil))
}

// Item is one masked event to post; Ref is the caller's handle, returned
// with a rejection.
type Item struct {
	Event     *event.Event
	PhoneHash string // the keyed hash of the number, "" if none
	Ref       any
}

// Rejection is an event the receiver refused for good, and why.
type Rejection struct {
	Item   Item
	Reason string
}

// Body renders items as one request body. It is pure ASCII (characters
// beyond it are \u escapes), so the bytes a receiver signs are the bytes
// sent whatever its charset handling (Apps Script's postData.contents).
func Body(items []Item) ([]byte, error) {
	evs := make([]json.RawMessage, 0, len(items))
	for _, it := range items {
		b, err := it.Event.Marshal()
		if err != nil {
			return nil, fmt.Errorf("encode event %s: %w", it.Event.EventID, err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("encode event %s: %w", it.Event.EventID, err)
		}
		m["idempotency_key"] = it.Event.EventID
		if it.PhoneHash != "" {
			m["user_phone_hash"] = it.PhoneHash
		}
		if b, err = json.Marshal(m); err != nil {
			return nil, fmt.Errorf("encode event %s: %w", it.Event.EventID, err)
		}
		evs = append(evs, b)
	}
	b, err := json.Marshal(struct {
		Schema string            `json:"schema"`
		Events []json.RawMessage `json:"events"`
	}{Schema, evs})
	if err != nil {
		return nil, err
	}
	return asciiJSON(b), nil
}

// asciiJSON escapes every non-ASCII character of encoded JSON as \uXXXX
// (they occur only inside strings, where the escape means the same).
func asciiJSON(b []byte) []byte {
	var out bytes.Buffer
	for _, r := range string(b) {
		if r < 0x80 {
			out.WriteRune(r)
			continue
		}
		for _, u := range utf16.Encode([]rune{r}) {
			fmt.Fprintf(&out, `\u%04x`, u)
		}
	}
	return out.Bytes()
}

// Sink posts to one URL.
type Sink struct {
	cfg  Config
	pol  *errpolicy.Policy
	http *http.Client
	log  *slog.Logger
	now  func() time.Time
	m    metrics
}

type metrics struct {
	sent     prometheus.Counter
	failed   *prometheus.CounterVec
	rejected prometheus.Counter
}

// New builds a sink whose failures follow pol.
func New(cfg Config, pol *errpolicy.Policy, log *slog.Logger, reg prometheus.Registerer) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("webhook config: %w", err)
	}
	if pol == nil || log == nil || reg == nil {
		return nil, errors.New("webhook: an error policy, a logger and a metrics registry are required")
	}
	s := &Sink{cfg: cfg, pol: pol, http: &http.Client{Timeout: cfg.Timeout}, log: log, now: time.Now, m: metrics{
		sent: prometheus.NewCounter(prometheus.CounterOpts{Name: "assistlog_webhook_sent_events_total",
			Help: "Events the webhook receiver acknowledged (2xx); a replay counts again."}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "assistlog_webhook_failed_requests_total",
			Help: "Requests that failed, by the error policy's action (retry, pause, dead_letter)."}, []string{"action"}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{Name: "assistlog_webhook_rejected_events_total",
			Help: "Events the receiver refused for good (4xx), dead-lettered with its reason."}),
	}}
	for _, col := range []prometheus.Collector{s.m.sent, s.m.failed, s.m.rejected} {
		if err := reg.Register(col); err != nil {
			return nil, fmt.Errorf("register webhook metrics: %w", err)
		}
	}
	for _, a := range []errpolicy.Action{errpolicy.Retry, errpolicy.Pause, errpolicy.DeadLetter} {
		s.m.failed.WithLabelValues(a.String())
	}
	pol.Declare(Destination)
	return s, nil
}

// Selects reports whether e is one the sink posts.
func (s *Sink) Selects(e *event.Event) bool { return s.cfg.Selects(e) }

// Send posts items in batches and returns once the receiver acknowledged
// every one it will accept; the ones it refused come back as rejections.
// Other failures follow the error policy until ctx ends; then ctx's error
// is returned and nothing may be taken as delivered.
func (s *Sink) Send(ctx context.Context, items []Item) ([]Rejection, error) {
	var rejected []Rejection
	for start := 0; start < len(items); start += s.cfg.BatchEvents {
		r, err := s.verdicts(ctx, items[start:min(start+s.cfg.BatchEvents, len(items))])
		rejected = append(rejected, r...)
		if err != nil {
			return rejected, err
		}
	}
	return rejected, nil
}

// verdicts posts a batch until it is accepted or refused; a refused batch
// is posted again event by event, so one event the receiver cannot take
// does not cost the others.
func (s *Sink) verdicts(ctx context.Context, items []Item) ([]Rejection, error) {
	body, err := Body(items)
	if err != nil {
		return nil, err
	}
	reason, err := s.postRetrying(ctx, body, len(items))
	switch {
	case err != nil:
		return nil, err
	case reason == "":
		s.m.sent.Add(float64(len(items)))
		return nil, nil
	case len(items) == 1:
		s.m.rejected.Inc()
		s.log.Warn("webhook receiver refused an event", "event_id", items[0].Event.EventID, "reason", reason)
		return []Rejection{{Item: items[0], Reason: reason}}, nil
	}
	s.log.Warn("webhook receiver refused a batch; posting its events one by one", "events", len(items), "reason", reason)
	var rejected []Rejection
	for _, it := range items {
		r, err := s.verdicts(ctx, []Item{it})
		rejected = append(rejected, r...)
		if err != nil {
			return rejected, err
		}
	}
	return rejected, nil
}

// postRetrying posts body until the receiver accepts it ("" returned) or
// refuses it for good (the reason returned).
func (s *Sink) postRetrying(ctx context.Context, body []byte, n int) (string, error) {
	att := s.pol.Start(Destination)
	for {
		status, msg, err := s.postOnce(ctx, body)
		if err == nil {
			status = answered(status, msg)
			if status >= 200 && status < 300 {
				att.Done()
				return "", nil
			}
			err = fmt.Errorf("HTTP %d: %s", status, msg)
			act := errpolicy.HTTPStatus(status)
			if status < 400 {
				act = errpolicy.DeadLetter // a 1xx/3xx left unfollowed: the URL is not a receiver
			}
			if act == errpolicy.DeadLetter {
				att.Done()
				s.m.failed.WithLabelValues(act.String()).Inc()
				return err.Error(), nil
			}
			err = errpolicy.Mark(act, err)
		}
		if ctx.Err() != nil {
			return "", fmt.Errorf("webhook post of %d events: %w (last error: %v)", n, ctx.Err(), err)
		}
		s.m.failed.WithLabelValues(errpolicy.Classify(err).String()).Inc()
		if werr := att.Wait(ctx, fmt.Errorf("post of %d events: %w", n, err)); werr != nil {
			return "", fmt.Errorf("webhook: %w", werr)
		}
	}
}

// answered is the status a receiver meant. One that cannot set an HTTP
// status (an Apps Script web app always answers 200) says
// {"ok": false, "status": 401, "error": "…"} instead; the status in it
// counts as the request's, so a wrong secret pauses the stream rather than
// being taken for delivery. Without a usable status, ok:false is a refusal
// (400).
func answered(status int, msg string) int {
	if status < 200 || status >= 300 || !strings.HasPrefix(msg, "{") {
		return status
	}
	var a struct {
		OK     *bool `json:"ok"`
		Status int   `json:"status"`
	}
	if json.Unmarshal([]byte(msg), &a) != nil || a.OK == nil || *a.OK {
		return status
	}
	if a.Status >= 400 && a.Status < 600 {
		return a.Status
	}
	return http.StatusBadRequest
}

// postOnce signs and posts body once, with a fresh timestamp: a retry after
// a long pause is not refused as a replay.
func (s *Sink) postOnce(ctx context.Context, body []byte) (int, string, error) {
	ts := s.now().Unix()
	sig := Sign(s.cfg.Secret, ts, body)
	u, _ := url.Parse(s.cfg.URL) // validated
	q := u.Query()
	q.Set(ParamTimestamp, strconv.FormatInt(ts, 10))
	q.Set(ParamSignature, sig)
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, sig)
	resp, err := s.http.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	return resp.StatusCode, strings.TrimSpace(string(msg)), nil
}
