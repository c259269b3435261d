package profile

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/collect"
)

// Properties beyond genInput's: members Apply does not read (what reduction
// drops), escaped and repeated names, nulls, and values that are not objects.
var genOddProperties = []string{
	`{"product_id":"p1","name":"A long product name","brand":"B","price":12.5,"category":"c1","position":3}`,
	`{"product\u005fid":"p2","category":null,"category":"c2"}`,
	`{"category":"c1","category":null,"revenue":"3.25"}`,
	`{"sku":"s1","id":7,"total":9,"revenue":null,"extra":{"nested":[1,2,{"x":"y"}]}}`,
	`{"name":"only other members","list":[1,2,3]}`,
	`{}`, `[1,2]`, `"x"`, `null`, `{"product_id":"p3"`,
}

var genOddTimes = []time.Time{{}, time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC),
	time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 12, 7, 1, 2, 3, 456789, time.FixedZone("x", 3600))}

func genPendingInput(t *rapid.T) Input {
	in := genInput(t)
	if in.Type == trustloop.EventTrack && rapid.Bool().Draw(t, "odd properties") {
		in.Properties = []byte(rapid.SampledFrom(genOddProperties).Draw(t, "properties"))
	}
	if rapid.IntRange(0, 4).Draw(t, "odd timestamp") == 0 {
		in.Timestamp = rapid.SampledFrom(genOddTimes).Draw(t, "timestamp")
	}
	if rapid.IntRange(0, 8).Draw(t, "odd receipt") == 0 {
		in.ReceivedAt = rapid.SampledFrom(genOddTimes).Draw(t, "received")
	}
	if rapid.IntRange(0, 8).Draw(t, "unknown type") == 0 {
		in.Type = trustloop.EventType(rapid.IntRange(0, 255).Draw(t, "type byte"))
	}
	return in
}

// An input held encoded applies exactly as the input itself: the same state,
// the same reasons, event after event.
func TestPendingInputApplies(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		c := genConfig(t)
		ins := rapid.SliceOfN(rapid.Custom(genPendingInput), 1, 12).Draw(t, "inputs")
		direct, held := &State{}, &State{}
		var buf []byte
		for _, in := range ins {
			buf = AppendInput(buf, &in)
		}
		rest := buf
		for i, in := range ins {
			back, r, err := ReadInput(rest)
			if err != nil {
				t.Fatalf("input %d: %v", i, err)
			}
			rest = r
			want, got := c.Apply(direct, in), c.Apply(held, back)
			if want.Changed != got.Changed || !slices.Equal(want.Skipped, got.Skipped) {
				t.Fatalf("input %d: result %+v, held %+v", i, want, got)
			}
		}
		if len(rest) != 0 {
			t.Fatalf("%d bytes left", len(rest))
		}
		if !bytes.Equal(mustEncode(t, direct), mustEncode(t, held)) {
			t.Fatalf("states differ:\n%s\n%s", mustEncode(t, direct), mustEncode(t, held))
		}
	})
}

// A track call's properties are held as the members Apply reads, not whole.
func TestPendingInputIsSmall(t *testing.T) {
	m := decode(t, fixture(t, "track.json"), trustloop.EventTrack)
	in := InputFrom(m, 1)
	b := AppendInput(nil, &in)
	if len(b) >= len(in.Properties) {
		t.Fatalf("held input is %d bytes, its properties alone %d", len(b), len(in.Properties))
	}
	back, _, err := ReadInput(b)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(back.Properties, []byte("name")) {
		t.Fatalf("reduced properties keep a member Apply does not read: %s", back.Properties)
	}
}

// Bytes cut anywhere, or changed, fail or decode to something; they never
// panic (and a cut encoding always fails).
func TestReadInputTruncated(t *testing.T) {
	in := track(5, "Order Completed", `{"revenue":"9.99","product_id":"p1","category":"c"}`)
	in.Purposes = []string{"analytics"}
	in.ContextTraits = []byte(`{"email":"x@example.com"}`)
	b := AppendInput(nil, &in)
	for n := range len(b) {
		if _, _, err := ReadInput(b[:n]); err == nil {
			t.Fatalf("ReadInput of the first %d of %d bytes: no error", n, len(b))
		}
	}
	if _, _, err := ReadInput([]byte{1, 0, 7}); err == nil {
		t.Fatal("an unknown time flag read without error")
	}
}

// FuzzPendingInput: whatever the collector accepts, held and read back,
// applies as the input itself; arbitrary bytes never panic ReadInput.
func FuzzPendingInput(f *testing.F) {
	f.Add([]byte(`{"batch":[{"type":"track","userId":"u","event":"Order Completed","properties":{"revenue":"1e3","total":2,"name":"x"}},{"type":"identify","userId":"u","traits":{"a":1}}],"context":{"traits":{"b":null}}}`))
	f.Add([]byte(`{"batch":[{"type":"group","userId":"u","groupId":7,"traits":{"plan":"x"}},{"type":"track","anonymousId":"a","event":"Product Viewed","properties":{"product\u005fid":"p","category":"c","category":null}}]}`))
	f.Add([]byte{3, 0, 1, 2, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _, _ = ReadInput(data)
		ts := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
		req, err := collect.Decode(data, collect.Batch, collect.Options{ReceivedAt: ts, NewID: func() string { return "id" }})
		if err != nil {
			return
		}
		c := Config{LastViewed: 2, MaxEventNames: 3, MaxCategories: 2}
		direct, held := &State{}, &State{}
		for i := range req.Messages {
			in := InputFrom(&req.Messages[i], 1)
			back, rest, err := ReadInput(AppendInput(nil, &in))
			if err != nil || len(rest) != 0 {
				t.Fatalf("message %d: %v, %d bytes left", i, err, len(rest))
			}
			want, got := c.Apply(direct, in), c.Apply(held, back)
			if want.Changed != got.Changed || !slices.Equal(want.Skipped, got.Skipped) {
				t.Fatalf("message %d: result %+v, held %+v", i, want, got)
			}
		}
		a, errA := direct.MarshalBinary()
		b, errB := held.MarshalBinary()
		if (errA == nil) != (errB == nil) || !bytes.Equal(a, b) {
			t.Fatalf("states differ:\n%s\n%s", a, b)
		}
	})
}
