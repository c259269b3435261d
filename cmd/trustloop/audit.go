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
	auditUsage    = 2 // bad flags or input files: nothing was checked
	auditFailed   = 3 // could not check (server or store unreachable, no such workspace)
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
entry, or the rollback. Exit status: 0 verified, 1 tampered, 2 usage (bad flags,
or a --checkpoint or --save file that cannot be used), 3 could not check.

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
	// An empty --checkpoint (an unset variable in a script) would skip the
	// check that the log only grew, as an empty file would.
	for _, name := range []string{"checkpoint", "save"} {
		if f := fs.Lookup(name); f != nil && cli[name] && f.Value.String() == "" {
			fmt.Fprintf(stderr, "trustloop audit verify: --%s is empty: give the file, or leave the flag out\n", name)
			return auditUsage
		}
	}
	if *workspace < 1 {
		fmt.Fprintf(stderr, "trustloop audit verify: --workspace %d: want a workspace number, 1 or more (the server made workspace 1 at its first start)\n", *workspace)
		return auditUsage
	}
	// Both on the command line is a mistake to point out, not one to settle
	// silently by checking something else than the operator meant.
	if cli["url"] && (cli["data-dir"] || cli["database-url"]) {
		fmt.Fprintln(stderr, "trustloop audit verify: give one of --url (a running server) or --data-dir/--database-url (a store), not both")
		return auditUsage
	}
	// The command line decides the mode before the environment does: a
	// TRUSTLOOP_DATA_DIR set for the server must not turn --url into a store check.
	viaHTTP := cli["url"] || (*serverURL != "" && !cli["data-dir"] && !cli["database-url"])
	switch {
	case viaHTTP && *apiKey == "":
		fmt.Fprintln(stderr, "trustloop audit verify: --api-key is required with --url (any key of the workspace)")
		return auditUsage
	case !viaHTTP && *dbURL == "" && *dataDir == "":
		fmt.Fprint(stderr, auditUsageText)
		fmt.Fprintln(stderr, "trustloop audit verify: give --url (a running server) or --data-dir/--database-url (a store)")
		return auditUsage
	}
	v := &auditVerifier{stdout: stdout, stderr: stderr, pinned: *vkey}
	var err error
	if *older != "" {
		if v.older, err = readCheckpointFile(*older); err != nil {
			fmt.Fprintln(stderr, "trustloop audit verify:", describe(err))
			return auditUsage
		}
	}
	// A --save that cannot be written is found now, not after the verdict.
	var saver *checkpointSaver
	if *save != "" {
		if saver, err = newCheckpointSaver(*save); err != nil {
			fmt.Fprintln(stderr, "trustloop audit verify:", describe(err))
			return auditUsage
		}
		defer saver.discard()
	}
	var res *auditlog.Verified
	if viaHTTP {
		res, err = v.overHTTP(ctx, strings.TrimSuffix(*serverURL, "/"), *apiKey)
	} else {
		res, err = v.inStore(ctx, *dataDir, *dbURL, *masterKeyFile, *workspace)
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
	if saver != nil {
		if err := saver.save(res.Note); err != nil {
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
		return nil, trustloop.Errorf(trustloop.EINVALID, "Cannot read the checkpoint file: %v.", unwrapPath(err)).
			WithHint("Pass the file --save wrote.")
	}
	// A byte order mark and CR LF line ends are what an editor on Windows adds
	// when the file is opened and saved: undone here, they would fail the
	// signature (the note is signed with LF ends) and read as a forgery. The
	// signature is still checked, over the note as --save wrote it.
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	if len(bytes.TrimSpace(b)) == 0 {
		// Taken as no checkpoint, it would skip the check that the log only grew.
		return nil, trustloop.Errorf(trustloop.EINVALID, "The checkpoint file is empty.").
			WithHint("Pass the file --save wrote (or the JSON of GET /v1/audit/checkpoint); to verify without one, leave out --checkpoint.")
	}
	if t := bytes.TrimSpace(b); t[0] == '{' { // not empty: checked above
		var c struct{ Note string }
		if json.Unmarshal(t, &c) != nil || c.Note == "" {
			return nil, trustloop.Errorf(trustloop.EINVALID, "The checkpoint file is JSON without a note.").
				WithHint("Pass the file --save wrote, or the JSON of GET /v1/audit/checkpoint.")
		}
		return []byte(c.Note), nil
	}
	return b, nil
}

// checkpointSaver writes the verified checkpoint for --save: into a temporary
// file beside the target, made before verifying so that a path that cannot be
// written is refused first, and renamed over the target only once the log
// verified, so that a failed run leaves the kept checkpoint (often the same
// file as --checkpoint) as it was.
type checkpointSaver struct {
	path string
	tmp  *os.File
}

func newCheckpointSaver(path string) (*checkpointSaver, error) {
	// Renaming over a link would replace the link: write where it points.
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		if target, err := filepath.EvalSymlinks(path); err == nil {
			path = target
		}
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return nil, trustloop.Errorf(trustloop.EINVALID, "The --save path is a directory.").
			WithHint("Give a file name in it, such as checkpoint.txt.")
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, trustloop.Errorf(trustloop.EINVALID, "Cannot write the --save file: %v.", unwrapPath(err)).
			WithHint("Give a file in an existing directory you can write to.")
	}
	return &checkpointSaver{path: path, tmp: tmp}, nil
}

// save writes note and puts it in place.
func (s *checkpointSaver) save(note []byte) error {
	_, err := s.tmp.Write(note)
	if err == nil {
		// Readable by all, as before: a checkpoint is public (signed hashes).
		err = s.tmp.Chmod(0o644)
	}
	if e := s.tmp.Close(); err == nil {
		err = e
	}
	if err == nil {
		err = os.Rename(s.tmp.Name(), s.path)
	}
	return err
}

// discard removes the temporary file, if save did not rename it.
func (s *checkpointSaver) discard() {
	s.tmp.Close()
	os.Remove(s.tmp.Name())
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
// never creates a master key (keyring.LoadMasterKey would, for a server):
// it reads one with keyring.ReadMasterKey.
func storeVerifierKey(ctx context.Context, store interface {
	FindWorkspace(ctx context.Context, id int64) (*trustloop.Workspace, error)
}, dataDir, masterKeyFile string, ws int64) (string, error) {
	env := os.Getenv("TRUSTLOOP_MASTER_KEY")
	if masterKeyFile == "" && dataDir != "" {
		masterKeyFile = filepath.Join(dataDir, "master.key")
	}
	master, err := keyring.ReadMasterKey(env, masterKeyFile) // nil when neither gives one
	if err != nil {
		return "", err
	}
	if master == nil {
		return "", trustloop.Errorf(trustloop.EINVALID, "No verifier key: none was pinned and no master key was found to derive it.").
			WithHint("Pass --verifier-key (from GET /v1/audit/checkpoint), or TRUSTLOOP_MASTER_KEY / --master-key-file.")
	}
	w, err := store.FindWorkspace(ctx, ws)
	if trustloop.ErrorCode(err) == trustloop.ENOTFOUND {
		// The store's own hint is about API keys; here the number came from
		// --workspace.
		return "", trustloop.Errorf(trustloop.ENOTFOUND, "Workspace %d is not in this store.", ws).
			WithHint("The server made workspace 1 at its first start; another workspace's number is the workspace_id GET /v1/audit/checkpoint answers with one of its API keys (or pass its --verifier-key).")
	}
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
