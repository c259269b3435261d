package http

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/consent"
	"github.com/trustloop/trustloop/http/html"
	"github.com/trustloop/trustloop/password"
	"github.com/trustloop/trustloop/privacy"
)

// The console's management pages (issue 7): the privacy request queue, the
// purpose catalog, API keys, operators, audiences and destinations.
//
// Every signed-in principal sees these pages, read-only unless its roles
// allow the change (the forms are left out); the operator list, which holds
// staff emails, is for admins only. A change checks its role before it reads
// the form, goes through the same code as the API's (newAPIKey, revokeKey,
// saveCatalog, privacy.Service), and answers with post/redirect/get and a
// flash. A refused change re-renders its page with the error, the user's
// input kept and the error's status; nothing is changed.

func (s *Server) manageRoutes(mux *http.ServeMux, csrf *http.CrossOriginProtection) {
	type page = func(w http.ResponseWriter, r *http.Request, a *adminSession) error
	get := func(pattern string, h page) {
		mux.Handle("GET "+pattern, s.web(pattern, s.admin(h)))
	}
	post := func(pattern string, h page) {
		mux.Handle("POST "+pattern, csrf.Handler(s.web(pattern, s.admin(h))))
	}
	get("/admin/requests", s.requestQueue)
	post("/admin/requests", s.consoleFileRequest)
	get("/admin/requests/{id}", s.requestDetail)
	get("/admin/requests/{id}/export", s.consoleExport)
	post("/admin/requests/{id}/verify", s.consoleVerify)
	post("/admin/requests/{id}/reject", s.consoleReject)
	post("/admin/requests/{id}/extend", s.consoleExtend)
	get("/admin/purposes", s.purposesPage)
	post("/admin/purposes", s.savePurposes)
	get("/admin/keys", s.keysPage)
	post("/admin/keys", s.consoleCreateKey)
	get("/admin/keys/{id}/revoke", s.confirmRevoke)
	post("/admin/keys/{id}/revoke", s.consoleRevokeKey)
	get("/admin/operators", s.operatorsPage)
	post("/admin/operators", s.createOperator)
	post("/admin/operators/{id}/disable", s.disableOperator)
	post("/admin/operators/{id}/enable", s.enableOperator)
	post("/admin/operators/{id}/password", s.resetPassword)
	get("/admin/audiences", s.audiencesPage)
	get("/admin/destinations", s.destinationsPage)
}

// consoleFormError is a refused change, shown above the form it came from.
type consoleFormError struct {
	Message, Hint string
}

// inlineError says whether a change's error is shown on its page with the input
// kept (bad input, a conflict) rather than on the error page (a missing
// role, a missing request, the store failing).
func inlineError(err error) (*consoleFormError, int, bool) {
	code := trustloop.ErrorCode(err)
	if code != trustloop.EINVALID && code != trustloop.ECONFLICT {
		return nil, 0, false
	}
	fe := &consoleFormError{Message: trustloop.ErrorMessage(err)}
	var e *trustloop.Error
	if errors.As(err, &e) {
		fe.Hint = e.Hint
	}
	return fe, ErrorStatus(code), true
}

// renderWithStatus renders a page with a status other than 200 (a form's
// error). The page is rendered first, so a template failure still gets the
// error page.
func (s *Server) renderWithStatus(w http.ResponseWriter, name string, p *html.Page, status int) error {
	var buf bytes.Buffer
	if err := s.Pages.Render(&buf, name, p); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, err := buf.WriteTo(w)
	return err
}

// doneFlash picks the flash text of a redirect's ?done=, from the page's known
// outcomes only (the query is the visitor's to write).
func doneFlash(r *http.Request, prefix string, known ...string) string {
	if d := r.URL.Query().Get("done"); slices.Contains(known, d) {
		return prefix + d
	}
	return ""
}

// choice is a checkbox or select choice.
type choice struct {
	Value, Label string
	Checked      bool
}

func choices(values, checked []string, label func(string) string) []choice {
	out := make([]choice, 0, len(values))
	for _, v := range values {
		l := v
		if label != nil {
			l = label(v)
		}
		out = append(out, choice{Value: v, Label: l, Checked: slices.Contains(checked, v)})
	}
	return out
}

// catalogPurposes lists the workspace's purpose ids (the defaults when
// consent is not enforced).
func (s *Server) catalogPurposes(ctx context.Context, ws int64) ([]string, error) {
	if s.Consent == nil {
		return trustloop.DefaultPurposes, nil
	}
	c, err := s.Consent.Catalog(ctx, ws)
	if err != nil {
		return nil, err
	}
	return c.Names(c.All()), nil
}

// formValues reads a multi-valued form field (checkboxes), without blanks or
// repeats, in the order given.
func formValues(r *http.Request, name string) []string {
	var out []string
	for _, v := range r.PostForm[name] {
		if v = strings.TrimSpace(v); v != "" && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// pathInt reads a positive numeric id from the path; anything else is a
// thing that does not exist.
func pathInt(r *http.Request, what string) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, trustloop.Errorf(trustloop.ENOTFOUND, "No such %s.", what).
			WithHint("Open it from its list instead of typing the address.")
	}
	return id, nil
}

// ---- Privacy requests ----

// queueStatuses are the queue's filters: the open ones (the default), all,
// and each status the store lists by.
var queueStatuses = []string{"open", "all", trustloop.RequestReceived, trustloop.RequestVerified, trustloop.RequestInProgress,
	trustloop.RequestCompleted, trustloop.RequestRejected}

// Queue limits: a request is near its due date within nearDue; at most
// maxQueueRows rows are listed (by due date, so the most urgent first).
const (
	nearDue      = 7 * 24 * time.Hour
	maxQueueRows = 5000
)

// queueRow is a request as the queue shows it. The deadline flags are judged
// by the server's clock (Server.Now), like every other time on the page, not
// by the wall clock privacy.View reads.
type queueRow struct {
	privacy.RequestView
	Overdue, NearDue, AckOverdue bool
	// Days is whole days until the due date, or past it when Overdue.
	Days      int
	CanVerify bool
}

type requestForm struct {
	Type, Identifier, Regime string
	Verified, Suppress       bool
}

type queueView struct {
	Available bool
	Status    string
	Statuses  []choice
	Rows      []queueRow
	Truncated bool
	// Counts of the open requests, whatever the filter.
	Open, Overdue, NearDue, Unverified int
	CanAct                             bool
	Types                              []choice
	Form                               requestForm
	Error                              *consoleFormError
}

func (s *Server) queueRowOf(q *trustloop.PrivacyRequest) queueRow {
	now := s.now()
	v := queueRow{RequestView: privacy.View(q), CanVerify: q.Status == trustloop.RequestReceived}
	if q.Open() {
		left := q.DueAt.Sub(now)
		v.Overdue = left < 0
		v.NearDue = !v.Overdue && left <= nearDue
		v.AckOverdue = q.Status == trustloop.RequestReceived && now.After(q.AckDueAt)
		v.Days = int(left.Hours() / 24)
		if v.Overdue {
			v.Days = int(-left.Hours() / 24)
		}
	}
	// privacy.View judges by the wall clock; the page by the server's.
	v.RequestView.Overdue, v.RequestView.AckOverdue = v.Overdue, v.AckOverdue
	return v
}

// requestsByDue pages through the requests of one status (all for ""), by
// due date, up to max; more says some were left out.
func (s *Server) requestsByDue(ctx context.Context, ws int64, status string, max int) (out []*trustloop.PrivacyRequest, more bool, err error) {
	f := trustloop.PrivacyFilter{Status: status, Limit: 1000}
	for {
		page, err := s.Privacy.List(ctx, ws, f)
		if err != nil {
			return nil, false, err
		}
		out = append(out, page...)
		if len(out) > max {
			return out[:max], true, nil
		}
		// Until an empty page, not a short one: a store may cap pages below
		// the limit asked for.
		if len(page) == 0 {
			return out, false, nil
		}
		last := page[len(page)-1]
		f.AfterDue, f.AfterID = last.DueAt, last.ID
	}
}

// openRequests lists the open requests by due date: each open status's
// list, merged.
func (s *Server) openRequests(ctx context.Context, ws int64) ([]*trustloop.PrivacyRequest, bool, error) {
	var all []*trustloop.PrivacyRequest
	more := false
	for _, st := range trustloop.OpenRequestStatuses {
		reqs, m, err := s.requestsByDue(ctx, ws, st, maxQueueRows)
		if err != nil {
			return nil, false, err
		}
		all, more = append(all, reqs...), more || m
	}
	slices.SortFunc(all, func(a, b *trustloop.PrivacyRequest) int {
		if c := a.DueAt.Compare(b.DueAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	if len(all) > maxQueueRows {
		all, more = all[:maxQueueRows], true
	}
	return all, more, nil
}

// consoleRequestTypes are the request types staff may file here: rectification needs
// the corrected values, which the API takes.
var consoleRequestTypes = []string{trustloop.RequestAccess, trustloop.RequestPortability, trustloop.RequestErasure,
	trustloop.RequestRestriction, trustloop.RequestObjection}

// requestQueue is the queue of privacy requests: the most urgent first,
// overdue and near-due ones marked, with the form for requests received by
// mail or phone.
func (s *Server) requestQueue(w http.ResponseWriter, r *http.Request, a *adminSession) error {
	v := &queueView{Form: requestForm{Type: trustloop.RequestAccess}}
	return s.renderQueue(w, r, a, v, http.StatusOK)
}

func (s *Server) renderQueue(w http.ResponseWriter, r *http.Request, a *adminSession, v *queueView, status int) error {
	p := a.page("admin.nav.requests", "requests", v)
	p.Flash = doneFlash(r, "admin.requests.flash.", "filed", "joined")
	v.Available = s.Privacy != nil
	if !v.Available {
		return s.renderWithStatus(w, "admin_requests.html", p, status)
	}
	v.CanAct = a.has(trustloop.RoleAdmin, trustloop.RolePrivacy)
	v.Status = r.URL.Query().Get("status")
	if v.Status == "" {
		v.Status = "open"
	}
	if !slices.Contains(queueStatuses, v.Status) {
		return trustloop.Errorf(trustloop.EINVALID, "Unknown status filter.").WithHint("Choose one of the filters on the queue page.")
	}
	v.Statuses = choices(queueStatuses, []string{v.Status}, func(st string) string { return s.Pages.T("admin.requests.filter." + st) })
	v.Types = choices(consoleRequestTypes, []string{v.Form.Type}, func(t string) string { return s.Pages.T("request.type." + t) })
	ws := a.key.WorkspaceID
	open, more, err := s.openRequests(r.Context(), ws)
	if err != nil {
		return err
	}
	for _, q := range open {
		row := s.queueRowOf(q)
		v.Open++
		switch {
		case row.Overdue:
			v.Overdue++
		case row.NearDue:
			v.NearDue++
		}
		if q.Status == trustloop.RequestReceived {
			v.Unverified++
		}
	}
	list := open
	switch v.Status {
	case "open":
	case "all":
		list, more, err = s.requestsByDue(r.Context(), ws, "", maxQueueRows)
	default:
		list, more, err = s.requestsByDue(r.Context(), ws, v.Status, maxQueueRows)
	}
	if err != nil {
		return err
	}
	v.Truncated = more
	for _, q := range list {
		v.Rows = append(v.Rows, s.queueRowOf(q))
	}
	return s.renderWithStatus(w, "admin_requests.html", p, status)
}

// requireRequests checks that privacy requests are served and the principal
// may act on them (as the API's requirePrivacy).
func (s *Server) requireRequests(a *adminSession) error {
	if err := a.require(trustloop.RoleAdmin, trustloop.RolePrivacy); err != nil {
		return err
	}
	if s.Privacy == nil {
		return trustloop.Errorf(trustloop.EUNAVAILABLE, "Privacy requests are not served here.").
			WithHint("Start the server with consent enforcement on.")
	}
	return nil
}

// consoleFileRequest files a request staff received by mail or phone. The
// identifier is the customer's, so it travels in the form body only, never
// in a URL; the request is verified only if the operator says so.
func (s *Server) consoleFileRequest(w http.ResponseWriter, r *http.Request, a *adminSession) error {
	if err := s.requireRequests(a); err != nil {
		return err
	}
	if err := parseForm(w, r); err != nil {
		return err
	}
	f := requestForm{Type: r.PostForm.Get("type"), Identifier: strings.TrimSpace(r.PostForm.Get("identifier")),
		Regime: r.PostForm.Get("regime"), Verified: r.PostForm.Get("verified") == "yes", Suppress: r.PostForm.Get("suppress") == "yes"}
	in := privacy.NewRequest{Type: f.Type, Identifier: f.Identifier, Regime: f.Regime, Suppress: f.Suppress, Actor: a.actor}
	var err error
	switch {
	case !slices.Contains(consoleRequestTypes, f.Type):
		err = trustloop.Errorf(trustloop.EINVALID, "Choose the type of request.").
			WithHint("Rectification needs the corrected values: file it through POST /v1/privacy-requests.")
	case f.Identifier == "":
		err = trustloop.Errorf(trustloop.EINVALID, "Enter the identifier the customer gave, as type:value.").
			WithHint("For example email:jane@example.com or user_id:42.")
	}
	if f.Verified {
		in.VerifiedBy = a.actor.ID
	}
	var q *trustloop.PrivacyRequest
	created := false
	if err == nil {
		q, created, err = s.Privacy.Create(r.Context(), a.key.WorkspaceID, in)
	}
	if err != nil {
		fe, status, ok := inlineError(err)
		if !ok {
			return err
		}
		return s.renderQueue(w, r, a, &queueView{Form: f, Error: fe}, status)
	}
	done := "filed"
	if !created {
		done = "joined"
	}
	return see(w, r, "/admin/requests/"+q.ID+"?done="+done)
}

type requestDetailView struct {
	Row    queueRow
	CanAct bool
	// CanReject, CanExtend: the actions the request's status allows.
	CanReject, CanExtend, CanExport bool
	// Result is the outcome's counts, indented.
	Result string
	Reason string
	Error  *consoleFormError
	// Form is the form the error belongs to (reject or extend).
	Form string
}

func (s *Server) requestDetail(w http.ResponseWriter, r *http.Request, a *adminSession) error {
	return s.renderRequest(w, r, a, &requestDetailView{}, http.StatusOK)
}

func (s *Server) renderRequest(w http.ResponseWriter, r *http.Request, a *adminSession, v *requestDetailView, status int) error {
	if s.Privacy == nil {
		return trustloop.Errorf(trustloop.ENOTFOUND, "No such request.").
			WithHint("This server was started without its privacy service; look the request up on one started with trustloop serve.")
	}
	q, err := s.Privacy.Get(r.Context(), a.key.WorkspaceID, r.PathValue("id"))
	if err != nil {
		return err
	}
	v.Row = s.queueRowOf(q)
	v.CanAct = a.has(trustloop.RoleAdmin, trustloop.RolePrivacy)
	v.CanReject = trustloop.CanMoveRequest(q.Status, trustloop.RequestRejected)
	v.CanExtend = q.Open() && q.ExtendedAt.IsZero()
	v.CanExport = q.Status == trustloop.RequestCompleted && (q.Type == trustloop.RequestAccess || q.Type == trustloop.RequestPortability)
	if len(q.Result) > 0 {
		var pretty any
		if json.Unmarshal(q.Result, &pretty) == nil {
			b, _ := json.MarshalIndent(pretty, "", "  ")
			v.Result = string(b)
		}
	}
	p := a.page("admin.requests.detail.title", "requests", v)
	p.Flash = doneFlash(r, "admin.requests.flash.", "filed", "joined", "verified", "rejected", "extended")
	return s.renderWithStatus(w, "admin_requests.html", p, status)
}

// requestStep runs one action on a request and redirects to it, or shows
// the request again with the error and the reason typed.
func (s *Server) requestStep(w http.ResponseWriter, r *http.Request, a *adminSession, form, done string,
	step func(ctx context.Context, ws int64, id, reason string) error) error {
	if err := s.requireRequests(a); err != nil {
		return err
	}
	if err := parseForm(w, r); err != nil {
		return err
	}
	id, reason := r.PathValue("id"), r.PostForm.Get("reason")
	if err := step(r.Context(), a.key.WorkspaceID, id, reason); err != nil {
		fe, status, ok := inlineError(err)
		if !ok {
			return err
		}
		return s.renderRequest(w, r, a, &requestDetailView{Error: fe, Form: form, Reason: reason}, status)
	}
	return see(w, r, "/admin/requests/"+id+"?done="+done)
}

func (s *Server) consoleVerify(w http.ResponseWriter, r *http.Request, a *adminSession) error {
	// The operator (or key) that verified the requester is recorded as such:
	// a.actor.ID is "operator:<id>" or "key:<id>".
	return s.requestStep(w, r, a, "verify", "verified", func(ctx context.Context, ws int64, id, _ string) error {
		_, err := s.Privacy.Verify(ctx, ws, id, a.actor.ID, a.actor)
		return err
	})
}

func (s *Server) consoleReject(w http.ResponseWriter, r *http.Request, a *adminSession) error {
	return s.requestStep(w, r, a, "reject", "rejected", func(ctx context.Context, ws int64, id, reason string) error {
		_, err := s.Privacy.Reject(ctx, ws, id, reason, a.actor)
		return err
	})
}

func (s *Server) consoleExtend(w http.ResponseWriter, r *http.Request, a *adminSession) error {
	return s.requestStep(w, r, a, "extend", "extended", func(ctx context.Context, ws int64, id, reason string) error {
		_, err := s.Privacy.Extend(ctx, ws, id, reason, a.actor)
		return err
	})
}

// consoleExport downloads a completed access request's package, for staff
// answering a request received by mail. The read is recorded with the
// operator as its actor (privacy.Service.Export).
func (s *Server) consoleExport(w http.ResponseWriter, r *http.Request, a *adminSession) error {
	if err := s.requireRequests(a); err != nil {
		return err
	}
	if err := exportAllowed(a.key.Purposes, "Ask an administrator for an operator account whose purposes include essential (Operators), or have a colleague with one download the package."); err != nil {
		return err
	}
	q, err := s.Privacy.Get(r.Context(), a.key.WorkspaceID, r.PathValue("id"))
	if err != nil {
		return err
	}
	return s.streamExport(w, r, a.key.WorkspaceID, q, r.URL.Query().Get("format"), a.actor)
}

// ---- Purposes ----

// purposeEdit is one purpose in the editor, as stored or as typed.
type purposeEdit struct {
	ID, Title, Description string
	Contract               bool
	OptIn, OptOut          bool
	Retention              string
}

type purposesView struct {
	Available bool
	// Catalog is the stored catalog (the table); Version is the one the
	// editor's forms were read at.
	Catalog *consent.Catalog
	Version int64
	Edits   []purposeEdit
	JSON    string
	CanEdit bool
	Error   *consoleFormError
	// Form is the form the error belongs to: fields or json.
	Form string
}

func purposeEdits(c *consent.Catalog) []purposeEdit {
	out := make([]purposeEdit, 0, len(c.Purposes))
	for _, p := range c.Purposes {
		out = append(out, purposeEdit{ID: p.ID, Title: p.Title, Description: p.Description,
			Contract: p.LegalBasis == consent.BasisContract, OptIn: p.DefaultAllowed[consent.RegimeOptIn],
			OptOut: p.DefaultAllowed[consent.RegimeOptOut], Retention: strconv.Itoa(p.RetentionDays)})
	}
	return out
}

// storedCatalog returns a copy of the workspace's catalog the caller may
// change (the service's is shared by every reader).
func (s *Server) storedCatalog(ctx context.Context, ws int64) (*consent.Catalog, error) {
	k, err := s.Consent.Catalog(ctx, ws)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(k.Catalog)
	if err != nil {
		return nil, err
	}
	var c consent.Catalog
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

func (s *Server) purposesPage(w http.ResponseWriter, r *http.Request, a *adminSession) error {
	return s.renderPurposes(w, r, a, &purposesView{}, http.StatusOK)
}

// renderPurposes shows the stored catalog and the editor; a view coming
// back from a refused save keeps what the user typed in the form they sent.
func (s *Server) renderPurposes(w http.ResponseWriter, r *http.Request, a *adminSession, v *purposesView, status int) error {
	p := a.page("admin.nav.purposes", "purposes", v)
	if r.URL.Query().Get("done") == "saved" && v.Error == nil {
		p.Flash = "admin.purposes.saved"
	}
	v.Available = s.Consent != nil
	if !v.Available {
		return s.renderWithStatus(w, "admin_purposes.html", p, status)
	}
	c, err := s.storedCatalog(r.Context(), a.key.WorkspaceID)
	if err != nil {
		return err
	}
	v.Catalog, v.CanEdit = c, a.has(trustloop.RoleAdmin)
	if v.Edits == nil {
		v.Edits, v.Version = purposeEdits(c), c.Version
	}
	if v.JSON == "" {
		b, _ := json.MarshalIndent(c, "", "  ")
		v.JSON = string(b)
	}
	return s.renderWithStatus(w, "admin_purposes.html", p, status)
}

// savePurposes saves the editor's fields or the whole document, through
// saveCatalog as PUT /v1/purposes does.
func (s *Server) savePurposes(w http.ResponseWriter, r *http.Request, a *adminSession) error {
	if err := a.require(trustloop.RoleAdmin); err != nil {
		return err
	}
	if s.Consent == nil {
		return trustloop.Errorf(trustloop.EUNAVAILABLE, "The purpose catalog is not served here.").
			WithHint("Start the server with consent enforcement on.")
	}
	if err := parseForm(w, r); err != nil {
		return err
	}
	ws := a.key.WorkspaceID
	v := &purposesView{Form: r.PostForm.Get("form")}
	var body []byte
	var err error
	switch v.Form {
	case "json":
		v.JSON = r.PostForm.Get("catalog")
		body = []byte(v.JSON)
	case "fields":
		body, v.Edits, v.Version, err = s.editedCatalog(r, ws)
	default:
		return trustloop.Errorf(trustloop.EINVALID, "The form was not understood.").WithHint("Go back to the purposes page and save again.")
	}
	if err == nil {
		_, err = s.saveCatalog(r, ws, a.actor, body)
	}
	if err != nil {
		fe, status, ok := inlineError(err)
		if !ok {
			return err
		}
		v.Error = fe
		if trustloop.ErrorCode(err) == trustloop.ECONFLICT {
			v.Error.Hint = s.Pages.T("admin.purposes.conflict")
		}
		return s.renderPurposes(w, r, a, v, status)
	}
	return see(w, r, "/admin/purposes?done=saved")
}

// editedCatalog applies the editor's fields to the stored catalog and
// returns it as the document saveCatalog takes, with the version the editor
// was read at (so a save made meanwhile is a conflict, not overwritten). It
// also returns the fields as typed, to show them again if the save is
// refused.
func (s *Server) editedCatalog(r *http.Request, ws int64) ([]byte, []purposeEdit, int64, error) {
	c, err := s.storedCatalog(r.Context(), ws)
	if err != nil {
		return nil, nil, 0, err
	}
	ed := purposeEdits(c)
	version, verr := strconv.ParseInt(r.PostForm.Get("version"), 10, 64)
	if verr != nil || version < 0 {
		return nil, ed, c.Version, trustloop.Errorf(trustloop.EINVALID, "The form lacks the catalog's version.").
			WithHint("Open the purposes page again and make your edit there.")
	}
	var bad error
	for i := range c.Purposes {
		p, e := &c.Purposes[i], &ed[i]
		pre := "p." + p.ID + "."
		if _, ok := r.PostForm[pre+"title"]; !ok {
			continue // not in the form: left as stored
		}
		e.Title, e.Description = strings.TrimSpace(r.PostForm.Get(pre+"title")), strings.TrimSpace(r.PostForm.Get(pre+"description"))
		e.OptIn, e.OptOut = r.PostForm.Get(pre+"opt_in") == "yes", r.PostForm.Get(pre+"opt_out") == "yes"
		e.Retention = strings.TrimSpace(r.PostForm.Get(pre + "retention"))
		p.Title, p.Description = e.Title, e.Description
		if !e.Contract {
			p.DefaultAllowed = map[string]bool{consent.RegimeOptIn: e.OptIn, consent.RegimeOptOut: e.OptOut}
		}
		days, err := strconv.Atoi(e.Retention)
		if err != nil && bad == nil {
			bad = trustloop.Errorf(trustloop.EINVALID, "Purpose %q: retention must be a whole number of days (0 keeps data as long as the customer allows).", p.ID).
				WithHint("Enter digits only, such as 365.")
		}
		p.RetentionDays = days
	}
	if bad != nil {
		return nil, ed, version, bad
	}
	c.Version = version
	body, err := json.Marshal(c)
	return body, ed, version, err
}

// ---- API keys ----

type keysView struct {
	Keys     []apiKeyView
	CanEdit  bool
	Roles    []choice
	Purposes []choice
	Name     string
	// Created is the key just made, with its secret: shown on this one
	// response and never again.
	Created *apiKeyView
	// Confirm is the key whose revocation is being confirmed.
	Confirm *apiKeyView
	Error   *consoleFormError
}

func (s *Server) keysPage(w http.ResponseWriter, r *http.Request, a *adminSession) error {
	return s.renderKeys(w, r, a, &keysView{}, nil, nil, http.StatusOK)
}

func (s *Server) renderKeys(w http.ResponseWriter, r *http.Request, a *adminSession, v *keysView, roles, purposes []string, status int) error {
	p := a.page("admin.nav.keys", "keys", v)
	// A new key's own notice (with its secret) is the page's status.
	p.Flash = doneFlash(r, "admin.keys.flash.", "revoked")
	keys, err := s.Store.ListAPIKeys(r.Context(), a.key.WorkspaceID)
	if err != nil {
		return err
	}
	for _, k := range keys {
		v.Keys = append(v.Keys, viewKey(k))
	}
	v.CanEdit = a.has(trustloop.RoleAdmin)
	known, err := s.catalogPurposes(r.Context(), a.key.WorkspaceID)
	if err != nil {
		return err
	}
	v.Roles = choices(trustloop.Roles, roles, func(role string) string { return s.Pages.T("admin.role." + role) })
	v.Purposes = choices(known, purposes, nil)
	return s.renderWithStatus(w, "admin_keys.html", p, status)
}

// consoleCreateKey makes a key and shows its secret on this response only:
// a secret never goes in a URL, so the usual redirect is skipped (the page
// is not cached, and reloading it asks before posting again).
func (s *Server) consoleCreateKey(w http.ResponseWriter, r *http.Request, a *adminSession) error {
	if err := a.require(trustloop.RoleAdmin); err != nil {
		return err
	}
	if err := parseForm(w, r); err != nil {
		return err
	}
	name, roles, purposes := r.PostForm.Get("name"), formValues(r, "roles"), formValues(r, "purposes")
	nk, secret, err := s.newAPIKey(r, a.key.WorkspaceID, a.actor, name, roles, purposes)
	if err != nil {
		fe, status, ok := inlineError(err)
		if !ok {
			return err
		}
		return s.renderKeys(w, r, a, &keysView{Name: name, Error: fe}, roles, purposes, status)
	}
	created := viewKey(nk)
	created.Secret = secret
	return s.renderKeys(w, r, a, &keysView{Created: &created}, nil, nil, http.StatusOK)
}

// findKey returns a key of the workspace, revoked ones too.
func (s *Server) findKey(ctx context.Context, ws, id int64) (*trustloop.APIKey, error) {
	keys, err := s.Store.ListAPIKeys(ctx, ws)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(keys, func(k *trustloop.APIKey) bool { return k.ID == id })
	if i < 0 {
		return nil, trustloop.Errorf(trustloop.ENOTFOUND, "No such key.").
			WithHint("It may have been revoked and removed; open the keys page for the current list.")
	}
	return keys[i], nil
}

// confirmRevoke asks before revoking: whatever uses the key stops working.
func (s *Server) confirmRevoke(w http.ResponseWriter, r *http.Request, a *adminSession) error {
	if err := a.require(trustloop.RoleAdmin); err != nil {
		return err
	}
	id, err := pathInt(r, "key")
	if err != nil {
		return err
	}
	k, err := s.findKey(r.Context(), a.key.WorkspaceID, id)
	if err != nil {
		return err
	}
	if k.RevokedAt != nil {
		return see(w, r, "/admin/keys")
	}
	kv := viewKey(k)
	return s.render(w, "admin_keys.html", a.page("admin.keys.revoke.title", "keys", &keysView{Confirm: &kv, CanEdit: true}))
}

func (s *Server) consoleRevokeKey(w http.ResponseWriter, r *http.Request, a *adminSession) error {
	if err := a.require(trustloop.RoleAdmin); err != nil {
		return err
	}
	id, err := pathInt(r, "key")
	if err != nil {
		return err
	}
	if err := parseForm(w, r); err != nil {
		return err
	}
	if r.PostForm.Get("confirm") != "yes" {
		return trustloop.Errorf(trustloop.EINVALID, "Confirm the revocation first.").
			WithHint("Use the Revoke button on the key's confirmation page.")
	}
	if _, err := s.findKey(r.Context(), a.key.WorkspaceID, id); err != nil {
		return err
	}
	if err := s.revokeKey(r, a.key.WorkspaceID, a.actor, id); err != nil {
		fe, status, ok := inlineError(err)
		if !ok {
			return err
		}
		return s.renderKeys(w, r, a, &keysView{Error: fe}, nil, nil, status)
	}
	return see(w, r, "/admin/keys?done=revoked")
}

// ---- Operators ----

type operatorRow struct {
	ID              int64
	Email, Name     string
	Roles, Purposes []string
	CreatedAt       time.Time
	DisabledAt      *time.Time
	Self            bool
}

type operatorsView struct {
	Available bool
	Operators []operatorRow
	Roles     []choice
	Purposes  []choice
	Email     string
	Name      string
	MinLength int
	Error     *consoleFormError
}

// requireOperators: operator accounts are for admins to see and change
// (the list holds staff emails; no other role needs them).
func (s *Server) requireOperators(a *adminSession) error {
	if err := a.require(trustloop.RoleAdmin); err != nil {
		return err
	}
	if s.Operators == nil {
		return trustloop.Errorf(trustloop.EUNAVAILABLE, "Operator accounts are not kept on this server.").
			WithHint("Sign in with an admin API key.")
	}
	return nil
}

func (s *Server) operatorsPage(w http.ResponseWriter, r *http.Request, a *adminSession) error {
	if err := a.require(trustloop.RoleAdmin); err != nil {
		return err
	}
	return s.renderOperators(w, r, a, &operatorsView{}, nil, nil, http.StatusOK)
}

func (s *Server) renderOperators(w http.ResponseWriter, r *http.Request, a *adminSession, v *operatorsView, roles, purposes []string, status int) error {
	p := a.page("admin.nav.operators", "operators", v)
	p.Flash = doneFlash(r, "admin.operators.flash.", "created", "disabled", "enabled", "password")
	v.Available, v.MinLength = s.Operators != nil, password.MinLength
	if !v.Available {
		return s.renderWithStatus(w, "admin_operators.html", p, status)
	}
	ops, err := s.Operators.ListOperators(r.Context(), a.key.WorkspaceID)
	if err != nil {
		return err
	}
	for _, op := range ops {
		v.Operators = append(v.Operators, operatorRow{ID: op.ID, Email: op.Email, Name: op.Name, Roles: op.Roles, Purposes: op.Purposes,
			CreatedAt: op.CreatedAt, DisabledAt: op.DisabledAt, Self: a.claims.Who == "op:"+strconv.FormatInt(op.ID, 10)})
	}
	known, err := s.catalogPurposes(r.Context(), a.key.WorkspaceID)
	if err != nil {
		return err
	}
	v.Roles = choices(trustloop.Roles, roles, func(role string) string { return s.Pages.T("admin.role." + role) })
	v.Purposes = choices(known, purposes, nil)
	return s.renderWithStatus(w, "admin_operators.html", p, status)
}

// operatorPassword reads a new password and its repetition and hashes it.
func operatorPassword(r *http.Request) (string, error) {
	pw := r.PostForm.Get("password")
	if err := password.Check(pw); err != nil {
		return "", err
	}
	if pw != r.PostForm.Get("password_confirm") {
		return "", trustloop.Errorf(trustloop.EINVALID, "The two passwords differ.").WithHint("Type the same password in both fields.")
	}
	return password.Hash(pw)
}

func operatorRef(id int64) string { return "operator:" + strconv.FormatInt(id, 10) }

// createOperator makes an operator account. The audit log names it by id
// only: its email and name are personal data.
func (s *Server) createOperator(w http.ResponseWriter, r *http.Request, a *adminSession) error {
	if err := s.requireOperators(a); err != nil {
		return err
	}
	if err := parseForm(w, r); err != nil {
		return err
	}
	ws := a.key.WorkspaceID
	email, name := strings.TrimSpace(r.PostForm.Get("email")), strings.TrimSpace(r.PostForm.Get("name"))
	roles, purposes := formValues(r, "roles"), formValues(r, "purposes")
	op := &trustloop.Operator{WorkspaceID: ws, Email: trustloop.NormalizeOperatorEmail(email), Name: name, Roles: roles, Purposes: purposes}
	if op.Purposes == nil {
		op.Purposes = []string{}
	}
	err := s.checkPurposes(r.Context(), ws, purposes)
	if err == nil {
		op.PasswordHash, err = operatorPassword(r)
	}
	if err == nil {
		err = s.Operators.CreateOperator(r.Context(), op)
	}
	if err != nil {
		fe, status, ok := inlineError(err)
		if !ok {
			return err
		}
		return s.renderOperators(w, r, a, &operatorsView{Email: email, Name: name, Error: fe}, roles, purposes, status)
	}
	s.recordAdminBy(r, ws, a.actor, "operator_created", operatorRef(op.ID))
	return see(w, r, "/admin/operators?done=created")
}

// changeOperator loads an operator of the workspace, applies change and
// stores it, records the change and redirects back to the list.
func (s *Server) changeOperator(w http.ResponseWriter, r *http.Request, a *adminSession, kind, done string,
	change func(op *trustloop.Operator) error) error {
	if err := s.requireOperators(a); err != nil {
		return err
	}
	id, err := pathInt(r, "operator")
	if err != nil {
		return err
	}
	if err := parseForm(w, r); err != nil {
		return err
	}
	ws := a.key.WorkspaceID
	op, err := s.Operators.FindOperator(r.Context(), ws, id)
	if err == nil {
		if err = change(op); err == nil {
			err = s.Operators.UpdateOperator(r.Context(), op)
		}
	}
	if err != nil {
		fe, status, ok := inlineError(err)
		if !ok {
			return err
		}
		return s.renderOperators(w, r, a, &operatorsView{Error: fe}, nil, nil, status)
	}
	s.recordAdminBy(r, ws, a.actor, kind, operatorRef(id))
	// A new password ends the operator's sessions (passwordEpoch): one's
	// own goes on under the new password.
	if a.claims.Who == "op:"+strconv.FormatInt(op.ID, 10) && a.claims.Epoch != passwordEpoch(op) {
		c := *a.claims
		c.Epoch, c.Nonce = passwordEpoch(op), ""
		tok, err := s.signToken(&c)
		if err != nil {
			return err
		}
		setCookie(w, r, adminCookie, tok, "/admin", time.Unix(c.Exp, 0), true)
	}
	return see(w, r, "/admin/operators?done="+done)
}

func (s *Server) disableOperator(w http.ResponseWriter, r *http.Request, a *adminSession) error {
	return s.changeOperator(w, r, a, "operator_disabled", "disabled", func(op *trustloop.Operator) error {
		// Disabling oneself would lock out the one doing it, perhaps the
		// last admin: another admin has to.
		if a.claims.Who == "op:"+strconv.FormatInt(op.ID, 10) {
			return trustloop.Errorf(trustloop.EINVALID, "You cannot disable your own account.").WithHint("Ask another admin to do it.")
		}
		if op.DisabledAt == nil {
			now := s.now()
			op.DisabledAt = &now
		}
		return nil
	})
}

func (s *Server) enableOperator(w http.ResponseWriter, r *http.Request, a *adminSession) error {
	return s.changeOperator(w, r, a, "operator_enabled", "enabled", func(op *trustloop.Operator) error {
		op.DisabledAt = nil
		return nil
	})
}

// resetPassword sets an operator's new password (an admin hands it over;
// the operator signs in with it).
func (s *Server) resetPassword(w http.ResponseWriter, r *http.Request, a *adminSession) error {
	return s.changeOperator(w, r, a, "operator_password_reset", "password", func(op *trustloop.Operator) error {
		h, err := operatorPassword(r)
		op.PasswordHash = h
		return err
	})
}

// ---- Audiences and destinations ----

type audienceRow struct {
	*trustloop.Audience
	// Purposes are those that may list the audience's members: membership
	// is drawn from behaviour (audienceReadable).
	Purposes []string
}

type audiencesView struct {
	Available bool
	Audiences []audienceRow
}

// audiencesPage lists the workspace's audiences; changes go through the API
// (a rule is CEL, best written and tested as code).
func (s *Server) audiencesPage(w http.ResponseWriter, r *http.Request, a *adminSession) error {
	v := &audiencesView{Available: s.Profiles != nil}
	if v.Available {
		as, err := s.Profiles.Audiences(r.Context(), a.key.WorkspaceID)
		if err != nil {
			return err
		}
		var readable []string
		if s.Consent != nil {
			c, err := s.Consent.Catalog(r.Context(), a.key.WorkspaceID)
			if err != nil {
				return err
			}
			for i := range c.Len() {
				if audienceReadable(c.ID(i), c) == nil {
					readable = append(readable, c.ID(i))
				}
			}
		}
		for _, au := range as {
			v.Audiences = append(v.Audiences, audienceRow{Audience: au, Purposes: readable})
		}
	}
	return s.render(w, "admin_audiences.html", a.page("admin.nav.audiences", "audiences", v))
}

// destinationsPage says plainly that destinations are not built yet, and
// what they will do.
func (s *Server) destinationsPage(w http.ResponseWriter, r *http.Request, a *adminSession) error {
	return s.render(w, "admin_destinations.html", a.page("admin.nav.destinations", "destinations", nil))
}
