package http_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
)

// Privacy requests through HTTP: bad input gets a clear error and changes
// nothing; the export is JSON or HTML and only once completed.
func TestPrivacyRequestsHTTP(t *testing.T) {
	s := newServer(t, options{regime: "opt_out"})
	mustOK(t, s.post(t, "/v1/identify", obj{"userId": "pr-user", "messageId": "pr1",
		"traits": obj{"email": "pr@example.com", "name": "Pat <b>Rivers</b> & Co"}}))
	list := func() int {
		r := decode[struct{ Data []map[string]any }](t, s.api(t, "GET", "/v1/privacy-requests", nil), 200)
		return len(r.Data)
	}
	for name, c := range map[string]struct {
		body   any
		status int
		code   string
	}{
		"no body":            {nil, 400, "invalid"},
		"unknown field":      {obj{"type": "access", "identifier": "user_id:pr-user", "who": "me"}, 400, "invalid"},
		"unknown type":       {obj{"type": "forget-me", "identifier": "user_id:pr-user"}, 400, "invalid"},
		"no identifier":      {obj{"type": "access"}, 400, "invalid"},
		"malformed email":    {obj{"type": "access", "identifier": "email:not-an-email"}, 400, "invalid"},
		"unknown id type":    {obj{"type": "access", "identifier": "passport:123"}, 400, "invalid"},
		"suppress on access": {obj{"type": "access", "identifier": "user_id:pr-user", "suppress": true}, 400, "invalid"},
		"traits on erasure":  {obj{"type": "erasure", "identifier": "user_id:pr-user", "traits": obj{"name": "x"}}, 400, "invalid"},
		"empty rectification": {obj{"type": "rectification", "identifier": "user_id:pr-user", "traits": obj{}}, 400,
			"invalid"},
		"nested trait":  {obj{"type": "rectification", "identifier": "user_id:pr-user", "traits": obj{"a": obj{"b": 1}}}, 400, "invalid"},
		"bad regime":    {obj{"type": "access", "identifier": "user_id:pr-user", "regime": "lgpd"}, 400, "invalid"},
		"wrong type":    {obj{"type": 5, "identifier": "user_id:pr-user"}, 400, "invalid"},
		"reader key":    {obj{"type": "access", "identifier": "user_id:pr-user"}, 403, "forbidden"},
		"no such route": {obj{"type": "access", "identifier": "user_id:pr-user"}, 404, "not_found"},
	} {
		path, keys := "/v1/privacy-requests", []string(nil)
		switch name {
		case "reader key":
			keys = []string{newKey(t, s, s.WS.ID, "reader", "analytics")}
		case "no such route":
			path = "/v1/privacy-requests/x/y/z"
		}
		r := s.api(t, "POST", path, c.body, keys...)
		if r.Status != c.status || r.apiError(t).Error.Code != c.code || r.apiError(t).Error.Message == "" {
			t.Errorf("%s: %d %s, want %d %s", name, r.Status, r.Body, c.status, c.code)
		}
		if strings.Contains(string(r.Body), "pr@example.com") {
			t.Errorf("%s: the error echoes an identifier: %s", name, r.Body)
		}
	}
	if n := list(); n != 0 {
		t.Fatalf("bad input stored %d requests", n)
	}

	// A request, its duplicate joined, its export refused until completed.
	first := decode[map[string]any](t, s.api(t, "POST", "/v1/privacy-requests", obj{"type": "access", "identifier": "email:PR@example.com"}), 201)
	id := first["request_id"].(string)
	again := decode[map[string]any](t, s.api(t, "POST", "/v1/privacy-requests", obj{"type": "access", "identifier": "email:pr@example.com"}), 200)
	if again["request_id"] != id || again["joined_existing"] != true {
		t.Fatalf("a duplicate was not joined: %v", again)
	}
	if r := s.api(t, "GET", "/v1/privacy-requests/"+id+"/export", nil); r.Status != http.StatusConflict {
		t.Fatalf("export before completion: %d %s", r.Status, r.Body)
	}
	for did, err := s.Privacy.RunOnce(t.Context()); did || err != nil; did, err = s.Privacy.RunOnce(t.Context()) {
		if err != nil {
			t.Fatal(err)
		}
	}
	r := s.api(t, "GET", "/v1/privacy-requests/"+id+"/export", nil)
	if r.Status != 200 || r.Header.Get("Content-Type") != "application/json" || !strings.Contains(string(r.Body), `"pr@example.com"`) ||
		!strings.Contains(string(r.Body), `"format":"trustloop.access-package"`) {
		t.Fatalf("JSON export: %d %s %s", r.Status, r.Header, r.Body)
	}
	r = s.api(t, "GET", "/v1/privacy-requests/"+id+"/export?format=html", nil)
	if r.Status != 200 || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/html") || strings.Contains(string(r.Body), "<b>Rivers</b>") ||
		!strings.Contains(string(r.Body), "&lt;b&gt;Rivers&lt;/b&gt;") || r.Header.Get("Content-Security-Policy") == "" {
		t.Fatalf("HTML export: %d %s %s", r.Status, r.Header, r.Body)
	}
	open := decode[map[string]any](t, s.api(t, "POST", "/v1/privacy-requests",
		obj{"type": "erasure", "identifier": "user_id:pr-user", "verified": false}), 201)["request_id"].(string)
	for _, c := range []struct {
		method, path string
		body         any
		status       int
	}{
		{"GET", "/v1/privacy-requests/" + id + "/export?format=pdf", nil, 400},
		{"GET", "/v1/privacy-requests/prq_aaaaaaaaaaaaaaaaaaaaaaaaaa", nil, 404},
		{"GET", "/v1/privacy-requests/not-an-id", nil, 404},
		{"GET", "/v1/privacy-requests?status=lost", nil, 400},
		{"GET", "/v1/privacy-requests?cursor=zzz", nil, 400},
		{"GET", "/v1/privacy-requests?limit=0", nil, 400},
		{"POST", "/v1/privacy-requests/" + id + "/verify", nil, 409},
		{"POST", "/v1/privacy-requests/" + id + "/reject", obj{"reason": "too late"}, 409},
		{"POST", "/v1/privacy-requests/" + id + "/extend", obj{"reason": "too late"}, 409},
		{"POST", "/v1/privacy-requests/" + open + "/extend", obj{"reason": ""}, 400},
		{"POST", "/v1/privacy-requests/" + open + "/reject", obj{"reason": " "}, 400},
		{"POST", "/v1/privacy-requests/" + open + "/reject", obj{"why": "x"}, 400},
		{"POST", "/v1/erasure-receipts/verify", obj{"receipt": "a.b.c"}, 400},
	} {
		if r := s.api(t, c.method, c.path, c.body); r.Status != c.status || r.apiError(t).Error.Message == "" {
			t.Errorf("%s %s: %d %s, want %d", c.method, c.path, r.Status, r.Body, c.status)
		}
	}
	if n := list(); n != 2 {
		t.Fatalf("%d requests after the bad calls, want 2", n)
	}
	if r := decode[map[string]any](t, s.api(t, "GET", "/v1/privacy-requests/"+open, nil), 200); r["status"] != "received" {
		t.Fatalf("the unverified request changed: %v", r)
	}
}

// A rectification replaces the old value everywhere: the profile, every event
// that carried it (decrypted, none shows it), under fresh subject keys.
func TestRectification(t *testing.T) {
	s := newServer(t, options{regime: "opt_out"})
	mustOK(t, s.post(t, "/v1/identify", obj{"userId": "rc-user", "anonymousId": "rc-anon", "messageId": "rc1",
		"traits": obj{"email": "rc@example.com", "name": "Olga Oldname", "city": "Bonn"}}))
	mustOK(t, s.post(t, "/v1/track", obj{"userId": "rc-user", "messageId": "rc2", "event": "Product Viewed",
		"context": obj{"traits": obj{"name": "Olga Oldname"}}}))
	mustOK(t, s.post(t, "/v1/track", obj{"anonymousId": "rc-anon", "messageId": "rc3", "event": "Product Viewed"}))
	p := decode[profileJSON](t, s.api(t, "GET", "/v1/profiles/lookup?purpose=essential&identifier=user_id:rc-user", nil), 200)
	blind, err := s.Keyring.Blind(s.WS.ID, "user_id", "rc-user")
	if err != nil {
		t.Fatal(err)
	}
	wrapped := func() []byte {
		ks, err := s.Store.FindSubjectKeys(t.Context(), s.WS.ID, [][]byte{blind})
		if err != nil || len(ks) != 1 {
			t.Fatalf("subject key: %v %v", ks, err)
		}
		return ks[string(blind)].Wrapped
	}
	before := wrapped()
	for _, bad := range []obj{{"type": "rectification", "identifier": "user_id:rc-user", "traits": obj{"email": "new@example.com"}},
		{"type": "rectification", "identifier": "user_id:rc-user"}} {
		if r := s.api(t, "POST", "/v1/privacy-requests", bad); r.Status != 400 {
			t.Fatalf("rectification %v: %d %s", bad, r.Status, r.Body)
		}
	}
	req := decode[map[string]any](t, s.api(t, "POST", "/v1/privacy-requests",
		obj{"type": "rectification", "identifier": "email:rc@example.com", "traits": obj{"name": "Olga Newname", "city": nil}}), 201)
	for did, err := s.Privacy.RunOnce(t.Context()); did || err != nil; did, err = s.Privacy.RunOnce(t.Context()) {
		if err != nil {
			t.Fatal(err)
		}
	}
	done := decode[map[string]any](t, s.api(t, "GET", "/v1/privacy-requests/"+req["request_id"].(string), nil), 200)
	if done["status"] != "completed" || done["result"].(map[string]any)["events_resealed"] != float64(3) {
		t.Fatalf("rectification ended %v", done)
	}
	after := decode[profileJSON](t, s.api(t, "GET", "/v1/profiles/"+p.ProfileID+"?purpose=essential", nil), 200)
	if after.Traits["name"] != "Olga Newname" || after.Traits["city"] != nil || after.Traits["email"] != "rc@example.com" {
		t.Fatalf("traits after rectification: %v", after.Traits)
	}
	evs := s.api(t, "GET", "/v1/profiles/"+p.ProfileID+"/events?purpose=analytics", nil)
	if evs.Status != 200 || strings.Contains(string(evs.Body), "Oldname") || strings.Contains(string(evs.Body), "Bonn") ||
		!strings.Contains(string(evs.Body), "Olga Newname") {
		t.Fatalf("events after rectification: %d %s", evs.Status, evs.Body)
	}
	if bytes.Equal(wrapped(), before) {
		t.Fatal("the subject key was not replaced: the old ciphertext would still open")
	}
	// The collector keeps working for the subject, under the new keys.
	mustOK(t, s.post(t, "/v1/track", obj{"userId": "rc-user", "messageId": "rc4", "event": "Product Viewed"}))
	evs = s.api(t, "GET", "/v1/profiles/"+p.ProfileID+"/events?purpose=analytics", nil)
	if n := strings.Count(string(evs.Body), `"type":"track"`); n != 3 {
		t.Fatalf("%d tracks after a new event, want 3: %s", n, evs.Body)
	}
}
