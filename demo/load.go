package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/trustloop/trustloop"
)

// Config says where to load the demo and with which keys.
type Config struct {
	// BaseURL is the server, e.g. http://127.0.0.1:8080.
	BaseURL string
	// WriteKey is a source's write key (the collector's Basic auth).
	WriteKey string
	// AdminKey is an admin API key (consent changes, privacy requests).
	AdminKey string
	// Now places the events (default time.Now).
	Now func() time.Time
	// HTTP is the client (default: one with a 30 s timeout).
	HTTP *http.Client
	// Log gets progress without identifiers (default: nowhere).
	Log *slog.Logger
}

// Summary is what a load sent.
type Summary struct {
	Customers  int `json:"customers"`
	Identified int `json:"identified"`
	Anonymous  int `json:"anonymous"`
	// NoConsent counts customers who never answer the banner, GPC those whose
	// browsers send Sec-GPC: 1.
	NoConsent int `json:"no_consent"`
	GPC       int `json:"gpc"`
	Devices   int `json:"devices"`
	// SessionEvents counts the OTTO events mapped; EventsSent the Segment
	// events posted for them (with page, screen, identify and consent calls).
	SessionEvents   int `json:"session_events"`
	EventsSent      int `json:"events_sent"`
	Batches         int `json:"batches"`
	ConsentChanges  int `json:"consent_changes"`
	PrivacyRequests int `json:"privacy_requests"`
	// HTTPRequests counts every request made, polls included.
	HTTPRequests int       `json:"http_requests"`
	From         time.Time `json:"from"`
	To           time.Time `json:"to"`
	// PortalIdentifier ("email:…", made up) opens the preference center of a
	// signed-in customer with several devices and a consent history;
	// PortalName is their (made-up) name.
	PortalIdentifier string `json:"-"`
	PortalName       string `json:"-"`
}

// erasureWait bounds the wait for the demo's erasure to complete.
const erasureWait = time.Minute

// Load sends the demo to a running server through its public API: the events
// (POST /v1/batch), then the later consent changes (PUT
// /v1/profiles/{id}/consent) and privacy requests (POST /v1/privacy-requests),
// waiting for the erasure to complete. The server needs the profile API
// (`serve --profiles`). Events are idempotent (fixed messageIds); the consent
// changes and requests are not, so the caller keeps a marker of a load that
// finished.
func Load(ctx context.Context, cfg Config) (*Summary, error) {
	c := newClient(cfg)
	plan, err := Build(c.cfg.Now())
	if err != nil {
		return nil, err
	}
	sum := plan.summary()
	start := time.Now()
	for n, b := range plan.Batches {
		h := http.Header{"Content-Type": {"application/json"}}
		if b.GPC {
			h.Set("Sec-GPC", "1")
		}
		what := fmt.Sprintf("batch %d of customer %d", n, b.Customer)
		if _, err := c.call(ctx, http.MethodPost, "/v1/batch", "/v1/batch", b.Body(), h, what, c.basic, http.StatusOK); err != nil {
			return nil, err
		}
		sum.Batches++
		sum.EventsSent += len(b.Messages)
	}
	c.log.Info("demo events sent", "events", sum.EventsSent, "batches", sum.Batches, "seconds", time.Since(start).Seconds())

	for _, ch := range plan.ConsentChanges {
		cust := &plan.Customers[ch.Customer]
		id, err := c.profileID(ctx, cust)
		if err != nil {
			return nil, err
		}
		body, _ := json.Marshal(map[string]any{"purposes": ch.Purposes, "method": trustloop.MethodAPI, "jurisdiction": "DE"})
		what := fmt.Sprintf("consent change of customer %d", ch.Customer)
		if _, err := c.call(ctx, http.MethodPut, "/v1/profiles/"+url.PathEscape(id)+"/consent", "/v1/profiles/{id}/consent",
			body, jsonHeader(), what, c.bearer, http.StatusOK); err != nil {
			return nil, err
		}
		sum.ConsentChanges++
	}

	for _, pr := range plan.PrivacyRequests {
		cust := &plan.Customers[pr.Customer]
		in := map[string]any{"type": pr.Type, "identifier": cust.Identifier(), "verified": pr.Verified}
		if pr.Suppress {
			in["suppress"] = true
		}
		body, _ := json.Marshal(in)
		what := fmt.Sprintf("%s request of customer %d", pr.Type, pr.Customer)
		raw, err := c.call(ctx, http.MethodPost, "/v1/privacy-requests", "/v1/privacy-requests", body, jsonHeader(), what, c.bearer,
			http.StatusCreated, http.StatusOK)
		if err != nil {
			return nil, err
		}
		sum.PrivacyRequests++
		if !pr.Wait {
			continue
		}
		var r struct {
			ID string `json:"request_id"`
		}
		if err := json.Unmarshal(raw, &r); err != nil || r.ID == "" {
			return nil, trustloop.Errorf(trustloop.EINTERNAL, "Demo: the %s gave no request_id.", what)
		}
		if err := c.waitCompleted(ctx, r.ID, what); err != nil {
			return nil, err
		}
	}
	sum.HTTPRequests = c.requests
	c.log.Info("demo loaded", "customers", sum.Customers, "events_sent", sum.EventsSent, "consent_changes", sum.ConsentChanges,
		"privacy_requests", sum.PrivacyRequests, "http_requests", sum.HTTPRequests, "seconds", time.Since(start).Seconds())
	return sum, nil
}

func (p *Plan) summary() *Summary {
	s := &Summary{Customers: len(p.Customers), SessionEvents: p.SessionEvents, From: p.From, To: p.To}
	for i := range p.Customers {
		c := &p.Customers[i]
		if c.UserID != "" {
			s.Identified++
		} else {
			s.Anonymous++
		}
		if c.Consent == nil {
			s.NoConsent++
		}
		if c.GPC {
			s.GPC++
		}
		s.Devices += len(c.Devices)
	}
	pc := &p.Customers[p.Portal]
	s.PortalIdentifier, s.PortalName = pc.Identifier(), pc.FirstName+" "+pc.LastName
	return s
}

// PortalLink asks the server for a preference-center link for the identifier
// (POST /v1/portal/sessions) and returns its URL (relative to BaseURL) and
// expiry. A server without the portal (404) gives "" and no error.
func PortalLink(ctx context.Context, cfg Config, identifier string) (string, time.Time, error) {
	c := newClient(cfg)
	body, _ := json.Marshal(map[string]string{"identifier": identifier})
	raw, err := c.call(ctx, http.MethodPost, "/v1/portal/sessions", "/v1/portal/sessions", body, jsonHeader(), "portal session",
		c.bearer, http.StatusOK, http.StatusCreated)
	if trustloop.ErrorCode(err) == trustloop.ENOTFOUND {
		return "", time.Time{}, nil
	} else if err != nil {
		return "", time.Time{}, err
	}
	var s struct {
		URL       string    `json:"url"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	if err := json.Unmarshal(raw, &s); err != nil || s.URL == "" {
		return "", time.Time{}, trustloop.Errorf(trustloop.EINTERNAL, "Demo: the portal session answer has no url.")
	}
	return s.URL, s.ExpiresAt, nil
}

type client struct {
	cfg      Config
	log      *slog.Logger
	requests int
}

func newClient(cfg Config) *client {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	return &client{cfg: cfg, log: cfg.Log}
}

func jsonHeader() http.Header { return http.Header{"Content-Type": {"application/json"}} }

func (c *client) basic(r *http.Request) { r.SetBasicAuth(c.cfg.WriteKey, "") }

func (c *client) bearer(r *http.Request) { r.Header.Set("Authorization", "Bearer "+c.cfg.AdminKey) }

// maxAttempts bounds the retries of a request the server asked to repeat
// (429, 503): the collector's rate limit or a node that is still starting.
const maxAttempts = 5

// call sends one request and returns the body of an expected answer. route is
// the path pattern (errors name it, never the path or query, which may hold
// an identifier) and what says which step it was, by customer index.
func (c *client) call(ctx context.Context, method, path, route string, body []byte, h http.Header, what string,
	auth func(*http.Request), want ...int) ([]byte, error) {
	for attempt := 1; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, method, c.cfg.BaseURL+path, bytes.NewReader(body))
		if err != nil {
			return nil, trustloop.Errorf(trustloop.EINVALID, "Demo: the base URL is not valid: %v.", err)
		}
		if body == nil {
			req.Body, req.ContentLength = nil, 0
		}
		for k, vs := range h {
			req.Header[k] = vs
		}
		auth(req)
		c.requests++
		res, err := c.cfg.HTTP.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, trustloop.Errorf(trustloop.EUNAVAILABLE, "Demo: %s %s (%s) failed: %v.", method, route, what, unwrapURLError(err))
		}
		raw, err := io.ReadAll(io.LimitReader(res.Body, 8<<20))
		res.Body.Close()
		if err != nil {
			return nil, trustloop.Errorf(trustloop.EUNAVAILABLE, "Demo: reading the answer to %s %s (%s): %v.", method, route, what, err)
		}
		for _, w := range want {
			if res.StatusCode == w {
				return raw, nil
			}
		}
		if (res.StatusCode == http.StatusTooManyRequests || res.StatusCode == http.StatusServiceUnavailable) && attempt < maxAttempts {
			wait := time.Duration(attempt) * 200 * time.Millisecond
			if s, err := strconv.Atoi(res.Header.Get("Retry-After")); err == nil && s > 0 {
				wait = min(time.Duration(s)*time.Second, 10*time.Second)
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(wait):
			}
			continue
		}
		return nil, answerError(method, route, what, res.StatusCode, raw)
	}
}

// unwrapURLError drops the URL from a transport error: its query may hold an
// identifier.
func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}

// answerError turns an unexpected answer into an application error with the
// server's own code and message (which by contract hold no personal data).
func answerError(method, route, what string, status int, raw []byte) error {
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	code, msg := trustloop.EINTERNAL, http.StatusText(status)
	if json.Unmarshal(raw, &body) == nil && body.Error.Code != "" {
		code, msg = body.Error.Code, body.Error.Message
	} else if status == http.StatusNotFound {
		code = trustloop.ENOTFOUND
	}
	e := trustloop.Errorf(code, "Demo: %s %s (%s) answered %d: %s", method, route, what, status, msg)
	switch {
	case status == http.StatusUnauthorized:
		e.Hint = "Check the demo's write key and admin key."
	case route == "/v1/profiles/lookup" && status == http.StatusNotFound:
		e.Hint = "The demo needs the profile API: start the server with --profiles."
	}
	return e
}

// profileID finds a customer's profile by email through the essential
// purpose (what the business needs to serve them; reading nothing else).
func (c *client) profileID(ctx context.Context, cust *Customer) (string, error) {
	q := url.Values{"identifier": {cust.Identifier()}, "purpose": {trustloop.PurposeEssential}}
	what := fmt.Sprintf("lookup of customer %d", cust.Index)
	raw, err := c.call(ctx, http.MethodGet, "/v1/profiles/lookup?"+q.Encode(), "/v1/profiles/lookup", nil, nil, what, c.bearer, http.StatusOK)
	if err != nil {
		return "", err
	}
	var p struct {
		ID string `json:"profile_id"`
	}
	if err := json.Unmarshal(raw, &p); err != nil || p.ID == "" {
		return "", trustloop.Errorf(trustloop.EINTERNAL, "Demo: the %s gave no profile_id.", what)
	}
	return p.ID, nil
}

// waitCompleted polls a privacy request until it is completed.
func (c *client) waitCompleted(ctx context.Context, id, what string) error {
	deadline := time.Now().Add(erasureWait)
	for {
		raw, err := c.call(ctx, http.MethodGet, "/v1/privacy-requests/"+url.PathEscape(id), "/v1/privacy-requests/{id}", nil, nil,
			what, c.bearer, http.StatusOK)
		if err != nil {
			return err
		}
		var r struct {
			Status string `json:"status"`
		}
		json.Unmarshal(raw, &r)
		switch r.Status {
		case "completed":
			return nil
		case "rejected":
			return trustloop.Errorf(trustloop.ECONFLICT, "Demo: the %s was rejected.", what)
		}
		if time.Now().After(deadline) {
			return trustloop.Errorf(trustloop.EUNAVAILABLE, "Demo: the %s is still %q after %s.", what, r.Status, erasureWait).
				WithHint("Is the privacy worker running? See the server's log.")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
