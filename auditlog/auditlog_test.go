package auditlog_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"iter"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/auditlog"
	"github.com/trustloop/trustloop/keyring"
	"github.com/trustloop/trustloop/sqlite"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// env is a real SQLite store with a bootstrapped workspace and its keyring.
type env struct {
	dir  string
	db   *sqlite.DB
	keys *keyring.Keyring
	ws   int64
}

func newEnv(t testing.TB) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	db, err := sqlite.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	keys := keyring.New(bytes.Repeat([]byte{9}, keyring.KeySize), 100)
	keys.Load = db.FindWorkspace
	b := &trustloop.Bootstrap{
		Workspace: trustloop.Workspace{Name: "default", IndexKey: keys.NewIndexKey()},
		Source:    trustloop.Source{Name: "web", WriteKeyHash: bytes.Repeat([]byte{1}, 32)},
		AdminKey:  trustloop.APIKey{Name: "admin", SecretHash: bytes.Repeat([]byte{2}, 32), Roles: []string{trustloop.RoleAdmin}},
	}
	if _, err := db.Bootstrap(ctx, b); err != nil {
		t.Fatal(err)
	}
	return &env{dir: dir, db: db, keys: keys, ws: b.Workspace.ID}
}

func (e *env) open(t testing.TB, cfg auditlog.Config) *auditlog.Log {
	t.Helper()
	l := auditlog.New(e.db, e.keys, cfg)
	t.Cleanup(func() { l.Close() })
	return l
}

// exec changes the database behind the store's back, as someone with access to
// the file would.
func (e *env) exec(t *testing.T, stmts ...string) {
	t.Helper()
	// Any read of the log moves the store's journal into the tables first.
	if _, err := e.db.AuditSize(context.Background(), e.ws); err != nil {
		t.Fatal(err)
	}
	c, err := sql.Open("sqlite", "file:"+filepath.Join(e.dir, sqlite.FileName)+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, s := range stmts {
		if _, err := c.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

func (e *env) vkey(t testing.TB) string {
	t.Helper()
	k, err := auditlog.New(e.db, e.keys, auditlog.Config{}).VerifierKey(e.ws)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// dataUse is a valid data-use entry of workspace ws; i varies it.
func dataUse(ws int64, i int) trustloop.AuditEntry {
	purposes := []string{"marketing", "analytics", "personalization"}
	return trustloop.AuditEntry{WorkspaceID: ws, Kind: trustloop.AuditDataUse,
		Actor:   trustloop.AuditActor{Kind: trustloop.ActorAPIKey, ID: fmt.Sprintf("key:%d", i%3+1)},
		Purpose: purposes[i%3], Subject: fmt.Sprint(7_000_000 + i), Categories: []string{"contact"},
		Action: "GET /v1/profiles/{id}"}
}

func mustAppend(t testing.TB, l *auditlog.Log, ws int64, from, n int) {
	t.Helper()
	batch := make([]trustloop.AuditEntry, n)
	for i := range batch {
		batch[i] = dataUse(ws, from+i)
	}
	if err := l.Append(context.Background(), batch...); err != nil {
		t.Fatal(err)
	}
}

func mustCheckpoint(t testing.TB, l *auditlog.Log, ws int64) []byte {
	t.Helper()
	c, err := l.Checkpoint(context.Background(), ws)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// served is the log as the HTTP API serves it: entry bytes only, no stored hashes.
func served(ctx context.Context, s trustloop.AuditStore, ws int64) iter.Seq2[trustloop.AuditRecord, error] {
	return func(yield func(trustloop.AuditRecord, error) bool) {
		for r, err := range auditlog.StoreRecords(ctx, s, ws) {
			if !yield(trustloop.AuditRecord{Data: r.Data}, err) {
				return
			}
		}
	}
}

func TestAppendGroupCommits(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	l := e.open(t, auditlog.Config{})
	const callers, each = 64, 30
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for c := 0; c < callers; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if err := l.Append(ctx, dataUse(e.ws, c*each+i)); err != nil {
					errs <- err
					return
				}
				// Durable on return: the entry is in the store already.
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	n, err := l.Size(ctx, e.ws)
	if err != nil || n != callers*each {
		t.Fatalf("Size = %d, %v; want %d", n, err, callers*each)
	}
	mustCheckpoint(t, l, e.ws)
	v, err := auditlog.VerifyStore(ctx, e.db, e.vkey(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if v.Tree.N != callers*each || v.WorkspaceID != e.ws {
		t.Fatalf("verified %+v", v)
	}
}

func TestAppendRefusesBadEntries(t *testing.T) {
	e := newEnv(t)
	l := e.open(t, auditlog.Config{})
	bad := dataUse(e.ws, 1)
	bad.Subject = "jane@example.com"
	err := l.Append(context.Background(), dataUse(e.ws, 0), bad)
	if trustloop.ErrorCode(err) != trustloop.EINVALID || strings.Contains(trustloop.ErrorMessage(err), "jane") {
		t.Fatalf("err = %v, want invalid without the value", err)
	}
	if n, _ := l.Size(context.Background(), e.ws); n != 0 {
		t.Fatalf("Size = %d after a refused call, want 0", n)
	}
	// Other callers are not affected.
	mustAppend(t, l, e.ws, 0, 3)
	l.Close()
	if err := l.Append(context.Background(), dataUse(e.ws, 9)); trustloop.ErrorCode(err) != trustloop.EUNAVAILABLE {
		t.Fatalf("Append after Close: err = %v, want unavailable", err)
	}
}

func TestCheckpointsAndProofs(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	l := e.open(t, auditlog.Config{})
	vkey, err := l.VerifierKey(e.ws)
	if err != nil || !strings.HasPrefix(vkey, "trustloop.audit/ws-1+") {
		t.Fatalf("VerifierKey = %q, %v", vkey, err)
	}
	mustAppend(t, l, e.ws, 0, 37)
	first := mustCheckpoint(t, l, e.ws)
	old, ws, err := auditlog.OpenCheckpoint(first, vkey)
	if err != nil || old.N != 37 || ws != e.ws {
		t.Fatalf("OpenCheckpoint = %+v, %d, %v", old, ws, err)
	}
	// No growth, no new checkpoint: the same note (Ed25519 is deterministic).
	if again := mustCheckpoint(t, l, e.ws); !bytes.Equal(again, first) {
		t.Fatal("a second checkpoint of the same tree differs")
	}
	mustAppend(t, l, e.ws, 37, 63)
	cur, _, err := auditlog.OpenCheckpoint(mustCheckpoint(t, l, e.ws), vkey)
	if err != nil || cur.N != 100 {
		t.Fatalf("second checkpoint = %+v, %v", cur, err)
	}
	stored, err := e.db.LatestAuditCheckpoint(ctx, e.ws)
	if err != nil || stored.Size != 100 || stored.Hash != cur.Hash {
		t.Fatalf("stored checkpoint = %+v, %v", stored, err)
	}
	recs, err := l.Records(ctx, e.ws, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range recs {
		p, err := l.InclusionProof(ctx, e.ws, int64(i), cur.N)
		if err != nil {
			t.Fatal(err)
		}
		if err := tlog.CheckRecord(p, cur.N, cur.Hash, int64(i), tlog.RecordHash(r.Data)); err != nil {
			t.Fatalf("inclusion of %d: %v", i, err)
		}
	}
	for _, m := range []int64{1, 2, 36, 37, 64, 99, 100} {
		p, err := l.ConsistencyProof(ctx, e.ws, m, cur.N)
		if err != nil {
			t.Fatal(err)
		}
		h, err := tlog.TreeHash(m, tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) { return e.db.ReadAuditHashes(ctx, e.ws, idx) }))
		if err != nil {
			t.Fatal(err)
		}
		if err := tlog.CheckTree(p, cur.N, cur.Hash, m, h); err != nil {
			t.Fatalf("consistency %d→100: %v", m, err)
		}
	}
	p, err := l.ConsistencyProof(ctx, e.ws, 37, 100)
	if err != nil || tlog.CheckTree(p, cur.N, cur.Hash, old.N, old.Hash) != nil {
		t.Fatalf("the checkpoints are not consistent: %v", err)
	}
	// Bad ranges are EINVALID with a hint.
	for _, c := range [][2]int64{{-1, 10}, {10, 10}, {0, 101}, {5, 0}} {
		if _, err := l.InclusionProof(ctx, e.ws, c[0], c[1]); trustloop.ErrorCode(err) != trustloop.EINVALID {
			t.Errorf("InclusionProof(%d, %d): err = %v, want invalid", c[0], c[1], err)
		}
	}
	for _, c := range [][2]int64{{0, 10}, {11, 10}, {5, 101}} {
		if _, err := l.ConsistencyProof(ctx, e.ws, c[0], c[1]); trustloop.ErrorCode(err) != trustloop.EINVALID {
			t.Errorf("ConsistencyProof(%d, %d): err = %v, want invalid", c[0], c[1], err)
		}
	}
}

// TestWorkspacesHaveTheirOwnTrees (T9): another workspace's entries change
// nothing in this workspace's tree, and its key does not verify this log.
func TestWorkspacesHaveTheirOwnTrees(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	other := &trustloop.Workspace{ID: e.ws + 1, Name: "other", IndexKey: e.keys.NewIndexKey()}
	if err := e.keys.AddWorkspace(other); err != nil {
		t.Fatal(err)
	}
	l := e.open(t, auditlog.Config{})
	mustAppend(t, l, e.ws, 0, 10)
	before, _, _ := auditlog.OpenCheckpoint(mustCheckpoint(t, l, e.ws), e.vkey(t))
	mustAppend(t, l, other.ID, 0, 25)
	after, _, err := auditlog.OpenCheckpoint(mustCheckpoint(t, l, e.ws), e.vkey(t))
	if err != nil || after != before {
		t.Fatalf("another workspace's entries changed this tree: %+v → %+v (%v)", before, after, err)
	}
	otherKey, _ := l.VerifierKey(other.ID)
	if _, _, err := auditlog.OpenCheckpoint(mustCheckpoint(t, l, e.ws), otherKey); !isTamper(err, -1) {
		t.Fatalf("another workspace's key verified this checkpoint: %v", err)
	}
	mustCheckpoint(t, l, other.ID)
	v, err := auditlog.VerifyStore(ctx, e.db, otherKey, nil)
	if err != nil || v.Tree.N != 25 {
		t.Fatalf("the other workspace's log: %+v, %v", v, err)
	}
}

func TestCheckpointCadence(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	l := e.open(t, auditlog.Config{CheckpointEvery: 20 * time.Millisecond})
	mustAppend(t, l, e.ws, 0, 5)
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := e.db.LatestAuditCheckpoint(ctx, e.ws)
		if err == nil && c.Size == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint of the appended entries within 5s: %+v, %v", c, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Close writes a last checkpoint of what grew since.
	mustAppend(t, l, e.ws, 5, 3)
	l.Close()
	if c, err := e.db.LatestAuditCheckpoint(ctx, e.ws); err != nil || c.Size != 8 {
		t.Fatalf("after Close the latest checkpoint = %+v, %v; want size 8", c, err)
	}
}

func isTamper(err error, index int64) bool {
	var te *auditlog.TamperError
	return errors.As(err, &te) && te.Index == index
}

func TestVerifyCleanLog(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	l := e.open(t, auditlog.Config{})
	mustAppend(t, l, e.ws, 0, 20)
	older := mustCheckpoint(t, l, e.ws)
	mustAppend(t, l, e.ws, 20, 21)
	latest := mustCheckpoint(t, l, e.ws)
	mustAppend(t, l, e.ws, 41, 4) // not covered yet
	v, err := auditlog.Verify(ctx, auditlog.VerifyInput{Records: served(ctx, e.db, e.ws), Checkpoint: latest, Older: older,
		VerifierKey: e.vkey(t), Proofs: auditlog.StoreProofs{Store: e.db, WorkspaceID: e.ws}})
	if err != nil {
		t.Fatal(err)
	}
	if v.Tree.N != 41 || v.Older == nil || v.Older.N != 20 || v.Uncovered != 4 {
		t.Fatalf("verified %+v", v)
	}
	// An empty log verifies too.
	e2 := newEnv(t)
	l2 := e2.open(t, auditlog.Config{})
	if v, err := auditlog.VerifyStore(ctx, e2.db, e2.vkey(t), mustCheckpoint(t, l2, e2.ws)); err != nil || v.Tree.N != 0 {
		t.Fatalf("empty log: %+v, %v", v, err)
	}
}

// TestTamperDetected is the acceptance test of T7: edits made directly in the
// database are found, and the first bad entry named, both when verifying the
// store (records with their stored hashes) and when verifying what the API
// serves (entries only, the server's checkpoint and proofs).
func TestTamperDetected(t *testing.T) {
	const n = 40
	for _, tc := range []struct {
		name  string
		sql   []string
		index int64
	}{
		{"change an entry's bytes", []string{
			`UPDATE audit_entries SET data = CAST(replace(CAST(data AS TEXT), '"purpose":"personalization"', '"purpose":"essential"') AS BLOB) WHERE idx = 17`,
		}, 17},
		{"delete an entry", []string{
			`DELETE FROM audit_entries WHERE idx = 5`,
		}, 5},
		{"delete an entry and close the gap", []string{
			`DELETE FROM audit_entries WHERE idx = 5`,
			`UPDATE audit_entries SET idx = idx + 1000 WHERE idx > 5`,
			`UPDATE audit_entries SET idx = idx - 1001 WHERE idx > 1000`,
		}, 5},
		{"swap two entries", []string{
			`UPDATE audit_entries SET idx = -1 WHERE idx = 10`,
			`UPDATE audit_entries SET idx = 10 WHERE idx = 20`,
			`UPDATE audit_entries SET idx = 20 WHERE idx = -1`,
		}, 10},
		{"insert an entry", []string{
			`UPDATE audit_entries SET idx = idx + 1000 WHERE idx >= 15`,
			`UPDATE audit_entries SET idx = idx - 999 WHERE idx >= 1000`,
			`INSERT INTO audit_entries (workspace_id, idx, data) SELECT workspace_id, 15,
				CAST(replace(CAST(data AS TEXT), '"index":16,', '"index":15,') AS BLOB) FROM audit_entries WHERE idx = 17`,
			`UPDATE audit_heads SET size = size + 1`,
		}, 15},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			l := e.open(t, auditlog.Config{})
			for i := 0; i < n; i += 8 {
				mustAppend(t, l, e.ws, i, 8)
			}
			kept := mustCheckpoint(t, l, e.ws)
			l.Close()
			e.exec(t, tc.sql...)

			// Against the store.
			v, err := auditlog.VerifyStore(ctx, e.db, e.vkey(t), kept)
			checkTamper(t, "store", v, err, tc.index)

			// Against what a restarted server serves: its checkpoint (it
			// refuses to sign a tree that does not extend the stored one),
			// entries and proofs.
			l2 := e.open(t, auditlog.Config{})
			latest := mustCheckpoint(t, l2, e.ws)
			v, err = auditlog.Verify(ctx, auditlog.VerifyInput{Records: served(ctx, e.db, e.ws), Checkpoint: latest, Older: kept,
				VerifierKey: e.vkey(t), Proofs: auditlog.StoreProofs{Store: e.db, WorkspaceID: e.ws}})
			checkTamper(t, "served", v, err, tc.index)

			// What the console's "Verify now" runs.
			_, v, err = l2.VerifyNow(ctx, e.ws)
			checkTamper(t, "now", v, err, tc.index)
		})
	}
}

func checkTamper(t *testing.T, mode string, v *auditlog.Verified, err error, index int64) {
	t.Helper()
	var te *auditlog.TamperError
	if !errors.As(err, &te) {
		t.Fatalf("%s: Verify = %+v, %v; want a TamperError at entry %d", mode, v, err, index)
	}
	if te.Index != index || !strings.Contains(te.Error(), fmt.Sprintf("entry %d:", index)) {
		t.Errorf("%s: %v; want entry %d named", mode, te, index)
	}
	if strings.Contains(te.Error(), "700") { // subjects are 7000000+i
		t.Errorf("%s: the error shows entry content: %v", mode, te)
	}
	t.Logf("%s: %v", mode, te)
}

// TestRewrittenTreeDetected: entry 17 changed and every stored hash recomputed
// to match, as someone who knows the format would. The server will not sign the
// rewritten tree, and Verify finds the log bad; which entry, it can bound but not
// pin down (the proofs are made of the rewritten hashes): the entries before the
// one it names are proven, and the changed one is not before it.
func TestRewrittenTreeDetected(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	l := e.open(t, auditlog.Config{})
	mustAppend(t, l, e.ws, 0, 40)
	kept := mustCheckpoint(t, l, e.ws)
	l.Close()
	recs, err := e.db.AuditRecords(ctx, e.ws, 0, 40)
	if err != nil {
		t.Fatal(err)
	}
	entries := make([]trustloop.AuditEntry, len(recs))
	for i, r := range recs {
		if entries[i], err = trustloop.DecodeAuditEntry(r.Data); err != nil {
			t.Fatal(err)
		}
	}
	entries[17].Purpose = "essential"
	data, hashes, err := trustloop.AuditAppend(0, entries, nil)
	if err != nil {
		t.Fatal(err)
	}
	var stmts []string
	for i := range entries {
		stmts = append(stmts, fmt.Sprintf(`UPDATE audit_entries SET data = x'%x' WHERE idx = %d`, data[i], i),
			fmt.Sprintf(`UPDATE audit_hashes SET hashes = x'%x' WHERE idx = %d`, hashes[i], i))
	}
	e.exec(t, stmts...)

	l2 := e.open(t, auditlog.Config{})
	if latest := mustCheckpoint(t, l2, e.ws); !bytes.Equal(latest, kept) {
		t.Fatal("the rewritten tree was signed")
	}
	for mode, recs := range map[string]iter.Seq2[trustloop.AuditRecord, error]{
		"store": auditlog.StoreRecords(ctx, e.db, e.ws), "served": served(ctx, e.db, e.ws)} {
		_, err := auditlog.Verify(ctx, auditlog.VerifyInput{Records: recs, Checkpoint: kept, VerifierKey: e.vkey(t),
			Proofs: auditlog.StoreProofs{Store: e.db, WorkspaceID: e.ws}})
		var te *auditlog.TamperError
		if !errors.As(err, &te) || te.Index < 0 || te.Index > 17 {
			t.Fatalf("%s: err = %v, want a TamperError at or before entry 17", mode, err)
		}
		t.Logf("%s: %v", mode, err)
	}
}

// TestRollbackDetected: the log is cut back to 30 entries (and its later
// checkpoints deleted) after the operator kept the checkpoint of 40.
func TestRollbackDetected(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	l := e.open(t, auditlog.Config{})
	mustAppend(t, l, e.ws, 0, 20)
	mustCheckpoint(t, l, e.ws)
	mustAppend(t, l, e.ws, 20, 20)
	kept := mustCheckpoint(t, l, e.ws)
	e.exec(t, `DELETE FROM audit_entries WHERE idx >= 30`, `DELETE FROM audit_hashes WHERE idx >= 30`,
		`DELETE FROM audit_checkpoints WHERE size > 20`, `UPDATE audit_heads SET size = 30`)

	// The running log remembers what it signed: it refuses to sign the shorter
	// tree and serves the checkpoint of 40, which the served entries fail.
	latest := mustCheckpoint(t, l, e.ws)
	if !bytes.Equal(latest, kept) {
		t.Fatal("the running log signed the rolled-back tree")
	}
	_, err := auditlog.Verify(ctx, auditlog.VerifyInput{Records: served(ctx, e.db, e.ws), Checkpoint: latest,
		VerifierKey: e.vkey(t), Proofs: auditlog.StoreProofs{Store: e.db, WorkspaceID: e.ws}})
	if !isTamper(err, 30) {
		t.Fatalf("running log: err = %v, want entry 30 missing", err)
	}
	t.Log(err)

	// A restarted log has forgotten and signs the tree of 30 (it extends the
	// stored checkpoint of 20); the operator's checkpoint of 40 catches it.
	l.Close()
	l2 := e.open(t, auditlog.Config{})
	latest = mustCheckpoint(t, l2, e.ws)
	if tree, _, _ := auditlog.OpenCheckpoint(latest, e.vkey(t)); tree.N != 30 {
		t.Fatalf("restarted log signed %d entries, want 30", tree.N)
	}
	_, err = auditlog.Verify(ctx, auditlog.VerifyInput{Records: served(ctx, e.db, e.ws), Checkpoint: latest, Older: kept,
		VerifierKey: e.vkey(t), Proofs: auditlog.StoreProofs{Store: e.db, WorkspaceID: e.ws}})
	var te *auditlog.TamperError
	if !errors.As(err, &te) || !te.Rollback || te.Index != 30 || !strings.Contains(te.Error(), "rolled back") {
		t.Fatalf("restarted log: err = %v, want a rollback from 40 to 30", err)
	}
	t.Log(err)
	// And so does the store, which holds only the checkpoint of 30 now.
	if _, err := auditlog.VerifyStore(ctx, e.db, e.vkey(t), kept); !errors.As(err, &te) || !te.Rollback {
		t.Fatalf("store: err = %v, want a rollback", err)
	}
}

// TestForgedCheckpointRejected: a checkpoint whose signature or text was
// altered, or that another key signed under the workspace's name, is refused.
func TestForgedCheckpointRejected(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	l := e.open(t, auditlog.Config{})
	mustAppend(t, l, e.ws, 0, 12)
	good := mustCheckpoint(t, l, e.ws)
	vkey := e.vkey(t)
	text, sigs, _ := strings.Cut(string(good), "\n\n")

	// One bit of the signature flipped.
	name, b64, _ := strings.Cut(strings.TrimSuffix(strings.TrimPrefix(sigs, "— "), "\n"), " ")
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	raw[10] ^= 1
	flipped := []byte(text + "\n\n— " + name + " " + base64.StdEncoding.EncodeToString(raw) + "\n")

	// The tree changed (a larger size), the signature kept.
	tree, _, _ := auditlog.OpenCheckpoint(good, vkey)
	grown := bytes.Replace(good, fmt.Appendf(nil, "\n%d\n", tree.N), fmt.Appendf(nil, "\n%d\n", tree.N+1), 1)

	// Signed by an attacker's key under the workspace's key name.
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	skey := "PRIVATE+KEY+" + auditlog.KeyName(e.ws)
	evil, _ := note.NewEd25519VerifierKey(auditlog.KeyName(e.ws), priv.Public().(ed25519.PublicKey))
	hash := strings.Split(evil, "+")[1]
	s, err := note.NewSigner(skey + "+" + hash + "+" + base64.StdEncoding.EncodeToString(append([]byte{1}, priv.Seed()...)))
	if err != nil {
		t.Fatal(err)
	}
	other, err := note.Sign(&note.Note{Text: text + "\n"}, s)
	if err != nil {
		t.Fatal(err)
	}

	for name, c := range map[string][]byte{"flipped signature": flipped, "changed tree": grown, "another key": other} {
		_, _, err := auditlog.OpenCheckpoint(c, vkey)
		if !isTamper(err, -1) {
			t.Errorf("%s: OpenCheckpoint err = %v, want a TamperError", name, err)
		}
		_, err = auditlog.Verify(ctx, auditlog.VerifyInput{Records: served(ctx, e.db, e.ws), Checkpoint: c, VerifierKey: vkey})
		if !isTamper(err, -1) {
			t.Errorf("%s: Verify err = %v, want a TamperError", name, err)
		}
		t.Logf("%s: %v", name, err)
	}
	// Malformed input is EINVALID with a hint, not a tamper verdict.
	if _, err := auditlog.Verify(ctx, auditlog.VerifyInput{Checkpoint: good, VerifierKey: "nonsense"}); trustloop.ErrorCode(err) != trustloop.EINVALID {
		t.Errorf("bad key: err = %v, want invalid", err)
	}
	if _, err := auditlog.Verify(ctx, auditlog.VerifyInput{Checkpoint: []byte("hello"), VerifierKey: vkey}); trustloop.ErrorCode(err) != trustloop.EINVALID {
		t.Errorf("bad note: err = %v, want invalid", err)
	}
}

// TestCheckpointRefusesEditedHashes: hashes rewritten under a running log are
// not signed; the last good checkpoint is served instead.
func TestCheckpointRefusesEditedHashes(t *testing.T) {
	e := newEnv(t)
	l := e.open(t, auditlog.Config{})
	mustAppend(t, l, e.ws, 0, 16)
	kept := mustCheckpoint(t, l, e.ws)
	// Record 15 holds the root of the first 16 entries, which the next tree
	// is built on.
	e.exec(t, `UPDATE audit_hashes SET hashes = zeroblob(length(hashes)) WHERE idx = 15`)
	mustAppend(t, l, e.ws, 16, 4)
	if got := mustCheckpoint(t, l, e.ws); !bytes.Equal(got, kept) {
		t.Fatal("a tree over edited hashes was signed")
	}
}

// BenchmarkAppendOne: one data use at a time, each its own commit: what a
// recorded read waits for when nothing else is being recorded.
func BenchmarkAppendOne(b *testing.B) {
	e := newEnv(b)
	l := auditlog.New(e.db, e.keys, auditlog.Config{})
	defer l.Close()
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := l.Append(ctx, dataUse(e.ws, i)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppend: many goroutines each recording one data use at a time, as
// the API's reads do, through the group commit into SQLite (synchronous=FULL).
func BenchmarkAppend(b *testing.B) {
	e := newEnv(b)
	l := auditlog.New(e.db, e.keys, auditlog.Config{})
	defer l.Close()
	ctx := context.Background()
	b.SetParallelism(32)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if err := l.Append(ctx, dataUse(e.ws, i)); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "entries/s")
}

// countingStore counts the store's strict and lazy appends.
type countingStore struct {
	*sqlite.DB
	strict, lazy atomic.Int32
}

func (c *countingStore) AppendAudit(ctx context.Context, es []trustloop.AuditEntry) error {
	c.strict.Add(1)
	return c.DB.AppendAudit(ctx, es)
}

func (c *countingStore) AppendAuditLazy(ctx context.Context, es []trustloop.AuditEntry) error {
	c.lazy.Add(1)
	return c.DB.AppendAuditLazy(ctx, es)
}

// TestLazyDataUses: with LazyDataUses, groups of data uses alone are
// committed lazily; an entry of any other kind, alone or with data uses, is
// committed strictly; without it nothing is lazy. The log is the same.
func TestLazyDataUses(t *testing.T) {
	ctx := context.Background()
	keyEntry := func(ws int64) trustloop.AuditEntry {
		return trustloop.AuditEntry{WorkspaceID: ws, Kind: trustloop.AuditKeyCreated,
			Actor: trustloop.AuditActor{Kind: trustloop.ActorComponent, ID: "component:test"}, Action: "test", Detail: "key:1"}
	}
	for _, lazy := range []bool{true, false} {
		e := newEnv(t)
		s := &countingStore{DB: e.db}
		l := auditlog.New(s, e.keys, auditlog.Config{LazyDataUses: lazy})
		for i := range 3 {
			if err := l.Append(ctx, dataUse(e.ws, i)); err != nil {
				t.Fatal(err)
			}
		}
		if got, want := s.lazy.Load(), map[bool]int32{true: 3, false: 0}[lazy]; got != want || s.strict.Load() != 3-want {
			t.Fatalf("LazyDataUses %v: %d lazy and %d strict commits of three data uses", lazy, got, s.strict.Load())
		}
		s.strict.Store(0)
		s.lazy.Store(0)
		if err := l.Append(ctx, keyEntry(e.ws)); err != nil {
			t.Fatal(err)
		}
		if err := l.Append(ctx, dataUse(e.ws, 3), keyEntry(e.ws)); err != nil {
			t.Fatal(err)
		}
		if s.lazy.Load() != 0 || s.strict.Load() != 2 {
			t.Fatalf("LazyDataUses %v: %d lazy and %d strict commits with other entries; want 0 and 2", lazy, s.lazy.Load(), s.strict.Load())
		}
		mustCheckpoint(t, l, e.ws)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		v, err := auditlog.VerifyStore(ctx, e.db, e.vkey(t), nil)
		if err != nil || v.Tree.N != 6 {
			t.Fatalf("verified %+v, %v; want 6 entries", v, err)
		}
	}
}
