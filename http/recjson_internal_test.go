package http

import (
	"encoding/json"
	"math"
	"testing"

	"pgregory.net/rapid"

	"github.com/trustloop/trustloop/recommend"
)

// The recommendation answer's own encoder writes exactly what encoding/json
// writes, for any ids (HTML characters, controls, non-ASCII, invalid UTF-8,
// U+2028) and any scores (tiny, huge, negative zero); where it cannot, it
// says so and encoding/json is used.
func TestRecommendationsJSONEqualsEncodingJSON(t *testing.T) {
	str := rapid.OneOf(
		rapid.StringMatching(`[a-zA-Z0-9_\-./:]{0,12}`),
		rapid.String(),
		rapid.SampledFrom([]string{"", `a"b`, `a\b`, "<p>&amp;</p>", "\x00\x1f\x7f", "caf\u00e9", "\u2028\u2029", "\xff\xfe", "p-1"}),
	)
	num := rapid.OneOf(
		rapid.Float64(),
		rapid.Float64Range(0, 10),
		rapid.SampledFrom([]float64{0, math.Copysign(0, -1), 1e-6, 9.99e-7, 1e21, 9.99e20, 1, 0.1, 1.0 / 3, math.MaxFloat64, math.SmallestNonzeroFloat64, math.Inf(1), math.NaN()}),
	)
	rapid.Check(t, func(t *rapid.T) {
		v := recommendationsView{ProfileID: str.Draw(t, "profile"), Personalized: rapid.Bool().Draw(t, "personalized"), Reason: str.Draw(t, "reason")}
		if rapid.IntRange(0, 9).Draw(t, "nil items") > 0 {
			v.Items = []recommend.Rec{}
			for range rapid.IntRange(0, 4).Draw(t, "items") {
				r := recommend.Rec{ItemID: str.Draw(t, "item"), Score: num.Draw(t, "score")}
				if rapid.IntRange(0, 9).Draw(t, "nil because") > 0 {
					r.Because = []recommend.Because{}
					for range rapid.IntRange(0, 3).Draw(t, "because") {
						r.Because = append(r.Because, recommend.Because{ItemID: str.Draw(t, "because item"), Weight: num.Draw(t, "weight")})
					}
				}
				v.Items = append(v.Items, r)
			}
		}
		got, ok := v.appendJSON(nil)
		want, err := json.Marshal(v)
		if !ok {
			return // encoding/json decides (and may refuse, as for NaN)
		}
		if err != nil || string(got) != string(want) {
			t.Fatalf("appendJSON %s\nencoding/json %s (%v)", got, want, err)
		}
	})
}

// ordinaryView is a personalized answer of ten items as the API gives them.
func ordinaryView() recommendationsView {
	v := recommendationsView{ProfileID: "1234567", Personalized: true}
	for i := range 10 {
		v.Items = append(v.Items, recommend.Rec{ItemID: "p" + string(rune('0'+i)) + "12345", Score: 0.123456789 * float64(i+1),
			Because: []recommend.Because{{ItemID: "p9876", Weight: 0.5}, {ItemID: "p5432", Weight: 0.25}, {ItemID: "p1", Weight: 1.0 / 3}}})
	}
	return v
}

// An ordinary answer takes the fast path (the property test above lets it
// decline), with encoding/json's bytes, by value and by pointer alike.
func TestRecommendationsJSONFastPath(t *testing.T) {
	v := ordinaryView()
	want, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []jsonAppender{v, &v} {
		got, ok := a.appendJSON(nil)
		if !ok || string(got) != string(want) {
			t.Fatalf("appendJSON (%T) = %s, %v; want %s", a, got, ok, want)
		}
	}
}

func BenchmarkRecommendationsJSON(b *testing.B) {
	v := ordinaryView()
	b.Run("encoding/json", func(b *testing.B) {
		for range b.N {
			json.Marshal(v)
		}
	})
	b.Run("appendJSON", func(b *testing.B) {
		buf := make([]byte, 0, 1024)
		for range b.N {
			buf, _ = v.appendJSON(buf[:0])
		}
	})
}
