// Package bitrix24 is a REST client for the parts of Bitrix24 CRM assistlog
// uses: leads, duplicate search by phone, activities and batch. It follows
// shared/bitrix24/CONTRACT.md: webhook and OAuth URL forms, a client-side
// leaky bucket matching the portal's, a few quick retries of what the
// portal rejected before running it (503 QUERY_LIMIT_EXCEEDED, waiting until
// operating_reset_at on 429 OPERATION_TIME_LIMIT) and of failed reads,
// error codes that may be empty (then the description decides), and ids
// that arrive as numbers or strings. Every error it returns is classified
// for the one error policy (internal/errpolicy): retry, dead-letter (this
// record can never be accepted) or pause (the portal refuses everything).
package bitrix24

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/assistlog/assistlog/internal/errpolicy"
)

// Destination names Bitrix24 in the error policy's metrics
// (assistlog_destination_paused{destination="bitrix24"}).
const Destination = "bitrix24"

// Config configures a Client. Set WebhookURL, or OAuthURL with AccessToken.
type Config struct {
	// WebhookURL is https://{portal}/rest/{user_id}/{secret}/ (an incoming
	// webhook). It acts as its creator and needs the crm scope.
	WebhookURL string `yaml:"webhook_url"`
	// OAuthURL is the client_endpoint (https://{portal}/rest/) and
	// AccessToken the OAuth token sent as the auth parameter.
	OAuthURL    string `yaml:"oauth_url"`
	AccessToken string `yaml:"access_token"`
	// RatePerSecond and Burst mirror the portal's leaky bucket (2/s and 50
	// on non-enterprise plans), so the client rarely meets a 503.
	RatePerSecond float64 `yaml:"rate_per_second"`
	Burst         int     `yaml:"burst"`
	// Timeout bounds one HTTP request (the cloud allows 60 s).
	Timeout time.Duration `yaml:"timeout"`
	// MaxRetries bounds the quick retries inside one call (of what the
	// portal rejected before running it, and of reads); RetryBackoffMax
	// caps the wait between them. What still fails is returned, classified,
	// and the caller's error policy decides how long to wait.
	MaxRetries      int           `yaml:"max_retries"`
	RetryBackoffMax time.Duration `yaml:"retry_backoff_max"`
	// MaxOperatingWait caps how long a call waits for operating_reset_at.
	MaxOperatingWait time.Duration `yaml:"max_operating_wait"`
	// CAFile is a PEM bundle trusted besides the system roots: a
	// self-hosted portal behind a private CA, or the test fake.
	CAFile string `yaml:"ca_file"`
}

// DefaultConfig has the contract's limits for non-enterprise plans.
func DefaultConfig() Config {
	return Config{RatePerSecond: 2, Burst: 50, Timeout: 30 * time.Second, MaxRetries: 6,
		RetryBackoffMax: 30 * time.Second, MaxOperatingWait: 10 * time.Minute}
}

// Validate names the field at fault.
func (c Config) Validate() error {
	var errs []error
	switch {
	case c.WebhookURL != "" && c.OAuthURL != "":
		errs = append(errs, errors.New("webhook_url, oauth_url: set one, not both"))
	case c.WebhookURL == "" && c.OAuthURL == "":
		errs = append(errs, errors.New("webhook_url: required (or oauth_url with access_token)"))
	case c.OAuthURL != "" && c.AccessToken == "":
		errs = append(errs, errors.New("access_token: required with oauth_url"))
	}
	for name, u := range map[string]string{"webhook_url": c.WebhookURL, "oauth_url": c.OAuthURL} {
		if u == "" {
			continue
		}
		p, err := url.Parse(u)
		if err != nil || p.Host == "" {
			errs = append(errs, fmt.Errorf("%s: not a URL: %q", name, u))
		} else if p.Scheme != "https" {
			errs = append(errs, fmt.Errorf("%s: must be https (the portal answers plain HTTP with INVALID_REQUEST)", name))
		}
	}
	if c.RatePerSecond <= 0 || c.Burst < 1 {
		errs = append(errs, errors.New("rate_per_second, burst: must be positive"))
	}
	if c.Timeout <= 0 || c.RetryBackoffMax <= 0 || c.MaxOperatingWait <= 0 || c.MaxRetries < 0 {
		errs = append(errs, errors.New("timeout, retry_backoff_max, max_operating_wait: must be positive; max_retries: not negative"))
	}
	return errors.Join(errs...)
}

// Error is an error reply from the portal.
type Error struct {
	HTTPStatus  int
	Code        string // may be "" for the legacy CRM methods
	Description string
	// ResetAt is time.operating_reset_at when the reply carried it.
	ResetAt time.Time
}

func (e *Error) Error() string {
	code := e.Code
	if code == "" {
		code = `""`
	}
	return fmt.Sprintf("HTTP %d %s: %s", e.HTTPStatus, code, e.Description)
}

// IsNotFound reports a missing entity: NOT_FOUND, OWNER_NOT_FOUND, or an
// empty code whose description says "not found".
func IsNotFound(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	return e.Code == "NOT_FOUND" || e.Code == "OWNER_NOT_FOUND" ||
		(e.Code == "" && strings.Contains(strings.ToLower(e.Description), "not found"))
}

// ErrMaybeApplied marks a failed call that changes data (lead.add,
// todo.add) when the portal may have carried it out anyway: a 5xx, a reset
// connection or a timeout after the request was sent. Such calls are not
// retried blindly, or a lost reply would create a second lead; the caller
// looks first (e.g. LeadsByOrigin) and only then tries again.
var ErrMaybeApplied = errors.New("bitrix24: the call may have been applied")

// rejectedBeforeRunning reports failures that prove the method did not run:
// rate and overload limits, and a connection that was never made.
func rejectedBeforeRunning(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.Code == "QUERY_LIMIT_EXCEEDED" || e.Code == "OPERATION_TIME_LIMIT" || e.Code == "OVERLOAD_LIMIT"
	}
	return strings.Contains(err.Error(), "connection refused")
}

// refusesEverything are the codes with which the portal refuses every call
// until someone fixes the credentials, the plan or the URL (CONTRACT.md
// section 3): an expired, malformed or wrong token or webhook, a missing
// scope, a plan without REST, a deleted portal, a wrong path.
var refusesEverything = map[string]bool{
	"expired_token": true, "invalid_token": true, "NO_AUTH_FOUND": true, "INVALID_CREDENTIALS": true,
	"insufficient_scope": true, "user_access_error": true, "ACCESS_DENIED": true, "PAYMENT_REQUIRED": true,
	"ERROR_METHOD_NOT_FOUND": true, "INVALID_REQUEST": true, "PORTAL_DELETED": true, "REDIRECT": true,
}

// Action is what the error policy does about a reply: Pause when the
// portal refuses everything (see refusesEverything; "Access denied" is the
// webhook user's CRM permission, the same for every record), Retry for
// rate limits, overload and server errors, DeadLetter for the rest of the
// 4xx: this one record is invalid (ERROR_CORE, a missing owner, a wrong
// date), and asking again cannot help.
func (e *Error) Action() errpolicy.Action {
	switch {
	case refusesEverything[e.Code],
		e.Code == "" && strings.HasPrefix(strings.ToLower(e.Description), "access denied"):
		return errpolicy.Pause
	case e.Code == "QUERY_LIMIT_EXCEEDED", e.Code == "OPERATION_TIME_LIMIT", e.Code == "OVERLOAD_LIMIT":
		return errpolicy.Retry
	case e.HTTPStatus == http.StatusNotFound:
		return errpolicy.Pause // a wrong webhook path; a missing record is a 400
	case e.HTTPStatus < 400 && e.Code == "":
		return errpolicy.Retry // an unreadable reply
	}
	return errpolicy.HTTPStatus(e.HTTPStatus)
}

// Client calls one portal. It is safe for concurrent use.
type Client struct {
	cfg     Config
	http    *http.Client
	limiter *rate.Limiter
	calls   *prometheus.CounterVec
}

// New builds a client that registers its metrics on reg. httpClient may be
// nil (http.DefaultClient's transport with cfg.Timeout).
func New(cfg Config, httpClient *http.Client, reg prometheus.Registerer) (*Client, error) {
	if reg == nil {
		return nil, errors.New("bitrix24: a metrics registry is required")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("bitrix24 config: %w", err)
	}
	if httpClient == nil {
		httpClient = &http.Client{Timeout: cfg.Timeout}
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("bitrix24 config: ca_file: %w", err)
			}
			roots, err := x509.SystemCertPool()
			if err != nil {
				roots = x509.NewCertPool()
			}
			if !roots.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("bitrix24 config: ca_file %s: no PEM certificate in it", cfg.CAFile)
			}
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
			httpClient.Transport = tr
		}
	}
	// A renamed portal answers 302; the POST must be re-sent as it was,
	// not turned into a GET, so redirects are not followed blindly.
	hc := *httpClient
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c := &Client{cfg: cfg, http: &hc, limiter: rate.NewLimiter(rate.Limit(cfg.RatePerSecond), cfg.Burst),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "assistlog_crm_calls_total",
			Help: "Bitrix24 REST calls by method and outcome (ok, retry, error)."}, []string{"method", "outcome"})}
	if err := reg.Register(c.calls); err != nil {
		return nil, fmt.Errorf("register bitrix24 metrics: %w", err)
	}
	return c, nil
}

func (c *Client) endpoint(method string) string {
	if c.cfg.WebhookURL != "" {
		return strings.TrimSuffix(c.cfg.WebhookURL, "/") + "/" + method + ".json"
	}
	return strings.TrimSuffix(c.cfg.OAuthURL, "/") + "/" + method + "?auth=" + url.QueryEscape(c.cfg.AccessToken)
}

// envelope is a reply: "result" on success, "error" otherwise.
type envelope struct {
	Result           json.RawMessage `json:"result"`
	Error            *string         `json:"error"`
	ErrorDescription string          `json:"error_description"`
	Total            *int            `json:"total"`
	Next             *int            `json:"next"`
	Time             struct {
		OperatingResetAt float64 `json:"operating_reset_at"`
	} `json:"time"`
}

// Call runs a method with JSON params and decodes "result" into out (which
// may be nil). Failures the error policy retries are tried again a few
// times (on 429, after operating_reset_at); the last error is returned,
// classified.
func (c *Client) Call(ctx context.Context, method string, params any, out any) error {
	_, err := c.call(ctx, method, params, out, true)
	return err
}

// call runs method; a call that is not idempotent is retried only when the
// failure proves it did not run, otherwise its error wraps ErrMaybeApplied.
func (c *Client) call(ctx context.Context, method string, params any, out any, idempotent bool) (*envelope, error) {
	body, err := json.Marshal(params)
	if err != nil {
		return nil, fmt.Errorf("bitrix24 %s: encode params: %w", method, err)
	}
	backoff := 500 * time.Millisecond
	for attempt := 0; ; attempt++ {
		env, err := c.once(ctx, method, body)
		if err == nil {
			c.calls.WithLabelValues(method, "ok").Inc()
			if out != nil && len(env.Result) > 0 {
				if err := json.Unmarshal(env.Result, out); err != nil {
					return env, fmt.Errorf("bitrix24 %s: decode result %s: %w", method, truncate(env.Result), err)
				}
			}
			return env, nil
		}
		retry := errpolicy.Classify(err) == errpolicy.Retry
		if !idempotent && retry && !rejectedBeforeRunning(err) {
			c.calls.WithLabelValues(method, "error").Inc()
			return nil, fmt.Errorf("bitrix24 %s: %w: %w", method, ErrMaybeApplied, err)
		}
		if !retry || attempt >= c.cfg.MaxRetries || ctx.Err() != nil {
			c.calls.WithLabelValues(method, "error").Inc()
			return nil, err
		}
		c.calls.WithLabelValues(method, "retry").Inc()
		wait := backoff + time.Duration(rand.Int64N(int64(backoff)/2+1)) // jitter: instances do not retry in step
		var e *Error
		if errors.As(err, &e) && e.Code == "OPERATION_TIME_LIMIT" {
			wait = time.Minute // the reply may not say when the budget frees up
			if !e.ResetAt.IsZero() {
				wait = time.Until(e.ResetAt) + 500*time.Millisecond
			}
			wait = max(min(wait, c.cfg.MaxOperatingWait), 100*time.Millisecond)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("bitrix24 %s: %w (last error: %v)", method, ctx.Err(), err)
		case <-time.After(wait):
		}
		backoff = min(backoff*2, c.cfg.RetryBackoffMax)
	}
}

func (c *Client) once(ctx context.Context, method string, body []byte) (*envelope, error) {
	if err := c.limiter.Wait(ctx); err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint(method), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		// The network: retried (an unmarked error is Retry).
		return nil, fmt.Errorf("bitrix24 %s: %w", method, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return nil, fmt.Errorf("bitrix24 %s: read reply: %w", method, err)
	}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		return nil, marked(method, &Error{HTTPStatus: resp.StatusCode, Code: "REDIRECT",
			Description: "portal moved to " + resp.Header.Get("Location") + "; update the URL"})
	}
	var env envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		// A proxy's HTML error page, say: classify by status.
		return nil, marked(method, &Error{HTTPStatus: resp.StatusCode, Description: "unreadable reply: " + truncate(raw)})
	}
	if env.Error != nil || resp.StatusCode != http.StatusOK {
		e := &Error{HTTPStatus: resp.StatusCode, Description: env.ErrorDescription}
		if env.Error != nil {
			e.Code = *env.Error
		}
		if env.Time.OperatingResetAt > 0 {
			e.ResetAt = time.Unix(int64(env.Time.OperatingResetAt), 0)
		}
		return nil, marked(method, e)
	}
	return &env, nil
}

// marked wraps a portal's error reply with the method and its action.
func marked(method string, e *Error) error {
	return errpolicy.Mark(e.Action(), fmt.Errorf("bitrix24 %s: %w", method, e))
}

func truncate(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}

// ID decodes an id sent as a JSON number or a string ("4711").
type ID int64

// UnmarshalJSON accepts 4711 and "4711".
func (id *ID) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "" || s == "null" {
		*id = 0
		return nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("bitrix24: id %s: %w", b, err)
	}
	*id = ID(n)
	return nil
}

// String is the decimal form, as stored in crm_id.
func (id ID) String() string { return strconv.FormatInt(int64(id), 10) }

// Multifield is a PHONE or EMAIL entry.
type Multifield struct {
	Value     string `json:"VALUE"`
	ValueType string `json:"VALUE_TYPE"`
}

// Lead is what assistlog writes and reads of a lead.
type Lead struct {
	ID                ID           `json:"ID,omitempty"`
	Title             string       `json:"TITLE,omitempty"`
	Name              string       `json:"NAME,omitempty"`
	StatusID          string       `json:"STATUS_ID,omitempty"`
	SourceID          string       `json:"SOURCE_ID,omitempty"`
	SourceDescription string       `json:"SOURCE_DESCRIPTION,omitempty"`
	Comments          string       `json:"COMMENTS,omitempty"`
	OriginID          string       `json:"ORIGIN_ID,omitempty"`
	Phone             []Multifield `json:"PHONE,omitempty"`
	// DateCreate is read-only (ISO 8601 with offset); never sent on add.
	DateCreate string `json:"DATE_CREATE,omitempty"`
}

// Created parses DateCreate (the zero time when absent or unreadable).
func (l Lead) Created() time.Time {
	t, _ := time.Parse(time.RFC3339, l.DateCreate)
	return t
}

// LeadAdd creates a lead and returns its id. It is not retried after an
// ambiguous failure (errors.Is(err, ErrMaybeApplied)): look the lead up by
// its ORIGIN_ID before trying again.
func (c *Client) LeadAdd(ctx context.Context, l Lead) (ID, error) {
	var id ID
	_, err := c.call(ctx, "crm.lead.add", map[string]any{"fields": l, "params": map[string]string{"REGISTER_SONET_EVENT": "N"}}, &id, false)
	return id, err
}

// LeadGet reads a lead; IsNotFound(err) when it does not exist.
func (c *Client) LeadGet(ctx context.Context, id ID) (Lead, error) {
	var l Lead
	err := c.Call(ctx, "crm.lead.get", map[string]any{"id": int64(id)}, &l)
	return l, err
}

// LeadsByOrigin lists leads whose ORIGIN_ID is origin, oldest first: the
// way to find the lead made for a conversation again after a restart.
func (c *Client) LeadsByOrigin(ctx context.Context, origin string) ([]Lead, error) {
	var leads []Lead
	err := c.Call(ctx, "crm.lead.list", map[string]any{
		"filter": map[string]any{"ORIGIN_ID": origin}, "select": []string{"ID", "TITLE", "ORIGIN_ID", "STATUS_ID"},
		"order": map[string]string{"ID": "ASC"}, "start": -1,
	}, &leads)
	return leads, err
}

// LeadPageSize is crm.lead.list's fixed page size.
const LeadPageSize = 50

// LeadList returns every lead matching filter (keys as the contract writes
// them, e.g. "%ORIGIN_ID", ">=DATE_CREATE"), oldest id first, with the
// fields a reconciliation needs (ID, TITLE, STATUS_ID, SOURCE_ID,
// ORIGIN_ID, DATE_CREATE, PHONE). It pages the way the contract gives for a
// full export: order by ID ascending, filter ">ID" on the last id seen,
// start=-1 (no row count), until a page holds fewer than 50 rows; offsets
// would skip or repeat rows when leads are added or deleted meanwhile.
// Each page waits for the client's rate limiter. progress, when not nil,
// is called after each page with the rows read so far.
func (c *Client) LeadList(ctx context.Context, filter map[string]any, progress func(pages, rows int)) ([]Lead, error) {
	if _, ok := filter[">ID"]; ok {
		return nil, errors.New("bitrix24 crm.lead.list: the filter may not hold >ID (paging uses it)")
	}
	var all []Lead
	var last ID
	for pages := 1; ; pages++ {
		f := make(map[string]any, len(filter)+1)
		for k, v := range filter {
			f[k] = v
		}
		if last > 0 {
			f[">ID"] = int64(last)
		}
		var page []Lead
		if err := c.Call(ctx, "crm.lead.list", map[string]any{"filter": f,
			"select": []string{"ID", "TITLE", "STATUS_ID", "SOURCE_ID", "ORIGIN_ID", "DATE_CREATE", "PHONE"},
			"order":  map[string]string{"ID": "ASC"}, "start": -1}, &page); err != nil {
			return nil, fmt.Errorf("list leads (page %d, after id %d): %w", pages, last, err)
		}
		all = append(all, page...)
		if progress != nil {
			progress(pages, len(all))
		}
		if len(page) < LeadPageSize {
			return all, nil
		}
		next := page[len(page)-1].ID
		if next <= last {
			return nil, fmt.Errorf("list leads: page %d does not advance past id %d (is the order by ID ignored?)", pages, last)
		}
		last = next
	}
}

// FindLeadsByPhone returns the ids of leads holding phone (exact match on
// the stored number), via crm.duplicate.findbycomm. The portal answers []
// when nothing matches and {"LEAD":[…]} otherwise.
func (c *Client) FindLeadsByPhone(ctx context.Context, phone string) ([]ID, error) {
	var raw json.RawMessage
	if err := c.Call(ctx, "crm.duplicate.findbycomm",
		map[string]any{"type": "PHONE", "values": []string{phone}, "entity_type": "LEAD"}, &raw); err != nil {
		return nil, err
	}
	if t := bytes.TrimSpace(raw); len(t) == 0 || t[0] == '[' {
		return nil, nil
	}
	var byType map[string][]ID
	if err := json.Unmarshal(raw, &byType); err != nil {
		return nil, fmt.Errorf("bitrix24 crm.duplicate.findbycomm: decode %s: %w", truncate(raw), err)
	}
	return byType["LEAD"], nil
}

// Todo is a to-do activity on a lead (crm.activity.todo.add).
type Todo struct {
	LeadID      ID
	Deadline    time.Time
	Title       string
	Description string
}

// TodoAdd adds a to-do to a lead and returns the activity id. It is not
// retried after an ambiguous failure (errors.Is(err, ErrMaybeApplied)):
// look the to-do up with LeadTodos by a marker in its description before
// trying again.
func (c *Client) TodoAdd(ctx context.Context, t Todo) (ID, error) {
	var res struct {
		ID ID `json:"id"`
	}
	_, err := c.call(ctx, "crm.activity.todo.add", map[string]any{
		"ownerTypeId": 1, "ownerId": int64(t.LeadID), "deadline": t.Deadline.Format(todoDeadline),
		"title": t.Title, "description": t.Description,
	}, &res, false)
	return res.ID, err
}

// todoDeadline is how crm.activity.todo.add takes its deadline.
const todoDeadline = "2006-01-02T15:04:05"

// TodoAddCommand is TodoAdd as a batch command ("method?query" in the PHP
// bracket notation, CONTRACT.md section 6, batch). Its result is
// {"id":N}; send it with BatchWrite, which like TodoAdd is not retried
// after an ambiguous failure.
func TodoAddCommand(t Todo) string {
	q := url.Values{"ownerTypeId": {"1"}, "ownerId": {t.LeadID.String()}, "deadline": {t.Deadline.Format(todoDeadline)},
		"title": {t.Title}, "description": {t.Description}}
	return "crm.activity.todo.add?" + q.Encode()
}

// TodoAdded decodes a TodoAddCommand's result.
func TodoAdded(result json.RawMessage) (ID, error) {
	var res struct {
		ID ID `json:"id"`
	}
	if err := json.Unmarshal(result, &res); err != nil {
		return 0, fmt.Errorf("bitrix24 crm.activity.todo.add: decode %s: %w", truncate(result), err)
	}
	if res.ID <= 0 {
		return 0, fmt.Errorf("bitrix24 crm.activity.todo.add: no id in %s", truncate(result))
	}
	return res.ID, nil
}

// LeadTodosCommand is the first page of LeadTodos as a batch command: the
// lead's activities whose description holds marker, oldest first. Its
// result is a page of Activity rows; pass them through WithMarker, and when
// none matches and the batch's Next has the command, the rest are on more
// pages (LeadTodos reads them all).
func LeadTodosCommand(lead ID, marker string) string {
	q := url.Values{"filter[OWNER_TYPE_ID]": {"1"}, "filter[OWNER_ID]": {lead.String()}, "filter[%DESCRIPTION]": {marker},
		"select[0]": {"ID"}, "select[1]": {"DESCRIPTION"}, "order[ID]": {"ASC"}, "start": {"0"}}
	return "crm.activity.list?" + q.Encode()
}

// WithMarker keeps the rows whose description holds marker: the portal's
// filter is a LIKE, where "_" matches any character.
func WithMarker(rows []Activity, marker string) []Activity {
	var out []Activity
	for _, a := range rows {
		if strings.Contains(a.Description, marker) {
			out = append(out, a)
		}
	}
	return out
}

// Activity is a row of crm.activity.list (every value arrives as a string).
type Activity struct {
	ID          ID     `json:"ID"`
	OwnerTypeID ID     `json:"OWNER_TYPE_ID"`
	OwnerID     ID     `json:"OWNER_ID"`
	Subject     string `json:"SUBJECT"`
	Description string `json:"DESCRIPTION"`
	Completed   string `json:"COMPLETED"`
	Deadline    string `json:"DEADLINE"`
}

// ActivityList runs crm.activity.list with filter (keys as the contract
// writes them, e.g. "OWNER_ID", "%DESCRIPTION") and returns every page,
// oldest id first.
func (c *Client) ActivityList(ctx context.Context, filter map[string]any) ([]Activity, error) {
	var all []Activity
	for start := 0; ; {
		var page []Activity
		env, err := c.call(ctx, "crm.activity.list", map[string]any{"filter": filter,
			"select": []string{"ID", "OWNER_TYPE_ID", "OWNER_ID", "SUBJECT", "DESCRIPTION", "COMPLETED", "DEADLINE"},
			"order":  map[string]string{"ID": "ASC"}, "start": start}, &page, true)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if env.Next == nil || *env.Next <= start || len(page) == 0 {
			return all, nil
		}
		start = *env.Next
	}
}

// LeadTodos returns the lead's activities whose description holds marker,
// oldest first: how a to-do made before a crash or behind a lost reply is
// found again. The portal's filter is a LIKE (where "_" matches any
// character), so the description is checked here as well.
func (c *Client) LeadTodos(ctx context.Context, lead ID, marker string) ([]Activity, error) {
	rows, err := c.ActivityList(ctx, map[string]any{"OWNER_TYPE_ID": 1, "OWNER_ID": int64(lead), "%DESCRIPTION": marker})
	if err != nil {
		return nil, err
	}
	return WithMarker(rows, marker), nil
}

// BatchResult is the reply of batch: per-command results and errors, and
// for list commands with another page the offset of that page.
type BatchResult struct {
	Result map[string]json.RawMessage
	Errors map[string]*Error
	Next   map[string]int
}

// Batch runs up to 50 commands ("method?query") in one request, which
// counts once against the rate limit.
func (c *Client) Batch(ctx context.Context, cmds map[string]string, halt bool) (BatchResult, error) {
	return c.batch(ctx, cmds, halt, true)
}

// BatchWrite is Batch for commands that change data (crm.lead.add): like
// LeadAdd it is not retried after an ambiguous failure (errors.Is(err,
// ErrMaybeApplied)); look the records up before sending them again.
func (c *Client) BatchWrite(ctx context.Context, cmds map[string]string, halt bool) (BatchResult, error) {
	return c.batch(ctx, cmds, halt, false)
}

func (c *Client) batch(ctx context.Context, cmds map[string]string, halt, idempotent bool) (BatchResult, error) {
	if len(cmds) > 50 {
		return BatchResult{}, fmt.Errorf("bitrix24 batch: %d commands, at most 50", len(cmds))
	}
	h := 0
	if halt {
		h = 1
	}
	var raw struct {
		Result      json.RawMessage `json:"result"`
		ResultError json.RawMessage `json:"result_error"`
		ResultNext  json.RawMessage `json:"result_next"`
	}
	if _, err := c.call(ctx, "batch", map[string]any{"halt": h, "cmd": cmds}, &raw, idempotent); err != nil {
		return BatchResult{}, err
	}
	out := BatchResult{Result: map[string]json.RawMessage{}, Errors: map[string]*Error{}, Next: map[string]int{}}
	// Empty sections arrive as [] rather than {}.
	if t := bytes.TrimSpace(raw.Result); len(t) > 0 && t[0] == '{' {
		if err := json.Unmarshal(t, &out.Result); err != nil {
			return out, fmt.Errorf("bitrix24 batch: decode result: %w", err)
		}
	}
	if t := bytes.TrimSpace(raw.ResultNext); len(t) > 0 && t[0] == '{' {
		if err := json.Unmarshal(t, &out.Next); err != nil {
			return out, fmt.Errorf("bitrix24 batch: decode result_next: %w", err)
		}
	}
	if t := bytes.TrimSpace(raw.ResultError); len(t) > 0 && t[0] == '{' {
		var errs map[string]struct {
			Error            string `json:"error"`
			ErrorDescription string `json:"error_description"`
		}
		if err := json.Unmarshal(t, &errs); err != nil {
			return out, fmt.Errorf("bitrix24 batch: decode result_error: %w", err)
		}
		for k, e := range errs {
			out.Errors[k] = &Error{HTTPStatus: http.StatusOK, Code: e.Error, Description: e.ErrorDescription}
		}
	}
	return out, nil
}
