package http_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/storetest"
)

// The authorization matrix (issue 4): every API path × every role × a key of the
// resource's own workspace or of another × a purpose the key holds or not. Only
// the cells the policy allows may succeed; every other cell must be refused
// (403 for a role or purpose, 404 for another workspace's resource, whose
// existence is not revealed) and change nothing it could see.

// policy says who may call a path.
type policy struct {
	roles []string // roles that may; nil: any role
	// purpose: the path reads personal data for ?purpose=.
	purpose bool
	// global: the path names no resource of a workspace (a list, a catalog): a
	// key of another workspace succeeds but must see none of this one's data.
	global bool
}

var anyRole []string

type cell struct {
	method, path string
	body         func(t *testing.T, m *matrix, key string) any
	// prepare makes what the call consumes (a key to revoke, an audience to
	// delete) and returns the path with its id.
	prepare func(t *testing.T, m *matrix) string
	policy  policy
}

// matrix is the world the cells run in: workspace A (the resources) and B.
type matrix struct {
	s       *testServer
	keys    map[string]map[string]string // workspace "A"/"B" → role → secret
	profile string
	aud     int64
	receipt string
	jws     string
	merge   string
	// request is a completed access request of A; erasureJWS the receipt of
	// a completed erasure of A.
	request    string
	erasureJWS string
}

func newKey(t *testing.T, s *testServer, ws int64, role string, purposes ...string) string {
	t.Helper()
	secret := fmt.Sprintf("tl_matrix_%d_%s_%s", ws, role, strings.Join(purposes, "_"))
	h := sha256.Sum256([]byte(secret))
	if err := s.Store.CreateAPIKey(context.Background(), &trustloop.APIKey{WorkspaceID: ws, Name: role, SecretHash: h[:],
		Roles: []string{role}, Purposes: purposes}); err != nil {
		t.Fatal(err)
	}
	return secret
}

func setupMatrix(t *testing.T) *matrix {
	s := newServer(t, options{regime: "opt_out"})
	ctx := context.Background()
	b := storetest.Bootstrap("other")
	b.Workspace.IndexKey = s.Keyring.NewIndexKey()
	if err := s.Store.CreateWorkspace(ctx, b); err != nil {
		t.Fatal(err)
	}
	m := &matrix{s: s, keys: map[string]map[string]string{"A": {}, "B": {}}}
	for _, role := range []string{trustloop.RoleAdmin, trustloop.RoleReader, trustloop.RolePrivacy} {
		// essential too: an access package is read for it (the purposes the
		// cells below try are analytics, held, and marketing, not held).
		m.keys["A"][role] = newKey(t, s, s.WS.ID, role, "analytics", "essential")
		m.keys["B"][role] = newKey(t, s, b.Workspace.ID, role, "analytics", "essential")
	}
	// A profile born of two merged ones (for merges and split), with consent and
	// a receipt, and an audience.
	mustOK(t, s.post(t, "/v1/track", obj{"anonymousId": "mx-anon", "event": "Product Viewed", "messageId": "mx1"}))
	mustOK(t, s.post(t, "/v1/identify", obj{"userId": "mx-user", "messageId": "mx2", "traits": obj{"email": "mx@example.com"}}))
	mustOK(t, s.post(t, "/v1/track", obj{"anonymousId": "mx-anon", "userId": "mx-user", "event": "Product Viewed", "messageId": "mx3"}))
	p := decode[profileJSON](t, s.api(t, "GET", "/v1/profiles/lookup?purpose=analytics&identifier=user_id:mx-user", nil), 200)
	m.profile = p.ProfileID
	merges := decode[struct {
		Data []struct {
			ID string `json:"merge_id"`
		} `json:"data"`
	}](t, s.api(t, "GET", "/v1/profiles/"+m.profile+"/merges", nil), 200)
	if len(merges.Data) == 0 {
		t.Fatal("setup: no merge")
	}
	m.merge = merges.Data[0].ID
	put := decode[map[string]any](t, s.api(t, "PUT", "/v1/profiles/"+m.profile+"/consent", obj{"purposes": obj{"personalization": true}}), 200)
	m.receipt = put["receipt_id"].(string)
	rc := decode[map[string]any](t, s.api(t, "GET", "/v1/consent-receipts/"+m.receipt, nil), 200)
	m.jws = rc["jws"].(string)
	a := decode[struct{ ID int64 }](t, s.api(t, "POST", "/v1/audiences", obj{"name": "Matrix", "rule": "true"}), 201)
	m.aud = a.ID
	// A completed access request, and an erased customer's receipt.
	mustOK(t, s.post(t, "/v1/identify", obj{"userId": "mx-gone", "messageId": "mx4", "traits": obj{"email": "gone@example.com"}}))
	acc := decode[map[string]any](t, s.api(t, "POST", "/v1/privacy-requests", obj{"type": "access", "identifier": "user_id:mx-user"}), 201)
	era := decode[map[string]any](t, s.api(t, "POST", "/v1/privacy-requests", obj{"type": "erasure", "identifier": "user_id:mx-gone"}), 201)
	for {
		did, err := s.Privacy.RunOnce(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !did {
			break
		}
	}
	m.request = acc["request_id"].(string)
	done := decode[map[string]any](t, s.api(t, "GET", "/v1/privacy-requests/"+era["request_id"].(string), nil), 200)
	if done["status"] != "completed" {
		t.Fatalf("setup: erasure %v", done)
	}
	m.erasureJWS = done["receipt"].(string)
	// B's own audit log is not empty either, so its proofs exist.
	if err := s.Audit.Append(ctx, trustloop.AuditEntry{WorkspaceID: b.Workspace.ID, Kind: trustloop.AuditKeyCreated,
		Actor: trustloop.AuditActor{Kind: trustloop.ActorOperator, ID: "operator:1"}}); err != nil {
		t.Fatal(err)
	}
	return m
}

func (m *matrix) cells() []cell {
	admin := policy{roles: []string{trustloop.RoleAdmin}}
	read := policy{roles: anyRole, purpose: true}
	consentWrite := policy{roles: []string{trustloop.RoleAdmin, trustloop.RolePrivacy}}
	id := m.profile
	return []cell{
		{method: "GET", path: "/v1/profiles/" + id, policy: read},
		{method: "GET", path: "/v1/profiles/lookup?identifier=user_id:mx-user", policy: read},
		{method: "GET", path: "/v1/profiles/" + id + "/events", policy: read},
		{method: "GET", path: "/v1/profiles", policy: policy{roles: anyRole, purpose: true, global: true}},
		{method: "GET", path: fmt.Sprintf("/v1/audiences/%d/members", m.aud), policy: read},
		{method: "GET", path: "/v1/profiles/" + id + "/merges", policy: admin},
		{method: "POST", path: "/v1/profiles/" + id + "/split", policy: admin,
			body: func(*testing.T, *matrix, string) any { return obj{"merge_id": m.merge} }},
		{method: "GET", path: "/v1/audiences", policy: policy{roles: anyRole, global: true}},
		{method: "POST", path: "/v1/audiences", policy: policy{roles: []string{trustloop.RoleAdmin}, global: true},
			body: func(*testing.T, *matrix, string) any { return obj{"name": "New " + randomName(), "rule": "true"} }},
		{method: "GET", path: fmt.Sprintf("/v1/audiences/%d", m.aud), policy: policy{roles: anyRole}},
		{method: "PUT", path: fmt.Sprintf("/v1/audiences/%d", m.aud), policy: admin,
			body: func(*testing.T, *matrix, string) any { return obj{"name": "Matrix", "rule": "true"} }},
		{method: "DELETE", policy: admin, prepare: func(t *testing.T, m *matrix) string {
			a := decode[struct{ ID int64 }](t, m.s.api(t, "POST", "/v1/audiences", obj{"name": "Doomed " + randomName(), "rule": "true"}), 201)
			return fmt.Sprintf("/v1/audiences/%d", a.ID)
		}},
		{method: "GET", path: "/v1/settings/profiles", policy: policy{roles: []string{trustloop.RoleAdmin}, global: true}},
		{method: "PUT", path: "/v1/settings/profiles", policy: policy{roles: []string{trustloop.RoleAdmin}, global: true},
			body: func(t *testing.T, m *matrix, key string) any {
				// The caller's own settings when it may read them, else A's.
				if r := m.s.api(t, "GET", "/v1/settings/profiles", nil, key); r.Status == 200 {
					return decode[map[string]any](t, r, 200)
				}
				return decode[map[string]any](t, m.s.api(t, "GET", "/v1/settings/profiles", nil), 200)
			}},
		{method: "GET", path: "/v1/profiles/" + id + "/consent", policy: policy{roles: anyRole}},
		{method: "PUT", path: "/v1/profiles/" + id + "/consent", policy: consentWrite,
			body: func(*testing.T, *matrix, string) any { return obj{"purposes": obj{"analytics": true}} }},
		{method: "GET", path: "/v1/profiles/" + id + "/consent/history", policy: policy{roles: anyRole}},
		{method: "GET", path: "/v1/profiles/" + id + "/data-uses", policy: policy{roles: anyRole}},
		{method: "GET", path: "/v1/audit/checkpoint", policy: policy{roles: anyRole, global: true}},
		{method: "GET", path: "/v1/audit/entries?start=0&end=1", policy: policy{roles: anyRole, global: true}},
		{method: "GET", path: "/v1/audit/proof/inclusion?index=0&size=1", policy: policy{roles: anyRole, global: true}},
		{method: "GET", path: "/v1/audit/proof/consistency?old=1&new=1", policy: policy{roles: anyRole, global: true}},
		{method: "GET", path: "/v1/consent-receipts/" + m.receipt, policy: policy{roles: anyRole}},
		// A receipt of workspace A does not verify under B's key: refused as
		// invalid (400) rather than not found; see verifyStatus.
		{method: "POST", path: "/v1/consent-receipts/verify", policy: policy{roles: anyRole},
			body: func(*testing.T, *matrix, string) any { return obj{"jws": m.jws} }},
		{method: "GET", path: "/v1/signing-key", policy: policy{roles: anyRole, global: true}},
		{method: "GET", path: "/v1/purposes", policy: policy{roles: anyRole, global: true}},
		{method: "PUT", path: "/v1/purposes", policy: policy{roles: []string{trustloop.RoleAdmin}, global: true},
			body: func(t *testing.T, m *matrix, key string) any {
				return decode[map[string]any](t, m.s.api(t, "GET", "/v1/purposes", nil, key), 200)
			}},
		{method: "GET", path: "/v1/api-keys", policy: policy{roles: []string{trustloop.RoleAdmin}, global: true}},
		{method: "POST", path: "/v1/api-keys", policy: policy{roles: []string{trustloop.RoleAdmin}, global: true},
			body: func(*testing.T, *matrix, string) any {
				return obj{"name": "made in the matrix", "roles": []string{"reader"}, "purposes": []string{"analytics"}}
			}},
		{method: "POST", path: "/v1/privacy-requests", policy: policy{roles: privacyRoles, global: true},
			body: func(*testing.T, *matrix, string) any {
				return obj{"type": "access", "identifier": "user_id:someone-" + randomName()}
			}},
		{method: "GET", path: "/v1/privacy-requests", policy: policy{roles: privacyRoles, global: true}},
		{method: "GET", path: "/v1/privacy-requests/" + m.request, policy: policy{roles: privacyRoles}},
		{method: "GET", path: "/v1/privacy-requests/" + m.request + "/export", policy: policy{roles: privacyRoles}},
		{method: "POST", policy: policy{roles: privacyRoles}, prepare: m.openRequest("/verify", false)},
		{method: "POST", policy: policy{roles: privacyRoles}, prepare: m.openRequest("/reject", true),
			body: func(*testing.T, *matrix, string) any { return obj{"reason": "identity not confirmed"} }},
		{method: "POST", policy: policy{roles: privacyRoles}, prepare: m.openRequest("/extend", true),
			body: func(*testing.T, *matrix, string) any { return obj{"reason": "many requests this month"} }},
		// Like consent receipts: a receipt of A does not verify under B's key
		// (400, see the switch below).
		{method: "POST", path: "/v1/erasure-receipts/verify", policy: policy{roles: anyRole},
			body: func(*testing.T, *matrix, string) any { return obj{"receipt": m.erasureJWS} }},
		{method: "DELETE", policy: admin, prepare: func(t *testing.T, m *matrix) string {
			k := decode[struct{ ID string }](t, m.s.api(t, "POST", "/v1/api-keys", obj{"name": "doomed", "roles": []string{"reader"}}), 201)
			return "/v1/api-keys/" + k.ID
		}},
	}
}

var privacyRoles = []string{trustloop.RoleAdmin, trustloop.RolePrivacy}

// openRequest makes an open request of A (received, or verified but not yet
// worked on) and returns its path with suffix.
func (m *matrix) openRequest(suffix string, verified bool) func(t *testing.T, m *matrix) string {
	return func(t *testing.T, m *matrix) string {
		r := decode[map[string]any](t, m.s.api(t, "POST", "/v1/privacy-requests",
			obj{"type": "access", "identifier": "user_id:pending-" + randomName(), "verified": verified}), 201)
		return "/v1/privacy-requests/" + r["request_id"].(string) + suffix
	}
}

var nameSeq int

func randomName() string {
	nameSeq++
	return fmt.Sprint(nameSeq)
}

func TestAuthorizationMatrix(t *testing.T) {
	m := setupMatrix(t)
	n := 0
	for _, c := range m.cells() {
		for _, ws := range []string{"A", "B"} {
			for _, role := range []string{trustloop.RoleAdmin, trustloop.RoleReader, trustloop.RolePrivacy} {
				purposes := []string{""}
				if c.policy.purpose {
					purposes = []string{"analytics", "marketing"} // held, not held
				}
				for _, purpose := range purposes {
					n++
					path := c.path
					if c.prepare != nil {
						path = c.prepare(t, m)
					}
					if purpose != "" {
						sep := "?"
						if strings.Contains(path, "?") {
							sep = "&"
						}
						path += sep + "purpose=" + purpose
					}
					var body any
					if c.body != nil {
						body = c.body(t, m, m.keys[ws][role])
					}
					r := m.s.api(t, c.method, path, body, m.keys[ws][role])
					name := fmt.Sprintf("%s %s as %s of %s", c.method, path, role, ws)

					roleOK := c.policy.roles == nil || slices.Contains(c.policy.roles, role)
					purposeOK := purpose == "" || purpose == "analytics"
					own := ws == "A" || c.policy.global
					allowed := roleOK && purposeOK && own
					switch {
					case allowed && (r.Status < 200 || r.Status > 299):
						t.Errorf("%s: %d, want success: %s", name, r.Status, r.Body)
					case !allowed && r.Status >= 200 && r.Status <= 299:
						t.Errorf("%s: %d, want refused: %s", name, r.Status, r.Body)
					case !allowed && !roleOK && r.Status != http.StatusForbidden:
						t.Errorf("%s: %d, want 403 (role): %s", name, r.Status, r.Body)
					case !allowed && roleOK && !purposeOK && r.Status != http.StatusForbidden:
						t.Errorf("%s: %d, want 403 (purpose): %s", name, r.Status, r.Body)
					case !allowed && roleOK && purposeOK && !own && r.Status != http.StatusNotFound && !((c.path == "/v1/consent-receipts/verify" || c.path == "/v1/erasure-receipts/verify") && r.Status == http.StatusBadRequest):
						t.Errorf("%s: %d, want 404 (another workspace): %s", name, r.Status, r.Body)
					}
					// A key of B that may list must see nothing of A.
					if ws == "B" && allowed && c.method == "GET" {
						if strings.Contains(string(r.Body), m.profile) || strings.Contains(string(r.Body), "mx@example.com") || strings.Contains(string(r.Body), "Matrix") {
							t.Errorf("%s: workspace B saw workspace A's data: %s", name, r.Body)
						}
					}
				}
			}
		}
	}
	// Unauthenticated and revoked keys are refused everywhere.
	for _, c := range m.cells() {
		if c.prepare != nil {
			continue
		}
		if r := m.s.api(t, c.method, c.path, nil, "tl_nobody"); r.Status != http.StatusUnauthorized && !(c.path == "/v1/purposes" && c.method == "GET") {
			t.Errorf("%s %s with an unknown key: %d", c.method, c.path, r.Status)
		}
	}
	t.Logf("%d cells", n)
	var keys struct{ Data []json.RawMessage }
	json.Unmarshal(m.s.api(t, "GET", "/v1/api-keys", nil).Body, &keys)
	if len(keys.Data) == 0 {
		t.Fatal("no keys listed")
	}
}

// Audience membership is drawn from behaviour: a purpose that may not use
// behaviour data cannot list members (the list itself would disclose it).
func TestAudienceMembersNeedBehaviour(t *testing.T) {
	m := setupMatrix(t)
	key := newKey(t, m.s, m.s.WS.ID, trustloop.RoleReader, "essential")
	for _, path := range []string{fmt.Sprintf("/v1/audiences/%d/members?purpose=essential", m.aud),
		fmt.Sprintf("/v1/profiles?audience=%d&purpose=essential", m.aud)} {
		if r := m.s.api(t, "GET", path, nil, key); r.Status != http.StatusForbidden {
			t.Errorf("GET %s: %d, want 403: %s", path, r.Status, r.Body)
		}
	}
	if r := m.s.api(t, "GET", "/v1/profiles?purpose=essential", nil, key); r.Status != http.StatusOK {
		t.Errorf("a list without an audience for essential: %d", r.Status)
	}
}

// A read that cannot be recorded as a data use is not answered (T3, T7): with
// the audit log down, a profile read fails with 503 and shows nothing.
func TestUnrecordedReadIsRefused(t *testing.T) {
	m := setupMatrix(t)
	if err := m.s.Audit.Close(); err != nil {
		t.Fatal(err)
	}
	r := m.s.api(t, "GET", "/v1/profiles/"+m.profile+"?purpose=analytics", nil)
	if r.Status != http.StatusServiceUnavailable || strings.Contains(string(r.Body), "mx@example.com") || strings.Contains(string(r.Body), m.profile) {
		t.Fatalf("a read with the audit log down: %d %s", r.Status, r.Body)
	}
	if r.Header.Get("Retry-After") == "" {
		t.Error("no Retry-After on the refused read")
	}
}

// Valid keys are remembered for a moment, but a key revoked through this
// server is refused at once, even right after it was used.
func TestRevokedKeyRefusedAtOnce(t *testing.T) {
	m := setupMatrix(t)
	key := newKey(t, m.s, m.s.WS.ID, trustloop.RoleReader, "analytics", "revoke-test")
	path := "/v1/profiles/" + m.profile + "?purpose=analytics"
	if r := m.s.api(t, "GET", path, nil, key); r.Status != http.StatusOK {
		t.Fatalf("the new key: %d %s", r.Status, r.Body)
	}
	var keys struct {
		Data []struct {
			ID       string
			Purposes []string
		}
	}
	json.Unmarshal(m.s.api(t, "GET", "/v1/api-keys", nil).Body, &keys)
	id := ""
	for _, k := range keys.Data {
		if slices.Contains(k.Purposes, "revoke-test") {
			id = k.ID
		}
	}
	if id == "" {
		t.Fatal("the new key is not listed")
	}
	if r := m.s.api(t, "DELETE", "/v1/api-keys/"+id, nil); r.Status != http.StatusNoContent {
		t.Fatalf("revoke: %d %s", r.Status, r.Body)
	}
	if r := m.s.api(t, "GET", path, nil, key); r.Status != http.StatusUnauthorized {
		t.Fatalf("a revoked key was accepted: %d", r.Status)
	}
}

// An access package holds every category of the subject's data: downloading
// it is a read for purpose essential (answering the subject's request), which
// the key must hold whatever its role, and it is recorded with that purpose.
func TestExportNeedsEssential(t *testing.T) {
	m := setupMatrix(t)
	path := "/v1/privacy-requests/" + m.request + "/export"
	uses := func() (n int) {
		r := m.s.api(t, "GET", "/v1/profiles/"+m.profile+"/data-uses", nil)
		var v struct{ Data []dataUse }
		if err := json.Unmarshal(r.Body, &v); err != nil || r.Status != 200 {
			t.Fatalf("data uses: %d %s", r.Status, r.Body)
		}
		for _, u := range v.Data {
			if u.Action == "GET /v1/privacy-requests/{id}/export" {
				if u.Purpose != "essential" {
					t.Errorf("an export recorded with purpose %q", u.Purpose)
				}
				n++
			}
		}
		return n
	}
	before := uses()
	analytics := newKey(t, m.s, m.s.WS.ID, trustloop.RolePrivacy, "analytics")
	r := m.s.api(t, "GET", path, nil, analytics)
	if e := r.apiError(t); r.Status != http.StatusForbidden || !strings.Contains(e.Error.Message, "essential") || e.Error.Hint == "" ||
		strings.Contains(string(r.Body), "mx@example.com") {
		t.Fatalf("an export with a key for analytics only: %d %s", r.Status, r.Body)
	}
	if n := uses(); n != before {
		t.Fatalf("a refused export was recorded: %d uses, %d before", n, before)
	}
	essential := newKey(t, m.s, m.s.WS.ID, trustloop.RolePrivacy, "essential")
	if r := m.s.api(t, "GET", path, nil, essential); r.Status != http.StatusOK || !strings.Contains(string(r.Body), "mx@example.com") {
		t.Fatalf("an export with a key for essential: %d %.300s", r.Status, r.Body)
	}
	if n := uses(); n != before+1 {
		t.Fatalf("the export was recorded %d times", n-before)
	}
}
