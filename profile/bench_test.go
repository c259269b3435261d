package profile

import (
	"fmt"
	"testing"

	"github.com/trustloop/trustloop"
)

// BenchmarkTrack is InputFrom+Apply for a typical ~760-byte analytics.js track
// call (a product view with properties and a category) on a warm profile.
func BenchmarkTrack(b *testing.B) {
	m := decode(b, fixture(b, "track.json"), trustloop.EventTrack)
	var c Config
	s := &State{}
	c.Apply(s, InputFrom(m, 1))
	b.SetBytes(int64(len(m.Raw)))
	b.ReportAllocs()
	for b.Loop() {
		c.Apply(s, InputFrom(m, 1))
	}
}

// BenchmarkIdentify is InputFrom+Apply for an identify with 10 traits; every trait
// is rewritten (the event is newer each time) so the write path is measured.
func BenchmarkIdentify(b *testing.B) {
	m := decode(b, fixture(b, "identify.json"), trustloop.EventIdentify)
	var c Config
	s := &State{}
	b.SetBytes(int64(len(m.Raw)))
	b.ReportAllocs()
	for b.Loop() {
		in := InputFrom(m, 1)
		// A newer event each time, so that every trait is written.
		m.Timestamp = m.Timestamp.Add(1)
		c.Apply(s, in)
	}
}

// BenchmarkIdentifyUnchanged is the same identify applied again: the read-only
// path of a replay or a client re-sending its traits.
func BenchmarkIdentifyUnchanged(b *testing.B) {
	m := decode(b, fixture(b, "identify.json"), trustloop.EventIdentify)
	var c Config
	s := &State{}
	c.Apply(s, InputFrom(m, 1))
	b.ReportAllocs()
	for b.Loop() {
		c.Apply(s, InputFrom(m, 1))
	}
}

// BenchmarkTraitKeyCap is the pathological case: a profile at the 500-key cap and
// an identify whose context.traits bring a new key (evicting the largest) each time.
func BenchmarkTraitKeyCap(b *testing.B) {
	var c Config
	s := &State{}
	c.Apply(s, identify(0, manyTraits(MaxTraitKeys, `1`)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		in := identify(i, "")
		in.ContextTraits = []byte(fmt.Sprintf(`{"a%09d":1}`, MaxTraitKeys*1000-i))
		c.Apply(s, in)
	}
}
