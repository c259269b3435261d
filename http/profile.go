package http

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/projection"
)

// The profile API (API.md): every read of personal data names a purpose, and the
// key must be allowed to read for it. The consent issue narrows what each purpose
// sees and records every read; until then the purpose is validated and checked
// against the key.

type ctxKey int

const apiKeyCtx ctxKey = 1

// authed wraps an API handler with Bearer authentication.
func (s *Server) authed(h func(w http.ResponseWriter, r *http.Request, k *trustloop.APIKey) error) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		k, err := s.apiKey(r)
		if err != nil {
			return err
		}
		return h(w, r.WithContext(context.WithValue(r.Context(), apiKeyCtx, k)), k)
	}
}

func (s *Server) apiKey(r *http.Request) (*trustloop.APIKey, error) {
	// The scheme's name is case-insensitive (RFC 9110 11.1).
	scheme, secret, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(secret) == "" {
		return nil, trustloop.Errorf(trustloop.EUNAUTHORIZED, "An API key is required.").
			WithHint("Send Authorization: Bearer <api key>.")
	}
	// Secrets are stored as SHA-256 hashes: the lookup compares hashes, never the
	// secret, so its timing says nothing about the secret.
	h := sha256.Sum256([]byte(strings.TrimSpace(secret)))
	// Valid keys are remembered briefly: the lookup is a store read on every
	// API call. A revocation through this node forgets at once; through
	// another node it holds within apiKeyTTL.
	if e, ok := s.apiKeys.Load(string(h[:])); ok && s.now().Before(e.(*apiKeyEntry).expires) {
		return e.(*apiKeyEntry).key, nil
	}
	k, err := s.Store.FindAPIKeyBySecretHash(r.Context(), h[:])
	if trustloop.ErrorCode(err) == trustloop.ENOTFOUND || (err == nil && k.RevokedAt != nil) {
		return nil, trustloop.Errorf(trustloop.EUNAUTHORIZED, "The API key is not valid.").
			WithHint("Check the key, or create a new one with an admin key.")
	} else if err != nil {
		return nil, err
	}
	s.apiKeys.Store(string(h[:]), &apiKeyEntry{key: k, expires: s.now().Add(apiKeyTTL)})
	return k, nil
}

// apiKeyTTL is how long a valid API key is trusted without reading it again.
const apiKeyTTL = 2 * time.Second

type apiKeyEntry struct {
	key     *trustloop.APIKey
	expires time.Time
}

// forgetAPIKey drops a key from memory (it was revoked).
func (s *Server) forgetAPIKey(id int64) {
	s.apiKeys.Range(func(h, e any) bool {
		if e.(*apiKeyEntry).key.ID == id {
			s.apiKeys.Delete(h)
		}
		return true
	})
}

// checkPurpose checks the purpose p of a personal-data read against the
// catalog's ids and the key.
func checkPurpose(p string, ids []string, k *trustloop.APIKey) error {
	switch {
	case p == "":
		return trustloop.Errorf(trustloop.EINVALID, "Every read of personal data needs a purpose.").
			WithHint("Add ?purpose=<id>; purposes: " + strings.Join(ids, ", ") + ".")
	case !slices.Contains(ids, p):
		return trustloop.Errorf(trustloop.EINVALID, "Unknown purpose %q.", p).
			WithHint("Purposes: " + strings.Join(ids, ", ") + ".")
	case !slices.Contains(k.Purposes, p):
		return trustloop.Errorf(trustloop.EFORBIDDEN, "This API key may not read for purpose %q.", p).
			WithHint("Use a key created for this purpose.")
	}
	return nil
}

func requireAdmin(k *trustloop.APIKey) error {
	if !slices.Contains(k.Roles, trustloop.RoleAdmin) {
		return trustloop.Errorf(trustloop.EFORBIDDEN, "This action needs an admin API key.").
			WithHint("Use a key with the admin role, such as admin_api_key in the data directory's credentials file.")
	}
	return nil
}

// limit reads ?limit= within [1, max], default def (also for "limit=").
// paged says whether the listing pages with a cursor, for the hint.
func limit(r *http.Request, def, max int, paged bool) (int, error) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > max || strings.Trim(v, "0123456789") != "" {
		hint := fmt.Sprintf("Write it in digits, or leave it out for the default of %d.", def)
		if paged {
			hint += " A listing with more pages gives a next_cursor."
		}
		return 0, trustloop.Errorf(trustloop.EINVALID, "limit must be a whole number from 1 to %d.", max).WithHint(hint)
	}
	return n, nil
}

// profilePaths are the profile API's paths, as documented in openapi.json.
var profilePaths = []string{"/v1/profiles/lookup", "/v1/profiles/{id}", "/v1/profiles/{id}/events", "/v1/profiles/{id}/merges",
	"/v1/profiles/{id}/split", "/v1/profiles", "/v1/audiences", "/v1/audiences/{id}", "/v1/audiences/{id}/members",
	"/v1/settings/profiles"}

func (s *Server) profileRoutes(mux *http.ServeMux) {
	if s.Profiles == nil {
		return
	}
	mux.Handle("GET /v1/profiles/lookup", s.route("/v1/profiles/lookup", s.authed(s.lookupProfile)))
	mux.Handle("GET /v1/profiles/{id}", s.route("/v1/profiles/{id}", s.authed(s.getProfile)))
	mux.Handle("GET /v1/profiles/{id}/events", s.route("/v1/profiles/{id}/events", s.authed(s.profileEvents)))
	mux.Handle("GET /v1/profiles/{id}/merges", s.route("/v1/profiles/{id}/merges", s.authed(s.profileMerges)))
	mux.Handle("POST /v1/profiles/{id}/split", s.route("/v1/profiles/{id}/split", s.authed(s.splitProfile)))
	mux.Handle("GET /v1/profiles", s.route("/v1/profiles", s.authed(s.listProfiles)))
	mux.Handle("GET /v1/audiences", s.route("/v1/audiences", s.authed(s.listAudiences)))
	mux.Handle("POST /v1/audiences", s.route("/v1/audiences", s.authed(s.createAudience)))
	mux.Handle("GET /v1/audiences/{id}", s.route("/v1/audiences/{id}", s.authed(s.getAudience)))
	mux.Handle("PUT /v1/audiences/{id}", s.route("/v1/audiences/{id}", s.authed(s.updateAudience)))
	mux.Handle("DELETE /v1/audiences/{id}", s.route("/v1/audiences/{id}", s.authed(s.deleteAudience)))
	mux.Handle("GET /v1/audiences/{id}/members", s.route("/v1/audiences/{id}/members", s.authed(s.audienceMembers)))
	mux.Handle("GET /v1/settings/profiles", s.route("/v1/settings/profiles", s.authed(s.getSettings)))
	mux.Handle("PUT /v1/settings/profiles", s.route("/v1/settings/profiles", s.authed(s.putSettings)))
}

func (s *Server) getSettings(w http.ResponseWriter, r *http.Request, k *trustloop.APIKey) error {
	if err := requireAdmin(k); err != nil {
		return err
	}
	st, err := s.Profiles.Settings(r.Context(), k.WorkspaceID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

// putSettings replaces the workspace's profile settings. The body is the whole
// document with the version read (optimistic concurrency: 409 if it changed).
func (s *Server) putSettings(w http.ResponseWriter, r *http.Request, k *trustloop.APIKey) error {
	if err := requireAdmin(k); err != nil {
		return err
	}
	var st projection.Settings
	if err := readJSON(r, &st); err != nil {
		return err
	}
	if err := s.Profiles.SaveSettings(r.Context(), k.WorkspaceID, &st); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

func (s *Server) getProfile(w http.ResponseWriter, r *http.Request, k *trustloop.APIKey) error {
	id, err := projection.ParseID(r.PathValue("id"))
	if err != nil {
		return err
	}
	pp, c, err := s.readPurpose(r, k)
	if err != nil {
		return err
	}
	p, err := s.Profiles.Profile(r.Context(), k.WorkspaceID, id)
	if err != nil {
		return err
	}
	v, err := s.profileFor(r.Context(), k, pp, c, p)
	if err != nil {
		return err
	}
	if err := s.recordUses(r.Context(), k, pp, routeOf(r), usesOf(v)); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

func (s *Server) lookupProfile(w http.ResponseWriter, r *http.Request, k *trustloop.APIKey) error {
	q := r.URL.Query().Get("identifier")
	if q == "" {
		return trustloop.Errorf(trustloop.EINVALID, "identifier is required.").
			WithHint("Add ?identifier=<type>:<value>, e.g. email:jane@example.com (URL-encoded).")
	}
	id, err := s.Profiles.ParseIdentifier(r.Context(), k.WorkspaceID, q)
	if err != nil {
		return err
	}
	pp, c, err := s.readPurpose(r, k)
	if err != nil {
		return err
	}
	p, err := s.Profiles.Lookup(r.Context(), k.WorkspaceID, id)
	if err != nil {
		return err
	}
	v, err := s.profileFor(r.Context(), k, pp, c, p)
	if err != nil {
		return err
	}
	if err := s.recordUses(r.Context(), k, pp, routeOf(r), usesOf(v)); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

type page[T any] struct {
	Data       []T    `json:"data"`
	NextCursor string `json:"next_cursor,omitempty"`
}

func (s *Server) profileEvents(w http.ResponseWriter, r *http.Request, k *trustloop.APIKey) error {
	id, err := projection.ParseID(r.PathValue("id"))
	if err != nil {
		return err
	}
	pp, c, err := s.readPurpose(r, k)
	if err != nil {
		return err
	}
	n, err := limit(r, 50, 1000, true)
	if err != nil {
		return err
	}
	var keep func([]string, string, json.RawMessage) bool
	resolved := ""
	if c != nil {
		p, err := s.Profiles.Profile(r.Context(), k.WorkspaceID, id)
		if err != nil {
			return err
		}
		resolved = p.ProfileID
		a, err := s.decideRead(r.Context(), k.WorkspaceID, pp, c, p.Subjects())
		if err != nil {
			return err
		}
		keep = a.keepEvent
	}
	evs, next, err := s.Profiles.Events(r.Context(), k.WorkspaceID, id, r.URL.Query().Get("cursor"), n, keep)
	if err != nil {
		return err
	}
	if len(evs) > 0 {
		cats := map[string]bool{}
		for _, e := range evs {
			cats[eventCategory(e.Type, e.Message)] = true
		}
		u := use{profile: projection.FormatID(id)}
		if resolved != "" {
			u.profile = resolved // the survivor, when id was merged away
		}
		for _, c := range trustloop.Categories {
			if cats[c] {
				u.categories = append(u.categories, c)
			}
		}
		if err := s.recordUses(r.Context(), k, pp, routeOf(r), []use{u}); err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusOK, page[trustloop.TimelineEvent]{Data: evs, NextCursor: next})
	return nil
}

func (s *Server) profileMerges(w http.ResponseWriter, r *http.Request, k *trustloop.APIKey) error {
	id, err := projection.ParseID(r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := requireAdmin(k); err != nil {
		return err
	}
	ms, err := s.Profiles.Merges(r.Context(), k.WorkspaceID, id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, page[projection.MergeView]{Data: ms})
	return nil
}

// apiBodyMax is the most an API request body may hold.
const apiBodyMax = 64 << 10

var errAPIBodyTooLarge = trustloop.Errorf(trustloop.ETOOLARGE, "The request body is over 64 KB.").
	WithHint("Send at most 64 KB; a rule or a list that long belongs in smaller parts.")

// readAPIBody reads a JSON request body of up to 64 KB. A body whose
// Content-Length says it is larger is refused before any of it is read: a
// client that asked to continue then gets the 413 instead of a 100 Continue,
// and one that is sending it all is not cut off by the connection's reset
// before the answer (the server closes a connection whose body it left
// unread).
func readAPIBody(r *http.Request) ([]byte, error) {
	if err := checkMediaType(r); err != nil {
		return nil, err
	}
	if enc := r.Header.Get("Content-Encoding"); enc != "" && !strings.EqualFold(enc, "identity") {
		return nil, trustloop.Errorf(trustloop.EUNSUPPORTEDMEDIA, "The API takes bodies uncompressed, not as %q.", enc).
			WithHint("Send the JSON body without Content-Encoding (only the collector takes gzip).")
	}
	if r.ContentLength > apiBodyMax {
		return nil, errAPIBodyTooLarge
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, apiBodyMax+1))
	if err != nil {
		return nil, trustloop.Errorf(trustloop.EINVALID, "The request body could not be read.").
			WithHint("Send the whole JSON body with its Content-Length, and retry.")
	}
	if len(body) > apiBodyMax {
		return nil, errAPIBodyTooLarge
	}
	// JSON is UTF-8; Go's decoder would turn a broken byte into U+FFFD
	// silently, and store a name or identifier other than the one sent.
	if !utf8.Valid(body) {
		return nil, trustloop.Errorf(trustloop.EINVALID, "The request body is not valid UTF-8.").
			WithHint("Encode the JSON body as UTF-8.")
	}
	if trustloop.HasLoneSurrogate(body) {
		return nil, trustloop.Errorf(trustloop.EINVALID, "The request body escapes half a UTF-16 surrogate pair, which is no character.").
			WithHint("Escape characters outside the BMP as a full pair, or send them as UTF-8.")
	}
	return body, nil
}

func readJSON(r *http.Request, v any) error {
	body, err := readAPIBody(r)
	if err != nil {
		return err
	}
	if err := trustloop.DecodeJSON(body, v); err != nil {
		return trustloop.Errorf(trustloop.EINVALID, "The request body is not the expected JSON: %v.", err).
			WithHint("Send one JSON object of the request's shape (see /openapi.json).")
	}
	return nil
}

func (s *Server) splitProfile(w http.ResponseWriter, r *http.Request, k *trustloop.APIKey) error {
	id, err := projection.ParseID(r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := requireAdmin(k); err != nil {
		return err
	}
	var body struct {
		MergeID string `json:"merge_id"`
	}
	if err := readJSON(r, &body); err != nil {
		return err
	}
	if body.MergeID == "" {
		return trustloop.Errorf(trustloop.EINVALID, "merge_id is required: the merge to undo.").
			WithHint("List the profile's merges with GET /v1/profiles/{id}/merges.")
	}
	mid, err := strconv.ParseInt(body.MergeID, 10, 64)
	if err != nil || mid <= 0 || strconv.FormatInt(mid, 10) != body.MergeID {
		return trustloop.Errorf(trustloop.EINVALID, "merge_id is not a merge id: it is a positive decimal number, as a string.").
			WithHint("Take it from GET /v1/profiles/{id}/merges.")
	}
	into, from, err := s.Profiles.Split(r.Context(), k.WorkspaceID, id, mid)
	if err != nil {
		return err
	}
	// The two profiles by id only: reading them is a purpose-bound read of its
	// own (GET /v1/profiles/{id}?purpose=), recorded as a data use.
	writeJSON(w, http.StatusOK, map[string]any{"profiles": []map[string]string{
		{"profile_id": into.ProfileID}, {"profile_id": from.ProfileID}}})
	return nil
}

func (s *Server) listProfiles(w http.ResponseWriter, r *http.Request, k *trustloop.APIKey) error {
	pp, c, err := s.readPurpose(r, k)
	if err != nil {
		return err
	}
	var aud int64
	if v := r.URL.Query().Get("audience"); v != "" {
		var err error
		if aud, err = strconv.ParseInt(v, 10, 64); err != nil || aud <= 0 {
			return trustloop.Errorf(trustloop.EINVALID, "audience must be an audience id.").
				WithHint("Pass the id GET /v1/audiences lists, or leave it out for every profile.")
		}
	}
	n, err := limit(r, 50, 500, true)
	if err != nil {
		return err
	}
	if aud != 0 {
		if err := audienceReadable(pp, c); err != nil {
			return err
		}
	}
	ps, next, err := s.Profiles.List(r.Context(), k.WorkspaceID, aud, r.URL.Query().Get("cursor"), n)
	if err != nil {
		return err
	}
	vs, err := s.profilesFor(r.Context(), k, pp, c, ps, aud)
	if err != nil {
		return err
	}
	if err := s.recordUses(r.Context(), k, pp, routeOf(r), usesOf(vs...)); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, page[*profileView]{Data: vs, NextCursor: next})
	return nil
}

func audienceID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, trustloop.Errorf(trustloop.EINVALID, "An audience id is a positive whole number.").
			WithHint("Use an id GET /v1/audiences lists.")
	}
	return id, nil
}

func (s *Server) listAudiences(w http.ResponseWriter, r *http.Request, k *trustloop.APIKey) error {
	as, err := s.Profiles.Audiences(r.Context(), k.WorkspaceID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, page[*trustloop.Audience]{Data: as})
	return nil
}

func (s *Server) getAudience(w http.ResponseWriter, r *http.Request, k *trustloop.APIKey) error {
	id, err := audienceID(r)
	if err != nil {
		return err
	}
	a, err := s.Profiles.Audience(r.Context(), k.WorkspaceID, id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a)
	return nil
}

type audienceBody struct {
	Name        string `json:"name"`
	Rule        string `json:"rule"`
	Description string `json:"description"`
}

func (s *Server) createAudience(w http.ResponseWriter, r *http.Request, k *trustloop.APIKey) error {
	if err := requireAdmin(k); err != nil {
		return err
	}
	var b audienceBody
	if err := readJSON(r, &b); err != nil {
		return err
	}
	a := &trustloop.Audience{WorkspaceID: k.WorkspaceID, Name: b.Name, Rule: b.Rule, Description: b.Description}
	if err := s.Profiles.SaveAudience(r.Context(), a); err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, a)
	return nil
}

func (s *Server) updateAudience(w http.ResponseWriter, r *http.Request, k *trustloop.APIKey) error {
	if err := requireAdmin(k); err != nil {
		return err
	}
	id, err := audienceID(r)
	if err != nil {
		return err
	}
	var b audienceBody
	if err := readJSON(r, &b); err != nil {
		return err
	}
	a := &trustloop.Audience{ID: id, WorkspaceID: k.WorkspaceID, Name: b.Name, Rule: b.Rule, Description: b.Description}
	if err := s.Profiles.SaveAudience(r.Context(), a); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a)
	return nil
}

func (s *Server) deleteAudience(w http.ResponseWriter, r *http.Request, k *trustloop.APIKey) error {
	if err := requireAdmin(k); err != nil {
		return err
	}
	id, err := audienceID(r)
	if err != nil {
		return err
	}
	if err := s.Profiles.DeleteAudience(r.Context(), k.WorkspaceID, id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) audienceMembers(w http.ResponseWriter, r *http.Request, k *trustloop.APIKey) error {
	id, err := audienceID(r)
	if err != nil {
		return err
	}
	pp, c, err := s.readPurpose(r, k)
	if err != nil {
		return err
	}
	n, err := limit(r, 50, 500, true)
	if err != nil {
		return err
	}
	if err := audienceReadable(pp, c); err != nil {
		return err
	}
	ps, next, err := s.Profiles.List(r.Context(), k.WorkspaceID, id, r.URL.Query().Get("cursor"), n)
	if err != nil {
		return err
	}
	vs, err := s.profilesFor(r.Context(), k, pp, c, ps, id)
	if err != nil {
		return err
	}
	if err := s.recordUses(r.Context(), k, pp, routeOf(r), usesOf(vs...)); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, page[*profileView]{Data: vs, NextCursor: next})
	return nil
}
