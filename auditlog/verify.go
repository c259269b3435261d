package auditlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"

	"github.com/trustloop/trustloop"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Proofs serves consistency proofs of the log being verified (the server over
// HTTP, or the store). Verify uses them only to find WHICH entry is bad: whether
// the log is good is decided by the signed checkpoints alone, so a lying proof
// source can make Verify blame an earlier entry, never accept a bad log.
type Proofs interface {
	ConsistencyProof(ctx context.Context, old, new int64) (tlog.TreeProof, error)
}

// StoreProofs serves proofs of one workspace's log from a store.
type StoreProofs struct {
	Store       trustloop.AuditStore
	WorkspaceID int64
}

// ConsistencyProof implements Proofs.
func (p StoreProofs) ConsistencyProof(ctx context.Context, old, new int64) (tlog.TreeProof, error) {
	return ConsistencyProof(ctx, p.Store, p.WorkspaceID, old, new)
}

// VerifyInput is what Verify checks.
type VerifyInput struct {
	// Records are the log as served, from index 0 on, in order. Only Data is
	// needed; Index and Hashes, when a store gives them, let Verify compare
	// each entry with the leaf hash stored when it was appended.
	Records iter.Seq2[trustloop.AuditRecord, error]
	// Checkpoint is the latest signed checkpoint (a note).
	Checkpoint []byte
	// Older is an earlier checkpoint the operator kept (optional): the log must
	// extend it. nil is none; an empty (or blank) one is refused rather than
	// taken as none, since it is most likely a kept file that lost its content.
	Older []byte
	// VerifierKey is the workspace's verifier key, ideally pinned by the
	// operator rather than taken from the server being checked.
	VerifierKey string
	// Proofs, optional, find the first bad entry when an entry's content was
	// changed with its stored hashes (without, Verify can say only that one is).
	Proofs Proofs
}

// Verified is what a successful Verify vouches for.
type Verified struct {
	WorkspaceID int64
	// Tree is the latest checkpoint's tree: its entries are exactly those served.
	Tree tlog.Tree
	// Older is the earlier checkpoint's tree, when one was given; Tree extends it.
	Older *tlog.Tree
	// Uncovered counts entries served past the checkpoint (appended after it),
	// which the next checkpoint will cover.
	Uncovered int64
	// Note is the checkpoint verified, to keep for the next verification.
	Note []byte
}

// TamperError says where a log differs from what its checkpoints signed. It
// names entries by index only.
type TamperError struct {
	// Index is the first bad entry: the entries before it are proven to be
	// what the checkpoint signed. (Only if the stored hashes were rewritten
	// along with an entry can the changed entry be a later one: the proofs
	// then fail early.) -1 when the problem is the checkpoint itself.
	Index int64
	// Rollback is set when the log is shorter than an earlier checkpoint: the
	// entries from Index on were removed.
	Rollback bool
	Problem  string
}

func (e *TamperError) Error() string {
	if e.Index < 0 || e.Rollback {
		return "audit log: " + e.Problem
	}
	return fmt.Sprintf("audit log: entry %d: %s", e.Index, e.Problem)
}

// OpenCheckpoint checks a checkpoint's signature against the verifier key and
// returns its tree and workspace. A bad signature is a *TamperError; a malformed
// key or note is EINVALID.
func OpenCheckpoint(msg []byte, verifierKey string) (tlog.Tree, int64, error) {
	v, ws, err := verifier(verifierKey)
	if err != nil {
		return tlog.Tree{}, 0, err
	}
	t, err := openCheckpoint(msg, v, "the checkpoint")
	return t, ws, err
}

func verifier(key string) (note.Verifier, int64, error) {
	v, err := note.NewVerifier(key)
	if err != nil {
		return nil, 0, trustloop.Errorf(trustloop.EINVALID, "The verifier key is not valid.").
			WithHint("It looks like trustloop.audit/ws-1+1a2b3c4d+AZ…; take it from GET /v1/audit/checkpoint and keep it.")
	}
	ws, ok := keyWorkspace(v.Name())
	if !ok {
		return nil, 0, trustloop.Errorf(trustloop.EINVALID, "The verifier key is not a Trustloop audit key.").
			WithHint("Its name must be trustloop.audit/ws-<workspace id>.")
	}
	return v, ws, nil
}

func openCheckpoint(msg []byte, v note.Verifier, what string) (tlog.Tree, error) {
	n, err := note.Open(msg, note.VerifierList(v))
	var unverified *note.UnverifiedNoteError
	var invalid *note.InvalidSignatureError
	switch {
	case errors.As(err, &invalid):
		return tlog.Tree{}, &TamperError{Index: -1, Problem: what + "'s signature is not valid: it was forged or altered"}
	case errors.As(err, &unverified):
		return tlog.Tree{}, &TamperError{Index: -1, Problem: what + " is not signed by " + v.Name()}
	case err != nil:
		return tlog.Tree{}, trustloop.Errorf(trustloop.EINVALID, "%s is not a signed note.", what).
			WithHint("Pass the note text exactly as GET /v1/audit/checkpoint served it (or as --save wrote it).")
	}
	t, err := tlog.ParseTree([]byte(n.Text))
	if err != nil {
		return tlog.Tree{}, &TamperError{Index: -1, Problem: what + " is signed but holds no tree"}
	}
	return t, nil
}

// memTree is a tree computed in memory from served entries.
type memTree struct {
	hashes []tlog.Hash
	n      int64
}

func (m *memTree) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		if x < 0 || x >= int64(len(m.hashes)) {
			return nil, fmt.Errorf("auditlog: hash %d not computed", x)
		}
		out[i] = m.hashes[x]
	}
	return out, nil
}

func (m *memTree) add(leaf tlog.Hash) error {
	hs, err := tlog.StoredHashesForRecordHash(m.n, leaf, m)
	if err != nil {
		return err
	}
	m.hashes = append(m.hashes, hs...)
	m.n++
	return nil
}

func (m *memTree) treeHash(n int64) tlog.Hash {
	h, err := tlog.TreeHash(n, m)
	if err != nil {
		panic(err) // n <= m.n always: a bug otherwise
	}
	return h
}

// Verify checks a log as served against its latest signed checkpoint (and an
// earlier one the operator kept): the signatures, that the log never shrank,
// that the entries are exactly the ones the checkpoints signed (the recomputed
// tree equals the signed hash, which also proves the latest extends the
// earlier), and that each entry is well formed, of this workspace and at its
// place. On a mismatch it returns a *TamperError naming the first bad entry:
//   - an entry that no longer decodes, or sits at another index than it says
//     (deleted, reordered, inserted), is found by its position;
//   - an entry whose content changed is found by its leaf hash against the one
//     stored at append (when the records carry it), else by bisection with
//     consistency proofs: the longest prefix of the served entries that a proof
//     shows the signed tree extends.
func Verify(ctx context.Context, in VerifyInput) (*Verified, error) {
	v, ws, err := verifier(in.VerifierKey)
	if err != nil {
		return nil, err
	}
	latest, err := openCheckpoint(in.Checkpoint, v, "the checkpoint")
	if err != nil {
		return nil, err
	}
	res := &Verified{WorkspaceID: ws, Tree: latest, Note: in.Checkpoint}
	targets := []tlog.Tree{latest}
	if in.Older != nil && len(bytes.TrimSpace(in.Older)) == 0 {
		// Skipping the check would pass a rolled-back log as verified.
		return nil, trustloop.Errorf(trustloop.EINVALID, "The earlier checkpoint is empty.").
			WithHint("Pass the checkpoint kept from an earlier verification (the file --save wrote), or none.")
	}
	if in.Older != nil {
		older, err := openCheckpoint(in.Older, v, "the earlier checkpoint")
		if err != nil {
			return nil, err
		}
		if older.N > latest.N {
			return nil, &TamperError{Index: latest.N, Rollback: true, Problem: fmt.Sprintf(
				"the log was rolled back: the earlier checkpoint covers %d entries, the latest only %d (entries from %d on are gone)",
				older.N, latest.N, latest.N)}
		}
		res.Older = &older
		targets = append(targets, older)
	}

	bad := &TamperError{Index: -1}
	blame := func(i int64, problem string) {
		if bad.Index < 0 || i < bad.Index {
			bad.Index, bad.Problem = i, problem
		}
	}
	// One pass over the entries the checkpoint covers: decode, place, hash.
	n := latest.N
	mem := &memTree{}
	var served int64
	stopped := false
	if in.Records != nil {
		for r, err := range in.Records {
			if err != nil {
				return nil, err
			}
			k := served
			served++
			if k >= n {
				continue // appended after the checkpoint: only counted
			}
			if k%4096 == 0 && ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if problem := checkEntry(r, k, ws); problem != "" {
				blame(k, problem)
				stopped = true
				break
			}
			leaf := tlog.RecordHash(r.Data)
			if r.Index == k && len(r.Hashes) >= tlog.HashSize && !bytes.Equal(leaf[:], r.Hashes[:tlog.HashSize]) {
				blame(k, "changed: it does not match the hash stored when it was appended (edited, or another entry put in its place)")
				stopped = true
				break
			}
			if err := mem.add(leaf); err != nil {
				return nil, err
			}
		}
	}
	if !stopped && served < n {
		blame(served, fmt.Sprintf("missing: the checkpoint covers %d entries, %d were served", n, served))
	}
	// The tree over the sound prefix against each signed tree.
	for i, t := range targets {
		what := fmt.Sprintf("the checkpoint of %d entries", t.N)
		if i > 0 {
			what = fmt.Sprintf("the earlier checkpoint of %d entries", t.N)
		}
		if at, problem := locate(ctx, mem, t, what, in.Proofs); at >= 0 {
			blame(at, problem)
		}
	}
	if bad.Index >= 0 {
		return nil, bad
	}
	if !stopped && served > n {
		res.Uncovered = served - n
	}
	return res, nil
}

// checkEntry returns what is wrong with the record served at position k, or "".
func checkEntry(r trustloop.AuditRecord, k, ws int64) string {
	e, err := trustloop.DecodeAuditEntry(r.Data)
	switch {
	case err != nil:
		return "not a valid entry (" + trustloop.ErrorMessage(err) + ")"
	case e.WorkspaceID != ws:
		return fmt.Sprintf("of another workspace (%d)", e.WorkspaceID)
	case e.Index > k:
		return fmt.Sprintf("missing: entry %d is served in its place (deleted or reordered)", e.Index)
	case e.Index < k:
		return fmt.Sprintf("out of place: the entry served there says it is entry %d (reordered or inserted)", e.Index)
	}
	return ""
}

// locate checks the tree of the first t entries against the signed tree t and
// returns the first bad entry, or -1. mem holds the leaves known sound by
// position; when it holds fewer than t (a positional problem at mem.n), the
// question is whether the entries before that are good.
func locate(ctx context.Context, mem *memTree, t tlog.Tree, what string, proofs Proofs) (int64, string) {
	hi := t.N
	if mem.n >= t.N {
		if mem.treeHash(t.N) == t.Hash {
			return -1, ""
		}
	} else {
		// A positional problem at mem.n: the first, unless an earlier entry
		// is bad too. No proof to mem.n (the log holder cannot make one, as
		// when the log was cut short) leaves the positional problem standing.
		hi = mem.n
		if hi == 0 || proven(ctx, mem, t, hi, proofs) != disproven {
			return -1, ""
		}
	}
	// Bisection: entries [0, lo) are proven, the first hi are not.
	lo := int64(0)
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if proven(ctx, mem, t, mid, proofs) == provenOK {
			lo = mid
		} else {
			hi = mid
		}
	}
	// With intact proofs, entry lo is the changed one. If the stored hashes
	// were rewritten too, proofs fail early and lo is only where the proven
	// part ends; the message says what is certain.
	if proofs == nil && lo == 0 {
		return 0, fmt.Sprintf("the log from this entry on does not match what %s signed (no proofs to find the changed entry)", what)
	}
	return lo, fmt.Sprintf("the log from this entry on does not match what %s signed (the entries before it do)", what)
}

type proof int

const (
	unproven  proof = iota // no proof to be had
	provenOK               // the signed tree extends the first m served entries
	disproven              // a proof was served and it fails
)

// proven checks with a proof whether the signed tree t extends the tree of the
// first m served entries.
func proven(ctx context.Context, mem *memTree, t tlog.Tree, m int64, proofs Proofs) proof {
	if m == 0 {
		return provenOK
	}
	if m == t.N {
		if mem.treeHash(m) == t.Hash {
			return provenOK
		}
		return disproven
	}
	if proofs == nil || ctx.Err() != nil {
		return unproven
	}
	p, err := proofs.ConsistencyProof(ctx, m, t.N)
	if err != nil {
		return unproven
	}
	if tlog.CheckTree(p, t.N, t.Hash, m, mem.treeHash(m)) != nil {
		return disproven
	}
	return provenOK
}

// VerifyStore verifies a workspace's log directly in a store, against its latest
// stored checkpoint (and an earlier one, optional): the records carry the hashes
// stored at append, so a changed entry is found by its own hash.
func VerifyStore(ctx context.Context, store trustloop.AuditStore, verifierKey string, older []byte) (*Verified, error) {
	_, ws, err := verifier(verifierKey)
	if err != nil {
		return nil, err
	}
	c, err := store.LatestAuditCheckpoint(ctx, ws)
	if trustloop.ErrorCode(err) == trustloop.ENOTFOUND {
		return nil, trustloop.Errorf(trustloop.ENOTFOUND, "Workspace %d's audit log has no checkpoint yet.", ws).
			WithHint("The server makes one within seconds of the first entries; GET /v1/audit/checkpoint makes one now.")
	} else if err != nil {
		return nil, err
	}
	return Verify(ctx, VerifyInput{Records: StoreRecords(ctx, store, ws), Checkpoint: c.Note, Older: older,
		VerifierKey: verifierKey, Proofs: StoreProofs{Store: store, WorkspaceID: ws}})
}

// StoreRecords yields a workspace's records from a store, page by page, up to
// the log's size when it starts.
func StoreRecords(ctx context.Context, store trustloop.AuditStore, workspaceID int64) iter.Seq2[trustloop.AuditRecord, error] {
	return func(yield func(trustloop.AuditRecord, error) bool) {
		const page = 10_000
		size, err := store.AuditSize(ctx, workspaceID)
		if err != nil {
			yield(trustloop.AuditRecord{}, err)
			return
		}
		for start := int64(0); start < size; start += page {
			recs, err := store.AuditRecords(ctx, workspaceID, start, min(start+page, size))
			if err != nil {
				yield(trustloop.AuditRecord{}, err)
				return
			}
			for _, r := range recs {
				if !yield(r, nil) {
					return
				}
			}
		}
	}
}

// CheckpointNow returns a checkpoint of the workspace's log as it now stands
// (Checkpoint), the verifier key (derived from the master key, not read from
// anything stored) and the tree the checkpoint signs, checked with that key.
func (l *Log) CheckpointNow(ctx context.Context, ws int64) (msg []byte, key string, tree tlog.Tree, err error) {
	if msg, err = l.Checkpoint(ctx, ws); err != nil {
		return nil, "", tree, err
	}
	if key, err = l.VerifierKey(ws); err != nil {
		return nil, "", tree, err
	}
	tree, _, err = OpenCheckpoint(msg, key)
	return msg, key, tree, err
}

// VerifyNow verifies a workspace's whole log as it stands, against a
// checkpoint of it signed now (CheckpointNow) and read through the log's own
// store, as VerifyStore does: what the console's "Verify now" runs. tree is
// the checkpoint's, for saying what was checked when verification fails.
func (l *Log) VerifyNow(ctx context.Context, ws int64) (tree tlog.Tree, res *Verified, err error) {
	msg, key, tree, err := l.CheckpointNow(ctx, ws)
	if err != nil {
		return tree, nil, err
	}
	res, err = Verify(ctx, VerifyInput{Records: StoreRecords(ctx, l.store, ws), Checkpoint: msg, VerifierKey: key,
		Proofs: StoreProofs{Store: l.store, WorkspaceID: ws}})
	return tree, res, err
}
