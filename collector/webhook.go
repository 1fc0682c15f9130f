package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/assistlog/assistlog/internal/deadletter"
	"github.com/assistlog/assistlog/internal/mapping"
	"github.com/assistlog/assistlog/internal/tlsreload"
)

// Webhook headers for HMAC-signed requests (the alternative to a bearer token).
const (
	HeaderTenant    = "X-Assistlog-Tenant"
	HeaderSignature = "X-Assistlog-Signature" // "sha256=" + hex HMAC-SHA256 of the body
)

// webhook takes events over HTTP: POST /v1/events with one JSON event or
// an NDJSON batch. It answers 202 only after Kafka acknowledged them.
type webhook struct {
	cfg      WebhookConfig
	p        *pipeline
	log      *slog.Logger
	inFlight chan struct{}
	// tenants' mappings for /v1/events (nil: v1 as sent); hooks by name.
	mappings map[string]*mapping.Mapping
	hooks    map[string]*hook
	hm       hookMetrics
}

// newWebhook compiles the tenants' and hooks' mappings (validated with the
// configuration, so an error here is a bug rather than a typo).
func newWebhook(cfg WebhookConfig, p *pipeline, log *slog.Logger, reg prometheus.Registerer) (*webhook, error) {
	h := &webhook{cfg: cfg, p: p, log: log, inFlight: make(chan struct{}, cfg.MaxInFlight),
		mappings: map[string]*mapping.Mapping{}, hooks: map[string]*hook{}}
	for i, t := range cfg.Tenants {
		if t.Mapping.IsZero() {
			continue
		}
		m, err := mapping.Compile(t.Mapping)
		if err != nil {
			return nil, fmt.Errorf("webhook.tenants[%d].mapping: %w", i, err)
		}
		h.mappings[t.Tenant] = m
	}
	for i, c := range cfg.Hooks {
		m, err := mapping.Compile(c.Mapping)
		if err != nil {
			return nil, fmt.Errorf("webhook.hooks[%d].mapping: %w", i, err)
		}
		h.hooks[c.Name] = &hook{cfg: c, m: m}
	}
	var err error
	if h.hm, err = newHookMetrics(reg); err != nil {
		return nil, err
	}
	return h, nil
}

// webhookTLS is the webhook's TLS: the certificate comes from a reloader
// that reads the files again when they change (a renewal needs no
// restart; broken new files are reported and the old pair goes on being
// served), and a client CA, when configured, is required of every client.
func webhookTLS(cfg WebhookTLSConfig, log *slog.Logger, reg prometheus.Registerer) (*tls.Config, error) {
	r, err := tlsreload.New(tlsreload.Config{Listener: "webhook", CertFile: cfg.CertFile, KeyFile: cfg.KeyFile}, log, reg)
	if err != nil {
		return nil, fmt.Errorf("webhook.tls: %w", err)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.GetCertificate}
	if cfg.ClientCAFile != "" {
		if tc.ClientCAs, err = certPool(cfg.ClientCAFile); err != nil {
			return nil, fmt.Errorf("webhook.tls.client_ca_file: %w", err)
		}
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// Rejection reports one bad element of a batch.
type Rejection struct {
	Index  int    `json:"index"`
	Reason string `json:"reason"`
	Error  string `json:"error"`
}

// Response is the body of every answer.
type Response struct {
	Accepted int         `json:"accepted"`
	Rejected []Rejection `json:"rejected"`
	// Skipped lists platform notifications that carry no v1 event
	// (delivery receipts, echoes, other update types); docs/ingest.md.
	Skipped []string `json:"skipped,omitempty"`
	Error   string   `json:"error,omitempty"`
}

func reply(w http.ResponseWriter, status int, r Response) {
	if r.Rejected == nil {
		r.Rejected = []Rejection{}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(r)
}

func (h *webhook) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/events", h.events)
	mux.HandleFunc("POST /v1/hooks/{name}", h.hookHandler)
	mux.HandleFunc("GET /v1/hooks/{name}", h.hookHandler)
	return mux
}

// authenticate returns the tenant the request may write for.
func (h *webhook) authenticate(r *http.Request, body []byte) (tenant string, status int, msg string) {
	if auth := r.Header.Get("Authorization"); auth != "" {
		token, ok := strings.CutPrefix(auth, "Bearer ")
		if !ok {
			return "", http.StatusUnauthorized, "Authorization must be a Bearer token"
		}
		for _, t := range h.cfg.Tenants {
			for _, want := range t.Tokens {
				if subtle.ConstantTimeCompare([]byte(token), []byte(want)) == 1 {
					return t.Tenant, 0, ""
				}
			}
		}
		return "", http.StatusUnauthorized, "unknown token"
	}
	if sig := r.Header.Get(HeaderSignature); sig != "" {
		name := r.Header.Get(HeaderTenant)
		for _, t := range h.cfg.Tenants {
			if t.Tenant != name || t.HMACSecret == "" {
				continue
			}
			mac := hmac.New(sha256.New, []byte(t.HMACSecret))
			mac.Write(body)
			want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
			if hmac.Equal([]byte(sig), []byte(want)) {
				return t.Tenant, 0, ""
			}
			return "", http.StatusUnauthorized, "signature does not match the body"
		}
		return "", http.StatusUnauthorized, "no HMAC secret for tenant " + fmt.Sprintf("%q", name)
	}
	return "", http.StatusUnauthorized, "missing credentials: send Authorization: Bearer <token>, or " + HeaderTenant + " and " + HeaderSignature
}

// admit takes a slot of webhook.max_in_flight, or answers 429 and
// returns false; the caller releases the slot with release.
func (h *webhook) admit(w http.ResponseWriter) bool {
	select {
	case h.inFlight <- struct{}{}:
		return true
	default:
		w.Header().Set("Retry-After", "1")
		reply(w, http.StatusTooManyRequests, Response{Error: "too many requests in flight; retry"})
		return false
	}
}

func (h *webhook) release() { <-h.inFlight }

// readBody reads a request body up to webhook.max_body_bytes, answering 413
// (with hint) or 400 and returning false when it cannot.
func (h *webhook) readBody(w http.ResponseWriter, r *http.Request, hint string) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			reply(w, http.StatusRequestEntityTooLarge, Response{Error: fmt.Sprintf("body over %d bytes (webhook.max_body_bytes)%s", h.cfg.MaxBodyBytes, hint)})
			return nil, false
		}
		reply(w, http.StatusBadRequest, Response{Error: "read body: " + err.Error()})
		return nil, false
	}
	return body, true
}

func (h *webhook) events(w http.ResponseWriter, r *http.Request) {
	if !h.admit(w) {
		return
	}
	defer h.release()
	body, ok := h.readBody(w, r, "; split the batch")
	if !ok {
		return
	}
	tenant, status, msg := h.authenticate(r, body)
	if status != 0 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="assistlog"`)
		reply(w, status, Response{Error: msg})
		return
	}

	// One JSON object, or one per line (NDJSON).
	var items [][]byte
	for _, line := range bytes.Split(body, []byte("\n")) {
		if len(bytes.TrimSpace(line)) > 0 {
			items = append(items, bytes.TrimRight(line, "\r"))
		}
	}
	if len(items) == 0 {
		reply(w, http.StatusBadRequest, Response{Error: "empty body: send one JSON event or NDJSON"})
		return
	}
	var msgs []kafkago.Message
	var rejected []Rejection
	for i, raw := range items {
		d := h.p.decode(raw, func() string { return webhookEventID(tenant, raw) }, deadletter.Record{Source: "webhook", Offset: int64(i), Tenant: tenant}, h.mappings[tenant])
		if d.rejected == nil && d.event.Tenant != tenant {
			reply(w, http.StatusForbidden, Response{Error: fmt.Sprintf("event %d is for tenant %q; these credentials are for %q", i, d.event.Tenant, tenant)})
			return
		}
		if d.rejected != nil {
			rejected = append(rejected, Rejection{Index: i, Reason: d.rejected.Reason, Error: d.rejected.Error})
		}
		msgs = append(msgs, d.msg)
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.ProduceTimeout)
	defer cancel()
	if err := h.p.out.Send(ctx, msgs); err != nil {
		h.log.Warn("webhook batch not acknowledged by Kafka", "tenant", tenant, "events", len(msgs), "err", err)
		w.Header().Set("Retry-After", "5")
		reply(w, http.StatusServiceUnavailable, Response{Error: "events not stored: Kafka unavailable; retry the same request"})
		return
	}
	accepted := len(items) - len(rejected)
	h.p.m.events.WithLabelValues("webhook").Add(float64(accepted))
	for _, rj := range rejected {
		h.p.m.deadLetters.WithLabelValues("webhook", rj.Reason).Inc()
	}
	status = http.StatusAccepted
	if accepted == 0 {
		status = http.StatusBadRequest
	}
	reply(w, status, Response{Accepted: accepted, Rejected: rejected})
}
