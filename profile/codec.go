package profile

import (
	"bytes"
	"encoding/json"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/trustloop/trustloop"
)

// The sealed form of a State, version 1, is JSON with short member names and times
// as int64 Unix nanoseconds (0: unset):
//
//	{"v":1,
//	 "t":{key:{"v":value,"a":at,"r":receivedAt,"s":sourceID}},   live traits
//	 "d":{key:{"a":at,"r":receivedAt,"s":sourceID}},             tombstones
//	 "c":{"f":firstSeen,"l":lastSeen,"n":events,"e":{name:count},"eo":other,
//	      "s":[sourceID],"o":orders,"m":revenueMicros,
//	      "pv":[{"p":product,"a":at}],"k":{category:count},"ko":other}}
//
// JSON, not a binary layout, because the state is sealed whole and read whole, and
// JSON keeps it inspectable when a seal is opened for debugging; maps are written
// with sorted keys, so equal states encode to equal bytes. A change of layout bumps
// the version; readers refuse versions they do not know.
const stateVersion = 1

type wireState struct {
	V int                  `json:"v"`
	T map[string]wireTrait `json:"t,omitempty"`
	D map[string]wireTrait `json:"d,omitempty"`
	C wireComputed         `json:"c"`
}

type wireTrait struct {
	V json.RawMessage `json:"v,omitempty"`
	A int64           `json:"a"`
	R int64           `json:"r,omitempty"`
	S int64           `json:"s,omitempty"`
}

type wireComputed struct {
	F  int64            `json:"f,omitempty"`
	L  int64            `json:"l,omitempty"`
	N  int64            `json:"n,omitempty"`
	E  map[string]int64 `json:"e,omitempty"`
	EO int64            `json:"eo,omitempty"`
	S  []int64          `json:"s,omitempty"`
	O  int64            `json:"o,omitempty"`
	M  int64            `json:"m,omitempty"`
	PV []wireView       `json:"pv,omitempty"`
	K  map[string]int64 `json:"k,omitempty"`
	KO int64            `json:"ko,omitempty"`
}

type wireView struct {
	P string `json:"p"`
	A int64  `json:"a"`
}

func corrupt(field string) error {
	return trustloop.Errorf(trustloop.EINTERNAL, "profile state: invalid %s", field)
}

// nanos encodes a time; ok is false for a time the sealed form cannot hold (never
// one Apply produced).
func nanos(t time.Time) (int64, bool) {
	if t.IsZero() {
		return 0, true
	}
	if _, ok := normTime(t); !ok {
		return 0, false
	}
	return t.UnixNano(), true
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// MarshalBinary encodes s for sealing at rest. Errors name a field, never a value.
func (s *State) MarshalBinary() ([]byte, error) {
	w := wireState{V: stateVersion}
	var ok bool
	traits := func(m map[string]Trait, field string) (map[string]wireTrait, error) {
		if len(m) == 0 {
			return nil, nil
		}
		out := make(map[string]wireTrait, len(m))
		for k, t := range m {
			var wt wireTrait
			wt.V, wt.S = t.Value, t.SourceID
			if wt.A, ok = nanos(t.At); !ok || wt.A == 0 {
				return nil, corrupt(field + " time")
			}
			if wt.R, ok = nanos(t.ReceivedAt); !ok {
				return nil, corrupt(field + " time")
			}
			if !utf8.ValidString(k) {
				return nil, corrupt(field + " key")
			}
			out[k] = wt
		}
		return out, nil
	}
	var err error
	if w.T, err = traits(s.Traits, "trait"); err != nil {
		return nil, err
	}
	if w.D, err = traits(s.Deleted, "tombstone"); err != nil {
		return nil, err
	}
	for _, t := range s.Traits {
		if t.Value == nil {
			return nil, corrupt("trait value")
		}
	}
	c := &s.Computed
	wc := &w.C
	if wc.F, ok = nanos(c.FirstSeen); !ok {
		return nil, corrupt("first_seen")
	}
	if wc.L, ok = nanos(c.LastSeen); !ok {
		return nil, corrupt("last_seen")
	}
	wc.N, wc.E, wc.EO = c.Events, c.ByEvent, c.OtherEvents
	wc.S, wc.O, wc.M = c.Sources, c.Orders, c.RevenueMicros
	wc.K, wc.KO = c.Categories, c.OtherCategories
	if len(c.LastViewed) > 0 {
		wc.PV = make([]wireView, len(c.LastViewed))
		for i, v := range c.LastViewed {
			wc.PV[i].P = v.Product
			if wc.PV[i].A, ok = nanos(v.At); !ok || wc.PV[i].A == 0 {
				return nil, corrupt("last_viewed time")
			}
		}
	}
	// Not json.Marshal: it would rewrite <, > and & inside trait values as \u003c
	// and so on, and a value must come back byte for byte (ties compare bytes).
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&w); err != nil {
		// Only an invalid trait value can get here; json's message would quote it.
		return nil, corrupt("trait value")
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}), nil
}

// UnmarshalBinary decodes what MarshalBinary encoded and checks the invariants the
// rules rely on; errors name a field, never a value.
func (s *State) UnmarshalBinary(b []byte) error {
	var w wireState
	if err := json.Unmarshal(b, &w); err != nil {
		// encoding/json's messages can quote the input: never pass them on.
		return trustloop.Errorf(trustloop.EINTERNAL, "profile state: malformed encoding")
	}
	if w.V != stateVersion {
		return trustloop.Errorf(trustloop.EINTERNAL, "profile state: unknown version %d", w.V)
	}
	out := State{}
	traits := func(m map[string]wireTrait, live bool, field string) (map[string]Trait, error) {
		if len(m) == 0 {
			return nil, nil
		}
		r := make(map[string]Trait, len(m))
		for k, wt := range m {
			if k == "" || len(k) > MaxNameBytes {
				return nil, corrupt(field + " key")
			}
			if live != (wt.V != nil) || (live && isNull(wt.V)) {
				return nil, corrupt(field + " value")
			}
			if !validNanos(wt.A) || wt.A == 0 || !validNanos(wt.R) {
				return nil, corrupt(field + " time")
			}
			r[k] = Trait{Value: wt.V, At: fromNanos(wt.A), ReceivedAt: fromNanos(wt.R), SourceID: wt.S}
		}
		return r, nil
	}
	var err error
	if out.Traits, err = traits(w.T, true, "trait"); err != nil {
		return err
	}
	if out.Deleted, err = traits(w.D, false, "tombstone"); err != nil {
		return err
	}
	for k := range out.Deleted {
		if _, dup := out.Traits[k]; dup {
			return corrupt("tombstone key")
		}
	}
	if len(out.Traits)+len(out.Deleted) > MaxTraitKeys {
		return corrupt("trait count")
	}
	wc := &w.C
	c := &out.Computed
	if !validNanos(wc.F) || !validNanos(wc.L) || (wc.F == 0) != (wc.L == 0) || wc.F > wc.L {
		return corrupt("first_seen/last_seen")
	}
	c.FirstSeen, c.LastSeen = fromNanos(wc.F), fromNanos(wc.L)
	c.Events, c.ByEvent, c.OtherEvents = wc.N, wc.E, wc.EO
	c.Orders, c.RevenueMicros = wc.O, wc.M
	c.Categories, c.OtherCategories = wc.K, wc.KO
	if !slices.IsSorted(wc.S) || len(slices.Compact(slices.Clone(wc.S))) != len(wc.S) {
		return corrupt("channels")
	}
	c.Sources = wc.S
	if len(wc.PV) > 0 {
		c.LastViewed = make([]View, len(wc.PV))
		for i, v := range wc.PV {
			if v.P == "" || !validNanos(v.A) || v.A == 0 {
				return corrupt("last_viewed")
			}
			c.LastViewed[i] = View{Product: v.P, At: fromNanos(v.A)}
			if i > 0 && !precedes(&c.LastViewed[i-1], &c.LastViewed[i]) {
				return corrupt("last_viewed order")
			}
		}
		seen := make(map[string]bool, len(c.LastViewed))
		for _, v := range c.LastViewed {
			if seen[v.Product] {
				return corrupt("last_viewed")
			}
			seen[v.Product] = true
		}
	}
	*s = out
	return nil
}

func validNanos(n int64) bool {
	return n == 0 || (n > 0 && n < maxTime.UnixNano())
}
