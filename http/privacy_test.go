package http_test

import (
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
