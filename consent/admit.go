package consent

import (
	"context"
	"encoding/hex"

	"github.com/trustloop/trustloop"
)

// Admission is the decision for one collected message.
type Admission struct {
	// Purposes are the purposes allowed when the event was collected, set only
	// if one of them may use the event's category; empty means it is not
	// stored as personal data (T2).
	Purposes []string
	// Recorded counts consent records the message caused (a preference update,
	// a GPC opt-out).
	Recorded int
}

// Admit decides at collection which purposes are allowed for a message (T1, T2):
// stored consent of its subjects (userBlind, anonBlind: the blind indexes of its
// user id and anonymous id, nil when absent), else the regime's default,
// narrowed by its own consent context, Sec-GPC and TC string. Before deciding it
// stores what the message says about consent: a "Segment Consent Preference
// Updated" event's preferences (method banner, or tcf for its TC string's
// answers) and a GPC opt-out (method gpc), for every subject it names, so the
// message itself and all that follow are decided under them.
func (s *Service) Admit(ctx context.Context, src *trustloop.Source, m *trustloop.Message, msgHash, userBlind, anonBlind []byte) (Admission, error) {
	var a Admission
	ws := src.WorkspaceID
	k, err := s.Catalog(ctx, ws)
	if err != nil {
		return a, err
	}
	st, latest, err := s.Stored(ctx, k, ws, userBlind, anonBlind)
	if err != nil {
		return a, err
	}
	jurisdiction := m.Consent.Jurisdiction
	if jurisdiction == "" {
		jurisdiction = JurisdictionOf(latest)
	}
	sig := s.Signals(k, &m.Consent, jurisdiction)
	// What a record needs is made only when one is made (rarely): this is the
	// collector's hot path.
	subjects := func() [][]byte {
		out := make([][]byte, 0, 2)
		for _, b := range [][]byte{userBlind, anonBlind} {
			if b != nil {
				out = append(out, b)
			}
		}
		return out
	}
	evidence := func() string { return "message:" + hex.EncodeToString(msgHash) }
	recorded := false
	// A message without a subject (its ids are placeholders) is decided by
	// its own signals alone: there is no one to record them for.
	named := userBlind != nil || anonBlind != nil
	if named && m.Type == trustloop.EventTrack && m.Event == ConsentPreferenceUpdated {
		changes := s.preferenceChanges(k, sig, latest)
		for method, cs := range changes {
			if len(cs) == 0 {
				continue
			}
			if _, recs, err := s.Record(ctx, ws, subjects(), cs, Meta{Method: method, SourceID: src.ID, Evidence: evidence(), Jurisdiction: m.Consent.Jurisdiction}); err != nil {
				return a, err
			} else {
				a.Recorded += len(recs)
				recorded = true
			}
		}
	}
	if named && m.Consent.GPC {
		var cs []Change
		for i := range k.Len() {
			bit := Set(1) << i
			if k.gpc&bit != 0 && (st.Refused|st.Withdrawn)&bit == 0 {
				cs = append(cs, Change{Purpose: k.ID(i), State: newState(false, latest[k.ID(i)].State)})
			}
		}
		if len(cs) > 0 {
			_, recs, err := s.Record(ctx, ws, subjects(), cs, Meta{Method: trustloop.MethodGPC, SourceID: src.ID, Evidence: evidence(), Jurisdiction: m.Consent.Jurisdiction})
			if err != nil {
				return a, err
			}
			a.Recorded += len(recs)
			recorded = true
		}
	}
	if recorded {
		if st, _, err = s.Stored(ctx, k, ws, userBlind, anonBlind); err != nil {
			return a, err
		}
	}
	// Stored only if some allowed purpose may use the event's category (T2); it
	// is sealed with every purpose allowed at collection, the consent it was
	// collected under: a read for P uses it only if P was allowed then and may
	// use its category.
	if allowed := k.Decide(st, sig); k.Serves(allowed, EventCategories(m)) != 0 {
		a.Purposes = k.Names(allowed)
	}
	return a, nil
}

// authenticated are the methods whose choices only the customer (or the
// business on their verified behalf) can make.
var authenticated = map[string]bool{trustloop.MethodPreferenceCenter: true, trustloop.MethodAPI: true, trustloop.MethodImport: true}

// preferenceChanges returns, by method, what a preference update changes: the
// categoryPreferences (banner) and a TC string's answers for TCF-mapped
// purposes (tcf). Answers equal to the stored state are not recorded again.
func (s *Service) preferenceChanges(k *Compiled, sig Signals, latest map[string]trustloop.ConsentRecord) map[string][]Change {
	now := s.Now()
	out := map[string][]Change{}
	seen := Set(0)
	add := func(method string, i int, yes bool) {
		id := k.ID(i)
		if k.contract.Has(i) || seen.Has(i) {
			return
		}
		seen |= 1 << i
		before := latest[id].State
		if r := latest[id]; before == trustloop.ConsentGiven && !r.ExpiresAt.IsZero() && !now.Before(r.ExpiresAt) {
			before = trustloop.ConsentExpired // a yes renews it
		}
		st := newState(yes, before)
		if st == before || (!yes && before == trustloop.ConsentRefused) {
			return
		}
		// The collector's write key is public (it ships in the site's code):
		// anyone can send an event naming any user id. So an event's yes never
		// overturns a no given through an authenticated channel (the preference
		// center, the API, an import); that no changes only there. An event's no
		// is always taken (it can only narrow).
		if yes && before != "" && before != trustloop.ConsentGiven && before != trustloop.ConsentExpired && authenticated[latest[id].Method] {
			return
		}
		out[method] = append(out[method], Change{Purpose: id, State: st})
	}
	for m := sig.PrefsSet; m != 0; m &= m - 1 {
		i := trailing(m)
		add(trustloop.MethodBanner, i, sig.PrefsTrue.Has(i))
	}
	if sig.TCF.Present {
		for m := k.tcfMapped; m != 0; m &= m - 1 {
			i := trailing(m)
			add(trustloop.MethodTCF, i, !sig.TCF.Malformed && k.tcfNeed[i]&^sig.TCF.Consented == 0)
		}
	}
	return out
}
