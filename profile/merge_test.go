package profile

import (
	"reflect"
	"slices"
	"testing"

	"github.com/trustloop/trustloop"
)

func TestMerge(t *testing.T) {
	const view, order = "Product Viewed", "Order Completed"
	tests := []struct {
		name     string
		c        Config
		into     []Input
		from     []Input
		check    func(t *testing.T, s *State)
		keyLimit int
	}{
		{"the later write wins across profiles", Config{},
			[]Input{identify(2, `{"plan":"pro","age":1}`)}, []Input{identify(1, `{"plan":"free","age":2}`), identify(3, `{"age":3}`)},
			func(t *testing.T, s *State) {
				if got := traitValues(s); !reflect.DeepEqual(got, map[string]string{"plan": `"pro"`, "age": `3`}) {
					t.Errorf("traits = %v", got)
				}
			}, 0},
		{"a newer deletion removes the other's value", Config{},
			[]Input{identify(1, `{"plan":"pro"}`)}, []Input{identify(2, `{"plan":null}`)},
			func(t *testing.T, s *State) {
				if len(s.Traits) != 0 || len(s.Deleted) != 1 {
					t.Errorf("traits %v deleted %v", s.Traits, s.Deleted)
				}
			}, 0},
		{"an older deletion does not", Config{},
			[]Input{identify(3, `{"plan":"pro"}`)}, []Input{identify(2, `{"plan":null}`)},
			func(t *testing.T, s *State) {
				if traitValues(s)["plan"] != `"pro"` || len(s.Deleted) != 0 {
					t.Errorf("traits %v deleted %v", s.Traits, s.Deleted)
				}
			}, 0},
		{"computed traits combine", Config{},
			[]Input{withSource(track(5, order, `{"revenue":5,"category":"b"}`), 2), track(2, view, `{"product_id":"p1"}`)},
			[]Input{withSource(track(1, order, `{"revenue":"2.5","category":"a"}`), 3), track(9, view, `{"product_id":"p2"}`),
				track(3, view, `{"product_id":"p1","category":"a"}`)},
			func(t *testing.T, s *State) {
				c := s.Computed
				if !c.FirstSeen.Equal(at(1)) || !c.LastSeen.Equal(at(9)) || c.Events != 5 || c.Orders != 2 || c.RevenueMicros != 7_500_000 {
					t.Errorf("computed = %+v", c)
				}
				if !reflect.DeepEqual(c.ByEvent, map[string]int64{order: 2, view: 3}) || !slices.Equal(c.Sources, []int64{1, 2, 3}) {
					t.Errorf("by event %v sources %v", c.ByEvent, c.Sources)
				}
				if !reflect.DeepEqual(c.LastViewed, []View{{"p2", at(9)}, {"p1", at(3)}}) {
					t.Errorf("last viewed = %v", c.LastViewed)
				}
				if s.FavouriteCategory() != "a" {
					t.Errorf("categories = %v", c.Categories)
				}
			}, 0},
		{"capped counters keep the smallest names", Config{MaxEventNames: 2},
			[]Input{track(1, "c", ""), track(2, "b", ""), track(3, "b", "")}, []Input{track(4, "a", ""), track(5, "d", "")},
			func(t *testing.T, s *State) {
				if !reflect.DeepEqual(s.Computed.ByEvent, map[string]int64{"a": 1, "b": 2}) || s.Computed.OtherEvents != 2 {
					t.Errorf("by event %v other %d", s.Computed.ByEvent, s.Computed.OtherEvents)
				}
			}, 0},
		{"trait keys keep the smallest", Config{},
			[]Input{identify(1, `{"c":1,"d":1}`)}, []Input{identify(1, `{"a":1,"e":null}`)},
			func(t *testing.T, s *State) {
				if got := traitValues(s); !reflect.DeepEqual(got, map[string]string{"a": "1", "c": "1", "d": "1"}) || len(s.Deleted) != 0 {
					t.Errorf("traits %v deleted %v", got, s.Deleted)
				}
			}, 3},
		{"into an empty state", Config{},
			nil, []Input{identify(1, `{"a":1}`), track(2, view, `{"product_id":"p"}`)},
			func(t *testing.T, s *State) {
				want, _ := applyAll(Config{}, identify(1, `{"a":1}`), track(2, view, `{"product_id":"p"}`))
				if !sameState(t, s, want) {
					t.Errorf("state = %s", encode(t, s))
				}
			}, 0},
		{"disabled computed traits are not merged", Config{Disabled: []string{ComputedEvents, ComputedLastViewedProducts}},
			[]Input{track(1, "x", "")}, []Input{track(2, view, `{"product_id":"p"}`)},
			func(t *testing.T, s *State) {
				if s.Computed.Events != 0 || s.Computed.LastViewed != nil || s.Computed.ByEvent["x"] != 1 {
					t.Errorf("computed = %+v", s.Computed)
				}
			}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.keyLimit > 0 {
				setKeyCap(t, tt.keyLimit)
			}
			into, _ := applyAll(tt.c, tt.into...)
			from, _ := applyAll(tt.c, tt.from...)
			tt.c.Merge(into, from)
			tt.check(t, into)
			// The same as applying everything to one state.
			all, _ := applyAll(tt.c, append(slices.Clone(tt.into), tt.from...)...)
			if !sameState(t, into, all) {
				t.Errorf("merged %s\ncombined %s", encode(t, into), encode(t, all))
			}
		})
	}
	// Nil states are no-ops.
	s, _ := applyAll(Config{}, identify(1, `{"a":1}`))
	Config{}.Merge(s, nil)
	Config{}.Merge(nil, s)
	if len(s.Traits) != 1 {
		t.Error("merging nil changed the state")
	}
}

// TestMergeSharesNothingMutable: changing into after a merge leaves from alone.
func TestMergeSharesNothingMutable(t *testing.T) {
	into, _ := applyAll(Config{}, identify(1, `{"a":1}`))
	from, _ := applyAll(Config{},
		Input{Type: trustloop.EventTrack, Event: "Product Viewed", Timestamp: at(2), SourceID: 4, Properties: []byte(`{"product_id":"p","category":"c"}`)})
	before := encode(t, from)
	Config{}.Merge(into, from)
	Config{}.Apply(into, track(3, "Product Viewed", `{"product_id":"q","category":"c"}`))
	into.Computed.Sources[0] = 99
	if string(encode(t, from)) != string(before) {
		t.Errorf("from changed: %s", encode(t, from))
	}
}
