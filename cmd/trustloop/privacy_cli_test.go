package main_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
)

// TestPrivacyCLI drives `trustloop privacy` against a running server: an
// access request waited for, its package downloaded, the list, an erasure,
// the lifecycle commands, bad input (exit 2), the server's refusals and an
// unreachable server (exit 1), and the API key read from the credentials file.
func TestPrivacyCLI(t *testing.T) {
	dataDir := t.TempDir()
	s := start(t, dataDir, "--profiles")
	// Only the connection flags come from the environment: the server's
	// TRUSTLOOP_REGIME=opt_out must not become a request's regime.
	t.Setenv("TRUSTLOOP_REGIME", "opt_out")
	t.Setenv("TRUSTLOOP_TYPE", "frobnicate")
	t.Setenv("TRUSTLOOP_API_KEY", "")
	t.Setenv("TRUSTLOOP_SERVER", "")
	run := randomHex(4)
	user, email := "uid-cli-"+run, "jane.cli."+run+"@example.com"
	postBatchWith(t, s.url, []string{fmt.Sprintf(`{"type":"identify","messageId":"cli-id-%s","userId":%q,"traits":{"email":%q,"name":"Jane Cli"}}`,
		run, user, email)})

	conn := []string{"--server", s.url, "--api-key", "e2e-admin-key-0123456789"}
	privacy := func(args ...string) (int, string, string) {
		t.Helper()
		return runCLI(t, append(append([]string{"privacy"}, args...), conn...)...)
	}
	request := func(what, out string) map[string]any {
		t.Helper()
		var v map[string]any
		if err := json.Unmarshal([]byte(out), &v); err != nil || !trustloop.ValidRequestID(fmt.Sprint(v["request_id"])) {
			t.Fatalf("%s printed no request: %v\n%s", what, err, out)
		}
		return v
	}

	// An access request, waited for.
	code, out, errOut := privacy("create", "--type", "access", "--identifier", "user_id:"+user, "--wait")
	if code != 0 {
		t.Fatalf("create --wait exited %d: %s\n%s", code, errOut, s.log())
	}
	acc := request("create --wait", out)
	id := acc["request_id"].(string)
	if acc["status"] != "completed" || acc["type"] != "access" || acc["result"].(map[string]any)["found"] != true {
		t.Fatalf("the access request ended %v", acc)
	}

	// Its package, to a file (the id may also come after the flags).
	pkg := filepath.Join(t.TempDir(), "package.json")
	code, out, errOut = runCLI(t, append(append([]string{"privacy", "export"}, conn...), "--out", pkg, id)...)
	if code != 0 || out != "" || !strings.Contains(errOut, "wrote "+pkg) {
		t.Fatalf("export --out: exit %d, stdout %q, stderr %s", code, out, errOut)
	}
	b, err := os.ReadFile(pkg)
	if err != nil || !strings.Contains(string(b), email) || !json.Valid(b) {
		t.Fatalf("the package (%v) does not hold the customer's email:\n%s", err, b)
	}
	if fi, _ := os.Stat(pkg); fi.Mode().Perm() != 0o600 {
		t.Fatalf("the package's mode is %v, want 0600", fi.Mode().Perm())
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(pkg), ".*partial")); len(left) > 0 {
		t.Fatalf("export left %v behind", left)
	}
	if code, out, errOut = privacy("export", id, "--format", "html"); code != 0 || !strings.Contains(out, email) || !strings.HasSuffix(strings.TrimSpace(out), "</html>") {
		t.Fatalf("export --format html: exit %d, %s\n%.300s", code, errOut, out)
	}

	// The list shows it, one line per request.
	code, out, errOut = privacy("list")
	if code != 0 || !strings.Contains(out, id) {
		t.Fatalf("list: exit %d, %s\n%s", code, errOut, out)
	}
	if f := strings.Fields(out); len(f) < 4 || f[0] != id || f[1] != "access" || f[2] != "completed" || f[3] != "due" {
		t.Fatalf("list printed %q", out)
	}
	if code, out, _ = privacy("list", "--json", "--status", "completed"); code != 0 || !json.Valid([]byte(out)) || !strings.Contains(out, `"data"`) {
		t.Fatalf("list --json: exit %d, %s", code, out)
	}

	// An erasure, waited for: completed, with a receipt.
	code, out, errOut = privacy("create", "--type", "erasure", "--identifier", "user_id:"+user, "--suppress", "--wait")
	if code != 0 {
		t.Fatalf("erasure --wait exited %d: %s", code, errOut)
	}
	if er := request("erasure", out); er["status"] != "completed" || er["receipt"] == "" || er["suppress"] != true {
		t.Fatalf("the erasure ended %v", er)
	}
	if code, out, _ = privacy("show", id); code != 0 || request("show", out)["request_id"] != id {
		t.Fatalf("show: exit %d, %s", code, out)
	}

	// An unverified request: extended, verified, and another rejected.
	code, out, errOut = privacy("create", "--type", "rectification", "--identifier", "user_id:nobody-"+run, "--trait", "name=Jane Doe",
		"--trait", "age:=42", "--unverified", "--regime", "ccpa")
	if code != 0 {
		t.Fatalf("create --unverified: exit %d, %s", code, errOut)
	}
	rect := request("create --unverified", out)
	rid := rect["request_id"].(string)
	if rect["status"] != "received" || rect["regime"] != "ccpa" {
		t.Fatalf("create --unverified printed %v", rect)
	}
	if code, out, errOut = privacy("extend", rid, "--reason", "identity check pending"); code != 0 || request("extend", out)["extension_reason"] != "identity check pending" {
		t.Fatalf("extend: exit %d, %s %s", code, errOut, out)
	}
	if code, out, errOut = privacy("verify", rid); code != 0 || request("verify", out)["status"] == "received" {
		t.Fatalf("verify: exit %d, %s %s", code, errOut, out)
	}
	if code, out, errOut = privacy("create", "--type", "objection", "--identifier", "user_id:nobody-"+run, "--unverified"); code != 0 {
		t.Fatalf("create objection: exit %d, %s", code, errOut)
	}
	oid := request("create objection", out)["request_id"].(string)
	if code, out, errOut = privacy("reject", oid, "--reason", "could not verify the requester"); code != 0 || request("reject", out)["status"] != "rejected" {
		t.Fatalf("reject: exit %d, %s %s", code, errOut, out)
	}

	// Bad input: exit 2 with what is wrong, before any call.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"create", "--identifier", "user_id:" + user}, "--type is required"},
		{[]string{"create", "--type", "forget", "--identifier", "user_id:" + user}, `--type "forget"`},
		{[]string{"create", "--type", "access", "--identifier", "jane"}, "TYPE:VALUE"},
		{[]string{"create", "--type", "rectification", "--identifier", "user_id:x", "--trait", "age:={"}, "JSON value"},
		{[]string{"create", "--type", "rectification", "--identifier", "user_id:x", "--trait", "age:=42}"}, "JSON value"},
		{[]string{"create", "--type", "rectification", "--identifier", "user_id:x", "--trait", "age:=42 43"}, "JSON value"},
		{[]string{"frobnicate"}, `unknown subcommand "frobnicate"`},
		{[]string{"export", id, "--format", "pdf"}, `--format "pdf": want json or html`},
		{[]string{"show"}, "give one request id"},
		{[]string{"show", "prq_nope"}, "is not a request id"},
		{[]string{"reject", oid}, "--reason is required"},
		{[]string{"list", "--limit", "0"}, "--limit 0"},
		{[]string{"list", "--no-such-flag"}, "no-such-flag"},
	} {
		code, out, errOut := privacy(c.args...)
		if code != 2 || !strings.Contains(errOut, c.want) || out != "" {
			t.Errorf("privacy %v: exit %d, stderr %q, stdout %q; want 2 and %q", c.args, code, errOut, out, c.want)
		}
	}

	// The server's refusals: exit 1 with its message and hint, never the key.
	code, _, errOut = runCLI(t, "privacy", "list", "--server", s.url, "--api-key", "wrong-secret-key-42")
	if code != 1 || !strings.Contains(errOut, "trustloop privacy: The API key is not valid. (") || strings.Contains(errOut, "wrong-secret-key-42") {
		t.Fatalf("a wrong key: exit %d, %s", code, errOut)
	}
	if code, _, errOut = privacy("reject", id, "--reason", "too late"); code != 1 || !strings.Contains(errOut, "trustloop privacy: ") {
		t.Fatalf("rejecting a completed request: exit %d, %s", code, errOut)
	}
	code, _, errOut = runCLI(t, "privacy", "show", id, "--server", "http://127.0.0.1:1", "--api-key", "wrong-secret-key-42", "--timeout", "2s")
	if code != 1 || !strings.Contains(errOut, "cannot reach the server at http://127.0.0.1:1") || strings.Contains(errOut, "wrong-secret-key-42") {
		t.Fatalf("an unreachable server: exit %d, %s", code, errOut)
	}

	// The key from the credentials file of --data-dir, the server from the
	// environment; a data directory without one is a usage error.
	t.Setenv("TRUSTLOOP_SERVER", s.url)
	if code, out, errOut = runCLI(t, "privacy", "list", "--data-dir", dataDir); code != 0 || !strings.Contains(out, id) {
		t.Fatalf("list with the key from %s/credentials: exit %d, %s\n%s", dataDir, code, errOut, out)
	}
	if code, _, errOut = runCLI(t, "privacy", "list", "--data-dir", t.TempDir()); code != 2 || !strings.Contains(errOut, "no API key") {
		t.Fatalf("list without a key: exit %d, %s", code, errOut)
	}

	// Help lists the subcommands and their flags.
	code, out, _ = runCLI(t, "help", "privacy")
	for _, want := range []string{"create", "list", "show", "verify", "reject", "extend", "export", "--identifier", "--wait", "--format", "--server", "--api-key"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("help privacy: exit %d, lacks %q:\n%s", code, want, out)
		}
	}
}

// TestPrivacyCLIFakeServer covers what a real server seldom does: a package
// cut short mid-stream, a server too slow to answer, a request rejected while
// waited for, and a server that is not Trustloop's.
func TestPrivacyCLIFakeServer(t *testing.T) {
	const id = "prq_aaaaaaaaaaaaaaaaaaaaaaaaaa"
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/privacy-requests/{id}/export", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer fake-key" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		// A server failing after the first bytes ends the response normally.
		if r.URL.Query().Get("format") == "html" {
			io.WriteString(w, "<!doctype html><html><body><table><tr><td>")
		} else {
			io.WriteString(w, `{"format":"trustloop.access-package","events":[{"type":"track","message":{"a":"}]}"}}`)
		}
	})
	mux.HandleFunc("POST /v1/privacy-requests", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"request_id":"`+id+`","type":"erasure","status":"received","joined_existing":false}`)
	})
	mux.HandleFunc("GET /v1/privacy-requests/{id}", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"request_id":"`+id+`","type":"erasure","status":"rejected","reject_reason":"not the account holder"}`)
	})
	mux.HandleFunc("GET /v1/privacy-requests", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	})
	mux.HandleFunc("POST /v1/privacy-requests/{id}/verify", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusBadGateway)
		io.WriteString(w, "<html>bad gateway</html>")
	})
	ts := httptest.NewServer(mux)
	defer ts.Close()
	conn := []string{"--server", ts.URL, "--api-key", "fake-key"}
	privacy := func(args ...string) (int, string, string) {
		t.Helper()
		return runCLI(t, append(append([]string{"privacy"}, args...), conn...)...)
	}

	out := filepath.Join(t.TempDir(), "package.json")
	code, _, errOut := privacy("export", id, "--out", out)
	if _, err := os.Stat(out); code != 1 || !strings.Contains(errOut, "cut the package short") || err == nil {
		t.Fatalf("a package cut short: exit %d, %s (file: %v)", code, errOut, err)
	}
	if left, _ := os.ReadDir(filepath.Dir(out)); len(left) > 0 {
		t.Fatalf("export left %s behind", left[0].Name())
	}
	if code, _, errOut = privacy("export", id, "--format", "html"); code != 1 || !strings.Contains(errOut, "output above is incomplete") {
		t.Fatalf("a page cut short: exit %d, %s", code, errOut)
	}
	start := time.Now()
	if code, _, errOut = privacy("list", "--timeout", "300ms"); code != 1 || !strings.Contains(errOut, "did not answer within 300ms") || time.Since(start) > 5*time.Second {
		t.Fatalf("a slow server: exit %d after %s, %s", code, time.Since(start), errOut)
	}
	code, stdout, errOut := privacy("create", "--type", "erasure", "--identifier", "email:jane@example.com", "--wait")
	if code != 1 || !strings.Contains(stdout, `"rejected"`) || !strings.Contains(errOut, "was rejected: not the account holder") {
		t.Fatalf("a rejected request waited for: exit %d, %s\n%s", code, errOut, stdout)
	}
	if code, _, errOut = privacy("verify", id); code != 1 || !strings.Contains(errOut, "502 Bad Gateway") || !strings.Contains(errOut, ts.URL) {
		t.Fatalf("not a Trustloop server: exit %d, %s", code, errOut)
	}
}
