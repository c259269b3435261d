package trustloop

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/bits"
	"slices"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

// The audit log (T7): every use of personal data and every consent change is
// appended to a per-workspace, append-only log hashed as an RFC 6962 Merkle tree
// (golang.org/x/mod/sumdb/tlog), whose heads are signed as checkpoints. Anyone
// holding a checkpoint can check that an entry is in the log and that a later log
// extends it, so an edit, deletion, reordering or rollback is detected.
//
// Entries hold NO personal data: the log is served to any API key of the
// workspace and kept forever (erasure cannot rewrite it without breaking the
// tree). A subject is named only by a pseudonymous id (a profile id, or the hex
// of a blind index), never by an identifier value, a trait or a payload.

// Audit entry kinds.
const (
	// AuditDataUse records a read of a subject's personal data for a purpose.
	AuditDataUse = "data_use"
	// AuditConsentChange records a change of a subject's consent for a purpose.
	AuditConsentChange = "consent_change"
	// AuditKeyCreated and AuditKeyRevoked record API key lifecycle events.
	AuditKeyCreated = "key_created"
	AuditKeyRevoked = "key_revoked"
	// AuditErasure records a subject's erasure.
	AuditErasure = "erasure"
	// AuditPrivacyRequest records a privacy request's change of status.
	AuditPrivacyRequest = "privacy_request"
)

// Actor kinds: who used the data or made the change.
const (
	ActorAPIKey    = "api_key"
	ActorOperator  = "operator"
	ActorComponent = "component"
	ActorSubject   = "subject"
)

// AuditVersion is the version of the canonical entry encoding.
const AuditVersion = 1

// MaxAuditEntryBytes bounds one entry's canonical encoding.
const MaxAuditEntryBytes = 2048

// AuditActor names who acted: a kind and an id such as "key:12",
// "component:recommender" or "operator:3". Never a person's name or email.
type AuditActor struct {
	Kind string `json:"kind"`
	ID   string `json:"id"`
}

// AuditEntry is one record of the audit log. It must hold no personal data: its
// strings are short machine strings (validated), and Subject is pseudonymous.
type AuditEntry struct {
	WorkspaceID int64
	// Index is the entry's 0-based position in its workspace's log, set by the
	// store when it appends the entry.
	Index int64
	// Time is when it happened, kept to the millisecond (UTC).
	Time time.Time
	// Kind is one of the Audit* kinds (or another lower-case machine word).
	Kind  string
	Actor AuditActor
	// Purpose is the purpose the data was used for, or the consent changed for.
	Purpose string
	// Subject is the profile id (decimal) or the lower-case hex of a blind
	// index; empty when the entry is about no subject.
	Subject string
	// Categories are the data categories used (identity, contact, behavior, …).
	Categories []string
	// Action is what was done, e.g. "GET /v1/profiles/{id}" (the route pattern,
	// never the raw path); Detail adds a short machine string such as
	// "consent marketing given".
	Action string
	Detail string
	// ReceiptID is the consent receipt issued with a consent change, if any.
	ReceiptID string
}

// auditWire is the canonical JSON form. Field order is the declaration order, so
// encoding/json makes the same bytes for the same entry, every time.
type auditWire struct {
	Version     int        `json:"version"`
	WorkspaceID int64      `json:"workspace_id"`
	Index       int64      `json:"index"`
	Time        string     `json:"time"`
	Kind        string     `json:"kind"`
	Actor       AuditActor `json:"actor"`
	Purpose     string     `json:"purpose,omitempty"`
	Subject     string     `json:"subject,omitempty"`
	Categories  []string   `json:"categories,omitempty"`
	Action      string     `json:"action,omitempty"`
	Detail      string     `json:"detail,omitempty"`
	ReceiptID   string     `json:"receipt_id,omitempty"`
}

const auditTimeLayout = "2006-01-02T15:04:05.000Z"

// auditEntryHint is the hint of an entry that cannot be read back: the log's
// entries are written only by this program, so one that does not parse was
// altered, or written by a newer version.
const auditEntryHint = "Run trustloop audit verify; an entry this version cannot read was altered or written by a newer version of Trustloop."

// Validate checks that the entry is well formed and can hold no free text: every
// string is a short machine string, so no email, name or payload fits in it
// (an '@', '+' or non-ASCII byte is refused everywhere). Returns EINVALID.
func (e *AuditEntry) Validate() error {
	bad := func(field, want string) error {
		return Errorf(EINVALID, "Audit entry: %s is not valid.", field).WithHint(want)
	}
	switch {
	case e.WorkspaceID <= 0:
		return bad("workspace_id", "Set the entry's workspace.")
	case e.Index < 0:
		return bad("index", "Indexes start at 0.")
	case e.Time.IsZero() || e.Time.Year() < 2000 || e.Time.Year() > 9999:
		return bad("time", "Set the time of the use or change.")
	case !word(e.Kind, 32):
		return bad("kind", "A lower-case word such as data_use or consent_change.")
	case e.Actor.Kind != ActorAPIKey && e.Actor.Kind != ActorOperator && e.Actor.Kind != ActorComponent && e.Actor.Kind != ActorSubject:
		return bad("actor.kind", "One of api_key, operator, component, subject.")
	case !machine(e.Actor.ID, 64, false) || e.Actor.ID == "":
		return bad("actor.id", "A short id such as key:12 or component:recommender.")
	case e.Purpose != "" && !word(e.Purpose, 32):
		return bad("purpose", "A purpose id such as marketing.")
	case e.Subject != "" && !pseudonym(e.Subject):
		return bad("subject", "A profile id (decimal) or the lower-case hex of a blind index, never an identifier.")
	case len(e.Categories) > 16:
		return bad("categories", "At most 16 data categories.")
	case !machine(e.Action, 128, true):
		return bad("action", "A short machine string such as the route pattern.")
	case !machine(e.Detail, 128, true):
		return bad("detail", "A short machine string.")
	case e.ReceiptID != "" && !machine(e.ReceiptID, 64, false):
		return bad("receipt_id", "A receipt id.")
	}
	for _, c := range e.Categories {
		if !word(c, 32) {
			return bad("categories", "Data category ids such as contact or behavior.")
		}
	}
	return nil
}

// word reports whether s is a lower-case machine word: [a-z][a-z0-9_]*.
func word(s string, max int) bool {
	if s == "" || len(s) > max || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// machine reports whether s is printable ASCII of at most max bytes without the
// characters that identifiers carry ('@' of emails, '+' of phones); spaces only
// when space is set.
func machine(s string, max int, space bool) bool {
	if len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '@' || c == '+' || (c == ' ' && !space) {
			return false
		}
	}
	return true
}

// pseudonym reports whether s is a decimal profile id (up to 20 digits) or the
// lower-case hex of a blind index (32 to 64 digits).
func pseudonym(s string) bool {
	digits, hex := true, true
	for i := 0; i < len(s); i++ {
		c := s[i]
		digits = digits && c >= '0' && c <= '9'
		hex = hex && (c >= '0' && c <= '9' || c >= 'a' && c <= 'f')
	}
	return digits && len(s) <= 20 || hex && len(s) >= 32 && len(s) <= 64
}

// Encode returns the entry's canonical encoding: compact JSON with a fixed field
// order and the time in UTC to the millisecond. It is the leaf data hashed into
// the tree (tlog.RecordHash), so it must never change for a given entry; a change
// of format takes a new AuditVersion. Returns EINVALID if the entry is not valid.
func (e *AuditEntry) Encode() ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	w := auditWire{Version: AuditVersion, WorkspaceID: e.WorkspaceID, Index: e.Index,
		Time: e.Time.UTC().Format(auditTimeLayout), Kind: e.Kind, Actor: e.Actor, Purpose: e.Purpose,
		Subject: e.Subject, Categories: e.Categories, Action: e.Action, Detail: e.Detail, ReceiptID: e.ReceiptID}
	b, err := json.Marshal(&w)
	if err != nil {
		return nil, fmt.Errorf("audit entry: %w", err)
	}
	if len(b) > MaxAuditEntryBytes {
		return nil, Errorf(EINVALID, "Audit entry: %d bytes encoded, at most %d.", len(b), MaxAuditEntryBytes).
			WithHint("Record fewer categories or a shorter action in one entry.")
	}
	return b, nil
}

// MarshalJSON is the canonical encoding, so what the API serves is what is hashed.
func (e AuditEntry) MarshalJSON() ([]byte, error) { return e.Encode() }

// UnmarshalJSON reads the JSON form strictly (no unknown fields, a known version)
// and validates the entry.
func (e *AuditEntry) UnmarshalJSON(b []byte) error {
	d, err := decodeAudit(b)
	if err != nil {
		return err
	}
	*e = d
	return nil
}

// DecodeAuditEntry decodes a stored entry and checks that data is exactly the
// entry's canonical encoding, so two different byte strings never pass for the
// same entry. Returns EINVALID, naming what is wrong (never a value).
func DecodeAuditEntry(data []byte) (AuditEntry, error) {
	e, err := decodeAudit(data)
	if err != nil {
		return AuditEntry{}, err
	}
	canon, err := e.Encode()
	if err != nil {
		return AuditEntry{}, err
	}
	if !bytes.Equal(canon, data) {
		return AuditEntry{}, Errorf(EINVALID, "Audit entry: not in canonical form.").
			WithHint(auditEntryHint)
	}
	return e, nil
}

func decodeAudit(b []byte) (AuditEntry, error) {
	var w auditWire
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&w); err != nil || d.More() {
		return AuditEntry{}, Errorf(EINVALID, "Audit entry: not a valid JSON entry.").
			WithHint(auditEntryHint)
	}
	if w.Version != AuditVersion {
		return AuditEntry{}, Errorf(EINVALID, "Audit entry: unknown version %d.", w.Version).
			WithHint(auditEntryHint)
	}
	t, err := time.Parse(auditTimeLayout, w.Time)
	if err != nil {
		return AuditEntry{}, Errorf(EINVALID, "Audit entry: time is not valid.").
			WithHint(auditEntryHint)
	}
	e := AuditEntry{WorkspaceID: w.WorkspaceID, Index: w.Index, Time: t.UTC(), Kind: w.Kind, Actor: w.Actor,
		Purpose: w.Purpose, Subject: w.Subject, Categories: w.Categories, Action: w.Action, Detail: w.Detail, ReceiptID: w.ReceiptID}
	if err := e.Validate(); err != nil {
		return AuditEntry{}, err
	}
	return e, nil
}

// AuditRecord is an entry as stored: its position, its canonical encoding (the
// leaf data) and the tree hashes stored at its position (see AuditAppend). The
// store returns records, not decoded entries, so a verifier sees exactly what is
// stored, even bytes that no longer decode.
type AuditRecord struct {
	WorkspaceID int64
	Index       int64
	Data        []byte
	// Hashes are the tlog stored hashes the append of record Index added,
	// concatenated (32 bytes each): tlog.StoredHashes(Index, Data, …), stored
	// from tlog.StoredHashIndex(0, Index) on. The first is the leaf hash. Stores
	// keep them apart from the entries, so an edit of an entry row does not
	// carry them along; nil if none are stored at Index.
	Hashes []byte
}

// AuditCheckpoint is a signed tree head of one workspace's log.
type AuditCheckpoint struct {
	WorkspaceID int64
	Size        int64
	Hash        tlog.Hash
	// Note is the signed note (golang.org/x/mod/sumdb/note) over tlog.FormatTree.
	Note      []byte
	CreatedAt time.Time
}

// AuditStore keeps the workspaces' audit logs. Each workspace has its own log and
// tree: nothing of one workspace's log enters another's hashes (T9).
type AuditStore interface {
	// AppendAudit appends entries to the end of their workspaces' logs in one
	// transaction, all or nothing, in the order given within each workspace. It
	// sets each entry's Index. Appenders on other nodes are serialized per
	// workspace (a lock on the workspace's log head inside the transaction), so
	// indexes are dense and every stored hash is computed over the committed log.
	// Returns EINVALID (nothing stored) if an entry does not validate.
	//
	// On SQLite it takes the store's writer lock: never call it from inside
	// another store call (a projection hook).
	AppendAudit(ctx context.Context, entries []AuditEntry) error

	// AppendAuditLazy is AppendAudit that may return before the entries are
	// on disk: they survive a crash of the process that appended them once it
	// returns, and a crash of the machine (or of the database server) only
	// once the store has flushed them, which it does soon on its own (SQLite:
	// Options.AuditLazySyncDelay; PostgreSQL: its WAL writer). A later strict
	// append's commit covers them, and so does every read of the log that a
	// checkpoint is made from: no signed checkpoint covers an entry a crash
	// can take back. For records of data uses, where a crash of the machine
	// losing the last milliseconds of records is the accepted price of
	// answering without an fdatasync each.
	AppendAuditLazy(ctx context.Context, entries []AuditEntry) error

	// AuditSize returns the number of entries in the workspace's log.
	AuditSize(ctx context.Context, workspaceID int64) (int64, error)

	// AuditRecords returns the records [start, end) of the workspace's log in
	// index order (fewer if the log is shorter, none past its end).
	AuditRecords(ctx context.Context, workspaceID, start, end int64) ([]AuditRecord, error)

	// ReadAuditHashes returns the workspace's stored tree hashes at the given
	// tlog stored-hash indexes, in the order asked (a tlog.HashReader).
	// ENOTFOUND if one is not stored.
	ReadAuditHashes(ctx context.Context, workspaceID int64, indexes []int64) ([]tlog.Hash, error)

	// SaveAuditCheckpoint stores a signed checkpoint. One checkpoint is kept per
	// (workspace, size); saving one for a size already saved changes nothing.
	SaveAuditCheckpoint(ctx context.Context, c *AuditCheckpoint) error

	// LatestAuditCheckpoint returns the workspace's checkpoint of the largest
	// size; ENOTFOUND if none was saved.
	LatestAuditCheckpoint(ctx context.Context, workspaceID int64) (*AuditCheckpoint, error)

	// AuditRecordsOf returns the records whose entry names subject, newest
	// first, with indexes below before (0: from the end of the log), at most
	// limit (Hashes not filled in).
	AuditRecordsOf(ctx context.Context, workspaceID int64, subject string, before int64, limit int) ([]AuditRecord, error)
}

// AuditHashLocation maps a tlog stored-hash index to the record that stored it
// and its place in that record's Hashes: the hash of the subtree at (level, n) is
// written with the subtree's last leaf, at offset level.
func AuditHashLocation(index int64) (record int64, offset int) {
	level, n := tlog.SplitStoredHashIndex(index)
	return (n+1)<<uint(level) - 1, level
}

// AuditFrontier returns the stored-hash indexes of the complete subtrees a log
// of size n splits into (largest first): the only earlier hashes that appending
// to it reads.
func AuditFrontier(n int64) []int64 {
	var out []int64
	var start int64
	for level := 62; level >= 0; level-- {
		if n&(1<<uint(level)) != 0 {
			out = append(out, tlog.StoredHashIndex(level, start>>uint(level)))
			start += 1 << uint(level)
		}
	}
	return out
}

// AuditAppend computes what appending entries to a log of size n writes: it sets
// each entry's Index (n, n+1, …) and returns each entry's canonical encoding and
// the stored hashes it adds. read is called once, with AuditFrontier(n), to fetch
// the earlier hashes the new ones combine with. Stores call it inside their
// append transaction, with the log's head locked. Returns EINVALID if an entry
// does not validate.
func AuditAppend(n int64, entries []AuditEntry, read func(indexes []int64) ([]tlog.Hash, error)) (data [][]byte, hashes [][]byte, err error) {
	known := map[int64]tlog.Hash{}
	if len(entries) > 0 && n > 0 {
		idx := AuditFrontier(n)
		old, err := read(idx)
		if err != nil {
			return nil, nil, err
		}
		if len(old) != len(idx) {
			return nil, nil, fmt.Errorf("audit append: read %d hashes, want %d", len(old), len(idx))
		}
		for i, h := range old {
			known[idx[i]] = h
		}
	}
	r := tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) { return pickKnown(known, indexes) })
	data, hashes = make([][]byte, len(entries)), make([][]byte, len(entries))
	for i := range entries {
		e := &entries[i]
		e.Index = n + int64(i)
		if data[i], err = e.Encode(); err != nil {
			return nil, nil, err
		}
		hs, err := tlog.StoredHashes(e.Index, data[i], r)
		if err != nil {
			return nil, nil, err
		}
		base := tlog.StoredHashIndex(0, e.Index)
		buf := make([]byte, 0, len(hs)*tlog.HashSize)
		for j, h := range hs {
			known[base+int64(j)] = h
			buf = append(buf, h[:]...)
		}
		hashes[i] = buf
		// Hashes no later append can read are let go: only the frontier of the
		// log as it now stands is read again, so the map stays O(log n).
		if i%1024 == 1023 {
			keep := map[int64]tlog.Hash{}
			for _, x := range AuditFrontier(e.Index + 1) {
				keep[x] = known[x]
			}
			known = keep
		}
	}
	return data, hashes, nil
}

// AuditNextFrontier returns the frontier of a log of size n after appending
// the records whose stored hashes AuditAppend returned, from the frontier of
// size n (AuditFrontier(n)'s hashes, in its order; nil for n = 0). Every hash
// of the new frontier is one of the old frontier's (a complete subtree stays
// the largest one) or one the new records stored, each record's stored hashes
// starting at tlog.StoredHashIndex(0, its index).
func AuditNextFrontier(n int64, frontier []tlog.Hash, stored [][]byte) ([]tlog.Hash, error) {
	old := AuditFrontier(n)
	if len(frontier) != len(old) {
		return nil, fmt.Errorf("audit frontier: %d hashes for size %d, want %d", len(frontier), n, len(old))
	}
	known := make(map[int64]tlog.Hash, len(old)+2*len(stored))
	for i, x := range old {
		known[x] = frontier[i]
	}
	for i, b := range stored {
		base := tlog.StoredHashIndex(0, n+int64(i))
		for j := 0; (j+1)*tlog.HashSize <= len(b); j++ {
			known[base+int64(j)] = tlog.Hash(b[j*tlog.HashSize:])
		}
	}
	return pickKnown(known, AuditFrontier(n+int64(len(stored))))
}

// AuditTips keeps, per workspace, a log's size and frontier as a store's own
// last append left them, so the next append need not read the frontier back.
// A kept frontier is used only for the size it was kept for: a log only grows,
// so an equal size is the same log, and an append by anyone else (another node,
// another process) changes the size and makes the store read again. A commit
// that a crash of the database can take back breaks the rule (another node
// may fill its size with other entries), so PostgreSQL keeps no tip of a lazy
// append; SQLite's journal is its process's alone and dies with it. Safe for
// concurrent use; a stale Keep (one appender's, after a later one's) is harmless
// for the same reason.
type AuditTips struct {
	mu   sync.Mutex
	tips map[int64]AuditTip
}

// AuditTip is a log's size and frontier after an append: what AuditTips.Keep
// takes once the append is committed.
type AuditTip struct {
	size     int64
	frontier []tlog.Hash
}

// Append is AuditAppend for workspace ws at size n, with the frontier taken
// from what is kept for n when there is one, else from read (the stored
// hashes); it also returns the tip to Keep once the append is committed.
func (t *AuditTips) Append(ws, n int64, entries []AuditEntry, read func([]int64) ([]tlog.Hash, error)) (data, hashes [][]byte, next AuditTip, err error) {
	var frontier []tlog.Hash
	data, hashes, err = AuditAppend(n, entries, func(idx []int64) ([]tlog.Hash, error) {
		t.mu.Lock()
		tip, ok := t.tips[ws]
		t.mu.Unlock()
		if ok && tip.size == n && len(tip.frontier) == len(idx) {
			frontier = tip.frontier
			return frontier, nil
		}
		f, rerr := read(idx)
		frontier = f
		return f, rerr
	})
	if err != nil {
		return nil, nil, AuditTip{}, err
	}
	f, err := AuditNextFrontier(n, frontier, hashes)
	if err != nil {
		return nil, nil, AuditTip{}, err
	}
	return data, hashes, AuditTip{size: n + int64(len(entries)), frontier: f}, nil
}

// AuditGroups returns the workspaces entries belong to, in ascending order
// (the order appenders lock or advance their logs in), and each one's entries'
// positions in entries.
func AuditGroups(entries []AuditEntry) (wss []int64, groups map[int64][]int) {
	groups = map[int64][]int{}
	for i := range entries {
		groups[entries[i].WorkspaceID] = append(groups[entries[i].WorkspaceID], i)
	}
	wss = make([]int64, 0, len(groups))
	for ws := range groups {
		wss = append(wss, ws)
	}
	slices.Sort(wss)
	return wss, groups
}

// Kept returns the size of the log whose tip is kept for workspace ws.
func (t *AuditTips) Kept(ws int64) (size int64, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	tip, ok := t.tips[ws]
	return tip.size, ok
}

// Keep records a workspace's tip after its append committed.
func (t *AuditTips) Keep(ws int64, tip AuditTip) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tips == nil {
		t.tips = map[int64]AuditTip{}
	}
	t.tips[ws] = tip
}

// Forget drops what is kept for the workspaces (an append whose outcome is
// unknown).
func (t *AuditTips) Forget(wss ...int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, ws := range wss {
		delete(t.tips, ws)
	}
}

// pickKnown returns the hashes at indexes out of known.
func pickKnown(known map[int64]tlog.Hash, indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		h, ok := known[x]
		if !ok {
			return nil, fmt.Errorf("audit append: hash %d not at hand", x)
		}
		out[i] = h
	}
	return out, nil
}

// AuditRecordHashCount is how many stored hashes appending record n adds.
func AuditRecordHashCount(n int64) int { return 1 + bits.TrailingZeros64(uint64(n+1)) }

// AuditHashRecords returns the records (deduplicated, in first-asked order) whose
// Hashes hold the given stored-hash indexes: what a store reads to answer
// ReadAuditHashes.
func AuditHashRecords(indexes []int64) []int64 {
	out := make([]int64, 0, len(indexes))
	seen := make(map[int64]bool, len(indexes))
	for _, x := range indexes {
		if r, _ := AuditHashLocation(x); !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	return out
}

// PickAuditHashes picks the stored hashes at indexes out of the records' Hashes
// (by record index). ENOTFOUND if a record is missing or too short: the log does
// not reach that far, or the row was tampered with.
func PickAuditHashes(indexes []int64, hashes map[int64][]byte) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x < 0 {
			return nil, Errorf(EINVALID, "Audit hash index %d is negative.", x).
				WithHint("Ask for entries and proofs of indexes from 0 to the log's size minus one.")
		}
		r, off := AuditHashLocation(x)
		b, ok := hashes[r]
		if !ok || len(b) < (off+1)*tlog.HashSize {
			return nil, Errorf(ENOTFOUND, "Audit log: the hashes of entry %d are not stored.", r).
				WithHint("The store lacks part of the log: run trustloop audit verify, and restore the database from a backup if it fails.")
		}
		copy(out[i][:], b[off*tlog.HashSize:])
	}
	return out, nil
}
