package http_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestHealthz(t *testing.T) {
	s := newServer(t, options{})
	r := s.do(t, req{method: http.MethodGet, path: "/healthz"})
	if r.Status != http.StatusOK {
		t.Fatalf("status = %d, want 200", r.Status)
	}
	if got := strings.TrimSpace(string(r.Body)); got != `{"status":"ok"}` {
		t.Errorf("body = %s", got)
	}
	// Still alive while draining: only readiness changes.
	s.Server.Drain()
	if r := s.do(t, req{method: http.MethodGet, path: "/healthz"}); r.Status != http.StatusOK {
		t.Errorf("healthz while draining = %d, want 200", r.Status)
	}
}

func TestReadyz(t *testing.T) {
	t.Run("ready", func(t *testing.T) {
		s := newServer(t, options{})
		r := s.do(t, req{method: http.MethodGet, path: "/readyz"})
		if r.Status != http.StatusOK {
			t.Fatalf("status = %d, want 200: %s", r.Status, r.Body)
		}
		if got := strings.TrimSpace(string(r.Body)); got != `{"status":"ready"}` {
			t.Errorf("body = %s", got)
		}
	})
	t.Run("draining", func(t *testing.T) {
		s := newServer(t, options{})
		s.Server.Drain()
		r := s.do(t, req{method: http.MethodGet, path: "/readyz"})
		if r.Status != http.StatusServiceUnavailable {
			t.Fatalf("status = %d, want 503", r.Status)
		}
		e := r.apiError(t)
		if e.Error.Code != "unavailable" || !strings.Contains(e.Error.Message, "Draining") {
			t.Errorf("error = %+v", e.Error)
		}
		if r.Header.Get("Retry-After") != "1" {
			t.Errorf("Retry-After = %q, want 1", r.Header.Get("Retry-After"))
		}
		// Draining refuses no events: in-flight and late requests are still committed.
		mustOK(t, s.post(t, "/v1/track", msg("track", "u1", "")))
	})
	t.Run("storage not ready", func(t *testing.T) {
		secret := "dial tcp 10.1.2.3:5432: connection refused (password=hunter2)"
		s := newServer(t, options{ready: func(context.Context) error { return errors.New(secret) }})
		r := s.do(t, req{method: http.MethodGet, path: "/readyz"})
		if r.Status != http.StatusServiceUnavailable {
			t.Fatalf("status = %d, want 503", r.Status)
		}
		e := r.apiError(t)
		if e.Error.Code != "unavailable" || e.Error.Message != "Storage is not ready." {
			t.Errorf("error = %+v", e.Error)
		}
		if strings.Contains(string(r.Body), "hunter2") || strings.Contains(string(r.Body), "10.1.2.3") {
			t.Errorf("readiness error leaks its cause: %s", r.Body)
		}
		if r.Header.Get("Retry-After") == "" {
			t.Error("no Retry-After")
		}
	})
}

func TestMetrics(t *testing.T) {
	s := newServer(t, options{})
	mustOK(t, s.post(t, "/v1/batch", batchOf(msg("track", "u1", "m1"), msg("identify", "u1", "m2"))))
	mustOK(t, s.post(t, "/v1/track", msg("track", "u1", "m1"))) // a repeat
	if r := s.do(t, req{path: "/v1/track", body: []byte(`{`), auth: testWriteKey}); r.Status != http.StatusBadRequest {
		t.Fatalf("malformed: %d", r.Status)
	}
	text := s.metricsText(t)
	for _, name := range []string{
		"trustloop_events_received_total 3",
		"trustloop_events_stored_total 2",
		"trustloop_events_duplicate_total 1",
		"trustloop_requests_rejected_total",
		`trustloop_requests_rejected_total{reason="invalid"} 1`,
		"trustloop_commit_duration_seconds",
		`trustloop_http_request_duration_seconds_count{route="/v1/batch",status="2xx"} 1`,
		`trustloop_http_request_duration_seconds_count{route="/v1/track",status="4xx"} 1`,
		"trustloop_request_events_count 2",
		"trustloop_commit_group_events",
		"process_resident_memory_bytes",
		"go_goroutines",
	} {
		if !strings.Contains(text, name) {
			t.Errorf("/metrics lacks %q", name)
		}
	}
	if ct := s.do(t, req{method: http.MethodGet, path: "/metrics"}).Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type = %q", ct)
	}
}

func TestMetricsBeforeTraffic(t *testing.T) {
	// The names a dashboard or bench looks for are there from the start.
	s := newServer(t, options{})
	text := s.metricsText(t)
	for _, name := range []string{"trustloop_events_received_total", "trustloop_events_stored_total",
		"trustloop_commit_duration_seconds", "trustloop_request_events", "trustloop_commit_group_events",
		"process_resident_memory_bytes"} {
		if !strings.Contains(text, name) {
			t.Errorf("/metrics lacks %q", name)
		}
	}
}

func TestNotFound(t *testing.T) {
	s := newServer(t, options{})
	for _, tc := range []struct{ method, path string }{
		{http.MethodGet, "/"},
		{http.MethodGet, "/nope"},
		{http.MethodPost, "/v1/nope"},
		{http.MethodPost, "/v1/track/extra"},
		{http.MethodPost, "/v2/track"},
		{http.MethodGet, "/v1"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			var body []byte
			if tc.method == http.MethodPost {
				body = mustJSON(t, msg("track", "u1", ""))
			}
			before := s.events(t)
			r := s.do(t, req{method: tc.method, path: tc.path, body: body, auth: testWriteKey})
			if r.Status != http.StatusNotFound {
				t.Fatalf("status = %d, want 404: %s", r.Status, r.Body)
			}
			e := r.apiError(t)
			if e.Error.Code != "not_found" || !strings.Contains(e.Error.Message, "No such path") {
				t.Errorf("error = %+v", e.Error)
			}
			if !strings.Contains(e.Error.Hint, "/openapi.json") {
				t.Errorf("hint = %q", e.Error.Hint)
			}
			if s.events(t) != before {
				t.Error("a 404 stored events")
			}
		})
	}
}

// A path the server has, asked with a method it does not serve there: 405
// with the methods it does serve, not 404.
func TestMethodNotAllowed(t *testing.T) {
	s := newServer(t, options{regime: "opt_out"}) // with the consent routes
	for _, tc := range []struct{ method, path, allow string }{
		{http.MethodPut, "/healthz", "GET, HEAD"},
		{http.MethodDelete, "/openapi.json", "GET, HEAD"},
		{http.MethodPatch, "/v1/api-keys", "GET, HEAD, POST"},
		{http.MethodPost, "/v1/purposes", "GET, HEAD, PUT"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			r := s.do(t, req{method: tc.method, path: tc.path, auth: testWriteKey})
			if r.Status != http.StatusMethodNotAllowed {
				t.Fatalf("status = %d, want 405: %s", r.Status, r.Body)
			}
			if got := r.Header.Get("Allow"); got != tc.allow {
				t.Errorf("Allow = %q, want %q", got, tc.allow)
			}
			e := r.apiError(t)
			if e.Error.Code != "method_not_allowed" || !strings.Contains(e.Error.Hint, tc.allow[:3]) {
				t.Errorf("error = %+v", e.Error)
			}
		})
	}
}

// An API path with an empty or dot segment, a query parameter given twice,
// a query string that does not parse, text that is not UTF-8 and two
// Authorization headers are refused with 400, not redirected, half read or
// guessed at, and store nothing; a repeated parameter's name is
// said only when it looks like one of the API's.
func TestAPIRequestProblems(t *testing.T) {
	s := newServer(t, options{regime: "opt_out"})
	track := mustJSON(t, map[string]any{"type": "track", "event": "Product Viewed", "userId": "u1"})
	for _, tc := range []struct {
		name, method, path string
		body               []byte
		msg                string
		notInMsg           string
	}{
		{"empty id", http.MethodGet, "/v1/items//similar", nil, "empty or dot segment", ""},
		{"dot segment", http.MethodGet, "/v1/profiles/./events", nil, "empty or dot segment", ""},
		{"dot-dot segment", http.MethodPost, "/v1/x/../track", track, "empty or dot segment", ""},
		{"repeated parameter", http.MethodPost, "/v1/track?purpose=a&purpose=b", track, "The query parameter purpose is given 2 times.", ""},
		{"repeated odd name", http.MethodPost, "/v1/track?Jo%40example.com=1&Jo%40example.com=2", track, "A query parameter is given 2 times.", "example"},
		{"malformed query", http.MethodPost, "/v1/track?limit=%zz", track, "not well formed", "zz"},
		{"query not UTF-8", http.MethodGet, "/v1/profiles/lookup?identifier=user_id:u%FF&purpose=analytics", nil, "not valid UTF-8", ""},
		{"path not UTF-8", http.MethodGet, "/v1/items/p%FF/similar", nil, "not valid UTF-8", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := s.events(t)
			r := s.do(t, req{method: tc.method, path: tc.path, body: tc.body, auth: testWriteKey})
			if r.Status != http.StatusBadRequest {
				t.Fatalf("status = %d, want 400: %s", r.Status, r.Body)
			}
			e := r.apiError(t)
			if e.Error.Code != "invalid" || !strings.Contains(e.Error.Message, tc.msg) || e.Error.Hint == "" {
				t.Errorf("error = %+v, want code invalid, a hint and %q in the message", e.Error, tc.msg)
			}
			if tc.notInMsg != "" && strings.Contains(string(r.Body), tc.notInMsg) {
				t.Errorf("the answer repeats the caller's %q: %s", tc.notInMsg, r.Body)
			}
			if s.events(t) != before {
				t.Error("a refused request stored events")
			}
		})
	}
	// Two Authorization headers: which one was meant is not guessed.
	hr, err := http.NewRequest(http.MethodPost, s.URL+"/v1/track", bytes.NewReader(track))
	if err != nil {
		t.Fatal(err)
	}
	hr.SetBasicAuth(testWriteKey, "")
	hr.Header.Add("Authorization", "Bearer another")
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("two Authorization headers: status %d, want 400", resp.StatusCode)
	}
	// The same request without the problem is taken, and an encoded slash or
	// dot in an id is part of the id, not a segment.
	if r := s.do(t, req{path: "/v1/track?purpose=a", body: track, auth: testWriteKey}); r.Status != http.StatusOK {
		t.Fatalf("a parameter given once: status %d: %s", r.Status, r.Body)
	}
	for _, path := range []string{"/v1/items/https%3A%2F%2Fshop.example%2Fp%2F1/similar", "/v1/items/%2E%2E/similar", "/v1/items/a%2F%2Fb/similar"} {
		r := s.do(t, req{method: http.MethodGet, path: path})
		if r.Status == http.StatusBadRequest {
			t.Errorf("GET %s: 400 %s; an id with encoded slashes or dots is an id", path, r.Body)
		}
	}
}

func TestOpenAPIServed(t *testing.T) {
	s := newServer(t, options{regime: "opt_out"})
	r := s.do(t, req{method: http.MethodGet, path: "/openapi.json"})
	if r.Status != http.StatusOK {
		t.Fatalf("status = %d", r.Status)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(r.Body, &doc); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi = %q", doc.OpenAPI)
	}
	// The document's collector paths (which the internal TestOpenAPIDocument
	// matches against the router) are the ones these tests cover.
	tested := map[string]bool{}
	for _, p := range collectorPaths {
		tested[p.path] = true
		if doc.Paths[p.path] == nil {
			t.Errorf("%s is not documented", p.path)
		}
	}
	// API paths (those that take a key) are covered by their own tests.
	api := func(path string) bool {
		for _, op := range doc.Paths[path] {
			if m, ok := op.(map[string]any); ok && m["security"] != nil {
				return true
			}
		}
		return false
	}
	for path := range doc.Paths {
		if strings.HasPrefix(path, "/v1/") && !tested[path] && !api(path) {
			t.Errorf("%s is routed but not in the tests' collectorPaths", path)
		}
	}
	// Every documented GET without an API key answers 200 on the running server
	// (the profile API's are covered by profile_test.go).
	for path, item := range doc.Paths {
		get, ok := item["get"].(map[string]any)
		if !ok || get["security"] != nil {
			continue
		}
		if r := s.do(t, req{method: http.MethodGet, path: path}); r.Status != http.StatusOK {
			t.Errorf("GET %s = %d", path, r.Status)
		}
	}
}

// TestOpenAPIExamples sends every request example of the document to its path: the
// examples must be what the server accepts.
func TestOpenAPIExamples(t *testing.T) {
	s := newServer(t, options{})
	r := s.do(t, req{method: http.MethodGet, path: "/openapi.json"})
	var doc struct {
		Paths map[string]struct {
			Post *struct {
				RequestBody struct {
					Content map[string]struct {
						Examples map[string]struct {
							Value json.RawMessage `json:"value"`
						} `json:"examples"`
					} `json:"content"`
				} `json:"requestBody"`
			} `json:"post"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(r.Body, &doc); err != nil {
		t.Fatal(err)
	}
	n := 0
	for path, item := range doc.Paths {
		if item.Post == nil {
			continue
		}
		for ct, c := range item.Post.RequestBody.Content {
			for name, ex := range c.Examples {
				t.Run(path+" "+ct+" "+name, func(t *testing.T) {
					n++
					body := strings.ReplaceAll(string(ex.Value), "YOUR_WRITE_KEY", testWriteKey)
					rq := req{path: path, body: []byte(body), headers: map[string]string{"Content-Type": ct}}
					if !strings.Contains(string(ex.Value), "YOUR_WRITE_KEY") {
						rq.auth = testWriteKey
					}
					mustOK(t, s.do(t, rq))
				})
			}
		}
	}
	if n < 15 {
		t.Errorf("only %d request examples; want one per collector path", n)
	}
}

// A body whose Content-Length is over the limit is refused before any of it
// is read: a client that asked to continue gets the 413 first, not a 100
// Continue (after which, the body left unread, the server's close could
// reset the connection before the client read the 413). Without a length the
// limit holds as the body is read.
func TestOversizedBodyRefusedUnread(t *testing.T) {
	s := newServer(t, options{regime: "opt_out"})
	host := strings.TrimPrefix(s.URL, "http://")
	for _, tc := range []struct {
		name, path, auth, contentType string
		json                          bool
	}{
		{"API", "/v1/audiences", "Bearer " + adminKey, "application/json", true},
		{"form", "/admin/signin", "", "application/x-www-form-urlencoded", false},
	} {
		t.Run(tc.name+", announced", func(t *testing.T) {
			conn, err := net.Dial("tcp", host)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			head := "POST " + tc.path + " HTTP/1.1\r\nHost: " + host + "\r\nContent-Type: " + tc.contentType +
				"\r\nContent-Length: 10485760\r\nExpect: 100-continue\r\n"
			if tc.auth != "" {
				head += "Authorization: " + tc.auth + "\r\n"
			}
			if _, err := io.WriteString(conn, head+"\r\n"); err != nil {
				t.Fatal(err)
			}
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Fatalf("first answer = %d, want 413 before any of the body is sent: %s", resp.StatusCode, body)
			}
			if tc.json {
				var e apiError
				if err := json.Unmarshal(body, &e); err != nil || e.Error.Code != "too_large" || e.Error.Hint == "" {
					t.Errorf("error = %s, want code too_large with a hint", body)
				}
			}
		})
	}
	t.Run("API, chunked", func(t *testing.T) {
		admin := map[string]string{"Authorization": "Bearer " + adminKey}
		before := s.do(t, req{method: http.MethodGet, path: "/v1/audiences", headers: admin})
		if before.Status != http.StatusOK {
			t.Fatalf("listing audiences = %d: %s", before.Status, before.Body)
		}
		body := `{"name":"big","rule":"` + strings.Repeat("a", 70<<10) + `"}`
		r := s.do(t, req{path: "/v1/audiences", bodyReader: strings.NewReader(body),
			headers: map[string]string{"Authorization": "Bearer " + adminKey, "Content-Type": "application/json"}})
		if r.Status != http.StatusRequestEntityTooLarge || r.apiError(t).Error.Code != "too_large" {
			t.Fatalf("status = %d, want 413 too_large: %s", r.Status, r.Body)
		}
		after := s.do(t, req{method: http.MethodGet, path: "/v1/audiences", headers: admin})
		if !bytes.Equal(before.Body, after.Body) {
			t.Errorf("the audiences changed: %s, then %s", before.Body, after.Body)
		}
	})
}

// Consent choices the API refuses, each with a hint and nothing recorded: a
// null choice (it is no choice, not a refusal), a method that is not the
// API's to claim (tcf comes with a TC string; privacy_request and expiry are
// Trustloop's), consent "given" by Global Privacy Control (an opt-out
// signal), and a jurisdiction that is not a code (it goes into the signed
// receipt).
func TestConsentChoiceProblems(t *testing.T) {
	s := newServer(t, options{regime: "opt_out"})
	mustOK(t, s.post(t, "/v1/identify", obj{"userId": "cc-user", "messageId": "cc1"}))
	p := decode[profileJSON](t, s.api(t, "GET", "/v1/profiles/lookup?purpose=analytics&identifier=user_id:cc-user", nil), 200)
	path := "/v1/profiles/" + p.ProfileID + "/consent"
	history := func() string { return string(s.api(t, "GET", path+"/history", nil).Body) }
	before := history()
	for _, tc := range []struct {
		name string
		body obj
		msg  string
	}{
		{"null choice", obj{"purposes": obj{"personalization": nil}}, "true or false, not null"},
		{"tcf without its string", obj{"purposes": obj{"personalization": true}, "method": "tcf"}, "method must be"},
		{"expiry", obj{"purposes": obj{"personalization": false}, "method": "expiry"}, "method must be"},
		{"given by GPC", obj{"purposes": obj{"personalization": true}, "method": "gpc"}, "Global Privacy Control can only refuse"},
		{"jurisdiction with an email", obj{"purposes": obj{"personalization": true}, "jurisdiction": "zz@x.com"}, "not a code"},
		{"jurisdiction with a NUL", obj{"purposes": obj{"personalization": true}, "jurisdiction": "E\u0000U"}, "not a code"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := s.api(t, "PUT", path, tc.body)
			e := r.apiError(t)
			if r.Status != http.StatusBadRequest || !strings.Contains(e.Error.Message, tc.msg) || e.Error.Hint == "" {
				t.Errorf("%d %s, want 400 with %q and a hint", r.Status, r.Body, tc.msg)
			}
			if strings.Contains(string(r.Body), "zz@x.com") {
				t.Errorf("the error repeats the jurisdiction: %s", r.Body)
			}
		})
	}
	if after := history(); after != before {
		t.Errorf("refused choices changed the history:\n%s\nthen\n%s", before, after)
	}
	// A refusal by GPC, with a code as jurisdiction, is recorded.
	if r := s.api(t, "PUT", path, obj{"purposes": obj{"marketing": false}, "method": "gpc", "jurisdiction": "US-CA"}); r.Status != 200 {
		t.Errorf("a GPC refusal: %d %s", r.Status, r.Body)
	}
}

// An API key's name is one line of text: control characters are refused,
// and nothing is created.
func TestAPIKeyNameProblems(t *testing.T) {
	s := newServer(t, options{})
	before := string(s.api(t, "GET", "/v1/api-keys", nil).Body)
	for _, name := range []string{"k\u0000", "line\nbreak", "bell\u0007"} {
		r := s.api(t, "POST", "/v1/api-keys", obj{"name": name, "roles": []string{"reader"}, "purposes": []string{"analytics"}})
		if e := r.apiError(t); r.Status != http.StatusBadRequest || !strings.Contains(e.Error.Message, "control characters") || e.Error.Hint == "" {
			t.Errorf("name %q: %d %s", name, r.Status, r.Body)
		}
	}
	if after := string(s.api(t, "GET", "/v1/api-keys", nil).Body); after != before {
		t.Errorf("refused keys were created: %s", after)
	}
}

// An API body labelled as something JSON is not sent as, or compressed, is
// refused with 415 and creates nothing; curl -d's default label is taken.
func TestAPIBodyMediaType(t *testing.T) {
	s := newServer(t, options{})
	before := string(s.api(t, "GET", "/v1/audiences", nil).Body)
	body := []byte(`{"name":"Media","rule":"true"}`)
	for _, h := range []map[string]string{
		{"Content-Type": "application/xml"},
		{"Content-Type": "multipart/form-data; boundary=x"},
		{"Content-Type": "application/json", "Content-Encoding": "br"},
		{"Content-Type": "application/json", "Content-Encoding": "gzip"},
	} {
		h["Authorization"] = "Bearer " + adminKey
		r := s.do(t, req{path: "/v1/audiences", body: body, headers: h})
		if e := r.apiError(t); r.Status != http.StatusUnsupportedMediaType || e.Error.Hint == "" {
			t.Errorf("%v: %d %s, want 415 with a hint", h, r.Status, r.Body)
		}
	}
	if after := string(s.api(t, "GET", "/v1/audiences", nil).Body); after != before {
		t.Errorf("a refused body created an audience: %s", after)
	}
	r := s.do(t, req{path: "/v1/audiences", body: body, headers: map[string]string{"Authorization": "Bearer " + adminKey,
		"Content-Type": "application/x-www-form-urlencoded"}})
	if r.Status != http.StatusCreated {
		t.Errorf("curl -d's label: %d %s", r.Status, r.Body)
	}
}

// An unknown page of the console or the preference center, or a method
// they do not serve, is answered with a page; an unknown API path with JSON.
// Neither repeats the path (a segment can be an identifier).
func TestUnknownPathsAnsweredInKind(t *testing.T) {
	s := newServer(t, options{regime: "opt_out"})
	for _, tc := range []struct {
		method, path string
		status       int
		page         bool
	}{
		{"GET", "/admin/nosuch/ann@example.com", 404, true},
		{"GET", "/portal/s/", 404, true},
		{"DELETE", "/admin/signin", 405, true},
		{"GET", "/v1/nosuch/ann@example.com", 404, false},
	} {
		r := s.do(t, req{method: tc.method, path: tc.path})
		ct := r.Header.Get("Content-Type")
		if r.Status != tc.status || strings.HasPrefix(ct, "text/html") != tc.page {
			t.Errorf("%s %s: %d %s, want %d as a page: %v", tc.method, tc.path, r.Status, ct, tc.status, tc.page)
		}
		if strings.Contains(string(r.Body), "ann@example.com") {
			t.Errorf("%s %s: the answer repeats the path", tc.method, tc.path)
		}
	}
}
