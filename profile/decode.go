package profile

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"
)

// decodeBinary decodes a version 2, 3 or 4 state (b[0] says which) straight
// into s. Why not through the wire form as version 1 is: the projection
// decodes a profile for every group that touches it (most events of a busy
// server), and the wire form's maps, the copies of every value and the checks'
// scratch were three quarters of that work (BenchmarkStateDecode). The checks
// are the wire path's, in its order of precedence: anything that does not
// parse, or a live value that is not JSON, is "malformed encoding"; past that,
// the first invariant broken names its field (TestDecodeMatchesWirePath holds
// the two paths to the same answers).
//
// b is copied once; trait values, trait keys and product ids are slices of
// that copy, which nothing writes to (values are never modified in place, see
// Trait).
func (s *State) decodeBinary(b []byte) error {
	ver := b[0]
	buf := bytes.Clone(b[1:])
	d := decoder{r: reader{b: buf}}
	var out State
	out.Traits = d.traits(true, "trait")
	out.Deleted = d.traits(false, "tombstone")
	for k := range out.Deleted {
		if _, dup := out.Traits[k]; dup {
			d.fail(corrupt("tombstone key"))
			break
		}
	}
	if len(out.Traits)+len(out.Deleted) > MaxTraitKeys {
		d.fail(corrupt("trait count"))
	}
	d.computed(&out.Computed, true)
	if ver != stateV2 {
		n := d.r.count(2)
		if ver == stateV4 && n > 0 {
			out.ByPurposes = make([]PurposeComputed, 0, n)
		}
		prev := ""
		for i := 0; i < n && !d.r.bad; i++ {
			k := d.r.count(2)
			ps := make([]string, 0, k)
			for ; k > 0 && !d.r.bad; k-- {
				ps = append(ps, intern(d.r.bytes())) // purpose ids: few, never personal
			}
			if ver == stateV3 {
				// Version 3's sets held totals of another meaning: parsed, then
				// dropped (the totals stay; no purpose sees them).
				var skip Computed
				d.computed(&skip, false)
				continue
			}
			key := purposesKey(ps)
			if len(ps) == 0 || !slices.IsSorted(ps) || hasRepeat(ps) || (i > 0 && prev >= key) {
				d.fail(corrupt("purpose sets"))
			}
			for _, id := range ps {
				if id == "" || len(id) > 32 || strings.ContainsRune(id, ' ') {
					d.fail(corrupt("purpose sets"))
				}
			}
			prev = key
			e := PurposeComputed{Purposes: ps}
			d.computed(&e.Computed, true)
			out.ByPurposes = append(out.ByPurposes, e)
		}
	}
	if d.r.bad || len(d.r.b) != 0 || d.badJSON {
		return malformed()
	}
	if d.err != nil {
		return d.err
	}
	*s = out
	return nil
}

// decoder is a reader plus the first broken invariant: parsing goes on past
// one, because input that does not parse at all is reported as that instead.
type decoder struct {
	r       reader
	err     error
	badJSON bool
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

// str returns the next string, a slice of the decoder's own copy.
func (d *decoder) str() string {
	b := d.r.bytes()
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

func (d *decoder) traits(live bool, field string) map[string]Trait {
	n := d.r.count(5)
	if n == 0 {
		return nil
	}
	m := make(map[string]Trait, n)
	prev := ""
	for i := range n {
		k := d.str()
		v := d.r.bytes()
		a, rcv, src := d.r.varint(), d.r.varint(), d.r.varint()
		// Keys strictly ascending, as written: no repeats, one encoding.
		if (i > 0 && k <= prev) || d.r.bad {
			d.r.bad = true
			return nil
		}
		prev = k
		var t Trait
		if len(v) > 0 {
			t.Value = json.RawMessage(v)
		}
		if live && !json.Valid(t.Value) {
			d.badJSON = true
		}
		switch {
		case k == "" || len(k) > MaxNameBytes || !utf8.ValidString(k):
			d.fail(corrupt(field + " key"))
		case live != (t.Value != nil) || (live && isNull(t.Value)):
			d.fail(corrupt(field + " value"))
		case !validNanos(a) || a == 0 || !validNanos(rcv):
			d.fail(corrupt(field + " time"))
		}
		t.At, t.ReceivedAt, t.SourceID = fromNanos(a), fromNanos(rcv), src
		m[k] = t
	}
	return m
}

func (d *decoder) counts() map[string]int64 {
	n := d.r.count(2)
	if n == 0 {
		return nil
	}
	m := make(map[string]int64, n)
	prev := ""
	for i := range n {
		k := intern(d.r.bytes())
		if (i > 0 && k <= prev) || !utf8.ValidString(k) || d.r.bad {
			d.r.bad = true
			return nil
		}
		m[k], prev = d.r.varint(), k
	}
	return m
}

// computed reads computed traits as version 2 writes them into c; with check,
// it also holds them to toComputed's invariants.
func (d *decoder) computed(c *Computed, check bool) {
	f, l, n := d.r.varint(), d.r.varint(), d.r.varint()
	c.ByEvent, c.OtherEvents = d.counts(), d.r.varint()
	if k := d.r.count(1); k > 0 {
		c.Sources = make([]int64, k)
		for i := range c.Sources {
			c.Sources[i] = d.r.varint()
		}
	}
	c.Orders, c.RevenueMicros = d.r.varint(), d.r.varint()
	if k := d.r.count(2); k > 0 {
		c.LastViewed = make([]View, k)
		for i := range c.LastViewed {
			p := d.str()
			a := d.r.varint()
			if !utf8.ValidString(p) {
				d.r.bad = true
			}
			at := fromNanos(a)
			if !validNanos(a) || a == 0 {
				at = time.Time{} // what the check below refuses
			}
			c.LastViewed[i] = View{Product: p, At: at}
		}
	}
	c.Categories, c.OtherCategories = d.counts(), d.r.varint()
	if d.r.bad || !check {
		return
	}
	if !validNanos(f) || !validNanos(l) || (f == 0) != (l == 0) || f > l {
		d.fail(corrupt("first_seen/last_seen"))
		return
	}
	c.FirstSeen, c.LastSeen, c.Events = fromNanos(f), fromNanos(l), n
	if !slices.IsSorted(c.Sources) || hasRepeat(c.Sources) {
		d.fail(corrupt("channels"))
		return
	}
	for i := range c.LastViewed {
		if c.LastViewed[i].Product == "" || c.LastViewed[i].At.IsZero() {
			d.fail(corrupt("last_viewed"))
			return
		}
		if i > 0 && !precedes(&c.LastViewed[i-1], &c.LastViewed[i]) {
			d.fail(corrupt("last_viewed order"))
			return
		}
	}
	if distinctProducts(c.LastViewed) {
		return
	}
	d.fail(corrupt("last_viewed"))
}

// hasRepeat reports whether a sorted slice holds a value twice.
func hasRepeat[T comparable](s []T) bool {
	for i := 1; i < len(s); i++ {
		if s[i] == s[i-1] {
			return true
		}
	}
	return false
}

// distinctProducts reports whether no product is in vs twice (by pairs for the
// short lists of the default cap, a set past it).
func distinctProducts(vs []View) bool {
	if len(vs) <= 16 {
		for i := range vs {
			for j := range i {
				if vs[i].Product == vs[j].Product {
					return false
				}
			}
		}
		return true
	}
	seen := make(map[string]bool, len(vs))
	for _, v := range vs {
		if seen[v.Product] {
			return false
		}
		seen[v.Product] = true
	}
	return true
}
