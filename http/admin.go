package http

import (
	"context"
	"crypto/sha256"
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
	role := ""
	if len(a.key.Roles) > 0 {
		role = a.key.Roles[0]
	}
	return &html.Page{Face: "admin", Title: title, Nav: nav, Principal: a.name, Role: role, Data: data}
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
			setCookie(w, r, adminCookie, "", "/admin", time.Time{}, true)
			if r.Method == http.MethodGet && trustloop.ErrorCode(err) == trustloop.EUNAUTHORIZED {
				return see(w, r, "/admin/signin")
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
		keys, err := s.Store.ListAPIKeys(ctx, c.WS)
		if err != nil {
			return nil, err
		}
		i := slices.IndexFunc(keys, func(k *trustloop.APIKey) bool { return k.ID == id })
		if i < 0 || keys[i].RevokedAt != nil || !slices.Contains(keys[i].Roles, trustloop.RoleAdmin) {
			return nil, errBadToken(tokenAdmin)
		}
		a.key, a.actor, a.name = keys[i], actorOf(keys[i]), "API key: "+keys[i].Name
	case "op":
		if s.Operators == nil {
			return nil, errBadToken(tokenAdmin)
		}
		op, err := s.Operators.FindOperator(ctx, c.WS, id)
		if trustloop.ErrorCode(err) == trustloop.ENOTFOUND || (err == nil && op.DisabledAt != nil) {
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

// signInLimits slows password and key guessing: per client address, 10
// attempts and then one every 6 seconds.
var signInLimits sync.Map // client address -> *rate.Limiter

func allowSignIn(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	l, _ := signInLimits.LoadOrStore(host, rate.NewLimiter(rate.Every(6*time.Second), 10))
	return l.(*rate.Limiter).Allow()
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
	if !allowSignIn(r) {
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
		op, err := s.findOperator(r.Context(), email)
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
		c = &claims{Kind: tokenAdmin, WS: op.WorkspaceID, Who: "op:" + strconv.FormatInt(op.ID, 10)}
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

// findOperator finds an operator by email in any workspace (the sign-in form
// names no workspace; an email belongs to one workspace's staff).
func (s *Server) findOperator(ctx context.Context, email string) (*trustloop.Operator, error) {
	wss, err := s.Store.ListWorkspaces(ctx)
	if err != nil {
		return nil, err
	}
	for _, ws := range wss {
		op, err := s.Operators.FindOperatorByEmail(ctx, ws.ID, email)
		if err == nil {
			return op, nil
		} else if trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
			return nil, err
		}
	}
	return nil, trustloop.Errorf(trustloop.ENOTFOUND, "No such operator.")
}

func (s *Server) signOut(w http.ResponseWriter, r *http.Request) error {
	setCookie(w, r, adminCookie, "", "/admin", time.Time{}, true)
	return see(w, r, "/admin/signin?out=1")
}
