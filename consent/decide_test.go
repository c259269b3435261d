package consent

import (
	"fmt"
	"testing"

	"github.com/trustloop/trustloop"
)

func compiledDefault(t testing.TB) *Compiled {
	t.Helper()
	c := DefaultCatalog()
	if err := Validate(c, nil, nil); err != nil {
		t.Fatal(err)
	}
	k, err := Compile(c)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func setOf(k *Compiled, ids ...string) Set {
	var s Set
	for _, id := range ids {
		i, ok := k.Index(id)
		if !ok {
			panic(id)
		}
		s |= 1 << i
	}
	return s
}

// tcfAll has consent for every TCF purpose 1–11.
const tcfAll = 1<<11 - 1

func tcfOf(ns ...int) uint32 {
	var v uint32
	for _, n := range ns {
		v |= 1 << (n - 1)
	}
	return v
}

// TestDecideTable spells out the cases a reader should be able to check by eye.
func TestDecideTable(t *testing.T) {
	k := compiledDefault(t)
	const (
		E = trustloop.PurposeEssential
		A = trustloop.PurposeAnalytics
		P = trustloop.PurposePersonalization
		M = trustloop.PurposeMarketing
		S = trustloop.PurposeSharing
	)
	in, out := optIn, optOut
	tests := []struct {
		name string
		st   Stored
		sig  Signals
		want []string
	}{
		{"opt-in, nothing known: essential only", Stored{}, Signals{Regime: in}, []string{E}},
		{"opt-out, nothing known: all", Stored{}, Signals{Regime: out}, []string{E, A, P, M, S}},
		{"opt-in, analytics given", Stored{Given: setOf(k, A)}, Signals{Regime: in}, []string{E, A}},
		{"opt-out, marketing refused", Stored{Refused: setOf(k, M)}, Signals{Regime: out}, []string{E, A, P, S}},
		{"opt-out, analytics withdrawn", Stored{Withdrawn: setOf(k, A)}, Signals{Regime: out}, []string{E, P, M, S}},
		{"opt-in, analytics given but expired", Stored{Expired: setOf(k, A)}, Signals{Regime: in}, []string{E}},
		{"opt-out, expired counts as no", Stored{Expired: setOf(k, P)}, Signals{Regime: out}, []string{E, A, M, S}},
		{"event context narrows a stored yes", Stored{Given: setOf(k, A, P)},
			Signals{Regime: in, PrefsSet: setOf(k, A), PrefsTrue: 0}, []string{E, P}},
		{"event context cannot grant under opt-in", Stored{},
			Signals{Regime: in, PrefsSet: setOf(k, A, M), PrefsTrue: setOf(k, A, M)}, []string{E}},
		{"event context cannot switch off essential", Stored{},
			Signals{Regime: in, PrefsSet: setOf(k, E), PrefsTrue: 0}, []string{E}},
		{"GPC opts out of marketing and sharing", Stored{}, Signals{Regime: out, GPC: true}, []string{E, A, P}},
		{"GPC beats a stored yes", Stored{Given: setOf(k, M, S)}, Signals{Regime: in, GPC: true}, []string{E}},
		{"malformed TC string: no consent", Stored{Given: setOf(k, A, P, M, S)},
			Signals{Regime: in, TCF: TCF{Present: true, Malformed: true}}, []string{E}},
		{"TC string with everything: mapped purposes stay", Stored{Given: setOf(k, A, P, M)},
			Signals{Regime: in, TCF: TCF{Present: true, Consented: tcfAll}}, []string{E, A, P, M}},
		{"TC string without purpose 1: mapped purposes go", Stored{Given: setOf(k, A, P, M, S)},
			Signals{Regime: in, TCF: TCF{Present: true, Consented: tcfAll &^ tcfOf(1)}}, []string{E, S}},
		{"TC string 1,8,9: analytics only", Stored{},
			Signals{Regime: out, TCF: TCF{Present: true, Consented: tcfOf(1, 8, 9)}}, []string{E, A, S}},
		{"TC string 1,5,6: personalization only", Stored{},
			Signals{Regime: out, TCF: TCF{Present: true, Consented: tcfOf(1, 5, 6)}}, []string{E, P, S}},
		{"TC string 1,3,4 without 7: no marketing", Stored{},
			Signals{Regime: out, TCF: TCF{Present: true, Consented: tcfOf(1, 3, 4)}}, []string{E, S}},
		{"a TC string never grants sharing under opt-in", Stored{},
			Signals{Regime: in, TCF: TCF{Present: true, Consented: tcfAll}}, []string{E}},
		{"everything at once", Stored{Given: setOf(k, A, P, M, S)},
			Signals{Regime: in, PrefsSet: setOf(k, P), GPC: true, TCF: TCF{Present: true, Consented: tcfOf(1, 8, 9, 5, 6)}}, []string{E, A}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := k.Names(k.Decide(tt.st, tt.sig))
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("Decide = %v, want %v", got, tt.want)
			}
			for i := range k.Len() {
				if allowed, why := k.Decide(tt.st, tt.sig).Has(i), k.Explain(i, tt.st, tt.sig); allowed != (why == "") {
					t.Fatalf("%s: allowed %v but Explain says %q", k.ID(i), allowed, why)
				}
			}
		})
	}
}

// oracle is the rule of T1 written per purpose, in words, independently of the
// bit operations of Decide.
func oracle(p Purpose, stored string, pref string, gpc bool, tcf string, regime string) bool {
	if p.LegalBasis == BasisContract {
		return true
	}
	switch stored {
	case trustloop.ConsentRefused, trustloop.ConsentWithdrawn, trustloop.ConsentExpired:
		return false
	case "":
		if !p.DefaultAllowed[regime] {
			return false
		}
	}
	if pref == "false" {
		return false
	}
	switch tcf {
	case "malformed":
		return false
	case "all":
	case "none":
		if len(p.TCFPurposes) > 0 {
			return false
		}
	case "no-purpose-1":
		if len(p.TCFPurposes) > 0 {
			return false
		}
	case "analytics-only":
		if len(p.TCFPurposes) > 0 && p.ID != trustloop.PurposeAnalytics {
			return false
		}
	}
	if gpc && p.GPCOptOut {
		return false
	}
	return true
}

// TestDecideExhaustive checks every combination of stored consent, event
// context, GPC, TC string and regime, for every default purpose, against the
// oracle.
func TestDecideExhaustive(t *testing.T) {
	k := compiledDefault(t)
	storedStates := []string{"", trustloop.ConsentGiven, trustloop.ConsentRefused, trustloop.ConsentWithdrawn, trustloop.ConsentExpired}
	prefs := []string{"absent", "true", "false"}
	tcfs := map[string]TCF{
		"absent":         {},
		"all":            {Present: true, Consented: tcfAll},
		"none":           {Present: true},
		"no-purpose-1":   {Present: true, Consented: tcfAll &^ tcfOf(1)},
		"analytics-only": {Present: true, Consented: tcfOf(1, 8, 9)},
		"malformed":      {Present: true, Malformed: true},
	}
	n := 0
	for i, p := range k.Catalog.Purposes {
		bit := Set(1) << i
		for _, s := range storedStates {
			var st Stored
			switch s {
			case trustloop.ConsentGiven:
				st.Given = bit
			case trustloop.ConsentRefused:
				st.Refused = bit
			case trustloop.ConsentWithdrawn:
				st.Withdrawn = bit
			case trustloop.ConsentExpired:
				st.Expired = bit
			}
			for _, pref := range prefs {
				for _, gpc := range []bool{false, true} {
					for tname, tc := range tcfs {
						for _, regime := range []string{RegimeOptIn, RegimeOptOut} {
							sig := Signals{Regime: k.Regime(""), GPC: gpc, TCF: tc}
							if regime == RegimeOptOut {
								sig.Regime = optOut
							} else {
								sig.Regime = optIn
							}
							if pref != "absent" {
								sig.PrefsSet = bit
								if pref == "true" {
									sig.PrefsTrue = bit
								}
							}
							want := oracle(p, s, pref, gpc, tname, regime)
							got := k.Decide(st, sig).Has(i)
							if got != want {
								t.Errorf("%s stored=%q pref=%s gpc=%v tcf=%s regime=%s: got %v, want %v",
									p.ID, s, pref, gpc, tname, regime, got, want)
							}
							if why := k.Explain(i, st, sig); (why == "") != got {
								t.Errorf("%s stored=%q pref=%s gpc=%v tcf=%s regime=%s: Explain %q disagrees with %v",
									p.ID, s, pref, gpc, tname, regime, why, got)
							}
							n++
						}
					}
				}
			}
		}
	}
	if n != 5*5*3*2*6*2 {
		t.Fatalf("checked %d combinations", n)
	}
}

func TestPreferencesAliases(t *testing.T) {
	k := compiledDefault(t)
	set, yes := k.Preferences(map[string]bool{"Analytics": true, "advertising": false, "C0003": true, "Unknown Vendor Thing": true})
	if got := k.Names(set); fmt.Sprint(got) != "[analytics personalization marketing]" {
		t.Fatalf("set = %v", got)
	}
	if got := k.Names(yes); fmt.Sprint(got) != "[analytics personalization]" {
		t.Fatalf("yes = %v", got)
	}
	// Two names of one purpose that disagree: refused.
	set, yes = k.Preferences(map[string]bool{"Marketing": true, "Advertising": false})
	if set != setOf(k, trustloop.PurposeMarketing) || yes != 0 {
		t.Fatalf("conflicting aliases: set %b yes %b", set, yes)
	}
}

func TestServesByCategory(t *testing.T) {
	k := compiledDefault(t)
	all := k.All()
	cases := []struct {
		m    trustloop.Message
		want string
	}{
		{trustloop.Message{Type: trustloop.EventTrack, Event: "Product Viewed"}, "[analytics personalization marketing sharing]"},
		{trustloop.Message{Type: trustloop.EventTrack, Event: "Order Completed"}, "[essential analytics personalization marketing sharing]"},
		{trustloop.Message{Type: trustloop.EventIdentify}, "[essential marketing sharing]"},
		{trustloop.Message{Type: trustloop.EventPage}, "[analytics personalization marketing sharing]"},
		{trustloop.Message{Type: trustloop.EventTrack, Event: ConsentPreferenceUpdated}, "[essential personalization]"},
		{trustloop.Message{Type: trustloop.EventAlias}, "[essential analytics personalization marketing sharing]"},
	}
	for _, c := range cases {
		if got := fmt.Sprint(k.Names(k.Serves(all, EventCategories(&c.m)))); got != c.want {
			t.Errorf("%v %q: serves %s, want %s", c.m.Type, c.m.Event, got, c.want)
		}
	}
	// Under opt-in with nothing given, a product view serves nothing: not stored.
	if s := k.Serves(k.Decide(Stored{}, Signals{Regime: optIn}), EventCategories(&trustloop.Message{Type: trustloop.EventTrack, Event: "Product Viewed"})); s != 0 {
		t.Fatalf("a product view under opt-in without consent serves %v", k.Names(s))
	}
}

func BenchmarkDecide(b *testing.B) {
	k := compiledDefault(b)
	st := Stored{Given: setOf(k, trustloop.PurposeAnalytics, trustloop.PurposePersonalization)}
	prefs := map[string]bool{"Analytics": true, "Advertising": false, "Functional": true}
	cats := EventCategories(&trustloop.Message{Type: trustloop.EventTrack, Event: "Product Viewed"})
	b.ReportAllocs()
	var sink Set
	for b.Loop() {
		set, yes := k.Preferences(prefs)
		sig := Signals{Regime: k.Regime(""), PrefsSet: set, PrefsTrue: yes, GPC: true, TCF: TCF{Present: true, Consented: tcfAll}}
		sink |= k.Serves(k.Decide(st, sig), cats)
	}
	_ = sink
}

func TestValidReceiptID(t *testing.T) {
	for range 100 {
		if id := NewReceiptID(); !ValidReceiptID(id) {
			t.Fatalf("%s is not valid", id)
		}
	}
	for _, id := range []string{"", "rcpt_", "rcpt_x", "rcpt_ABCDEFGHIJKLMNOPQRSTUVWXYZ", "rcpt_abcdefghijklmnopqrstuvw1", "rcpt_abcdefghijklmnopqrstuvwx\x00", "prq_abcdefghijklmnopqrstuvwxyz"} {
		if ValidReceiptID(id) {
			t.Errorf("%q is valid", id)
		}
	}
}
