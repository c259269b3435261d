package projection

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/collect"
	"github.com/trustloop/trustloop/keyring"
)

// ErasureStore is what an erasure needs of the store beyond Store.
type ErasureStore interface {
	MergedProfiles(ctx context.Context, workspaceID int64, into []int64) ([]int64, error)
}

// Subject is everything the projection holds of one customer: the profile an
// identifier belongs to, every profile merged into it, their identities
// (opened) and the subject keys sealing their events, with the events' log
// positions.
type Subject struct {
	ProfileIDs []int64
	Identities []trustloop.IdentityRecord
	// Values are the identities' values, aligned with Identities.
	Values []trustloop.Identifier
	// KeyIDs are the subject's keys: its identities' and profiles', and a
	// foreign event's key when every event under it is the subject's (an
	// anonymous id kept out by a limit).
	KeyIDs []int64
	// KeyBlinds are the blind indexes the KeyIDs belong to (consent is kept
	// under them).
	KeyBlinds [][]byte
	// Seqs are the log positions of the events under KeyIDs.
	Seqs []int64
	// ForeignSeqs are the positions of the subject's events under a key
	// shared with others (a blocked identifier's): they go, the key stays.
	ForeignSeqs []int64
	// TimelineKeys are the profiles' foreign timelines (ForeignKey).
	TimelineKeys []int64
	// SharedBlinds are the blind indexes of the shared keys ForeignSeqs are
	// under: derived models keyed by subject must read those subjects again.
	SharedBlinds [][]byte
}

// Blinds returns the blind indexes of the subject's identities.
func (sub *Subject) Blinds() [][]byte {
	out := make([][]byte, len(sub.Identities))
	for i, ir := range sub.Identities {
		out[i] = ir.Blind
	}
	return out
}

// Erase finds the subject holding the identifier blind and calls erase with
// it while no group commit or operator action runs, after writing everything
// held in memory behind (so the store holds every row to delete); then it
// drops the subject from memory: profile states, identity owners, subject
// keys and timeline runs. found is false (and erase not called) when no
// profile has the identifier.
func (s *Service) Erase(ctx context.Context, es ErasureStore, ws int64, blind []byte, erase func(*Subject) error) (found bool, err error) {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	defer s.forgetSubjects() // before opMu is let go: identities may have changed
	if _, err := s.Flush(ctx, true); err != nil {
		return false, err
	}
	sub, err := s.subject(ctx, es, ws, blind)
	if err != nil || sub == nil {
		return false, err
	}
	err = erase(sub)
	// Dropped from memory whatever the outcome: a failed erasure leaves the
	// store as it was, and memory reloads from it.
	s.evict(sub.ProfileIDs...)
	s.Forget(sub.KeyIDs)
	s.mu.Lock()
	s.owners.Clear() // erasures are rare: start over rather than find each entry
	// The erasure deleted identity rows by blind index, the subject keys'
	// among them, which another profile may own: every profile's identifier
	// counts are read from the store again when next needed.
	for _, st := range s.cache {
		st.typesKnown = false
	}
	for _, k := range append(sub.KeyIDs, sub.TimelineKeys...) {
		delete(s.pending, k)
	}
	s.mu.Unlock()
	return true, err
}

// Find returns the subject holding the identifier blind, nil if none: its
// profiles, identities, keys and foreign timelines, not its events' positions
// (EachEvent over KeyIDs and TimelineKeys reads the events).
func (s *Service) Find(ctx context.Context, es ErasureStore, ws int64, blind []byte) (*Subject, error) {
	return s.find(ctx, es, ws, blind)
}

// subject is Find with every event position, and the foreign keys that are
// the subject's alone among its KeyIDs: what an erasure or a re-keying needs.
func (s *Service) subject(ctx context.Context, es ErasureStore, ws int64, blind []byte) (*Subject, error) {
	sub, err := s.find(ctx, es, ws, blind)
	if err != nil || sub == nil {
		return sub, err
	}
	// Events applied to the profiles under keys that are not theirs (the
	// foreign timelines): a key all of whose events are the subject's is the
	// subject's too; the others' events go, their keys stay.
	fseqs, err := s.allSeqs(ctx, sub.TimelineKeys)
	if err != nil {
		return nil, err
	}
	inForeign := make(map[int64]bool, len(fseqs))
	foreign := map[int64][]int64{}
	for start := 0; start < len(fseqs); start += 1000 {
		evs, err := s.store.EventsBySeq(ctx, ws, fseqs[start:min(start+1000, len(fseqs))])
		if err != nil {
			return nil, err
		}
		for _, e := range evs {
			inForeign[e.Seq] = true
			if !slices.Contains(sub.KeyIDs, e.KeyID) {
				foreign[e.KeyID] = append(foreign[e.KeyID], e.Seq)
			}
		}
	}
	var shared []int64
	for k, seqs := range foreign {
		all, err := s.allSeqs(ctx, []int64{k})
		if err != nil {
			return nil, err
		}
		if !slices.ContainsFunc(all, func(q int64) bool { return !inForeign[q] }) {
			sub.KeyIDs = append(sub.KeyIDs, k)
		} else {
			sub.ForeignSeqs = append(sub.ForeignSeqs, seqs...)
			shared = append(shared, k)
		}
	}
	sks, err := s.store.FindSubjectKeysByID(ctx, ws, append(slices.Clip(sub.KeyIDs), shared...))
	if err != nil {
		return nil, err
	}
	for id, sk := range sks {
		if slices.Contains(shared, id) {
			sub.SharedBlinds = append(sub.SharedBlinds, sk.Blind)
		} else {
			sub.KeyBlinds = append(sub.KeyBlinds, sk.Blind)
		}
	}
	sub.Seqs, err = s.allSeqs(ctx, sub.KeyIDs)
	return sub, err
}

// allSeqs returns the positions the keys' timelines list, stored and still
// in memory, ascending.
func (s *Service) allSeqs(ctx context.Context, keys []int64) ([]int64, error) {
	seqs, err := s.store.TimelineSeqs(ctx, keys)
	if err != nil {
		return nil, err
	}
	if mem := s.pendingSeqs(keys); len(mem) > 0 {
		seqs = append(seqs, mem...)
		slices.Sort(seqs)
		seqs = slices.Compact(seqs)
	}
	return seqs, nil
}

func (s *Service) find(ctx context.Context, es ErasureStore, ws int64, blind []byte) (*Subject, error) {
	found, err := s.store.FindIdentities(ctx, ws, [][]byte{blind})
	if err != nil {
		return nil, err
	}
	ir, ok := found[string(blind)]
	if !ok {
		return nil, nil
	}
	// The live root of the identifier's profile, then everything merged into
	// it (merges not split), transitively.
	root := ir.ProfileID
	for hops := 0; hops < 64; hops++ {
		recs, err := s.store.FindProfiles(ctx, ws, []int64{root})
		if err != nil {
			return nil, err
		}
		r, ok := recs[root]
		if !ok || r.MergedInto == 0 {
			break
		}
		root = r.MergedInto
	}
	sub := &Subject{ProfileIDs: []int64{root}}
	for frontier := []int64{root}; len(frontier) > 0; {
		next, err := es.MergedProfiles(ctx, ws, frontier)
		if err != nil {
			return nil, err
		}
		frontier = frontier[:0]
		for _, id := range next {
			if !slices.Contains(sub.ProfileIDs, id) {
				sub.ProfileIDs = append(sub.ProfileIDs, id)
				frontier = append(frontier, id)
			}
		}
	}
	if sub.Identities, err = s.store.IdentitiesOfProfiles(ctx, ws, sub.ProfileIDs); err != nil {
		return nil, err
	}
	keyIDs, err := s.subjectKeyIDs(ctx, ws, sub.Identities)
	if err != nil {
		return nil, err
	}
	recs, err := s.store.FindProfiles(ctx, ws, sub.ProfileIDs)
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		keyIDs = append(keyIDs, r.KeyID)
	}
	for _, ir := range sub.Identities {
		keyIDs = append(keyIDs, ir.KeyID)
	}
	slices.Sort(keyIDs)
	sub.KeyIDs = slices.Compact(keyIDs)
	keys, err := s.keysFor(ctx, ws, sub.KeyIDs)
	if err != nil {
		return nil, err
	}
	for _, ir := range sub.Identities {
		var v []byte
		if k, ok := keys[ir.KeyID]; ok {
			if v, err = keyring.Open(k.DEK, ir.Sealed, identityAAD(ws, ir.Blind)); err != nil {
				return nil, fmt.Errorf("projection: open identity: %w", err)
			}
		}
		sub.Values = append(sub.Values, trustloop.Identifier{Type: ir.Type, Value: string(v)})
	}
	for _, id := range sub.ProfileIDs {
		sub.TimelineKeys = append(sub.TimelineKeys, ForeignKey(id))
	}
	return sub, nil
}

// EachEvent calls fn with every event of the subject keys, newest first,
// opened, a page at a time (bounded memory however many there are): the
// stored timelines and the positions still held in memory.
func (s *Service) EachEvent(ctx context.Context, ws int64, keyIDs []int64, fn func(e trustloop.StoredEvent, env *collect.Envelope) error) error {
	keys := map[int64]keyring.Key{}
	return s.eachPage(ctx, ws, keyIDs, func(evs []trustloop.StoredEvent) error {
		// Keys by the events' own key ids: a foreign timeline lists events
		// sealed under keys not in keyIDs.
		var need []int64
		for _, e := range evs {
			if _, ok := keys[e.KeyID]; !ok && !slices.Contains(need, e.KeyID) {
				need = append(need, e.KeyID)
			}
		}
		if len(need) > 0 {
			more, err := s.keysFor(ctx, ws, need)
			if err != nil {
				return err
			}
			maps.Copy(keys, more)
		}
		for _, e := range evs {
			k, ok := keys[e.KeyID]
			if !ok {
				continue
			}
			env, err := openEvent(ws, e, k)
			if err != nil {
				return err
			}
			if err := fn(e, env); err != nil {
				return err
			}
		}
		if len(keys) > 10_000 {
			clear(keys)
		}
		return nil
	})
}

// EachStoredEvent is EachEvent without opening anything: the rows alone (key
// ids, message hashes), for a caller that needs no payload.
func (s *Service) EachStoredEvent(ctx context.Context, ws int64, keyIDs []int64, fn func(e trustloop.StoredEvent) error) error {
	return s.eachPage(ctx, ws, keyIDs, func(evs []trustloop.StoredEvent) error {
		for _, e := range evs {
			if err := fn(e); err != nil {
				return err
			}
		}
		return nil
	})
}

// eachPage calls fn with the events of the subject keys, newest first, 500 at
// a time: the positions are read once (8 bytes each), then the events a page
// at a time, so memory and time stay linear in the number of events.
func (s *Service) eachPage(ctx context.Context, ws int64, keyIDs []int64, fn func(evs []trustloop.StoredEvent) error) error {
	seqs, err := s.allSeqs(ctx, keyIDs)
	if err != nil {
		return err
	}
	slices.Reverse(seqs)
	const page = 500
	for start := 0; start < len(seqs); start += page {
		evs, err := s.store.EventsBySeq(ctx, ws, seqs[start:min(start+page, len(seqs))])
		if err != nil {
			return err
		}
		slices.Reverse(evs) // EventsBySeq gives them ascending
		if err := fn(evs); err != nil {
			return err
		}
	}
	return nil
}
