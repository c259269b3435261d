package profile

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
)

// applyAll applies the inputs in order to a new state and returns it with every
// reason given.
func applyAll(c Config, ins ...Input) (*State, []Reason) {
	s := &State{}
	var reasons []Reason
	for _, in := range ins {
		reasons = append(reasons, c.Apply(s, in).Skipped...)
	}
	return s, reasons
}

// traitValues returns the live traits as key → compact JSON.
func traitValues(s *State) map[string]string {
	m := map[string]string{}
	for k, t := range s.Traits {
		m[k] = string(t.Value)
	}
	return m
}

func withSource(in Input, src int64) Input { in.SourceID = src; return in }

func withReceived(in Input, n int) Input { in.ReceivedAt = at(n); return in }

func withContext(in Input, traits string) Input { in.ContextTraits = []byte(traits); return in }

func TestTraits(t *testing.T) {
	tests := []struct {
		name    string
		ins     []Input
		want    map[string]string
		deleted []string
		reasons []Reason
	}{
		{"identify sets traits",
			[]Input{identify(1, `{"plan":"pro","age":34}`)},
			map[string]string{"plan": `"pro"`, "age": `34`}, nil, nil},
		{"a later event wins",
			[]Input{identify(1, `{"plan":"free"}`), identify(2, `{"plan":"pro"}`)},
			map[string]string{"plan": `"pro"`}, nil, nil},
		{"an earlier event arriving later loses",
			[]Input{identify(2, `{"plan":"pro"}`), identify(1, `{"plan":"free"}`)},
			map[string]string{"plan": `"pro"`}, nil, nil},
		{"keys are independent",
			[]Input{identify(2, `{"plan":"pro"}`), identify(1, `{"plan":"free","age":3}`)},
			map[string]string{"plan": `"pro"`, "age": `3`}, nil, nil},
		{"timestamp tie: later receipt wins",
			[]Input{withSource(withReceived(identify(1, `{"plan":"b"}`), 5), 9), withReceived(identify(1, `{"plan":"a"}`), 9)},
			map[string]string{"plan": `"a"`}, nil, nil},
		{"timestamp and receipt tie: larger source wins",
			[]Input{withSource(identify(1, `{"plan":"a"}`), 7), withSource(identify(1, `{"plan":"b"}`), 3)},
			map[string]string{"plan": `"a"`}, nil, nil},
		{"full tie: larger value bytes win",
			[]Input{identify(1, `{"plan":"b"}`), identify(1, `{"plan":"a"}`)},
			map[string]string{"plan": `"b"`}, nil, nil},
		{"null deletes",
			[]Input{identify(1, `{"plan":"pro","age":3}`), identify(2, `{"plan":null}`)},
			map[string]string{"age": `3`}, []string{"plan"}, nil},
		{"an older write cannot resurrect a deleted trait",
			[]Input{identify(1, `{"plan":"pro"}`), identify(3, `{"plan":null}`), identify(2, `{"plan":"free"}`)},
			map[string]string{}, []string{"plan"}, nil},
		{"a newer write after a deletion restores the trait",
			[]Input{identify(3, `{"plan":null}`), identify(4, `{"plan":"free"}`)},
			map[string]string{"plan": `"free"`}, nil, nil},
		{"deleting an unknown key leaves a tombstone",
			[]Input{identify(3, `{"plan":null}`), identify(1, `{"plan":"free"}`)},
			map[string]string{}, []string{"plan"}, nil},
		{"nested objects are replaced, not merged",
			[]Input{identify(1, `{"address":{"city":"Berlin","zip":"10115"}}`), identify(2, `{"address":{"city":"Paris"}}`)},
			map[string]string{"address": `{"city":"Paris"}`}, nil, nil},
		{"values are stored compacted",
			[]Input{identify(1, "{ \"a\" : { \"b\" : [ 1 , \"x y\" ] } , \"c\":\t\"\\\" z\" }")},
			map[string]string{"a": `{"b":[1,"x y"]}`, "c": `"\" z"`}, nil, nil},
		{"escaped keys are decoded",
			[]Input{identify(1, `{"\u0070lan":"pro"}`)},
			map[string]string{"plan": `"pro"`}, nil, nil},
		{"context.traits on a track call set traits",
			[]Input{withContext(track(1, "Clicked", ""), `{"plan":"pro"}`)},
			map[string]string{"plan": `"pro"`}, nil, nil},
		{"identify traits take precedence over its own context.traits",
			[]Input{withContext(identify(1, `{"plan":"a"}`), `{"plan":"zzz","age":3}`)},
			map[string]string{"plan": `"a"`, "age": `3`}, nil, nil},
		{"identify traits take precedence over many context.traits",
			[]Input{withContext(identify(1, manyTraits(20, `"own"`)), manyTraits(20, `"zzz"`))},
			func() map[string]string {
				m := map[string]string{}
				for i := range 20 {
					m[fmt.Sprintf("k%03d", i)] = `"own"`
				}
				return m
			}(), nil, nil},
		{"traits of a track call are not traits",
			[]Input{{Type: trustloop.EventTrack, Event: "x", Timestamp: at(1), Traits: []byte(`{"plan":"pro"}`)}},
			map[string]string{}, nil, nil},
		{"group traits are prefixed and the group id recorded",
			[]Input{{Type: trustloop.EventGroup, GroupID: "g<1>", Timestamp: at(1), Traits: []byte(`{"plan":"team","name":"Initech"}`),
				ContextTraits: []byte(`{"plan":"pro"}`)}},
			map[string]string{"group.id": `"g\u003c1\u003e"`, "group.plan": `"team"`, "group.name": `"Initech"`, "plan": `"pro"`}, nil, nil},
		{"group traits are per key",
			[]Input{{Type: trustloop.EventGroup, GroupID: "g1", Timestamp: at(1), Traits: []byte(`{"plan":"team","name":"Initech"}`)},
				{Type: trustloop.EventGroup, GroupID: "g1", Timestamp: at(2), Traits: []byte(`{"plan":"enterprise"}`)}},
			map[string]string{"group.id": `"g1"`, "group.plan": `"enterprise"`, "group.name": `"Initech"`}, nil, nil},
		{"group without an id",
			[]Input{{Type: trustloop.EventGroup, Timestamp: at(1), Traits: []byte(`{"plan":"team"}`)}},
			map[string]string{"group.plan": `"team"`}, nil, []Reason{ReasonGroupIDInvalid}},
		{"traits not an object",
			[]Input{identify(1, `["plan"]`), withContext(identify(1, ""), `"x"`)},
			map[string]string{}, nil, []Reason{ReasonTraitsNotObject, ReasonContextTraitsInvalid}},
		{"malformed traits apply nothing",
			[]Input{identify(1, `{"plan":"pro","age":}`)},
			map[string]string{}, nil, []Reason{ReasonTraitsMalformed}},
		{"trailing bytes are malformed",
			[]Input{identify(1, `{"plan":"pro"} x`)},
			map[string]string{}, nil, []Reason{ReasonTraitsMalformed}},
		{"null traits are none",
			[]Input{identify(1, `null`)},
			map[string]string{}, nil, nil},
		{"a value at the size cap is kept, one byte more is not",
			[]Input{identify(1, `{"a":"`+strings.Repeat("x", MaxTraitBytes-2)+`","b":"`+strings.Repeat("x", MaxTraitBytes-1)+`"}`)},
			map[string]string{"a": `"` + strings.Repeat("x", MaxTraitBytes-2) + `"`}, nil, []Reason{ReasonTraitTooLarge}},
		{"the size cap counts compacted bytes",
			[]Input{identify(1, `{"a":[`+strings.Repeat(" ", MaxTraitBytes)+`1]}`)},
			map[string]string{"a": `[1]`}, nil, nil},
		{"empty and overlong keys are skipped",
			[]Input{identify(1, `{"":1,"`+strings.Repeat("k", MaxNameBytes+1)+`":2,"`+strings.Repeat("k", MaxNameBytes)+`":3}`)},
			map[string]string{strings.Repeat("k", MaxNameBytes): `3`}, nil, []Reason{ReasonTraitKeyInvalid, ReasonTraitKeyInvalid}},
		{"invalid UTF-8 in a key becomes U+FFFD",
			[]Input{identify(1, "{\"a\xffb\":1}")},
			map[string]string{"a\uFFFDb": `1`}, nil, nil},
		{"duplicate keys in one object: the larger value (a tie)",
			[]Input{identify(1, `{"a":1,"a":2}`), identify(1, `{"b":2,"b":1}`)},
			map[string]string{"a": `2`, "b": `2`}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, reasons := applyAll(Config{}, tt.ins...)
			if got := traitValues(s); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("traits = %v, want %v", got, tt.want)
			}
			var deleted []string
			for k := range s.Deleted {
				deleted = append(deleted, k)
			}
			slices.Sort(deleted)
			if !slices.Equal(deleted, tt.deleted) {
				t.Errorf("deleted = %v, want %v", deleted, tt.deleted)
			}
			if !slices.Equal(reasons, tt.reasons) {
				t.Errorf("reasons = %v, want %v", reasons, tt.reasons)
			}
		})
	}
}

func manyTraits(n int, value string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"k%03d":%s`, i, value)
	}
	b.WriteByte('}')
	return b.String()
}

func TestTraitStamp(t *testing.T) {
	in := identify(5, `{"plan":"pro"}`)
	in.SourceID = 42
	in.Timestamp = in.Timestamp.In(time.FixedZone("X", 3600))
	s, _ := applyAll(Config{}, in)
	got := s.Traits["plan"]
	if !got.At.Equal(at(5)) || got.At.Location() != time.UTC || !got.ReceivedAt.Equal(at(6)) || got.SourceID != 42 {
		t.Errorf("trait = %+v", got)
	}
	s, _ = applyAll(Config{}, identify(5, `{"plan":null}`))
	if d := s.Deleted["plan"]; !d.At.Equal(at(5)) || d.Value != nil {
		t.Errorf("tombstone = %+v", d)
	}
}

// TestTraitValueNotShared checks that a stored value does not alias the message.
func TestTraitValueNotShared(t *testing.T) {
	raw := []byte(`{"plan":"pro"}`)
	s, _ := applyAll(Config{}, identify(1, string(raw)))
	in := identify(1, "")
	in.Traits = raw
	s2 := &State{}
	Config{}.Apply(s2, in)
	copy(raw, `{"plan":"xxx"}`)
	if string(s2.Traits["plan"].Value) != `"pro"` || string(s.Traits["plan"].Value) != `"pro"` {
		t.Errorf("value aliases the input: %s", s2.Traits["plan"].Value)
	}
}

func TestTraitKeyCap(t *testing.T) {
	setKeyCap(t, 3)
	tests := []struct {
		name    string
		ins     []Input
		want    []string // live and deleted keys
		reasons []Reason
	}{
		{"under the cap", []Input{identify(1, `{"b":1,"c":2,"d":3}`)}, []string{"b", "c", "d"}, nil},
		{"a larger key is refused", []Input{identify(1, `{"b":1,"c":2,"d":3}`), identify(2, `{"e":1}`)},
			[]string{"b", "c", "d"}, []Reason{ReasonTraitKeysOverLimit}},
		{"a smaller key evicts the largest", []Input{identify(1, `{"b":1,"c":2,"d":3}`), identify(2, `{"a":1}`)},
			[]string{"a", "b", "c"}, []Reason{ReasonTraitEvicted}},
		{"same outcome in the other order", []Input{identify(2, `{"a":1}`), identify(1, `{"b":1,"c":2,"d":3}`)},
			[]string{"a", "b", "c"}, []Reason{ReasonTraitKeysOverLimit}},
		{"tombstones hold slots", []Input{identify(1, `{"b":null,"c":null,"d":null}`), identify(2, `{"e":1}`)},
			[]string{"b", "c", "d"}, []Reason{ReasonTraitKeysOverLimit}},
		{"updates of kept keys still apply", []Input{identify(1, `{"b":1,"c":2,"d":3}`), identify(2, `{"d":4,"b":null}`)},
			[]string{"b", "c", "d"}, nil},
		{"several evictions in one event", []Input{identify(1, `{"d":1,"e":2,"f":3}`), identify(2, `{"c":1,"b":1,"a":1,"z":1}`)},
			[]string{"a", "b", "c"}, []Reason{ReasonTraitEvicted, ReasonTraitEvicted, ReasonTraitEvicted, ReasonTraitKeysOverLimit}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, reasons := applyAll(Config{}, tt.ins...)
			var keys []string
			for k := range s.Traits {
				keys = append(keys, k)
			}
			for k := range s.Deleted {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			if !slices.Equal(keys, tt.want) {
				t.Errorf("keys = %v, want %v", keys, tt.want)
			}
			if !slices.Equal(reasons, tt.reasons) {
				t.Errorf("reasons = %v, want %v", reasons, tt.reasons)
			}
		})
	}
}

// setKeyCap lowers the trait key cap for one test.
func setKeyCap(t testing.TB, n int) {
	old := traitKeyCap
	traitKeyCap = n
	t.Cleanup(func() { traitKeyCap = old })
}

func TestEventTime(t *testing.T) {
	tests := []struct {
		name      string
		ts, recv  time.Time
		wantFirst time.Time
		reasons   []Reason
		applied   bool
	}{
		{"timestamp", at(1), at(2), at(1), nil, true},
		{"no timestamp: receipt", time.Time{}, at(2), at(2), nil, true},
		{"timestamp before 1970: receipt", time.Date(1969, 1, 1, 0, 0, 0, 0, time.UTC), at(2), at(2), []Reason{ReasonTimestampOutOfRange}, true},
		{"epoch itself is out", time.Unix(0, 0), at(2), at(2), []Reason{ReasonTimestampOutOfRange}, true},
		{"timestamp after 2200: receipt", time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC), at(2), at(2), []Reason{ReasonTimestampOutOfRange}, true},
		{"nothing usable", time.Time{}, time.Time{}, time.Time{}, []Reason{ReasonTimestampMissing}, false},
		{"both out of range", time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), time.Time{},
			[]Reason{ReasonTimestampOutOfRange, ReasonTimestampMissing}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &State{}
			r := Config{}.Apply(s, Input{Type: trustloop.EventPage, Timestamp: tt.ts, ReceivedAt: tt.recv, Traits: []byte(`{"a":1}`),
				ContextTraits: []byte(`{"b":1}`)})
			if r.Changed != tt.applied || (s.Computed.Events == 1) != tt.applied {
				t.Errorf("changed = %v, events = %d, want applied %v", r.Changed, s.Computed.Events, tt.applied)
			}
			if !s.Computed.FirstSeen.Equal(tt.wantFirst) || !s.Computed.LastSeen.Equal(tt.wantFirst) {
				t.Errorf("first/last seen = %v/%v, want %v", s.Computed.FirstSeen, s.Computed.LastSeen, tt.wantFirst)
			}
			if tt.applied && s.Traits["b"].At != tt.wantFirst {
				t.Errorf("trait stamped %v, want %v", s.Traits["b"].At, tt.wantFirst)
			}
			if !slices.Equal(r.Skipped, tt.reasons) {
				t.Errorf("reasons = %v, want %v", r.Skipped, tt.reasons)
			}
			// Every time kept is encodable.
			encode(t, s)
		})
	}
}

func TestUnknownType(t *testing.T) {
	for _, typ := range []trustloop.EventType{0, 7, 255} {
		s := &State{}
		r := Config{}.Apply(s, Input{Type: typ, Timestamp: at(1), ContextTraits: []byte(`{"a":1}`)})
		if r.Changed || !slices.Equal(r.Skipped, []Reason{ReasonEventTypeUnknown}) || s.Computed.Events != 0 || len(s.Traits) != 0 {
			t.Errorf("type %d: result %+v, state %+v", typ, r, s)
		}
	}
	if r := (Config{}).Apply(nil, identify(1, `{"a":1}`)); r.Changed {
		t.Error("Apply on a nil state reports a change")
	}
}

func TestChanged(t *testing.T) {
	off := Config{Disabled: computedNames[:]}
	s := &State{}
	tests := []struct {
		name string
		in   Input
		want bool
	}{
		{"new trait", identify(2, `{"a":1}`), true},
		{"same write again", identify(2, `{"a":1}`), false},
		{"older write", identify(1, `{"a":2}`), false},
		{"newer write", identify(3, `{"a":2}`), true},
		{"deletion", identify(4, `{"a":null}`), true},
		{"deletion again", identify(4, `{"a":null}`), false},
		{"no traits", track(5, "x", `{"category":"c"}`), false},
	}
	for _, tt := range tests {
		if r := off.Apply(s, tt.in); r.Changed != tt.want {
			t.Errorf("%s: changed = %v, want %v", tt.name, r.Changed, tt.want)
		}
	}
	if r := (Config{}).Apply(s, track(5, "x", "")); !r.Changed {
		t.Error("an event counted is a change")
	}
}

func TestComputedCounts(t *testing.T) {
	ins := []Input{
		track(5, "Clicked", ""),
		{Type: trustloop.EventPage, Timestamp: at(1), SourceID: 3},
		{Type: trustloop.EventScreen, Timestamp: at(9), SourceID: 2},
		identify(3, ""),
		{Type: trustloop.EventGroup, GroupID: "g", Timestamp: at(4), SourceID: 2},
		{Type: trustloop.EventAlias, Timestamp: at(4), SourceID: 1},
		track(2, "Clicked", ""),
		{Type: trustloop.EventTrack, Timestamp: at(2), SourceID: 1},
	}
	s, reasons := applyAll(Config{}, ins...)
	c := s.Computed
	if !c.FirstSeen.Equal(at(1)) || !c.LastSeen.Equal(at(9)) {
		t.Errorf("first/last = %v/%v", c.FirstSeen, c.LastSeen)
	}
	if c.Events != 8 {
		t.Errorf("events = %d", c.Events)
	}
	want := map[string]int64{"Clicked": 2, "page": 1, "screen": 1, "identify": 1, "group": 1, "alias": 1, "track": 1}
	if !reflect.DeepEqual(c.ByEvent, want) || c.OtherEvents != 0 {
		t.Errorf("by event = %v other %d", c.ByEvent, c.OtherEvents)
	}
	if !slices.Equal(c.Sources, []int64{1, 2, 3}) {
		t.Errorf("sources = %v", c.Sources)
	}
	if len(reasons) != 0 {
		t.Errorf("reasons = %v", reasons)
	}
}

func TestEventNameCap(t *testing.T) {
	c := Config{MaxEventNames: 2}
	names := []string{"b", "c", "a", "c", "d", "a", strings.Repeat("n", MaxNameBytes+1)}
	var ins []Input
	for i, n := range names {
		ins = append(ins, track(i, n, ""))
	}
	s, reasons := applyAll(c, ins...)
	if want := map[string]int64{"a": 2, "b": 1}; !reflect.DeepEqual(s.Computed.ByEvent, want) || s.Computed.OtherEvents != 4 {
		t.Errorf("by event = %v other %d", s.Computed.ByEvent, s.Computed.OtherEvents)
	}
	if want := []Reason{ReasonEventNamesOverLimit, ReasonEventNamesOverLimit, ReasonEventNamesOverLimit, ReasonEventNameTooLong}; !slices.Equal(reasons, want) {
		t.Errorf("reasons = %v, want %v", reasons, want)
	}
	slices.Reverse(ins)
	if r, _ := applyAll(c, ins...); !sameState(t, r, s) {
		t.Error("the capped counter depends on the order of events")
	}
	if m := c.Map(s)["computed"].(map[string]any)["events_by_name"]; !reflect.DeepEqual(m, map[string]int64{"a": 2, "b": 1, "(other)": 4}) {
		t.Errorf("events_by_name = %v", m)
	}
	// Invalid UTF-8 in a name is replaced, so the name survives sealing.
	s, _ = applyAll(Config{}, track(1, "a\xff", ""))
	if s.Computed.ByEvent["a\uFFFD"] != 1 {
		t.Errorf("by event = %v", s.Computed.ByEvent)
	}
}

func TestOrders(t *testing.T) {
	const order = "Order Completed"
	tests := []struct {
		name    string
		c       Config
		ins     []Input
		orders  int64
		micros  int64
		reasons []Reason
	}{
		{"revenue", Config{}, []Input{track(1, order, `{"revenue":19.99}`), track(2, order, `{"revenue":5}`)}, 2, 24_990_000, nil},
		{"total when no revenue", Config{}, []Input{track(1, order, `{"total":"12.50"}`)}, 1, 12_500_000, nil},
		{"revenue before total", Config{}, []Input{track(1, order, `{"total":100,"revenue":90}`)}, 1, 90_000_000, nil},
		{"null revenue: total", Config{}, []Input{track(1, order, `{"revenue":null,"total":7}`)}, 1, 7_000_000, nil},
		{"numeric strings", Config{}, []Input{track(1, order, `{"revenue":"1e2"}`), track(2, order, `{"revenue":"-0.5"}`)}, 2, 99_500_000, nil},
		{"no amount still counts", Config{}, []Input{track(1, order, `{}`), track(2, order, "")}, 2, 0, nil},
		{"non-numeric", Config{}, []Input{track(1, order, `{"revenue":"$5"}`), track(2, order, `{"revenue":true}`),
			track(3, order, `{"revenue":[1]}`), track(4, order, `{"revenue":""}`)}, 4, 0,
			[]Reason{ReasonRevenueNotNumeric, ReasonRevenueNotNumeric, ReasonRevenueNotNumeric, ReasonRevenueNotNumeric}},
		{"non-numeric revenue does not fall back to total", Config{}, []Input{track(1, order, `{"revenue":"n/a","total":3}`)}, 1, 0,
			[]Reason{ReasonRevenueNotNumeric}},
		{"out of range", Config{}, []Input{track(1, order, `{"revenue":1e13}`)}, 1, 0, []Reason{ReasonRevenueOutOfRange}},
		{"rounded to micros", Config{}, []Input{track(1, order, `{"revenue":0.0000005}`), track(2, order, `{"revenue":0.00000049}`)}, 2, 1, nil},
		{"other events' revenue is not an order", Config{}, []Input{track(1, "Checkout Started", `{"revenue":5}`)}, 0, 0, nil},
		{"page revenue is not an order", Config{}, []Input{{Type: trustloop.EventPage, Event: order, Timestamp: at(1), Properties: []byte(`{"revenue":5}`)}}, 0, 0, nil},
		{"configured order events", Config{OrderEvents: []string{"purchase"}}, []Input{track(1, "purchase", `{"revenue":5}`), track(2, order, `{"revenue":5}`)}, 1, 5_000_000, nil},
		{"no order events", Config{OrderEvents: []string{}}, []Input{track(1, order, `{"revenue":5}`)}, 0, 0, nil},
		{"properties not an object", Config{}, []Input{track(1, order, `[1]`)}, 1, 0, []Reason{ReasonPropertiesNotObject}},
		{"malformed properties", Config{}, []Input{track(1, order, `{"revenue":`)}, 1, 0, []Reason{ReasonPropertiesMalformed}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, reasons := applyAll(tt.c, tt.ins...)
			if s.Computed.Orders != tt.orders || s.Computed.RevenueMicros != tt.micros {
				t.Errorf("orders %d revenue %d, want %d %d", s.Computed.Orders, s.Computed.RevenueMicros, tt.orders, tt.micros)
			}
			if !slices.Equal(reasons, tt.reasons) {
				t.Errorf("reasons = %v, want %v", reasons, tt.reasons)
			}
		})
	}
	s, _ := applyAll(Config{}, track(1, order, `{"revenue":0.1}`), track(2, order, `{"revenue":0.2}`))
	if got := s.Computed.LifetimeValue(); got != 0.3 {
		t.Errorf("lifetime value = %v, want 0.3 exactly", got)
	}
}

func TestLastViewed(t *testing.T) {
	const view = "Product Viewed"
	tests := []struct {
		name    string
		c       Config
		ins     []Input
		want    []string
		reasons []Reason
	}{
		{"most recent first", Config{}, []Input{track(1, view, `{"product_id":"a"}`), track(2, view, `{"product_id":"b"}`)}, []string{"b", "a"}, nil},
		{"by timestamp, not arrival", Config{}, []Input{track(2, view, `{"product_id":"b"}`), track(1, view, `{"product_id":"a"}`)}, []string{"b", "a"}, nil},
		{"distinct, latest view counts", Config{}, []Input{track(1, view, `{"product_id":"a"}`), track(2, view, `{"product_id":"b"}`),
			track(3, view, `{"product_id":"a"}`), track(0, view, `{"product_id":"b"}`)}, []string{"a", "b"}, nil},
		{"ties by product id", Config{}, []Input{track(1, view, `{"product_id":"b"}`), track(1, view, `{"product_id":"a"}`)}, []string{"a", "b"}, nil},
		{"capped", Config{LastViewed: 2}, []Input{track(3, view, `{"product_id":"c"}`), track(1, view, `{"product_id":"a"}`),
			track(2, view, `{"product_id":"b"}`)}, []string{"c", "b"}, nil},
		{"capped: a dropped product comes back with a later view", Config{LastViewed: 2}, []Input{track(1, view, `{"product_id":"a"}`),
			track(2, view, `{"product_id":"b"}`), track(3, view, `{"product_id":"c"}`), track(4, view, `{"product_id":"a"}`)}, []string{"a", "c"}, nil},
		{"capped: an older view of a dropped product stays out", Config{LastViewed: 2}, []Input{track(1, view, `{"product_id":"a"}`),
			track(2, view, `{"product_id":"b"}`), track(3, view, `{"product_id":"c"}`), track(0, view, `{"product_id":"a"}`)}, []string{"c", "b"}, nil},
		{"sku, then id", Config{}, []Input{track(1, view, `{"sku":"s1","id":"i1"}`), track(2, view, `{"id":"i2"}`),
			track(3, view, `{"product_id":"p3","sku":"s3"}`)}, []string{"p3", "i2", "s1"}, nil},
		{"numbers as their text, strings trimmed", Config{}, []Input{track(1, view, `{"product_id":1234}`), track(2, view, `{"product_id":" x "}`)},
			[]string{"x", "1234"}, nil},
		{"invalid ids", Config{}, []Input{track(1, view, `{"product_id":""}`), track(2, view, `{"product_id":{"a":1}}`),
			track(3, view, `{"product_id":"`+strings.Repeat("p", MaxNameBytes+1)+`"}`), track(4, view, `{"product_id":null,"sku":true}`)},
			nil, []Reason{ReasonProductIDInvalid, ReasonProductIDInvalid, ReasonProductIDInvalid, ReasonProductIDInvalid}},
		{"no id", Config{}, []Input{track(1, view, `{"name":"x"}`)}, nil, nil},
		{"other events are not views", Config{}, []Input{track(1, "Product Clicked", `{"product_id":"a"}`)}, nil, nil},
		{"configured view events", Config{ViewEvents: []string{"Viewed"}}, []Input{track(1, "Viewed", `{"product_id":"a"}`),
			track(2, view, `{"product_id":"b"}`)}, []string{"a"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, reasons := applyAll(tt.c, tt.ins...)
			if got := s.Computed.LastViewedProducts(); !slices.Equal(got, tt.want) && len(got)+len(tt.want) > 0 {
				t.Errorf("last viewed = %v, want %v", got, tt.want)
			}
			if !slices.Equal(reasons, tt.reasons) {
				t.Errorf("reasons = %v, want %v", reasons, tt.reasons)
			}
		})
	}
	// The list keeps the latest view's time.
	s, _ := applyAll(Config{}, track(1, view, `{"product_id":"a"}`), track(5, view, `{"product_id":"a"}`), track(3, view, `{"product_id":"a"}`))
	if want := []View{{"a", at(5)}}; !reflect.DeepEqual(s.Computed.LastViewed, want) {
		t.Errorf("last viewed = %v", s.Computed.LastViewed)
	}
}

func TestCategories(t *testing.T) {
	tests := []struct {
		name    string
		c       Config
		cats    []string // raw JSON category values, "" for none
		counts  map[string]int64
		other   int64
		fav     string
		reasons []Reason
	}{
		{"argmax", Config{}, []string{`"Games"`, `"Books"`, `"Games"`}, map[string]int64{"Games": 2, "Books": 1}, 0, "Games", nil},
		{"ties to the smallest", Config{}, []string{`"b"`, `"a"`, `"b"`, `"a"`}, map[string]int64{"a": 2, "b": 2}, 0, "a", nil},
		{"none", Config{}, []string{""}, nil, 0, "", nil},
		{"invalid", Config{}, []string{`3`, `""`, `"` + strings.Repeat("c", MaxNameBytes+1) + `"`, `["a"]`}, nil, 0, "",
			[]Reason{ReasonCategoryInvalid, ReasonCategoryInvalid, ReasonCategoryInvalid, ReasonCategoryInvalid}},
		{"capped: the smallest names", Config{MaxCategories: 1}, []string{`"z"`, `"z"`, `"a"`}, map[string]int64{"a": 1}, 2, "a",
			[]Reason{ReasonCategoriesOverLimit}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ins []Input
			for i, c := range tt.cats {
				props := `{}`
				if c != "" {
					props = `{"category":` + c + `}`
				}
				ins = append(ins, track(i, "Anything", props))
			}
			s, reasons := applyAll(tt.c, ins...)
			if len(s.Computed.Categories)+len(tt.counts) > 0 && !reflect.DeepEqual(s.Computed.Categories, tt.counts) || s.Computed.OtherCategories != tt.other {
				t.Errorf("categories = %v other %d", s.Computed.Categories, s.Computed.OtherCategories)
			}
			if got := s.FavouriteCategory(); got != tt.fav {
				t.Errorf("favourite = %q, want %q", got, tt.fav)
			}
			if !slices.Equal(reasons, tt.reasons) {
				t.Errorf("reasons = %v, want %v", reasons, tt.reasons)
			}
		})
	}
	// Only track events count.
	s, _ := applyAll(Config{}, Input{Type: trustloop.EventPage, Timestamp: at(1), Properties: []byte(`{"category":"a"}`)})
	if len(s.Computed.Categories) != 0 {
		t.Errorf("a page counted: %v", s.Computed.Categories)
	}
}

func TestDisabled(t *testing.T) {
	ins := []Input{
		track(1, "Order Completed", `{"revenue":5,"category":"c"}`),
		track(2, "Product Viewed", `{"product_id":"p","category":"c"}`),
		identify(3, `{"plan":"pro"}`),
	}
	all, _ := applyAll(Config{}, ins...)
	for _, name := range computedNames {
		t.Run(name, func(t *testing.T) {
			c := Config{Disabled: []string{name}}
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			s, _ := applyAll(c, ins...)
			m := c.Map(s)["computed"].(map[string]any)
			if _, ok := m[name]; ok {
				t.Errorf("Map shows disabled %s", name)
			}
			if len(m) != len(computedNames)-1 {
				t.Errorf("Map has %d computed traits", len(m))
			}
			// Everything else is as with nothing disabled.
			want := Config{}.Map(all)["computed"].(map[string]any)
			delete(want, name)
			if !reflect.DeepEqual(m, want) {
				t.Errorf("computed = %v, want %v", m, want)
			}
			if traitValues(s)["plan"] != `"pro"` {
				t.Error("traits are not computed traits")
			}
		})
	}
	// Disabled computed traits are not maintained at all.
	z, _ := applyAll(Config{Disabled: computedNames[:]}, ins...)
	if !reflect.DeepEqual(z.Computed, Computed{}) {
		t.Errorf("all disabled: %+v", z.Computed)
	}
}

func TestConfig(t *testing.T) {
	tests := []struct {
		c    Config
		want string // "" for valid
	}{
		{Config{}, ""},
		{Config{LastViewed: 100, MaxEventNames: 10_000, MaxCategories: 10_000, Disabled: []string{"events"}}, ""},
		{Config{LastViewed: -1}, "last_viewed"},
		{Config{LastViewed: 101}, "last_viewed"},
		{Config{MaxEventNames: 10_001}, "max_event_names"},
		{Config{MaxCategories: -5}, "max_categories"},
		{Config{Disabled: []string{"events", "secret@example.com"}}, "disabled[1]"},
		{Config{OrderEvents: []string{""}}, "order_events[0]"},
		{Config{ViewEvents: []string{"a", ""}}, "view_events[1]"},
	}
	for _, tt := range tests {
		err := tt.c.Validate()
		if tt.want == "" {
			if err != nil {
				t.Errorf("%+v: %v", tt.c, err)
			}
			continue
		}
		if trustloop.ErrorCode(err) != trustloop.EINVALID || !strings.Contains(trustloop.ErrorMessage(err), tt.want) {
			t.Errorf("%+v: error %v, want EINVALID about %s", tt.c, err, tt.want)
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("error quotes a value: %v", err)
		}
	}
	r := Config{LastViewed: -3, MaxEventNames: 1 << 30}.rules()
	if r.lastViewed != DefaultLastViewed || r.maxEventNames != MaxMaxEventNames || r.maxCategories != DefaultMaxCategories {
		t.Errorf("rules = %+v", r)
	}
}

func TestMap(t *testing.T) {
	s, _ := applyAll(Config{},
		identify(1, `{"plan":"pro","age":34,"tags":["a"],"address":{"city":"Berlin"},"gone":1}`),
		identify(2, `{"gone":null}`),
		track(3, "Order Completed", `{"revenue":"19.99","category":"Games"}`),
		withSource(track(4, "Product Viewed", `{"product_id":"p1","category":"Games"}`), 2),
	)
	got := Config{}.Map(s)
	want := map[string]any{
		"traits": map[string]any{"plan": "pro", "age": 34.0, "tags": []any{"a"}, "address": map[string]any{"city": "Berlin"}},
		"computed": map[string]any{
			"first_seen": at(1), "last_seen": at(4), "events": int64(4),
			"events_by_name":       map[string]int64{"identify": 2, "Order Completed": 1, "Product Viewed": 1},
			"channels":             []int64{1, 2},
			"order_count":          int64(1),
			"lifetime_value":       19.99,
			"last_viewed_products": []string{"p1"},
			"favourite_category":   "Games",
		},
	}
	if !reflect.DeepEqual(got, want) {
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(want)
		t.Errorf("Map =\n%s\nwant\n%s", g, w)
	}
	// The map shares nothing with the state.
	got["computed"].(map[string]any)["channels"].([]int64)[0] = 99
	got["computed"].(map[string]any)["events_by_name"].(map[string]int64)["identify"] = 99
	if s.Computed.Sources[0] != 1 || s.Computed.ByEvent["identify"] != 2 {
		t.Error("Map aliases the state")
	}
	// An empty profile has every key.
	if m := (Config{}).Map(&State{}); len(m["computed"].(map[string]any)) != len(computedNames) || len(m["traits"].(map[string]any)) != 0 {
		t.Errorf("empty Map = %v", m)
	}
}
