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

// benchProfile is a profile as the ingest benchmark (`trustloop bench`) leaves
// one after a few minutes: an identify with three traits and ~40 track and page
// events of one purpose set, over seven categories and many products.
func benchProfile(tb testing.TB) *State {
	tb.Helper()
	var c Config
	s := &State{}
	purposes := []string{"analytics", "functional", "personalization"}
	in := identify(0, `{"email":"customer42@example.com","first_name":"Alex","plan":"loyalty"}`)
	in.Purposes = purposes
	c.Apply(s, in)
	events := []string{"Product Viewed", "Product Added", "Product List Viewed", "Checkout Started", "Order Completed"}
	cats := []string{"Shoes", "Jackets", "Home & Living", "Electronics", "Sports", "Beauty", "Toys"}
	for i := 1; i <= 40; i++ {
		in := track(i, events[i%len(events)], fmt.Sprintf(`{"product_id":"%d","category":"%s","price":12.5,"revenue":30}`, 100_000+i*7919, cats[i%len(cats)]))
		in.Purposes = purposes
		c.Apply(s, in)
	}
	return s
}

// BenchmarkStateDecode is what every group does first for each profile it
// touches: decode the profile's encoded state into a working copy.
func BenchmarkStateDecode(b *testing.B) {
	enc := encode(b, benchProfile(b))
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		var s State
		if err := s.UnmarshalBinary(enc); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStateEncode is what it does last: encode the changed state.
func BenchmarkStateEncode(b *testing.B) {
	s := benchProfile(b)
	enc := encode(b, s)
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	buf := make([]byte, 0, len(enc)+64)
	for b.Loop() {
		var err error
		if buf, err = s.AppendBinary(buf[:0]); err != nil {
			b.Fatal(err)
		}
	}
}
