package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/assistlog/assistlog/internal/deadletter"
	"github.com/assistlog/assistlog/internal/mapping"
)

// Hook kinds: how a request is authenticated and what its body is.
const (
	HookJSON      = "json"      // any platform: JSON/NDJSON through the hook's mapping; bearer token or HMAC
	HookTelegram  = "telegram"  // Telegram Bot API Update; X-Telegram-Bot-Api-Secret-Token
	HookWhatsApp  = "whatsapp"  // Meta WhatsApp Cloud API; X-Hub-Signature-256, GET handshake
	HookInstagram = "instagram" // Meta Instagram messaging; X-Hub-Signature-256, GET handshake
)

// Platform headers.
const (
	HeaderTelegramSecret = "X-Telegram-Bot-Api-Secret-Token"
	HeaderHubSignature   = "X-Hub-Signature-256" // "sha256=" + hex HMAC-SHA256 of the body with the app secret
)

// HookConfig is one channel webhook at /v1/hooks/<name>. Credentials may be
// written as ${ENV_VAR}.
type HookConfig struct {
	Name   string `yaml:"name"`
	Kind   string `yaml:"kind"`
	Tenant string `yaml:"tenant"`
	// json: a request carries Authorization: Bearer <one of tokens>, or
	// X-Assistlog-Signature: sha256=<hex HMAC-SHA256 of the body>.
	Tokens     []string `yaml:"tokens"`
	HMACSecret string   `yaml:"hmac_secret"`
	// telegram: the secret_token given to setWebhook.
	SecretToken string `yaml:"secret_token"`
	// whatsapp, instagram: the Meta app secret (signatures) and the verify
	// token typed into the app's webhook settings (GET handshake).
	AppSecret   string `yaml:"app_secret"`
	VerifyToken string `yaml:"verify_token"`
	// Mapping turns a json hook's body into events; for the platform kinds
	// it applies to the events they produce (time_zone, values, defaults).
	Mapping mapping.Config `yaml:"mapping"`
}

var reHookName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// validateHooks checks webhook.hooks, naming each field.
func validateHooks(hooks []HookConfig) []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	seen := map[string]bool{}
	for i, h := range hooks {
		f := fmt.Sprintf("webhook.hooks[%d]", i)
		if !reHookName.MatchString(h.Name) {
			add("%s.name: must be lower-case letters, digits, _ and - (it is the URL path /v1/hooks/<name>), got %q", f, h.Name)
		}
		if seen[h.Name] {
			add("%s.name: %q listed twice", f, h.Name)
		}
		seen[h.Name] = true
		if !reTenant.MatchString(h.Tenant) {
			add("%s.tenant: must be a tenant name (lower-case letters, digits, -), got %q", f, h.Tenant)
		}
		secret := func(name, v string) {
			if v == "" {
				add("%s.%s: is required for kind %s", f, name, h.Kind)
			} else if len(v) < 16 {
				add("%s.%s: must be at least 16 characters", f, name)
			}
		}
		unused := func(names ...string) {
			vals := map[string]bool{"tokens": len(h.Tokens) > 0, "hmac_secret": h.HMACSecret != "", "secret_token": h.SecretToken != "",
				"app_secret": h.AppSecret != "", "verify_token": h.VerifyToken != ""}
			for _, n := range names {
				if vals[n] {
					add("%s.%s: is not used by kind %s; remove it", f, n, h.Kind)
				}
			}
		}
		switch h.Kind {
		case HookJSON:
			if len(h.Tokens) == 0 && h.HMACSecret == "" {
				add("%s: kind json needs tokens or hmac_secret", f)
			}
			for j, t := range h.Tokens {
				if len(t) < 16 {
					add("%s.tokens[%d]: must be at least 16 characters", f, j)
				}
			}
			if h.HMACSecret != "" && len(h.HMACSecret) < 16 {
				add("%s.hmac_secret: must be at least 16 characters", f)
			}
			unused("secret_token", "app_secret", "verify_token")
		case HookTelegram:
			secret("secret_token", h.SecretToken)
			if h.SecretToken != "" && !regexp.MustCompile(`^[A-Za-z0-9_-]{1,256}$`).MatchString(h.SecretToken) {
				add("%s.secret_token: Telegram allows 1-256 characters A-Z, a-z, 0-9, _ and -", f)
			}
			unused("tokens", "hmac_secret", "app_secret", "verify_token")
		case HookWhatsApp, HookInstagram:
			secret("app_secret", h.AppSecret)
			secret("verify_token", h.VerifyToken)
			unused("tokens", "hmac_secret", "secret_token")
		default:
			add("%s.kind: must be json, telegram, whatsapp or instagram, got %q", f, h.Kind)
		}
		if _, err := mapping.Compile(h.Mapping); err != nil {
			for _, e := range splitJoined(err) {
				add("%s.mapping.%v", f, e)
			}
		}
	}
	return errs
}

func splitJoined(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// hook is a configured, compiled channel webhook.
type hook struct {
	cfg HookConfig
	m   *mapping.Mapping
}

// hookMetrics count what platform notifications became.
type hookMetrics struct {
	skipped *prometheus.CounterVec
}

func newHookMetrics(reg prometheus.Registerer) (hookMetrics, error) {
	m := hookMetrics{skipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "assistlog_collector_hook_notifications_skipped_total",
		Help: "Platform notifications that carry no schema v1 event (delivery receipts, echoes of the business's own messages, other update types), by hook and what they were."},
		[]string{"hook", "what"})}
	if err := reg.Register(m.skipped); err != nil {
		return m, fmt.Errorf("register hook metrics: %w", err)
	}
	return m, nil
}

// item is one thing a platform request carries: an event candidate in v1
// shape, a dead letter (what it was and why it could not be converted),
// or a notification that is no event.
type item struct {
	obj     map[string]any
	id      string // derived event id (the platform's message id, hashed)
	bad     string // why it could not be converted
	skipped string // what it was, when it is no event
}

// hookHandler serves POST (and for Meta GET) /v1/hooks/{name}.
func (h *webhook) hookHandler(w http.ResponseWriter, r *http.Request) {
	hk, ok := h.hooks[r.PathValue("name")]
	if !ok {
		reply(w, http.StatusNotFound, Response{Error: fmt.Sprintf("no hook %q (webhook.hooks)", r.PathValue("name"))})
		return
	}
	if r.Method == http.MethodGet {
		h.metaVerify(w, r, hk)
		return
	}
	if !h.admit(w) {
		return
	}
	defer h.release()
	body, ok := h.readBody(w, r, "")
	if !ok {
		return
	}
	if status, msg := hk.authenticate(r, body); status != 0 {
		h.log.Warn("hook request refused", "hook", hk.cfg.Name, "status", status, "reason", msg)
		reply(w, status, Response{Error: msg})
		return
	}
	if hk.cfg.Kind == HookJSON {
		h.jsonHook(w, r, hk, body)
		return
	}
	var items []item
	switch hk.cfg.Kind {
	case HookTelegram:
		items = telegramItems(hk.cfg.Name, body)
	case HookWhatsApp:
		items = whatsappItems(body)
	case HookInstagram:
		items = instagramItems(body)
	}
	var msgs []kafkago.Message
	resp := Response{}
	for i, it := range items {
		rec := deadletter.Record{Source: "hook:" + hk.cfg.Name, Offset: int64(i), Tenant: hk.cfg.Tenant, Raw: body}
		switch {
		case it.skipped != "":
			h.hm.skipped.WithLabelValues(hk.cfg.Name, it.skipped).Inc()
			resp.Skipped = append(resp.Skipped, it.skipped)
			continue
		case it.bad != "":
			rec.Reason, rec.Error, rec.Step = ReasonHookPayload, it.bad, "convert"
			msgs = append(msgs, rec.Message(h.p.dlqTopic))
			resp.Rejected = append(resp.Rejected, Rejection{Index: i, Reason: rec.Reason, Error: it.bad})
			continue
		}
		e, value, err := hk.m.ApplyObject(it.obj, mapping.Input{DefaultID: it.id, Tenant: hk.cfg.Tenant})
		if err == nil && e.Tenant != hk.cfg.Tenant {
			err = fmt.Errorf("mapping set tenant %q; hook %s is for %q", e.Tenant, hk.cfg.Name, hk.cfg.Tenant)
		}
		if err != nil {
			rec.Reason, rec.Error, rec.Step = ReasonMapping, err.Error(), mapping.StepOf(err)
			msgs = append(msgs, rec.Message(h.p.dlqTopic))
			resp.Rejected = append(resp.Rejected, Rejection{Index: i, Reason: rec.Reason, Error: err.Error()})
			continue
		}
		msgs = append(msgs, h.p.eventMessage(e, value, rec))
		resp.Accepted++
	}
	if !h.send(w, r, hk.cfg.Tenant, msgs) {
		return
	}
	h.p.m.events.WithLabelValues("webhook").Add(float64(resp.Accepted))
	for _, rj := range resp.Rejected {
		h.p.m.deadLetters.WithLabelValues("webhook", rj.Reason).Inc()
	}
	// 200 even when an item was dead-lettered: it is stored with its error,
	// and a platform retrying the same bytes would not make it better.
	reply(w, http.StatusOK, resp)
}

// ReasonHookPayload is the dead-letter reason of an authenticated platform
// request whose body is not the documented shape.
const ReasonHookPayload = "hook_payload"

// send writes msgs to Kafka, answering 503 (the platforms retry) when it
// cannot; false when it answered.
func (h *webhook) send(w http.ResponseWriter, r *http.Request, tenant string, msgs []kafkago.Message) bool {
	if len(msgs) == 0 {
		return true
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.ProduceTimeout)
	defer cancel()
	if err := h.p.out.Send(ctx, msgs); err != nil {
		h.log.Warn("hook batch not acknowledged by Kafka", "tenant", tenant, "messages", len(msgs), "err", err)
		w.Header().Set("Retry-After", "5")
		reply(w, http.StatusServiceUnavailable, Response{Error: "events not stored: Kafka unavailable; retry the same request"})
		return false
	}
	return true
}

// jsonHook is the generic webhook: one JSON object or NDJSON, each mapped.
func (h *webhook) jsonHook(w http.ResponseWriter, r *http.Request, hk *hook, body []byte) {
	var lines [][]byte
	for _, line := range bytes.Split(body, []byte("\n")) {
		if len(bytes.TrimSpace(line)) > 0 {
			lines = append(lines, bytes.TrimRight(line, "\r"))
		}
	}
	if len(lines) == 0 {
		reply(w, http.StatusBadRequest, Response{Error: "empty body: send one JSON object or NDJSON"})
		return
	}
	var msgs []kafkago.Message
	resp := Response{}
	for i, raw := range lines {
		rec := deadletter.Record{Source: "hook:" + hk.cfg.Name, Offset: int64(i), Tenant: hk.cfg.Tenant}
		d := h.p.decode(raw, func() string { return webhookEventID(hk.cfg.Tenant, raw) }, rec, hk.m)
		if d.rejected == nil && d.event.Tenant != hk.cfg.Tenant {
			reply(w, http.StatusForbidden, Response{Error: fmt.Sprintf("event %d is for tenant %q; hook %s is for %q", i, d.event.Tenant, hk.cfg.Name, hk.cfg.Tenant)})
			return
		}
		if d.rejected != nil {
			resp.Rejected = append(resp.Rejected, Rejection{Index: i, Reason: d.rejected.Reason, Error: d.rejected.Error})
		} else {
			resp.Accepted++
		}
		msgs = append(msgs, d.msg)
	}
	if !h.send(w, r, hk.cfg.Tenant, msgs) {
		return
	}
	h.p.m.events.WithLabelValues("webhook").Add(float64(resp.Accepted))
	for _, rj := range resp.Rejected {
		h.p.m.deadLetters.WithLabelValues("webhook", rj.Reason).Inc()
	}
	status := http.StatusAccepted
	if resp.Accepted == 0 {
		status = http.StatusBadRequest
	}
	reply(w, status, resp)
}

// authenticate checks a request the way the hook's platform signs it:
// 401 when credentials are missing, 403 when they are wrong.
func (hk *hook) authenticate(r *http.Request, body []byte) (int, string) {
	c := hk.cfg
	switch c.Kind {
	case HookJSON:
		if auth := r.Header.Get("Authorization"); auth != "" {
			token, ok := strings.CutPrefix(auth, "Bearer ")
			if !ok {
				return http.StatusUnauthorized, "Authorization must be a Bearer token"
			}
			for _, want := range c.Tokens {
				if subtle.ConstantTimeCompare([]byte(token), []byte(want)) == 1 {
					return 0, ""
				}
			}
			return http.StatusForbidden, "unknown token"
		}
		if sig := r.Header.Get(HeaderSignature); sig != "" && c.HMACSecret != "" {
			if !hmac.Equal([]byte(sig), []byte(signBody(c.HMACSecret, body))) {
				return http.StatusForbidden, HeaderSignature + " does not match the body"
			}
			return 0, ""
		}
		return http.StatusUnauthorized, "missing credentials: send Authorization: Bearer <token> or " + HeaderSignature
	case HookTelegram:
		got := r.Header.Get(HeaderTelegramSecret)
		if got == "" {
			return http.StatusUnauthorized, "missing " + HeaderTelegramSecret + " (setWebhook with secret_token)"
		}
		if subtle.ConstantTimeCompare([]byte(got), []byte(c.SecretToken)) != 1 {
			return http.StatusForbidden, HeaderTelegramSecret + " does not match secret_token"
		}
		return 0, ""
	default: // Meta
		sig := r.Header.Get(HeaderHubSignature)
		if sig == "" {
			return http.StatusUnauthorized, "missing " + HeaderHubSignature
		}
		if !hmac.Equal([]byte(sig), []byte(signBody(c.AppSecret, body))) {
			return http.StatusForbidden, HeaderHubSignature + " does not match the body signed with the app secret"
		}
		return 0, ""
	}
}

// signBody is "sha256=" + hex HMAC-SHA256: the form of both
// X-Assistlog-Signature and Meta's X-Hub-Signature-256.
func signBody(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// metaVerify answers Meta's subscription handshake: GET with
// hub.mode=subscribe, hub.verify_token and hub.challenge, echoing the
// challenge when the token matches.
func (h *webhook) metaVerify(w http.ResponseWriter, r *http.Request, hk *hook) {
	if hk.cfg.Kind != HookWhatsApp && hk.cfg.Kind != HookInstagram {
		w.Header().Set("Allow", "POST")
		reply(w, http.StatusMethodNotAllowed, Response{Error: "GET is Meta's verification handshake; hook " + hk.cfg.Name + " is kind " + hk.cfg.Kind})
		return
	}
	q := r.URL.Query()
	if q.Get("hub.mode") != "subscribe" || q.Get("hub.challenge") == "" {
		reply(w, http.StatusBadRequest, Response{Error: "verification needs hub.mode=subscribe, hub.verify_token and hub.challenge"})
		return
	}
	if subtle.ConstantTimeCompare([]byte(q.Get("hub.verify_token")), []byte(hk.cfg.VerifyToken)) != 1 {
		h.log.Warn("meta verification refused: wrong verify token", "hook", hk.cfg.Name)
		reply(w, http.StatusForbidden, Response{Error: "hub.verify_token does not match verify_token"})
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = io.WriteString(w, q.Get("hub.challenge"))
}

// derivedID is a platform message id made into a v1 event id: the id
// itself may hold characters v1 does not allow ("=" in a wamid), and the
// same notification retried yields the same id.
func derivedID(prefix string, parts ...string) string {
	s := sha256.New()
	for _, p := range parts {
		s.Write([]byte(p))
		s.Write([]byte{0})
	}
	return prefix + "-" + hex.EncodeToString(s.Sum(nil)[:12])
}

// decodeNumber decodes with numbers kept exact (ids beyond 2^53).
func decodeNumber(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	return d.Decode(v)
}
