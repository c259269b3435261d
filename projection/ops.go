package projection

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/audience"
	"github.com/trustloop/trustloop/collect"
	"github.com/trustloop/trustloop/keyring"
	"github.com/trustloop/trustloop/profile"
)

// Merges lists the merges into or out of a profile (ids as strings, like profile ids).
type MergeView struct {
	MergeID string `json:"merge_id"`
	Into    string `json:"into"`
	From    string `json:"from"`
	Moved   int    `json:"identifiers_moved"`
	At      string `json:"at"`
	SplitAt string `json:"split_at,omitempty"`
}

// Merges returns a profile's merge records, newest first.
func (s *Service) Merges(ctx context.Context, ws, id int64) ([]MergeView, error) {
	if _, err := s.Profile(ctx, ws, id); err != nil {
		return nil, err
	}
	ms, err := s.store.ProfileMerges(ctx, ws, id)
	if err != nil {
		return nil, err
	}
	out := make([]MergeView, 0, len(ms))
	for _, m := range ms {
		v := MergeView{MergeID: FormatID(m.ID), Into: FormatID(m.Into), From: FormatID(m.From), Moved: len(m.Moved),
			At: m.At.UTC().Format("2006-01-02T15:04:05.000Z")}
		if m.SplitAt != nil {
			v.SplitAt = m.SplitAt.UTC().Format("2006-01-02T15:04:05.000Z")
		}
		out = append(out, v)
	}
	return out, nil
}

// Split undoes a merge of profile id: the identifiers that moved go back to the
// merged-away profile, both profiles are rebuilt from their subjects' events (so
// events are re-attributed), and the two stay apart from then on.
func (s *Service) Split(ctx context.Context, ws, id, mergeID int64) (into, from *Profile, err error) {
	// No group may run meanwhile (its Done would install a state cloned before
	// the split); the stored rows must be current before they are rebuilt, and
	// what memory holds of the profiles is stale after.
	s.opMu.Lock()
	defer s.opMu.Unlock()
	defer s.forgetSubjects() // before opMu is let go: identities may have changed
	if _, err := s.Flush(ctx, true); err != nil {
		return nil, nil, err
	}
	// An unknown profile is said to be one, before its merge is looked for.
	if _, _, _, err := s.resolveWith(ctx, ws, id, s.cachedRecord); err != nil {
		return nil, nil, err
	}
	m, err := s.store.FindMerge(ctx, ws, mergeID)
	if err != nil {
		return nil, nil, err
	}
	if m.Into != id && m.From != id {
		return nil, nil, trustloop.Errorf(trustloop.ENOTFOUND, "This profile has no such merge.").
			WithHint("List the profile's merges with GET /v1/profiles/{id}/merges.")
	}
	if m.SplitAt != nil {
		return nil, nil, trustloop.Errorf(trustloop.ECONFLICT, "This merge was undone already.").
			WithHint("GET /v1/profiles/{id}/merges lists the merges still in place.")
	}
	// The survivor may itself have been merged since: the moved identifiers go
	// back from wherever they are now (the live root of that chain), and those
	// that left it since stay where they went.
	root := m.Into
	var intoRec trustloop.ProfileRecord
	for hops := 0; ; hops++ {
		recs, err := s.store.FindProfiles(ctx, ws, []int64{root})
		if err != nil {
			return nil, nil, err
		}
		r, ok := recs[root]
		if !ok {
			return nil, nil, notFound()
		}
		if r.MergedInto == 0 || hops > 64 {
			intoRec = r
			break
		}
		root = r.MergedInto
	}
	recs, err := s.store.FindProfiles(ctx, ws, []int64{m.From})
	if err != nil {
		return nil, nil, err
	}
	fromRec, ok := recs[m.From]
	if !ok {
		return nil, nil, notFound()
	}
	idents, err := s.store.ProfileIdentities(ctx, ws, root)
	if err != nil {
		return nil, nil, err
	}
	moved := map[string]bool{}
	for _, b := range m.Moved {
		moved[string(b)] = true
	}
	var intoIDs, fromIDs []trustloop.IdentityRecord
	back := *m
	back.Moved = nil
	for _, ir := range idents {
		if moved[string(ir.Blind)] {
			fromIDs = append(fromIDs, ir)
			back.Moved = append(back.Moved, ir.Blind)
		} else {
			intoIDs = append(intoIDs, ir)
		}
	}
	now := s.Now().UTC()
	if intoRec.State, intoRec.AppliedSeq, err = s.rebuild(ctx, ws, intoRec, intoIDs); err != nil {
		return nil, nil, err
	}
	if fromRec.State, fromRec.AppliedSeq, err = s.rebuild(ctx, ws, fromRec, fromIDs); err != nil {
		return nil, nil, err
	}
	fromRec.MergedInto = 0
	intoRec.UpdatedAt, fromRec.UpdatedAt = now, now
	// back: only the identifiers still on the root move; the separation is
	// between the merge's own two profiles, as the identity rules define it.
	if err := s.store.Split(ctx, &back, intoRec, fromRec); err != nil {
		return nil, nil, err
	}
	s.evict(m.Into, m.From, root)
	s.mu.Lock()
	s.owners.Clear() // identities moved back (splits are rare: start over)
	s.mu.Unlock()
	if err := s.reevaluate(ctx, ws, []int64{intoRec.ID, fromRec.ID}); err != nil {
		return nil, nil, err
	}
	if into, err = s.Profile(ctx, ws, intoRec.ID); err != nil {
		return nil, nil, err
	}
	from, err = s.Profile(ctx, ws, fromRec.ID)
	return into, from, err
}

// rebuild replays the events of a set of identities' subjects into a fresh state,
// sealed for rec.
func (s *Service) rebuild(ctx context.Context, ws int64, rec trustloop.ProfileRecord, idents []trustloop.IdentityRecord) (sealed []byte, applied int64, err error) {
	subjects, err := s.subjectKeyIDs(ctx, ws, idents)
	if err != nil {
		return nil, 0, err
	}
	keys, err := s.keysFor(ctx, ws, append([]int64{rec.KeyID}, subjects...))
	if err != nil {
		return nil, 0, err
	}
	var events []trustloop.StoredEvent
	for before := int64(0); ; {
		page, err := s.store.ProfileEvents(ctx, ws, subjects, before, 1000)
		if err != nil {
			return nil, 0, err
		}
		events = append(events, page...)
		if len(page) < 1000 {
			break
		}
		before = page[len(page)-1].Seq
	}
	slices.Reverse(events) // oldest first, as they were applied
	cfg, err := s.config(ctx, ws)
	if err != nil {
		return nil, 0, err
	}
	var st profile.State
	for _, e := range events {
		k, ok := keys[e.KeyID]
		if !ok {
			continue
		}
		env, err := openEvent(ws, e, k)
		if err != nil {
			return nil, 0, err
		}
		cfg.profile.Apply(&st, inputOf(messageOf(env, e), e.SourceID))
		applied = max(applied, e.Seq)
	}
	plain, err := st.MarshalBinary()
	if err != nil {
		return nil, 0, err
	}
	key, ok := keys[rec.KeyID]
	if !ok {
		return nil, 0, fmt.Errorf("projection: rebuild: profile %d has no key", rec.ID)
	}
	// applied: the state reflects every event up to here, so a replay after a
	// crash does not apply them again.
	return keyring.Seal(nil, key.DEK, plain, profileAAD(ws, rec.ID)), max(applied, rec.AppliedSeq), nil
}

// messageOf turns a stored envelope back into the message the projection saw.
func messageOf(env *collect.Envelope, e trustloop.StoredEvent) *trustloop.Message {
	m := &trustloop.Message{Type: e.Type, MessageID: env.MessageID, ReceivedAt: env.ReceivedAt, Timestamp: env.Timestamp,
		Raw: env.Message, BatchContext: env.BatchContext, Purposes: env.Purposes}
	if e.Type == trustloop.EventTrack {
		if name, ok := collect.LookupString(env.Message, "event"); ok {
			m.Event = name
		}
	}
	// The collector accepts numeric ids as their literal text; so does this.
	m.UserID, m.AnonymousID = idText(env.Message, "userId"), idText(env.Message, "anonymousId")
	return m
}

func idText(raw []byte, name string) string {
	v, ok := collect.Lookup(raw, name)
	if !ok {
		return ""
	}
	if s, ok := collect.StringValue(v); ok {
		return s
	}
	if len(v) > 0 && (v[0] == '-' || v[0] >= '0' && v[0] <= '9') {
		return string(v)
	}
	return ""
}

// reevaluate recomputes the audience memberships of the given profiles.
func (s *Service) reevaluate(ctx context.Context, ws int64, ids []int64) error {
	// No flush meanwhile: one holding memberships evaluated before would write
	// them over these, and flushes write memberships only when they change.
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	set, err := s.audienceSet(ctx, ws)
	if err != nil {
		return err
	}
	members := map[int64][]int64{}
	for _, id := range ids {
		p, err := s.Profile(ctx, ws, id)
		if err != nil {
			return err
		}
		if p.id != id {
			members[id] = nil // merged away
			continue
		}
		members[id] = set.Evaluate(p.Traits, p.Computed, s.Now().UTC())
	}
	if err := s.store.SetMembers(ctx, ws, members); err != nil {
		return err
	}
	s.mu.Lock()
	for id, m := range members {
		if st := s.cache[id]; st != nil {
			st.members, st.membersKnown, st.membersDirty = m, true, false
		}
	}
	s.mu.Unlock()
	return nil
}

// evict drops profiles from memory (after they were rewritten outside the
// projection). Callers flush first: a dirty state would be lost.
func (s *Service) evict(ids ...int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		delete(s.cache, id)
	}
}

// ReevaluateAll recomputes every live profile's memberships, a page at a time
// (after an audience was created, changed or removed).
func (s *Service) ReevaluateAll(ctx context.Context, ws int64) error {
	for after := int64(0); ; {
		page, err := s.store.ListProfiles(ctx, ws, 0, after, 500)
		if err != nil {
			return err
		}
		if len(page) == 0 {
			return nil
		}
		ids := make([]int64, len(page))
		for i, p := range page {
			ids[i] = p.ID
		}
		if err := s.reevaluate(ctx, ws, ids); err != nil {
			return err
		}
		after = ids[len(ids)-1]
	}
}

// SaveAudience validates and stores an audience (new when a.ID is 0), then
// recomputes memberships.
func (s *Service) SaveAudience(ctx context.Context, a *trustloop.Audience) error {
	a.Name, a.Rule = strings.TrimSpace(a.Name), strings.TrimSpace(a.Rule)
	if err := audience.Validate(toAudiences([]*trustloop.Audience{a})[0]); err != nil {
		return err
	}
	// A new or changed rule must not have a part that can never hold; a
	// stored rule is left as it is (a rename keeps it).
	check := a.ID == 0
	if !check {
		old, err := s.store.FindAudience(ctx, a.WorkspaceID, a.ID)
		check = err != nil || old.Rule != a.Rule
	}
	if check {
		if err := audience.CheckTypes(a.Rule); err != nil {
			if e, ok := err.(*trustloop.Error); ok && e.Code == trustloop.EINVALID {
				return trustloop.Errorf(trustloop.EINVALID, "invalid audience: %s", e.Message).WithHint(e.Hint)
			}
			return err
		}
	}
	var err error
	if a.ID == 0 {
		err = s.store.CreateAudience(ctx, a)
	} else {
		err = s.store.UpdateAudience(ctx, a)
	}
	if err != nil {
		return err
	}
	s.invalidateAudiences(a.WorkspaceID)
	return s.ReevaluateAll(ctx, a.WorkspaceID)
}

// DeleteAudience removes an audience.
func (s *Service) DeleteAudience(ctx context.Context, ws, id int64) error {
	if err := s.store.DeleteAudience(ctx, ws, id); err != nil {
		return err
	}
	s.invalidateAudiences(ws)
	return nil
}

// List returns a page of profiles (optionally one audience's), opened, and the
// cursor of the next page.
func (s *Service) List(ctx context.Context, ws, audienceID int64, cursor string, limit int) ([]*Profile, string, error) {
	after, err := decodeCursor(cursor, cursorProfiles, audienceID)
	if err != nil {
		return nil, "", err
	}
	if audienceID != 0 {
		if _, err := s.store.FindAudience(ctx, ws, audienceID); err != nil {
			return nil, "", err
		}
		// Memberships are written behind with profile state: write them now so
		// that the listing shows every acknowledged event's effect.
		if _, err := s.Flush(ctx, true); err != nil {
			return nil, "", err
		}
	}
	// Without an audience no flush is needed: new and merged profiles are stored
	// in their commit, and each listed profile is opened from memory when memory
	// has a newer state.
	recs, err := s.store.ListProfiles(ctx, ws, audienceID, after, limit+1)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(recs) > limit {
		recs = recs[:limit]
		next = encodeCursor(cursorProfiles, audienceID, recs[len(recs)-1].ID)
	}
	out := make([]*Profile, 0, len(recs))
	for _, r := range recs {
		mem, err := s.cached(r.ID)
		if err != nil {
			return nil, "", err
		}
		p, err := s.open(ctx, r, mem)
		if err != nil {
			return nil, "", err
		}
		out = append(out, p)
	}
	return out, next, nil
}

// Audiences lists a workspace's audiences.
func (s *Service) Audiences(ctx context.Context, ws int64) ([]*trustloop.Audience, error) {
	as, err := s.store.ListAudiences(ctx, ws)
	if as == nil && err == nil {
		as = []*trustloop.Audience{}
	}
	return as, err
}

// Audience returns one audience.
func (s *Service) Audience(ctx context.Context, ws, id int64) (*trustloop.Audience, error) {
	return s.store.FindAudience(ctx, ws, id)
}

// openEvent opens a stored event's sealed envelope with its subject key.
func openEvent(ws int64, e trustloop.StoredEvent, k keyring.Key) (*collect.Envelope, error) {
	plain, err := keyring.Open(k.DEK, e.Payload, keyring.EventAAD(nil, ws, e.SourceID, e.MessageHash))
	if err != nil {
		return nil, fmt.Errorf("projection: open event %d: %w", e.Seq, err)
	}
	env, err := collect.OpenEnvelope(plain)
	if err != nil {
		return nil, fmt.Errorf("projection: event %d: %w", e.Seq, err)
	}
	return env, nil
}

// inputOf is the profile rules' input of a message. The log keeps times to the
// millisecond, so they are cut to it here: a replay or rebuild from the log then
// sees exactly what the live projection saw.
func inputOf(m *trustloop.Message, sourceID int64) profile.Input {
	in := profile.InputFrom(m, sourceID)
	in.Timestamp, in.ReceivedAt = in.Timestamp.Truncate(time.Millisecond), in.ReceivedAt.Truncate(time.Millisecond)
	return in
}

// subjectKeyIDs returns the subject keys of a profile's user and anonymous ids:
// a profile's events are those sealed under them.
func (s *Service) subjectKeyIDs(ctx context.Context, ws int64, idents []trustloop.IdentityRecord) ([]int64, error) {
	var blinds [][]byte
	for _, ir := range idents {
		if ir.Type == trustloop.IDUserID || ir.Type == trustloop.IDAnonymousID {
			blinds = append(blinds, ir.Blind)
		}
	}
	sks, err := s.store.FindSubjectKeys(ctx, ws, blinds)
	if err != nil {
		return nil, err
	}
	ids := make([]int64, 0, len(sks))
	for _, sk := range sks {
		ids = append(ids, sk.ID)
	}
	return ids, nil
}

// OpenEvent opens a stored event with its subject key (for readers outside the
// projection: the access package of a subject without a profile).
func OpenEvent(ws int64, e trustloop.StoredEvent, k keyring.Key) (*collect.Envelope, error) {
	return openEvent(ws, e, k)
}
