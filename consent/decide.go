package consent

import (
	"fmt"
	"math/bits"
	"strings"
	"sync"

	"github.com/trustloop/trustloop"
)

// Set is a set of purposes of one compiled catalog: bit i is the catalog's
// purpose i. Decisions are word operations, so one costs nanoseconds.
type Set uint32

// Has reports whether purpose index i is in s.
func (s Set) Has(i int) bool { return s&(1<<i) != 0 }

// Cats is a set of data categories, one bit per trustloop.Categories entry.
type Cats uint8

// CategoryBit returns the bit of a data category (0 for an unknown one).
func CategoryBit(name string) Cats {
	for i, c := range trustloop.Categories {
		if c == name {
			return 1 << i
		}
	}
	return 0
}

// Names lists the categories of c in trustloop.Categories order.
func (c Cats) Names() []string {
	var out []string
	for i, n := range trustloop.Categories {
		if c&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return out
}

// Stored is a subject's stored consent, folded from its records: each purpose is
// in at most one of the sets; a purpose in none has never been chosen.
type Stored struct {
	Given, Refused, Withdrawn, Expired Set
}

// Chosen is every purpose with a stored choice.
func (s Stored) Chosen() Set { return s.Given | s.Refused | s.Withdrawn | s.Expired }

// TCF is what a TC string said, reduced to what the decision needs.
type TCF struct {
	// Present: the event carried a TC string.
	Present bool
	// Malformed: it could not be decoded; it then counts as no consent.
	Malformed bool
	// Consented has bit n-1 set for every TCF purpose n with consent (the
	// publisher segment's when present, else the core segment's).
	Consented uint32
}

// Signals are the consent facts of one event, beside the stored consent.
type Signals struct {
	// Regime is the regime that applies (the jurisdiction's, else the
	// workspace's); use Compiled.Regime.
	Regime int
	// PrefsSet are the purposes context.consent.categoryPreferences named;
	// PrefsTrue those it set to true.
	PrefsSet, PrefsTrue Set
	// GPC: the request carried exactly Sec-GPC: 1.
	GPC bool
	TCF TCF
}

// Regime indexes.
const (
	optIn  = 0
	optOut = 1
)

// Compiled is a catalog prepared for decisions. It is immutable and safe for
// concurrent use.
type Compiled struct {
	Catalog       *Catalog
	ids           []string
	index         map[string]int
	alias         map[string]int
	exact         map[string]int // aliases as written: no lowercasing on the hot path
	contract      Set
	defaults      [2]Set
	gpc           Set
	tcfMapped     Set
	tcfNeed       []uint32
	categories    []Cats
	regime        int
	jurisdictions map[string]int
	names         sync.Map // Set → []string, shared read-only (no allocation per event)
}

// Compile prepares a valid catalog (see Validate).
func Compile(c *Catalog) (*Compiled, error) {
	if len(c.Purposes) > MaxPurposes {
		return nil, fmt.Errorf("consent: %d purposes, at most %d", len(c.Purposes), MaxPurposes)
	}
	k := &Compiled{Catalog: c, index: map[string]int{}, alias: map[string]int{}, exact: map[string]int{}, jurisdictions: map[string]int{}}
	if c.Regime == RegimeOptOut {
		k.regime = optOut
	}
	for j, r := range c.Jurisdictions {
		k.jurisdictions[strings.ToLower(j)] = optIn
		if r == RegimeOptOut {
			k.jurisdictions[strings.ToLower(j)] = optOut
		}
	}
	for i, p := range c.Purposes {
		bit := Set(1) << i
		k.ids = append(k.ids, p.ID)
		k.index[p.ID] = i
		k.alias[strings.ToLower(p.ID)] = i
		k.exact[p.ID] = i
		for _, a := range p.Aliases {
			k.alias[strings.ToLower(strings.TrimSpace(a))] = i
			k.exact[a] = i
		}
		if p.LegalBasis == BasisContract {
			k.contract |= bit
		}
		if p.DefaultAllowed[RegimeOptIn] {
			k.defaults[optIn] |= bit
		}
		if p.DefaultAllowed[RegimeOptOut] {
			k.defaults[optOut] |= bit
		}
		if p.GPCOptOut {
			k.gpc |= bit
		}
		var need uint32
		for _, t := range p.TCFPurposes {
			need |= 1 << (t - 1)
		}
		k.tcfNeed = append(k.tcfNeed, need)
		if need != 0 {
			k.tcfMapped |= bit
		}
		var cats Cats
		for _, name := range p.Categories {
			cats |= CategoryBit(name)
		}
		k.categories = append(k.categories, cats)
	}
	return k, nil
}

// Len is the number of purposes.
func (k *Compiled) Len() int { return len(k.ids) }

// ID returns the id of purpose index i.
func (k *Compiled) ID(i int) string { return k.ids[i] }

// Index returns the index of a purpose id; ok is false for an unknown id.
func (k *Compiled) Index(id string) (int, bool) {
	i, ok := k.index[id]
	return i, ok
}

// Alias maps a CMP category name (or a purpose id) to a purpose index.
func (k *Compiled) Alias(name string) (int, bool) {
	if i, ok := k.exact[name]; ok {
		return i, true
	}
	i, ok := k.alias[strings.ToLower(strings.TrimSpace(name))]
	return i, ok
}

// All is the set of every purpose.
func (k *Compiled) All() Set { return Set(1)<<len(k.ids) - 1 }

// Contract is the set of purposes on the contract basis (always allowed).
func (k *Compiled) Contract() Set { return k.contract }

// Categories returns the data categories purpose i may use.
func (k *Compiled) Categories(i int) Cats { return k.categories[i] }

// Regime returns the regime index for a jurisdiction ("" or unknown: the
// workspace's).
func (k *Compiled) Regime(jurisdiction string) int {
	if jurisdiction != "" {
		if r, ok := k.jurisdictions[strings.ToLower(jurisdiction)]; ok {
			return r
		}
	}
	return k.regime
}

// RegimeName names a regime index.
func RegimeName(r int) string {
	if r == optOut {
		return RegimeOptOut
	}
	return RegimeOptIn
}

// Preferences maps categoryPreferences to purpose sets. Names the catalog does
// not know are ignored (they are the CMP's, not ours); a purpose named by two
// aliases with different answers counts as refused (fail closed).
func (k *Compiled) Preferences(prefs map[string]bool) (set, yes Set) {
	var no Set
	for name, v := range prefs {
		i, ok := k.Alias(name)
		if !ok {
			continue
		}
		set |= 1 << i
		if v {
			yes |= 1 << i
		} else {
			no |= 1 << i
		}
	}
	return set, yes &^ no
}

// Decide returns the purposes allowed for one event or read: T1, failing
// closed. A purpose on the contract basis is always allowed. Any other purpose
// needs all of:
//   - a stored choice of given (not refused, withdrawn or expired), or, with no
//     stored choice, the regime's default (opt-in: no);
//   - no false for it in the event's categoryPreferences;
//   - if the event carried a TC string: the string decodes, and TCF purpose 1
//     and every TCF purpose mapped to it have consent (a purpose without a TCF
//     mapping is not restricted by the string, and never granted by it);
//   - no Sec-GPC: 1 if the purpose is one GPC opts out of.
func (k *Compiled) Decide(st Stored, sig Signals) Set {
	base := st.Given | (k.defaults[sig.Regime&1] &^ st.Chosen())
	allowed := base &^ (sig.PrefsSet &^ sig.PrefsTrue)
	if sig.TCF.Present {
		if sig.TCF.Malformed {
			allowed = 0
		} else {
			for m := allowed & k.tcfMapped; m != 0; m &= m - 1 {
				i := bits.TrailingZeros32(uint32(m))
				if k.tcfNeed[i]&^sig.TCF.Consented != 0 {
					allowed &^= 1 << i
				}
			}
		}
	}
	if sig.GPC {
		allowed &^= k.gpc
	}
	return (allowed | k.contract) & k.All()
}

// Reasons a purpose is not allowed, as Explain reports them.
const (
	ReasonNotGiven     = "no_consent"
	ReasonRefused      = "refused"
	ReasonWithdrawn    = "withdrawn"
	ReasonExpired      = "expired"
	ReasonContext      = "event_consent_context"
	ReasonTCF          = "tcf"
	ReasonTCFMalformed = "tcf_malformed"
	ReasonGPC          = "gpc"
)

// Explain returns why purpose i is not allowed ("" if it is), with the same
// rules as Decide, first failing rule first.
func (k *Compiled) Explain(i int, st Stored, sig Signals) string {
	bit := Set(1) << i
	switch {
	case k.contract&bit != 0:
		return ""
	case st.Refused&bit != 0:
		return ReasonRefused
	case st.Withdrawn&bit != 0:
		return ReasonWithdrawn
	case st.Expired&bit != 0:
		return ReasonExpired
	case st.Given&bit == 0 && k.defaults[sig.Regime&1]&bit == 0:
		return ReasonNotGiven
	case sig.PrefsSet&^sig.PrefsTrue&bit != 0:
		return ReasonContext
	case sig.TCF.Present && sig.TCF.Malformed:
		return ReasonTCFMalformed
	case sig.TCF.Present && k.tcfMapped&bit != 0 && k.tcfNeed[i]&^sig.TCF.Consented != 0:
		return ReasonTCF
	case sig.GPC && k.gpc&bit != 0:
		return ReasonGPC
	}
	return ""
}

// Serves returns the purposes of allowed that may use data of categories cats:
// the purposes an event of those categories may serve. An event that may serve
// none is not stored as personal data (T2).
func (k *Compiled) Serves(allowed Set, cats Cats) Set {
	var out Set
	for m := allowed; m != 0; m &= m - 1 {
		i := bits.TrailingZeros32(uint32(m))
		if k.categories[i]&cats != 0 {
			out |= 1 << i
		}
	}
	return out
}

func trailing(s Set) int { return bits.TrailingZeros32(uint32(s)) }

// Names lists the purpose ids of s in catalog order. The slice is shared:
// callers must not change it.
func (k *Compiled) Names(s Set) []string {
	if v, ok := k.names.Load(s); ok {
		return v.([]string)
	}
	out := k.names0(s)
	k.names.Store(s, out)
	return out
}

func (k *Compiled) names0(s Set) []string {
	out := make([]string, 0, bits.OnesCount32(uint32(s)))
	for m := s & k.All(); m != 0; m &= m - 1 {
		out = append(out, k.ids[bits.TrailingZeros32(uint32(m))])
	}
	return out
}

// ConsentPreferenceUpdated is the track event of Segment's consent management
// that reports a changed choice; it updates the stored consent.
const ConsentPreferenceUpdated = "Segment Consent Preference Updated"

// orderEvents are the Segment e-commerce spec's events about money changing
// hands: transactions, which the contract may use, not mere behaviour.
var orderEvents = map[string]bool{"Order Completed": true, "Order Updated": true, "Order Refunded": true,
	"Order Cancelled": true, "Payment Info Entered": true}

// EventCategories returns the category of data an event carries (its content;
// every event also names its subject, which is not counted: identity alone
// serves no purpose).
func EventCategories(m *trustloop.Message) Cats {
	switch m.Type {
	case trustloop.EventIdentify:
		return CategoryBit(trustloop.CategoryContact)
	case trustloop.EventAlias, trustloop.EventGroup:
		return CategoryBit(trustloop.CategoryIdentity)
	case trustloop.EventTrack:
		if m.Event == ConsentPreferenceUpdated {
			return CategoryBit(trustloop.CategoryPreferences)
		}
		if orderEvents[m.Event] {
			return CategoryBit(trustloop.CategoryTransactions)
		}
	}
	return CategoryBit(trustloop.CategoryBehavior)
}

// GPC returns the purposes a Global Privacy Control signal opts out of.
func (k *Compiled) GPC() Set { return k.gpc }
