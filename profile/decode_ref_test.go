package profile

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// The decoder of version 2–4 states before decodeBinary: through the wire form
// and fromWire, as version 1 still goes. Kept here as the reference the direct
// decoder must agree with.

func refUnmarshal(s *State, b []byte) error {
	var w wireState
	var bp []wirePurposeComputed
	if !decodeV2(b[1:], &w, &bp, b[0] != stateV2) {
		return malformed()
	}
	if b[0] == stateV3 {
		bp = nil
	}
	var out State
	if err := out.fromWire(&w); err != nil {
		return err
	}
	for i, e := range bp {
		if len(e.P) == 0 || !slices.IsSorted(e.P) || len(slices.Compact(slices.Clone(e.P))) != len(e.P) ||
			(i > 0 && purposesKey(bp[i-1].P) >= purposesKey(e.P)) {
			return corrupt("purpose sets")
		}
		for _, id := range e.P {
			if id == "" || len(id) > 32 || strings.ContainsRune(id, ' ') {
				return corrupt("purpose sets")
			}
		}
		c, err := toComputed(&e.C)
		if err != nil {
			return err
		}
		out.ByPurposes = append(out.ByPurposes, PurposeComputed{Purposes: e.P, Computed: c})
	}
	*s = out
	return nil
}

// wirePurposeComputed is a purpose set as the reference reads it.
type wirePurposeComputed struct {
	P []string
	C wireComputed
}

func (r *reader) traits() map[string]wireTrait {
	n := r.count(5)
	if n == 0 {
		return nil
	}
	m := make(map[string]wireTrait, n)
	prev := ""
	for i := range n {
		k := string(r.bytes())
		var t wireTrait
		if v := r.bytes(); len(v) > 0 {
			t.V = bytes.Clone(v)
		}
		t.A, t.R, t.S = r.varint(), r.varint(), r.varint()
		// Keys strictly ascending, as written: no repeats, one encoding.
		if (i > 0 && k <= prev) || r.bad {
			r.bad = true
			return nil
		}
		m[k], prev = t, k
	}
	return m
}

func (r *reader) counts() map[string]int64 {
	n := r.count(2)
	if n == 0 {
		return nil
	}
	m := make(map[string]int64, n)
	prev := ""
	for i := range n {
		k := intern(r.bytes())
		if (i > 0 && k <= prev) || !utf8.ValidString(k) || r.bad {
			r.bad = true
			return nil
		}
		m[k], prev = r.varint(), k
	}
	return m
}

// decodeV2 reads a version 2 state (after its first byte) into the wire form;
// with v3, the ByPurposes that follow it.
func decodeV2(b []byte, w *wireState, bp *[]wirePurposeComputed, v3 bool) bool {
	r := &reader{b: b}
	w.V = stateVersion
	w.T, w.D = r.traits(), r.traits()
	if !r.computed(&w.C) {
		return false
	}
	if v3 {
		*bp = []wirePurposeComputed{}
		for n := r.count(2); n > 0 && !r.bad; n-- {
			var e wirePurposeComputed
			for k := r.count(2); k > 0 && !r.bad; k-- {
				e.P = append(e.P, intern(r.bytes())) // purpose ids: few, never personal
			}
			if !r.computed(&e.C) {
				return false
			}
			*bp = append(*bp, e)
		}
	}
	if r.bad || len(r.b) != 0 {
		return false
	}
	// Live values are JSON (version 1's decoder checked this by parsing).
	for _, t := range w.T {
		if !json.Valid(t.V) {
			return false
		}
	}
	return true
}

// computed reads computed traits as version 2 writes them.
func (r *reader) computed(c *wireComputed) bool {
	c.F, c.L, c.N = r.varint(), r.varint(), r.varint()
	c.E, c.EO = r.counts(), r.varint()
	if n := r.count(1); n > 0 {
		c.S = make([]int64, n)
		for i := range c.S {
			c.S[i] = r.varint()
		}
	}
	c.O, c.M = r.varint(), r.varint()
	if n := r.count(2); n > 0 {
		c.PV = make([]wireView, n)
		for i := range c.PV {
			c.PV[i] = wireView{P: string(r.bytes()), A: r.varint()}
			if !utf8.ValidString(c.PV[i].P) {
				return false
			}
		}
	}
	c.K, c.KO = r.counts(), r.varint()
	return !r.bad
}

// checkAgainstWirePath decodes b both ways and fails t where they differ: in
// whether it decodes, in the error, or in the state.
func checkAgainstWirePath(t *testing.T, b []byte) {
	t.Helper()
	var got, want State
	gotErr, wantErr := got.UnmarshalBinary(b), refUnmarshal(&want, b)
	switch {
	case (gotErr == nil) != (wantErr == nil):
		t.Fatalf("%x: direct decoder %v, wire path %v", b, gotErr, wantErr)
	case gotErr != nil:
		if gotErr.Error() != wantErr.Error() {
			t.Fatalf("%x: direct decoder %v, wire path %v", b, gotErr, wantErr)
		}
	case !sameState(t, &got, &want):
		t.Fatalf("%x: the two decoders give different states", b)
	}
}

// TestDecodeMatchesWirePath holds decodeBinary to the wire path's answers on
// states the rules made and on many corruptions of them: every byte flipped,
// every truncation, random overwrites and insertions.
func TestDecodeMatchesWirePath(t *testing.T) {
	seeds := [][]byte{}
	for _, s := range []*State{benchProfile(t), {}} {
		seeds = append(seeds, encode(t, s))
	}
	s, _ := applyAll(Config{},
		identify(1, `{"plan":"pro","gone":1,"n":[1,{"a":null}]}`),
		identify(2, `{"gone":null}`),
		track(3, "Order Completed", `{"revenue":5,"category":"c"}`),
		track(4, "Product Viewed", `{"product_id":"p"}`))
	seeds = append(seeds, encode(t, s))
	// Version 2: version 4 without the purpose sets' count, for the states
	// that have no sets.
	for _, st := range []*State{s, {}} {
		if len(st.ByPurposes) != 0 {
			t.Fatal("setup: a state with purpose sets has no version 2 form")
		}
		b := encode(t, st)
		seeds = append(seeds, append([]byte{stateV2}, b[1:len(b)-1]...))
	}
	for _, b := range seeds[:len(seeds):len(seeds)] {
		v3 := bytes.Clone(b)
		v3[0] = stateV3
		seeds = append(seeds, v3)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for _, seed := range seeds {
		checkAgainstWirePath(t, seed)
		for i := range seed {
			if i == 0 {
				continue
			}
			for _, x := range []byte{0x01, 0x80, 0xff} {
				b := bytes.Clone(seed)
				b[i] ^= x
				checkAgainstWirePath(t, b)
			}
			checkAgainstWirePath(t, seed[:i])
		}
		for range 3000 {
			b := bytes.Clone(seed)
			for range 1 + r.IntN(3) {
				i := 1 + r.IntN(len(b))
				switch r.IntN(3) {
				case 0:
					if i < len(b) {
						b[i] = byte(r.IntN(256))
					}
				case 1:
					b = append(b[:i:i], append([]byte{byte(r.IntN(256))}, b[i:]...)...)
				default:
					if i < len(b) {
						b = append(b[:i:i], b[i+1:]...)
					}
				}
			}
			checkAgainstWirePath(t, b)
		}
	}
}

// FuzzDecodeMatchesWirePath is the same comparison on arbitrary input.
func FuzzDecodeMatchesWirePath(f *testing.F) {
	f.Add(encode(f, benchProfile(f)))
	f.Add([]byte{stateV2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 || (data[0] != stateV2 && data[0] != stateV3 && data[0] != stateV4) {
			return
		}
		checkAgainstWirePath(t, data)
	})
}

// TestDecodePurposeSetsChecked: a version 4 state whose purpose sets break an
// invariant is refused, as the reference refuses it (random corruption seldom
// makes these).
func TestDecodePurposeSetsChecked(t *testing.T) {
	long := strings.Repeat("p", 33)
	for _, sets := range [][][]string{
		{{}},           // an empty set
		{{"b", "a"}},   // not sorted
		{{"a", "a"}},   // a repeat
		{{"a b"}},      // an id with a space
		{{long}},       // an id too long
		{{""}},         // an empty id
		{{"b"}, {"a"}}, // sets out of order
		{{"a"}, {"a"}}, // a set twice
	} {
		s := benchProfile(t)
		c := s.ByPurposes[0].Computed
		s.ByPurposes = nil
		for _, p := range sets {
			s.ByPurposes = append(s.ByPurposes, PurposeComputed{Purposes: p, Computed: cloneComputed(c)})
		}
		b := encode(t, s)
		var got State
		if err := got.UnmarshalBinary(b); err == nil || !strings.Contains(err.Error(), "purpose sets") {
			t.Errorf("purpose sets %q: %v", sets, err)
		}
		checkAgainstWirePath(t, b)
	}
}
