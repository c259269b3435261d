package identity

import (
	"cmp"
	"slices"

	"github.com/trustloop/trustloop"
)

// View is the part of the identity graph Resolve reads. It must be a partition:
// an identifier belongs to at most one profile, and Counts(Owner(id)) counts it.
// Identifiers are compared in their normalized form.
type View interface {
	// Owner returns the profile an identifier belongs to, 0 when it is unknown.
	Owner(id trustloop.Identifier) (profile int64)
	// Counts returns how many identifiers of each type a profile has (a type
	// at most once; the order does not matter). The limits need no more than
	// that, so a view need not read a profile's identifiers back to answer.
	// Resolve only reads the result.
	Counts(profile int64) []TypeCount
	// Separated reports whether a split said these two profiles must not be
	// merged again.
	Separated(a, b int64) bool
}

// Decision is what one event does to the identity graph. Applying it means: create
// a profile if New, move the identifiers of every Merge profile to Profile, then add
// Attach to Profile.
type Decision struct {
	// Profile is the profile the event belongs to. With New it is 0 (the caller
	// creates the profile); 0 without New means no identifier of the event can be
	// used and the event belongs to no profile.
	Profile int64
	New     bool
	// Attach are identifiers no profile has yet, to add to Profile.
	Attach []trustloop.Identifier
	// Merge are other profiles to merge into Profile, ascending: their identifiers
	// move to Profile and they cease to exist.
	Merge []int64
	// Linking are the event's identifiers that already belonged to the merged
	// profiles, Profile included: the evidence for the merge record. Empty without
	// a merge.
	Linking []trustloop.Identifier
	// Skipped are the event's identifiers that were not used, in the order they
	// were dropped.
	Skipped []Skip
}

// TypeCount is how many identifiers of one type a profile has.
type TypeCount struct {
	Type string
	N    int
}

// candidate is one usable identifier of an event.
type candidate struct {
	id    trustloop.Identifier
	rank  int
	owner int64
}

// Resolve decides what an event with these identifiers does to the graph v. It is
// pure: it reads v and returns a Decision, which the caller applies.
//
// The rules:
//
//  1. Every identifier is normalized again (so callers cannot bypass Normalize);
//     empty, malformed, too long and blocked ones are skipped and never match.
//     A PreviousID is matched as a user_id when v knows that value as a user_id,
//     else as an anonymous_id.
//  2. The event's identifiers are taken in priority order (Config.Priority; within
//     a type, in the order given) and each is kept only if, together with the ones
//     kept before it, it does not
//     - make a type exceed its limit on the resulting profile: the distinct
//     identifiers of the type across the profiles it joins plus the new ones;
//     - join two profiles that are Separated.
//     Otherwise it is skipped (ReasonLimit, ReasonSeparated). This is the rule "drop
//     the lowest-priority identifier that contributes to the conflict and retry
//     with the rest" made exact: a skipped identifier conflicts with higher-priority
//     ones only, so the highest-priority identifiers always decide, and the kept
//     ones always fit together: no event ends with several unmergeable profiles.
//     A limit only refuses growth: a profile already over a lowered limit still
//     takes its own events, and may merge with profiles that add nothing of that
//     type.
//  3. The kept identifiers' profiles merge into the lowest profile id (the oldest:
//     profile ids must grow with creation time), and the kept identifiers no
//     profile has are attached to it; with no profile, they make a new one.
//
// An identifier that already has a profile is never moved by Attach; only Merge
// moves identifiers. Example, a family tablet: anonymous id A belongs to P1 with
// user id u1; an event {user_id u2, anonymous_id A} would give P1 two user ids, so A
// is skipped and u2 makes a new profile. A stays with P1.
func (r *Rules) Resolve(v View, ids []trustloop.Identifier) Decision {
	var d Decision
	cands := make([]candidate, 0, len(ids))
next:
	for _, id := range ids {
		value, reason := r.normalize(id.Type, id.Value)
		if reason != "" {
			d.Skipped = append(d.Skipped, Skip{Type: id.Type, Reason: reason})
			continue
		}
		typ := id.Type
		if typ == PreviousID {
			typ = trustloop.IDAnonymousID
			if v.Owner(trustloop.Identifier{Type: trustloop.IDUserID, Value: value}) != 0 {
				typ = trustloop.IDUserID
			}
		}
		c := candidate{id: trustloop.Identifier{Type: typ, Value: value}, rank: r.index[typ]}
		for _, have := range cands {
			if have.id == c.id {
				continue next
			}
		}
		c.owner = v.Owner(c.id)
		cands = append(cands, c)
	}
	slices.SortStableFunc(cands, func(a, b candidate) int { return cmp.Compare(a.rank, b.rank) })

	// total[t] counts identifiers of type t on the joined profiles and the new
	// ones; most[t] is the most any one joined profile has (a limit refuses growth
	// beyond both); have[t] is the profile being considered.
	nt := len(r.types)
	counts := make([]int, 3*nt)
	total, most, have := counts[:nt], counts[nt:2*nt], counts[2*nt:]
	var profiles []int64
	kept := cands[:0] // filtered in place: kept never gets ahead of the loop
	for _, c := range cands {
		t := c.rank
		if c.owner == 0 {
			if n := total[t] + 1; n > r.types[t].limit && n > most[t] {
				d.Skipped = append(d.Skipped, Skip{Type: c.id.Type, Reason: ReasonLimit})
				continue
			}
			total[t]++
			kept = append(kept, c)
			continue
		}
		if slices.Contains(profiles, c.owner) {
			kept = append(kept, c)
			continue
		}
		if slices.ContainsFunc(profiles, func(p int64) bool { return v.Separated(p, c.owner) }) {
			d.Skipped = append(d.Skipped, Skip{Type: c.id.Type, Reason: ReasonSeparated})
			continue
		}
		clear(have)
		for _, tc := range v.Counts(c.owner) {
			if i, ok := r.index[tc.Type]; ok {
				have[i] += tc.N
			}
		}
		over := false
		for i := range nt {
			if n := total[i] + have[i]; have[i] > 0 && n > r.types[i].limit && n > max(most[i], have[i]) {
				over = true
				break
			}
		}
		if over {
			d.Skipped = append(d.Skipped, Skip{Type: c.id.Type, Reason: ReasonLimit})
			continue
		}
		for i := range nt {
			total[i] += have[i]
			most[i] = max(most[i], have[i])
		}
		profiles = append(profiles, c.owner)
		kept = append(kept, c)
	}

	if len(kept) == 0 {
		return d
	}
	if len(profiles) == 0 {
		d.New = true
	} else {
		d.Profile = slices.Min(profiles)
		for _, p := range profiles {
			if p != d.Profile {
				d.Merge = append(d.Merge, p)
			}
		}
		slices.Sort(d.Merge)
	}
	for _, c := range kept {
		switch {
		case c.owner == 0:
			d.Attach = append(d.Attach, c.id)
		case len(d.Merge) > 0:
			d.Linking = append(d.Linking, c.id)
		}
	}
	return d
}
