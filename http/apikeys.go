package http

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/trustloop/trustloop"
)

// API keys (API.md): admin keys create, list and revoke the keys of their own
// workspace. A secret is shown once, at creation; the store keeps its SHA-256.

var apiKeyPaths = []string{"/v1/api-keys", "/v1/api-keys/{id}"}

func (s *Server) apiKeyRoutes(mux *http.ServeMux) {
	mux.Handle("POST /v1/api-keys", s.route("/v1/api-keys", s.authed(s.createAPIKey)))
	mux.Handle("GET /v1/api-keys", s.route("/v1/api-keys", s.authed(s.listAPIKeys)))
	mux.Handle("DELETE /v1/api-keys/{id}", s.route("/v1/api-keys/{id}", s.authed(s.revokeAPIKey)))
}

// apiKeyView is a key as listed: never its secret or hash.
type apiKeyView struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Roles     []string   `json:"roles"`
	Purposes  []string   `json:"purposes"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	// Secret is set only in the answer to its creation.
	Secret string `json:"secret,omitempty"`
}

func viewKey(k *trustloop.APIKey) apiKeyView {
	return apiKeyView{ID: strconv.FormatInt(k.ID, 10), Name: k.Name, Roles: k.Roles, Purposes: k.Purposes,
		CreatedAt: k.CreatedAt, RevokedAt: k.RevokedAt}
}

const secretAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// newSecret returns "tl_" and 40 random characters (~238 bits).
func newSecret() string {
	b := make([]byte, 40)
	rand.Read(b)
	for i := range b {
		// 256 is not a multiple of 62: reject the top to stay uniform.
		for b[i] >= 248 {
			var one [1]byte
			rand.Read(one[:])
			b[i] = one[0]
		}
		b[i] = secretAlphabet[int(b[i])%len(secretAlphabet)]
	}
	return "tl_" + string(b)
}

func (s *Server) createAPIKey(w http.ResponseWriter, r *http.Request, k *trustloop.APIKey) error {
	if err := requireAdmin(k); err != nil {
		return err
	}
	var body struct {
		Name     string   `json:"name"`
		Roles    []string `json:"roles"`
		Purposes []string `json:"purposes"`
	}
	if err := readJSON(r, &body); err != nil {
		return err
	}
	nk, secret, err := s.newAPIKey(r, k.WorkspaceID, actorOf(k), body.Name, body.Roles, body.Purposes)
	if err != nil {
		return err
	}
	v := viewKey(nk)
	v.Secret = secret
	writeJSON(w, http.StatusCreated, v)
	return nil
}

// newAPIKey checks a new key's name, roles and purposes (against the
// workspace's catalog), stores it with a fresh secret and records who made
// it. The API and the console both make keys here, so they apply one set of
// rules. The secret is returned for its one showing; only its hash is kept.
func (s *Server) newAPIKey(r *http.Request, ws int64, by trustloop.AuditActor, name string, keyRoles, purposes []string) (*trustloop.APIKey, string, error) {
	name = strings.TrimSpace(name)
	if strings.IndexFunc(name, unicode.IsControl) >= 0 {
		return nil, "", trustloop.Errorf(trustloop.EINVALID, "The key's name holds control characters.").
			WithHint("Name the key on one line, such as checkout service.")
	}
	if name == "" || len(name) > 100 {
		return nil, "", trustloop.Errorf(trustloop.EINVALID, "name is required (1–100 characters): say who or what uses the key.").
			WithHint("Name the key after who or what uses it, such as checkout service.")
	}
	if len(keyRoles) == 0 {
		return nil, "", trustloop.Errorf(trustloop.EINVALID, "roles is required: one or more of admin, reader, privacy.").
			WithHint("A reader key reads profiles for its purposes; a privacy key also handles consent and privacy requests; an admin key manages everything.")
	}
	for _, role := range keyRoles {
		if !slices.Contains(trustloop.Roles, role) {
			return nil, "", trustloop.Errorf(trustloop.EINVALID, "Unknown role %q.", role).WithHint("Roles: admin, reader, privacy.")
		}
	}
	if err := s.checkPurposes(r.Context(), ws, purposes); err != nil {
		return nil, "", err
	}
	keyRoles = slices.Clone(keyRoles)
	slices.Sort(keyRoles)
	secret := newSecret()
	h := sha256.Sum256([]byte(secret))
	nk := &trustloop.APIKey{WorkspaceID: ws, Name: name, SecretHash: h[:],
		Roles: slices.Compact(keyRoles), Purposes: purposes}
	if nk.Purposes == nil {
		nk.Purposes = []string{}
	}
	if err := s.Store.CreateAPIKey(r.Context(), nk); err != nil {
		return nil, "", err
	}
	s.recordAdminBy(r, ws, by, trustloop.AuditKeyCreated, "key:"+strconv.FormatInt(nk.ID, 10))
	return nk, secret, nil
}

// checkPurposes refuses purposes the workspace's catalog (the defaults when
// consent is not enforced) does not have: a key or operator may read only for
// purposes customers can choose.
func (s *Server) checkPurposes(ctx context.Context, ws int64, purposes []string) error {
	known := trustloop.DefaultPurposes
	if s.Consent != nil {
		c, err := s.Consent.Catalog(ctx, ws)
		if err != nil {
			return err
		}
		known = c.Names(c.All())
	}
	for _, p := range purposes {
		if !slices.Contains(known, p) {
			return trustloop.Errorf(trustloop.EINVALID, "Unknown purpose %q.", p).WithHint("Purposes: " + strings.Join(known, ", ") + ".")
		}
	}
	return nil
}

func (s *Server) listAPIKeys(w http.ResponseWriter, r *http.Request, k *trustloop.APIKey) error {
	if err := requireAdmin(k); err != nil {
		return err
	}
	keys, err := s.Store.ListAPIKeys(r.Context(), k.WorkspaceID)
	if err != nil {
		return err
	}
	out := make([]apiKeyView, 0, len(keys))
	for _, key := range keys {
		out = append(out, viewKey(key))
	}
	writeJSON(w, http.StatusOK, page[apiKeyView]{Data: out})
	return nil
}

func (s *Server) revokeAPIKey(w http.ResponseWriter, r *http.Request, k *trustloop.APIKey) error {
	if err := requireAdmin(k); err != nil {
		return err
	}
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return trustloop.Errorf(trustloop.EINVALID, "An API key id is a positive number.").WithHint("GET /v1/api-keys lists them.")
	}
	if err := s.revokeKey(r, k.WorkspaceID, actorOf(k), id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// revokeKey revokes a key of the workspace (the store refuses its last
// active admin key) and records who did, for the API and the console alike.
func (s *Server) revokeKey(r *http.Request, ws int64, by trustloop.AuditActor, id int64) error {
	err := s.Store.RevokeAPIKey(r.Context(), ws, id, s.now())
	// Forgotten whatever the outcome: a commit whose answer was lost may
	// have revoked it.
	s.forgetAPIKey(id)
	if err != nil {
		return err
	}
	s.recordAdminBy(r, ws, by, trustloop.AuditKeyRevoked, "key:"+strconv.FormatInt(id, 10))
	return nil
}

// recordAdminBy appends an administrative change (a key made or revoked, the
// catalog edited, an operator account changed) to the audit log, by an API
// key or by the console's principal. The change is already made: a failure
// to record it is logged for the operator, not turned into an error the
// caller would retry.
func (s *Server) recordAdminBy(r *http.Request, ws int64, by trustloop.AuditActor, kind, detail string) {
	if s.Audit == nil {
		return
	}
	e := trustloop.AuditEntry{WorkspaceID: ws, Time: s.now(), Kind: kind, Actor: by,
		Action: routeOf(r), Detail: detail}
	if err := s.Audit.Append(r.Context(), e); err != nil {
		s.Log.Error("recording an administrative change in the audit log failed", "kind", kind, "err", err)
	}
}
