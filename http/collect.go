package http

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/collect"
)

var collectorPaths = []struct {
	path  string
	route collect.Route
}{
	{"track", collect.Route{Type: trustloop.EventTrack}},
	{"identify", collect.Route{Type: trustloop.EventIdentify}},
	{"page", collect.Route{Type: trustloop.EventPage}},
	{"screen", collect.Route{Type: trustloop.EventScreen}},
	{"group", collect.Route{Type: trustloop.EventGroup}},
	{"alias", collect.Route{Type: trustloop.EventAlias}},
	{"batch", collect.Batch},
	{"import", collect.Batch},
	// analytics.js's short paths: the write key comes in the body, the body may be
	// text/plain (a "simple" request that browsers send without a preflight).
	{"t", collect.Route{Type: trustloop.EventTrack}},
	{"i", collect.Route{Type: trustloop.EventIdentify}},
	{"p", collect.Route{Type: trustloop.EventPage}},
	{"s", collect.Route{Type: trustloop.EventScreen}},
	{"g", collect.Route{Type: trustloop.EventGroup}},
	{"a", collect.Route{Type: trustloop.EventAlias}},
	{"b", collect.Batch},
}

func isCollector(r *http.Request) bool {
	return r.Method != http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/")
}

var successBody = []byte(`{"success":true}` + "\n")

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

var gzipPool sync.Pool // of *gzip.Reader

func (s *Server) collector(route collect.Route) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		setCORS(w, r)
		switch r.Method {
		case http.MethodPost:
		case http.MethodOptions:
			return preflight(w, r)
		default:
			w.Header().Set("Allow", "POST, OPTIONS")
			return trustloop.Errorf(trustloop.EMETHOD, "%s is not allowed here.", r.Method).
				WithHint("Send events with POST.")
		}
		if err := checkContentType(r); err != nil {
			return err
		}
		// Header auth is checked before the body is read, so a wrong key costs
		// nothing; browser paths carry the key in the body instead.
		var src *trustloop.Source
		if r.Header.Get("Authorization") != "" {
			key, _, ok := r.BasicAuth()
			if !ok {
				return trustloop.Errorf(trustloop.EUNAUTHORIZED, "The Authorization header is not HTTP Basic.").
					WithHint("Send the write key as the Basic auth user name with an empty password.")
			}
			var err error
			if src, err = s.source(r.Context(), key); err != nil {
				return err
			}
		}
		buf := bufPool.Get().(*bytes.Buffer)
		buf.Reset()
		defer func() {
			if buf.Cap() <= 2*trustloop.MaxRequestBytes {
				bufPool.Put(buf)
			}
		}()
		if err := readBody(buf, r); err != nil {
			return err
		}
		gpc := r.Header.Get("Sec-GPC") == "1" // only the exact value counts
		req, err := collect.Decode(buf.Bytes(), route, collect.Options{ReceivedAt: s.Now().UTC(), NewID: s.NewID, GPC: gpc})
		if err != nil {
			return err
		}
		if src == nil {
			if src, err = s.source(r.Context(), req.WriteKey); err != nil {
				return err
			}
		}
		if err := checkOrigin(src, r); err != nil {
			return err
		}
		if err := s.allow(src, len(req.Messages)); err != nil {
			return err
		}
		s.Metrics.EventsReceived.Add(float64(len(req.Messages)))
		s.Metrics.RequestBatchSize.Observe(float64(len(req.Messages)))
		if err := s.Ingester.Ingest(r.Context(), src, req.Messages); err != nil {
			return err
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(successBody)
		return nil
	}
}

func checkContentType(r *http.Request) error {
	if err := checkMediaType(r); err != nil {
		return err
	}
	switch enc := r.Header.Get("Content-Encoding"); strings.ToLower(enc) {
	case "", "identity", "gzip", "x-gzip":
		return nil
	default:
		return trustloop.Errorf(trustloop.EUNSUPPORTEDMEDIA, "Content-Encoding %q is not supported.", enc).
			WithHint("Send the body uncompressed or gzip-compressed.")
	}
}

// checkMediaType refuses a body labelled as something JSON is not sent as.
func checkMediaType(r *http.Request) error {
	// The body is parsed as JSON whatever its label among these: browsers send
	// text/plain to avoid a preflight, and RudderStack's Node SDK labels its
	// gzipped JSON application/x-www-form-urlencoded (so does curl -d, by
	// default). Anything else is refused.
	if ct := r.Header.Get("Content-Type"); ct != "" {
		// Parameters are not used (the body is UTF-8 JSON whatever the charset
		// says), so a malformed one does not refuse the request; mt is still
		// returned with ErrInvalidMediaParameter.
		mt, _, err := mime.ParseMediaType(ct)
		unparseable := err != nil && !errors.Is(err, mime.ErrInvalidMediaParameter)
		if unparseable {
			mt = ct // name what was sent, not ""
		}
		if unparseable || !(mt == "application/json" || mt == "text/plain" || mt == "application/x-www-form-urlencoded" ||
			mt == "application/octet-stream" || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))) {
			return trustloop.Errorf(trustloop.EUNSUPPORTEDMEDIA, "Content-Type %q is not supported.", mt).
				WithHint("Send JSON as application/json (or text/plain from browsers).")
		}
	}
	return nil
}

// isGzip reports whether the body is gzip-compressed. Content codings are
// case-insensitive, and x-gzip is gzip (RFC 9110, 8.4.1).
func isGzip(r *http.Request) bool {
	enc := strings.ToLower(r.Header.Get("Content-Encoding"))
	return enc == "gzip" || enc == "x-gzip"
}

var errTooLarge = trustloop.Errorf(trustloop.ETOOLARGE, "The request body is larger than the 500 KB limit; nothing was stored.").
	WithHint("Send smaller batches (at most 500 KB and 2,500 events each).")

// readBody reads the (decompressed) body into buf, refusing more than the limit.
func readBody(buf *bytes.Buffer, r *http.Request) error {
	gz := isGzip(r)
	if r.ContentLength > trustloop.MaxRequestBytes && !gz {
		return errTooLarge
	}
	var body io.Reader = r.Body
	if gz {
		// The compressed body is limited too, so a slow trickle of compressed
		// bytes cannot hold the handler; the decompressed size is what counts.
		zr, _ := gzipPool.Get().(*gzip.Reader)
		var err error
		lr := io.LimitReader(r.Body, 4*trustloop.MaxRequestBytes)
		if zr == nil {
			zr, err = gzip.NewReader(lr)
		} else {
			err = zr.Reset(lr)
		}
		if err != nil {
			return trustloop.Errorf(trustloop.EINVALID, "The body is not valid gzip.").
				WithHint("Compress the body with gzip or send it uncompressed without Content-Encoding.")
		}
		defer gzipPool.Put(zr)
		body = zr
	}
	if r.ContentLength > 0 && r.ContentLength <= trustloop.MaxRequestBytes {
		buf.Grow(int(r.ContentLength) + 1)
	}
	n, err := buf.ReadFrom(io.LimitReader(body, trustloop.MaxRequestBytes+1))
	if err != nil {
		if gz {
			return trustloop.Errorf(trustloop.EINVALID, "The body is not valid gzip.").
				WithHint("Compress the body with gzip or send it uncompressed without Content-Encoding.")
		}
		return trustloop.Errorf(trustloop.EINVALID, "The request body could not be read.").
			WithHint("Send the whole body with a correct Content-Length or chunked encoding.")
	}
	if n > trustloop.MaxRequestBytes {
		return errTooLarge
	}
	return nil
}

// setCORS answers every collector response so browsers may read it. Which origins
// may send events is checked per source in checkOrigin.
func setCORS(w http.ResponseWriter, r *http.Request) {
	if o := r.Header.Get("Origin"); o != "" {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", o)
		// Retry-After is not a CORS-safelisted response header: without this a
		// page's script cannot see how long a 429 or 503 asks it to wait.
		h.Set("Access-Control-Expose-Headers", "Retry-After")
		h.Add("Vary", "Origin")
	}
}

// preflight answers CORS preflights. The source is not known yet (the browser
// sends no body), so any origin passes here and the POST itself is checked.
func preflight(w http.ResponseWriter, r *http.Request) error {
	h := w.Header()
	h.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
	if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
		h.Set("Access-Control-Allow-Headers", req)
	} else {
		h.Set("Access-Control-Allow-Headers", "Content-Type, Authorization, Content-Encoding")
	}
	h.Set("Access-Control-Max-Age", "86400")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func checkOrigin(src *trustloop.Source, r *http.Request) error {
	o := r.Header.Get("Origin")
	if o == "" || len(src.AllowedOrigins) == 0 {
		return nil
	}
	for _, a := range src.AllowedOrigins {
		if a == "*" || strings.EqualFold(a, o) {
			return nil
		}
	}
	return trustloop.Errorf(trustloop.EFORBIDDEN, "This source does not accept events from the page's origin; nothing was stored.").
		WithHint("Add the origin to the source's allowed origins.")
}

// allow applies the per-write-key rate limit (events per second with a burst).
func (s *Server) allow(src *trustloop.Source, n int) error {
	if s.Config.RateLimit <= 0 {
		return nil
	}
	burst := max(s.Config.RateBurst, 1)
	v, ok := s.limiters.Load(src.ID)
	if !ok {
		v, _ = s.limiters.LoadOrStore(src.ID, rate.NewLimiter(rate.Limit(s.Config.RateLimit), burst))
	}
	lim := v.(*rate.Limiter)
	now := s.Now()
	if n > burst {
		return trustloop.Errorf(trustloop.ERATELIMITED, "The request holds %d events, more than this write key's burst of %d.", n, burst).
			WithHint("Send smaller batches.")
	}
	if lim.AllowN(now, n) {
		return nil
	}
	// How long until n tokens are there, rounded up to whole seconds.
	res := lim.ReserveN(now, n)
	wait := res.DelayFrom(now)
	res.CancelAt(now)
	secs := int((wait + time.Second - 1) / time.Second)
	return &trustloop.Error{Code: trustloop.ERATELIMITED, RetryAfterSeconds: max(secs, 1),
		Message: "This write key is sending events faster than its rate limit; nothing was stored.",
		Hint:    "Wait for the Retry-After seconds and send again; clients should back off."}
}
