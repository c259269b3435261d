package profile

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/collect"
)

// FuzzApply feeds arbitrary bytes through every way in: as a request body the
// collector accepted, as a message's raw bytes the collector never saw, and as the
// raw members of an Input. Nothing may panic, and every resulting state must seal,
// open to the same state, and show as a Map: no invalid JSON or time may get in.
func FuzzApply(f *testing.F) {
	for _, name := range []string{"track.json", "identify.json"} {
		b, err := os.ReadFile(filepath.Join("..", "testdata", "profile", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint8(trustloop.EventTrack), int64(0))
		f.Add(b, uint8(trustloop.EventIdentify), int64(3600))
	}
	for _, seed := range []string{
		`{"batch":[{"type":"group","userId":"u","groupId":7,"traits":{"plan":"x"}}],"context":{"traits":{"a":null}}}`,
		`{"type":"track","userId":"u","event":"Order Completed","properties":{"revenue":"1e3","total":2}}`,
		`{"a":{"b":[1,2,{"c":"\u00e9\ud800"}]}}`,
		`{"revenue":"-0.0000005","product_id":12,"category":"\u0000"}`,
		"{\"k\xff\":\"v\xfe\"}",
		`{"a":1`,
		`[`,
		`null`,
	} {
		f.Add([]byte(seed), uint8(trustloop.EventGroup), int64(-1))
	}
	f.Fuzz(func(t *testing.T, data []byte, typ uint8, offset int64) {
		cfg := Config{LastViewed: 2, MaxEventNames: 3, MaxCategories: 2}
		ts := time.Unix(0, offset*int64(time.Second)).Add(50 * 365 * 24 * time.Hour)
		s := &State{}
		c := checked{t, cfg}

		if req, err := collect.Decode(data, collect.Batch, collect.Options{ReceivedAt: ts, NewID: func() string { return "id" }}); err == nil {
			for i := range req.Messages {
				c.Apply(s, InputFrom(&req.Messages[i], 1))
			}
		}
		m := &trustloop.Message{Type: trustloop.EventType(typ % 8), Event: "Order Completed", Raw: data, BatchContext: data,
			Timestamp: ts, ReceivedAt: ts}
		c.Apply(s, InputFrom(m, 2))
		m.Event = "Product Viewed"
		c.Apply(s, InputFrom(m, 2))
		for _, et := range []trustloop.EventType{trustloop.EventIdentify, trustloop.EventGroup, trustloop.EventTrack} {
			for _, name := range []string{"Order Completed", "Product Viewed", string(data)} {
				c.Apply(s, Input{Type: et, Event: name, GroupID: string(data), Timestamp: ts, ReceivedAt: ts, SourceID: int64(typ),
					Traits: data, ContextTraits: data, Properties: data})
			}
		}

		b, err := s.MarshalBinary()
		if err != nil {
			t.Fatalf("MarshalBinary: %v", err)
		}
		var back State
		if err := back.UnmarshalBinary(b); err != nil {
			t.Fatalf("UnmarshalBinary(%s): %v", b, err)
		}
		if !statesEqual(&back, s) {
			t.Fatalf("round trip differs: %s", b)
		}
		if b2, _ := back.MarshalBinary(); !bytes.Equal(b, b2) {
			t.Fatalf("re-encoding differs:\n%s\n%s", b, b2)
		}
		if m := cfg.Map(s); len(m["traits"].(map[string]any)) != len(s.Traits) {
			t.Fatalf("Map lost traits: %v", m)
		}
		cfg.Merge(&back, s)
	})
}

// checked applies with a Config and fails on a reason outside the fixed set (a
// reason is a metric label and must never carry input).
type checked struct {
	t *testing.T
	c Config
}

func (c checked) Apply(s *State, in Input) {
	for _, r := range c.c.Apply(s, in).Skipped {
		if !slices.Contains(allReasons, r) {
			c.t.Fatalf("unknown reason %q", r)
		}
	}
}

var allReasons = []Reason{
	ReasonEventTypeUnknown, ReasonTimestampMissing, ReasonTimestampOutOfRange, ReasonTraitsNotObject,
	ReasonTraitsMalformed, ReasonTraitKeyInvalid, ReasonTraitTooLarge, ReasonTraitKeysOverLimit,
	ReasonTraitEvicted, ReasonGroupIDInvalid, ReasonPropertiesNotObject, ReasonPropertiesMalformed,
	ReasonRevenueNotNumeric, ReasonRevenueOutOfRange, ReasonProductIDInvalid, ReasonCategoryInvalid,
	ReasonEventNameTooLong, ReasonEventNamesOverLimit, ReasonCategoriesOverLimit, ReasonContextTraitsInvalid,
}

// FuzzStateCodec feeds arbitrary bytes to the sealed-state decoder (both
// versions): nothing may panic, and whatever decodes must encode again, decode
// to the same state, and encode to the same bytes (one canonical form; for
// version 2 input, the input itself).
func FuzzStateCodec(f *testing.F) {
	s, _ := applyAll(Config{},
		identify(1, `{"plan":"pro","gone":1,"n":[1,{"a":null}]}`),
		identify(2, `{"gone":null}`),
		track(3, "Order Completed", `{"revenue":5,"category":"c"}`),
		track(4, "Product Viewed", `{"product_id":"p"}`))
	for _, st := range []*State{s, {}} {
		b, err := st.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"v":1,"t":{"k":{"v":"x","a":5,"r":6,"s":1}},"c":{"f":1,"l":2,"pv":[{"p":"p","a":3}]}}`))
	f.Add([]byte{stateV2, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		var st State
		if err := st.UnmarshalBinary(data); err != nil {
			return
		}
		b, err := st.MarshalBinary()
		if err != nil {
			t.Fatalf("a decoded state does not encode: %v", err)
		}
		var back State
		if err := back.UnmarshalBinary(b); err != nil {
			t.Fatalf("an encoded state does not decode: %v", err)
		}
		if !sameState(t, &back, &st) {
			t.Fatal("round trip changed the state")
		}
		if again, _ := back.MarshalBinary(); !bytes.Equal(again, b) {
			t.Fatal("two encodings of one state")
		}
		// Version 4 has one encoding per state: what decodes is what the
		// encoder writes.
		if data[0] == stateV4 && !bytes.Equal(b, data) {
			t.Fatalf("a non-canonical version 4 input decoded:\n in %x\nout %x", data, b)
		}
	})
}
