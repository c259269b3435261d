package privacy

import (
	"context"
	"slices"

	"github.com/trustloop/trustloop/projection"
)

// Whose keys are whose. A subject's keys (projection.Subject.KeyIDs) are its
// identities' keys, its profiles' keys and foreign keys all of whose events
// are its own. A profile's key is the key of the event that made it, and that
// event's user or anonymous id may be blocked ("anonymous", "null"): then
// the profile's key is the blocked value's, which seals the events of every
// customer sending that value. Such a key is not the subject's however it
// came among its keys, unless every event under it is on the subject's
// foreign timelines (the projection lists there each event applied to a
// profile under a key that is not one of its identities').

// keyInfo is what the service knows of a subject's keys.
type keyInfo struct {
	// blind is each key's blind index.
	blind map[int64][]byte
	// identity are the keys of the subject's identities.
	identity []int64
	// other are the rest of sub.KeyIDs: profile keys and foreign keys.
	other []int64
}

func (s *Service) keyInfo(ctx context.Context, ws int64, sub *projection.Subject) (*keyInfo, error) {
	sks, err := s.Store.FindSubjectKeysByID(ctx, ws, sub.KeyIDs)
	if err != nil {
		return nil, err
	}
	ki := &keyInfo{blind: make(map[int64][]byte, len(sks))}
	idents := sub.Blinds()
	for _, k := range sub.KeyIDs {
		sk, ok := sks[k]
		if !ok {
			continue // gone: nothing under it to read or to destroy
		}
		ki.blind[k] = sk.Blind
		if slices.ContainsFunc(idents, func(b []byte) bool { return string(b) == string(sk.Blind) }) {
			ki.identity = append(ki.identity, k)
		} else {
			ki.other = append(ki.other, k)
		}
	}
	return ki, nil
}

// shareKeys takes out of an erasure's subject the keys it shares with other
// customers (see above): they are not destroyed and their blind indexes'
// consent stays; only the subject's events under them go (ForeignSeqs). It
// runs where the erasure does, after the projection wrote everything behind,
// so the stored timelines are complete.
func (s *Service) shareKeys(ctx context.Context, ws int64, sub *projection.Subject) error {
	ki, err := s.keyInfo(ctx, ws, sub)
	if err != nil || len(ki.other) == 0 {
		return err
	}
	fseqs, err := s.Store.TimelineSeqs(ctx, sub.TimelineKeys)
	if err != nil {
		return err
	}
	var shared []int64
	gone := map[int64]bool{}
	for _, k := range ki.other {
		seqs, err := s.Store.TimelineSeqs(ctx, []int64{k})
		if err != nil {
			return err
		}
		var mine []int64
		for _, q := range seqs {
			if _, ok := slices.BinarySearch(fseqs, q); ok {
				mine = append(mine, q)
			}
		}
		if len(mine) == len(seqs) {
			continue // every event under it is the subject's: its key goes
		}
		shared = append(shared, k)
		for _, q := range seqs {
			gone[q] = true
		}
		sub.ForeignSeqs = appendNewSeqs(sub.ForeignSeqs, mine...)
	}
	if len(shared) == 0 {
		return nil
	}
	for _, k := range shared {
		if b, ok := ki.blind[k]; ok {
			sub.SharedBlinds = append(sub.SharedBlinds, b)
		}
	}
	sub.KeyIDs = slices.DeleteFunc(sub.KeyIDs, func(k int64) bool { return slices.Contains(shared, k) })
	sub.Seqs = slices.DeleteFunc(sub.Seqs, func(q int64) bool { return gone[q] })
	sub.KeyBlinds = sub.KeyBlinds[:0]
	for _, k := range sub.KeyIDs {
		if b, ok := ki.blind[k]; ok {
			sub.KeyBlinds = append(sub.KeyBlinds, b)
		}
	}
	return nil
}

func appendNewSeqs(dst []int64, more ...int64) []int64 {
	if len(more) == 0 {
		return dst
	}
	have := make(map[int64]bool, len(dst))
	for _, q := range dst {
		have[q] = true
	}
	for _, q := range more {
		if !have[q] {
			have[q] = true
			dst = append(dst, q)
		}
	}
	return dst
}
