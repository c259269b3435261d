package main_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/auditlog"
	"github.com/trustloop/trustloop/keyring"
	"github.com/trustloop/trustloop/sqlite"
)

// runCLI runs the trustloop binary and returns its exit code and output.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), o.String(), e.String()
}

// appendAudit appends n data-use entries to workspace 1's audit log of a
// stopped server's data directory, with the server's own keys, and checkpoints.
func appendAudit(t *testing.T, dataDir string, n int) {
	t.Helper()
	ctx := context.Background()
	db, keys := openStopped(t, dataDir)
	defer db.Close()
	l := auditlog.New(db, keys, auditlog.Config{})
	defer l.Close()
	purposes := []string{"marketing", "analytics", "personalization"}
	for i := 0; i < n; i++ {
		err := l.Append(ctx, trustloop.AuditEntry{WorkspaceID: 1, Kind: trustloop.AuditDataUse,
			Actor:   trustloop.AuditActor{Kind: trustloop.ActorAPIKey, ID: "key:1"},
			Purpose: purposes[i%3], Subject: fmt.Sprint(9_000_000 + i), Categories: []string{"behavior"},
			Action: "GET /v1/profiles/{id}/events"})
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Checkpoint(ctx, 1); err != nil {
		t.Fatal(err)
	}
}

// TestAuditVerifyEndToEnd: `trustloop audit verify` against the real binary
// over HTTP and against the data directory, before and after an entry is
// changed directly in the database file.
func TestAuditVerifyEndToEnd(t *testing.T) {
	dataDir := t.TempDir()
	s := start(t, dataDir)
	s.stop()
	appendAudit(t, dataDir, 50)

	s = start(t, dataDir)
	kept := filepath.Join(t.TempDir(), "checkpoint")
	code, out, errOut := runCLI(t, "audit", "verify", "--url", s.url, "--api-key", "e2e-admin-key-0123456789", "--save", kept)
	if code != 0 || !strings.Contains(out, "OK: workspace 1's audit log verifies: 50 entries") {
		t.Fatalf("verify = %d\n%s%s", code, out, errOut)
	}
	// Not pinned: a warning shows the key to pin.
	_, vkey, ok := strings.Cut(strings.SplitN(errOut, "\n", 2)[0], "presents: ")
	if !ok || !strings.HasPrefix(vkey, "trustloop.audit/ws-1+") {
		t.Fatalf("no warning with the key to pin: %q", errOut)
	}
	if note, err := os.ReadFile(kept); err != nil || !bytes.HasPrefix(note, []byte("go.sum database tree\n50\n")) {
		t.Fatalf("saved checkpoint: %q, %v", note, err)
	}

	// More entries; the kept checkpoint must be extended.
	s.stop()
	appendAudit(t, dataDir, 10)
	s = start(t, dataDir)
	code, out, errOut = runCLI(t, "audit", "verify", "--url", s.url, "--api-key", "e2e-admin-key-0123456789", "--verifier-key", vkey, "--checkpoint", kept)
	if code != 0 || !strings.Contains(out, "60 entries") || !strings.Contains(out, "extends the checkpoint of 50 entries") || strings.Contains(errOut, "warning") {
		t.Fatalf("verify with a kept checkpoint = %d\n%s%s", code, out, errOut)
	}

	// Someone with access to the database file changes entry 17.
	s.stop()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dataDir, sqlite.FileName))
	if err != nil {
		t.Fatal(err)
	}
	res, err := db.Exec(`UPDATE audit_entries SET data = CAST(replace(CAST(data AS TEXT), '"purpose":"personalization"', '"purpose":"essential"') AS BLOB) WHERE idx = 17`)
	if n, _ := res.RowsAffected(); err != nil || n != 1 {
		t.Fatalf("tamper: %v, %d rows", err, n)
	}
	db.Close()

	code, out, errOut = runCLI(t, "audit", "verify", "--data-dir", dataDir, "--verifier-key", vkey)
	if code != 1 || !strings.Contains(out, "FAILED: audit log: entry 17:") {
		t.Fatalf("verify the store after the edit = %d, want 1 naming entry 17\n%s%s", code, out, errOut)
	}
	s = start(t, dataDir)
	code, out, errOut = runCLI(t, "audit", "verify", "--url", s.url, "--api-key", "e2e-admin-key-0123456789", "--verifier-key", vkey, "--checkpoint", kept)
	if code != 1 || !strings.Contains(out, "FAILED: audit log: entry 17:") {
		t.Fatalf("verify over HTTP after the edit = %d, want 1 naming entry 17\n%s%s", code, out, errOut)
	}
	t.Log(strings.TrimSpace(out))
	// A wrong pinned key (another workspace's name) fails as such, not as a pass.
	code, out, errOut = runCLI(t, "audit", "verify", "--url", s.url, "--api-key", "e2e-admin-key-0123456789",
		"--verifier-key", strings.Replace(vkey, "ws-1+", "ws-2+", 1))
	if code == 0 {
		t.Fatalf("verify with another key passed\n%s%s", out, errOut)
	}
	// Usage errors exit 2.
	if code, _, _ := runCLI(t, "audit", "verify", "--url", s.url); code != 2 {
		t.Fatalf("verify without --api-key = %d, want 2", code)
	}
	s.stop()
}

// TestAuditVerifyInput: bad flags and files are exit 2 (usage) and check
// nothing; a kept checkpoint that a Windows editor saved with a byte order
// mark and CR LF line ends is the same checkpoint, not a forgery; --save
// refuses a path it cannot write before verifying, and writes nothing when
// verification fails.
func TestAuditVerifyInput(t *testing.T) {
	dataDir := t.TempDir()
	bootstrapStore(t, dataDir)
	appendAudit(t, dataDir, 5)
	dir := t.TempDir()
	kept := filepath.Join(dir, "kept")
	if code, out, errOut := runCLI(t, "audit", "verify", "--data-dir", dataDir, "--save", kept); code != 0 {
		t.Fatalf("verify = %d\n%s%s", code, out, errOut)
	}
	note, err := os.ReadFile(kept)
	if err != nil {
		t.Fatal(err)
	}
	file := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const bom = "\xef\xbb\xbf"
	crlf := bytes.ReplaceAll(note, []byte("\n"), []byte("\r\n"))
	asJSON, _ := json.Marshal(map[string]string{"note": string(note)})
	// The size changed under the signature: a forgery whatever the line ends.
	forged := bytes.Replace(crlf, []byte("\r\n5\r\n"), []byte("\r\n4\r\n"), 1)
	if bytes.Equal(forged, crlf) {
		t.Fatalf("no size 5 in %q", note)
	}
	store := []string{"audit", "verify", "--data-dir", dataDir}
	for _, c := range []struct {
		name     string
		args     []string
		code     int
		out, err string // what stdout / stderr must hold
	}{
		{"kept as saved", []string{"--checkpoint", kept}, 0, "extends the checkpoint of 5 entries", ""},
		{"byte order mark", []string{"--checkpoint", file("bom", append([]byte(bom), note...))}, 0, "extends the checkpoint of 5 entries", ""},
		{"CR LF", []string{"--checkpoint", file("crlf", crlf)}, 0, "extends the checkpoint of 5 entries", ""},
		{"byte order mark and CR LF", []string{"--checkpoint", file("bomcrlf", append([]byte(bom), crlf...))}, 0, "extends the checkpoint of 5 entries", ""},
		{"JSON with a byte order mark", []string{"--checkpoint", file("bom.json", append([]byte(bom), asJSON...))}, 0, "extends the checkpoint of 5 entries", ""},
		{"forged, with CR LF", []string{"--checkpoint", file("forged", forged)}, 1, "FAILED: audit log: the earlier checkpoint's signature is not valid", ""},
		{"empty checkpoint", []string{"--checkpoint", file("empty", nil)}, 2, "", "The checkpoint file is empty. Pass the file --save wrote"},
		{"blank checkpoint", []string{"--checkpoint", file("blank", []byte(bom+" \r\n"))}, 2, "", "The checkpoint file is empty."},
		{"missing checkpoint", []string{"--checkpoint", filepath.Join(dir, "none")}, 2, "", "Cannot read the checkpoint file"},
		{"workspace 0", []string{"--workspace", "0"}, 2, "", "--workspace 0: want a workspace number, 1 or more"},
		{"workspace -1", []string{"--workspace", "-1"}, 2, "", "--workspace -1: want"},
		{"no such workspace", []string{"--workspace", "99"}, 3, "", "Workspace 99 is not in this store. The server made workspace 1"},
		{"save into a missing directory", []string{"--save", filepath.Join(dir, "none", "x")}, 2, "", "Cannot write the --save file"},
		{"save onto a directory", []string{"--save", dir}, 2, "", "The --save path is a directory."},
		{"url and data dir", []string{"--url", "http://127.0.0.1:1", "--api-key", "k"}, 2, "", "give one of --url (a running server) or --data-dir/--database-url (a store), not both"},
		{"url and database url", []string{"--url", "http://127.0.0.1:1", "--api-key", "k", "--database-url", "postgres://127.0.0.1:1/x"}, 2, "", "give one of"},
		{"save after a failure", []string{"--checkpoint", filepath.Join(dir, "forged"), "--save", filepath.Join(dir, "saved")}, 1, "FAILED", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, append(store, c.args...)...)
			if code != c.code || !strings.Contains(out, c.out) || !strings.Contains(errOut, c.err) {
				t.Fatalf("exit %d, want %d with %q / %q\nstdout: %s\nstderr: %s", code, c.code, c.out, c.err, out, errOut)
			}
			if c.code == 2 && out != "" {
				t.Errorf("a usage error printed a verdict: %s", out)
			}
			if strings.Contains(errOut, "an API key works on its own workspace") {
				t.Errorf("a hint for API users: %s", errOut)
			}
		})
	}
	// Nothing was written but the files above: no --save output after a
	// failure, no temporary file left behind.
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() == "saved" || strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("%s was left in the directory", e.Name())
		}
	}

	// --save over the --checkpoint it read, once the log grew: replaced.
	appendAudit(t, dataDir, 3)
	code, out, errOut := runCLI(t, append(store, "--checkpoint", kept, "--save", kept)...)
	if code != 0 || !strings.Contains(out, "verifies: 8 entries") || !strings.Contains(out, "extends the checkpoint of 5 entries") {
		t.Fatalf("verify = %d\n%s%s", code, out, errOut)
	}
	if b, err := os.ReadFile(kept); err != nil || !bytes.HasPrefix(b, []byte("go.sum database tree\n8\n")) {
		t.Fatalf("saved checkpoint: %q, %v", b, err)
	}
}

// bootstrapStore makes the data directory a first start of the server leaves
// (master key, store, workspace 1), without starting one.
func bootstrapStore(t *testing.T, dataDir string) {
	t.Helper()
	ctx := context.Background()
	master, _, err := keyring.LoadMasterKey("", filepath.Join(dataDir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	db, err := sqlite.Open(ctx, dataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	b := &trustloop.Bootstrap{
		Workspace: trustloop.Workspace{Name: "default", IndexKey: keyring.New(master, 1).NewIndexKey()},
		Source:    trustloop.Source{Name: "default", WriteKeyHash: bytes.Repeat([]byte{1}, 32)},
		AdminKey:  trustloop.APIKey{Name: "admin", SecretHash: bytes.Repeat([]byte{2}, 32), Roles: []string{trustloop.RoleAdmin}},
	}
	if _, err := db.Bootstrap(ctx, b); err != nil || b.Workspace.ID != 1 {
		t.Fatalf("bootstrap: workspace %d, %v", b.Workspace.ID, err)
	}
}
