package http

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/http/html"
	"github.com/trustloop/trustloop/password"
)

// The admin console (/admin): staff sign in with an operator account (email
// and password, argon2id) or with an admin API key, and get a signed session
// cookie (SameSite=Strict, HttpOnly, Secure over TLS) for 8 hours. Every page
// checks the principal again (a revoked key or disabled operator is out at
// once, on every node), and acts with the principal's roles and purposes,
// exactly as the API would for a key with them. Reads of a customer's data
// name a purpose and are recorded with the operator as the actor.

const (
	adminSessionTTL = 8 * time.Hour
	adminCookie     = "tl_admin"
)

// adminSession is the signed-in principal of a console request.
type adminSession struct {
	claims *claims
	// key is the principal as the API's rules see it: its workspace, roles
	// and purposes (for an operator, a key-shaped view with ID 0).
	key   *trustloop.APIKey
	actor trustloop.AuditActor
	// name is shown in the header: the operator's name, or the key's name.
	name string
}

func (a *adminSession) has(roles ...string) bool {
	for _, r := range roles {
		if slices.Contains(a.key.Roles, r) {
			return true
		}
	}
	return false
}

// require refuses an action the principal's roles do not allow.
func (a *adminSession) require(roles ...string) error {
	if a.has(roles...) {
		return nil
	}
	return trustloop.Errorf(trustloop.EFORBIDDEN, "Your role does not allow this.").
		WithHint("It needs one of these roles: " + strings.Join(roles, ", ") + ". Ask an admin.")
}

// page starts a console page for the session.
func (a *adminSession) page(title, nav string, data any) *html.Page {
	return &html.Page{Face: "admin", Title: title, Nav: nav, Principal: a.name, Data: data}
}

func (s *Server) adminRoutes(mux *http.ServeMux, csrf *http.CrossOriginProtection) {
	mux.Handle("GET /admin/signin", s.web("/admin/signin", s.signInPage))
	mux.Handle("POST /admin/signin", csrf.Handler(s.web("/admin/signin", s.signIn)))
	mux.Handle("POST /admin/signout", csrf.Handler(s.web("/admin/signout", s.signOut)))
	s.consoleRoutes(mux, csrf)
}

// adminClaims reads the console cookie.
func (s *Server) adminClaims(r *http.Request) (*claims, error) {
	ck, err := r.Cookie(adminCookie)
	if err != nil {
		return nil, errBadToken(tokenAdmin)
	}
	return s.verifyToken(ck.Value, tokenAdmin)
}

// admin wraps a console page: no session sends a page view to the sign-in
// form; a form post without one is refused.
func (s *Server) admin(h func(w http.ResponseWriter, r *http.Request, a *adminSession) error) webFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		c, err := s.adminClaims(r)
		if err != nil {
			if r.Method == http.MethodGet {
				return see(w, r, "/admin/signin")
			}
			return err
		}
		a, err := s.principal(r.Context(), c)
		if err != nil {
			// Only a session that is over is cleared: a store that failed
			// for a moment signs no one out.
			if trustloop.ErrorCode(err) == trustloop.EUNAUTHORIZED {
				setCookie(w, r, adminCookie, "", "/admin", time.Time{}, true)
				if r.Method == http.MethodGet {
					return see(w, r, "/admin/signin")
				}
			}
			return err
		}
		return h(w, r, a)
	}
}

// principal loads a session's key or operator, refusing one revoked,
// disabled or no longer an admin (for keys) since the session began.
func (s *Server) principal(ctx context.Context, c *claims) (*adminSession, error) {
	kind, idStr, _ := strings.Cut(c.Who, ":")
	id, err := strconv.ParseInt(idStr, 10, 64)
	if err != nil {
		return nil, errBadToken(tokenAdmin)
	}
	a := &adminSession{claims: c}
	switch kind {
	case "key":
		k, err := s.findKey(ctx, c.WS, id)
		if trustloop.ErrorCode(err) == trustloop.ENOTFOUND || (err == nil && (k.RevokedAt != nil || !slices.Contains(k.Roles, trustloop.RoleAdmin))) {
			return nil, errBadToken(tokenAdmin)
		} else if err != nil {
			return nil, err
		}
		a.key, a.actor, a.name = k, actorOf(k), "API key: "+k.Name
	case "op":
		if s.Operators == nil {
			return nil, errBadToken(tokenAdmin)
		}
		op, err := s.Operators.FindOperator(ctx, c.WS, id)
		if trustloop.ErrorCode(err) == trustloop.ENOTFOUND || (err == nil && (op.DisabledAt != nil || c.Epoch != passwordEpoch(op))) {
			return nil, errBadToken(tokenAdmin)
		} else if err != nil {
			return nil, err
		}
		a.key = &trustloop.APIKey{WorkspaceID: op.WorkspaceID, Name: op.Name, Roles: op.Roles, Purposes: op.Purposes}
		a.actor = trustloop.AuditActor{Kind: trustloop.ActorOperator, ID: "operator:" + strconv.FormatInt(op.ID, 10)}
		a.name = op.Name
	default:
		return nil, errBadToken(tokenAdmin)
	}
	return a, nil
}

type signInView struct {
	Operators bool
	Error     string
	Email     string
}

func (s *Server) signInPage(w http.ResponseWriter, r *http.Request) error {
	p := &html.Page{Face: "admin", Title: "admin.signin.title", Data: &signInView{Operators: s.Operators != nil}}
	if r.URL.Query().Get("out") != "" {
		p.Flash = "admin.signed_out"
	}
	return s.render(w, "admin_signin.html", p)
}

// signInLimits slows password and key guessing: per client address (an
// IPv6 client by its /64, which one host controls whole) and per account
// email, 10 attempts and then one every 6 seconds. The map is bounded: a
// limiter idle for a minute is full again, so it is dropped when the map
// grows. Per node, in memory (Server.signInLimits).

type limiters struct {
	mu sync.Mutex
	m  map[string]*limiterEntry
}

type limiterEntry struct {
	l    *rate.Limiter
	last time.Time
}

// maxLimiters bounds the map before idle entries are swept.
const maxLimiters = 10_000

func (ls *limiters) allow(key string, now time.Time) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.m == nil {
		ls.m = map[string]*limiterEntry{}
	}
	e, ok := ls.m[key]
	if !ok {
		if len(ls.m) >= maxLimiters {
			for k, old := range ls.m {
				if now.Sub(old.last) > time.Minute {
					delete(ls.m, k)
				}
			}
		}
		e = &limiterEntry{l: rate.NewLimiter(rate.Every(6*time.Second), 10)}
		ls.m[key] = e
	}
	e.last = now
	return e.l.AllowN(now, 1)
}

// clientKey is the address a sign-in attempt is limited by.
func clientKey(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
		return "ip:" + ip.Mask(net.CIDRMask(64, 128)).String()
	}
	return "ip:" + host
}

// allowSignIn spends one attempt of the client and, when an email is given,
// one of that account (hashed: the map holds no email).
func (s *Server) allowSignIn(r *http.Request, email string) bool {
	now := time.Now()
	ok := s.signInLimits.allow(clientKey(r), now)
	if email != "" {
		h := sha256.Sum256([]byte(email))
		ok = s.signInLimits.allow("email:"+string(h[:]), now) && ok
	}
	return ok
}

// dummyHash is verified against when the email is unknown, so a wrong email
// takes as long as a wrong password and the answer says nothing of which.
var dummyHash = sync.OnceValue(func() string {
	h, _ := password.Hash("not a password of anyone's, only for timing")
	return h
})

// signIn checks an operator's password or an admin key and starts a session.
// Every failure gets the same answer.
func (s *Server) signIn(w http.ResponseWriter, r *http.Request) error {
	if err := parseForm(w, r); err != nil {
		return err
	}
	fail := func() error {
		w.WriteHeader(http.StatusUnauthorized)
		return s.render(w, "admin_signin.html", &html.Page{Face: "admin", Title: "admin.signin.title",
			Data: &signInView{Operators: s.Operators != nil, Error: "The sign-in details are not right. Check them and try again."}})
	}
	if !s.allowSignIn(r, trustloop.NormalizeOperatorEmail(r.PostForm.Get("email"))) {
		return &trustloop.Error{Code: trustloop.ERATELIMITED, Message: "Too many sign-in attempts.",
			Hint: "Wait a minute, then try again.", RetryAfterSeconds: 60}
	}
	var c *claims
	if key := strings.TrimSpace(r.PostForm.Get("key")); key != "" {
		h := sha256.Sum256([]byte(key))
		k, err := s.Store.FindAPIKeyBySecretHash(r.Context(), h[:])
		if trustloop.ErrorCode(err) == trustloop.ENOTFOUND || (err == nil && (k.RevokedAt != nil || !slices.Contains(k.Roles, trustloop.RoleAdmin))) {
			return fail()
		} else if err != nil {
			return err
		}
		c = &claims{Kind: tokenAdmin, WS: k.WorkspaceID, Who: "key:" + strconv.FormatInt(k.ID, 10)}
	} else {
		email, pw := trustloop.NormalizeOperatorEmail(r.PostForm.Get("email")), r.PostForm.Get("password")
		if s.Operators == nil || email == "" || pw == "" {
			return fail()
		}
		op, err := s.Operators.FindOperatorByEmail(r.Context(), 0, email)
		if err != nil && trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
			return err
		}
		hash := dummyHash()
		if op != nil {
			hash = op.PasswordHash
		}
		ok, _ := password.Verify(hash, pw)
		if op == nil || !ok || op.DisabledAt != nil {
			return fail()
		}
		c = &claims{Kind: tokenAdmin, WS: op.WorkspaceID, Who: "op:" + strconv.FormatInt(op.ID, 10), Epoch: passwordEpoch(op)}
	}
	exp := s.now().Add(adminSessionTTL)
	c.Exp = exp.Unix()
	tok, err := s.signToken(c)
	if err != nil {
		return err
	}
	setCookie(w, r, adminCookie, tok, "/admin", exp, true)
	return see(w, r, "/admin")
}

// passwordEpoch ties a session to the password it was opened with: a new
// password (a reset) ends every session opened before it, on every node.
func passwordEpoch(op *trustloop.Operator) string {
	h := sha256.Sum256([]byte("session-epoch\x00" + op.PasswordHash))
	return base64.RawURLEncoding.EncodeToString(h[:9])
}

func (s *Server) signOut(w http.ResponseWriter, r *http.Request) error {
	setCookie(w, r, adminCookie, "", "/admin", time.Time{}, true)
	return see(w, r, "/admin/signin?out=1")
}
