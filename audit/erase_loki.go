package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/assistlog/assistlog/internal/errpolicy"
)

// LokiErasure is the Loki part of the receipt.
type LokiErasure struct {
	Configured bool   `json:"configured"`
	URL        string `json:"url,omitempty"`
	// Query is the deletion's LogQL: the tenant's streams of this
	// deployment, the conversations' lines by session_id (structured
	// metadata: the line is the masked event, which has no phone hash).
	Query string    `json:"query,omitempty"`
	Start time.Time `json:"start,omitempty"`
	End   time.Time `json:"end,omitempty"`
	// Lines is what the query counted before the request (a dry run's count).
	Lines     int    `json:"lines"`
	RequestID string `json:"request_id,omitempty"`
	// Status is Loki's: received (lines hidden from queries once the
	// queriers learn of it, and removed when the compactor runs after
	// delete_request_cancel_period) or processed.
	Status string `json:"status,omitempty"`
	Note   string `json:"note,omitempty"`
}

// lokiDeleteMargin widens the request before the first event found: Loki
// may hold a line whose event time is earlier than any copy in the search
// stores shows (none should, but erasing wider costs nothing).
const lokiDeleteMargin = 24 * time.Hour

// lokiCountWindow keeps each counting query under Loki's max_query_length.
const lokiCountWindow = 7 * 24 * time.Hour

func (er *eraser) eraseLoki(ctx context.Context, p *person, rec *Receipt) error {
	l := er.cfg.Loki
	rec.Loki = LokiErasure{Configured: l.URL != "", URL: l.URL}
	if l.URL == "" {
		rec.Loki.Note = "loki.url not set: Loki not erased"
		return nil
	}
	lr := &rec.Loki
	lr.Query = lokiQuery(er.tenant.Name, l.Labels, p.sessions)
	lr.Start = p.first.Add(-lokiDeleteMargin).Truncate(time.Second).UTC()
	lr.End = time.Now().UTC().Truncate(time.Second)
	hc := &http.Client{Timeout: l.Timeout}
	n, err := er.lokiCount(ctx, hc, lr.Query, lr.Start, lr.End)
	if err != nil {
		return err
	}
	lr.Lines = n
	er.progress("loki: %d line(s) match %s", n, lr.Query)
	if er.dry {
		return nil
	}
	form := url.Values{"query": {lr.Query}, "start": {strconv.FormatInt(lr.Start.Unix(), 10)}, "end": {strconv.FormatInt(lr.End.Unix(), 10)}}
	err = er.pol.Do(ctx, "loki", func(ctx context.Context) error {
		_, err := lokiCall(ctx, hc, l, http.MethodPost, "/loki/api/v1/delete?"+form.Encode())
		return err
	})
	if err != nil {
		return fmt.Errorf("deletion request: %w", err)
	}
	id, status, err := er.lokiRequest(ctx, hc, lr)
	if err != nil {
		return err
	}
	lr.RequestID, lr.Status = id, status
	er.progress("loki: deletion request %s %s", id, status)
	return nil
}

// waitLoki polls the deletion request until Loki reports it processed or
// the wait ends; the receipt keeps the last status seen.
func (er *eraser) waitLoki(ctx context.Context, lr *LokiErasure, wait time.Duration) error {
	if lr.RequestID == "" || lr.Status == "processed" || wait <= 0 {
		return nil
	}
	hc := &http.Client{Timeout: er.cfg.Loki.Timeout}
	deadline := time.Now().Add(wait)
	er.progress("loki: waiting up to %s for the compactor to process request %s", wait, lr.RequestID)
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Second):
		}
		_, status, err := er.lokiRequest(ctx, hc, lr)
		if err != nil {
			return err
		}
		lr.Status = status
		if status == "processed" {
			er.progress("loki: request %s processed", lr.RequestID)
			return nil
		}
	}
	lr.Note = fmt.Sprintf("still %s after waiting %s; Loki processes it after delete_request_cancel_period", lr.Status, wait)
	return nil
}

// lokiQuery selects the tenant's streams of this deployment and the
// conversations' lines.
func lokiQuery(tenant string, labels map[string]string, sessions []string) string {
	names := make([]string, 0, len(labels))
	for k := range labels {
		names = append(names, k)
	}
	sort.Strings(names)
	matchers := []string{"tenant=" + strconv.Quote(tenant)}
	for _, k := range names {
		matchers = append(matchers, k+"="+strconv.Quote(labels[k]))
	}
	quoted := make([]string, len(sessions))
	for i, s := range sessions {
		quoted[i] = regexp.QuoteMeta(s)
	}
	return "{" + strings.Join(matchers, ", ") + "} | session_id=~`" + strings.Join(quoted, "|") + "`"
}

// lokiCount counts the query's lines from start to end, a window at a time.
func (er *eraser) lokiCount(ctx context.Context, hc *http.Client, q string, start, end time.Time) (int, error) {
	total := 0
	for to := end; to.After(start); to = to.Add(-lokiCountWindow) {
		w := min(lokiCountWindow, to.Sub(start))
		expr := fmt.Sprintf("sum(count_over_time(%s [%ds]))", q, int64(w.Seconds()))
		form := url.Values{"query": {expr}, "time": {strconv.FormatInt(to.UnixNano(), 10)}}
		var body []byte
		err := er.pol.Do(ctx, "loki", func(ctx context.Context) error {
			var err error
			body, err = lokiCall(ctx, hc, er.cfg.Loki, http.MethodGet, "/loki/api/v1/query?"+form.Encode())
			return err
		})
		if err != nil {
			return 0, fmt.Errorf("count lines: %w", err)
		}
		var r struct {
			Data struct {
				Result []struct {
					Value [2]any `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		if err := json.Unmarshal(body, &r); err != nil {
			return 0, fmt.Errorf("count lines: %w", err)
		}
		if len(r.Data.Result) > 0 {
			n, err := strconv.Atoi(fmt.Sprint(r.Data.Result[0].Value[1]))
			if err != nil {
				return 0, fmt.Errorf("count lines: %v", r.Data.Result[0].Value[1])
			}
			total += n
		}
	}
	return total, nil
}

// lokiRequest finds the deletion request just made in Loki's list (the
// POST answers 204 without an id): the newest with the same query and
// start.
func (er *eraser) lokiRequest(ctx context.Context, hc *http.Client, lr *LokiErasure) (id, status string, err error) {
	var body []byte
	err = er.pol.Do(ctx, "loki", func(ctx context.Context) error {
		var err error
		body, err = lokiCall(ctx, hc, er.cfg.Loki, http.MethodGet, "/loki/api/v1/delete")
		return err
	})
	if err != nil {
		return "", "", fmt.Errorf("list deletion requests: %w", err)
	}
	var reqs []struct {
		ID        string  `json:"request_id"`
		Start     float64 `json:"start_time"`
		Query     string  `json:"query"`
		Status    string  `json:"status"`
		CreatedAt float64 `json:"created_at"`
	}
	if err := json.Unmarshal(body, &reqs); err != nil {
		return "", "", fmt.Errorf("list deletion requests: %w", err)
	}
	newest := -1.0
	for _, r := range reqs {
		if r.Query != lr.Query || int64(r.Start) != lr.Start.Unix() {
			continue
		}
		if lr.RequestID != "" && r.ID != lr.RequestID {
			continue
		}
		if r.CreatedAt > newest {
			newest, id, status = r.CreatedAt, r.ID, r.Status
		}
	}
	if id == "" {
		return "", "", errors.New("loki accepted the deletion request but does not list it")
	}
	return id, status, nil
}

// lokiCall sends one request and returns the body of a 2xx answer;
// failures are classified for the error policy (a refused or malformed
// request is final, an overloaded Loki is retried).
func lokiCall(ctx context.Context, hc *http.Client, l EraseLokiConfig, method, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(l.URL, "/")+path, nil)
	if err != nil {
		return nil, errpolicy.Mark(errpolicy.DeadLetter, err)
	}
	l.authorize(req)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		err := fmt.Errorf("%s %s: HTTP %d: %s", method, strings.SplitN(path, "?", 2)[0], resp.StatusCode, strings.TrimSpace(string(body)))
		// Every refusal ends the step: an erasure run is attended, and a
		// paused CLI would only look hung.
		if a := errpolicy.HTTPStatus(resp.StatusCode); a != errpolicy.Retry {
			return nil, errpolicy.Mark(errpolicy.DeadLetter, err)
		}
		return nil, err
	}
	return body, nil
}
