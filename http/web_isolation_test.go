package http_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/storetest"
)

// T9 for the web faces: a console session of workspace B, and a portal link
// made by B, reach nothing of workspace A (every id of A answers 404 and
// changes nothing), and a token moved to another workspace does not verify.
func TestWebFacesIsolation(t *testing.T) {
	s := newServer(t, options{regime: "opt_in"})
	ctx := context.Background()
	ann := s.shopper(t, "u1", "ann@example.com")
	req := s.privacyRequest(t, obj{"type": "access", "identifier": "email:ann@example.com", "verified": false})
	aKey := keyID(t, s)

	b := storetest.Bootstrap("other")
	b.Workspace.IndexKey = s.Keyring.NewIndexKey()
	if err := s.Store.CreateWorkspace(ctx, b); err != nil {
		t.Fatal(err)
	}
	bAdmin := newKey(t, s, b.Workspace.ID, trustloop.RoleAdmin, "essential", "analytics", "personalization", "marketing")
	console := s.signedIn(t, bAdmin)

	for _, path := range []string{"/admin/customers/" + ann + "?purpose=essential", "/admin/requests/" + req,
		"/admin/requests/" + req + "/export?format=json", "/admin/keys/" + aKey + "/revoke"} {
		if p := console.get(path); p.Status != http.StatusNotFound || strings.Contains(p.Body, "ann@example.com") {
			t.Errorf("GET %s from workspace B: %d", path, p.Status)
		}
	}
	if p := console.post("/admin/customers", url.Values{"identifier": {"ann@example.com"}, "purpose": {"essential"}}); p.Status != http.StatusNotFound {
		t.Errorf("finding A's customer from B: %d", p.Status)
	}
	for _, c := range []struct {
		path string
		form url.Values
	}{
		{"/admin/requests/" + req + "/verify", url.Values{}},
		{"/admin/requests/" + req + "/reject", url.Values{"reason": {"x"}}},
		{"/admin/keys/" + aKey + "/revoke", url.Values{"confirm": {"yes"}}},
		{"/admin/customers/" + ann + "/requests", url.Values{"type": {"erasure"}, "confirm": {"yes"}, "purpose": {"essential"}}},
	} {
		if p := console.post(c.path, c.form); p.Status != http.StatusNotFound {
			t.Errorf("POST %s from workspace B: %d", c.path, p.Status)
		}
	}
	if st := s.requestState(t, req); st.Status != "received" {
		t.Errorf("A's request changed: %+v", st)
	}
	if r := s.api(t, "GET", "/v1/profiles/"+ann+"?purpose=essential", nil); r.Status != 200 {
		t.Errorf("A's customer is gone: %d", r.Status)
	}
	if r := s.api(t, "GET", "/v1/purposes", nil); r.Status != 200 {
		t.Errorf("A's admin key stopped working: %d", r.Status)
	}
	// B's key makes no link to A's customer.
	if r := s.api(t, "POST", "/v1/portal/sessions", obj{"identifier": "email:ann@example.com"}, bAdmin); r.Status != http.StatusNotFound {
		t.Errorf("a portal link for A's customer from B's key: %d", r.Status)
	}
	// A's link, its claims moved to workspace B (signature kept): refused.
	link := s.portalLink(t, "email:ann@example.com")
	tok := strings.TrimPrefix(link, "/portal/s/")
	payload, sig, _ := strings.Cut(tok, ".")
	raw, _ := base64.RawURLEncoding.DecodeString(payload)
	var c map[string]any
	json.Unmarshal(raw, &c)
	c["w"] = b.Workspace.ID
	moved, _ := json.Marshal(c)
	forged := "/portal/s/" + base64.RawURLEncoding.EncodeToString(moved) + "." + sig
	if p := s.browser(t).get(forged); p.Status != http.StatusUnauthorized {
		t.Errorf("a link moved to another workspace: %d", p.Status)
	}
}
