// Package bitrix24test is a fake Bitrix24 portal: a real HTTPS server that
// follows shared/bitrix24/CONTRACT.md — HTTP 200 envelopes with "time",
// legacy CRM errors as HTTP 400 with an empty code, ids as JSON integers
// from add methods and as strings in get/list replies, [] for an empty
// findbycomm, batch with result_error, and a real leaky bucket that answers
// 503 QUERY_LIMIT_EXCEEDED. It is the one permitted test double: tests of
// the client run against the documented behaviour, not against the client.
package bitrix24test

import (
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Config tunes the fake portal.
type Config struct {
	// UserID and Secret form the webhook path /rest/{UserID}/{Secret}/.
	UserID int
	Secret string
	// AccessToken is accepted as the OAuth "auth" parameter.
	AccessToken string
	// Drain and Limit are the leaky bucket: each request adds 1, the
	// counter drains Drain per second, and above Limit requests get 503.
	// The contract's defaults for non-enterprise plans are 2/s and 50.
	Drain float64
	Limit float64
	// Listen is the address to serve on (default: a free port on
	// 127.0.0.1), for a fake that other processes reach.
	Listen string
}

// Server is a running fake portal.
type Server struct {
	*httptest.Server
	cfg Config

	mu         sync.Mutex
	bucket     float64
	lastDrain  time.Time
	nextID     int64
	leads      map[int64]map[string]any
	activities map[int64]map[string]any
	comments   map[int64]map[string]any
	faults     map[string][]fault   // method → faults for its next requests
	blocked    map[string]time.Time // method → operating_reset_at
	calls      map[string]int
	requests   int
	down       bool
	expired    bool // the OAuth access token has expired
	hookGone   bool // the webhook is blocked or deleted
}

// fault is what the next request to a method meets instead of a normal
// reply.
type fault struct {
	status      int
	code, descr string
	after       bool // run the method, then fail: the reply is lost
}

// New starts a fake portal over HTTPS (the cloud refuses plain HTTP) on a
// free local port, for tests. Use Server.Client() as the HTTP client and
// WebhookURL as the base.
func New(cfg Config) *Server {
	cfg.Listen = ""
	s, err := Start(cfg)
	if err != nil {
		panic(err) // as httptest.NewServer does: only a listen failure gets here
	}
	return s
}

// Start is New with an error instead of a panic, and cfg.Listen honoured.
func Start(cfg Config) (*Server, error) {
	if cfg.Secret == "" {
		cfg.Secret = "8g9l071eismy9q2l"
	}
	if cfg.UserID == 0 {
		cfg.UserID = 1
	}
	if cfg.Drain == 0 {
		cfg.Drain = 2
	}
	if cfg.Limit == 0 {
		cfg.Limit = 50
	}
	s := &Server{cfg: cfg, nextID: 4700, lastDrain: time.Now(), leads: map[int64]map[string]any{},
		activities: map[int64]map[string]any{}, comments: map[int64]map[string]any{},
		faults: map[string][]fault{}, blocked: map[string]time.Time{}, calls: map[string]int{}}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	if cfg.Listen != "" {
		ln, err := net.Listen("tcp", cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("bitrix24 fake: listen %s: %w", cfg.Listen, err)
		}
		s.Server.Listener.Close()
		s.Server.Listener = ln
	}
	s.Server.StartTLS()
	return s, nil
}

// CertPEM is the server's certificate, for a client's ca_file.
func (s *Server) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
}

// WebhookURL is the incoming-webhook base, ending in a slash.
func (s *Server) WebhookURL() string {
	return fmt.Sprintf("%s/rest/%d/%s/", s.URL, s.cfg.UserID, s.cfg.Secret)
}

// OAuthURL is the client_endpoint for OAuth calls.
func (s *Server) OAuthURL() string { return s.URL + "/rest/" }

// FailNext makes the next n requests to method answer status with code and
// description (the contract's error shapes, e.g. 503 QUERY_LIMIT_EXCEEDED)
// before the bucket or the method see them: the method does not run. A
// command of method inside a batch gets code in result_error instead.
func (s *Server) FailNext(method string, n, status int, code, descr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := strings.ToLower(method)
	for i := 0; i < n; i++ {
		s.faults[m] = append(s.faults[m], fault{status: status, code: code, descr: descr})
	}
}

// Faults reports how many faults set for method have not met a request
// yet: 0 proves a test's faults all happened.
func (s *Server) Faults(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.faults[strings.ToLower(method)])
}

// SetDown makes the portal unreachable behind its load balancer (every
// request gets 503 with an HTML page, nothing runs) until SetDown(false).
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

// LoseNextReplies loses the replies of the next n requests to method that
// the portal carries out (a lead really gets created; a request refused by
// the bucket or a block does not count): with status 0 the connection is
// cut before any reply, otherwise status with code is answered (a proxy's
// 500 or 504 after a timeout). The case where a blind retry makes a
// duplicate. Faults of a method happen in the order they were set. A
// command of method inside a batch runs, and the batch's reply is lost.
func (s *Server) LoseNextReplies(method string, n, status int, code, descr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := strings.ToLower(method)
	for i := 0; i < n; i++ {
		s.faults[m] = append(s.faults[m], fault{status: status, code: code, descr: descr, after: true})
	}
}

// BlockWebhook blocks the incoming webhook (true): every call through it
// gets 401 INVALID_CREDENTIALS, as a blocked, deleted or regenerated
// webhook does, until BlockWebhook(false) (an administrator restored it).
func (s *Server) BlockWebhook(blocked bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hookGone = blocked
}

// ExpireToken makes the OAuth access token expired (true): every call
// authorised with it gets 401 expired_token, as the cloud answers once the
// token is an hour old, until ExpireToken(false) (the token renewed).
func (s *Server) ExpireToken(expired bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expired = expired
}

// BlockMethod makes method answer 429 OPERATION_TIME_LIMIT for d, as when
// its operating-time budget is used up.
func (s *Server) BlockMethod(method string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.blocked[strings.ToLower(method)] = time.Now().Add(d)
}

// Leads returns a copy of every lead, by id.
func (s *Server) Leads() map[int64]map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[int64]map[string]any{}
	for id, l := range s.leads {
		c := map[string]any{}
		for k, v := range l {
			c[k] = v
		}
		out[id] = c
	}
	return out
}

// Activities returns a copy of every activity (crm.activity.add and todo.add).
func (s *Server) Activities() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	ids := make([]int64, 0, len(s.activities))
	for id := range s.activities {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		out = append(out, s.activities[id])
	}
	return out
}

// Calls reports how many times a method ran (rejected requests excluded).
func (s *Server) Calls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[strings.ToLower(method)]
}

// Requests reports every HTTP request received, rejected ones included.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

func timeBlock(start time.Time, resetAt time.Time) map[string]any {
	now := time.Now()
	d := now.Sub(start).Seconds()
	return map[string]any{
		"start": float64(start.UnixNano()) / 1e9, "finish": float64(now.UnixNano()) / 1e9,
		"duration": d, "processing": d, "operating": d,
		"date_start": start.Format(time.RFC3339), "date_finish": now.Format(time.RFC3339),
		"operating_reset_at": resetAt.Unix(),
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// apiError is an error reply: no "result" key.
type apiError struct {
	status      int
	code, descr string
}

func errorBody(e *apiError) map[string]any {
	return map[string]any{"error": e.code, "error_description": e.descr}
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	method, oauth, authErr := s.route(r)
	s.mu.Lock()
	if s.down {
		s.mu.Unlock()
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>")
		return
	}
	s.requests++
	// Leaky bucket: every request counts, drained continuously.
	now := time.Now()
	s.bucket -= now.Sub(s.lastDrain).Seconds() * s.cfg.Drain
	if s.bucket < 0 {
		s.bucket = 0
	}
	s.lastDrain = now
	s.bucket++
	overLimit := s.bucket > s.cfg.Limit
	var f *fault // a lost reply waits for a request that runs: below
	if q := s.faults[method]; len(q) > 0 && !q[0].after {
		f = &q[0]
		s.faults[method] = q[1:]
	}
	expired := s.expired && oauth && authErr == nil
	if s.hookGone && !oauth && authErr == nil {
		authErr = &apiError{http.StatusUnauthorized, "INVALID_CREDENTIALS", "Invalid request credentials"}
	}
	s.mu.Unlock()

	switch {
	case f != nil:
		writeJSON(w, f.status, map[string]any{"error": f.code, "error_description": f.descr})
		return
	case authErr != nil:
		writeJSON(w, authErr.status, errorBody(authErr))
		return
	case expired:
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "expired_token", "error_description": "The access token provided has expired."})
		return
	case overLimit:
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"})
		return
	}
	p, err := params(r)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "INVALID_REQUEST", "error_description": err.Error()})
		return
	}
	if method == "batch" {
		res, lost := s.batch(p)
		if lost != nil { // a command ran, then the batch's reply was lost
			if lost.status == 0 {
				cut(w)
				return
			}
			writeJSON(w, lost.status, map[string]any{"error": lost.code, "error_description": lost.descr})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"result": res, "time": timeBlock(start, start.Add(10*time.Minute))})
		return
	}
	result, extra, aerr := s.call(method, p)
	if aerr == nil {
		s.mu.Lock()
		if q := s.faults[method]; len(q) > 0 && q[0].after {
			f = &q[0]
			s.faults[method] = q[1:]
		}
		s.mu.Unlock()
	}
	if f != nil {
		if f.status == 0 {
			cut(w)
			return
		}
		writeJSON(w, f.status, map[string]any{"error": f.code, "error_description": f.descr})
		return
	}
	if aerr != nil {
		body := errorBody(aerr)
		if aerr.code == "OPERATION_TIME_LIMIT" {
			s.mu.Lock()
			// operating_reset_at is whole seconds: round up so it is not early.
			body["time"] = timeBlock(start, s.blocked[method].Add(time.Second-time.Nanosecond))
			s.mu.Unlock()
		}
		writeJSON(w, aerr.status, body)
		return
	}
	body := map[string]any{"result": result, "time": timeBlock(start, start.Add(10*time.Minute))}
	for k, v := range extra {
		body[k] = v
	}
	writeJSON(w, http.StatusOK, body)
}

// cut closes the connection without a reply, as a network failure after
// the request arrived does.
func cut(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler) // closes the connection without a reply
}

// route finds the method and checks credentials; oauth says the call was
// authorised by an access token (which may have expired).
func (s *Server) route(r *http.Request) (method string, oauth bool, _ *apiError) {
	path := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/rest/"), "/")
	parts := strings.Split(path, "/")
	switch len(parts) {
	case 3: // webhook: {user}/{secret}/{method}
		if parts[0] != strconv.Itoa(s.cfg.UserID) || parts[1] != s.cfg.Secret {
			return strings.ToLower(strings.TrimSuffix(parts[2], ".json")), false, &apiError{http.StatusUnauthorized, "INVALID_CREDENTIALS", "Invalid request credentials"}
		}
		method = parts[2]
	case 1: // OAuth: {method}?auth=…
		method, oauth = parts[0], true
		auth := r.URL.Query().Get("auth")
		if auth == "" {
			_ = r.ParseForm()
			auth = r.Form.Get("auth")
		}
		if s.cfg.AccessToken == "" || auth != s.cfg.AccessToken {
			return strings.ToLower(strings.TrimSuffix(method, ".json")), true, &apiError{http.StatusUnauthorized, "NO_AUTH_FOUND", "Wrong authorization data"}
		}
	default:
		return "", false, &apiError{http.StatusNotFound, "ERROR_METHOD_NOT_FOUND", "Method not found!"}
	}
	return strings.ToLower(strings.TrimSuffix(method, ".json")), oauth, nil
}

// call runs one method. extra holds list-reply keys (total, next).
func (s *Server) call(method string, p map[string]any) (any, map[string]any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if until, ok := s.blocked[method]; ok && time.Now().Before(until) {
		return nil, nil, &apiError{http.StatusTooManyRequests, "OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit."}
	}
	s.calls[method]++
	switch method {
	case "crm.lead.add":
		return s.leadAdd(p)
	case "crm.lead.get":
		return s.leadGet(p)
	case "crm.lead.update":
		return s.leadUpdate(p)
	case "crm.lead.list":
		return s.leadList(p)
	case "crm.duplicate.findbycomm":
		return s.findByComm(p)
	case "crm.activity.add":
		return s.activityAdd(p)
	case "crm.activity.todo.add":
		return s.todoAdd(p)
	case "crm.activity.list":
		return s.activityList(p)
	case "crm.timeline.comment.add":
		return s.commentAdd(p)
	}
	s.calls[method]--
	return nil, nil, &apiError{http.StatusNotFound, "ERROR_METHOD_NOT_FOUND", "Method not found!"}
}

var (
	errNotFound  = &apiError{http.StatusBadRequest, "", "Not found"}
	errInvalidID = &apiError{http.StatusBadRequest, "", "ID is not defined or invalid."}
)

func (s *Server) id() int64 { s.nextID++; return s.nextID }

func (s *Server) leadAdd(p map[string]any) (any, map[string]any, *apiError) {
	fields := asMap(p["fields"])
	if fields == nil {
		fields = map[string]any{}
	}
	lead := map[string]any{}
	for k, v := range fields {
		lead[strings.ToUpper(k)] = v
	}
	for _, mf := range []string{"PHONE", "EMAIL"} {
		for _, e := range asSlice(lead[mf]) {
			if mf == "EMAIL" && !strings.Contains(asString(asMap(e)["VALUE"]), "@") {
				return nil, nil, &apiError{http.StatusBadRequest, "ERROR_CORE", "Invalid e-mail address in the E-mail field"}
			}
		}
	}
	id := s.id()
	lead["ID"] = id
	if _, ok := lead["STATUS_ID"]; !ok {
		lead["STATUS_ID"] = "NEW"
	}
	lead["DATE_CREATE"] = time.Now().Format(time.RFC3339)
	s.leads[id] = lead
	return id, nil, nil // a JSON integer, as the cloud returns
}

// leadView renders a lead as get/list do: every number as a string, and
// multifields with ids.
func leadView(l map[string]any, sel []string) map[string]any {
	want := map[string]bool{}
	star := false
	for _, f := range sel {
		star = star || f == "*"
		want[strings.ToUpper(f)] = true
	}
	out := map[string]any{"ID": asString(l["ID"])}
	for k, v := range l {
		multi := k == "PHONE" || k == "EMAIL"
		if len(sel) > 0 && !want[k] && !(star && !multi) {
			continue // multifields only when named
		}
		if !multi {
			out[k] = asString(v)
			continue
		}
		var entries []any
		for i, e := range asSlice(v) {
			m := asMap(e)
			entries = append(entries, map[string]any{"ID": strconv.Itoa(9000 + i), "VALUE_TYPE": asString(m["VALUE_TYPE"]),
				"VALUE": asString(m["VALUE"]), "TYPE_ID": k})
		}
		out[k] = entries
	}
	return out
}

func (s *Server) leadGet(p map[string]any) (any, map[string]any, *apiError) {
	v, _ := param(p, "id")
	id, ok := asInt(v)
	if !ok {
		return nil, nil, errInvalidID
	}
	l, found := s.leads[id]
	if !found {
		return nil, nil, errNotFound
	}
	return leadView(l, nil), nil, nil
}

func (s *Server) leadUpdate(p map[string]any) (any, map[string]any, *apiError) {
	v, _ := param(p, "id")
	id, ok := asInt(v)
	if !ok {
		return nil, nil, errInvalidID
	}
	l, found := s.leads[id]
	if !found {
		return nil, nil, errNotFound
	}
	for k, v := range asMap(p["fields"]) {
		l[strings.ToUpper(k)] = v
	}
	return true, nil, nil
}

// matches applies a list filter (crm.lead.list, crm.activity.list): exact
// match, with the prefixes "!" / "!=" (not), ">" ">=" "<" "<=" on ids and
// dates, "@"
// (in), and "%" / "!%" (contains, as SQL LIKE '%value%' with the portal's
// case-insensitive collation).
func matches(l map[string]any, filter map[string]any) bool {
	for k, want := range filter {
		op, field := "", k
		for _, pre := range []string{">=", "<=", "!=", "!@", "!%", ">", "<", "!", "@", "%", "="} {
			if strings.HasPrefix(k, pre) {
				op, field = pre, k[len(pre):]
				break
			}
		}
		field = strings.ToUpper(field)
		have := l[field]
		if field == "PHONE" || field == "EMAIL" {
			found := false
			for _, e := range asSlice(have) {
				if asString(asMap(e)["VALUE"]) == asString(want) {
					found = true
				}
			}
			if found == (op == "!" || op == "!=") {
				return false
			}
			continue
		}
		hs, ws := asString(have), asString(want)
		hi, _ := strconv.ParseInt(hs, 10, 64)
		wi, _ := strconv.ParseInt(ws, 10, 64)
		// Dates compare as instants (the contract's filter example is
		// {">DATE_CREATE":"2024-06-01T00:00:00"}); everything else as ids.
		cmp := func() int { return compareInt(hi, wi) }
		if ht, ok := filterTime(hs); ok {
			if wt, ok := filterTime(ws); ok {
				cmp = func() int { return ht.Compare(wt) }
			}
		}
		ok := true
		switch op {
		case "", "=":
			ok = hs == ws
		case "!", "!=":
			ok = hs != ws
		case ">":
			ok = cmp() > 0
		case ">=":
			ok = cmp() >= 0
		case "<":
			ok = cmp() < 0
		case "<=":
			ok = cmp() <= 0
		case "@", "!@":
			in := false
			for _, x := range asSlice(want) {
				if asString(x) == hs {
					in = true
				}
			}
			ok = in == (op == "@")
		case "%", "!%":
			ok = strings.Contains(strings.ToLower(hs), strings.ToLower(ws)) == (op == "%")
		}
		if !ok {
			return false
		}
	}
	return true
}

func compareInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// filterTime reads a date as the portal writes it (ISO 8601 with offset)
// or as a filter may give it without an offset, in the portal's zone
// (UTC here).
func filterTime(s string) (time.Time, bool) {
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

func (s *Server) leadList(p map[string]any) (any, map[string]any, *apiError) {
	filter := asMap(p["filter"])
	var sel []string
	for _, f := range asSlice(p["select"]) {
		sel = append(sel, asString(f))
	}
	ids := make([]int64, 0, len(s.leads))
	for id, l := range s.leads {
		if matches(l, filter) {
			ids = append(ids, id)
		}
	}
	desc := false
	for _, v := range asMap(p["order"]) {
		desc = strings.EqualFold(asString(v), "DESC")
	}
	sort.Slice(ids, func(i, j int) bool { return (ids[i] < ids[j]) != desc })
	start, _ := strconv.Atoi(asString(p["start"]))
	extra := map[string]any{"total": len(ids)}
	counting := start != -1 // start=-1 skips the count: total 0, no next
	if !counting {
		start = 0
		extra["total"] = 0
	}
	rows := []any{}
	for i := start; i < len(ids) && i < start+50; i++ {
		rows = append(rows, leadView(s.leads[ids[i]], sel))
	}
	if counting && start+50 < len(ids) {
		extra["next"] = start + 50
	}
	return rows, extra, nil
}

func (s *Server) findByComm(p map[string]any) (any, map[string]any, *apiError) {
	typ := strings.ToUpper(asString(p["type"]))
	if typ == "" {
		return nil, nil, &apiError{http.StatusBadRequest, "", "Communication type is not defined."}
	}
	if typ != "PHONE" && typ != "EMAIL" {
		return nil, nil, &apiError{http.StatusBadRequest, "", fmt.Sprintf("Communication type '%s' is not supported in current context", typ)}
	}
	values := asSlice(p["values"])
	if len(values) == 0 {
		return nil, nil, &apiError{http.StatusBadRequest, "", "Communication values is not defined."}
	}
	entity := strings.ToUpper(asString(p["entity_type"]))
	var found []int64
	if entity == "" || entity == "LEAD" {
		for id, l := range s.leads {
			for _, e := range asSlice(l[typ]) {
				for _, v := range values {
					if asString(asMap(e)["VALUE"]) == asString(v) {
						found = append(found, id)
					}
				}
			}
		}
	}
	if len(found) == 0 {
		return []any{}, nil, nil // an empty array, not an object
	}
	sort.Slice(found, func(i, j int) bool { return found[i] < found[j] })
	return map[string]any{"LEAD": found}, nil, nil
}

func (s *Server) activityAdd(p map[string]any) (any, map[string]any, *apiError) {
	f := asMap(p["fields"])
	upper := map[string]any{}
	for k, v := range f {
		upper[strings.ToUpper(k)] = v
	}
	if asString(upper["SUBJECT"]) == "" {
		return nil, nil, &apiError{http.StatusBadRequest, "", "The field SUBJECT is not defined or empty"}
	}
	if _, ok := asInt(upper["RESPONSIBLE_ID"]); !ok {
		return nil, nil, &apiError{http.StatusBadRequest, "", "The field RESPONSIBLE_ID is not defined or invalid"}
	}
	if _, ok := asInt(upper["TYPE_ID"]); !ok {
		return nil, nil, &apiError{http.StatusBadRequest, "", "The field TYPE_ID is not defined or invalid"}
	}
	if len(asSlice(upper["COMMUNICATIONS"])) == 0 {
		return nil, nil, &apiError{http.StatusBadRequest, "", "The field COMMUNICATIONS is not defined or invalid"}
	}
	owner, _ := asInt(upper["OWNER_ID"])
	if _, ok := s.leads[owner]; !ok {
		return nil, nil, &apiError{http.StatusBadRequest, "", "Could not build binding. Please ensure that owner info and communications are defined correctly"}
	}
	id := s.id()
	upper["ID"] = id
	s.activities[id] = upper
	return id, nil, nil
}

func (s *Server) todoAdd(p map[string]any) (any, map[string]any, *apiError) {
	owner, ok := asInt(p["ownerId"])
	if !ok || asString(p["ownerTypeId"]) == "" || asString(p["deadline"]) == "" {
		return nil, nil, &apiError{http.StatusBadRequest, "100", "Required fields are missing: ownerTypeId, ownerId, deadline"}
	}
	if d := asString(p["deadline"]); len(d) < 19 || !validDeadline(d[:19]) {
		return nil, nil, &apiError{http.StatusBadRequest, "WRONG_DATETIME_FORMAT", "Wrong datetime format"}
	}
	if _, ok := s.leads[owner]; !ok {
		return nil, nil, &apiError{http.StatusBadRequest, "OWNER_NOT_FOUND", "Owner not found"}
	}
	id := s.id()
	deadline, _ := time.ParseInLocation("2006-01-02T15:04:05", strings.Replace(asString(p["deadline"])[:19], " ", "T", 1), time.UTC)
	a := map[string]any{"ID": id, "OWNER_ID": owner, "OWNER_TYPE_ID": asString(p["ownerTypeId"]), "TYPE_ID": "6",
		"PROVIDER_ID": "CRM_TODO", "SUBJECT": asString(p["title"]), "DESCRIPTION": asString(p["description"]),
		"DEADLINE": deadline.Format(isoOffset), "START_TIME": deadline.Format(isoOffset), "END_TIME": deadline.Format(isoOffset),
		"COMPLETED": "N", "ORIGIN_ID": "", "CREATED": time.Now().UTC().Format(isoOffset)}
	s.activities[id] = a
	return map[string]any{"id": id}, nil, nil
}

// isoOffset is how the portal writes times in list replies: ISO-8601 with
// the offset spelled out (the portal's zone is UTC here).
const isoOffset = "2006-01-02T15:04:05-07:00"

// activityList is crm.activity.list: filter (as crm.lead.list, plus
// BINDINGS), select ("*" or names; COMMUNICATIONS and FILES only when
// named), order (default START_TIME ascending), pages of 50 with total
// and next; every value a string.
func (s *Server) activityList(p map[string]any) (any, map[string]any, *apiError) {
	filter := map[string]any{}
	var bindings []any
	for k, v := range asMap(p["filter"]) {
		if strings.EqualFold(k, "BINDINGS") {
			bindings = asSlice(v)
			continue
		}
		filter[k] = v
	}
	var sel []string
	for _, f := range asSlice(p["select"]) {
		sel = append(sel, strings.ToUpper(asString(f)))
	}
	var ids []int64
	for id, a := range s.activities {
		if !matches(a, filter) {
			continue
		}
		if len(bindings) > 0 {
			bound := false
			for _, b := range bindings {
				bm := asMap(b)
				bound = bound || (asString(bm["OWNER_TYPE_ID"]) == asString(a["OWNER_TYPE_ID"]) && asString(bm["OWNER_ID"]) == asString(a["OWNER_ID"]))
			}
			if !bound {
				continue
			}
		}
		ids = append(ids, id)
	}
	orderBy, desc := "START_TIME", false
	for k, v := range asMap(p["order"]) {
		orderBy, desc = strings.ToUpper(k), strings.EqualFold(asString(v), "DESC")
	}
	sort.Slice(ids, func(i, j int) bool {
		a, b := s.activities[ids[i]], s.activities[ids[j]]
		if orderBy == "ID" {
			return (ids[i] < ids[j]) != desc
		}
		if x, y := asString(a[orderBy]), asString(b[orderBy]); x != y {
			return (x < y) != desc
		}
		return ids[i] < ids[j]
	})
	start, _ := strconv.Atoi(asString(p["start"]))
	start = max(start, 0)
	rows := []any{}
	for i := start; i < len(ids) && i < start+50; i++ {
		rows = append(rows, activityView(s.activities[ids[i]], sel))
	}
	extra := map[string]any{"total": len(ids)}
	if start+50 < len(ids) {
		extra["next"] = start + 50
	}
	return rows, extra, nil
}

// activityView renders an activity as crm.activity.list does: values as
// strings, COMMUNICATIONS and FILES only when selected by name.
func activityView(a map[string]any, sel []string) map[string]any {
	want, star := map[string]bool{}, len(sel) == 0
	for _, f := range sel {
		star = star || f == "*"
		want[f] = true
	}
	out := map[string]any{}
	for k, v := range a {
		named := want[k]
		if k == "COMMUNICATIONS" || k == "FILES" {
			if named {
				out[k] = v
			}
			continue
		}
		if star || named {
			out[k] = asString(v)
		}
	}
	return out
}

func (s *Server) commentAdd(p map[string]any) (any, map[string]any, *apiError) {
	f := asMap(p["fields"]) // lower-case "fields" only
	if f == nil {
		return nil, nil, &apiError{http.StatusBadRequest, "100", "Required fields are missing"}
	}
	owner, ok := asInt(f["ENTITY_ID"])
	if !ok || asString(f["ENTITY_TYPE"]) == "" {
		return nil, nil, &apiError{http.StatusBadRequest, "100", "Required fields are missing"}
	}
	if asString(f["COMMENT"]) == "" {
		return nil, nil, &apiError{http.StatusBadRequest, "INVALID_ARG_VALUE", "Empty comment"}
	}
	if _, found := s.leads[owner]; !found || asString(f["ENTITY_TYPE"]) != "lead" {
		return nil, nil, &apiError{http.StatusBadRequest, "OWNER_NOT_FOUND", "Owner not found"}
	}
	id := s.id()
	s.comments[id] = f
	return id, nil, nil
}

// batch runs up to 50 commands "method?query"; failures go to result_error
// under HTTP 200; empty sections are [] as the contract says.
// batch runs a batch's commands. A method's faults apply to its commands
// too: one set by FailNext answers the command's code in result_error
// (under HTTP 200, as the contract has QUERY_LIMIT_EXCEEDED inside a
// batch) without running it; one set by LoseNextReplies lets the command
// run and then loses the whole batch's reply (returned as lost).
func (s *Server) batch(p map[string]any) (_ map[string]any, lost *fault) {
	result, errs, total, next := map[string]any{}, map[string]any{}, map[string]any{}, map[string]any{}
	halt := asString(p["halt"]) == "1" || asString(p["halt"]) == "true"
	cmds := asMap(p["cmd"])
	var keys []string
	if cmds == nil {
		cmds = map[string]any{}
		for i, c := range asSlice(p["cmd"]) {
			cmds[strconv.Itoa(i)] = c
		}
	}
	for k := range cmds {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(keys) > 50 {
		errs["batch"] = map[string]any{"error": "ERROR_BATCH_LENGTH_EXCEEDED", "error_description": "Max batch length exceeded"}
		keys = nil
	}
	for _, k := range keys {
		cmd := asString(cmds[k])
		method, query, _ := strings.Cut(cmd, "?")
		method = strings.ToLower(method)
		if method == "batch" {
			errs[k] = map[string]any{"error": "ERROR_BATCH_METHOD_NOT_ALLOWED", "error_description": "Method is not allowed for batch usage"}
			if halt {
				break
			}
			continue
		}
		vals, err := url.ParseQuery(query)
		if err != nil {
			errs[k] = map[string]any{"error": "INVALID_REQUEST", "error_description": err.Error()}
			continue
		}
		sub := map[string]any{}
		_ = mergeForm(sub, vals)
		s.mu.Lock()
		var f *fault
		if q := s.faults[method]; len(q) > 0 && !q[0].after {
			f = &q[0]
			s.faults[method] = q[1:]
		}
		s.mu.Unlock()
		if f != nil {
			errs[k] = map[string]any{"error": f.code, "error_description": f.descr}
			if halt {
				break
			}
			continue
		}
		res, extra, aerr := s.call(method, sub)
		if aerr == nil && lost == nil {
			s.mu.Lock()
			if q := s.faults[method]; len(q) > 0 && q[0].after {
				lost = &q[0]
				s.faults[method] = q[1:]
			}
			s.mu.Unlock()
		}
		if aerr != nil {
			errs[k] = errorBody(aerr)
			if halt {
				break
			}
			continue
		}
		result[k] = res
		if t, ok := extra["total"]; ok {
			total[k] = t
		}
		if n, ok := extra["next"]; ok {
			next[k] = n
		}
	}
	empty := func(m map[string]any) any {
		if len(m) == 0 {
			return []any{}
		}
		return m
	}
	return map[string]any{"result": empty(result), "result_error": empty(errs), "result_total": empty(total),
		"result_next": empty(next), "result_time": []any{}}, lost
}

func validDeadline(s string) bool {
	for _, layout := range []string{"2006-01-02T15:04:05", "2006-01-02 15:04:05"} {
		if _, err := time.Parse(layout, s); err == nil {
			return true
		}
	}
	return false
}
