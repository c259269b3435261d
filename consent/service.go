package consent

import (
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/cache"
	"github.com/trustloop/trustloop/consent/tcf"
	"github.com/trustloop/trustloop/keyring"
)

// Store is what the Service needs of a storage backend.
type Store interface {
	trustloop.ConsentStore
	trustloop.SettingStore
}

// Service keeps each workspace's compiled catalog and its subjects' stored
// consent at hand, decides at collection and records changes. It is safe for
// concurrent use.
type Service struct {
	store Store
	keys  *keyring.Keyring
	log   *slog.Logger
	// Now is the clock (tests set it).
	Now func() time.Time
	// StaleAfter bounds how long cached stored consent and catalogs are trusted
	// when other nodes may change them (a shared PostgreSQL store); changes made
	// through this node are seen at once.
	StaleAfter time.Duration
	// KeysUsing, when set, reports whether an active API key of the workspace
	// may read for a purpose (such a purpose stays in the catalog).
	KeysUsing func(ctx context.Context, ws int64, purpose string) (bool, error)
	// OnChange, when set, is called with every appended record (after commit);
	// the audit log is wired here.
	OnChange func(ctx context.Context, recs []trustloop.ConsentRecord)
	// OnCatalog, when set, is told that a workspace's catalog changed (after
	// commit): what every stored choice and default means may have changed.
	OnCatalog func(ctx context.Context, ws int64)

	// Shared: other nodes change consent too (a shared PostgreSQL store).
	// Reads of personal data then read stored consent afresh (T4 holds across
	// nodes) and the collector trusts its cache for StaleAfter.
	Shared bool

	catalogs sync.Map // int64 → *catalogEntry
	shards   [subjectShards]subjectShard
	tcfMu    sync.Mutex
	tcfs     *cache.TwoGen[string, TCF]
}

type catalogEntry struct {
	compiled *Compiled
	loaded   atomic.Int64 // unix nanoseconds
}

// subjectEntry is a subject's latest record per purpose. The cache is keyed by
// 64 bits of the blind index (a uniformly random HMAC output) mixed with the
// workspace, which a map hashes and compares far faster than the whole; the
// entry keeps the workspace and the whole blind index, and a lookup that finds
// another subject's entry under the same key is a miss.
type subjectEntry struct {
	ws     int64
	blind  [keyring.BlindSize]byte
	latest map[string]trustloop.ConsentRecord
	loaded int64 // unix nanoseconds
}

func nkey(ws int64, blind []byte) noneKey {
	var k noneKey
	if len(blind) >= 32 {
		k[0] = binary.LittleEndian.Uint64(blind[16:24]) ^ uint64(ws)*0x9e3779b97f4a7c15
		k[1] = binary.LittleEndian.Uint64(blind[24:32])
	}
	return k
}

func skey(ws int64, blind []byte) uint64 {
	var k uint64
	if len(blind) >= 16 {
		k = binary.LittleEndian.Uint64(blind[8:16])
	}
	return k ^ uint64(ws)*0x9e3779b97f4a7c15
}

// The subject cache is sharded by the blind index's first byte, so request
// goroutines deciding at once rarely wait on each other. gen counts removals:
// a load that raced a change (it read the store before the change committed)
// is not put back, so a withdrawal is never hidden by a stale entry.
const subjectShards = 16

type subjectShard struct {
	mu sync.Mutex
	c  *cache.TwoGen[uint64, subjectEntry]
	// none holds the subjects known to have no record, by 128 bits of their
	// blind index (a collision is as likely as guessing an AES key), with the
	// time they were read: most subjects never choose, and 24 bytes an entry
	// keep the map small enough for the CPU's caches on the collector's path.
	none *cache.TwoGen[noneKey, int64]
	gen  uint64
}

type noneKey [2]uint64

// New returns a service over store, caching up to about 2 × cached subjects.
func New(store Store, keys *keyring.Keyring, log *slog.Logger, cached int) *Service {
	s := &Service{store: store, keys: keys, log: log, Now: time.Now, StaleAfter: time.Hour,
		tcfs: cache.NewTwoGen[string, TCF](4096)}
	for i := range s.shards {
		s.shards[i].c = cache.NewTwoGen[uint64, subjectEntry](cached/subjectShards + 1)
		s.shards[i].none = cache.NewTwoGen[noneKey, int64](cached/subjectShards + 1)
	}
	return s
}

func (s *Service) shard(blind []byte) *subjectShard {
	if len(blind) == 0 {
		return &s.shards[0]
	}
	return &s.shards[blind[0]%subjectShards]
}

// Catalog returns a workspace's compiled catalog (the defaults until edited).
// It is re-read from the store every few seconds (another node may edit it).
func (s *Service) Catalog(ctx context.Context, ws int64) (*Compiled, error) {
	now := s.Now()
	v, _ := s.catalogs.Load(ws)
	e, _ := v.(*catalogEntry)
	if e != nil && now.UnixNano()-e.loaded.Load() < int64(min(s.StaleAfter, 5*time.Second)) {
		return e.compiled, nil
	}
	c, err := s.loadCatalog(ctx, ws)
	if err != nil {
		return nil, err
	}
	if e != nil && e.compiled.Catalog.Version == c.Version {
		e.loaded.Store(now.UnixNano())
		return e.compiled, nil
	}
	k, err := Compile(c)
	if err != nil {
		return nil, err
	}
	s.putCatalog(ws, k, now)
	return k, nil
}

func (s *Service) putCatalog(ws int64, k *Compiled, now time.Time) {
	e := &catalogEntry{compiled: k}
	e.loaded.Store(now.UnixNano())
	s.catalogs.Store(ws, e)
}

func (s *Service) loadCatalog(ctx context.Context, ws int64) (*Catalog, error) {
	v, version, err := s.store.FindSetting(ctx, ws, SettingName)
	if trustloop.ErrorCode(err) == trustloop.ENOTFOUND {
		return DefaultCatalog(), nil
	} else if err != nil {
		return nil, err
	}
	var c Catalog
	if err := json.Unmarshal(v, &c); err != nil {
		return nil, fmt.Errorf("consent: stored catalog of workspace %d: %w", ws, err)
	}
	c.Version = version
	return &c, nil
}

// PutCatalog replaces a workspace's catalog if its version is still version
// (optimistic concurrency; ECONFLICT otherwise) and returns the stored catalog
// with its new version.
func (s *Service) PutCatalog(ctx context.Context, ws int64, c *Catalog, version int64) (*Catalog, error) {
	prev, err := s.loadCatalog(ctx, ws)
	if err != nil {
		return nil, err
	}
	if version < 0 {
		return nil, trustloop.Errorf(trustloop.EINVALID, "version must be the catalog's version as read (0 or more), not %d.", version).
			WithHint("GET /v1/purposes, apply your edit and send it with the version it returned.")
	}
	// What is wrong with the document is said before whether it is stale:
	// a stale valid one only needs its version again.
	err = Validate(c, prev, func(purpose string) (bool, error) {
		if used, err := s.store.ConsentPurposeUsed(ctx, ws, purpose); err != nil || used {
			return used, err
		}
		if s.KeysUsing == nil {
			return false, nil
		}
		return s.KeysUsing(ctx, ws, purpose)
	})
	if err != nil {
		return nil, err
	}
	if version != prev.Version {
		return nil, trustloop.Errorf(trustloop.ECONFLICT, "The catalog changed meanwhile (version %d, not %d).", prev.Version, version).
			WithHint("Read it again, apply your edit and send it with the new version.")
	}
	c.Version = 0
	b, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	nv, err := s.store.PutSetting(ctx, ws, SettingName, b, version)
	if err != nil {
		return nil, err
	}
	c.Version = nv
	k, err := Compile(c)
	if err != nil {
		return nil, err
	}
	s.putCatalog(ws, k, s.Now())
	if s.OnCatalog != nil {
		s.OnCatalog(ctx, ws)
	}
	return c, nil
}

// latest returns a subject's latest record per purpose, cached (fresh: read
// from the store whatever the cache holds).
func (s *Service) latest(ctx context.Context, ws int64, blind []byte, fresh bool, at time.Time) (map[string]trustloop.ConsentRecord, error) {
	key := skey(ws, blind)
	nk := nkey(ws, blind)
	now := at.UnixNano()
	sh := s.shard(blind)
	sh.mu.Lock()
	// (Blind indexes are always 32 bytes; anything shorter is never trusted
	// to the 128-bit key.)
	loaded, none := sh.none.Get(nk)
	none = none && len(blind) == keyring.BlindSize
	var e subjectEntry
	var ok bool
	if !none {
		e, ok = sh.c.Get(key)
	}
	gen := sh.gen
	sh.mu.Unlock()
	if none && !fresh && now-loaded < int64(s.StaleAfter) {
		return nil, nil
	}
	if ok && !fresh && e.ws == ws && string(e.blind[:]) == string(blind) && now-e.loaded < int64(s.StaleAfter) {
		return e.latest, nil
	}
	recs, err := s.store.ConsentRecords(ctx, ws, blind)
	if err != nil {
		return nil, err
	}
	e = subjectEntry{ws: ws, loaded: now}
	copy(e.blind[:], blind)
	if len(recs) > 0 {
		e.latest = foldLatest(recs)
	}
	sh.mu.Lock()
	if sh.gen == gen {
		if e.latest == nil && len(blind) == keyring.BlindSize {
			sh.none.Put(nk, now)
			sh.c.Remove(key)
		} else {
			sh.c.Put(key, e)
			sh.none.Remove(nk)
		}
	}
	sh.mu.Unlock()
	return e.latest, nil
}

// Forget drops erased subjects from the cache.
func (s *Service) Forget(ws int64, subjects [][]byte) { s.forget(ws, subjects) }

// forget drops subjects from the cache after a change.
func (s *Service) forget(ws int64, subjects [][]byte) {
	for _, sub := range subjects {
		sh := s.shard(sub)
		sh.mu.Lock()
		sh.c.Remove(skey(ws, sub))
		sh.none.Remove(nkey(ws, sub))
		sh.gen++
		sh.mu.Unlock()
	}
}

// Stored returns the subjects' stored consent as the collector decides by it
// (cached).
func (s *Service) Stored(ctx context.Context, k *Compiled, ws int64, blinds ...[]byte) (Stored, map[string]trustloop.ConsentRecord, error) {
	return s.stored(ctx, k, ws, false, blinds...)
}

// StoredForRead returns the subjects' stored consent for a read of personal
// data: read afresh when other nodes may have changed it (Shared), so a
// withdrawal acknowledged anywhere holds for every later read (T4).
func (s *Service) StoredForRead(ctx context.Context, k *Compiled, ws int64, blinds ...[]byte) (Stored, map[string]trustloop.ConsentRecord, error) {
	return s.stored(ctx, k, ws, s.Shared, blinds...)
}

// foldLatest keeps each purpose's last record in chain order.
func foldLatest(recs []trustloop.ConsentRecord) map[string]trustloop.ConsentRecord {
	out := make(map[string]trustloop.ConsentRecord, 4)
	for _, r := range recs {
		out[r.Purpose] = r
	}
	return out
}

// merged folds several subjects' latest records: per purpose the most recent
// (by time) wins, so a choice made while anonymous carries over to the login and
// back.
func merged(sets ...map[string]trustloop.ConsentRecord) map[string]trustloop.ConsentRecord {
	var out map[string]trustloop.ConsentRecord
	n := 0
	for _, m := range sets {
		if len(m) > 0 {
			n++
			out = m
		}
	}
	if n <= 1 {
		return out
	}
	out = map[string]trustloop.ConsentRecord{}
	for _, m := range sets {
		for p, r := range m {
			if have, ok := out[p]; !ok || r.At.After(have.At) {
				out[p] = r
			}
		}
	}
	return out
}

// Fold turns latest records into Stored for catalog k at now: a given consent
// past its expiry counts as expired.
func (k *Compiled) Fold(latest map[string]trustloop.ConsentRecord, now time.Time) Stored {
	var st Stored
	for p, r := range latest {
		i, ok := k.index[p]
		if !ok {
			continue
		}
		bit := Set(1) << i
		switch r.State {
		case trustloop.ConsentGiven:
			if !r.ExpiresAt.IsZero() && !now.Before(r.ExpiresAt) {
				st.Expired |= bit
			} else {
				st.Given |= bit
			}
		case trustloop.ConsentRefused:
			st.Refused |= bit
		case trustloop.ConsentWithdrawn:
			st.Withdrawn |= bit
		default: // expired, or a state this build does not know: no
			st.Expired |= bit
		}
	}
	return st
}

// Stored returns the stored consent of the subjects (blind indexes; nil ones
// are skipped) under catalog k, from the cache (the collector's view).
func (s *Service) stored(ctx context.Context, k *Compiled, ws int64, fresh bool, blinds ...[]byte) (Stored, map[string]trustloop.ConsentRecord, error) {
	now := s.Now() // one clock read per decision
	// Every subject counts (a profile may have many anonymous ids): the
	// collector's one or two fit the array, a read's many grow the slice.
	var arr [4]map[string]trustloop.ConsentRecord
	sets := arr[:0]
	for _, b := range blinds {
		if b == nil {
			continue
		}
		l, err := s.latest(ctx, ws, b, fresh, now)
		if err != nil {
			return Stored{}, nil, err
		}
		sets = append(sets, l)
	}
	m := merged(sets...)
	return k.Fold(m, now), m, nil
}

// maxCachedTCString bounds the TC strings the cache keeps (real ones are a few
// hundred characters; a client's garbage must not pin memory).
const maxCachedTCString = 2048

// TCFOf decodes a TC string for the decision (cached: a visitor sends the same
// string with every event).
func (s *Service) TCFOf(str string) TCF {
	if str == "" {
		return TCF{}
	}
	s.tcfMu.Lock()
	t, ok := s.tcfs.Get(str)
	s.tcfMu.Unlock()
	if ok {
		return t
	}
	t = TCF{Present: true}
	if d, err := tcf.Decode(str); err != nil {
		t.Malformed = true
	} else {
		for n := 1; n <= 24; n++ {
			if d.HasPublisherSegment {
				if d.PublisherPurposeConsent(n) {
					t.Consented |= 1 << (n - 1)
				}
			} else if d.PurposeConsent(n) {
				t.Consented |= 1 << (n - 1)
			}
		}
	}
	if len(str) <= maxCachedTCString {
		s.tcfMu.Lock()
		s.tcfs.Put(str, t)
		s.tcfMu.Unlock()
	}
	return t
}

// Signals returns an event's consent signals under catalog k.
func (s *Service) Signals(k *Compiled, c *trustloop.ConsentSignals, jurisdiction string) Signals {
	sig := Signals{Regime: k.Regime(jurisdiction), GPC: c.GPC, TCF: s.TCFOf(c.TCString)}
	if c.CategoryPreferences != nil {
		sig.PrefsSet, sig.PrefsTrue = k.Preferences(c.CategoryPreferences)
	}
	return sig
}

// Meta describes where a change came from.
type Meta struct {
	Method        string
	NoticeVersion string
	Jurisdiction  string
	SourceID      int64
	Evidence      string
}

// Change is one purpose's new state.
type Change struct {
	Purpose string
	State   string
}

// Record appends changes for every subject (blind indexes) in one transaction,
// with a signed receipt, and returns the receipt's JWS. Changes to contract
// purposes are refused: they cannot be switched off.
func (s *Service) Record(ctx context.Context, ws int64, subjects [][]byte, changes []Change, meta Meta) (jws string, recs []trustloop.ConsentRecord, err error) {
	k, err := s.Catalog(ctx, ws)
	if err != nil {
		return "", nil, err
	}
	if !slices.Contains(trustloop.ConsentMethods, meta.Method) {
		return "", nil, trustloop.Errorf(trustloop.EINVALID, "Unknown consent method %q.", meta.Method).
			WithHint("Methods: preference_center, banner, api, gpc, tcf, import.")
	}
	if len(meta.NoticeVersion) > 100 || len(meta.Jurisdiction) > 16 {
		return "", nil, trustloop.Errorf(trustloop.EINVALID, "notice_version is at most 100 and jurisdiction at most 16 characters.").
			WithHint("Name the notice by a short version (e.g. 2026-03) and the jurisdiction by a code (e.g. EU, US-CA).")
	}
	if meta.Jurisdiction != "" && !trustloop.ValidJurisdiction(meta.Jurisdiction) {
		return "", nil, trustloop.Errorf(trustloop.EINVALID, "The jurisdiction is not a code: letters, digits and '-' only.").
			WithHint("Name it by its ISO 3166 code, e.g. EU, DE or US-CA; the receipt carries it.")
	}
	if meta.Method == trustloop.MethodGPC {
		// Global Privacy Control is an opt-out signal: a receipt saying it
		// gave consent would say what cannot be.
		for _, c := range changes {
			if c.State == trustloop.ConsentGiven {
				return "", nil, trustloop.Errorf(trustloop.EINVALID, "Global Privacy Control can only refuse or withdraw consent, not give it.").
					WithHint("Record the choice with the method it was made by, such as preference_center or api.")
			}
		}
	}
	if len(changes) == 0 || len(subjects) == 0 {
		return "", nil, trustloop.Errorf(trustloop.EINVALID, "Nothing to record: name at least one purpose.").
			WithHint("Send purposes with a choice for each, e.g. {\"purposes\": {\"marketing\": false}}.")
	}
	key, err := s.keys.SigningKey(ws)
	if err != nil {
		return "", nil, err
	}
	now := s.Now().UTC().Truncate(time.Millisecond)
	var expires time.Time
	if ttl := k.Catalog.ConsentTTLDays; ttl > 0 {
		expires = now.AddDate(0, 0, ttl)
	}
	body := &ReceiptBody{Version: 1, ReceiptID: NewReceiptID(), WorkspaceID: ws, IssuedAt: now, Method: meta.Method,
		NoticeVersion: meta.NoticeVersion, Jurisdiction: meta.Jurisdiction}
	for _, c := range changes {
		i, ok := k.Index(c.Purpose)
		if !ok {
			return "", nil, trustloop.Errorf(trustloop.EINVALID, "Unknown purpose %q.", c.Purpose).
				WithHint("GET /v1/purposes lists the catalog.")
		}
		if k.contract.Has(i) {
			return "", nil, trustloop.Errorf(trustloop.EINVALID, "Purpose %q rests on the contract and cannot be switched on or off.", c.Purpose).
				WithHint("Leave it out; it is always allowed for what the customer asked for.")
		}
		body.Changes = append(body.Changes, ReceiptChange(c))
		for _, sub := range subjects {
			r := trustloop.ConsentRecord{WorkspaceID: ws, Subject: sub, Purpose: c.Purpose, State: c.State, At: now,
				Method: meta.Method, NoticeVersion: meta.NoticeVersion, Jurisdiction: meta.Jurisdiction,
				SourceID: meta.SourceID, Evidence: meta.Evidence, ReceiptID: body.ReceiptID}
			if c.State == trustloop.ConsentGiven && !expires.IsZero() {
				r.ExpiresAt = expires
				body.ExpiresAt = &expires
			}
			recs = append(recs, r)
		}
	}
	err = s.store.AppendConsent(ctx, recs, func(done []trustloop.ConsentRecord) (*trustloop.ConsentReceipt, error) {
		body.Records = body.Records[:0]
		for _, r := range done {
			body.Records = append(body.Records, ReceiptRecord{Subject: hex.EncodeToString(r.Subject), Seq: r.Seq,
				Purpose: r.Purpose, Hash: hex.EncodeToString(r.Hash)})
		}
		var err error
		jws, err = SignReceipt(key, body)
		if err != nil {
			return nil, err
		}
		return &trustloop.ConsentReceipt{ID: body.ReceiptID, WorkspaceID: ws, Subject: subjects[0], At: now, Body: []byte(jws)}, nil
	})
	// Forgotten whatever the outcome: a commit whose acknowledgement was lost
	// must not leave the old answer cached.
	s.forget(ws, subjects)
	if err != nil {
		return "", nil, err
	}
	if s.OnChange != nil {
		s.OnChange(ctx, recs)
	}
	return jws, recs, nil
}

// newState is the state a yes or no becomes: a no after a yes is a withdrawal,
// any other no a refusal.
func newState(yes bool, before string) string {
	switch {
	case yes:
		return trustloop.ConsentGiven
	case before == trustloop.ConsentGiven:
		return trustloop.ConsentWithdrawn
	}
	return trustloop.ConsentRefused
}

// Changes turns wanted yes/no answers into changes given the latest records.
func Changes(wanted map[string]bool, latest map[string]trustloop.ConsentRecord) []Change {
	out := make([]Change, 0, len(wanted))
	for _, p := range slices.Sorted(maps.Keys(wanted)) {
		out = append(out, Change{Purpose: p, State: newState(wanted[p], latest[p].State)})
	}
	return out
}

// PublicKey returns a workspace's receipt (and checkpoint) verification key.
func (s *Service) PublicKey(ws int64) (ed25519.PublicKey, error) {
	k, err := s.keys.SigningKey(ws)
	if err != nil {
		return nil, err
	}
	return k.Public().(ed25519.PublicKey), nil
}

// History returns a subject's records in chain order, read from the store.
func (s *Service) History(ctx context.Context, ws int64, subject []byte) ([]trustloop.ConsentRecord, error) {
	return s.store.ConsentRecords(ctx, ws, subject)
}

// Receipt returns a stored receipt of the workspace.
func (s *Service) Receipt(ctx context.Context, ws int64, id string) (*trustloop.ConsentReceipt, error) {
	if !ValidReceiptID(id) {
		return nil, trustloop.Errorf(trustloop.ENOTFOUND, "No consent receipt with this id.").
			WithHint("Use the receipt_id a consent change returned.")
	}
	return s.store.FindConsentReceipt(ctx, ws, id)
}

// AuditEntries turns appended records into consent-change entries of the audit
// log (T7): one per record, naming the subject by its pseudonym (random, and
// unlinkable once an erasure deleted it; a blind index would link the entry to
// the identifier for anyone holding the index key) and the actor
// by key or source, never by anything personal.
func AuditEntries(recs []trustloop.ConsentRecord) []trustloop.AuditEntry {
	out := make([]trustloop.AuditEntry, 0, len(recs))
	for _, r := range recs {
		actor := trustloop.AuditActor{Kind: trustloop.ActorSubject, ID: "source:" + strconv.FormatInt(r.SourceID, 10)}
		if key, ok := strings.CutPrefix(r.Evidence, "api_key:"); ok {
			actor = trustloop.AuditActor{Kind: trustloop.ActorAPIKey, ID: "key:" + key}
		} else if r.Evidence == EvidencePortal {
			actor = trustloop.AuditActor{Kind: trustloop.ActorSubject, ID: EvidencePortal}
		}
		out = append(out, trustloop.AuditEntry{WorkspaceID: r.WorkspaceID, Time: r.At, Kind: trustloop.AuditConsentChange,
			Actor: actor, Purpose: r.Purpose, Subject: r.Pseudonym,
			Categories: []string{trustloop.CategoryPreferences}, Action: "consent " + r.State,
			Detail: "method " + r.Method, ReceiptID: r.ReceiptID})
	}
	return out
}

// EvidencePortal is the evidence of a choice the customer made in the
// preference center: its audit entry names the customer there as the actor.
const EvidencePortal = "portal"

// JurisdictionOf returns the jurisdiction of the subject's most recent choice
// that named one ("" if none did): it selects the regime for reads, and for
// events that name none.
func JurisdictionOf(latest map[string]trustloop.ConsentRecord) string {
	var j string
	var at time.Time
	for _, r := range latest {
		// A record kept from before jurisdictions had to be codes may hold
		// another string; carried into a new record it would be refused.
		if r.Jurisdiction != "" && trustloop.ValidJurisdiction(r.Jurisdiction) && r.At.After(at) {
			j, at = r.Jurisdiction, r.At
		}
	}
	return j
}

// AllowedEach reports, for each purpose, whether the subjects' stored
// choices, or failing those the regime's default, allow it now: what a derived
// model (the recommender) asks before it uses a subject's data, without any
// one event's own signals. untils[i], when not zero, is when the consent that
// allows purposes[i] expires. An unknown purpose is not allowed. One read of
// the subjects' stored consent serves them all.
func (s *Service) AllowedEach(ctx context.Context, ws int64, purposes []string, subjects ...[]byte) (oks []bool, untils []time.Time, err error) {
	oks, untils = make([]bool, len(purposes)), make([]time.Time, len(purposes))
	k, err := s.Catalog(ctx, ws)
	if err != nil {
		return nil, nil, err
	}
	st, latest, err := s.Stored(ctx, k, ws, subjects...)
	if err != nil {
		return nil, nil, err
	}
	allowed := k.Decide(st, Signals{Regime: k.Regime(JurisdictionOf(latest))})
	for n, p := range purposes {
		i, known := k.Index(p)
		oks[n] = known && allowed.Has(i)
		if r := latest[p]; oks[n] && r.State == trustloop.ConsentGiven {
			untils[n] = r.ExpiresAt
		}
	}
	return oks, untils, nil
}

// Serves reports whether purpose was allowed when the message was collected
// (the purposes sealed with it) and may use the message's data category (T3).
func (s *Service) Serves(ctx context.Context, ws int64, purpose string, m *trustloop.Message) (bool, error) {
	if !slices.Contains(m.Purposes, purpose) {
		return false, nil
	}
	k, i, err := s.purpose(ctx, ws, purpose)
	if err != nil || k == nil {
		return false, err
	}
	return k.Categories(i)&EventCategories(m) != 0, nil
}

// purpose returns the workspace's catalog and the purpose's index in it; a nil
// catalog when the purpose is not in it.
func (s *Service) purpose(ctx context.Context, ws int64, purpose string) (*Compiled, int, error) {
	k, err := s.Catalog(ctx, ws)
	if err != nil {
		return nil, 0, err
	}
	i, ok := k.Index(purpose)
	if !ok {
		return nil, 0, nil
	}
	return k, i, nil
}
