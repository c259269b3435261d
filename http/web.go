package http

import (
	"crypto/hmac"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/http/html"
)

// The web faces (the preference center under /portal, the admin console under
// /admin) are server-rendered HTML that works without JavaScript. Their links
// and session cookies are signed tokens, not stored sessions: any node with
// the master key verifies them, and nothing about a session is written to
// the store. A token names its workspace and, for the portal, its one
// customer (T9), and carries its own expiry.

// WebKeys signs the web faces' tokens (keyring.Keyring).
type WebKeys interface {
	MAC(workspaceID int64, label string, msg []byte) ([]byte, error)
}

// Token kinds; each is signed under its own label, so one cannot pass for another.
const (
	tokenPortalLink = "portal-link"
	tokenPortal     = "portal"
	tokenAdmin      = "admin"
)

// claims is what a token says.
type claims struct {
	Kind    string `json:"k"`
	WS      int64  `json:"w"`
	Profile int64  `json:"p,omitempty"`
	// Who is the console's principal: "key:<id>" or "op:<id>".
	Who string `json:"a,omitempty"`
	// Requests are privacy requests the portal session filed (their status
	// stays readable after an erasure removed the profile).
	Requests []string `json:"r,omitempty"`
	// Epoch is an operator session's password epoch (passwordEpoch).
	Epoch string `json:"q,omitempty"`
	Exp   int64  `json:"e"`
	Nonce string `json:"n"`
}

func (s *Server) signToken(c *claims) (string, error) {
	if s.WebKeys == nil {
		return "", trustloop.Errorf(trustloop.EUNAVAILABLE, "This server cannot sign links.").
			WithHint("This server was started without a keyring to sign with; trustloop serve always has one.")
	}
	if c.Nonce == "" {
		var b [12]byte
		rand.Read(b[:])
		c.Nonce = base64.RawURLEncoding.EncodeToString(b[:])
	}
	body, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	payload := base64.RawURLEncoding.EncodeToString(body)
	mac, err := s.WebKeys.MAC(c.WS, c.Kind, []byte(payload))
	if err != nil {
		return "", err
	}
	return payload + "." + base64.RawURLEncoding.EncodeToString(mac), nil
}

// errBadToken is one answer for every bad token: a caller learns nothing of why.
func errBadToken(kind string) error {
	if kind == tokenAdmin {
		return trustloop.Errorf(trustloop.EUNAUTHORIZED, "Your session has ended.").WithHint("Sign in again.")
	}
	return trustloop.Errorf(trustloop.EUNAUTHORIZED, "This link is not valid or has expired.").
		WithHint("Open your privacy settings again from the shop's website to get a new link.")
}

// verifyToken checks a token's signature (in constant time), kind and expiry.
func (s *Server) verifyToken(tok, kind string) (*claims, error) {
	payload, sig, ok := strings.Cut(tok, ".")
	if !ok || s.WebKeys == nil || len(tok) > 4096 {
		return nil, errBadToken(kind)
	}
	body, err1 := base64.RawURLEncoding.DecodeString(payload)
	mac, err2 := base64.RawURLEncoding.DecodeString(sig)
	var c claims
	if err1 != nil || err2 != nil || json.Unmarshal(body, &c) != nil || c.Kind != kind || c.WS <= 0 {
		return nil, errBadToken(kind)
	}
	want, err := s.WebKeys.MAC(c.WS, kind, []byte(payload))
	if err != nil || !hmac.Equal(mac, want) {
		return nil, errBadToken(kind)
	}
	if s.now().Unix() >= c.Exp {
		return nil, errBadToken(kind)
	}
	return &c, nil
}

// secure says whether cookies may carry the Secure flag: over TLS, or behind a
// proxy that terminated it. Plain http on a developer's machine needs them
// without it.
func secure(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

func setCookie(w http.ResponseWriter, r *http.Request, name, value, path string, exp time.Time, strict bool) {
	c := &http.Cookie{Name: name, Value: value, Path: path, HttpOnly: true, Secure: secure(r), SameSite: http.SameSiteLaxMode}
	if strict {
		c.SameSite = http.SameSiteStrictMode
	}
	if value == "" {
		c.MaxAge = -1
	} else {
		c.Expires = exp
	}
	http.SetCookie(w, c)
}

// webFunc is a web handler; its error becomes an HTML error page.
type webFunc func(w http.ResponseWriter, r *http.Request) error

// web wraps a page handler: security headers, the error page, the latency
// metric. Pages are never cached (they show personal data) and never framed.
func (s *Server) web(name string, h webFunc) http.Handler {
	return s.route(name, func(w http.ResponseWriter, r *http.Request) error {
		webHeaders(w)
		if err := h(w, r); err != nil {
			s.errorPage(w, r, err)
		}
		return nil
	})
}

// webHeaders are the headers of every page of the two faces.
func webHeaders(w http.ResponseWriter) {
	hd := w.Header()
	hd.Set("Cache-Control", "no-store")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
}

// isWebFace reports whether r asks for a page of the console or the
// preference center (whose errors are pages, not JSON).
func isWebFace(r *http.Request) bool {
	p := r.URL.Path
	return p == "/admin" || strings.HasPrefix(p, "/admin/") || p == "/portal" || strings.HasPrefix(p, "/portal/")
}

// errorPage is Error for people: the same status, message and hint, as a page.
func (s *Server) errorPage(w http.ResponseWriter, r *http.Request, err error) {
	code := trustloop.ErrorCode(err)
	msg, hint := trustloop.ErrorMessage(err), ""
	var e *trustloop.Error
	if errors.As(err, &e) {
		hint = e.Hint
		if e.RetryAfterSeconds > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfterSeconds))
		}
	} else {
		hint = "Try again later."
	}
	if code == trustloop.EINTERNAL {
		s.logInternal(r, err)
	}
	face := "portal"
	if strings.HasPrefix(r.URL.Path, "/admin") {
		face = "admin"
	}
	status := ErrorStatus(code)
	p := &html.Page{Face: face, Title: "common.error.title", Data: map[string]string{"Message": msg, "Hint": hint, "Code": code}}
	if face == "portal" {
		// The message and hint are the API's (English); the page around
		// them is in the customer's language.
		p.Lang = s.Pages.Negotiate(r.Header.Get("Accept-Language"))
	}
	if face == "admin" && code != trustloop.EUNAUTHORIZED {
		if c, err := s.adminClaims(r); err == nil {
			p.Principal = c.Who
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := s.Pages.Render(w, "error.html", p); err != nil {
		s.Log.Error("rendering the error page failed", "err", err)
	}
}

// render writes a page with status 200.
func (s *Server) render(w http.ResponseWriter, name string, p *html.Page) error {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	return s.Pages.Render(w, name, p)
}

// see answers a form post with 303 to where the result is shown (post,
// redirect, get: a reload does not post twice).
func see(w http.ResponseWriter, r *http.Request, to string) error {
	http.Redirect(w, r, to, http.StatusSeeOther)
	return nil
}

// webRoutes mounts the two faces and their static files. Form posts are
// guarded against cross-site requests by http.CrossOriginProtection (Fetch
// metadata and Origin), and the cookies are SameSite.
func (s *Server) webRoutes(mux *http.ServeMux) {
	if s.Pages == nil {
		return
	}
	csrf := http.NewCrossOriginProtection()
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(html.Static())))
	s.portalRoutes(mux, csrf)
	s.adminRoutes(mux, csrf)
}

// formMax is the most a form post may hold.
const formMax = 64 << 10

// parseForm reads a small urlencoded form (64 KB at most; one whose
// Content-Length says more is refused unread, as readAPIBody does).
func parseForm(w http.ResponseWriter, r *http.Request) error {
	if r.ContentLength > formMax {
		return trustloop.Errorf(trustloop.ETOOLARGE, "The form is over 64 KB.").
			WithHint("Go back, shorten the longest field and send it again.")
	}
	r.Body = http.MaxBytesReader(w, r.Body, formMax)
	if err := r.ParseForm(); err != nil {
		return trustloop.Errorf(trustloop.EINVALID, "The form could not be read.").WithHint("Go back and send it again.")
	}
	// Text fields are text: a NUL or broken UTF-8 is refused here, the same
	// on every store (PostgreSQL would refuse it only at the query).
	for _, vs := range r.Form {
		for _, v := range vs {
			if !utf8.ValidString(v) || strings.IndexByte(v, 0) >= 0 {
				return trustloop.Errorf(trustloop.EINVALID, "The form holds characters that are not text.").
					WithHint("Go back, correct the field and send it again.")
			}
		}
	}
	return nil
}
