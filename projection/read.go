package projection

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/audience"
	"github.com/trustloop/trustloop/keyring"
	"github.com/trustloop/trustloop/profile"
)

// Profile is a profile as the API shows it.
type Profile struct {
	ProfileID  string                 `json:"profile_id"`
	Identities []trustloop.Identifier `json:"identities"`
	Traits     map[string]any         `json:"traits"`
	Computed   map[string]any         `json:"computed"`
	Audiences  []AudienceRef          `json:"audiences"`
	CreatedAt  string                 `json:"created_at"`
	UpdatedAt  string                 `json:"updated_at"`
	// MergedFrom is set when the id asked for was merged into this profile.
	MergedFrom string `json:"merged_from,omitempty"`

	id    int64
	state profile.State
	cfg   profile.Config
	// set is the workspace's audiences, compiled, and now the time of the
	// read: what AudiencesOver evaluates with.
	set *audience.Set
	now time.Time
	// subjects are the blind indexes of its user and anonymous ids: the
	// subjects its consent is stored under.
	subjects [][]byte
}

// ID returns the profile's id.
func (p *Profile) ID() int64 { return p.id }

// ComputedFor returns the profile's computed traits over only the events
// collected for purpose (T3), shaped as Computed.
func (p *Profile) ComputedFor(purpose string) map[string]any {
	return p.cfg.ComputedFor(&p.state, purpose)
}

// AudiencesOver returns those of the profile's audiences whose rules also
// hold over traits and computed alone: a read for one purpose passes what that
// purpose may see, so that no membership drawn from data it may not see
// (events collected for other purposes, categories it may not use) shows in
// it (T3). Membership is kept for the profile's whole data (Audiences, from
// the store); a read shows the audiences that hold on both.
func (p *Profile) AudiencesOver(traits, computed map[string]any) []AudienceRef {
	if len(p.Audiences) == 0 || p.set == nil {
		return []AudienceRef{}
	}
	ids := p.set.Evaluate(traits, computed, p.now)
	out := []AudienceRef{}
	for _, a := range p.Audiences {
		if _, ok := slices.BinarySearch(ids, a.ID); ok {
			out = append(out, a)
		}
	}
	return out
}

// Subjects returns the blind indexes of the profile's user and anonymous ids,
// under which its consent is recorded.
func (p *Profile) Subjects() [][]byte { return p.subjects }

// AudienceRef names an audience a profile belongs to.
type AudienceRef struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}

// FormatID and ParseID are the API's form of profile ids: decimal strings, since
// the ids do not fit the 53 bits JavaScript numbers hold exactly.
func FormatID(id int64) string { return strconv.FormatInt(id, 10) }

// ParseID parses a profile id from a path; EINVALID if it is not one.
func ParseID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	// Only the id as the API writes it: "+12" or "012" naming profile 12 would
	// give one profile many names (in caches, logs and audit actions).
	if err != nil || id <= 0 || FormatID(id) != s {
		return 0, trustloop.Errorf(trustloop.EINVALID, "A profile id is a positive decimal number, as the API writes it.").
			WithHint("Use the profile_id the API returned, or look the profile up with /v1/profiles/lookup.")
	}
	return id, nil
}

func notFound() error {
	return trustloop.Errorf(trustloop.ENOTFOUND, "Profile not found.").
		WithHint("Check the profile id, or look the profile up by an identifier with /v1/profiles/lookup.")
}

// Profile returns a profile, opened. A merged-away id answers with the profile it
// was merged into.
func (s *Service) Profile(ctx context.Context, ws, id int64) (*Profile, error) {
	rec, mem, mergedFrom, err := s.resolve(ctx, ws, id)
	if err != nil {
		return nil, err
	}
	p, err := s.open(ctx, rec, mem)
	if err != nil {
		return nil, err
	}
	if mergedFrom != 0 {
		p.MergedFrom = FormatID(mergedFrom)
	}
	return p, nil
}

// resolve finds a profile's record, following merges (a merged-away id stands
// for the profile it was merged into); mem is its in-memory state, if any.
func (s *Service) resolve(ctx context.Context, ws, id int64) (rec trustloop.ProfileRecord, mem *state, mergedFrom int64, err error) {
	return s.resolveWith(ctx, ws, id, s.cached)
}

// cachedRecord is cached for callers that need only the record: a state with
// just its rec, nothing decoded.
func (s *Service) cachedRecord(id int64) (*state, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.cache[id]; c != nil {
		return &state{rec: c.rec}, nil
	}
	return nil, nil
}

// resolveWith is resolve with the in-memory lookup to use: cached (a decoded
// working copy) or cachedRecord (the record alone).
func (s *Service) resolveWith(ctx context.Context, ws, id int64, cached func(int64) (*state, error)) (rec trustloop.ProfileRecord, mem *state, mergedFrom int64, err error) {
	for hops := 0; ; hops++ {
		mem, err = cached(id)
		if err != nil {
			return rec, nil, 0, err
		}
		if mem != nil && mem.rec.WorkspaceID == ws {
			rec = mem.rec
		} else {
			mem = nil
			recs, err := s.store.FindProfiles(ctx, ws, []int64{id})
			if err != nil {
				return rec, nil, 0, err
			}
			r, ok := recs[id]
			if !ok {
				return rec, nil, 0, notFound()
			}
			rec = r
		}
		if rec.MergedInto != 0 && hops < 16 {
			if mergedFrom == 0 {
				mergedFrom = id
			}
			id = rec.MergedInto
			continue
		}
		return rec, mem, mergedFrom, nil
	}
}

// Subjects returns a profile's id (after merges) and its subjects (the blind
// indexes of its user and anonymous ids, under which its consent is kept),
// without opening anything: what a reader that needs only whose data it is
// (the recommender) asks. ENOTFOUND as Profile. The subjects are shared with a
// cache: the caller must not change them.
func (s *Service) Subjects(ctx context.Context, ws, id int64) (int64, [][]byte, error) {
	rec, _, _, err := s.resolveWith(ctx, ws, id, s.cachedRecord) // no decoding: the record is enough
	if err != nil {
		return 0, nil, err
	}
	keys, err := s.keysFor(ctx, ws, []int64{rec.KeyID})
	if err != nil {
		return 0, nil, err
	}
	if _, ok := keys[rec.KeyID]; !ok {
		return 0, nil, notFound() // its key was destroyed: the profile was erased
	}
	k := [2]int64{ws, rec.ID}
	s.subjectsMu.Lock()
	subjects, ok := s.subjects[k]
	gen := s.subjectsGen
	s.subjectsMu.Unlock()
	if ok {
		return rec.ID, subjects, nil
	}
	idents, err := s.store.ProfileIdentities(ctx, ws, rec.ID)
	if err != nil {
		return 0, nil, err
	}
	for _, ir := range idents {
		if ir.Type == trustloop.IDUserID || ir.Type == trustloop.IDAnonymousID {
			subjects = append(subjects, ir.Blind)
		}
	}
	s.subjectsMu.Lock()
	if s.subjectsGen == gen {
		if s.subjects == nil || len(s.subjects) >= maxCachedSubjects {
			s.subjects = map[[2]int64][][]byte{} // bounded: start over
		}
		s.subjects[k] = subjects
	}
	s.subjectsMu.Unlock()
	return rec.ID, subjects, nil
}

// maxCachedSubjects bounds the Subjects cache (~100 bytes a profile).
const maxCachedSubjects = 200_000

// forgetSubjects empties the Subjects cache after identities changed.
func (s *Service) forgetSubjects() {
	s.subjectsMu.Lock()
	s.subjectsGen++
	s.subjects = nil
	s.subjectsMu.Unlock()
}

// open builds the API's view of a profile: from its in-memory state when mem is
// given (it may be newer than the stored row), else from the stored row.
func (s *Service) open(ctx context.Context, rec trustloop.ProfileRecord, mem *state) (*Profile, error) {
	ws := rec.WorkspaceID
	idents, err := s.store.ProfileIdentities(ctx, ws, rec.ID)
	if err != nil {
		return nil, err
	}
	keyIDs := []int64{rec.KeyID}
	for _, ir := range idents {
		keyIDs = append(keyIDs, ir.KeyID)
	}
	keys, err := s.keysFor(ctx, ws, keyIDs)
	if err != nil {
		return nil, err
	}
	key, ok := keys[rec.KeyID]
	if !ok {
		return nil, notFound() // its key was destroyed: the profile was erased
	}
	p := &Profile{ProfileID: FormatID(rec.ID), id: rec.ID, Identities: []trustloop.Identifier{}, Audiences: []AudienceRef{},
		CreatedAt: rec.CreatedAt.UTC().Format("2006-01-02T15:04:05.000Z07:00"), UpdatedAt: rec.UpdatedAt.UTC().Format("2006-01-02T15:04:05.000Z07:00")}
	if mem != nil {
		p.state = mem.st
	} else {
		plain, err := keyring.Open(key.DEK, rec.State, profileAAD(ws, rec.ID))
		if err != nil {
			return nil, fmt.Errorf("projection: open profile %d: %w", rec.ID, err)
		}
		if err := p.state.UnmarshalBinary(plain); err != nil {
			return nil, fmt.Errorf("projection: profile %d: %w", rec.ID, err)
		}
	}
	for _, ir := range idents {
		if ir.Type == trustloop.IDUserID || ir.Type == trustloop.IDAnonymousID {
			p.subjects = append(p.subjects, ir.Blind)
		}
		k, ok := keys[ir.KeyID]
		if !ok {
			continue
		}
		v, err := keyring.Open(k.DEK, ir.Sealed, identityAAD(ws, ir.Blind))
		if err != nil {
			return nil, fmt.Errorf("projection: open identity of profile %d: %w", rec.ID, err)
		}
		p.Identities = append(p.Identities, trustloop.Identifier{Type: ir.Type, Value: string(v)})
	}
	cfg, err := s.config(ctx, ws)
	if err != nil {
		return nil, err
	}
	p.cfg = cfg.profile
	m := cfg.profile.Map(&p.state)
	p.Traits, _ = m["traits"].(map[string]any)
	p.Computed, _ = m["computed"].(map[string]any)
	if p.set, err = s.audienceSet(ctx, ws); err != nil {
		return nil, err
	}
	p.now = s.Now().UTC()
	auds := []int64(nil)
	if mem != nil {
		auds = mem.members
	} else if auds, err = s.store.ProfileAudiences(ctx, ws, rec.ID); err != nil {
		return nil, err
	}
	if len(auds) > 0 {
		all, err := s.store.ListAudiences(ctx, ws)
		if err != nil {
			return nil, err
		}
		for _, a := range all {
			for _, id := range auds {
				if a.ID == id {
					p.Audiences = append(p.Audiences, AudienceRef{ID: a.ID, Name: a.Name})
				}
			}
		}
	}
	return p, nil
}

// ParseIdentifier reads "type:value" as API callers write it and normalizes the
// value; EINVALID names what is wrong (never the value).
func (s *Service) ParseIdentifier(ctx context.Context, ws int64, q string) (trustloop.Identifier, error) {
	cfg, err := s.config(ctx, ws)
	if err != nil {
		return trustloop.Identifier{}, err
	}
	typ, value, ok := strings.Cut(q, ":")
	if !ok || typ == "" {
		return trustloop.Identifier{}, trustloop.Errorf(trustloop.EINVALID, "identifier must be written type:value, e.g. email:jane@example.com.").
			WithHint("Types: " + strings.Join(cfg.rules.Types(), ", ") + ".")
	}
	norm, err := cfg.rules.Normalize(typ, value)
	if err != nil {
		return trustloop.Identifier{}, err
	}
	return trustloop.Identifier{Type: typ, Value: norm}, nil
}

// Lookup finds the profile of an identifier.
func (s *Service) Lookup(ctx context.Context, ws int64, id trustloop.Identifier) (*Profile, error) {
	b, err := s.keys.Blind(ws, id.Type, id.Value)
	if err != nil {
		return nil, err
	}
	found, err := s.store.FindIdentities(ctx, ws, [][]byte{b})
	if err != nil {
		return nil, err
	}
	ir, ok := found[string(b)]
	if !ok {
		return nil, trustloop.Errorf(trustloop.ENOTFOUND, "No profile has this identifier.").
			WithHint("Identifiers are matched after normalization (trimmed; emails lower-cased; phones in E.164).")
	}
	return s.Profile(ctx, ws, ir.ProfileID)
}

// A cursor is an opaque paging position that names its listing: its kind
// (cursorEvents, a profile's timeline; cursorProfiles, a listing of
// profiles), the profile or audience it pages (0: all profiles), and the
// position. A cursor of one listing is refused by another, instead of
// paging it from a position that means something else there.
const (
	cursorEvents   byte = 'e'
	cursorProfiles byte = 'p'
)

func encodeCursor(kind byte, scope, pos int64) string {
	b := binary.BigEndian.AppendUint64([]byte{kind}, uint64(scope))
	return base64.RawURLEncoding.EncodeToString(binary.BigEndian.AppendUint64(b, uint64(pos)))
}

// decodeCursor returns the position of a cursor of the listing (kind, scope);
// 0 for none (the first page).
func decodeCursor(c string, kind byte, scope int64) (int64, error) {
	k, sc, pos, err := parseCursor(c)
	if err != nil || pos == 0 {
		return pos, err
	}
	if k != kind || sc != scope {
		return 0, errAnotherListing
	}
	return pos, nil
}

// parseCursor splits a cursor into its kind, scope and position (all zero
// for none).
func parseCursor(c string) (kind byte, scope, pos int64, err error) {
	if c == "" {
		return 0, 0, 0, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) != 17 || (b[0] != cursorEvents && b[0] != cursorProfiles) || int64(binary.BigEndian.Uint64(b[9:])) <= 0 {
		return 0, 0, 0, trustloop.Errorf(trustloop.EINVALID, "The cursor is malformed.").
			WithHint("Pass the next_cursor of the previous page unchanged, or none for the first page.")
	}
	return b[0], int64(binary.BigEndian.Uint64(b[1:9])), int64(binary.BigEndian.Uint64(b[9:])), nil
}

var errAnotherListing = trustloop.Errorf(trustloop.EINVALID, "The cursor belongs to another listing.").
	WithHint("Pass the next_cursor this listing returned (same profile or audience), or none for the first page.")

// mergedInto reports whether profile id now stands for profile into (it was
// merged into it); an id that is no profile's is not.
func (s *Service) mergedInto(ctx context.Context, ws, id, into int64) (bool, error) {
	rec, _, _, err := s.resolveWith(ctx, ws, id, s.cachedRecord)
	if trustloop.ErrorCode(err) == trustloop.ENOTFOUND {
		return false, nil
	}
	return err == nil && rec.ID == into, err
}

// Events returns a page of a profile's timeline, newest first, decrypted, and the
// cursor of the next page ("" at the end). When keep is not nil, only events it
// keeps (by the purposes they were collected for) are returned, so a page may
// hold fewer than limit events while a next cursor remains.
func (s *Service) Events(ctx context.Context, ws, id int64, cursor string, limit int, keep func(purposes []string, typ string, message json.RawMessage) bool) ([]trustloop.TimelineEvent, string, error) {
	p, err := s.Profile(ctx, ws, id)
	if err != nil {
		return nil, "", err
	}
	// Cursors name the profile the timeline is of, not the id it was asked
	// for by: the id of a profile merged into it pages it too. A cursor made
	// before such a merge names the profile that went away; it pages the
	// timeline it was merged into (positions are the log's, so "older than
	// this" still means the same).
	kind, scope, before, err := parseCursor(cursor)
	if err != nil {
		return nil, "", err
	}
	if before != 0 && (kind != cursorEvents || scope != p.id) {
		merged := false
		if kind == cursorEvents {
			if merged, err = s.mergedInto(ctx, ws, scope, p.id); err != nil {
				return nil, "", err
			}
		}
		if !merged {
			return nil, "", errAnotherListing
		}
	}
	// A profile's events are its subjects': those sealed under the keys of its
	// user and anonymous ids.
	idents, err := s.store.ProfileIdentities(ctx, ws, p.id)
	if err != nil {
		return nil, "", err
	}
	keyIDs, err := s.subjectKeyIDs(ctx, ws, idents)
	if err != nil {
		return nil, "", err
	}
	// And the events applied to it under a key that is not its own (its
	// subject id blocked or kept out by a limit).
	keyIDs = append(keyIDs, ForeignKey(p.id))
	evs, err := s.store.ProfileEvents(ctx, ws, keyIDs, before, limit+1)
	if err != nil {
		return nil, "", err
	}
	// Positions not yet written behind are in memory.
	var mem []int64
	for _, q := range s.pendingSeqs(keyIDs) {
		if before <= 0 || q < before {
			mem = append(mem, q)
		}
	}
	if len(mem) > 0 {
		more, err := s.store.EventsBySeq(ctx, ws, mem)
		if err != nil {
			return nil, "", err
		}
		evs = newestFirst(append(evs, more...), limit+1)
	}
	next := ""
	if len(evs) > limit {
		evs = evs[:limit]
		next = encodeCursor(cursorEvents, p.id, evs[len(evs)-1].Seq)
	}
	need := make([]int64, 0, len(keyIDs))
	for _, e := range evs {
		if !slices.Contains(need, e.KeyID) {
			need = append(need, e.KeyID)
		}
	}
	keys, err := s.keysFor(ctx, ws, need)
	if err != nil {
		return nil, "", err
	}
	out := make([]trustloop.TimelineEvent, 0, len(evs))
	for _, e := range evs {
		k, ok := keys[e.KeyID]
		if !ok {
			continue
		}
		env, err := openEvent(ws, e, k)
		if err != nil {
			return nil, "", err
		}
		if keep != nil && !keep(env.Purposes, env.Type, env.Message) {
			continue
		}
		out = append(out, trustloop.TimelineEvent{Seq: e.Seq, Type: e.Type.String(), ReceivedAt: e.ReceivedAt,
			Timestamp: e.Timestamp, Source: e.SourceID, Purposes: env.Purposes, Message: env.Message})
	}
	return out, next, nil
}

// newestFirst orders events newest first without repeats and keeps at most n.
func newestFirst(evs []trustloop.StoredEvent, n int) []trustloop.StoredEvent {
	slices.SortFunc(evs, func(a, b trustloop.StoredEvent) int { return cmp.Compare(b.Seq, a.Seq) })
	evs = slices.CompactFunc(evs, func(a, b trustloop.StoredEvent) bool { return a.Seq == b.Seq })
	return evs[:min(len(evs), n)]
}
