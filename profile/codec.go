package profile

import (
	"encoding/binary"
	"encoding/json"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/trustloop/trustloop"
)

// The sealed form of a State. Version 2 (written since 2026-11-25) is binary:
//
//	0x02
//	traits      uvarint n, then n × (key, value, at, receivedAt, sourceID)
//	tombstones  the same, with empty values
//	computed    firstSeen lastSeen events, byEvent (uvarint n, n × (name, count)),
//	            otherEvents, sources (uvarint n, n × id), orders, revenueMicros,
//	            lastViewed (uvarint n, n × (product, at)), categories (as byEvent),
//	            otherCategories
//
// strings and values are a uvarint length and the bytes, numbers and times
// (int64 Unix nanoseconds, 0: unset) are varints, and map entries come in key
// order, so equal states encode to equal bytes. Why not JSON any more: the
// projection encodes a profile at every flush and keeps hot profiles encoded in
// memory, and encoding/json was 7 % of a loaded server's CPU (docs/performance.md).
//
// Version 1, still read, is JSON with short member names:
//
//	{"v":1,
//	 "t":{key:{"v":value,"a":at,"r":receivedAt,"s":sourceID}},   live traits
//	 "d":{key:{"a":at,"r":receivedAt,"s":sourceID}},             tombstones
//	 "c":{"f":firstSeen,"l":lastSeen,"n":events,"e":{name:count},"eo":other,
//	      "s":[sourceID],"o":orders,"m":revenueMicros,
//	      "pv":[{"p":product,"a":at}],"k":{category:count},"ko":other}}
//
// Version 1 decodes to a wire form that fromWire checks; versions 2 to 4 decode
// straight into a State (decode.go) with the same checks, in the same order.
// Readers refuse versions they do not know.
const stateVersion = 1

// stateV2 is the first byte of a version 2 state (a version 1 state starts with
// '{').
const stateV2 = 0x02

// stateV4 is the first byte of a version 4 state: version 2 followed by
// ByPurposes (count, then per set: its purposes and its computed traits as
// version 2 writes Computed), Computed holding only events of no known purposes.
// A version 1 or 2 state predates consent enforcement and has no ByPurposes: no
// purpose sees its computed traits. Version 3 (written for a few hours on
// 2026-11-25) had the same layout with Computed holding the totals: it is read
// with its purpose sets dropped (the totals stay; no purpose sees them).
const (
	stateV3 = 0x03
	stateV4 = 0x04
)

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

// MarshalBinary encodes s for sealing at rest (version 2). Errors name a field,
// never a value.
func (s *State) MarshalBinary() ([]byte, error) {
	return s.AppendBinary(make([]byte, 0, 512))
}

// AppendBinary appends what MarshalBinary returns to b.
func (s *State) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, stateV4)
	var err error
	if b, err = appendTraits(b, s.Traits, true, "trait"); err != nil {
		return nil, err
	}
	if b, err = appendTraits(b, s.Deleted, false, "tombstone"); err != nil {
		return nil, err
	}
	if b, err = appendComputed(b, &s.Computed); err != nil {
		return nil, err
	}
	b = binary.AppendUvarint(b, uint64(len(s.ByPurposes)))
	for i := range s.ByPurposes {
		e := &s.ByPurposes[i]
		b = binary.AppendUvarint(b, uint64(len(e.Purposes)))
		for _, id := range e.Purposes {
			b = appendString(b, id)
		}
		if b, err = appendComputed(b, &e.Computed); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// appendComputed appends c as version 2 encodes the computed traits.
func appendComputed(b []byte, c *Computed) ([]byte, error) {
	f, ok := nanos(c.FirstSeen)
	if !ok {
		return nil, corrupt("first_seen")
	}
	l, ok := nanos(c.LastSeen)
	if !ok {
		return nil, corrupt("last_seen")
	}
	b = binary.AppendVarint(b, f)
	b = binary.AppendVarint(b, l)
	b = binary.AppendVarint(b, c.Events)
	b = appendCounts(b, c.ByEvent)
	b = binary.AppendVarint(b, c.OtherEvents)
	b = binary.AppendUvarint(b, uint64(len(c.Sources)))
	for _, id := range c.Sources {
		b = binary.AppendVarint(b, id)
	}
	b = binary.AppendVarint(b, c.Orders)
	b = binary.AppendVarint(b, c.RevenueMicros)
	b = binary.AppendUvarint(b, uint64(len(c.LastViewed)))
	for _, v := range c.LastViewed {
		a, ok := nanos(v.At)
		if !ok || a == 0 {
			return nil, corrupt("last_viewed time")
		}
		b = appendString(b, v.Product)
		b = binary.AppendVarint(b, a)
	}
	b = appendCounts(b, c.Categories)
	return binary.AppendVarint(b, c.OtherCategories), nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// sortedKeys returns m's keys in order, in buf when they fit (a state is
// encoded at every group that touches it: no garbage for the few keys of a map).
func sortedKeys[V any](m map[string]V, buf *[16]string) []string {
	keys := buf[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func appendTraits(b []byte, m map[string]Trait, live bool, field string) ([]byte, error) {
	b = binary.AppendUvarint(b, uint64(len(m)))
	var buf [16]string
	for _, k := range sortedKeys(m, &buf) {
		t := m[k]
		if !utf8.ValidString(k) {
			return nil, corrupt(field + " key")
		}
		if live && (t.Value == nil || !json.Valid(t.Value)) {
			return nil, corrupt(field + " value")
		}
		a, ok := nanos(t.At)
		if !ok || a == 0 {
			return nil, corrupt(field + " time")
		}
		r, ok := nanos(t.ReceivedAt)
		if !ok {
			return nil, corrupt(field + " time")
		}
		b = appendString(b, k)
		if live {
			b = binary.AppendUvarint(b, uint64(len(t.Value)))
			b = append(b, t.Value...)
		} else {
			b = append(b, 0)
		}
		b = binary.AppendVarint(b, a)
		b = binary.AppendVarint(b, r)
		b = binary.AppendVarint(b, t.SourceID)
	}
	return b, nil
}

func appendCounts(b []byte, m map[string]int64) []byte {
	b = binary.AppendUvarint(b, uint64(len(m)))
	var buf [16]string
	for _, k := range sortedKeys(m, &buf) {
		b = appendString(b, k)
		b = binary.AppendVarint(b, m[k])
	}
	return b
}

// names interns the counters' names of decoded states (event names and
// categories): few distinct ones, decoded at every group that touches a
// profile, so they are allocated once instead of each time. Bounded: past
// maxNames, names are allocated as usual. Not trait keys: a trait key could be
// personal (a caller's choice), and this table outlives every profile.
var (
	names     sync.Map // string -> string
	namesKept atomic.Int64
)

const maxNames = 50_000

// intern returns b as a string, the table's copy when it has one. A sync.Map:
// the parallel part of a group decodes on several CPUs at once, and reads
// never write to shared memory (a read lock's counter did, on every name).
func intern(b []byte) string {
	if s, ok := names.Load(string(b)); ok { // no allocation for the lookup
		return s.(string)
	}
	s := string(b)
	if namesKept.Load() < maxNames {
		if got, loaded := names.LoadOrStore(s, s); loaded {
			return got.(string)
		}
		namesKept.Add(1)
	}
	return s
}

// reader decodes version 2; the first error sticks.
type reader struct {
	b   []byte
	bad bool
	tmp [binary.MaxVarintLen64]byte
}

func (r *reader) varint() int64 {
	v, n := binary.Varint(r.b)
	// Only the shortest form: one state, one encoding.
	if n <= 0 || n != len(binary.AppendVarint(r.tmp[:0], v)) {
		r.bad, r.b = true, nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

// count reads a length of items each at least min bytes long: a count the rest
// of the input cannot hold is corrupt (and must not size an allocation).
func (r *reader) count(min int) int {
	v, n := binary.Uvarint(r.b)
	if n <= 0 || n != len(binary.AppendUvarint(r.tmp[:0], v)) || v > uint64(len(r.b)-n)/uint64(min) {
		r.bad, r.b = true, nil
		return 0
	}
	r.b = r.b[n:]
	return int(v)
}

func (r *reader) bytes() []byte {
	n := r.count(1)
	if r.bad {
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// UnmarshalBinary decodes what MarshalBinary encoded and checks the invariants the
// rules rely on; errors name a field, never a value.
func (s *State) UnmarshalBinary(b []byte) error {
	if len(b) > 0 && (b[0] == stateV2 || b[0] == stateV3 || b[0] == stateV4) {
		return s.decodeBinary(b)
	}
	var w wireState
	if err := json.Unmarshal(b, &w); err != nil {
		// encoding/json's messages can quote the input: never pass them on.
		return malformed()
	}
	return s.fromWire(&w)
}

// malformed is the error of an encoding that does not parse.
func malformed() error {
	return trustloop.Errorf(trustloop.EINTERNAL, "profile state: malformed encoding")
}

// fromWire checks a decoded wire form (version 1's JSON) and sets s from it.
func (s *State) fromWire(w *wireState) error {
	if w.V != stateVersion {
		return trustloop.Errorf(trustloop.EINTERNAL, "profile state: unknown version %d", w.V)
	}
	out := State{}
	traits := func(m map[string]wireTrait, live bool, field string) (map[string]Trait, error) {
		if len(m) == 0 {
			return nil, nil
		}
		r := make(map[string]Trait, len(m))
		// In key order, so that of several broken traits the same one is
		// named every time (the binary decoder reads them in that order).
		for _, k := range slices.Sorted(maps.Keys(m)) {
			wt := m[k]
			if k == "" || len(k) > MaxNameBytes || !utf8.ValidString(k) {
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
	if out.Computed, err = toComputed(&w.C); err != nil {
		return err
	}
	*s = out
	return nil
}

// toComputed checks decoded computed traits and returns them.
func toComputed(wc *wireComputed) (Computed, error) {
	var out Computed
	c := &out
	if !validNanos(wc.F) || !validNanos(wc.L) || (wc.F == 0) != (wc.L == 0) || wc.F > wc.L {
		return Computed{}, corrupt("first_seen/last_seen")
	}
	c.FirstSeen, c.LastSeen = fromNanos(wc.F), fromNanos(wc.L)
	c.Events, c.ByEvent, c.OtherEvents = wc.N, wc.E, wc.EO
	c.Orders, c.RevenueMicros = wc.O, wc.M
	c.Categories, c.OtherCategories = wc.K, wc.KO
	if !slices.IsSorted(wc.S) || len(slices.Compact(slices.Clone(wc.S))) != len(wc.S) {
		return Computed{}, corrupt("channels")
	}
	c.Sources = wc.S
	if len(wc.PV) > 0 {
		c.LastViewed = make([]View, len(wc.PV))
		for i, v := range wc.PV {
			if v.P == "" || !validNanos(v.A) || v.A == 0 {
				return Computed{}, corrupt("last_viewed")
			}
			c.LastViewed[i] = View{Product: v.P, At: fromNanos(v.A)}
			if i > 0 && !precedes(&c.LastViewed[i-1], &c.LastViewed[i]) {
				return Computed{}, corrupt("last_viewed order")
			}
		}
		seen := make(map[string]bool, len(c.LastViewed))
		for _, v := range c.LastViewed {
			if seen[v.Product] {
				return Computed{}, corrupt("last_viewed")
			}
			seen[v.Product] = true
		}
	}
	return out, nil
}

func validNanos(n int64) bool {
	return n == 0 || (n > 0 && n < maxTime.UnixNano())
}
