package projection

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/collect"
	"github.com/trustloop/trustloop/keyring"
	"github.com/trustloop/trustloop/profile"
)

// Rectification (issue 5): corrected trait values replace the old ones
// everywhere the subject's data holds them — in every event that carried them
// (traits, context.traits, the batch context's traits) and in the profile
// states — and everything sealed under the subject's keys is sealed again
// under fresh ones, so the old values are gone even from what stays behind as
// ciphertext (a payload left in a segment file, a WAL frame, a backup).

// Rectify rewrites the subject holding the identifier blind with the
// corrected traits (a null value removes the trait) and hands the rewrite to
// write, which stores it in one transaction; the subject keys' blind indexes
// are returned (the collector seals their in-flight events again). found is
// false when no profile has the identifier.
func (s *Service) Rectify(ctx context.Context, es ErasureStore, ws int64, blind []byte, traits map[string]json.RawMessage, now time.Time,
	write func(*trustloop.Rekey) error) (rekeyed [][]byte, found bool, err error) {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	defer s.forgetSubjects() // before opMu is let go: identities may have changed
	if _, err := s.Flush(ctx, true); err != nil {
		return nil, false, err
	}
	sub, err := s.subject(ctx, es, ws, blind)
	if err != nil || sub == nil {
		return nil, false, err
	}
	defer func() {
		// Memory reloads from the store, whatever the outcome.
		s.evict(sub.ProfileIDs...)
		s.Forget(sub.KeyIDs)
		s.mu.Lock()
		s.owners.Clear()
		s.mu.Unlock()
		s.keys.Forget(ws, rekeyed)
	}()
	stored, err := s.store.FindSubjectKeysByID(ctx, ws, sub.KeyIDs)
	if err != nil {
		return nil, true, err
	}
	old, err := s.keysFor(ctx, ws, sub.KeyIDs)
	if err != nil {
		return nil, true, err
	}
	rk := &trustloop.Rekey{WorkspaceID: ws}
	fresh := map[int64]keyring.Key{}
	for id, sk := range stored {
		k, wrapped := s.keys.Rewrap(sk)
		fresh[id] = k
		rk.Keys = append(rk.Keys, trustloop.SubjectKey{ID: id, WorkspaceID: ws, Blind: sk.Blind, Wrapped: wrapped})
		rekeyed = append(rekeyed, sk.Blind)
	}
	// Every event, rewritten where it carried a corrected trait, sealed again.
	// (Events under a key shared with others, listed on a foreign timeline,
	// are skipped: their key cannot be replaced for one customer.)
	err = s.EachEvent(ctx, ws, sub.KeyIDs, func(e trustloop.StoredEvent, env *collect.Envelope) error {
		k, ok := fresh[e.KeyID]
		if !ok {
			return nil
		}
		var err error
		if env.Message, err = correctTraits(env.Message, traits, "traits"); err != nil {
			return err
		}
		if env.Message, err = correctTraits(env.Message, traits, "context", "traits"); err != nil {
			return err
		}
		if env.BatchContext, err = correctTraits(env.BatchContext, traits, "traits"); err != nil {
			return err
		}
		plain, err := json.Marshal(env)
		if err != nil {
			return err
		}
		rk.Events = append(rk.Events, trustloop.StoredEvent{Seq: e.Seq,
			Payload: keyring.SealEvent(nil, k, plain, keyring.EventAAD(nil, ws, e.SourceID, e.MessageHash))})
		return nil
	})
	if err != nil {
		return nil, true, err
	}
	for i, ir := range sub.Identities {
		if k, ok := fresh[ir.KeyID]; ok {
			rk.Identities = append(rk.Identities, trustloop.IdentityRecord{Blind: ir.Blind,
				Sealed: keyring.Seal(nil, k.DEK, []byte(sub.Values[i].Value), identityAAD(ws, ir.Blind))})
		}
	}
	// Profile states: the corrections applied (they win over every write the
	// profile has seen; null deletes), then sealed under the fresh key.
	recs, err := s.store.FindProfiles(ctx, ws, sub.ProfileIDs)
	if err != nil {
		return nil, true, err
	}
	for _, rec := range recs {
		ok, fk := old[rec.KeyID], fresh[rec.KeyID]
		if ok.DEK == nil || fk.DEK == nil {
			continue
		}
		plain, err := keyring.Open(ok.DEK, rec.State, profileAAD(ws, rec.ID))
		if err != nil {
			return nil, true, fmt.Errorf("projection: rectify: open profile %d: %w", rec.ID, err)
		}
		var st profile.State
		if err := st.UnmarshalBinary(plain); err != nil {
			return nil, true, err
		}
		profile.Correct(&st, traits, now)
		if plain, err = st.MarshalBinary(); err != nil {
			return nil, true, err
		}
		rk.Profiles = append(rk.Profiles, trustloop.ProfileRecord{ID: rec.ID, State: keyring.Seal(nil, fk.DEK, plain, profileAAD(ws, rec.ID))})
	}
	return rekeyed, true, write(rk)
}

// correctTraits replaces the corrected traits in the object raw holds at the
// path of members (e.g. "traits", or "context", "traits"): the members named are set
// to their corrected values, or removed for null. raw comes back unchanged
// (the same bytes) when it carries none of them.
func correctTraits(raw json.RawMessage, traits map[string]json.RawMessage, path ...string) (json.RawMessage, error) {
	if len(raw) == 0 || len(path) == 0 {
		return raw, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return raw, nil // not an object: nothing to correct
	}
	changed := false
	if len(path) == 1 {
		var t map[string]json.RawMessage
		if err := json.Unmarshal(obj[path[0]], &t); err != nil || t == nil {
			return raw, nil
		}
		for name, v := range traits {
			cur, has := t[name]
			switch {
			case !has:
			case bytes.Equal(v, []byte("null")):
				delete(t, name)
				changed = true
			case !bytes.Equal(cur, v):
				t[name] = v
				changed = true
			}
		}
		if !changed {
			return raw, nil
		}
		b, err := json.Marshal(t)
		if err != nil {
			return nil, err
		}
		obj[path[0]] = b
	} else {
		inner, err := correctTraits(obj[path[0]], traits, path[1:]...)
		if err != nil || bytes.Equal(inner, obj[path[0]]) {
			return raw, err
		}
		obj[path[0]] = inner
	}
	return json.Marshal(obj)
}
