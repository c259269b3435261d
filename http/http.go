package http

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/auditlog"
	"github.com/trustloop/trustloop/consent"
	"github.com/trustloop/trustloop/http/html"
	"github.com/trustloop/trustloop/metrics"
	"github.com/trustloop/trustloop/privacy"
	"github.com/trustloop/trustloop/projection"
	"github.com/trustloop/trustloop/recommend"
)

// Ingester is what the collector hands validated messages to (ingest.Pipeline).
// The messages' Raw bytes point into a request buffer that is reused once Ingest
// returns: an Ingester must copy what it keeps.
type Ingester interface {
	Ingest(ctx context.Context, src *trustloop.Source, msgs []trustloop.Message) error
}

// Config holds the server's tunables.
type Config struct {
	// RateLimit is the events per second each write key may send; 0 is unlimited.
	RateLimit float64
	// RateBurst is how many events a write key may send at once above the rate.
	RateBurst int
}

// Server is the HTTP server.
type Server struct {
	Store    trustloop.WorkspaceStore
	Ingester Ingester
	// Profiles serves the profile API; nil leaves it out.
	Profiles *projection.Service
	// Consent serves the purpose catalog and consent API and decides what each
	// read may see; nil leaves them out (reads then check purposes by name).
	Consent *consent.Service
	// Audit serves the audit log API; nil leaves it out.
	Audit *auditlog.Log
	// Privacy serves the privacy request API; nil leaves it out.
	Privacy *privacy.Service
	// Recommender serves recommendations and similar items (with Profiles);
	// nil leaves them out.
	Recommender *recommend.Service
	// Pages renders the preference center and the admin console, and
	// WebKeys signs their links and cookies; with Pages nil they are left out.
	Pages   *html.Pages
	WebKeys WebKeys
	// Operators holds the console's operator accounts; nil allows sign-in
	// with an admin API key only.
	Operators trustloop.OperatorStore
	// Counts holds the trust dashboard's daily numbers; nil leaves its
	// charts of consent and events out.
	Counts  trustloop.CountStore
	Metrics *metrics.Metrics
	Log     *slog.Logger
	Config  Config
	// Ready reports whether storage is open and migrated; nil means ready.
	Ready func(context.Context) error
	// Now and NewID are injected for tests.
	Now   func() time.Time
	NewID func() string

	ln       net.Listener
	srv      *http.Server
	draining atomic.Bool
	sources  sync.Map // string(write key hash) -> *sourceEntry
	apiKeys  sync.Map // string(API key secret hash) -> *apiKeyEntry
	limiters sync.Map // source id -> *rate.Limiter
	// signInLimits slows guessing at the console's sign-in (admin.go).
	signInLimits limiters
	// verifying marks workspaces whose audit log the console is verifying.
	verifying sync.Map // workspace id -> true
}

type sourceEntry struct {
	src     *trustloop.Source
	expires time.Time
}

// Open listens on addr and serves in the background.
func (s *Server) Open(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s.Serve(ln)
	return nil
}

// Serve serves on ln in the background; Shutdown closes it.
func (s *Server) Serve(ln net.Listener) {
	s.ln = ln
	s.srv = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.Log.Handler(), slog.LevelWarn),
	}
	go s.srv.Serve(ln)
}

// Addr is the address the server listens on (useful with port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Drain makes /readyz answer 503 so a load balancer stops sending work.
func (s *Server) Drain() { s.draining.Store(true) }

// Shutdown stops accepting connections and waits for in-flight requests (whose
// events the pipeline then commits) up to ctx's deadline.
func (s *Server) Shutdown(ctx context.Context) error {
	s.Drain()
	if s.srv == nil {
		return nil
	}
	return s.srv.Shutdown(ctx)
}

// handlerFunc is a handler that returns its error for Error to answer.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// Handler returns the root handler.
func (s *Server) Handler() http.Handler {
	if s.Now == nil {
		s.Now = time.Now
	}
	mux := http.NewServeMux()
	for _, p := range collectorPaths {
		mux.Handle("/v1/"+p.path, s.route("/v1/"+p.path, s.collector(p.route)))
	}
	mux.Handle("GET /healthz", s.route("/healthz", s.healthz))
	mux.Handle("GET /readyz", s.route("/readyz", s.readyz))
	mux.Handle("GET /metrics", s.Metrics.Handler())
	mux.Handle("GET /openapi.json", s.route("/openapi.json", s.openapi))
	s.profileRoutes(mux)
	s.consentRoutes(mux)
	s.apiKeyRoutes(mux)
	s.auditRoutes(mux)
	s.privacyRoutes(mux)
	s.recommendRoutes(mux)
	s.webRoutes(mux)
	mux.Handle("/", s.route("other", func(w http.ResponseWriter, r *http.Request) error {
		// The catch-all matches every method, so the mux never answers 405
		// itself: a path served for other methods is told apart here. The
		// path is not repeated: a segment can be an identifier.
		var err error
		if allow := allowedMethods(mux, r); len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			err = trustloop.Errorf(trustloop.EMETHOD, "%s is not allowed on this path.", r.Method).
				WithHint("Use " + strings.Join(allow, " or ") + ".")
		} else {
			err = trustloop.Errorf(trustloop.ENOTFOUND, "No such path.").
				WithHint("See /openapi.json for the paths this server offers.")
		}
		// A page of the console or the preference center is answered with a
		// page, as their own errors are.
		if s.Pages != nil && isWebFace(r) {
			if trustloop.ErrorCode(err) == trustloop.ENOTFOUND {
				err = trustloop.Errorf(trustloop.ENOTFOUND, "There is no such page.").
					WithHint("Go back, or start again from the link you were given (the console starts at /admin).")
			}
			webHeaders(w)
			s.errorPage(w, r, err)
			return nil
		}
		return err
	}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v1/") {
			if err := apiRequestProblem(r); err != nil {
				s.route("other", func(w http.ResponseWriter, r *http.Request) error {
					setCORS(w, r) // a browser's collector call may read why
					return err
				}).ServeHTTP(w, r)
				return
			}
		}
		mux.ServeHTTP(w, r)
	})
}

// apiRequestProblem refuses what the API's paths would otherwise take in a
// way the caller did not mean: a path with an empty or dot segment (the mux
// would redirect /v1/items//similar elsewhere, not say the id is missing),
// a query parameter given twice (none of the API's is a list, and taking
// the first of two hides a client's bug), a path or query that is not
// UTF-8, and two Authorization headers. Nothing of the query's values is repeated in the error: they can be
// identifiers.
func apiRequestProblem(r *http.Request) error {
	// The segments as sent: an id may hold an encoded slash or dot
	// (%2F, %2E), which is part of the id, not a segment. The path is not
	// repeated: a segment can be an identifier.
	segs := strings.Split(r.URL.EscapedPath(), "/")
	for i, seg := range segs[1:] {
		last := i == len(segs)-2
		if (seg == "" && !last) || seg == "." || seg == ".." {
			return trustloop.Errorf(trustloop.EINVALID, "The path has an empty or dot segment.").
				WithHint("Give every id the path names; see /openapi.json for the paths.")
		}
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return trustloop.Errorf(trustloop.EINVALID, "The query string is not well formed.").
			WithHint("Percent-encode the values, and separate parameters with &.")
	}
	// Two credentials: taking the first would hide which one the client
	// meant to use.
	if n := len(r.Header.Values("Authorization")); n > 1 {
		return trustloop.Errorf(trustloop.EINVALID, "The Authorization header is given %d times.", n).
			WithHint("Send one Authorization header: the write key (Basic) or an API key (Bearer).")
	}
	// Text is UTF-8: Go would turn a broken byte into U+FFFD, and an
	// identifier looked up so matches neither what was sent nor what is shown.
	if !utf8.ValidString(r.URL.Path) {
		return trustloop.Errorf(trustloop.EINVALID, "The path is not valid UTF-8 once decoded.").
			WithHint("Percent-encode ids as UTF-8.")
	}
	for name, vs := range q {
		if !utf8.ValidString(name) || !utf8.ValidString(vs[0]) {
			return trustloop.Errorf(trustloop.EINVALID, "A query parameter is not valid UTF-8 once decoded.").
				WithHint("Percent-encode the values as UTF-8.")
		}
		if len(vs) > 1 {
			what := "A query parameter" // the caller's own text: not repeated
			if paramName.MatchString(name) {
				what = "The query parameter " + name
			}
			return trustloop.Errorf(trustloop.EINVALID, "%s is given %d times.", what, len(vs)).
				WithHint("Give each query parameter once.")
		}
	}
	return nil
}

// paramName is what a name of the API's query parameters looks like.
var paramName = regexp.MustCompile(`^[a-z][a-z_]{0,31}$`)

// allowedMethods lists the methods mux serves r's path with other than the
// catch-all (none: the path is unknown).
func allowedMethods(mux *http.ServeMux, r *http.Request) []string {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		if m == r.Method {
			continue
		}
		probe := &http.Request{Method: m, URL: r.URL, Host: r.Host, Header: http.Header{}}
		if _, pattern := mux.Handler(probe); pattern != "" && pattern != "/" {
			allow = append(allow, m)
			if m == http.MethodGet {
				allow = append(allow, http.MethodHead) // the mux serves HEAD with GET
			}
		}
	}
	return allow
}

// statusWriter remembers the status for the latency metric.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// route wraps a handler with the error answer and the latency metric, labelled by
// the route pattern (never the raw path, which a caller chooses).
func (s *Server) route(name string, h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		if err := h(sw, r); err != nil {
			s.Error(sw, r, err)
		}
		s.Metrics.RequestDuration.WithLabelValues(name, strconv.Itoa(sw.status/100)+"xx").Observe(time.Since(start).Seconds())
	})
}

var statuses = map[string]int{
	trustloop.EINVALID:          http.StatusBadRequest,
	trustloop.EUNAUTHORIZED:     http.StatusUnauthorized,
	trustloop.EFORBIDDEN:        http.StatusForbidden,
	trustloop.ENOTFOUND:         http.StatusNotFound,
	trustloop.ECONFLICT:         http.StatusConflict,
	trustloop.ETOOLARGE:         http.StatusRequestEntityTooLarge,
	trustloop.ERATELIMITED:      http.StatusTooManyRequests,
	trustloop.EINTERNAL:         http.StatusInternalServerError,
	trustloop.EUNAVAILABLE:      http.StatusServiceUnavailable,
	trustloop.EMETHOD:           http.StatusMethodNotAllowed,
	trustloop.EUNSUPPORTEDMEDIA: http.StatusUnsupportedMediaType,
}

// ErrorStatus maps an error code to its HTTP status.
func ErrorStatus(code string) int {
	if s, ok := statuses[code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

type errorBody struct {
	Error errorJSON `json:"error"`
}

type errorJSON struct {
	Code    string                  `json:"code"`
	Message string                  `json:"message"`
	Hint    string                  `json:"hint,omitempty"`
	Details []trustloop.ErrorDetail `json:"details,omitempty"`
}

// Error is the one place an error becomes a response: status from the code, the
// JSON body, Retry-After, the rejection counter, and a log line for internal
// errors (whose detail the caller never sees).
func (s *Server) Error(w http.ResponseWriter, r *http.Request, err error) {
	code := trustloop.ErrorCode(err)
	body := errorJSON{Code: code, Message: trustloop.ErrorMessage(err)}
	var e *trustloop.Error
	if errors.As(err, &e) {
		body.Hint, body.Details = e.Hint, e.Details
		if e.RetryAfterSeconds > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfterSeconds))
		}
	} else {
		body.Hint = "Retry later; if it persists, the operator will find the detail in the server log."
	}
	if code == trustloop.EINTERNAL {
		s.logInternal(r, err)
	}
	if isCollector(r) {
		s.Metrics.RequestsRejected.WithLabelValues(code).Inc()
	}
	writeJSON(w, ErrorStatus(code), errorBody{Error: body})
}

// logInternal logs an internal error, unless it is the request's own context
// ending (the client went away, e.g. a page closed during a long "Verify
// now"): that is no fault of the server, so it is logged at info.
func (s *Server) logInternal(r *http.Request, err error) {
	if ctxErr := r.Context().Err(); ctxErr != nil && errors.Is(err, ctxErr) {
		s.Log.Info("request ended: the client went away", "method", r.Method, "route", r.Pattern)
		return
	}
	s.Log.Error("internal error", "method", r.Method, "route", r.Pattern, "err", err)
}

// jsonAppender is a view that writes its own JSON, as encoding/json would,
// for an answer on a hot path; ok false leaves it to encoding/json.
type jsonAppender interface {
	appendJSON(b []byte) (_ []byte, ok bool)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var b []byte
	var err error
	ok := false
	if a, is := v.(jsonAppender); is {
		b, ok = a.appendJSON(make([]byte, 0, 1024))
	}
	if !ok {
		b, err = json.Marshal(v)
	}
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"code":"internal","message":"Internal error."}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) error {
	if s.draining.Load() {
		return &trustloop.Error{Code: trustloop.EUNAVAILABLE, Message: "Draining: this node is shutting down.",
			Hint: "Send traffic to another node.", RetryAfterSeconds: 1}
	}
	if s.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := s.Ready(ctx); err != nil {
			s.Log.Warn("not ready", "err", err)
			return &trustloop.Error{Code: trustloop.EUNAVAILABLE, Message: "Storage is not ready.",
				Hint: "Wait for startup to finish; check the database if it lasts.", RetryAfterSeconds: 1}
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	return nil
}

//go:embed openapi.json
var openapiDoc []byte

func (s *Server) openapi(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	w.Write(openapiDoc)
	return nil
}

// source authenticates a write key. The lookup is by SHA-256 of the key, so
// neither the cache nor the store compares the secret itself; an unknown key is
// EUNAUTHORIZED without saying more.
func (s *Server) source(ctx context.Context, writeKey string) (*trustloop.Source, error) {
	if writeKey == "" {
		return nil, trustloop.Errorf(trustloop.EUNAUTHORIZED, "No write key was sent.").
			WithHint("Send the source's write key as the Basic auth user name (empty password) or as writeKey in the body.")
	}
	h := sha256.Sum256([]byte(writeKey))
	now := s.Now()
	if v, ok := s.sources.Load(string(h[:])); ok {
		if e := v.(*sourceEntry); now.Before(e.expires) {
			return e.src, nil
		}
	}
	src, err := s.Store.FindSourceByWriteKeyHash(ctx, h[:])
	if trustloop.ErrorCode(err) == trustloop.ENOTFOUND {
		return nil, trustloop.Errorf(trustloop.EUNAUTHORIZED, "The write key is not valid.").
			WithHint("Check the write key of your source; it is shown once when the source is created.")
	} else if err != nil {
		return nil, err
	}
	// A short lifetime bounds how long a revoked key keeps working on this node.
	s.sources.Store(string(h[:]), &sourceEntry{src: src, expires: now.Add(30 * time.Second)})
	return src, nil
}

func (s *Server) now() time.Time {
	if s.Now == nil {
		return time.Now()
	}
	return s.Now()
}
