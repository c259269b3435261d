package http

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/consent"
	"github.com/trustloop/trustloop/profile"
	"github.com/trustloop/trustloop/projection"
)

// The consent API (API.md): the purpose catalog, a profile's consent, its
// history and signed receipts. Reads of personal data go through readAccess,
// which applies the decision of the consent package to what a purpose may see.

var consentPaths = []string{"/v1/purposes", "/v1/profiles/{id}/consent", "/v1/profiles/{id}/consent/history",
	"/v1/consent-receipts/{id}", "/v1/consent-receipts/verify", "/v1/signing-key"}

func (s *Server) consentRoutes(mux *http.ServeMux) {
	if s.Consent == nil {
		return
	}
	mux.Handle("GET /v1/purposes", s.route("/v1/purposes", s.getPurposes))
	mux.Handle("PUT /v1/purposes", s.route("/v1/purposes", s.authed(s.putPurposes)))
	mux.Handle("GET /v1/signing-key", s.route("/v1/signing-key", s.authed(s.signingKey)))
	mux.Handle("GET /v1/consent-receipts/{id}", s.route("/v1/consent-receipts/{id}", s.authed(s.getReceipt)))
	mux.Handle("POST /v1/consent-receipts/verify", s.route("/v1/consent-receipts/verify", s.authed(s.verifyReceipt)))
	if s.Profiles == nil {
		return
	}
	mux.Handle("GET /v1/profiles/{id}/consent", s.route("/v1/profiles/{id}/consent", s.authed(s.getConsent)))
	mux.Handle("PUT /v1/profiles/{id}/consent", s.route("/v1/profiles/{id}/consent", s.authed(s.putConsent)))
	mux.Handle("GET /v1/profiles/{id}/data-uses", s.route("/v1/profiles/{id}/data-uses", s.authed(s.dataUses)))
	mux.Handle("GET /v1/profiles/{id}/consent/history", s.route("/v1/profiles/{id}/consent/history", s.authed(s.consentHistory)))
}

// getPurposes serves the catalog. It needs no key (the preference center and a
// site's banner show it): with a key it is the key's workspace, else the one
// named by ?workspace=, else the only workspace there is.
func (s *Server) getPurposes(w http.ResponseWriter, r *http.Request) error {
	var ws int64
	if r.Header.Get("Authorization") != "" {
		k, err := s.apiKey(r)
		if err != nil {
			return err
		}
		ws = k.WorkspaceID
	} else if v := r.URL.Query().Get("workspace"); v != "" {
		id, err := strconv.ParseInt(v, 10, 64)
		if err != nil || id <= 0 {
			return trustloop.Errorf(trustloop.EINVALID, "workspace must be a workspace id (a positive number).").
				WithHint("Leave it out to use the workspace of the write key, or pass the id of a workspace.")
		}
		if _, err := s.Store.FindWorkspace(r.Context(), id); err != nil {
			return err
		}
		ws = id
	} else {
		all, err := s.Store.ListWorkspaces(r.Context())
		if err != nil {
			return err
		}
		if len(all) != 1 {
			return trustloop.Errorf(trustloop.EINVALID, "This server holds several workspaces: say which.").
				WithHint("Add ?workspace=<id>, or send an API key of the workspace.")
		}
		ws = all[0].ID
	}
	k, err := s.Consent.Catalog(r.Context(), ws)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, k.Catalog)
	return nil
}

// putPurposes replaces the catalog: the whole document with the version read.
func (s *Server) putPurposes(w http.ResponseWriter, r *http.Request, k *trustloop.APIKey) error {
	if err := requireAdmin(k); err != nil {
		return err
	}
	body, err := readAPIBody(r)
	if err != nil {
		return err
	}
	out, err := s.saveCatalog(r, k.WorkspaceID, actorOf(k), body)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// saveCatalog stores an edited catalog document (JSON, with the version it
// was read at) and records who changed it. The API and the console's editor
// both save here, so the same document is refused or stored the same way:
// EINVALID for a bad document, ECONFLICT if someone saved meanwhile, and
// nothing changed in either case.
func (s *Server) saveCatalog(r *http.Request, ws int64, by trustloop.AuditActor, body []byte) (*consent.Catalog, error) {
	c, err := consent.DecodeCatalog(body)
	if err != nil {
		return nil, err
	}
	out, err := s.Consent.PutCatalog(r.Context(), ws, c, c.Version)
	if err != nil {
		return nil, err
	}
	s.recordAdminBy(r, ws, by, "catalog_changed", "version "+strconv.FormatInt(out.Version, 10))
	return out, nil
}

func (s *Server) signingKey(w http.ResponseWriter, r *http.Request, k *trustloop.APIKey) error {
	pub, err := s.Consent.PublicKey(k.WorkspaceID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"algorithm": "Ed25519", "key_id": consent.KeyID(pub),
		"public_key": base64.StdEncoding.EncodeToString(pub)})
	return nil
}

// access is what one read for one purpose may see of one profile.
type access struct {
	purpose  string
	index    int
	k        *consent.Compiled
	allowed  bool         // the purpose is allowed for the subject now
	reason   string       // why not
	visible  consent.Cats // the categories the purpose may use
	used     consent.Cats // what the filtered profile still shows (recorded as used)
	stored   consent.Stored
	latest   map[string]trustloop.ConsentRecord
	withheld []withheld
}

type withheld struct {
	Category string `json:"category"`
	Reason   string `json:"reason"`
}

// readPurpose reads and checks ?purpose= against the catalog (the default
// purposes when consent is not enforced) and the key.
func (s *Server) readPurpose(r *http.Request, k *trustloop.APIKey) (string, *consent.Compiled, error) {
	p := r.URL.Query().Get("purpose")
	c, err := s.checkReadPurpose(r.Context(), p, k)
	return p, c, err
}

// checkReadPurpose checks a read's purpose p against the catalog (the
// default purposes when consent is not enforced) and the key, and returns the
// catalog.
func (s *Server) checkReadPurpose(ctx context.Context, p string, k *trustloop.APIKey) (*consent.Compiled, error) {
	if s.Consent == nil {
		return nil, checkPurpose(p, trustloop.DefaultPurposes, k)
	}
	c, err := s.Consent.Catalog(ctx, k.WorkspaceID)
	if err != nil {
		return nil, err
	}
	if err := checkPurpose(p, c.Names(c.All()), k); err != nil {
		return nil, err
	}
	return c, nil
}

// decideRead decides what a read for purpose p may see of a profile whose
// consent is stored under subjects (T3): nothing if p is not allowed for the
// subject now, else only the categories p may use.
func (s *Server) decideRead(ctx context.Context, ws int64, p string, c *consent.Compiled, subjects [][]byte) (*access, error) {
	a := &access{purpose: p, k: c}
	if c == nil {
		a.allowed, a.visible = true, consent.Cats(1<<len(trustloop.Categories)-1)
		return a, nil
	}
	a.index, _ = c.Index(p)
	st, latest, err := s.Consent.StoredForRead(ctx, c, ws, subjects...)
	if err != nil {
		return nil, err
	}
	a.stored, a.latest = st, latest
	sig := consent.Signals{Regime: c.Regime(consent.JurisdictionOf(latest))}
	a.allowed = c.Decide(st, sig).Has(a.index)
	if !a.allowed {
		a.reason = c.Explain(a.index, st, sig)
		for _, cat := range trustloop.Categories {
			a.withheld = append(a.withheld, withheld{cat, "purpose " + p + " is not allowed for this customer: " + a.reason})
		}
		return a, nil
	}
	a.visible = c.Categories(a.index)
	for _, cat := range trustloop.Categories {
		if a.visible&consent.CategoryBit(cat) == 0 {
			a.withheld = append(a.withheld, withheld{cat, "purpose " + p + " may not use " + cat + " data"})
		}
	}
	return a, nil
}

func (a *access) sees(cat string) bool { return a.visible&consent.CategoryBit(cat) != 0 }

// keepEvent keeps a timeline event only if the purpose was allowed when it was
// collected (events collected before consent was enforced name no purposes and
// are withheld: fail closed) and the purpose may use its data category.
func (a *access) keepEvent(purposes []string, typ string, message json.RawMessage) bool {
	return a.allowed && slices.Contains(purposes, a.purpose) && a.sees(eventCategory(typ, message))
}

// contactTypes are identifier types that are contact data, not mere identity.
var contactTypes = map[string]bool{trustloop.IDEmail: true, trustloop.IDPhone: true}

// transactionKeys are the computed traits about money.
var transactionKeys = map[string]bool{profile.ComputedOrderCount: true, profile.ComputedLifetimeValue: true}

// profileView is a profile as one purpose may see it.
type profileView struct {
	*projection.Profile
	Consent            *consentView `json:"consent"`
	CategoriesWithheld []withheld   `json:"categories_withheld"`
	// used are the categories of personal data the view shows (recorded as a
	// data use); empty when everything was withheld.
	used []string
}

// filter removes from p what a may not see: categories the purpose may not
// use, and computed traits of events not collected for it.
func (a *access) filter(p *projection.Profile) {
	ids := p.Identities[:0]
	for _, id := range p.Identities {
		cat := trustloop.CategoryIdentity
		if contactTypes[id.Type] {
			cat = trustloop.CategoryContact
		}
		if a.sees(cat) {
			ids = append(ids, id)
		}
	}
	p.Identities = ids
	if !a.sees(trustloop.CategoryContact) {
		p.Traits = map[string]any{}
	}
	// Computed traits over exactly the events collected for the purpose: not
	// the profile's totals, which count events of other purposes too.
	comp := map[string]any{}
	computed := p.Computed
	if a.k != nil {
		computed = p.ComputedFor(a.purpose)
	}
	for key, v := range computed {
		cat := trustloop.CategoryBehavior
		if transactionKeys[key] {
			cat = trustloop.CategoryTransactions
		}
		if a.sees(cat) {
			comp[key] = v
		}
	}
	p.Computed = comp
	// Audiences are conclusions drawn from behaviour, and only those whose
	// rules hold over what this purpose sees are shown: a membership drawn
	// from an order collected for analytics alone, or from a contact trait,
	// must not show in a read for a purpose that may not see them.
	if !a.sees(trustloop.CategoryBehavior) {
		p.Audiences = []projection.AudienceRef{}
	} else {
		p.Audiences = p.AudiencesOver(p.Traits, p.Computed)
	}
	a.used = a.shown(p)
}

// shown is what a filtered profile still shows, by category: what its read
// records as used (an empty profile shows, and uses, nothing).
func (a *access) shown(p *projection.Profile) consent.Cats {
	var c consent.Cats
	for _, id := range p.Identities {
		if contactTypes[id.Type] {
			c |= consent.CategoryBit(trustloop.CategoryContact)
		} else {
			c |= consent.CategoryBit(trustloop.CategoryIdentity)
		}
	}
	if len(p.Traits) > 0 {
		c |= consent.CategoryBit(trustloop.CategoryContact)
	}
	for key := range p.Computed {
		if transactionKeys[key] {
			c |= consent.CategoryBit(trustloop.CategoryTransactions)
		} else {
			c |= consent.CategoryBit(trustloop.CategoryBehavior)
		}
	}
	if len(p.Audiences) > 0 {
		c |= consent.CategoryBit(trustloop.CategoryBehavior)
	}
	return c
}

// consentView is a profile's consent as the API shows it.
type consentView struct {
	Regime   string                        `json:"regime"`
	Purposes map[string]purposeConsentView `json:"purposes"`
}

type purposeConsentView struct {
	State         string     `json:"state"`
	Allowed       bool       `json:"allowed"`
	Reason        string     `json:"reason,omitempty"`
	Method        string     `json:"method,omitempty"`
	At            *time.Time `json:"at,omitempty"`
	ExpiresAt     *time.Time `json:"expires_at,omitempty"`
	NoticeVersion string     `json:"notice_version,omitempty"`
	ReceiptID     string     `json:"receipt_id,omitempty"`
}

// stateNotSet is the state of a purpose never chosen (the regime decides).
const stateNotSet = "not_set"

func (a *access) consentView() *consentView {
	c := a.k
	sig := consent.Signals{Regime: c.Regime(consent.JurisdictionOf(a.latest))}
	allowed := c.Decide(a.stored, sig)
	v := &consentView{Regime: consent.RegimeName(sig.Regime), Purposes: map[string]purposeConsentView{}}
	for i := range c.Len() {
		id := c.ID(i)
		pv := purposeConsentView{State: stateNotSet, Allowed: allowed.Has(i), Reason: c.Explain(i, a.stored, sig)}
		if c.Contract().Has(i) {
			pv.State = "contract"
		}
		if r, ok := a.latest[id]; ok {
			pv.State, pv.Method, pv.NoticeVersion, pv.ReceiptID = r.State, r.Method, r.NoticeVersion, r.ReceiptID
			at := r.At
			pv.At = &at
			if !r.ExpiresAt.IsZero() {
				exp := r.ExpiresAt
				pv.ExpiresAt = &exp
			}
			if a.stored.Expired.Has(i) {
				pv.State = trustloop.ConsentExpired
			}
		}
		v.Purposes[id] = pv
	}
	return v
}

// profileFor opens a profile and decides what the purpose may see of it.
func (s *Server) profileFor(ctx context.Context, k *trustloop.APIKey, p string, c *consent.Compiled, prof *projection.Profile) (*profileView, error) {
	a, err := s.decideRead(ctx, k.WorkspaceID, p, c, prof.Subjects())
	if err != nil {
		return nil, err
	}
	return viewOf(a, c, prof), nil
}

// viewOf is a profile as a decided read may see it (it filters prof).
func viewOf(a *access, c *consent.Compiled, prof *projection.Profile) *profileView {
	if !a.allowed {
		// Nothing personal: the id alone, to say whose data was withheld.
		prof.Identities, prof.Traits, prof.Computed, prof.Audiences = []trustloop.Identifier{}, map[string]any{}, map[string]any{}, []projection.AudienceRef{}
	} else {
		a.filter(prof)
	}
	v := &profileView{Profile: prof, CategoriesWithheld: a.withheld}
	if a.allowed {
		v.used = a.used.Names()
	}
	if v.CategoriesWithheld == nil {
		v.CategoriesWithheld = []withheld{}
	}
	if c != nil {
		v.Consent = a.consentView()
	}
	return v
}

// audienceReadable refuses listing an audience's members for a purpose that may
// not use behaviour data: membership is a conclusion drawn from behaviour, and
// the list itself discloses it.
func audienceReadable(p string, c *consent.Compiled) error {
	if c == nil {
		return nil
	}
	i, _ := c.Index(p)
	if c.Categories(i)&consent.CategoryBit(trustloop.CategoryBehavior) == 0 {
		return trustloop.Errorf(trustloop.EFORBIDDEN, "Purpose %q may not use behaviour data, which audience membership is drawn from.", p).
			WithHint("List an audience's members for a purpose that may use behaviour (e.g. marketing or personalization).")
	}
	return nil
}

// profilesFor filters a page of profiles for a purpose: profiles whose customer
// does not allow it are left out (a page may be short; the cursor goes on), and
// the rest show only what the purpose may use. A page of audience aud's members
// (0: none) also leaves out profiles whose membership does not hold over what
// the purpose sees (see Profile.AudiencesOver).
func (s *Server) profilesFor(ctx context.Context, k *trustloop.APIKey, p string, c *consent.Compiled, ps []*projection.Profile, aud int64) ([]*profileView, error) {
	out := make([]*profileView, 0, len(ps))
	for _, prof := range ps {
		v, err := s.profileFor(ctx, k, p, c, prof)
		if err != nil {
			return nil, err
		}
		if c != nil && !v.Consent.Purposes[p].Allowed {
			continue
		}
		if aud != 0 && !slices.ContainsFunc(v.Audiences, func(a projection.AudienceRef) bool { return a.ID == aud }) {
			continue // a member only through data this purpose may not see
		}
		out = append(out, v)
	}
	return out, nil
}

func (s *Server) getConsent(w http.ResponseWriter, r *http.Request, k *trustloop.APIKey) error {
	prof, c, err := s.consentProfile(r, k)
	if err != nil {
		return err
	}
	a, err := s.decideRead(r.Context(), k.WorkspaceID, trustloop.PurposeEssential, c, prof.Subjects())
	if err != nil {
		return err
	}
	v := a.consentView()
	writeJSON(w, http.StatusOK, map[string]any{"profile_id": prof.ProfileID, "regime": v.Regime, "purposes": v.Purposes})
	return nil
}

func (s *Server) consentProfile(r *http.Request, k *trustloop.APIKey) (*projection.Profile, *consent.Compiled, error) {
	id, err := projection.ParseID(r.PathValue("id"))
	if err != nil {
		return nil, nil, err
	}
	prof, err := s.Profiles.Profile(r.Context(), k.WorkspaceID, id)
	if err != nil {
		return nil, nil, err
	}
	if len(prof.Subjects()) == 0 {
		return nil, nil, trustloop.Errorf(trustloop.ENOTFOUND, "Profile not found.").
			WithHint("Look the profile up by an identifier (GET /v1/profiles/lookup); an erased profile is gone.")
	}
	c, err := s.Consent.Catalog(r.Context(), k.WorkspaceID)
	if err != nil {
		return nil, nil, err
	}
	return prof, c, nil
}

// putConsent records a customer's choices for a profile (all its subjects), with
// a signed receipt. Admin and privacy keys may record; reader keys may not.
func (s *Server) putConsent(w http.ResponseWriter, r *http.Request, k *trustloop.APIKey) error {
	if !slices.Contains(k.Roles, trustloop.RoleAdmin) && !slices.Contains(k.Roles, trustloop.RolePrivacy) {
		return trustloop.Errorf(trustloop.EFORBIDDEN, "Recording consent needs an admin or privacy API key.").
			WithHint("Use a key with the admin or privacy role (POST /v1/api-keys creates one).")
	}
	var body struct {
		Purposes      map[string]*bool `json:"purposes"`
		Method        string           `json:"method"`
		NoticeVersion string           `json:"notice_version"`
		Jurisdiction  string           `json:"jurisdiction"`
	}
	if err := readJSON(r, &body); err != nil {
		return err
	}
	if len(body.Purposes) == 0 {
		return trustloop.Errorf(trustloop.EINVALID, "purposes is required: the choices, e.g. {\"marketing\": false}.").
			WithHint("Name each purpose whose choice changes, true to give consent and false to withdraw it; GET /v1/purposes lists the purposes.")
	}
	choices := make(map[string]bool, len(body.Purposes))
	for p, v := range body.Purposes {
		if v == nil {
			// null is no choice: recording it as a refusal would put words
			// in the customer's mouth.
			return trustloop.Errorf(trustloop.EINVALID, "Each purpose's choice must be true or false, not null.").
				WithHint("Leave out the purposes whose choice does not change.")
		}
		choices[p] = *v
	}
	switch body.Method {
	case "":
		body.Method = trustloop.MethodAPI
	case trustloop.MethodAPI, trustloop.MethodBanner, trustloop.MethodPreferenceCenter, trustloop.MethodImport, trustloop.MethodGPC:
	default:
		// tcf choices come with their TC string (the collector's
		// context.consent.tcString); privacy_request and expiry are
		// Trustloop's own.
		return trustloop.Errorf(trustloop.EINVALID, "method must be api, banner, preference_center, import or gpc.").
			WithHint("TCF choices are recorded from the TC string events carry (context.consent.tcString); leave method out for api.")
	}
	prof, c, err := s.consentProfile(r, k)
	if err != nil {
		return err
	}
	for p := range choices {
		if _, ok := c.Index(p); !ok {
			return trustloop.Errorf(trustloop.EINVALID, "Unknown purpose %q.", p).WithHint("GET /v1/purposes lists the catalog.")
		}
	}
	_, latest, err := s.Consent.StoredForRead(r.Context(), c, k.WorkspaceID, prof.Subjects()...)
	if err != nil {
		return err
	}
	jws, _, err := s.Consent.Record(r.Context(), k.WorkspaceID, prof.Subjects(), consent.Changes(choices, latest),
		consent.Meta{Method: body.Method, NoticeVersion: body.NoticeVersion, Jurisdiction: body.Jurisdiction,
			Evidence: "api_key:" + strconv.FormatInt(k.ID, 10)})
	if err != nil {
		return err
	}
	rb, err := consent.ReceiptPayload(jws)
	if err != nil {
		return err
	}
	a, err := s.decideRead(r.Context(), k.WorkspaceID, trustloop.PurposeEssential, c, prof.Subjects())
	if err != nil {
		return err
	}
	v := a.consentView()
	writeJSON(w, http.StatusOK, map[string]any{"profile_id": prof.ProfileID, "regime": v.Regime, "purposes": v.Purposes,
		"receipt_id": rb.ReceiptID})
	return nil
}

type historyEntry struct {
	Purpose       string     `json:"purpose"`
	State         string     `json:"state"`
	At            time.Time  `json:"at"`
	ExpiresAt     *time.Time `json:"expires_at,omitempty"`
	Method        string     `json:"method"`
	NoticeVersion string     `json:"notice_version,omitempty"`
	Jurisdiction  string     `json:"jurisdiction,omitempty"`
	SourceID      int64      `json:"source_id,omitempty"`
	ReceiptID     string     `json:"receipt_id,omitempty"`
	Subject       string     `json:"subject"`
	Seq           int64      `json:"seq"`
	Hash          string     `json:"hash"`
	PrevHash      string     `json:"prev_hash"`
}

func (s *Server) consentHistory(w http.ResponseWriter, r *http.Request, k *trustloop.APIKey) error {
	prof, _, err := s.consentProfile(r, k)
	if err != nil {
		return err
	}
	out := []historyEntry{}
	for _, sub := range prof.Subjects() {
		recs, err := s.Consent.History(r.Context(), k.WorkspaceID, sub)
		if err != nil {
			return err
		}
		for _, rec := range recs {
			h := historyEntry{Purpose: rec.Purpose, State: rec.State, At: rec.At, Method: rec.Method, NoticeVersion: rec.NoticeVersion,
				Jurisdiction: rec.Jurisdiction, SourceID: rec.SourceID, ReceiptID: rec.ReceiptID, Subject: hex.EncodeToString(rec.Subject),
				Seq: rec.Seq, Hash: hex.EncodeToString(rec.Hash), PrevHash: hex.EncodeToString(rec.PrevHash)}
			if !rec.ExpiresAt.IsZero() {
				e := rec.ExpiresAt
				h.ExpiresAt = &e
			}
			out = append(out, h)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	writeJSON(w, http.StatusOK, map[string]any{"profile_id": prof.ProfileID, "data": out})
	return nil
}

func (s *Server) getReceipt(w http.ResponseWriter, r *http.Request, k *trustloop.APIKey) error {
	rc, err := s.Consent.Receipt(r.Context(), k.WorkspaceID, r.PathValue("id"))
	if err != nil {
		return err
	}
	body, err := consent.ReceiptPayload(string(rc.Body))
	if err != nil {
		return err
	}
	pub, err := s.Consent.PublicKey(k.WorkspaceID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"receipt_id": rc.ID, "jws": string(rc.Body), "receipt": body,
		"algorithm": "Ed25519", "key_id": consent.KeyID(pub), "public_key": base64.StdEncoding.EncodeToString(pub)})
	return nil
}

// verifyReceipt checks a receipt a customer presents: 200 when genuine and
// current, 400 naming what is wrong otherwise.
func (s *Server) verifyReceipt(w http.ResponseWriter, r *http.Request, k *trustloop.APIKey) error {
	var body struct {
		JWS string `json:"jws"`
	}
	if err := readJSON(r, &body); err != nil {
		return err
	}
	pub, err := s.Consent.PublicKey(k.WorkspaceID)
	if err != nil {
		return err
	}
	rb, err := consent.VerifyReceipt(pub, body.JWS, s.now())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"valid": true, "receipt": rb})
	return nil
}
