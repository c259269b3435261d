package auditlog

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/trustloop/trustloop"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Keys gives a workspace's Ed25519 signing key (keyring.Keyring does).
type Keys interface {
	SigningKey(workspaceID int64) (ed25519.PrivateKey, error)
}

// Config tunes a Log.
type Config struct {
	// CheckpointEvery is how often a workspace whose log grew gets a new stored
	// checkpoint (signing is cheap, but each is a row, and a verifier needs only
	// the latest). Default 10 seconds.
	CheckpointEvery time.Duration
	// MaxBatch is the most entries one commit carries. Default 8192.
	MaxBatch int
	// Now is the clock for entries appended without a time (default time.Now).
	Now func() time.Time
	// Logger gets integrity alarms and failed commits (never entry contents).
	Logger *slog.Logger
	// LazyDataUses commits groups made only of data uses with the store's
	// AppendAuditLazy: Append returns once they are written, before they are
	// on disk (see trustloop.AuditStore). Every other entry, and a group
	// with one, is committed strictly.
	LazyDataUses bool
}

// Log is the process's audit log writer for every workspace: one goroutine takes
// whatever entries are waiting and commits them in one store transaction (group
// commit), so thousands of data-use records a second cost a few commits, not one
// each. Append returns once its entries are committed.
type Log struct {
	store    trustloop.AuditStore
	keys     Keys
	now      func() time.Time
	log      *slog.Logger
	every    time.Duration
	maxBatch int
	lazyUses bool

	queue chan *request
	// closeMu orders Close after every Append that got into the queue, so the
	// writer's final drain sees them all.
	closeMu    sync.RWMutex
	closed     bool
	stop       chan struct{}
	writerDone chan struct{}
	tickerDone chan struct{}

	mu    sync.Mutex
	dirty map[int64]bool // workspaces whose log grew since their last checkpoint

	ckptMu sync.Mutex                 // one checkpoint at a time
	signed map[int64]signedCheckpoint // the largest tree this process signed, per workspace
}

type signedCheckpoint struct {
	tree tlog.Tree
	note []byte
}

type request struct {
	entries []trustloop.AuditEntry
	done    chan error
}

// New starts a log over the store; Close stops it.
func New(store trustloop.AuditStore, keys Keys, cfg Config) *Log {
	if cfg.CheckpointEvery <= 0 {
		cfg.CheckpointEvery = 10 * time.Second
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 8192
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	l := &Log{store: store, keys: keys, now: cfg.Now, log: cfg.Logger, every: cfg.CheckpointEvery, maxBatch: cfg.MaxBatch, lazyUses: cfg.LazyDataUses,
		queue: make(chan *request, 8192), stop: make(chan struct{}), writerDone: make(chan struct{}), tickerDone: make(chan struct{}),
		dirty: map[int64]bool{}, signed: map[int64]signedCheckpoint{}}
	go l.write()
	go l.tick()
	return l
}

var errClosed = &trustloop.Error{Code: trustloop.EUNAVAILABLE, Message: "The audit log is shut down.",
	Hint: "This node is stopping; retry on another.", RetryAfterSeconds: 1}

// Append appends entries (of any workspaces) and returns once they are
// committed. An entry without a Time gets the log's clock; Index is set by the
// store. Returns EINVALID if an entry is not valid (nothing of this call is
// appended then). If ctx ends first, Append returns ctx's error and the entries
// may still be committed: a caller that must not act unrecorded stops there.
func (l *Log) Append(ctx context.Context, entries ...trustloop.AuditEntry) error {
	if len(entries) == 0 {
		return nil
	}
	r := &request{entries: make([]trustloop.AuditEntry, len(entries)), done: make(chan error, 1)}
	now := l.now()
	for i, e := range entries {
		if e.Time.IsZero() {
			e.Time = now
		}
		e.Time = e.Time.UTC().Truncate(time.Millisecond)
		e.Index = 0
		e.Categories = slices.Clone(e.Categories)
		// Checked here, so one caller's bad entry fails that caller, not the
		// group it would have been committed with.
		if err := e.Validate(); err != nil {
			return err
		}
		r.entries[i] = e
	}
	l.closeMu.RLock()
	if l.closed {
		l.closeMu.RUnlock()
		return errClosed
	}
	select {
	case l.queue <- r:
		l.closeMu.RUnlock()
	case <-ctx.Done():
		l.closeMu.RUnlock()
		return ctx.Err()
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// write is the single writer: it commits everything waiting as one group.
func (l *Log) write() {
	defer close(l.writerDone)
	for {
		select {
		case r := <-l.queue:
			l.commit(l.gather(r))
		case <-l.stop:
			// Close let no Append in after stop; commit what is queued.
			for {
				select {
				case r := <-l.queue:
					l.commit(l.gather(r))
				default:
					return
				}
			}
		}
	}
}

// gather adds whatever else is waiting to first's group, up to MaxBatch entries.
func (l *Log) gather(first *request) []*request {
	group := []*request{first}
	n := len(first.entries)
	for n < l.maxBatch {
		select {
		case r := <-l.queue:
			group = append(group, r)
			n += len(r.entries)
		default:
			return group
		}
	}
	return group
}

func (l *Log) commit(group []*request) {
	all := group[0].entries
	if len(group) > 1 {
		all = make([]trustloop.AuditEntry, 0, len(group)*len(group[0].entries))
		for _, r := range group {
			all = append(all, r.entries...)
		}
	}
	// Not a caller's context: one caller going away must not fail the others.
	appendAudit := l.store.AppendAudit
	if l.lazyUses && onlyDataUses(all) {
		appendAudit = l.store.AppendAuditLazy
	}
	err := appendAudit(context.Background(), all)
	if trustloop.ErrorCode(err) == trustloop.EINVALID && len(group) > 1 {
		// Entries were checked in Append, so this is unexpected; still, commit
		// the others without the one the store refuses.
		for _, r := range group {
			l.commit([]*request{r})
		}
		return
	}
	if err != nil {
		l.log.Error("audit log: commit failed", "entries", len(all), "err", err)
	} else {
		l.mu.Lock()
		for i := range all {
			l.dirty[all[i].WorkspaceID] = true
		}
		l.mu.Unlock()
	}
	for _, r := range group {
		r.done <- err
	}
}

// onlyDataUses reports whether every entry records a data use.
func onlyDataUses(entries []trustloop.AuditEntry) bool {
	for i := range entries {
		if entries[i].Kind != trustloop.AuditDataUse {
			return false
		}
	}
	return true
}

func (l *Log) tick() {
	defer close(l.tickerDone)
	t := time.NewTicker(l.every)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.checkpointDirty()
		}
	}
}

// checkpointDirty signs and stores a checkpoint of every log that grew.
func (l *Log) checkpointDirty() {
	l.mu.Lock()
	wss := make([]int64, 0, len(l.dirty))
	for ws := range l.dirty {
		wss = append(wss, ws)
	}
	clear(l.dirty)
	l.mu.Unlock()
	slices.Sort(wss)
	for _, ws := range wss {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := l.Checkpoint(ctx, ws)
		cancel()
		if err != nil {
			l.log.Warn("audit log: checkpoint failed; will retry", "workspace_id", ws, "err", err)
			l.mu.Lock()
			l.dirty[ws] = true
			l.mu.Unlock()
		}
	}
}

// Close commits what is queued, writes a last checkpoint of every log that grew,
// and stops. Append fails after Close.
func (l *Log) Close() error {
	l.closeMu.Lock()
	if l.closed {
		l.closeMu.Unlock()
		return nil
	}
	l.closed = true
	close(l.stop)
	l.closeMu.Unlock()
	<-l.writerDone
	<-l.tickerDone
	l.checkpointDirty()
	return nil
}

// KeyName is the name of a workspace's checkpoint key, as it appears in its
// notes' signature lines and verifier key.
func KeyName(workspaceID int64) string {
	return "trustloop.audit/ws-" + strconv.FormatInt(workspaceID, 10)
}

// keyWorkspace is KeyName's inverse.
func keyWorkspace(name string) (int64, bool) {
	s, ok := strings.CutPrefix(name, "trustloop.audit/ws-")
	if !ok {
		return 0, false
	}
	ws, err := strconv.ParseInt(s, 10, 64)
	return ws, err == nil && ws > 0 && strconv.FormatInt(ws, 10) == s
}

// signer is a note.Signer over the workspace's Ed25519 key: the key stays a
// key, never serialized into the "PRIVATE+KEY+…" string note.NewSigner parses.
type signer struct {
	name string
	hash uint32
	key  ed25519.PrivateKey
}

func (s *signer) Name() string                    { return s.name }
func (s *signer) KeyHash() uint32                 { return s.hash }
func (s *signer) Sign(msg []byte) ([]byte, error) { return ed25519.Sign(s.key, msg), nil }

// newSigner returns the workspace's checkpoint signer and verifier key.
func (l *Log) newSigner(workspaceID int64) (*signer, string, error) {
	key, err := l.keys.SigningKey(workspaceID)
	if err != nil {
		return nil, "", err
	}
	vkey, err := VerifierKeyOf(workspaceID, key.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, "", err
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, "", err
	}
	return &signer{name: KeyName(workspaceID), hash: v.KeyHash(), key: key}, vkey, nil
}

// VerifierKeyOf returns the verifier key of a workspace's checkpoints given its
// public signing key (what VerifierKey returns, for tools holding the keyring).
func VerifierKeyOf(workspaceID int64, pub ed25519.PublicKey) (string, error) {
	return note.NewEd25519VerifierKey(KeyName(workspaceID), pub)
}

// VerifierKey returns the workspace's verifier key (name+hash+key, the sumdb
// note format), which operators pin to check checkpoints offline.
func (l *Log) VerifierKey(workspaceID int64) (string, error) {
	_, vkey, err := l.newSigner(workspaceID)
	return vkey, err
}

// Checkpoint returns a signed note of the workspace's tree as it now stands, and
// stores it if the tree grew since the last stored one.
//
// It never signs a tree that does not extend the last one signed (by this
// process, or stored by any node): a log edited, cut short or forked underneath
// would otherwise be blessed by a fresh signature. Then it logs an alarm and
// returns the last good checkpoint instead, against which Verify finds the edit.
func (l *Log) Checkpoint(ctx context.Context, workspaceID int64) ([]byte, error) {
	l.ckptMu.Lock()
	defer l.ckptMu.Unlock()
	s, _, err := l.newSigner(workspaceID)
	if err != nil {
		return nil, err
	}
	// The last checkpoint is read before the size: a checkpoint is stored only
	// after its entries are committed, so, honestly kept, it never exceeds the
	// size read after it, even with other nodes appending meanwhile.
	latest, err := l.store.LatestAuditCheckpoint(ctx, workspaceID)
	if trustloop.ErrorCode(err) == trustloop.ENOTFOUND {
		latest, err = nil, nil
	} else if err != nil {
		return nil, err
	}
	prev, havePrev := l.signed[workspaceID]
	if latest != nil && (!havePrev || latest.Size > prev.tree.N) {
		prev, havePrev = signedCheckpoint{tree: tlog.Tree{N: latest.Size, Hash: latest.Hash}, note: latest.Note}, true
	}
	size, err := l.store.AuditSize(ctx, workspaceID)
	if err != nil {
		return nil, err
	}
	r := storeReader(ctx, l.store, workspaceID)
	hash, err := tlog.TreeHash(size, r)
	if err == nil && havePrev {
		err = extends(prev.tree, size, hash, r)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		l.log.Error("audit log: the log no longer extends its last checkpoint; refusing to sign it",
			"workspace_id", workspaceID, "checkpoint_size", prev.tree.N, "size", size, "err", err)
		if havePrev && len(prev.note) > 0 {
			return prev.note, nil
		}
		return nil, trustloop.Errorf(trustloop.EINTERNAL, "The audit log of this workspace cannot be checkpointed: its stored hashes are inconsistent.").
			WithHint("Run `trustloop audit verify` against the store to find the damaged entry.")
	}
	tree := tlog.Tree{N: size, Hash: hash}
	msg, err := note.Sign(&note.Note{Text: string(tlog.FormatTree(tree))}, s)
	if err != nil {
		return nil, err
	}
	if latest == nil || size > latest.Size {
		c := &trustloop.AuditCheckpoint{WorkspaceID: workspaceID, Size: size, Hash: hash, Note: msg, CreatedAt: l.now().UTC()}
		if err := l.store.SaveAuditCheckpoint(ctx, c); err != nil {
			return nil, err
		}
	}
	if !havePrev || size >= prev.tree.N {
		l.signed[workspaceID] = signedCheckpoint{tree: tree, note: msg}
	}
	return msg, nil
}

// extends reports (nil) whether the tree (size, hash) extends prev, proving it
// with the store's hashes.
func extends(prev tlog.Tree, size int64, hash tlog.Hash, r tlog.HashReader) error {
	switch {
	case prev.N > size:
		return fmt.Errorf("the log shrank from %d to %d entries", prev.N, size)
	case prev.N == size && prev.Hash != hash:
		return fmt.Errorf("the tree of %d entries changed", size)
	case prev.N == size || prev.N == 0:
		return nil
	}
	p, err := tlog.ProveTree(size, prev.N, r)
	if err != nil {
		return err
	}
	if err := tlog.CheckTree(p, size, hash, prev.N, prev.Hash); err != nil {
		return fmt.Errorf("the first %d entries changed since they were checkpointed", prev.N)
	}
	return nil
}

// storeReader reads a workspace's stored hashes as a tlog.HashReader.
func storeReader(ctx context.Context, store trustloop.AuditStore, workspaceID int64) tlog.HashReader {
	return tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) { return store.ReadAuditHashes(ctx, workspaceID, idx) })
}

// Size returns the number of entries in the workspace's log.
func (l *Log) Size(ctx context.Context, workspaceID int64) (int64, error) {
	return l.store.AuditSize(ctx, workspaceID)
}

// Records returns the stored records [start, end) of the workspace's log.
func (l *Log) Records(ctx context.Context, workspaceID, start, end int64) ([]trustloop.AuditRecord, error) {
	return l.store.AuditRecords(ctx, workspaceID, start, end)
}

// InclusionProof proves that entry index is in the workspace's tree of the given
// size. EINVALID unless 0 <= index < size <= the log's size.
func (l *Log) InclusionProof(ctx context.Context, workspaceID, index, size int64) (tlog.RecordProof, error) {
	return InclusionProof(ctx, l.store, workspaceID, index, size)
}

// ConsistencyProof proves that the workspace's tree of size old is a prefix of
// its tree of size new. EINVALID unless 1 <= old <= new <= the log's size.
func (l *Log) ConsistencyProof(ctx context.Context, workspaceID, old, new int64) (tlog.TreeProof, error) {
	return ConsistencyProof(ctx, l.store, workspaceID, old, new)
}

// InclusionProof is Log.InclusionProof on a store (for `trustloop audit verify`
// against a data directory).
func InclusionProof(ctx context.Context, store trustloop.AuditStore, workspaceID, index, size int64) (tlog.RecordProof, error) {
	n, err := store.AuditSize(ctx, workspaceID)
	if err != nil {
		return nil, err
	}
	switch {
	case size < 1 || size > n:
		return nil, outOfRange("size", size, 1, n)
	case index < 0 || index >= size:
		return nil, trustloop.Errorf(trustloop.EINVALID, "index %d is not in a tree of %d entries.", index, size).
			WithHint("Ask for an index from 0 to size-1.")
	}
	p, err := tlog.ProveRecord(size, index, storeReader(ctx, store, workspaceID))
	if err != nil {
		return nil, proofErr(err)
	}
	return p, nil
}

// ConsistencyProof is Log.ConsistencyProof on a store.
func ConsistencyProof(ctx context.Context, store trustloop.AuditStore, workspaceID, old, new int64) (tlog.TreeProof, error) {
	n, err := store.AuditSize(ctx, workspaceID)
	if err != nil {
		return nil, err
	}
	switch {
	case new < 1 || new > n:
		return nil, outOfRange("new", new, 1, n)
	case old < 1 || old > new:
		return nil, trustloop.Errorf(trustloop.EINVALID, "old must be from 1 to new (%d); it is %d.", new, old).
			WithHint("A consistency proof goes from an earlier, smaller tree to a later one.")
	}
	p, err := tlog.ProveTree(new, old, storeReader(ctx, store, workspaceID))
	if err != nil {
		return nil, proofErr(err)
	}
	return p, nil
}

func outOfRange(name string, v, lo, hi int64) error {
	if hi < lo {
		return trustloop.Errorf(trustloop.EINVALID, "The audit log has %d entries: no tree of size %d to prove.", hi, v).
			WithHint("Wait until entries are appended.")
	}
	return trustloop.Errorf(trustloop.EINVALID, "%s must be from %d to %d (the log's size); it is %d.", name, lo, hi, v).
		WithHint("Take the size from GET /v1/audit/checkpoint.")
}

// proofErr keeps application errors (a missing hash is ENOTFOUND) and wraps the rest.
func proofErr(err error) error {
	var e *trustloop.Error
	if errors.As(err, &e) {
		return err
	}
	return fmt.Errorf("auditlog: proof: %w", err)
}

// RecordsOf returns the records naming subject, newest first, below index
// before (0: from the end), at most limit.
func (l *Log) RecordsOf(ctx context.Context, workspaceID int64, subject string, before int64, limit int) ([]trustloop.AuditRecord, error) {
	return l.store.AuditRecordsOf(ctx, workspaceID, subject, before, limit)
}
