package main_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/auditlog"
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
	code, out, errOut := runCLI(t, "audit", "verify", "--url", s.url, "--api-key", "e2e-admin-key", "--save", kept)
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
	code, out, errOut = runCLI(t, "audit", "verify", "--url", s.url, "--api-key", "e2e-admin-key", "--verifier-key", vkey, "--checkpoint", kept)
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
	code, out, errOut = runCLI(t, "audit", "verify", "--url", s.url, "--api-key", "e2e-admin-key", "--verifier-key", vkey, "--checkpoint", kept)
	if code != 1 || !strings.Contains(out, "FAILED: audit log: entry 17:") {
		t.Fatalf("verify over HTTP after the edit = %d, want 1 naming entry 17\n%s%s", code, out, errOut)
	}
	t.Log(strings.TrimSpace(out))
	// A wrong pinned key (another workspace's name) fails as such, not as a pass.
	code, out, errOut = runCLI(t, "audit", "verify", "--url", s.url, "--api-key", "e2e-admin-key",
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
