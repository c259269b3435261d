package http

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/consent"
	"github.com/trustloop/trustloop/http/html"
	"github.com/trustloop/trustloop/privacy"
	"github.com/trustloop/trustloop/projection"
)

// The preference center (/portal): one customer's own page, opened from a
// short-lived link the business's server asks for (POST /v1/portal/sessions)
// and hands its signed-in customer. Everything on it belongs to that one
// customer of that one workspace (T9): the session names the profile, and every
// request, receipt and export is checked against it.

const (
	portalLinkTTL    = 15 * time.Minute
	portalSessionTTL = 30 * time.Minute
	portalCookie     = "tl_portal"
	// portalActor is who the audit log names when the customer reads or
	// changes their own data here.
	portalActor = consent.EvidencePortal
)

// portalPaths are the preference center's API paths, as documented in openapi.json.
var portalPaths = []string{"/v1/portal/sessions"}

func (s *Server) portalRoutes(mux *http.ServeMux, csrf *http.CrossOriginProtection) {
	if s.Profiles == nil || s.Consent == nil {
		return
	}
	mux.Handle("POST /v1/portal/sessions", s.route("/v1/portal/sessions", s.authed(s.createPortalSession)))
	mux.Handle("GET /portal/s/{token}", s.web("/portal/s/{token}", s.openPortalLink))
	mux.Handle("GET /portal", s.web("/portal", s.portal(s.portalHome)))
	mux.Handle("GET /portal/{$}", s.web("/portal", s.portal(s.portalHome)))
	mux.Handle("POST /portal/consent", csrf.Handler(s.web("/portal/consent", s.portal(s.portalConsent))))
	mux.Handle("POST /portal/download", csrf.Handler(s.web("/portal/download", s.portal(s.portalDownload))))
	mux.Handle("GET /portal/erase", s.web("/portal/erase", s.portal(s.portalEraseConfirm)))
	mux.Handle("POST /portal/erase", csrf.Handler(s.web("/portal/erase", s.portal(s.portalErase))))
	mux.Handle("GET /portal/requests/{id}", s.web("/portal/requests/{id}", s.portal(s.portalRequest)))
	mux.Handle("GET /portal/requests/{id}/export", s.web("/portal/requests/{id}/export", s.portal(s.portalExport)))
	mux.Handle("GET /portal/receipts/{id}", s.web("/portal/receipts/{id}", s.portal(s.portalReceipt)))
}

// createPortalSession makes a preference-center link for one customer. The
// business's server calls it for its signed-in customer: an admin or privacy
// key (a reader key may not open anyone's choices).
func (s *Server) createPortalSession(w http.ResponseWriter, r *http.Request, k *trustloop.APIKey) error {
	if err := requirePrivacy(k); err != nil {
		return trustloop.Errorf(trustloop.EFORBIDDEN, "Preference-center links need an admin or privacy API key.").
			WithHint("Create a key with the privacy role (POST /v1/api-keys) for the service that sends customers their links.")
	}
	var body struct {
		Identifier string `json:"identifier"`
	}
	if err := readJSON(r, &body); err != nil {
		return err
	}
	if body.Identifier == "" {
		return trustloop.Errorf(trustloop.EINVALID, "identifier is required.").
			WithHint(`Send {"identifier":"<type>:<value>"}, e.g. email:jane@example.com.`)
	}
	id, err := s.Profiles.ParseIdentifier(r.Context(), k.WorkspaceID, body.Identifier)
	if err != nil {
		return err
	}
	p, err := s.Profiles.Lookup(r.Context(), k.WorkspaceID, id)
	if err != nil {
		return err
	}
	link, exp, err := s.portalLinkFor(k.WorkspaceID, p.ID())
	if err != nil {
		return err
	}
	// Who handed out a link to whose preference center is on record (the
	// link is a credential for that customer's choices).
	if s.Audit != nil {
		if err := s.Audit.Append(r.Context(), trustloop.AuditEntry{WorkspaceID: k.WorkspaceID, Time: s.now(), Kind: "portal_link",
			Actor: actorOf(k), Subject: p.ProfileID, Action: routeOf(r)}); err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusCreated, map[string]any{"url": link, "expires_at": exp.UTC()})
	return nil
}

// portalLinkFor signs a preference-center link for one customer of one
// workspace (who asked for it is on the audit log): its path and when it
// stops working. Only the API makes them, for the business's server to hand its
// signed-in customer; staff get none (they would act as the customer).
func (s *Server) portalLinkFor(ws, profileID int64) (string, time.Time, error) {
	exp := s.now().Add(portalLinkTTL).Truncate(time.Second)
	tok, err := s.signToken(&claims{Kind: tokenPortalLink, WS: ws, Profile: profileID, Exp: exp.Unix()})
	if err != nil {
		return "", time.Time{}, err
	}
	return "/portal/s/" + tok, exp, nil
}

// openPortalLink trades a link for a session cookie and sends the customer on
// to /portal, so the token leaves the address bar (and any Referer) at once.
func (s *Server) openPortalLink(w http.ResponseWriter, r *http.Request) error {
	c, err := s.verifyToken(r.PathValue("token"), tokenPortalLink)
	if err != nil {
		return err
	}
	if err := s.setPortalSession(w, r, &claims{WS: c.WS, Profile: c.Profile}); err != nil {
		return err
	}
	return see(w, r, "/portal")
}

func (s *Server) setPortalSession(w http.ResponseWriter, r *http.Request, c *claims) error {
	c.Kind, c.Nonce = tokenPortal, ""
	exp := s.now().Add(portalSessionTTL)
	c.Exp = exp.Unix()
	tok, err := s.signToken(c)
	if err != nil {
		return err
	}
	setCookie(w, r, portalCookie, tok, "/portal", exp, false)
	return nil
}

// portalSession is the signed-in customer of a portal request.
type portalSession struct {
	claims *claims
	// profile is nil when it no longer exists (erased).
	profile *projection.Profile
	catalog *consent.Compiled
}

func (s *Server) portal(h func(w http.ResponseWriter, r *http.Request, ps *portalSession) error) webFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		ck, err := r.Cookie(portalCookie)
		if err != nil {
			return errBadToken(tokenPortal)
		}
		c, err := s.verifyToken(ck.Value, tokenPortal)
		if err != nil {
			return err
		}
		ps := &portalSession{claims: c}
		if ps.catalog, err = s.Consent.Catalog(r.Context(), c.WS); err != nil {
			return err
		}
		p, err := s.Profiles.Profile(r.Context(), c.WS, c.Profile)
		switch {
		case trustloop.ErrorCode(err) == trustloop.ENOTFOUND:
		case err != nil:
			return err
		case len(p.Subjects()) > 0:
			ps.profile = p
		}
		return h(w, r, ps)
	}
}

// purposeRow is one purpose as the customer sees it.
type purposeRow struct {
	ID, Title, Description string
	Allowed, Contract      bool
	// GPC: the browser's opt-out signal decides it; the switch is off.
	GPC    bool
	State  string
	Method string
	At     time.Time
}

type portalView struct {
	Erased     bool
	Purposes   []purposeRow
	GPC        bool
	Identities []trustloop.Identifier
	Traits     [][2]string
	Categories []catCount
	Timeline   []timelineRow
	More       bool
	Uses       []string
	Receipts   []receiptRow
	Requests   []privacy.RequestView
}

type catCount struct {
	Name  string
	Count int
}

type timelineRow struct {
	At       time.Time
	What     string
	Category string
}

type receiptRow struct {
	ID string
	At time.Time
}

// portalHome is the preference center: choices first, then what is known and
// how it was used, then downloads, receipts and erasure.
func (s *Server) portalHome(w http.ResponseWriter, r *http.Request, ps *portalSession) error {
	v := &portalView{}
	lang := s.Pages.Negotiate(r.Header.Get("Accept-Language"))
	page := &html.Page{Face: "portal", Title: "portal.title", Data: v, Lang: lang}
	if f := r.URL.Query().Get("saved"); f != "" {
		page.Flash = "portal.saved"
	}
	reqs, err := s.portalRequests(r.Context(), ps)
	if err != nil {
		return err
	}
	v.Requests = reqs
	if ps.profile == nil {
		v.Erased = true
		return s.render(w, "portal.html", page)
	}
	ws, p, c := ps.claims.WS, ps.profile, ps.catalog
	gpc := r.Header.Get("Sec-GPC") == "1"
	if gpc {
		// The browser asks for no selling or sharing: honoured here exactly as
		// the collector honours it, recorded as a choice made by the signal.
		if err := s.honorGPC(r.Context(), ws, c, p.Subjects()); err != nil {
			return err
		}
	}
	a, err := s.decideRead(r.Context(), ws, trustloop.PurposeEssential, c, p.Subjects())
	if err != nil {
		return err
	}
	cv := a.consentView()
	for i := range c.Len() {
		id := c.ID(i)
		def := c.Catalog.Purposes[i]
		pv := cv.Purposes[id]
		text := def.In(lang)
		row := purposeRow{ID: id, Title: text.Title, Description: text.Description, Allowed: pv.Allowed, Contract: c.Contract().Has(i),
			State: pv.State, Method: pv.Method}
		if pv.At != nil {
			row.At = *pv.At
		}
		if c.GPC().Has(i) {
			row.GPC = gpc
			v.GPC = v.GPC || gpc || (pv.Method == trustloop.MethodGPC && !pv.Allowed)
		}
		v.Purposes = append(v.Purposes, row)
	}
	// What we know: everything held, since it is the customer's own.
	v.Identities = p.Identities
	for k, val := range p.Traits {
		b, _ := json.Marshal(val)
		v.Traits = append(v.Traits, [2]string{k, strings.Trim(string(b), `"`)})
	}
	sort.Slice(v.Traits, func(i, j int) bool { return v.Traits[i][0] < v.Traits[j][0] })
	counts := map[string]int{}
	cursor := ""
	for pages := 0; pages < 4; pages++ {
		evs, next, err := s.Profiles.Events(r.Context(), ws, p.ID(), cursor, 500, nil)
		if err != nil {
			return err
		}
		for _, e := range evs {
			cat := eventCategory(e.Type, e.Message)
			counts[cat]++
			if len(v.Timeline) < 25 {
				v.Timeline = append(v.Timeline, timelineRow{At: e.Timestamp, What: s.describeEvent(e, lang), Category: cat})
			}
		}
		if cursor = next; cursor == "" {
			break
		}
		v.More = pages == 3
	}
	for _, cat := range trustloop.Categories {
		if counts[cat] > 0 {
			v.Categories = append(v.Categories, catCount{Name: s.Pages.TL(lang, "category."+cat), Count: counts[cat]})
		}
	}
	if v.Uses, err = s.useSentences(r.Context(), ws, c, p.ProfileID, lang); err != nil {
		return err
	}
	v.Receipts, err = s.portalReceipts(r.Context(), ws, p.Subjects())
	if err != nil {
		return err
	}
	// The customer reading their own data is a use too (T3): recorded, so the
	// log shows every time the data was shown, to anyone.
	shown := []string{trustloop.CategoryIdentity, trustloop.CategoryPreferences}
	for _, cat := range trustloop.Categories {
		if counts[cat] > 0 && !slices.Contains(shown, cat) {
			shown = append(shown, cat)
		}
	}
	if len(v.Traits) > 0 && !slices.Contains(shown, trustloop.CategoryContact) {
		shown = append(shown, trustloop.CategoryContact)
	}
	if err := s.recordUsesBy(r.Context(), ws, trustloop.AuditActor{Kind: trustloop.ActorSubject, ID: portalActor},
		trustloop.PurposeEssential, "GET /portal", []use{{profile: p.ProfileID, categories: shown}}); err != nil {
		return err
	}
	return s.render(w, "portal.html", page)
}

// honorGPC records a GPC opt-out of the purposes the signal covers that are
// not already refused or withdrawn.
func (s *Server) honorGPC(ctx context.Context, ws int64, c *consent.Compiled, subjects [][]byte) error {
	st, latest, err := s.Consent.StoredForRead(ctx, c, ws, subjects...)
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for i := range c.Len() {
		bit := consent.Set(1) << i
		if c.GPC()&bit != 0 && (st.Refused|st.Withdrawn)&bit == 0 {
			want[c.ID(i)] = false
		}
	}
	if len(want) == 0 {
		return nil
	}
	_, _, err = s.Consent.Record(ctx, ws, subjects, consent.Changes(want, latest),
		s.portalMeta(c, trustloop.MethodGPC, latest))
	return err
}

// portalMeta is how a choice made in the preference center is recorded: by
// the customer there, under the catalog version shown (the notice).
func (s *Server) portalMeta(c *consent.Compiled, method string, latest map[string]trustloop.ConsentRecord) consent.Meta {
	return consent.Meta{Method: method, Evidence: portalActor, Jurisdiction: consent.JurisdictionOf(latest),
		NoticeVersion: "catalog-" + strconv.FormatInt(c.Catalog.Version, 10)}
}

// describeEvent says what an event was, in the customer's words.
func (s *Server) describeEvent(e trustloop.TimelineEvent, lang string) string {
	var m struct {
		Event      string         `json:"event"`
		Name       string         `json:"name"`
		Properties map[string]any `json:"properties"`
	}
	json.Unmarshal(e.Message, &m)
	switch e.Type {
	case "track":
		if name, ok := m.Properties["name"].(string); ok && name != "" {
			return m.Event + ": " + name
		}
		return m.Event
	case "page", "screen":
		if m.Name != "" {
			return s.Pages.TL(lang, "event."+e.Type) + ": " + m.Name
		}
	}
	return s.Pages.TL(lang, "event."+e.Type)
}

// useSentences turns the recorded uses of a profile's data into sentences
// ("On 3 March 2026, Recommendations used your browsing history to suggest
// products."), newest first.
func (s *Server) useSentences(ctx context.Context, ws int64, c *consent.Compiled, profileID, lang string) ([]string, error) {
	if s.Audit == nil {
		return nil, nil
	}
	recs, err := s.Audit.RecordsOf(ctx, ws, profileID, 0, 100)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rec := range recs {
		e, err := trustloop.DecodeAuditEntry(rec.Data)
		if err != nil {
			return nil, err
		}
		if e.Kind != trustloop.AuditDataUse {
			continue
		}
		out = append(out, s.useSentence(&e, c, lang))
	}
	return out, nil
}

// useActions name what known routes and components do, for sentences.
var useActions = map[string]string{
	"GET /v1/profiles/{id}/recommendations": "recommendations",
	"GET /v1/profiles/{id}":                 "profile",
	"GET /v1/profiles/lookup":               "profile",
	"GET /v1/profiles/{id}/events":          "events",
	"GET /v1/profiles":                      "list",
	"GET /v1/audiences/{id}/members":        "audience",
	"GET /portal":                           "portal",
	"GET /admin/customers/{id}":             "console",
	"GET /v1/privacy-requests/{id}/export":  "export",
}

// useSentence says one recorded use in language lang; c is the catalog of
// the entry's workspace (the purpose's title).
func (s *Server) useSentence(e *trustloop.AuditEntry, c *consent.Compiled, lang string) string {
	t := func(key string, args ...any) string { return s.Pages.TL(lang, key, args...) }
	var cats []string
	for _, cat := range e.Categories {
		cats = append(cats, t("category."+cat))
	}
	what := strings.Join(cats, ", ")
	if i := strings.LastIndex(what, ", "); i >= 0 {
		what = what[:i] + t("common.and") + what[i+2:]
	}
	action, ok := useActions[e.Action]
	if !ok {
		action = "other"
	}
	who := t("use.who." + action)
	if action == "other" || action == "profile" || action == "events" || action == "list" {
		switch e.Actor.Kind {
		case trustloop.ActorOperator:
			who = t("use.who.operator")
		case trustloop.ActorComponent:
			who = t("use.who.component")
		}
	}
	return t("use.sentence", s.Pages.Date(lang, e.Time), who, what, t("use.why."+action, s.purposeTitle(c, e.Purpose, lang)))
}

// purposeTitle is a purpose's title in lang, as it reads inside a sentence.
func (s *Server) purposeTitle(c *consent.Compiled, id, lang string) string {
	if i, ok := c.Index(id); ok {
		title := c.Catalog.Purposes[i].In(lang).Title
		if s.Pages.TL(lang, "use.purpose.lowercase") == "yes" {
			title = strings.ToLower(title)
		}
		return title
	}
	return id
}

// portalReceipts lists the receipts of the customer's consent records.
func (s *Server) portalReceipts(ctx context.Context, ws int64, subjects [][]byte) ([]receiptRow, error) {
	seen := map[string]bool{}
	var out []receiptRow
	for _, sub := range subjects {
		recs, err := s.Consent.History(ctx, ws, sub)
		if err != nil {
			return nil, err
		}
		for _, rec := range recs {
			if rec.ReceiptID != "" && !seen[rec.ReceiptID] {
				seen[rec.ReceiptID] = true
				out = append(out, receiptRow{ID: rec.ReceiptID, At: rec.At})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].At.After(out[j].At) })
	return out, nil
}

// portalRequests lists the customer's privacy requests: those of the
// profile's subjects and those this session filed (an erasure's stays
// visible after the profile is gone).
func (s *Server) portalRequests(ctx context.Context, ps *portalSession) ([]privacy.RequestView, error) {
	if s.Privacy == nil {
		return nil, nil
	}
	var out []privacy.RequestView
	seen := map[string]bool{}
	if ps.profile != nil {
		reqs, err := s.Privacy.Store.SubjectPrivacyRequests(ctx, ps.claims.WS, ps.profile.Subjects())
		if err != nil {
			return nil, err
		}
		for _, q := range reqs {
			seen[q.ID] = true
			out = append(out, privacy.View(q))
		}
	}
	for _, id := range ps.claims.Requests {
		if seen[id] {
			continue
		}
		q, err := s.Privacy.Get(ctx, ps.claims.WS, id)
		if trustloop.ErrorCode(err) == trustloop.ENOTFOUND {
			continue // gone (a retention sweep): nothing to show
		} else if err != nil {
			return nil, err
		}
		out = append(out, privacy.View(q))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ReceivedAt.After(out[j].ReceivedAt) })
	return out, nil
}

// portalConsent saves a choice: one purpose's switch (purpose=…&allow=yes|no)
// or all at once (all=yes|no). Giving and withdrawing are the same one click.
func (s *Server) portalConsent(w http.ResponseWriter, r *http.Request, ps *portalSession) error {
	if err := parseForm(w, r); err != nil {
		return err
	}
	if ps.profile == nil {
		return trustloop.Errorf(trustloop.ENOTFOUND, "We hold no data about you any more.").WithHint("There is nothing left to choose.")
	}
	c := ps.catalog
	// A browser sending Global Privacy Control asks for no selling or
	// sharing: its purposes are not switched on from it (the next page view
	// would record the signal's opt-out again).
	gpc := r.Header.Get("Sec-GPC") == "1"
	want := map[string]bool{}
	yes, err := formBool(r, "allow")
	if all := r.PostForm.Get("all"); all != "" {
		if yes, err = formBool(r, "all"); err != nil {
			return err
		}
		for i := range c.Len() {
			if !c.Contract().Has(i) && !(yes && gpc && c.GPC().Has(i)) {
				want[c.ID(i)] = yes
			}
		}
	} else {
		if err != nil {
			return err
		}
		id := r.PostForm.Get("purpose")
		i, ok := c.Index(id)
		switch {
		case !ok:
			return trustloop.Errorf(trustloop.EINVALID, "Unknown purpose.").WithHint("Go back to your privacy settings and choose again.")
		case c.Contract().Has(i):
			return trustloop.Errorf(trustloop.EINVALID, "This purpose is needed to serve you and cannot be switched off.").
				WithHint("Go back to your privacy settings.")
		case yes && gpc && c.GPC().Has(i):
			return trustloop.Errorf(trustloop.EINVALID, "Your browser sends Global Privacy Control, which asks us not to do this.").
				WithHint("Turn Global Privacy Control off in your browser first if you want to switch this on.")
		}
		want[id] = yes
	}
	ws, subjects := ps.claims.WS, ps.profile.Subjects()
	st, latest, err := s.Consent.StoredForRead(r.Context(), c, ws, subjects...)
	if err != nil {
		return err
	}
	// Only real changes are recorded: "refuse all" twice is one choice, and a
	// withdrawal stays a withdrawal.
	for id, y := range want {
		i, _ := c.Index(id)
		bit := consent.Set(1) << i
		state := latest[id].State
		if (y && state == trustloop.ConsentGiven && st.Expired&bit == 0) ||
			(!y && (state == trustloop.ConsentRefused || state == trustloop.ConsentWithdrawn)) {
			delete(want, id)
		}
	}
	if len(want) > 0 {
		if _, _, err := s.Consent.Record(r.Context(), ws, subjects, consent.Changes(want, latest), s.portalMeta(c, trustloop.MethodPreferenceCenter, latest)); err != nil {
			return err
		}
	}
	return see(w, r, "/portal?saved=1#choices")
}

func formBool(r *http.Request, name string) (bool, error) {
	switch r.PostForm.Get(name) {
	case "yes":
		return true, nil
	case "no":
		return false, nil
	}
	return false, trustloop.Errorf(trustloop.EINVALID, "The choice was not understood.").WithHint("Go back to your privacy settings and choose again.")
}

// portalIdentifier is the identifier a request of the customer names: their
// user id, else email, else any (the request covers the whole profile).
func portalIdentifier(p *projection.Profile) (string, error) {
	for _, t := range []string{trustloop.IDUserID, trustloop.IDEmail} {
		for _, id := range p.Identities {
			if id.Type == t {
				return id.Type + ":" + id.Value, nil
			}
		}
	}
	if len(p.Identities) > 0 {
		return p.Identities[0].Type + ":" + p.Identities[0].Value, nil
	}
	return "", trustloop.Errorf(trustloop.ENOTFOUND, "We hold no identifier of yours to file this under.").
		WithHint("Contact the company directly; it can file the request for you.")
}

// fileRequest files a privacy request for the session's customer, verified by
// the portal session itself (the business signed the customer in), and
// remembers it in the session.
func (s *Server) fileRequest(w http.ResponseWriter, r *http.Request, ps *portalSession, typ string) (*trustloop.PrivacyRequest, error) {
	if s.Privacy == nil {
		return nil, trustloop.Errorf(trustloop.EUNAVAILABLE, "Requests cannot be made here right now.").
			WithHint("Contact the company directly; it can file the request for you.")
	}
	if ps.profile == nil {
		return nil, trustloop.Errorf(trustloop.ENOTFOUND, "We hold no data about you any more.").
			WithHint("There is nothing left to download or erase; your earlier requests' receipts stay valid.")
	}
	ident, err := portalIdentifier(ps.profile)
	if err != nil {
		return nil, err
	}
	actor := trustloop.AuditActor{Kind: trustloop.ActorSubject, ID: portalActor}
	req, _, err := s.Privacy.Create(r.Context(), ps.claims.WS, privacy.NewRequest{Type: typ, Identifier: ident, Actor: actor,
		VerifiedBy: "portal:" + ps.profile.ProfileID})
	if err != nil {
		return nil, err
	}
	c := *ps.claims
	if !slices.Contains(c.Requests, req.ID) {
		c.Requests = append(c.Requests, req.ID)
		if len(c.Requests) > 16 {
			c.Requests = c.Requests[len(c.Requests)-16:]
		}
	}
	if err := s.setPortalSession(w, r, &c); err != nil {
		return nil, err
	}
	return req, nil
}

// portalDownload files an access request and shows its status page, which
// offers the files when the package is ready (usually within a second).
func (s *Server) portalDownload(w http.ResponseWriter, r *http.Request, ps *portalSession) error {
	req, err := s.fileRequest(w, r, ps, trustloop.RequestAccess)
	if err != nil {
		return err
	}
	s.waitRequest(r.Context(), ps.claims.WS, req.ID, 3*time.Second)
	return see(w, r, "/portal/requests/"+req.ID)
}

// waitRequest waits briefly for a request to finish, so the common case shows
// the result on the next page rather than a "working on it" one.
func (s *Server) waitRequest(ctx context.Context, ws int64, id string, d time.Duration) {
	s.Privacy.Wake()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		q, err := s.Privacy.Get(ctx, ws, id)
		if err != nil || !q.Open() {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *Server) portalEraseConfirm(w http.ResponseWriter, r *http.Request, ps *portalSession) error {
	if ps.profile == nil {
		return see(w, r, "/portal")
	}
	return s.render(w, "portal_erase.html", &html.Page{Face: "portal", Title: "portal.erase.title", Lang: s.Pages.Negotiate(r.Header.Get("Accept-Language"))})
}

// portalErase files the erasure once the customer confirmed it, and shows its
// live status.
func (s *Server) portalErase(w http.ResponseWriter, r *http.Request, ps *portalSession) error {
	if err := parseForm(w, r); err != nil {
		return err
	}
	if r.PostForm.Get("confirm") != "yes" {
		return trustloop.Errorf(trustloop.EINVALID, "Please confirm that you want everything erased.").
			WithHint("Tick the box on the previous page, then press the button again.")
	}
	req, err := s.fileRequest(w, r, ps, trustloop.RequestErasure)
	if err != nil {
		return err
	}
	s.waitRequest(r.Context(), ps.claims.WS, req.ID, 2*time.Second)
	return see(w, r, "/portal/requests/"+req.ID)
}

// portalOwns finds a request the session may see: one it filed, or one of
// the profile's subjects. Another customer's id answers not found.
func (s *Server) portalOwns(ctx context.Context, ps *portalSession, id string) (*trustloop.PrivacyRequest, error) {
	if s.Privacy == nil || !trustloop.ValidRequestID(id) {
		return nil, trustloop.Errorf(trustloop.ENOTFOUND, "No such request.").
			WithHint("Go back to your preferences page; it lists your requests.")
	}
	q, err := s.Privacy.Get(ctx, ps.claims.WS, id)
	if err != nil {
		return nil, err
	}
	if slices.Contains(ps.claims.Requests, id) {
		return q, nil
	}
	if ps.profile != nil && q.Subject != nil {
		for _, sub := range ps.profile.Subjects() {
			if string(sub) == string(q.Subject) {
				return q, nil
			}
		}
	}
	return nil, trustloop.Errorf(trustloop.ENOTFOUND, "No such request.").WithHint("Open your privacy settings again from the shop's website.")
}

type requestPage struct {
	Request privacy.RequestView
	Done    bool
	// Receipt is the erasure's signed receipt, decoded for reading.
	Receipt string
}

func (s *Server) portalRequest(w http.ResponseWriter, r *http.Request, ps *portalSession) error {
	q, err := s.portalOwns(r.Context(), ps, r.PathValue("id"))
	if err != nil {
		return err
	}
	v := &requestPage{Request: privacy.View(q), Done: !q.Open()}
	if q.Receipt != "" {
		// Shown as verified: the same check a customer's copy passes.
		rc, err := s.Privacy.VerifyErasureReceipt(ps.claims.WS, q.Receipt)
		if err != nil {
			return err
		}
		out, _ := json.MarshalIndent(rc, "", "  ")
		v.Receipt = string(out)
	}
	page := &html.Page{Face: "portal", Title: "portal.request.title", Data: v, Lang: s.Pages.Negotiate(r.Header.Get("Accept-Language"))}
	if !v.Done {
		page.Refresh = 2 // live status without JavaScript
	}
	return s.render(w, "portal_request.html", page)
}

// portalExport streams a completed access request's package (json or html).
func (s *Server) portalExport(w http.ResponseWriter, r *http.Request, ps *portalSession) error {
	q, err := s.portalOwns(r.Context(), ps, r.PathValue("id"))
	if err != nil {
		return err
	}
	return s.streamExport(w, r, ps.claims.WS, q, r.URL.Query().Get("format"), trustloop.AuditActor{Kind: trustloop.ActorSubject, ID: portalActor})
}

// portalReceipt shows one of the customer's consent receipts.
func (s *Server) portalReceipt(w http.ResponseWriter, r *http.Request, ps *portalSession) error {
	if ps.profile == nil {
		return trustloop.Errorf(trustloop.ENOTFOUND, "No such receipt.").
			WithHint("Go back to your preferences page; it lists your receipts.")
	}
	rc, err := s.Consent.Receipt(r.Context(), ps.claims.WS, r.PathValue("id"))
	if err != nil {
		return err
	}
	owned := false
	for _, sub := range ps.profile.Subjects() {
		owned = owned || string(sub) == string(rc.Subject)
	}
	if !owned {
		return trustloop.Errorf(trustloop.ENOTFOUND, "No such receipt.").
			WithHint("Go back to your preferences page; it lists your receipts.")
	}
	body, err := consent.ReceiptPayload(string(rc.Body))
	if err != nil {
		return err
	}
	pub, err := s.Consent.PublicKey(ps.claims.WS)
	if err != nil {
		return err
	}
	pretty, _ := json.MarshalIndent(body, "", "  ")
	return s.render(w, "portal_receipt.html", &html.Page{Face: "portal", Title: "portal.receipt.title", Lang: s.Pages.Negotiate(r.Header.Get("Accept-Language")), Data: map[string]string{
		"ID": rc.ID, "JWS": string(rc.Body), "Body": string(pretty), "KeyID": consent.KeyID(pub),
		"PublicKey": base64.StdEncoding.EncodeToString(pub)}})
}
