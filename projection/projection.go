package projection

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/audience"
	"github.com/trustloop/trustloop/cache"
	"github.com/trustloop/trustloop/identity"
	"github.com/trustloop/trustloop/keyring"
	"github.com/trustloop/trustloop/profile"
)

// Store is what the service needs of a backend.
type Store interface {
	trustloop.ProfileStore
	trustloop.SettingStore
	FindSubjectKeys(ctx context.Context, workspaceID int64, blinds [][]byte) (map[string]trustloop.SubjectKey, error)
	ListEvents(ctx context.Context, workspaceID, after int64, limit int) ([]trustloop.StoredEvent, error)
	// FindSubjectKeysByID returns stored subject keys by id; unknown ones are
	// missing.
	FindSubjectKeysByID(ctx context.Context, workspaceID int64, ids []int64) (map[int64]trustloop.SubjectKey, error)
	// IdentitiesOfProfiles returns the identities of several profiles at once.
	IdentitiesOfProfiles(ctx context.Context, workspaceID int64, profileIDs []int64) ([]trustloop.IdentityRecord, error)
}

// Service keeps profiles up to date at ingest and reads them back.
type Service struct {
	store   Store
	keys    *keyring.Keyring
	rules   *identity.Rules
	profile profile.Config
	// identityDefaults is what Settings shows for a workspace that never set its
	// own (the rules above were compiled from it).
	identityDefaults identity.Config
	// Now is the clock (tests set it).
	Now func() time.Time

	// OnSkip, when set, counts what the projection did not use: kind is
	// "identifier" or "profile_input", reason a fixed word (never a value).
	OnSkip func(kind, reason string)

	// FlushAfter is how long an updated profile may stay only in memory before
	// it is written behind; MaxCached bounds the profiles kept in memory.
	FlushAfter time.Duration
	MaxCached  int

	mu        sync.Mutex
	audiences map[int64]*audience.Set // per workspace, nil until loaded
	keyByID   map[int64]keyring.Key   // unwrapped subject keys by id (bounded)
	cache     map[int64]*state        // profiles in memory: every dirty one, some clean
	configs   map[int64]*wsConfig     // compiled settings per workspace
	pending   map[int64]*pendingRun   // timeline positions not written yet, by key id
	lastSeq   int64                   // the newest log position installed
	flushMu   sync.Mutex              // one flush at a time
	opMu      sync.Mutex              // a group (Group..Done) or an operator action, one at a time
	inflight  map[int64]bool          // profiles a flush is writing: not to be evicted
	// owners caches the identity graph: which profile each blind index belongs
	// to, as committed (installed by Done, like profile states). A group asks the
	// store only for the identifiers not in it — in steady state, those of new
	// visitors. Only this service changes identities (groups, Split), under
	// opMu, so the cache cannot go stale on one node.
	owners *cache.TwoGen[ownerKey, int64]
	// subjects caches Subjects' answer per profile (the recommender asks it
	// for every answer). Only this service changes identities, under opMu: a
	// group whose commit added or moved any, a split, an erasure or a
	// rectification clears it and moves subjectsGen on, and a reader stores
	// what it read only if subjectsGen did not move meanwhile (else it may have
	// read the store before the change).
	subjectsMu  sync.Mutex
	subjectsGen uint64
	subjects    map[[2]int64][][]byte
	// dirtyQ lists the profiles in the order they became dirty, from dirtyHead
	// (so by log position and by time): a flush takes from the front and the
	// watermark is the front's position, with no scan of the cache. An entry
	// whose profile is clean by the time it is taken is dropped.
	dirtyQ    []dirtyEntry
	dirtyHead int
	// sweep lists, from sweepPos, the profiles the flush in progress still
	// has to write, in id order (see flush.go). FlushBatch, when not 0,
	// bounds the rows of a flush transaction (tests; else flushBatch).
	sweep      []int64
	sweepPos   int
	FlushBatch int
	// tlQ lists pending timeline runs in the order they were started, from
	// tlHead, as dirtyQ does profiles; full lists keys whose run reached
	// timelineRunMax. An entry whose run was written since is dropped.
	tlQ    []tlEntry
	tlHead int
	full   []int64
	// tlSweep lists, from tlSweepPos, the keys whose runs the timeline sweep
	// in progress still has to write, ascending.
	tlSweep    []int64
	tlSweepPos int
	// TimelineAfter is how long a timeline run may stay only in memory.
	TimelineAfter time.Duration
	// marked lists the profiles whose installed state has a fold mark
	// (state.folded), dropped by the next Done.
	marked []int64
	// written: the watermarks last written (a flush with nothing new to write
	// writes nothing).
	wroteUpto, wroteTimeline int64
}

type dirtyEntry struct {
	id    int64
	since int64
	at    time.Time
}

type ownerKey struct {
	ws    int64
	blind [keyring.BlindSize]byte
}

func mkOwnerKey(ws int64, blind []byte) ownerKey {
	k := ownerKey{ws: ws}
	copy(k.blind[:], blind)
	return k
}

// ownersCached bounds the owner cache (per generation: up to twice this many
// identifiers, ~80 bytes each).
const ownersCached = 500_000

// pendingRun is a key's timeline positions held in memory, since at.
type pendingRun struct {
	seqs []int64
	at   time.Time
}

// Timelines are written behind longer than profile state: a run of a key's
// positions is written once it holds timelineRunMax positions or is TimelineAfter
// old. Written with every flush, a customer active every few seconds cost one
// timeline row per event (measured: as many rows as events), a random page
// write each. Their own watermark (TimelineUpto) lets a start rebuild what was
// held in memory from the events' key ids alone (EventKeys), without replaying
// the profiles.
const timelineRunMax = 64

// tlEntry is a run in the order runs were started (so by first position).
type tlEntry struct {
	key   int64
	first int64
	at    time.Time
}

// New returns a service. rules and cfg apply to every workspace (per-workspace
// configuration is a later step).
func New(store Store, keys *keyring.Keyring, rules *identity.Rules, cfg profile.Config) *Service {
	return &Service{store: store, keys: keys, rules: rules, profile: cfg, Now: time.Now,
		FlushAfter: 10 * time.Second, TimelineAfter: time.Minute, MaxCached: 50_000, identityDefaults: identity.DefaultConfig(),
		audiences: map[int64]*audience.Set{}, keyByID: map[int64]keyring.Key{},
		cache: map[int64]*state{}, pending: map[int64]*pendingRun{}, configs: map[int64]*wsConfig{},
		inflight: map[int64]bool{}, owners: cache.NewTwoGen[ownerKey, int64](ownersCached)}
}

// Item is one event of a group as the projection sees it: the message (plaintext,
// only in memory), where it came from and the key that seals it.
type Item struct {
	WorkspaceID int64
	SourceID    int64
	Message     *trustloop.Message
	MessageHash []byte
	KeyID       int64
	Key         keyring.Key
	IDs         []trustloop.Identifier
	// Blinds are the IDs' blind indexes, aligned, when the caller made them
	// beforehand (Prepare); nil: made in the commit.
	Blinds [][]byte
	// Input is the profile rules' input, when the caller made it beforehand
	// (Prepare); nil: made from Message in the commit.
	Input *profile.Input
	// Subject is the blind index of the message's subject (its user id, else
	// its anonymous id): the identifier its key belongs to. When the event is
	// applied to a profile that identifier is not part of (blocked, or over a
	// limit), its position goes to the profile's foreign timeline too, so the
	// profile's reads, exports and erasure find it.
	Subject []byte
}

// ForeignKey is the timeline key under which a profile's foreign events are
// listed: positions of events applied to it that are sealed under a key that
// is not one of its identities' (negative, so it is never a subject key id).
func ForeignKey(profileID int64) int64 { return -profileID }

// Prepare does the per-message work that needs no store: the identifiers, their
// blind indexes (an HMAC each) and the profile rules' input. Ingest calls it in
// the request's goroutine, so this work runs in parallel across requests instead
// of on the single writer. user and anon, when not nil, are the blind indexes
// the caller made of m's user id and anonymous id already (ingest does, for the
// subject key and the consent stage): an identifier equal to one takes it
// instead of a second HMAC. A blind
// index that cannot be made is left to the commit, which reports the error.
func (s *Service) Prepare(ws int64, m *trustloop.Message, sourceID int64, user, anon []byte) ([]trustloop.Identifier, [][]byte, *profile.Input) {
	in := inputOf(m, sourceID)
	ids := s.Identify(ws, m)
	blinds := make([][]byte, len(ids))
	for i, id := range ids {
		// Identifiers are normalized: a given blind index is the identifier's
		// only when the value came through unchanged.
		if user != nil && id.Type == trustloop.IDUserID && id.Value == m.UserID {
			blinds[i] = user
			continue
		}
		if anon != nil && id.Type == trustloop.IDAnonymousID && id.Value == m.AnonymousID {
			blinds[i] = anon
			continue
		}
		b, err := s.keys.Blind(ws, id.Type, id.Value)
		if err != nil {
			return ids, nil, &in
		}
		blinds[i] = b
	}
	return ids, blinds, &in
}

// rulesFor returns the workspace's identity rules, or the defaults when its
// settings cannot be read now (the commit's projection reports the store
// error).
func (s *Service) rulesFor(ws int64) *identity.Rules {
	if c, err := s.config(context.Background(), ws); err == nil {
		return c.rules
	}
	return s.rules
}

// Placeholders reports whether a message's user id and anonymous id are
// among the workspace's blocked values (identity.Rules.Placeholder), with one
// look-up of the workspace's rules for both.
func (s *Service) Placeholders(ws int64, userID, anonymousID string) (user, anon bool) {
	rules := s.rulesFor(ws)
	return rules.Placeholder(userID), rules.Placeholder(anonymousID)
}

// Identify extracts a message's identifiers (in the request's goroutine, so the
// work runs in parallel across requests).
func (s *Service) Identify(ws int64, m *trustloop.Message) []trustloop.Identifier {
	ids, skipped := s.rulesFor(ws).FromMessage(m)
	s.skipped(skipped)
	return ids
}

// skippedInput counts the parts of an event the profile rules left out.
func (s *Service) skippedInput(rs []profile.Reason) {
	if s.OnSkip == nil {
		return
	}
	for _, r := range rs {
		s.OnSkip("profile_input", string(r))
	}
}

func (s *Service) skipped(sk []identity.Skip) {
	if s.OnSkip == nil {
		return
	}
	for _, k := range sk {
		s.OnSkip("identifier", k.Reason)
	}
}

// profileAAD binds sealed profile state to its workspace and profile.
func profileAAD(ws, id int64) []byte {
	b := append([]byte("trustloop/profile/v1"), make([]byte, 16)...)
	binary.BigEndian.PutUint64(b[len(b)-16:], uint64(ws))
	binary.BigEndian.PutUint64(b[len(b)-8:], uint64(id))
	return b
}

// identityAAD binds a sealed identifier value to its workspace and blind index.
func identityAAD(ws int64, blind []byte) []byte {
	b := append([]byte("trustloop/identity/v1"), make([]byte, 8)...)
	binary.BigEndian.PutUint64(b[len(b)-8:], uint64(ws))
	return append(b, blind...)
}

// profileEpoch is where profile ids start counting milliseconds.
var profileEpoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()

// lastID is the last profile or merge id this process made.
var lastID atomic.Int64

// newProfileID makes an id that grows with creation time (identity resolution
// keeps the oldest profile of a merge, by lowest id) and needs no coordination
// between writers: milliseconds since 2024 above 22 random bits, and strictly
// increasing within a process (a group makes many ids in one millisecond).
// Writers on different nodes collide only if they pick the same 22 random bits
// in the same millisecond.
func newProfileID(now time.Time) int64 {
	var b [4]byte
	rand.Read(b[:])
	id := (now.UnixMilli()-profileEpoch)<<22 | int64(binary.BigEndian.Uint32(b[:])&(1<<22-1))
	for {
		last := lastID.Load()
		next := max(id, last+1)
		if lastID.CompareAndSwap(last, next) {
			return next
		}
	}
}

// keysFor returns unwrapped subject keys by id, from memory or the store.
func (s *Service) keysFor(ctx context.Context, ws int64, ids []int64) (map[int64]keyring.Key, error) {
	out := make(map[int64]keyring.Key, len(ids))
	var missing []int64
	s.mu.Lock()
	for _, id := range ids {
		if k, ok := s.keyByID[id]; ok {
			out[id] = k
		} else if !slices.Contains(missing, id) {
			missing = append(missing, id)
		}
	}
	s.mu.Unlock()
	if len(missing) == 0 {
		return out, nil
	}
	found, err := s.store.FindSubjectKeysByID(ctx, ws, missing)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.keyByID) > 200_000 {
		clear(s.keyByID) // crude bound; a miss costs one indexed read
	}
	for id, sk := range found {
		k, err := s.keys.OpenSubjectKey(sk)
		if err != nil {
			return nil, fmt.Errorf("projection: subject key %d: %w", id, err)
		}
		s.keyByID[id] = k
		out[id] = k
	}
	return out, nil
}

// Forget drops keys from memory (after an erasure).
func (s *Service) Forget(ids []int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		delete(s.keyByID, id)
	}
}

// audienceSet returns the workspace's compiled audiences.
func (s *Service) audienceSet(ctx context.Context, ws int64) (*audience.Set, error) {
	s.mu.Lock()
	set, ok := s.audiences[ws]
	s.mu.Unlock()
	if ok {
		return set, nil
	}
	as, err := s.store.ListAudiences(ctx, ws)
	if err != nil {
		return nil, err
	}
	set, err = audience.NewSet(toAudiences(as))
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.audiences[ws] = set
	s.mu.Unlock()
	return set, nil
}

func toAudiences(as []*trustloop.Audience) []*audience.Audience {
	out := make([]*audience.Audience, len(as))
	for i, a := range as {
		out[i] = &audience.Audience{ID: a.ID, WorkspaceID: a.WorkspaceID, Name: a.Name, Rule: a.Rule,
			Description: a.Description, CreatedAt: a.CreatedAt, UpdatedAt: a.UpdatedAt}
	}
	return out
}

// invalidateAudiences makes the next group reload a workspace's audiences.
func (s *Service) invalidateAudiences(ws int64) {
	s.mu.Lock()
	delete(s.audiences, ws)
	s.mu.Unlock()
}

// state is a profile in memory. The cache holds installed states; a group
// commit works on working copies of them (so a commit that fails changes
// nothing) and installs them once its transaction has committed.
//
// An installed state keeps the profile encoded (enc, profile.State's binary
// form), a working copy decoded (st): a hundred thousand decoded profiles are
// maps of strings the GC scans at every cycle (a quarter of a loaded server's
// CPU went to GC), and encoding one is no dearer than the deep copy a working
// copy needed anyway; flushes seal enc as it is.
type state struct {
	rec trustloop.ProfileRecord // State unused: st or enc is the truth
	st  profile.State           // working copies
	enc []byte                  // installed states, and working copies once projected
	// types counts the profile's identifiers by type: all Resolve needs of
	// them (its limits). Installed states keep it (one small slice; the
	// identifiers themselves are never kept: they were 40 % of the objects the
	// GC had to visit). A working copy shares its installed state's slice until
	// it changes it (typesOwn).
	types    []identity.TypeCount
	typesOwn bool
	members  []int64
	// dirty: changed since last written; since: the first log position not yet
	// written (what the watermark may not pass); dirtyAt: when it became dirty.
	dirty   bool
	since   int64
	dirtyAt time.Time
	// pend holds events not applied to enc yet, npend of them, each as
	// profile.AppendInput encodes it, to be applied in order with pendCfg's
	// rules (the workspace's when they were held) by the next decode: see
	// "Held events" below. Only the group's writer appends to pend, past the
	// end every installed state and snapshot sees, so they can share it.
	pend    []byte
	npend   int
	pendCfg *wsConfig
	// base and skips, on a working copy whose decode applied held events:
	// what they were held on (the installed enc, the held bytes and count)
	// and what the rules skipped of each, counted when the copy is installed
	// (Done), less what a flush installed meanwhile (folded) counted already.
	base  *foldMark
	skips []heldSkip
	// folded, on an installed state: the last flush's fold installed in it
	// (foldBackLocked), so that a group that copied the state before it can
	// take the fold instead of its own copy's unfolded events (Done).
	folded *foldMark
	// touched: changed by the group being projected (group clones only).
	touched bool
	// stored: a row exists (else the group commit inserts one).
	stored bool
	// typesKnown: types counts all the profile's identifiers (false for a
	// state read from the store until ensureTypes counts its rows).
	typesKnown bool
	// membersDirty: members changed since they were last written;
	// membersKnown: members are what is stored (false for a state read from the
	// store, whose memberships were not read).
	membersDirty, membersKnown bool
}

// addType counts n more identifiers of a type.
func (st *state) addType(t string, n int) {
	if !st.typesOwn {
		st.types, st.typesOwn = slices.Clone(st.types), true
	}
	for i := range st.types {
		if st.types[i].Type == t {
			st.types[i].N += n
			return
		}
	}
	st.types = append(st.types, identity.TypeCount{Type: internType(t), N: n})
}

// internType returns the built-in identifier types as the package's constants,
// so that counts kept for many profiles do not each hold a copy of the name
// read from a row.
func internType(t string) string {
	for _, c := range [...]string{trustloop.IDUserID, trustloop.IDEmail, trustloop.IDPhone,
		trustloop.IDAnonymousID, trustloop.IDDeviceID} {
		if t == c {
			return c
		}
	}
	return t
}

// copyLocked starts a working copy of an installed state; s.mu is held (the
// flusher and putBack change an installed state's flags, reevaluate its
// members). decode finishes it outside the lock: enc itself is never changed.
func (st *state) copyLocked() *state {
	c := *st
	c.st = profile.State{}
	c.typesOwn = false // shared until addType
	c.members = slices.Clone(st.members)
	c.touched = false
	return &c
}

// foldMark names held events applied to an encoding: the encoding (enc, an
// array never changed in place), the held bytes (pend) and their count (n).
type foldMark struct {
	enc, pend []byte
	n         int
}

// heldSkip is a reason the rules skipped part of the i-th held event.
type heldSkip struct {
	i int
	r profile.Reason
}

// decode fills a working copy's st from its enc, then applies the events it
// holds, noting what the rules skipped of them (st.skips, with st.base): they
// are counted where the result is installed (Done, or the flush's fold-back),
// never by a read or a copy that is dropped.
func (st *state) decode() error {
	if err := st.st.UnmarshalBinary(st.enc); err != nil {
		return fmt.Errorf("projection: profile %d: %w", st.rec.ID, err)
	}
	if st.npend == 0 {
		return nil
	}
	st.base = &foldMark{enc: st.enc, pend: st.pend, n: st.npend}
	rest := st.pend
	for i := range st.npend {
		in, r, err := profile.ReadInput(rest)
		if err != nil {
			return fmt.Errorf("projection: profile %d: held event: %w", st.rec.ID, err)
		}
		rest = r
		for _, reason := range st.pendCfg.profile.Apply(&st.st, in).Skipped {
			st.skips = append(st.skips, heldSkip{i, reason})
		}
	}
	st.pend, st.npend, st.pendCfg = nil, 0, nil
	return nil
}

// uncounted returns the reasons of held events a working copy applied that a
// fold installed since (m) did not count: those past the fold's events when
// the copy's events were held on the same encoding with the fold's bytes first,
// else all.
func (st *state) uncounted(m *foldMark) []profile.Reason {
	from := 0
	if m != nil && st.base != nil && m.covers(st.base.enc, st.base.pend) {
		from = m.n
	}
	var out []profile.Reason
	for _, k := range st.skips {
		if k.i >= from {
			out = append(out, k.r)
		}
	}
	return out
}

// covers reports whether held bytes pend on encoding enc begin with the events
// this fold applied. The same encoding is the same array of the same length
// (encodings are never changed in place); held events are compared by their
// bytes, since a group's append may have moved them to a larger array.
func (m *foldMark) covers(enc, pend []byte) bool {
	return unsafe.SliceData(enc) == unsafe.SliceData(m.enc) && len(enc) == len(m.enc) && bytes.HasPrefix(pend, m.pend)
}

// view is identity.View over the store plus this group's changes.
type view struct {
	s     *Service
	ctx   context.Context
	ws    int64
	owner map[string]int64 // blind -> profile
	// changed lists the blinds whose owner did not come from the owner cache
	// (read from the store, attached or moved): what Done installs there.
	changed []string
	blinds  map[trustloop.Identifier][]byte
	prof    map[int64]*state
	sep     map[[2]int64]bool
	merges  []trustloop.MergeRecord // this group's, not stored yet
	err     error
	// deferred holds, per profile not loaded yet, the events that join it by
	// the fast path: applied when the profile is loaded (load), else at the
	// end of the group, in parallel across profiles (finishDeferred).
	deferred map[int64][]deferredEvent
	apply    func(st *state, e deferredEvent)
	// holdable tells whether an installed state may take these deferred
	// events held (undecoded) rather than applied; hold encodes one for it.
	holdable func(c *state, evs []deferredEvent) bool
	hold     func(h *heldJob, e deferredEvent)
	// held lists the profiles whose events this group holds (Group.held).
	held *[]heldJob
}

// heldJob is a group's events held for an installed profile: encoded here,
// appended to the installed state in place by Done once the commit succeeded
// (no working copy: copying the state was most of holding an event's cost).
type heldJob struct {
	c       *state // the installed state when the group began
	applied int64  // its applied_seq then: a replay skips what it has
	buf     []byte // the events, as profile.AppendInput encodes them
	n       int
	// first and last: the log positions of the first and last events held.
	first, last int64
	cfg         *wsConfig
	at          time.Time
}

// deferredEvent is an event of the group (index into its items) and its log
// position.
type deferredEvent struct {
	i   int
	seq int64
}

// soleOwner returns the profile every identifier belongs to, if they all belong
// to one; 0 otherwise (or for an event without identifiers).
func (v *view) soleOwner(ids []trustloop.Identifier) int64 {
	var p int64
	for _, id := range ids {
		o, ok := v.owner[string(v.blind(id))]
		if !ok || o == 0 || (p != 0 && o != p) {
			return 0
		}
		p = o
	}
	return p
}

// setOwner records an owner the owner cache does not have yet.
func (v *view) setOwner(b string, p int64) {
	v.owner[b] = p
	v.changed = append(v.changed, b)
}

func (v *view) blind(id trustloop.Identifier) []byte {
	if b, ok := v.blinds[id]; ok {
		return b
	}
	b, err := v.s.keys.Blind(v.ws, id.Type, id.Value)
	if err != nil && v.err == nil {
		v.err = err
	}
	v.blinds[id] = b
	return b
}

func (v *view) Owner(id trustloop.Identifier) int64 {
	b := v.blind(id)
	if p, ok := v.owner[string(b)]; ok {
		return p
	}
	// Not prefetched (a previousId's other reading): ask the store.
	found, err := v.s.store.FindIdentities(v.ctx, v.ws, [][]byte{b})
	if err != nil {
		if v.err == nil {
			v.err = err
		}
		return 0
	}
	p := found[string(b)].ProfileID
	v.setOwner(string(b), p)
	return p
}

// Counts returns how many identifiers of each type a profile has, for Resolve's
// limits. A profile this group has not loaded is answered from its installed
// state's counts, without decoding it: most events Resolve decides join one
// profile.
func (v *view) Counts(p int64) []identity.TypeCount {
	if _, ok := v.prof[p]; !ok {
		v.s.mu.Lock()
		c := v.s.cache[p]
		var types []identity.TypeCount
		known := c != nil && c.typesKnown
		if known {
			types = c.types // installed: never changed in place
		}
		v.s.mu.Unlock()
		if known {
			return types
		}
	}
	st := v.load(p)
	if st == nil {
		return nil
	}
	v.ensureTypes(st)
	return st.types
}

// Separated follows the identity rules: two profiles are separated when a split
// separated any profile merged into one (or the profile itself, through merges
// not split) from any merged into the other, so a profile that absorbed one side
// of a split inherits the separation.
func (v *view) Separated(a, b int64) bool {
	if a == b {
		return false
	}
	for _, x := range v.members(a) {
		for _, y := range v.members(b) {
			if v.separatedPair(x, y) {
				return true
			}
		}
	}
	return false
}

func (v *view) separatedPair(a, b int64) bool {
	if a > b {
		a, b = b, a
	}
	k := [2]int64{a, b}
	if sep, ok := v.sep[k]; ok {
		return sep
	}
	sep, err := v.s.store.Separated(v.ctx, v.ws, a, b)
	if err != nil && v.err == nil {
		v.err = err
	}
	v.sep[k] = sep
	return sep
}

// members returns p and every profile merged into it, directly or not, by merges
// not split (from the store: merges are written in their commit; plus this
// group's, which are not stored yet).
func (v *view) members(p int64) []int64 {
	out := []int64{p}
	for i := 0; i < len(out) && i < 256; i++ {
		ms, err := v.s.store.ProfileMerges(v.ctx, v.ws, out[i])
		if err != nil {
			if v.err == nil {
				v.err = err
			}
			return out
		}
		for _, m := range ms {
			if m.Into == out[i] && m.SplitAt == nil && !slices.Contains(out, m.From) {
				out = append(out, m.From)
			}
		}
		for _, m := range v.merges {
			if m.Into == out[i] && !slices.Contains(out, m.From) {
				out = append(out, m.From)
			}
		}
	}
	return out
}

// load returns a profile's working state: this group's clone, else a clone of
// the cached state, else read and opened from the store.
func (v *view) load(p int64) *state {
	if st, ok := v.prof[p]; ok {
		return st
	}
	v.s.mu.Lock()
	var st *state
	if cached := v.s.cache[p]; cached != nil {
		st = cached.copyLocked()
	}
	v.s.mu.Unlock()
	if st != nil {
		if err := st.decode(); err != nil {
			if v.err == nil {
				v.err = err
			}
			return nil
		}
		v.prof[p] = st
		v.catchUp(st)
		return st
	}
	if err := v.prefetch([]int64{p}); err != nil {
		if v.err == nil {
			v.err = err
		}
		return nil
	}
	st = v.prof[p]
	v.catchUp(st)
	return st
}

// catchUp applies the events deferred for a profile now loaded, first: an event
// must not be applied after a later one (applied_seq would skip it).
func (v *view) catchUp(st *state) {
	if st == nil {
		return
	}
	if evs := v.deferred[st.rec.ID]; len(evs) > 0 {
		delete(v.deferred, st.rec.ID)
		for _, e := range evs {
			v.apply(st, e)
		}
	}
}

// prefetch reads and opens the given profiles not in memory, in one query.
func (v *view) prefetch(ids []int64) error {
	var need []int64
	v.s.mu.Lock()
	for _, id := range ids {
		if _, ok := v.prof[id]; ok || id == 0 {
			continue
		}
		if c := v.s.cache[id]; c != nil {
			continue // load takes it from memory when it is needed
		}
		if !slices.Contains(need, id) {
			need = append(need, id)
		}
	}
	v.s.mu.Unlock()
	if len(need) == 0 {
		return nil
	}
	recs, err := v.s.store.FindProfiles(v.ctx, v.ws, need)
	if err != nil {
		return err
	}
	keyIDs := make([]int64, 0, len(recs))
	for _, r := range recs {
		keyIDs = append(keyIDs, r.KeyID)
	}
	keys, err := v.s.keysFor(v.ctx, v.ws, keyIDs)
	if err != nil {
		return err
	}
	for _, id := range need {
		r, ok := recs[id]
		if !ok {
			return fmt.Errorf("projection: profile %d has identities but no row", id)
		}
		st := &state{rec: r, stored: true}
		key, ok := keys[r.KeyID]
		if !ok {
			return fmt.Errorf("projection: profile %d: its key %d is gone", id, r.KeyID)
		}
		plain, err := keyring.Open(key.DEK, r.State, profileAAD(v.ws, r.ID))
		if err != nil {
			return fmt.Errorf("projection: open profile %d: %w", id, err)
		}
		if err := st.st.UnmarshalBinary(plain); err != nil {
			return fmt.Errorf("projection: profile %d: %w", id, err)
		}
		st.rec.State = nil
		v.prof[id] = st
	}
	return nil
}

// ensureTypes counts a profile's stored identifiers by type if its state does not
// count them yet (a state read from the store). Identifiers attached or moved to
// it in this group are counted already and are not stored yet: an identifier is
// attached only when no profile owns it, and a merge moves the identifiers of a
// profile that is stored under the other's id until the commit.
func (v *view) ensureTypes(st *state) {
	if st.typesKnown || v.err != nil {
		return
	}
	st.types, st.typesOwn = nil, true // counts an erasure made stale start over
	idents, err := v.s.store.IdentitiesOfProfiles(v.ctx, v.ws, []int64{st.rec.ID})
	if err != nil {
		v.err = err
		return
	}
	for _, ir := range idents {
		st.addType(ir.Type, 1)
	}
	st.typesKnown = true
}

// Group is the projection of one group commit attempt.
type Group struct {
	s     *Service
	done  bool
	items []Item
	// installed after a successful commit:
	prof     map[int64]*state
	held     []heldJob // events held for installed profiles (see "Held events")
	views    []*view   // one per workspace: their owner maps are installed
	timeline map[int64]*pendingRun
	// firstSeq and lastSeq: the lowest and highest log positions of the
	// (last) projection's events.
	firstSeq, lastSeq int64
	// noTimeline: the group is a replay, whose timeline positions Recover
	// rebuilt already.
	noTimeline bool
	// identsChanged: the (last) projection added or moved identities.
	identsChanged bool
}

// Group prepares the projection of one group commit attempt; items are aligned
// with the batch's events. Its Project is the commit's trustloop.Projector, and
// Done must be called with the commit's outcome.
//
// A group holds the service's operation lock from Group to Done, so operator
// actions that rewrite profiles outside the projection (Split) never interleave
// with a group: Done would otherwise install a state cloned before them. Callers
// must call Done exactly once, whatever happens in between; Group is taken before
// the store's own lock (the commit), as Split takes it before the store's.
func (s *Service) Group(items []Item) *Group {
	s.opMu.Lock()
	return &Group{s: s, items: items}
}

// Project is the trustloop.Projector of the commit.
func (g *Group) Project(ctx context.Context, fresh []int, seqs []int64) (*trustloop.ProjectionChanges, error) {
	out := &trustloop.ProjectionChanges{}
	g.prof, g.timeline, g.views, g.held = map[int64]*state{}, make(map[int64]*pendingRun, len(fresh)), nil, nil
	byWS := map[int64][]int{}
	seqOf := make(map[int]int64, len(fresh))
	g.firstSeq = 0
	for j, i := range fresh {
		byWS[g.items[i].WorkspaceID] = append(byWS[g.items[i].WorkspaceID], i)
		seqOf[i] = seqs[j]
		g.lastSeq = max(g.lastSeq, seqs[j])
		if g.firstSeq == 0 || seqs[j] < g.firstSeq {
			g.firstSeq = seqs[j]
		}
	}
	for ws, idx := range byWS {
		if err := g.s.projectWorkspace(ctx, ws, g, idx, seqOf, out); err != nil {
			return nil, err
		}
	}
	g.identsChanged = len(out.Identities) > 0 || len(out.Merges) > 0
	return out, nil
}

// Done installs the group's profile states in memory if its commit succeeded
// (read-your-writes: before the collector acknowledges), or forgets them.
func (g *Group) Done(committed bool) {
	if g.done {
		return
	}
	g.done = true
	defer g.s.opMu.Unlock()
	if !committed || g.prof == nil {
		return
	}
	s := g.s
	if g.identsChanged {
		s.forgetSubjects()
	}
	now := s.Now()
	var skips []profile.Reason
	defer func() { s.skippedInput(skips) }() // after s.mu is released
	s.mu.Lock()
	defer s.mu.Unlock()
	var fresh []dirtyEntry
	for id, st := range g.prof {
		if !st.touched {
			continue
		}
		old := s.cache[id]
		if old != nil && old.membersDirty && st.dirty {
			// Memberships a flush failed to write (put back after this copy
			// was taken), unless this group's commit wrote them (not dirty).
			st.membersDirty = true
		}
		if st.dirty && old != nil && old.dirty {
			st.since = min(st.since, old.since)
			st.dirtyAt = old.dirtyAt
		} else if st.dirty {
			// Not dirty in memory now: nothing or written since this copy
			// was taken (a flush wrote the installed state, which held every
			// position before the group). Unwritten is only this group's, so
			// the copy's older position would hold the watermark back and
			// revive the profile's old queue entry (live again, due at once).
			st.since = max(st.since, g.firstSeq)
			st.dirtyAt = now
			fresh = append(fresh, dirtyEntry{id: id, since: st.since, at: now})
		}
		var m *foldMark
		if old != nil {
			m = old.folded
		}
		if st.npend > 0 && m != nil && m.covers(st.enc, st.pend) {
			// This copy was taken before a flush folded its first held
			// events into the installed state: take the fold, keep the rest.
			st.enc, st.pend, st.npend = old.enc, st.pend[len(m.pend):], st.npend-m.n
			if st.npend == 0 {
				st.pend, st.pendCfg = nil, nil
			}
		}
		skips = append(skips, st.uncounted(m)...)
		st.touched, st.base, st.skips, st.folded = false, nil, nil, nil
		// Installed: enc only (and the identifier counts).
		st.st = profile.State{}
		s.cache[id] = st
	}
	// Held events go to the installed state itself (past the end of its held
	// bytes, which every copy and snapshot of it sees: they share the array).
	// It is the state the group found, perhaps with a flush's fold installed
	// in it since: only groups (one at a time) and operator actions (never
	// beside a group) replace or drop installed states, except the eviction
	// of clean ones below, which a flush also runs — then it is put back.
	for i := range g.held {
		h := &g.held[i]
		cur := s.cache[h.c.rec.ID]
		if cur == nil {
			cur = h.c
			s.cache[cur.rec.ID] = cur
		}
		cur.pend = append(cur.pend, h.buf...)
		cur.npend += h.n
		cur.pendCfg = h.cfg
		cur.rec.AppliedSeq, cur.rec.UpdatedAt = max(cur.rec.AppliedSeq, h.last), h.at
		if !cur.dirty {
			cur.dirty, cur.since, cur.dirtyAt = true, h.first, now
			fresh = append(fresh, dirtyEntry{id: cur.rec.ID, since: h.first, at: now})
		}
	}
	// Fold marks are for the group in flight when they were made: this one or
	// none (groups run one at a time). Dropped now, they keep no old
	// encoding alive.
	for _, id := range s.marked {
		if c := s.cache[id]; c != nil {
			c.folded = nil
		}
	}
	s.marked = s.marked[:0]
	// In log order, so the queue's front is always its oldest position.
	slices.SortFunc(fresh, func(a, b dirtyEntry) int { return cmp.Compare(a.since, b.since) })
	s.dirtyQ = append(s.dirtyQ, fresh...)
	s.addPending(g.timeline, now)
	for _, v := range g.views {
		for _, b := range v.changed {
			if p := v.owner[b]; p != 0 {
				s.owners.Put(mkOwnerKey(v.ws, []byte(b)), p)
			}
		}
	}
	s.lastSeq = max(s.lastSeq, g.lastSeq)
	s.evictLocked()
}

// evictLocked drops clean profiles from memory while there are too many.
func (s *Service) evictLocked() {
	if len(s.cache) <= s.MaxCached {
		return
	}
	for id, st := range s.cache {
		if !st.dirty && !s.inflight[id] {
			delete(s.cache, id)
			if len(s.cache) <= s.MaxCached*9/10 {
				return
			}
		}
	}
}

func (s *Service) projectWorkspace(ctx context.Context, ws int64, g *Group, idx []int, seqOf map[int]int64, out *trustloop.ProjectionChanges) error {
	items := g.items
	now := s.Now().UTC()
	cfg, err := s.config(ctx, ws)
	if err != nil {
		return err
	}
	// Sized for the group up front: growing them was a fifth of the
	// projection's garbage.
	v := &view{s: s, ctx: ctx, ws: ws, owner: make(map[string]int64, 2*len(idx)),
		blinds: make(map[trustloop.Identifier][]byte, 2*len(idx)), prof: g.prof, sep: map[[2]int64]bool{},
		deferred: make(map[int64][]deferredEvent, len(idx)), held: &g.held}
	g.views = append(g.views, v)
	// Every identity the group names: from the owner cache, else the store; then
	// the profiles they belong to.
	var owners []int64
	var miss [][]byte
	all := make([][]byte, 0, 2*len(idx))
	for _, i := range idx {
		it := &items[i]
		for j, id := range it.IDs {
			if len(it.Blinds) == len(it.IDs) {
				v.blinds[id] = it.Blinds[j]
			}
			all = append(all, v.blind(id))
		}
	}
	s.mu.Lock()
	for _, b := range all {
		if _, ok := v.owner[string(b)]; ok {
			continue
		}
		if p, ok := s.owners.Get(mkOwnerKey(ws, b)); ok {
			v.owner[string(b)] = p
			owners = append(owners, p)
		} else {
			v.owner[string(b)] = 0 // until the store says otherwise
			miss = append(miss, b)
		}
	}
	s.mu.Unlock()
	if v.err != nil {
		return v.err
	}
	if len(miss) > 0 {
		found, err := s.store.FindIdentities(ctx, ws, miss)
		if err != nil {
			return err
		}
		for _, b := range miss {
			if p := found[string(b)].ProfileID; p != 0 {
				v.setOwner(string(b), p)
				owners = append(owners, p)
			}
		}
	}
	if err := v.prefetch(owners); err != nil {
		return err
	}
	keyOf := make(map[int64]keyring.Key, len(idx))
	newIdent := map[string]*trustloop.IdentityRecord{}
	touch := func(st *state, seq int64) {
		if !st.dirty {
			st.dirty, st.since = true, seq
		}
		st.touched = true
	}
	// input is an event's profile input: Prepare's, else (a replay) made once
	// here (holdable sizes it, hold or apply uses it). An item belongs to one
	// profile's events, so the parallel part never makes the same one twice.
	input := func(it *Item) *profile.Input {
		if it.Input == nil {
			made := inputOf(it.Message, it.SourceID)
			it.Input = &made
		}
		return it.Input
	}
	// apply applies one event to a profile's working copy; it runs in the
	// parallel part too, so it touches nothing but st.
	v.apply = func(st *state, e deferredEvent) {
		// A replay after a crash meets events the stored state has already.
		if e.seq <= st.rec.AppliedSeq {
			return
		}
		s.skippedInput(cfg.profile.Apply(&st.st, *input(&items[e.i])).Skipped)
		st.rec.AppliedSeq = e.seq
		touch(st, e.seq)
	}
	s.mu.Lock()
	for _, i := range idx {
		// Profiles are sealed under their first subject's key: keep these at
		// hand for the flushes that will need them.
		if it := &items[i]; it.Key.DEK != nil && len(s.keyByID) < 200_000 {
			s.keyByID[it.KeyID] = it.Key
		}
	}
	s.mu.Unlock()
	foreign := func(p, seq int64) {
		// Also in a replay after a crash: Recover rebuilds the keys' runs from
		// the log, not the foreign ones (a position listed twice is read once).
		if r := g.timeline[ForeignKey(p)]; r != nil {
			r.seqs = append(r.seqs, seq)
		} else {
			g.timeline[ForeignKey(p)] = &pendingRun{seqs: []int64{seq}}
		}
	}
	for _, i := range idx {
		it := &items[i]
		seq := seqOf[i]
		keyOf[it.KeyID] = it.Key
		if g.noTimeline {
			// Recover rebuilt the positions.
		} else if r := g.timeline[it.KeyID]; r != nil {
			r.seqs = append(r.seqs, seq)
		} else {
			g.timeline[it.KeyID] = &pendingRun{seqs: []int64{seq}}
		}
		// Fast path: every identifier already belongs to one profile, so the
		// event joins it and changes nothing in the graph (what Resolve would
		// decide, without reading the profile's identifiers).
		var d identity.Decision
		if p := v.soleOwner(it.IDs); p != 0 {
			if it.Subject != nil && !slices.ContainsFunc(it.IDs, func(id trustloop.Identifier) bool {
				return string(v.blind(id)) == string(it.Subject)
			}) {
				foreign(p, seq) // its subject id was blocked or invalid
			}
			if _, loaded := v.prof[p]; !loaded {
				// Nothing but the profile rules to run: later, and for many
				// profiles at once in parallel (finishDeferred).
				v.deferred[p] = append(v.deferred[p], deferredEvent{i: i, seq: seq})
				continue
			}
			d.Profile = p
		} else {
			d = cfg.rules.Resolve(v, it.IDs)
		}
		if v.err != nil {
			return v.err
		}
		s.skipped(d.Skipped)
		var target *state
		switch {
		case d.New:
			id := newProfileID(now)
			target = &state{rec: trustloop.ProfileRecord{ID: id, WorkspaceID: ws, KeyID: it.KeyID, CreatedAt: now},
				typesKnown: true}
			v.prof[id] = target
		case d.Profile != 0:
			target = v.load(d.Profile)
			if target == nil {
				return v.err
			}
		default:
			continue // no usable identifier: the event belongs to no profile
		}
		if len(d.Merge) > 0 || len(d.Attach) > 0 {
			v.ensureTypes(target)
		}
		for _, from := range d.Merge {
			src := v.load(from)
			if src == nil {
				return v.err
			}
			v.ensureTypes(src)
			m := trustloop.MergeRecord{ID: newProfileID(now), WorkspaceID: ws, Into: target.rec.ID, From: from,
				MessageHash: it.MessageHash, At: now}
			for _, id := range d.Linking {
				m.Linking = append(m.Linking, v.blind(id))
			}
			moved, err := s.moveIdentities(ctx, v, src, target, newIdent)
			if err != nil {
				return err
			}
			m.Moved = moved
			v.merges = append(v.merges, m)
			cfg.profile.Merge(&target.st, &src.st)
			target.rec.AppliedSeq = max(target.rec.AppliedSeq, src.rec.AppliedSeq)
			src.rec.MergedInto = target.rec.ID
			src.st = profile.State{}
			touch(src, seq)
			touch(target, seq)
			out.Merges = append(out.Merges, m)
		}
		for _, id := range d.Attach {
			b := v.blind(id)
			if v.owner[string(b)] != 0 {
				continue
			}
			v.setOwner(string(b), target.rec.ID)
			sealed, err := s.sealIdentity(ctx, ws, b, id.Value, target, keyOf)
			if err != nil {
				return err
			}
			target.addType(id.Type, 1)
			newIdent[string(b)] = &trustloop.IdentityRecord{WorkspaceID: ws, Blind: b, Type: id.Type,
				ProfileID: target.rec.ID, KeyID: target.rec.KeyID, FirstSeen: it.Message.ReceivedAt, Sealed: sealed}
		}
		if it.Subject != nil && v.owner[string(it.Subject)] != target.rec.ID {
			foreign(target.rec.ID, seq) // its subject id was kept out (a limit, a separation)
		}
		v.apply(target, deferredEvent{i: i, seq: seq})
	}
	if v.err != nil {
		return v.err
	}
	set, err := s.audienceSet(ctx, ws)
	if err != nil {
		return err
	}
	// Held events (see holdMax): only where no audience needs the profile
	// evaluated now, and none was written for it that this change could end
	// (finish writes an empty membership then).
	v.holdable = func(c *state, evs []deferredEvent) bool {
		if set.Len() > 0 || !c.membersKnown || len(c.members) > 0 || (c.npend > 0 && c.pendCfg != cfg) ||
			c.npend+len(evs) > holdMax {
			return false
		}
		size := len(c.pend)
		for _, e := range evs {
			size += heldSize(input(&items[e.i]))
		}
		return size <= holdMaxBytes
	}
	v.hold = func(h *heldJob, e deferredEvent) {
		if e.seq <= h.applied {
			return // a replay after a crash
		}
		h.buf = profile.AppendInput(h.buf, input(&items[e.i]))
		if h.n == 0 {
			h.first = e.seq
		}
		h.n++
		h.last, h.applied, h.cfg, h.at = e.seq, e.seq, cfg, now
	}
	// finish evaluates a changed profile's audiences and encodes it (now, so
	// that a state that cannot be encoded fails the commit, not its
	// installation); like apply it touches nothing but st.
	finish := func(st *state) error {
		st.rec.UpdatedAt = now
		var members []int64
		if st.rec.MergedInto == 0 && set.Len() > 0 {
			m := cfg.profile.Map(&st.st)
			traits, _ := m["traits"].(map[string]any)
			computed, _ := m["computed"].(map[string]any)
			members = set.Evaluate(traits, computed, now)
		}
		if !st.membersKnown || !slices.Equal(members, st.members) {
			st.members, st.membersDirty, st.membersKnown = members, true, true
		}
		var err error
		if st.enc, err = st.st.AppendBinary(make([]byte, 0, len(st.enc)+64)); err != nil {
			return fmt.Errorf("projection: profile %d: %w", st.rec.ID, err)
		}
		return nil
	}
	finished, err := v.finishDeferred(finish)
	if err != nil {
		return err
	}
	for _, st := range v.prof {
		if st.touched && !finished[st.rec.ID] {
			if err := finish(st); err != nil {
				return err
			}
		}
	}
	// New profiles, merged-away ones and the survivors of merges are written now,
	// in the commit: the identities that point at them are, and a merge empties
	// the merged-away row, so its survivor must hold the merged state before a
	// crash could lose it (a replay does not merge again). Other changed state is
	// written behind.
	survivors := map[int64]bool{}
	for _, m := range out.Merges {
		survivors[m.Into] = true
	}
	for _, st := range v.prof {
		if !st.touched || (st.stored && st.rec.MergedInto == 0 && !survivors[st.rec.ID]) {
			continue
		}
		rec, err := s.sealState(ctx, ws, st, keyOf)
		if err != nil {
			return err
		}
		out.Profiles = append(out.Profiles, rec)
		if set.Len() > 0 {
			if out.Members == nil {
				out.Members = map[int64][]int64{}
			}
			out.Members[st.rec.ID] = st.members
		}
		st.stored = true
		st.dirty, st.membersDirty = false, false
	}
	for _, ir := range newIdent {
		out.Identities = append(out.Identities, *ir)
	}
	return nil
}

// sealState seals a profile's encoded state under its key.
func (s *Service) sealState(ctx context.Context, ws int64, st *state, keyOf map[int64]keyring.Key) (trustloop.ProfileRecord, error) {
	rec := st.rec
	plain := st.enc
	key, ok := keyOf[rec.KeyID]
	if !ok {
		ks, err := s.keysFor(ctx, ws, []int64{rec.KeyID})
		if err != nil {
			return rec, err
		}
		if key, ok = ks[rec.KeyID]; !ok {
			return rec, fmt.Errorf("projection: profile %d: no key %d", rec.ID, rec.KeyID)
		}
		if keyOf != nil {
			keyOf[rec.KeyID] = key
		}
	}
	rec.State = keyring.Seal(nil, key.DEK, plain, profileAAD(ws, rec.ID))
	return rec, nil
}

// sealIdentity seals an identifier value under the profile's key.
func (s *Service) sealIdentity(ctx context.Context, ws int64, blind []byte, value string, p *state, keyOf map[int64]keyring.Key) ([]byte, error) {
	key, ok := keyOf[p.rec.KeyID]
	if !ok {
		ks, err := s.keysFor(ctx, ws, []int64{p.rec.KeyID})
		if err != nil {
			return nil, err
		}
		if key, ok = ks[p.rec.KeyID]; !ok {
			return nil, fmt.Errorf("projection: profile %d: its key %d is gone", p.rec.ID, p.rec.KeyID)
		}
		keyOf[p.rec.KeyID] = key
	}
	return keyring.Seal(nil, key.DEK, []byte(value), identityAAD(ws, blind)), nil
}

// moveIdentities moves every identity of src to dst (a merge) and returns their
// blind indexes. Identities stay sealed under the key they were sealed with (the
// key id travels with the row), so nothing is re-encrypted.
func (s *Service) moveIdentities(ctx context.Context, v *view, src, dst *state, newIdent map[string]*trustloop.IdentityRecord) ([][]byte, error) {
	recs, err := s.store.IdentitiesOfProfiles(ctx, v.ws, []int64{src.rec.ID})
	if err != nil {
		return nil, err
	}
	var moved [][]byte
	for _, r := range recs {
		if v.owner[string(r.Blind)] != 0 && v.owner[string(r.Blind)] != src.rec.ID {
			continue // moved already in this group
		}
		r.ProfileID = dst.rec.ID
		newIdent[string(r.Blind)] = &r
		v.setOwner(string(r.Blind), dst.rec.ID)
		moved = append(moved, r.Blind)
	}
	// Identities src gained earlier in this same group are not stored yet.
	for b, r := range newIdent {
		if r.ProfileID == src.rec.ID {
			r.ProfileID = dst.rec.ID
			v.setOwner(b, dst.rec.ID)
			moved = append(moved, r.Blind)
		}
	}
	for _, tc := range src.types {
		dst.addType(tc.Type, tc.N)
	}
	src.types, src.typesOwn = nil, true
	return moved, nil
}

// Held events. Under customers whose events come seconds apart, nearly every
// event met its profile's installed state alone: decoding it (its maps), applying
// one event and encoding it again was most of the projection's work, and most
// of its garbage. So an event that joins a profile by the fast path (nothing in
// the identity graph changes) is held instead: its profile input, encoded
// compactly (profile.AppendInput), is appended to the state's pend, and the
// profile's next decode applies the events held, in order — the flush's, which
// writes and installs the result, a group's that must change the profile
// otherwise, a read's. Read-your-writes holds: every reader decodes. A
// profile's state is then only decoded about once per flush, for as many
// events as came meanwhile.
//
// Events are applied at once instead where an audience must be evaluated on
// the change (a workspace with audiences), when the held events were for other
// rules (the workspace's settings changed since), and past holdMax events or
// holdMaxBytes bytes (a busy profile: its reads should not apply hundreds).
const (
	holdMax      = 32
	holdMaxBytes = 8 << 10
)

// heldSize bounds the size of an input held (profile.AppendInput keeps less of
// a track call's properties, the rest as it is).
func heldSize(in *profile.Input) int {
	return 64 + len(in.Event) + len(in.GroupID) + len(in.Traits) + len(in.ContextTraits) + len(in.Properties) +
		16*len(in.Purposes)
}

// parallelFrom is the number of profiles from which finishDeferred spreads its
// work over the CPUs (below it, starting goroutines costs more than it saves).
const parallelFrom = 64

// finishDeferred loads the profiles with deferred events, applies them and
// finishes the profiles (finish), across the CPUs: each profile's work is its
// own (a working copy decoded from its installed state, the profile rules, the
// audiences, the encoding), and this was most of a group's time on the single
// writer. It returns the profiles it finished. A profile gone from memory since
// the group began (evicted: it was clean) is loaded from the store afterwards,
// in order, as load would.
func (v *view) finishDeferred(finish func(*state) error) (map[int64]bool, error) {
	type job struct {
		p    int64
		evs  []deferredEvent
		st   *state
		held *heldJob
		err  error
	}
	jobs := make([]job, 0, len(v.deferred))
	v.s.mu.Lock()
	for p, evs := range v.deferred {
		j := job{p: p, evs: evs}
		if c := v.s.cache[p]; c == nil {
		} else if v.holdable(c, evs) {
			j.held = &heldJob{c: c, applied: c.rec.AppliedSeq}
		} else {
			j.st = c.copyLocked()
		}
		jobs = append(jobs, j)
	}
	v.s.mu.Unlock()
	work := func(j *job) {
		if j.held != nil {
			for _, e := range j.evs {
				v.hold(j.held, e)
			}
			return
		}
		if j.st == nil {
			return
		}
		if j.err = j.st.decode(); j.err != nil {
			return
		}
		for _, e := range j.evs {
			v.apply(j.st, e)
		}
		j.err = finish(j.st)
	}
	workers := min(runtime.GOMAXPROCS(0), 4, len(jobs)/parallelFrom+1)
	var wg sync.WaitGroup
	var next atomic.Int64
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := next.Add(1) - 1; k < int64(len(jobs)); k = next.Add(1) - 1 {
				work(&jobs[k])
			}
		}()
	}
	wg.Wait()
	finished := make(map[int64]bool, len(jobs))
	for k := range jobs {
		j := &jobs[k]
		if j.err != nil {
			return nil, j.err
		}
		if j.held != nil {
			delete(v.deferred, j.p)
			if j.held.n > 0 {
				*v.held = append(*v.held, *j.held)
			}
			continue
		}
		if j.st == nil {
			continue
		}
		delete(v.deferred, j.p)
		v.prof[j.p] = j.st
		finished[j.p] = true
	}
	// What was not in memory: loaded (its deferred events applied by load),
	// finished by the caller.
	for p := range v.deferred {
		if v.load(p) == nil {
			return nil, v.err
		}
	}
	return finished, nil
}
