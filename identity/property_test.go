package identity

import (
	"fmt"
	"slices"
	"testing"

	"github.com/trustloop/trustloop"
	"pgregory.net/rapid"
)

// The generators draw from a small universe so that events share identifiers
// often: that is where merges, limits and conflicts happen.

func genIdentifier() *rapid.Generator[trustloop.Identifier] {
	return rapid.Custom(func(t *rapid.T) trustloop.Identifier {
		n := rapid.IntRange(0, 5).Draw(t, "n")
		switch rapid.IntRange(0, 9).Draw(t, "type") {
		case 0, 1:
			return trustloop.Identifier{Type: trustloop.IDUserID, Value: fmt.Sprintf("u%d", n)}
		case 2, 3:
			return trustloop.Identifier{Type: trustloop.IDEmail, Value: fmt.Sprintf("e%d@example.com", n)}
		case 4:
			return trustloop.Identifier{Type: trustloop.IDPhone, Value: fmt.Sprintf("+3361234567%d", n)}
		case 5, 6:
			return trustloop.Identifier{Type: trustloop.IDDeviceID, Value: fmt.Sprintf("d%d", n)}
		default:
			return trustloop.Identifier{Type: trustloop.IDAnonymousID, Value: fmt.Sprintf("a%d", n+rapid.IntRange(0, 3).Draw(t, "more"))}
		}
	})
}

func genEvents(min, max int) *rapid.Generator[[]Event] {
	return rapid.Custom(func(t *rapid.T) []Event {
		n := rapid.IntRange(min, max).Draw(t, "events")
		evs := make([]Event, n)
		for i := range evs {
			evs[i] = Event{ID: fmt.Sprintf("e%d", i),
				Identifiers: rapid.SliceOfN(genIdentifier(), 1, 4).Draw(t, "ids")}
		}
		return evs
	})
}

// generousRules never refuse a match: no blocked values, limits no event reaches.
func generousRules(t testing.TB) *Rules {
	c := DefaultConfig()
	c.Blocked = nil
	c.Limits = map[string]int{}
	c.DefaultLimit = 1000
	return mustCompile(t, c)
}

func applyAll(r *Rules, evs []Event) *Graph {
	g := NewGraph(r)
	for _, ev := range evs {
		g.Apply(ev)
	}
	return g
}

// components is the partition the events must give when nothing is refused: the
// connected components of "appeared in the same event".
func components(evs []Event) [][]trustloop.Identifier {
	parent := map[trustloop.Identifier]trustloop.Identifier{}
	var find func(x trustloop.Identifier) trustloop.Identifier
	find = func(x trustloop.Identifier) trustloop.Identifier {
		if p, ok := parent[x]; ok && p != x {
			r := find(p)
			parent[x] = r
			return r
		}
		parent[x] = x
		return x
	}
	for _, ev := range evs {
		first := find(ev.Identifiers[0])
		for _, id := range ev.Identifiers[1:] {
			parent[find(id)] = first
		}
	}
	groups := map[trustloop.Identifier][]trustloop.Identifier{}
	for id := range parent {
		root := find(id)
		groups[root] = append(groups[root], id)
	}
	var out [][]trustloop.Identifier
	for _, ids := range groups {
		slices.SortFunc(ids, compareIDs)
		out = append(out, ids)
	}
	slices.SortFunc(out, func(a, b []trustloop.Identifier) int { return slices.CompareFunc(a, b, compareIDs) })
	return out
}

func samePartition(a, b [][]trustloop.Identifier) bool {
	return slices.EqualFunc(a, b, func(x, y []trustloop.Identifier) bool { return slices.Equal(x, y) })
}

// When no limit or block refuses anything, the partition is the connected
// components of the events, whatever order they arrive in.
func TestPropertyOrderIndependence(t *testing.T) {
	r := generousRules(t)
	rapid.Check(t, func(t *rapid.T) {
		evs := genEvents(1, 25).Draw(t, "evs")
		perm := rapid.Permutation(evs).Draw(t, "order")
		a, b := applyAll(r, evs).Partition(), applyAll(r, perm).Partition()
		if !samePartition(a, b) {
			t.Fatalf("order changed the partition:\n%v\n%v", a, b)
		}
		if want := components(evs); !samePartition(a, want) {
			t.Fatalf("partition %v, want the components %v", a, want)
		}
	})
}

// Re-applying an event already applied changes nothing, however much happened in
// between (without splits: a split may legitimately unblock an old event).
func TestPropertyIdempotence(t *testing.T) {
	r := mustCompile(t, DefaultConfig())
	tight := DefaultConfig()
	tight.Limits = map[string]int{"user_id": 1, "email": 1, "device_id": 2}
	tight.DefaultLimit = 2
	rt := mustCompile(t, tight)
	rapid.Check(t, func(t *rapid.T) {
		rules := r
		if rapid.Bool().Draw(t, "tight") {
			rules = rt
		}
		evs := genEvents(1, 25).Draw(t, "evs")
		g := NewGraph(rules)
		for i, ev := range evs {
			g.Apply(ev)
			j := rapid.IntRange(0, i).Draw(t, "replay")
			before, merges, profiles := g.Partition(), len(g.Merges()), g.last
			d := g.Apply(Event{ID: "replay", Identifiers: evs[j].Identifiers})
			if d.New || len(d.Attach) > 0 || len(d.Merge) > 0 {
				t.Fatalf("replaying event %d after %d: %+v", j, i, d)
			}
			if after := g.Partition(); !samePartition(before, after) || len(g.Merges()) != merges || g.last != profiles {
				t.Fatalf("replaying event %d after %d changed the graph:\n%v\n%v", j, i, before, after)
			}
		}
	})
}

// No profile ever exceeds a limit, whatever the order, and the graph stays a
// partition of normalized identifiers; splits included.
func TestPropertyLimitsAndInvariants(t *testing.T) {
	rules := []*Rules{mustCompile(t, DefaultConfig())}
	c := DefaultConfig()
	c.Limits = map[string]int{"user_id": 1, "email": 2, "anonymous_id": 3}
	c.DefaultLimit = 1
	rules = append(rules, mustCompile(t, c))
	rapid.Check(t, func(t *rapid.T) {
		r := rules[rapid.IntRange(0, len(rules)-1).Draw(t, "rules")]
		evs := rapid.Permutation(genEvents(1, 30).Draw(t, "evs")).Draw(t, "order")
		g := NewGraph(r)
		for _, ev := range evs {
			d := g.Apply(ev)
			checkDecision(t, d)
			if n := len(g.Merges()); n > 0 && rapid.IntRange(0, 5).Draw(t, "split?") == 0 {
				id := int64(rapid.IntRange(1, n).Draw(t, "split"))
				err := g.Split(id)
				if g.merges[id-1].Split != true || (err != nil && trustloop.ErrorCode(err) != trustloop.ECONFLICT) {
					t.Fatalf("Split(%d): %v", id, err)
				}
			}
			if err := checkGraph(g); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// checkDecision checks a decision's own shape.
func checkDecision(t *rapid.T, d Decision) {
	if d.New && len(d.Merge) > 0 {
		t.Fatalf("a new profile with merges: %+v", d)
	}
	if !slices.IsSorted(d.Merge) || slices.Contains(d.Merge, d.Profile) {
		t.Fatalf("merges %v into %d", d.Merge, d.Profile)
	}
	if len(d.Merge) > 0 && slices.Min(d.Merge) < d.Profile {
		t.Fatalf("survivor %d is not the oldest of %v", d.Profile, d.Merge)
	}
	if (len(d.Merge) > 0) != (len(d.Linking) > 0) {
		t.Fatalf("linking %v for merges %v", d.Linking, d.Merge)
	}
	for _, s := range d.Skipped {
		if s.Reason == "" || s.Type == "" {
			t.Fatalf("skip %+v", s)
		}
	}
}

// After a split, replaying every event, in any order, never puts an identifier the
// split moved back together with one that stayed.
func TestPropertySplitHolds(t *testing.T) {
	r := mustCompile(t, DefaultConfig())
	rapid.Check(t, func(t *rapid.T) {
		evs := genEvents(2, 25).Draw(t, "evs")
		g := applyAll(r, evs)
		if len(g.Merges()) == 0 {
			t.Skip("no merge")
		}
		m := g.Merges()[rapid.IntRange(0, len(g.Merges())-1).Draw(t, "merge")]
		if err := g.Split(m.ID); err != nil {
			t.Fatal(err)
		}
		root := m.Into
		for p, ok := g.parent[root]; ok; p, ok = g.parent[root] {
			root = p
		}
		back, stayed := g.Identifiers(m.From), g.Identifiers(root)
		if len(back) == 0 || len(stayed) == 0 {
			t.Fatalf("split left an empty side: %v / %v", back, stayed)
		}
		for _, ev := range rapid.Permutation(evs).Draw(t, "replay") {
			g.Apply(ev)
			if g.Owner(back[0]) == g.Owner(stayed[0]) {
				t.Fatalf("event %s rejoined the split profiles", ev.ID)
			}
		}
		if err := checkGraph(g); err != nil {
			t.Fatal(err)
		}
	})
}

// Splitting the merge an event just made restores the partition as it was before
// the event, but for the identifiers the event attached.
func TestPropertySplitUndoes(t *testing.T) {
	r := generousRules(t)
	rapid.Check(t, func(t *rapid.T) {
		evs := genEvents(1, 20).Draw(t, "evs")
		g := NewGraph(r)
		for _, ev := range evs {
			before := g.Partition()
			n := len(g.Merges())
			d := g.Apply(ev)
			if len(d.Merge) != 1 || len(d.Attach) > 0 {
				continue
			}
			if err := g.Split(int64(n + 1)); err != nil {
				t.Fatal(err)
			}
			if after := g.Partition(); !samePartition(before, after) {
				t.Fatalf("split of %s:\n%v\nwant\n%v", ev.ID, after, before)
			}
		}
	})
}
