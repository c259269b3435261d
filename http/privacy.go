package http

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/privacy"
)

// Privacy requests (issue 5): admin and privacy keys file and work on them;
// a request and its export belong to the key's workspace only (another
// workspace's id answers 404, revealing nothing).

var privacyPaths = []string{"/v1/privacy-requests", "/v1/privacy-requests/{id}", "/v1/privacy-requests/{id}/verify",
	"/v1/privacy-requests/{id}/reject", "/v1/privacy-requests/{id}/extend", "/v1/privacy-requests/{id}/export",
	"/v1/erasure-receipts/verify"}

func (s *Server) privacyRoutes(mux *http.ServeMux) {
	if s.Privacy == nil {
		return
	}
	mux.Handle("POST /v1/privacy-requests", s.route("/v1/privacy-requests", s.authed(s.createRequest)))
	mux.Handle("GET /v1/privacy-requests", s.route("/v1/privacy-requests", s.authed(s.listRequests)))
	mux.Handle("GET /v1/privacy-requests/{id}", s.route("/v1/privacy-requests/{id}", s.authed(s.getRequest)))
	mux.Handle("POST /v1/privacy-requests/{id}/verify", s.route("/v1/privacy-requests/{id}/verify", s.authed(s.verifyRequest)))
	mux.Handle("POST /v1/privacy-requests/{id}/reject", s.route("/v1/privacy-requests/{id}/reject", s.authed(s.rejectRequest)))
	mux.Handle("POST /v1/privacy-requests/{id}/extend", s.route("/v1/privacy-requests/{id}/extend", s.authed(s.extendRequest)))
	mux.Handle("GET /v1/privacy-requests/{id}/export", s.route("/v1/privacy-requests/{id}/export", s.authed(s.exportRequest)))
	mux.Handle("POST /v1/erasure-receipts/verify", s.route("/v1/erasure-receipts/verify", s.authed(s.verifyErasureReceipt)))
}

func requirePrivacy(k *trustloop.APIKey) error {
	if !slices.Contains(k.Roles, trustloop.RoleAdmin) && !slices.Contains(k.Roles, trustloop.RolePrivacy) {
		return trustloop.Errorf(trustloop.EFORBIDDEN, "Privacy requests need an admin or privacy API key.").
			WithHint("Use a key with the admin or privacy role (POST /v1/api-keys creates one).")
	}
	return nil
}

func actorOf(k *trustloop.APIKey) trustloop.AuditActor {
	return trustloop.AuditActor{Kind: trustloop.ActorAPIKey, ID: "key:" + strconv.FormatInt(k.ID, 10)}
}

func (s *Server) createRequest(w http.ResponseWriter, r *http.Request, k *trustloop.APIKey) error {
	if err := requirePrivacy(k); err != nil {
		return err
	}
	var body struct {
		Type       string         `json:"type"`
		Identifier string         `json:"identifier"`
		Regime     string         `json:"regime"`
		Suppress   bool           `json:"suppress"`
		Traits     map[string]any `json:"traits"`
		// Verified: the caller verified the customer's identity (the default:
		// a business's server files requests for its logged-in customers);
		// false leaves the request received until POST …/verify.
		Verified *bool `json:"verified"`
	}
	if err := readJSON(r, &body); err != nil {
		return err
	}
	in := privacy.NewRequest{Type: body.Type, Identifier: body.Identifier, Regime: body.Regime, Suppress: body.Suppress,
		Traits: body.Traits, Actor: actorOf(k)}
	if body.Verified == nil || *body.Verified {
		in.VerifiedBy = "key:" + strconv.FormatInt(k.ID, 10)
	}
	req, created, err := s.Privacy.Create(r.Context(), k.WorkspaceID, in)
	if err != nil {
		return err
	}
	status := http.StatusCreated
	if !created {
		status = http.StatusOK
	}
	v := privacy.View(req)
	writeJSON(w, status, struct {
		privacy.RequestView
		Joined bool `json:"joined_existing"`
	}{v, !created})
	return nil
}

func (s *Server) listRequests(w http.ResponseWriter, r *http.Request, k *trustloop.APIKey) error {
	if err := requirePrivacy(k); err != nil {
		return err
	}
	n, err := limit(r, 50, 500, true)
	if err != nil {
		return err
	}
	f := trustloop.PrivacyFilter{Status: r.URL.Query().Get("status"), Limit: n + 1}
	if c := r.URL.Query().Get("cursor"); c != "" {
		due, id, ok := strings.Cut(c, "_prq_")
		ms, err := strconv.ParseInt(due, 10, 64)
		if !ok || err != nil || !trustloop.ValidRequestID("prq_"+id) {
			return trustloop.Errorf(trustloop.EINVALID, "cursor is not one this API returned.").WithHint("Use next_cursor of the previous page.")
		}
		f.AfterDue, f.AfterID = time.UnixMilli(ms).UTC(), "prq_"+id
	}
	reqs, err := s.Privacy.List(r.Context(), k.WorkspaceID, f)
	if err != nil {
		return err
	}
	next := ""
	if len(reqs) > n {
		reqs = reqs[:n]
		last := reqs[n-1]
		next = strconv.FormatInt(last.DueAt.UnixMilli(), 10) + "_" + last.ID
	}
	out := make([]privacy.RequestView, 0, len(reqs))
	for _, q := range reqs {
		out = append(out, privacy.View(q))
	}
	writeJSON(w, http.StatusOK, page[privacy.RequestView]{Data: out, NextCursor: next})
	return nil
}

func (s *Server) getRequest(w http.ResponseWriter, r *http.Request, k *trustloop.APIKey) error {
	if err := requirePrivacy(k); err != nil {
		return err
	}
	req, err := s.Privacy.Get(r.Context(), k.WorkspaceID, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, privacy.View(req))
	return nil
}

func (s *Server) verifyRequest(w http.ResponseWriter, r *http.Request, k *trustloop.APIKey) error {
	if err := requirePrivacy(k); err != nil {
		return err
	}
	req, err := s.Privacy.Verify(r.Context(), k.WorkspaceID, r.PathValue("id"), "key:"+strconv.FormatInt(k.ID, 10), actorOf(k))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, privacy.View(req))
	return nil
}

// reasoned reads {"reason": …}.
func reasoned(r *http.Request) (string, error) {
	var body struct {
		Reason string `json:"reason"`
	}
	err := readJSON(r, &body)
	return body.Reason, err
}

func (s *Server) rejectRequest(w http.ResponseWriter, r *http.Request, k *trustloop.APIKey) error {
	if err := requirePrivacy(k); err != nil {
		return err
	}
	reason, err := reasoned(r)
	if err != nil {
		return err
	}
	req, err := s.Privacy.Reject(r.Context(), k.WorkspaceID, r.PathValue("id"), reason, actorOf(k))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, privacy.View(req))
	return nil
}

func (s *Server) extendRequest(w http.ResponseWriter, r *http.Request, k *trustloop.APIKey) error {
	if err := requirePrivacy(k); err != nil {
		return err
	}
	reason, err := reasoned(r)
	if err != nil {
		return err
	}
	req, err := s.Privacy.Extend(r.Context(), k.WorkspaceID, r.PathValue("id"), reason, actorOf(k))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, privacy.View(req))
	return nil
}

func (s *Server) exportRequest(w http.ResponseWriter, r *http.Request, k *trustloop.APIKey) error {
	if err := requirePrivacy(k); err != nil {
		return err
	}
	if err := exportAllowed(k.Purposes, "Download the package with an admin or privacy key whose purposes include essential (POST /v1/api-keys)."); err != nil {
		return err
	}
	format := r.URL.Query().Get("format")
	if format == "" {
		format = "json"
	}
	// The package is checked and its head gathered before the first byte is
	// sent, so an error still gets its status; one during the events (rare:
	// the store failing mid-stream) aborts the connection.
	cw := &lazyWriter{w: w, format: format, id: r.PathValue("id")}
	err := s.Privacy.Export(r.Context(), k.WorkspaceID, r.PathValue("id"), format, actorOf(k), cw)
	if err != nil && cw.started {
		// The status is sent: the connection is cut instead, so the client
		// sees a broken download, not a complete-looking short document.
		s.Log.Error("an access package was cut short", "err", err)
		panic(http.ErrAbortHandler)
	}
	return err
}

// exportAllowed refuses downloading an access package to a key or operator
// whose purposes lack essential. The package holds every category of the
// subject's data, read to answer the subject's own request: a legal
// obligation, which is the catalog's essential purpose (dpv:LegalCompliance),
// and reading personal data needs the purpose among the reader's purposes
// whatever the role (a privacy key for analytics alone could not read the
// profile either). The customer's own download in the portal needs no such
// purpose: it is theirs.
func exportAllowed(purposes []string, hint string) error {
	if slices.Contains(purposes, trustloop.PurposeEssential) {
		return nil
	}
	return trustloop.Errorf(trustloop.EFORBIDDEN, "Downloading an access package is a read for purpose %q, which this key may not read for.", trustloop.PurposeEssential).
		WithHint(hint)
}

// lazyWriter sends the export's headers with its first byte.
type lazyWriter struct {
	w       http.ResponseWriter
	format  string
	id      string
	started bool
}

func (l *lazyWriter) Write(p []byte) (int, error) {
	// A large package takes longer than the server's write timeout: each
	// chunk gets a minute of its own instead.
	http.NewResponseController(l.w).SetWriteDeadline(time.Now().Add(time.Minute))
	if !l.started {
		l.started = true
		h := l.w.Header()
		h.Set("Cache-Control", "no-store")
		if l.format == "html" {
			h.Set("Content-Type", "text/html; charset=utf-8")
			h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
		} else {
			h.Set("Content-Type", "application/json")
			h.Set("Content-Disposition", `attachment; filename="`+l.id+`.json"`)
		}
		l.w.WriteHeader(http.StatusOK)
	}
	return l.w.Write(p)
}

func (s *Server) verifyErasureReceipt(w http.ResponseWriter, r *http.Request, k *trustloop.APIKey) error {
	var body struct {
		Receipt string `json:"receipt"`
	}
	if err := readJSON(r, &body); err != nil {
		return err
	}
	rc, err := s.Privacy.VerifyErasureReceipt(k.WorkspaceID, body.Receipt)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"valid": true, "receipt": rc})
	return nil
}

// streamExport streams a request's access package for a web page's download
// link (json or html, as a file). A request with no package yet is refused
// as a page, not downloaded as a file; an error once the file has started
// aborts the connection, so a cut-short package never looks complete.
func (s *Server) streamExport(w http.ResponseWriter, r *http.Request, ws int64, q *trustloop.PrivacyRequest, format string, actor trustloop.AuditActor) error {
	if format != "json" && format != "html" {
		return trustloop.Errorf(trustloop.EINVALID, "Choose JSON or HTML.").WithHint("Use one of the download links.")
	}
	if q.Status != trustloop.RequestCompleted || (q.Type != trustloop.RequestAccess && q.Type != trustloop.RequestPortability) {
		return trustloop.Errorf(trustloop.ECONFLICT, "Only a completed access or portability request has a package to download.").
			WithHint("Wait until the request is completed.")
	}
	if format == "html" {
		w.Header().Set("Content-Disposition", `attachment; filename="`+q.ID+`.html"`)
	}
	lw := &lazyWriter{w: w, format: format, id: q.ID}
	err := s.Privacy.Export(r.Context(), ws, q.ID, format, actor, lw)
	if err != nil && lw.started {
		s.Log.Error("an access package was cut short", "err", err)
		panic(http.ErrAbortHandler)
	}
	return err
}
