package main_test

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
)

// A collector-only server (`--profiles=false`) has the console, which says
// that customers and the preference center need profiles; the portal's API is
// not there.
func TestConsoleWithoutProfiles(t *testing.T) {
	s := start(t, t.TempDir(), "--profiles=false")
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	req, _ := http.NewRequest("POST", s.url+"/admin/signin", strings.NewReader(url.Values{"key": {"e2e-admin-key-0123456789"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", s.url)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || res.Request.URL.Path != "/admin" || !strings.Contains(string(body), `id="profiles-off"`) {
		t.Fatalf("the console without profiles: %d at %s", res.StatusCode, res.Request.URL.Path)
	}
	if code, _ := api(t, s, "POST", "/v1/portal/sessions", map[string]any{"identifier": "email:a@example.com"}); code != 404 {
		t.Errorf("portal sessions without profiles: %d", code)
	}
}
