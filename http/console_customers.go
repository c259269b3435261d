package http

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/consent"
	"github.com/trustloop/trustloop/privacy"
	"github.com/trustloop/trustloop/projection"
	"github.com/trustloop/trustloop/recommend"
)

// The console's customer pages: support and privacy staff find a customer
// and see what one purpose may see of them, exactly as an API key with the
// principal's purposes would (T3): the profile filtered for the purpose, the
// categories withheld and why, the events collected for it, and, for
// personalization, the recommendations. That read is recorded in the audit
// log, with the operator or key as the actor, before the page is sent: a
// read that cannot be recorded is not shown.
//
// The search posts its identifier (an email is personal data: it never goes
// into a URL, where logs and browser histories keep it) and redirects to the
// customer's page by profile id and purpose.

// customerRoute is the route the console's customer reads are recorded under.
const customerRoute = "GET /admin/customers/{id}"

// customerEvents is how many of the newest events the page shows.
const customerEvents = 50

// customerRequestTypes are the requests staff file from a customer's page: a
// rectification needs the corrected values, which the API takes.
var customerRequestTypes = []string{trustloop.RequestAccess, trustloop.RequestPortability, trustloop.RequestErasure,
	trustloop.RequestRestriction, trustloop.RequestObjection}

func (s *Server) customerRoutes(mux *http.ServeMux, csrf *http.CrossOriginProtection) {
	mux.Handle("GET /admin/customers", s.web("/admin/customers", s.admin(s.customerSearchPage)))
	mux.Handle("POST /admin/customers", csrf.Handler(s.web("/admin/customers", s.admin(s.customerSearch))))
	mux.Handle("GET /admin/customers/{id}", s.web("/admin/customers/{id}", s.admin(s.customerPage)))
	mux.Handle("POST /admin/customers/{id}/requests", csrf.Handler(s.web("/admin/customers/{id}/requests", s.admin(s.customerFileRequest))))
}

// customersReady refuses the pages on a server without profiles or consent:
// there is no customer to show, or no way to decide what a purpose may see.
func (s *Server) customersReady() error {
	if s.Profiles == nil || s.Consent == nil {
		return trustloop.Errorf(trustloop.EUNAVAILABLE, "Customer pages need unified profiles and consent enforcement.").
			WithHint("Start the server with --profiles.")
	}
	return nil
}

// purposeChoice is one purpose the principal may read for.
type purposeChoice struct {
	ID, Title string
	Selected  bool
}

// readablePurposes are the catalog's purposes the principal may read for, in
// the catalog's order.
func readablePurposes(c *consent.Compiled, k *trustloop.APIKey, selected string) []purposeChoice {
	var out []purposeChoice
	for i := range c.Len() {
		if id := c.ID(i); slices.Contains(k.Purposes, id) {
			out = append(out, purposeChoice{ID: id, Title: c.Catalog.Purposes[i].Title, Selected: id == selected})
		}
	}
	return out
}

type customerSearchView struct {
	Purposes   []purposeChoice
	Identifier string
	Error      string
	Hint       string
}

func (s *Server) customerSearchPage(w http.ResponseWriter, r *http.Request, a *adminSession) error {
	if err := s.customersReady(); err != nil {
		return err
	}
	c, err := s.Consent.Catalog(r.Context(), a.key.WorkspaceID)
	if err != nil {
		return err
	}
	v := &customerSearchView{Purposes: readablePurposes(c, a.key, r.URL.Query().Get("purpose"))}
	return s.render(w, "admin_customers.html", a.page("cust.search.title", "customers", v))
}

// searchIdentifier reads what staff type: "type:value" as the API writes
// it, or a bare email (it holds "@") or user id.
func searchIdentifier(q string) string {
	if typ, _, ok := strings.Cut(q, ":"); ok && typ != "" && !strings.ContainsAny(typ, "@ ") {
		return q
	}
	if strings.Contains(q, "@") {
		return trustloop.IDEmail + ":" + q
	}
	return trustloop.IDUserID + ":" + q
}

// customerSearch finds a customer by an identifier and sends the browser to
// their page for the chosen purpose. Bad input and an unknown customer show
// the form again, with the input and the reason.
func (s *Server) customerSearch(w http.ResponseWriter, r *http.Request, a *adminSession) error {
	if err := s.customersReady(); err != nil {
		return err
	}
	if err := parseForm(w, r); err != nil {
		return err
	}
	ctx, ws := r.Context(), a.key.WorkspaceID
	c, err := s.Consent.Catalog(ctx, ws)
	if err != nil {
		return err
	}
	p := r.PostForm.Get("purpose")
	q := strings.TrimSpace(r.PostForm.Get("identifier"))
	v := &customerSearchView{Purposes: readablePurposes(c, a.key, p), Identifier: q}
	again := func(err error) error {
		v.Error = trustloop.ErrorMessage(err)
		var e *trustloop.Error
		if errors.As(err, &e) {
			v.Hint = e.Hint
		}
		// Rendered before the status is sent, so a template failure still
		// gets the error page.
		var buf bytes.Buffer
		if err := s.Pages.Render(&buf, "admin_customers.html", a.page("cust.search.title", "customers", v)); err != nil {
			return err
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(ErrorStatus(trustloop.ErrorCode(err)))
		_, werr := buf.WriteTo(w)
		return werr
	}
	if err := checkPurpose(p, c.Names(c.All()), a.key); err != nil {
		if trustloop.ErrorCode(err) == trustloop.EFORBIDDEN {
			return err
		}
		return again(err)
	}
	if q == "" {
		return again(trustloop.Errorf(trustloop.EINVALID, "Enter an identifier to search for.").
			WithHint("An email, a user id, or type:value such as phone:+4915112345678."))
	}
	id, err := s.Profiles.ParseIdentifier(ctx, ws, searchIdentifier(q))
	if trustloop.ErrorCode(err) == trustloop.EINVALID {
		return again(err)
	} else if err != nil {
		return err
	}
	prof, err := s.Profiles.Lookup(ctx, ws, id)
	if trustloop.ErrorCode(err) == trustloop.ENOTFOUND {
		return again(trustloop.Errorf(trustloop.ENOTFOUND, "No customer has this identifier.").
			WithHint("Check the spelling. Identifiers are matched after normalization: emails in lower case, phones in international form (+…)."))
	} else if err != nil {
		return err
	}
	return see(w, r, customerURL(prof.ProfileID, p))
}

func customerURL(profileID, purpose string) string {
	return "/admin/customers/" + url.PathEscape(profileID) + "?purpose=" + url.QueryEscape(purpose)
}

// customerView is one customer as one purpose may see them.
type customerView struct {
	ProfileID    string
	MergedFrom   string
	Purpose      string
	PurposeTitle string
	Purposes     []purposeChoice
	// Recorded says the read was recorded as a data use (nothing personal
	// shown: nothing recorded).
	Recorded bool
	// Allowed: the purpose is allowed for this customer now; else Reason.
	Allowed    bool
	Reason     string
	Identities []trustloop.Identifier
	Traits     [][2]string
	Computed   [][2]string
	Audiences  []projection.AudienceRef
	Withheld   []withheld
	Consent    []customerConsent
	History    []customerHistory
	Uses       []customerUse
	Events     []customerEvent
	MoreEvents bool
	// Recs is the recommendations preview (personalization reads only).
	Recs *recommendationsView
	// Requests are the customer's privacy requests (admin and privacy roles).
	Requests []privacy.RequestView
	// CanAct offers the actions: a link to the preference center and filing
	// a privacy request (admin and privacy roles).
	CanAct       bool
	CanFile      bool
	RequestTypes []string
	// Filed is the request just filed (after the redirect).
	Filed *privacy.RequestView
}

type customerConsent struct {
	ID, Title             string
	State, Method, Reason string
	Allowed               bool
	At, ExpiresAt         time.Time
	ReceiptID             string
}

type customerHistory struct {
	Purpose, State, Method, Jurisdiction, NoticeVersion, ReceiptID string
	At                                                             time.Time
	Seq                                                            int64
}

type customerUse struct {
	Index                              int64
	At                                 time.Time
	Kind, Actor, Purpose, Action, Text string
	Categories                         []string
}

type customerEvent struct {
	At             time.Time
	What, Category string
	CollectedFor   []string
}

// customerPage shows one customer for one purpose (?purpose=, required).
func (s *Server) customerPage(w http.ResponseWriter, r *http.Request, a *adminSession) error {
	if err := s.customersReady(); err != nil {
		return err
	}
	ctx, ws := r.Context(), a.key.WorkspaceID
	c, err := s.Consent.Catalog(ctx, ws)
	if err != nil {
		return err
	}
	p := r.URL.Query().Get("purpose")
	if err := checkPurpose(p, c.Names(c.All()), a.key); err != nil {
		return err
	}
	prof, err := s.customerProfile(r, ws)
	if err != nil {
		return err
	}
	v, err := s.customerRead(ctx, a, c, p, prof)
	if err != nil {
		return err
	}
	// The request just filed from this page (its id, type and status only).
	if id := r.URL.Query().Get("filed"); id != "" && v.CanFile && trustloop.ValidRequestID(id) {
		if q, err := s.Privacy.Get(ctx, ws, id); err == nil {
			rv := privacy.View(q)
			v.Filed = &rv
		}
	}
	return s.render(w, "admin_customer.html", a.page("cust.title", "customers", v))
}

// customerProfile loads the profile the path names; one erased (no subject
// left) does not exist.
func (s *Server) customerProfile(r *http.Request, ws int64) (*projection.Profile, error) {
	id, err := projection.ParseID(r.PathValue("id"))
	if err != nil {
		return nil, err
	}
	prof, err := s.Profiles.Profile(r.Context(), ws, id)
	if err != nil {
		return nil, err
	}
	if len(prof.Subjects()) == 0 {
		return nil, trustloop.Errorf(trustloop.ENOTFOUND, "Profile not found.").
			WithHint("It may have been erased; search for the customer by an identifier.")
	}
	return prof, nil
}

// customerRead reads a customer for purpose p as the API would for a key
// with the principal's purposes, and records the read before returning it.
func (s *Server) customerRead(ctx context.Context, a *adminSession, c *consent.Compiled, p string, prof *projection.Profile) (*customerView, error) {
	ws := a.key.WorkspaceID
	pid, subjects := prof.ID(), prof.Subjects()
	i, _ := c.Index(p)
	v := &customerView{ProfileID: prof.ProfileID, MergedFrom: prof.MergedFrom, Purpose: p, PurposeTitle: c.Catalog.Purposes[i].Title,
		Purposes: readablePurposes(c, a.key, p)}
	acc, err := s.decideRead(ctx, ws, p, c, subjects)
	if err != nil {
		return nil, err
	}
	v.Allowed, v.Reason = acc.allowed, acc.reason
	// The profile as the purpose may see it (viewOf filters prof).
	pv := viewOf(acc, c, prof)
	used := consent.Cats(0)
	for _, cat := range pv.used {
		used |= consent.CategoryBit(cat)
	}
	v.Identities, v.Audiences, v.Withheld = pv.Identities, pv.Audiences, pv.CategoriesWithheld
	v.Traits, v.Computed = customerValues(pv.Traits), customerValues(pv.Computed)
	// The newest events collected for the purpose, of categories it may use.
	if acc.allowed {
		cursor := ""
		for pages := 0; pages < 10 && len(v.Events) < customerEvents; pages++ {
			evs, next, err := s.Profiles.Events(ctx, ws, pid, cursor, customerEvents, acc.keepEvent)
			if err != nil {
				return nil, err
			}
			for _, e := range evs {
				if len(v.Events) == customerEvents {
					v.MoreEvents = true
					break
				}
				cat := eventCategory(e.Type, e.Message)
				used |= consent.CategoryBit(cat)
				v.Events = append(v.Events, customerEvent{At: e.Timestamp, What: s.describeEvent(e, ""), Category: cat, CollectedFor: e.Purposes})
			}
			if cursor = next; cursor == "" {
				break
			}
			v.MoreEvents = v.MoreEvents || len(v.Events) == customerEvents
		}
	}
	// What personalization would suggest to them now, as the API answers it.
	if s.Recommender != nil && p == recommend.Personalization {
		rv, cats := s.recommendFor(ws, pid, subjects, c, acc, 10)
		for _, cat := range cats {
			used |= consent.CategoryBit(cat)
		}
		v.Recs = &rv
	}
	// Recorded before anything is shown; if it cannot be, nothing is.
	if used != 0 {
		cats := used.Names()
		slices.SortFunc(cats, func(x, y string) int {
			return slices.Index(trustloop.Categories, x) - slices.Index(trustloop.Categories, y)
		})
		if err := s.recordUsesBy(ctx, ws, a.actor, p, customerRoute, []use{{profile: prof.ProfileID, categories: cats}}); err != nil {
			return nil, err
		}
		v.Recorded = true
	}
	// Consent, its history and the recorded uses are shown whatever the
	// purpose, as the consent and data-use APIs show them to any key of the
	// workspace: they are what decides every other read, and the uses hold
	// no personal data.
	cv := pv.Consent
	for i := range c.Len() {
		id := c.ID(i)
		pc := cv.Purposes[id]
		row := customerConsent{ID: id, Title: c.Catalog.Purposes[i].Title, State: pc.State, Method: pc.Method, Reason: pc.Reason,
			Allowed: pc.Allowed, ReceiptID: pc.ReceiptID}
		if pc.At != nil {
			row.At = *pc.At
		}
		if pc.ExpiresAt != nil {
			row.ExpiresAt = *pc.ExpiresAt
		}
		v.Consent = append(v.Consent, row)
	}
	for _, sub := range subjects {
		recs, err := s.Consent.History(ctx, ws, sub)
		if err != nil {
			return nil, err
		}
		for _, rec := range recs {
			v.History = append(v.History, customerHistory{Purpose: rec.Purpose, State: rec.State, Method: rec.Method,
				Jurisdiction: rec.Jurisdiction, NoticeVersion: rec.NoticeVersion, ReceiptID: rec.ReceiptID, At: rec.At, Seq: rec.Seq})
		}
	}
	sort.SliceStable(v.History, func(i, j int) bool {
		if !v.History[i].At.Equal(v.History[j].At) {
			return v.History[i].At.After(v.History[j].At)
		}
		return v.History[i].Seq > v.History[j].Seq
	})
	if s.Audit != nil {
		recs, err := s.Audit.RecordsOf(ctx, ws, prof.ProfileID, 0, 50)
		if err != nil {
			return nil, err
		}
		for _, rec := range recs {
			e, err := trustloop.DecodeAuditEntry(rec.Data)
			if err != nil {
				return nil, err
			}
			u := customerUse{Index: e.Index, At: e.Time, Kind: e.Kind, Actor: e.Actor.ID, Purpose: e.Purpose, Action: e.Action, Categories: e.Categories}
			if e.Kind == trustloop.AuditDataUse {
				u.Text = s.useSentence(&e, c, "")
			}
			v.Uses = append(v.Uses, u)
		}
	}
	if a.has(trustloop.RoleAdmin, trustloop.RolePrivacy) {
		v.CanAct = true
		v.CanFile, v.RequestTypes = s.Privacy != nil, customerRequestTypes
		if s.Privacy != nil {
			reqs, err := s.Privacy.Store.SubjectPrivacyRequests(ctx, ws, subjects)
			if err != nil {
				return nil, err
			}
			for _, q := range reqs {
				v.Requests = append(v.Requests, privacy.View(q))
			}
			sort.Slice(v.Requests, func(i, j int) bool { return v.Requests[i].ReceivedAt.After(v.Requests[j].ReceivedAt) })
		}
	}
	return v, nil
}

// customerValues lists a map's values as text, by key.
func customerValues(m map[string]any) [][2]string {
	out := make([][2]string, 0, len(m))
	for k, val := range m {
		b, _ := json.Marshal(val)
		out = append(out, [2]string{k, strings.Trim(string(b), `"`)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}

// customerAction checks what both actions need: a role that may act for a
// customer (as the API's portal-session and privacy-request routes), a
// readable purpose to come back to, and the customer.
func (s *Server) customerAction(w http.ResponseWriter, r *http.Request, a *adminSession) (string, *projection.Profile, error) {
	if err := s.customersReady(); err != nil {
		return "", nil, err
	}
	if err := a.require(trustloop.RoleAdmin, trustloop.RolePrivacy); err != nil {
		return "", nil, err
	}
	if err := parseForm(w, r); err != nil {
		return "", nil, err
	}
	c, err := s.Consent.Catalog(r.Context(), a.key.WorkspaceID)
	if err != nil {
		return "", nil, err
	}
	p := r.PostForm.Get("purpose")
	if err := checkPurpose(p, c.Names(c.All()), a.key); err != nil {
		return "", nil, err
	}
	prof, err := s.customerProfile(r, a.key.WorkspaceID)
	if err != nil {
		return "", nil, err
	}
	return p, prof, nil
}

// customerFileRequest files a privacy request for the customer, verified by
// the signed-in principal (staff act on a request the customer made to
// them), and shows the customer's page with it.
func (s *Server) customerFileRequest(w http.ResponseWriter, r *http.Request, a *adminSession) error {
	if s.Privacy == nil {
		return trustloop.Errorf(trustloop.EUNAVAILABLE, "Privacy requests are not handled on this server.").
			WithHint("This server was started without its privacy service; file the request on one started with trustloop serve.")
	}
	p, prof, err := s.customerAction(w, r, a)
	if err != nil {
		return err
	}
	typ := r.PostForm.Get("type")
	if !slices.Contains(customerRequestTypes, typ) {
		return trustloop.Errorf(trustloop.EINVALID, "Choose the type of request.").
			WithHint("One of: " + strings.Join(customerRequestTypes, ", ") + ". A correction is filed through the API with the corrected values.")
	}
	if typ == trustloop.RequestErasure && r.PostForm.Get("confirm") != "yes" {
		return trustloop.Errorf(trustloop.EINVALID, "An erasure needs your confirmation.").
			WithHint("Go back, tick the box confirming that the customer asked for it, and file it again.")
	}
	ident, err := portalIdentifier(prof)
	if err != nil {
		return err
	}
	req, _, err := s.Privacy.Create(r.Context(), a.key.WorkspaceID, privacy.NewRequest{Type: typ, Identifier: ident,
		Actor: a.actor, VerifiedBy: a.actor.ID})
	if err != nil {
		return err
	}
	if typ == trustloop.RequestErasure {
		// The customer's page is gone once the erasure ran (in seconds):
		// the request's own page follows it to its receipt.
		return see(w, r, "/admin/requests/"+url.PathEscape(req.ID))
	}
	return see(w, r, customerURL(prof.ProfileID, p)+"&filed="+url.QueryEscape(req.ID)+"#requests")
}
