package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/auditlog"
	"github.com/trustloop/trustloop/keyring"
	"github.com/trustloop/trustloop/postgres"
	"github.com/trustloop/trustloop/sqlite"
	"golang.org/x/mod/sumdb/tlog"
)

// Exit codes of `trustloop audit verify`.
const (
	auditOK       = 0
	auditTampered = 1 // the log differs from what its checkpoints signed
	auditUsage    = 2
	auditFailed   = 3 // could not check (server unreachable, bad input)
)

// exitCode ends Run with a process exit code, its message already printed.
type exitCode struct{ code int }

func (e *exitCode) Error() string { return "exit status " + strconv.Itoa(e.code) }

// auditExit turns runAudit's exit code into Run's error.
func auditExit(code int) error {
	if code == auditOK {
		return nil
	}
	return &exitCode{code}
}

const auditUsageText = `Usage:
  trustloop audit verify --url http://host:8080 --api-key KEY [flags]
  trustloop audit verify --data-dir DIR | --database-url URL [flags]

Checks the workspace's audit log against its signed checkpoint, offline: the
signature (with the workspace's verifier key), that the entries are exactly
those the checkpoint signed, and, given an earlier checkpoint you kept, that the
log only grew since. Names the first changed, deleted, reordered or inserted
entry, or the rollback. Exit status: 0 verified, 1 tampered, 2 usage, 3 could
not check.

Flags:
`

// runAudit runs `trustloop audit <subcommand>` and returns the exit code.
func runAudit(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "verify" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help") {
			return runAudit(ctx, []string{"verify", "-h"}, stdout, stdout)
		}
		fmt.Fprint(stderr, auditUsageText)
		fmt.Fprintln(stderr, "trustloop audit: the subcommand is verify")
		return auditUsage
	}
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), auditUsageText)
		fs.PrintDefaults()
	}
	serverURL := fs.String("url", "", "base URL of a running server to verify over HTTP")
	apiKey := fs.String("api-key", "", "an API key of the workspace (any role)")
	vkey := fs.String("verifier-key", "", "the workspace's verifier key, pinned (e.g. trustloop.audit/ws-1+1a2b3c4d+AZ…); without it, the key the server or store presents is used, with a warning")
	older := fs.String("checkpoint", "", "file holding an earlier checkpoint you kept: the log must extend it")
	save := fs.String("save", "", "file to write the verified checkpoint to, to pass as --checkpoint next time")
	dataDir := fs.String("data-dir", "", "verify the embedded store in this data directory instead of a server")
	dbURL := fs.String("database-url", "", "verify this PostgreSQL store instead of a server")
	masterKeyFile := fs.String("master-key-file", "", "with a store and no --verifier-key: the master key file to derive the verifier key from (default <data-dir>/master.key; TRUSTLOOP_MASTER_KEY wins)")
	workspace := fs.Int64("workspace", 1, "with a store and no --verifier-key: the workspace to verify")
	if err := parseFlags(fs, args[1:]); err != nil {
		if err == errHelp {
			return auditOK
		}
		fmt.Fprintln(stderr, "trustloop audit verify:", err)
		return auditUsage
	}
	cli := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { cli[f.Name] = true })
	// The command line decides the mode before the environment does: a
	// TRUSTLOOP_DATA_DIR set for the server must not turn --url into a store check.
	v := &auditVerifier{stdout: stdout, stderr: stderr, pinned: *vkey}
	var res *auditlog.Verified
	var err error
	if *older != "" {
		if v.older, err = readCheckpointFile(*older); err != nil {
			fmt.Fprintln(stderr, "trustloop audit verify:", describe(err))
			return auditUsage
		}
	}
	switch {
	case cli["url"] || (*serverURL != "" && !cli["data-dir"] && !cli["database-url"]):
		if *apiKey == "" {
			fmt.Fprintln(stderr, "trustloop audit verify: --api-key is required with --url (any key of the workspace)")
			return auditUsage
		}
		res, err = v.overHTTP(ctx, strings.TrimSuffix(*serverURL, "/"), *apiKey)
	case *dbURL != "" || *dataDir != "":
		res, err = v.inStore(ctx, *dataDir, *dbURL, *masterKeyFile, *workspace)
	default:
		fmt.Fprint(stderr, auditUsageText)
		fmt.Fprintln(stderr, "trustloop audit verify: give --url (a running server) or --data-dir/--database-url (a store)")
		return auditUsage
	}
	var te *auditlog.TamperError
	switch {
	case errors.As(err, &te):
		fmt.Fprintln(stdout, "FAILED:", te.Error())
		return auditTampered
	case err != nil:
		fmt.Fprintln(stderr, "trustloop audit verify: could not check:", describe(err))
		return auditFailed
	}
	verdict := fmt.Sprintf("OK: workspace %d's audit log verifies: %d entries, tree hash %s", res.WorkspaceID, res.Tree.N, res.Tree.Hash)
	if res.Older != nil {
		verdict += fmt.Sprintf("; it extends the checkpoint of %d entries in %s", res.Older.N, *older)
	}
	if res.Uncovered > 0 {
		verdict += fmt.Sprintf("; %d newer entries are not checkpointed yet", res.Uncovered)
	}
	if *save != "" {
		if err := os.WriteFile(*save, res.Note, 0o644); err != nil {
			fmt.Fprintln(stdout, verdict)
			fmt.Fprintln(stderr, "trustloop audit verify: could not save the checkpoint:", err)
			return auditFailed
		}
		verdict += "; checkpoint saved to " + *save
	}
	fmt.Fprintln(stdout, verdict)
	return auditOK
}

type auditVerifier struct {
	stdout, stderr io.Writer
	pinned         string
	older          []byte
}

// key returns the pinned verifier key, else the presented one with a warning.
func (v *auditVerifier) key(presented, from string) string {
	if v.pinned != "" {
		if presented != "" && presented != v.pinned {
			fmt.Fprintf(v.stderr, "warning: %s presents another verifier key (%s) than the pinned one; checking with the pinned key\n", from, presented)
		}
		return v.pinned
	}
	fmt.Fprintf(v.stderr, "warning: the verifier key is not pinned; using the one %s presents: %s\n"+
		"  Keep it where the server cannot change it and pass it with --verifier-key from now on.\n", from, presented)
	return presented
}

// readCheckpointFile reads a kept checkpoint: the note as --save wrote it, or
// the JSON GET /v1/audit/checkpoint answered.
func readCheckpointFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, trustloop.Errorf(trustloop.EINVALID, "Cannot read the checkpoint file: %v.", errors.Unwrap(err)).
			WithHint("Pass the file --save wrote.")
	}
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '{' {
		var c struct{ Note string }
		if json.Unmarshal(t, &c) != nil || c.Note == "" {
			return nil, trustloop.Errorf(trustloop.EINVALID, "The checkpoint file is JSON without a note.").
				WithHint("Pass the file --save wrote, or the JSON of GET /v1/audit/checkpoint.")
		}
		return []byte(c.Note), nil
	}
	return b, nil
}

// overHTTP verifies the log a running server serves: its checkpoint, its entries
// page by page, and its consistency proofs to find a bad entry.
func (v *auditVerifier) overHTTP(ctx context.Context, base, apiKey string) (*auditlog.Verified, error) {
	c := &auditClient{base: base, key: apiKey, http: &http.Client{Timeout: 60 * time.Second}}
	var cp struct {
		Size        int64  `json:"size"`
		VerifierKey string `json:"verifier_key"`
		Note        string `json:"note"`
	}
	if err := c.get(ctx, "/v1/audit/checkpoint", nil, &cp); err != nil {
		return nil, err
	}
	latest := []byte(cp.Note)
	// Entries up to the size the signed note states (not the unsigned JSON's):
	// anything appended later is for the next checkpoint.
	vkey := v.key(cp.VerifierKey, "the server")
	tree, _, err := auditlog.OpenCheckpoint(latest, vkey)
	if err != nil {
		return nil, err
	}
	return auditlog.Verify(ctx, auditlog.VerifyInput{Records: c.records(ctx, tree.N), Checkpoint: latest, Older: v.older,
		VerifierKey: vkey, Proofs: c})
}

// inStore verifies a workspace's log directly in a store, against the latest
// checkpoint stored there.
func (v *auditVerifier) inStore(ctx context.Context, dataDir, dbURL, masterKeyFile string, ws int64) (*auditlog.Verified, error) {
	var store interface {
		trustloop.AuditStore
		FindWorkspace(ctx context.Context, id int64) (*trustloop.Workspace, error)
		Close() error
	}
	if dbURL != "" {
		db, err := postgres.Open(ctx, dbURL)
		if err != nil {
			return nil, err
		}
		store = db
	} else {
		// Read-only and without the directory lock: a running server may hold it.
		db, err := sqlite.OpenReadOnly(ctx, dataDir)
		if err != nil {
			return nil, err
		}
		store = db
	}
	defer store.Close()
	vkey := v.pinned
	if vkey == "" {
		presented, err := storeVerifierKey(ctx, store, dataDir, masterKeyFile, ws)
		if err != nil {
			return nil, err
		}
		vkey = v.key(presented, "the master key")
	}
	return auditlog.VerifyStore(ctx, store, vkey, v.older)
}

// storeVerifierKey derives a workspace's verifier key from the master key. It
// never creates a master key (keyring.LoadMasterKey would, for a server).
func storeVerifierKey(ctx context.Context, store interface {
	FindWorkspace(ctx context.Context, id int64) (*trustloop.Workspace, error)
}, dataDir, masterKeyFile string, ws int64) (string, error) {
	env := os.Getenv("TRUSTLOOP_MASTER_KEY")
	if masterKeyFile == "" && dataDir != "" {
		masterKeyFile = filepath.Join(dataDir, "master.key")
	}
	if env == "" {
		if _, err := os.Stat(masterKeyFile); masterKeyFile == "" || err != nil {
			return "", trustloop.Errorf(trustloop.EINVALID, "No verifier key: none was pinned and no master key was found to derive it.").
				WithHint("Pass --verifier-key (from GET /v1/audit/checkpoint), or TRUSTLOOP_MASTER_KEY / --master-key-file.")
		}
	}
	master, _, err := keyring.LoadMasterKey(env, masterKeyFile)
	if err != nil {
		return "", err
	}
	w, err := store.FindWorkspace(ctx, ws)
	if err != nil {
		return "", err
	}
	kr := keyring.New(master, 1)
	if err := kr.AddWorkspace(w); err != nil {
		return "", err
	}
	key, err := kr.SigningKey(ws)
	if err != nil {
		return "", err
	}
	return auditlog.VerifierKeyOf(ws, key.Public().(ed25519.PublicKey))
}

// auditClient reads the audit API of a server.
type auditClient struct {
	base, key string
	http      *http.Client
}

func (c *auditClient) get(ctx context.Context, path string, q url.Values, v any) error {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return &usageError{fmt.Sprintf("--url %q: %v", c.base, err)}
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error struct{ Code, Message, Hint string }
		}
		if json.Unmarshal(body, &e) == nil && e.Error.Message != "" {
			return &trustloop.Error{Code: e.Error.Code, Message: fmt.Sprintf("GET %s: %d %s", path, resp.StatusCode, e.Error.Message), Hint: e.Error.Hint}
		}
		return fmt.Errorf("GET %s: status %d", path, resp.StatusCode)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: the answer is not the expected JSON: %w", path, err)
	}
	return nil
}

// records yields the entries [0, n) as served, page by page, as the exact bytes
// the server sent (no decoding and encoding again before hashing).
func (c *auditClient) records(ctx context.Context, n int64) iter.Seq2[trustloop.AuditRecord, error] {
	return func(yield func(trustloop.AuditRecord, error) bool) {
		const page = 1000
		for start := int64(0); start < n; start += page {
			var p struct {
				Entries []json.RawMessage `json:"entries"`
			}
			end := min(start+page, n)
			q := url.Values{"start": {strconv.FormatInt(start, 10)}, "end": {strconv.FormatInt(end, 10)}}
			if err := c.get(ctx, "/v1/audit/entries", q, &p); err != nil {
				yield(trustloop.AuditRecord{}, err)
				return
			}
			for _, raw := range p.Entries {
				if !yield(trustloop.AuditRecord{Index: -1, Data: raw}, nil) {
					return
				}
			}
		}
	}
}

// ConsistencyProof asks the server for a proof (auditlog.Proofs).
func (c *auditClient) ConsistencyProof(ctx context.Context, old, new int64) (tlog.TreeProof, error) {
	var p struct {
		Proof []tlog.Hash `json:"proof"`
	}
	q := url.Values{"old": {strconv.FormatInt(old, 10)}, "new": {strconv.FormatInt(new, 10)}}
	if err := c.get(ctx, "/v1/audit/proof/consistency", q, &p); err != nil {
		return nil, err
	}
	return p.Proof, nil
}
