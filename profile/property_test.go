package profile

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
	"pgregory.net/rapid"
)

// The generators draw from small universes on purpose: few keys, names, products
// and instants, so that ties, overwrites, deletions and caps happen all the time.

var (
	genKeys   = []string{"a", "b", "c", "d", "e", "f"}
	genValues = []string{`1`, `2`, `"x"`, `"y"`, `{"n":1}`, `{ "n" : 1 }`, `[1, 2]`, `null`, `null`, `true`}
	genNames  = []string{"A", "B", "C", "D", "Order Completed", "Product Viewed"}
	genAmount = []string{`5`, `"2.50"`, `-1`, `0.0000005`, `"x"`, `null`, `1e13`}
	genIDs    = []string{`"p1"`, `"p2"`, `"p3"`, `"p4"`, `"p5"`, `5`, `""`}
	genCats   = []string{`"c1"`, `"c2"`, `"c3"`, `"c4"`, `1`}
)

func genObject(t *rapid.T, label string, from []string, values []string) json.RawMessage {
	keys := rapid.SliceOfNDistinct(rapid.SampledFrom(from), 0, 4, rapid.ID[string]).Draw(t, label+" keys")
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%q:%s", k, rapid.SampledFrom(values).Draw(t, label+" value"))
	}
	b.WriteByte('}')
	return json.RawMessage(b.String())
}

func genInstant(t *rapid.T, label string, n int) time.Time {
	return at(rapid.IntRange(0, n).Draw(t, label))
}

func genInput(t *rapid.T) Input {
	in := Input{
		Type: rapid.SampledFrom([]trustloop.EventType{trustloop.EventTrack, trustloop.EventTrack, trustloop.EventTrack,
			trustloop.EventIdentify, trustloop.EventIdentify, trustloop.EventGroup, trustloop.EventPage, trustloop.EventAlias}).Draw(t, "type"),
		Timestamp:  genInstant(t, "timestamp", 6),
		ReceivedAt: genInstant(t, "received", 2),
		SourceID:   rapid.Int64Range(1, 3).Draw(t, "source"),
	}
	if rapid.Bool().Draw(t, "has context traits") {
		in.ContextTraits = genObject(t, "context.traits", genKeys, genValues)
	}
	switch in.Type {
	case trustloop.EventTrack:
		in.Event = rapid.SampledFrom(genNames).Draw(t, "event")
		var props []string
		for _, p := range []struct {
			name   string
			values []string
		}{{"revenue", genAmount}, {"total", genAmount}, {"product_id", genIDs}, {"sku", genIDs}, {"category", genCats}} {
			if rapid.Bool().Draw(t, "has "+p.name) {
				props = append(props, fmt.Sprintf("%q:%s", p.name, rapid.SampledFrom(p.values).Draw(t, p.name)))
			}
		}
		in.Properties = json.RawMessage("{" + strings.Join(props, ",") + "}")
	case trustloop.EventIdentify:
		in.Traits = genObject(t, "traits", genKeys, genValues)
	case trustloop.EventGroup:
		in.GroupID = rapid.SampledFrom([]string{"g1", "g2"}).Draw(t, "group")
		in.Traits = genObject(t, "traits", genKeys[:3], genValues)
	}
	// The purposes it was collected for: none known, or a subset (sorted).
	if rapid.Bool().Draw(t, "purposes known") {
		for _, p := range genPurposes {
			if rapid.Bool().Draw(t, "for "+p) {
				in.Purposes = append(in.Purposes, p)
			}
		}
	}
	return in
}

var genPurposes = []string{"analytics", "marketing", "personalization"}

// The totals (what audiences and Computed show) count every event, whatever
// purposes it was collected for.
func TestTotalsAreAllEvents(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		c := genConfig(t)
		ins := rapid.SliceOfN(rapid.Custom(genInput), 0, 30).Draw(t, "events")
		s := applyInputs(c, ins)
		plain := make([]Input, len(ins))
		for i, in := range ins {
			in.Purposes = nil
			plain[i] = in
		}
		want := c.Map(applyInputs(c, plain))["computed"]
		if got := c.Map(s)["computed"]; !reflect.DeepEqual(got, want) {
			t.Fatalf("totals:\n got %v\nwant %v", got, want)
		}
	})
}

// For every purpose, the computed traits a read for it sees are exactly those of
// the events collected for it, whatever else the profile holds (T3).
func TestComputedForIsExact(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		c := genConfig(t)
		ins := rapid.SliceOfN(rapid.Custom(genInput), 0, 30).Draw(t, "events")
		s := applyInputs(c, ins)
		for _, p := range genPurposes {
			var only []Input
			for _, in := range ins {
				if slices.Contains(in.Purposes, p) {
					only = append(only, in)
				}
			}
			want := c.Map(applyInputs(c, only))["computed"]
			if got := c.ComputedFor(s, p); !reflect.DeepEqual(got, want) {
				t.Fatalf("computed for %s:\n got %v\nwant %v", p, got, want)
			}
		}
	})
}

func genConfig(t *rapid.T) Config {
	return Config{
		LastViewed:    rapid.IntRange(1, 4).Draw(t, "last viewed"),
		MaxEventNames: rapid.IntRange(1, 5).Draw(t, "max event names"),
		MaxCategories: rapid.IntRange(1, 3).Draw(t, "max categories"),
	}
}

// forKeyCaps runs a property with the real trait key cap and with one small enough
// to be reached all the time.
func forKeyCaps(t *testing.T, prop func(*rapid.T)) {
	for _, n := range []int{MaxTraitKeys, 4} {
		t.Run(fmt.Sprintf("keycap=%d", n), func(t *testing.T) {
			setKeyCap(t, n)
			rapid.Check(t, prop)
		})
	}
}

func applyInputs(c Config, ins []Input) *State {
	s := &State{}
	for _, in := range ins {
		c.Apply(s, in)
	}
	return s
}

func mustEncode(t *rapid.T, s *State) []byte {
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatalf("MarshalBinary: %v", err)
	}
	return b
}

func TestOrderIndependence(t *testing.T) {
	forKeyCaps(t, func(t *rapid.T) {
		c := genConfig(t)
		ins := rapid.SliceOfN(rapid.Custom(genInput), 1, 40).Draw(t, "events")
		shuffled := rapid.Permutation(ins).Draw(t, "shuffled")
		a, b := mustEncode(t, applyInputs(c, ins)), mustEncode(t, applyInputs(c, shuffled))
		if !bytes.Equal(a, b) {
			t.Fatalf("in order:\n%s\nshuffled:\n%s", a, b)
		}
	})
}

func TestMergeEqualsCombinedApply(t *testing.T) {
	forKeyCaps(t, func(t *rapid.T) {
		c := genConfig(t)
		ins := rapid.SliceOfN(rapid.Custom(genInput), 0, 40).Draw(t, "events")
		// Split the events among three profiles.
		parts := make([][]Input, 3)
		for i, in := range ins {
			p := rapid.IntRange(0, 2).Draw(t, fmt.Sprintf("part of %d", i))
			parts[p] = append(parts[p], in)
		}
		want := mustEncode(t, applyInputs(c, ins))
		a, b, d := applyInputs(c, parts[0]), applyInputs(c, parts[1]), applyInputs(c, parts[2])
		bBefore := mustEncode(t, b)
		c.Merge(a, b)
		if !bytes.Equal(mustEncode(t, b), bBefore) {
			t.Fatal("Merge changed from")
		}
		c.Merge(a, d)
		if got := mustEncode(t, a); !bytes.Equal(got, want) {
			t.Fatalf("merged:\n%s\ncombined:\n%s", got, want)
		}
		// And the other way round.
		a = applyInputs(c, parts[0])
		c.Merge(d, b)
		c.Merge(d, a)
		if got := mustEncode(t, d); !bytes.Equal(got, want) {
			t.Fatalf("merged the other way:\n%s\ncombined:\n%s", got, want)
		}
	})
}

func TestMergeIntoItself(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		c := genConfig(t)
		ins := rapid.SliceOfN(rapid.Custom(genInput), 0, 20).Draw(t, "events")
		s := applyInputs(c, ins)
		c.Merge(s, s)
		want := applyInputs(c, append(slices.Clone(ins), ins...))
		if got, w := mustEncode(t, s), mustEncode(t, want); !bytes.Equal(got, w) {
			t.Fatalf("self-merge:\n%s\ntwice applied:\n%s", got, w)
		}
	})
}

func TestMarshalRoundTrip(t *testing.T) {
	forKeyCaps(t, func(t *rapid.T) {
		c := genConfig(t)
		s := applyInputs(c, rapid.SliceOfN(rapid.Custom(genInput), 0, 30).Draw(t, "events"))
		b := mustEncode(t, s)
		var got State
		if err := got.UnmarshalBinary(b); err != nil {
			t.Fatalf("UnmarshalBinary(%s): %v", b, err)
		}
		if !statesEqual(&got, s) {
			t.Fatalf("round trip:\n%#v\nwant\n%#v", got, *s)
		}
		if b2 := mustEncode(t, &got); !bytes.Equal(b, b2) {
			t.Fatalf("re-encoded:\n%s\nwas\n%s", b2, b)
		}
		// A decoded state goes on exactly like the original.
		more := rapid.SliceOfN(rapid.Custom(genInput), 0, 10).Draw(t, "more events")
		for _, in := range more {
			c.Apply(s, in)
			c.Apply(&got, in)
		}
		if !bytes.Equal(mustEncode(t, s), mustEncode(t, &got)) {
			t.Fatal("a decoded state diverges")
		}
	})
}

// statesEqual compares states field by field, empty maps and slices equal to nil
// (the encoding leaves empty ones out).
func statesEqual(a, b *State) bool {
	ta, tb := a.Traits, b.Traits
	if !maps.EqualFunc(ta, tb, traitEqual) || !maps.EqualFunc(a.Deleted, b.Deleted, traitEqual) {
		return false
	}
	ca, cb := a.Computed, b.Computed
	return ca.FirstSeen == cb.FirstSeen && ca.LastSeen == cb.LastSeen && ca.Events == cb.Events &&
		maps.Equal(ca.ByEvent, cb.ByEvent) && ca.OtherEvents == cb.OtherEvents && slices.Equal(ca.Sources, cb.Sources) &&
		ca.Orders == cb.Orders && ca.RevenueMicros == cb.RevenueMicros && slices.Equal(ca.LastViewed, cb.LastViewed) &&
		maps.Equal(ca.Categories, cb.Categories) && ca.OtherCategories == cb.OtherCategories
}

// traitEqual compares with ==, not Equal, on times: a decoded time must be the same
// value, location included, or reflect-based comparisons downstream would differ.
func traitEqual(a, b Trait) bool {
	return bytes.Equal(a.Value, b.Value) && (a.Value == nil) == (b.Value == nil) &&
		a.At == b.At && a.ReceivedAt == b.ReceivedAt && a.SourceID == b.SourceID
}

// TestModel checks Apply against a from-scratch model of the rules written for
// clarity, not speed: the incremental state must be exactly what the whole history
// defines.
func TestModel(t *testing.T) {
	forKeyCaps(t, func(t *rapid.T) {
		c := genConfig(t)
		ins := rapid.SliceOfN(rapid.Custom(genInput), 0, 40).Draw(t, "events")
		// The model knows no purposes: the split of computed traits by purpose
		// is TestComputedForIsExact's and TestTotalsAreAllEvents' to check.
		for i := range ins {
			ins[i].Purposes = nil
		}
		got := applyInputs(c, ins)
		want := model(t, c, ins)
		if !statesEqual(got, want) {
			t.Fatalf("Apply:\n%s\nmodel:\n%s", mustEncode(t, got), mustEncode(t, want))
		}
	})
}

func model(t *rapid.T, c Config, ins []Input) *State {
	rl := c.rules()
	type write struct {
		key string
		t   Trait
	}
	var writes []write
	s := &State{}
	cs := &s.Computed
	byName, cats := map[string]int64{}, map[string]int64{}
	latest := map[string]time.Time{}
	sources := map[int64]bool{}
	for _, in := range ins {
		stamp := Trait{At: in.Timestamp.UTC(), ReceivedAt: in.ReceivedAt.UTC(), SourceID: in.SourceID}
		objectWrites := func(raw json.RawMessage, prefix string, skip map[string]bool) map[string]bool {
			var m map[string]json.RawMessage
			if len(raw) == 0 {
				return nil
			}
			if err := json.Unmarshal(raw, &m); err != nil {
				t.Fatal(err)
			}
			seen := map[string]bool{}
			for k, v := range m {
				seen[k] = true
				if skip[k] {
					continue
				}
				w := stamp
				if string(v) != "null" {
					var buf bytes.Buffer
					_ = json.Compact(&buf, v)
					w.Value = buf.Bytes()
				}
				writes = append(writes, write{prefix + k, w})
			}
			return seen
		}
		var own map[string]bool
		switch in.Type {
		case trustloop.EventIdentify:
			own = objectWrites(in.Traits, "", nil)
		case trustloop.EventGroup:
			objectWrites(in.Traits, groupPrefix, nil)
			w := stamp
			w.Value, _ = json.Marshal(in.GroupID)
			writes = append(writes, write{"group.id", w})
		}
		objectWrites(in.ContextTraits, "", own)

		if cs.FirstSeen.IsZero() || stamp.At.Before(cs.FirstSeen) {
			cs.FirstSeen = stamp.At
		}
		if stamp.At.After(cs.LastSeen) {
			cs.LastSeen = stamp.At
		}
		cs.Events++
		name := in.Type.String()
		if in.Type == trustloop.EventTrack {
			name = in.Event
		}
		byName[name]++
		sources[in.SourceID] = true
		if in.Type != trustloop.EventTrack {
			continue
		}
		var p map[string]json.RawMessage
		if err := json.Unmarshal(in.Properties, &p); err != nil {
			t.Fatal(err)
		}
		if slices.Contains(rl.orders, in.Event) {
			cs.Orders++
			amount := p["revenue"]
			if amount == nil || string(amount) == "null" {
				amount = p["total"]
			}
			if amount != nil && string(amount) != "null" {
				key := string(amount)
				if amount[0] == '"' {
					_ = json.Unmarshal(amount, &key)
				}
				// The generator's amounts are few: their micros by hand.
				cs.RevenueMicros += map[string]int64{"5": 5_000_000, "2.50": 2_500_000, "-1": -1_000_000, "0.0000005": 1}[key]
			}
		}
		if slices.Contains(rl.views, in.Event) {
			id := p["product_id"]
			if id == nil {
				id = p["sku"]
			}
			var product string
			if json.Unmarshal(id, &product) != nil {
				product = string(id) // a number
			}
			if id != nil && product != "" {
				if a := in.Timestamp.UTC(); a.After(latest[product]) {
					latest[product] = a
				}
			}
		}
		var cat string
		if json.Unmarshal(p["category"], &cat) == nil && cat != "" {
			cats[cat]++
		}
	}
	// Traits: the winning write per key among the traitKeyCap smallest keys.
	winners := map[string]Trait{}
	for _, w := range writes {
		if cur, ok := winners[w.key]; !ok || w.t.after(&cur) {
			winners[w.key] = w.t
		}
	}
	keys := slices.Sorted(maps.Keys(winners))
	for i, k := range keys {
		if i >= traitKeyCap {
			break
		}
		w := winners[k]
		if w.Value == nil {
			if s.Deleted == nil {
				s.Deleted = map[string]Trait{}
			}
			s.Deleted[k] = w
		} else {
			if s.Traits == nil {
				s.Traits = map[string]Trait{}
			}
			s.Traits[k] = w
		}
	}
	capped := func(counts map[string]int64, limit int) (map[string]int64, int64) {
		var kept map[string]int64
		var other int64
		for i, k := range slices.Sorted(maps.Keys(counts)) {
			if i < limit {
				if kept == nil {
					kept = map[string]int64{}
				}
				kept[k] = counts[k]
			} else {
				other += counts[k]
			}
		}
		return kept, other
	}
	cs.ByEvent, cs.OtherEvents = capped(byName, rl.maxEventNames)
	cs.Categories, cs.OtherCategories = capped(cats, rl.maxCategories)
	cs.Sources = slices.Sorted(maps.Keys(sources))
	for p, a := range latest {
		cs.LastViewed = append(cs.LastViewed, View{p, a})
	}
	slices.SortFunc(cs.LastViewed, func(a, b View) int {
		if precedes(&a, &b) {
			return -1
		}
		return 1
	})
	if len(cs.LastViewed) > rl.lastViewed {
		cs.LastViewed = cs.LastViewed[:rl.lastViewed]
	}
	if len(cs.LastViewed) == 0 {
		cs.LastViewed = nil
	}
	return s
}
