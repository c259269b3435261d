package profile

import (
	"strings"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
)

func TestMarshalFormat(t *testing.T) {
	s, _ := applyAll(Config{},
		identify(1, `{"plan":"<pro & co>","gone":1}`),
		identify(2, `{"gone":null}`),
		track(3, "Order Completed", `{"revenue":5,"category":"c"}`),
		track(4, "Product Viewed", `{"product_id":"p"}`),
	)
	b := encode(t, s)
	if b[0] != stateV4 {
		t.Fatalf("first byte %#x, want version 4", b[0])
	}
	var back State
	if err := back.UnmarshalBinary(b); err != nil || !sameState(t, &back, s) {
		t.Fatalf("version 4 round trip: %v", err)
	}
	// Equal states, equal bytes (map order does not leak in).
	for range 20 {
		if again := encode(t, back.Clone()); string(again) != string(b) {
			t.Fatal("equal states encoded to different bytes")
		}
	}
	// Version 1 (JSON), as stores written before hold it, reads to the same state.
	v1 := `{"v":1,` +
		`"t":{"plan":{"v":"<pro & co>","a":1714564801000000000,"r":1714564802000000000,"s":1}},` +
		`"d":{"gone":{"a":1714564802000000000,"r":1714564803000000000,"s":1}},` +
		`"c":{"f":1714564801000000000,"l":1714564804000000000,"n":4,` +
		`"e":{"Order Completed":1,"Product Viewed":1,"identify":2},"s":[1],"o":1,"m":5000000,` +
		`"pv":[{"p":"p","a":1714564804000000000}],"k":{"c":1}}}`
	var old State
	if err := old.UnmarshalBinary([]byte(v1)); err != nil || !sameState(t, &old, s) {
		t.Fatalf("version 1 state: %v", err)
	}
	// The empty state: no traits, no tombstones, eleven zero numbers and empty
	// lists, and no purpose sets.
	if b := encode(t, &State{}); string(b) != "\x04"+strings.Repeat("\x00", 14) {
		t.Errorf("empty state = %x", b)
	}
}

// Corrupt version 2 input is refused with an error that names no value, and
// changes nothing.
func TestUnmarshalV2Errors(t *testing.T) {
	const secret = "jane@example.com"
	s, _ := applyAll(Config{},
		identify(1, `{"email":"`+secret+`"}`),
		track(2, "Product Viewed", `{"product_id":"p","category":"c"}`))
	good := encode(t, s)
	dupKey := encode(t, &State{Computed: Computed{ByEvent: map[string]int64{"a": 1, "b": 2}}})
	dupKey[bytesIndex(dupKey, 'b')] = 'a'
	badJSON := slicesReplace(encode(t, s), []byte(`"`+secret+`"`), []byte(`{`+secret+`"`))
	tests := []struct {
		name string
		in   []byte
	}{
		{"truncated", good[:len(good)-1]},
		{"trailing bytes", append(bytesClone(good), 0)},
		{"only the version", []byte{stateV2}},
		{"huge count", append([]byte{stateV2}, 0xff, 0xff, 0xff, 0xff, 0x0f)},
		{"repeated key", dupKey},
		{"value not JSON", badJSON},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := State{Traits: map[string]Trait{"keep": {}}}
			err := st.UnmarshalBinary(tt.in)
			if trustloop.ErrorCode(err) != trustloop.EINTERNAL {
				t.Fatalf("error %v, want EINTERNAL", err)
			}
			if strings.Contains(err.Error(), "jane") {
				t.Errorf("error quotes the data: %v", err)
			}
			if _, ok := st.Traits["keep"]; !ok || len(st.Traits) != 1 {
				t.Error("a failed UnmarshalBinary changed the state")
			}
		})
	}
}

func bytesIndex(b []byte, c byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == c {
			return i
		}
	}
	panic("byte not found")
}

func bytesClone(b []byte) []byte { return append([]byte(nil), b...) }

// slicesReplace replaces old by new in b, same length.
func slicesReplace(b, old, new []byte) []byte {
	s := strings.Replace(string(b), string(old), string(new), 1)
	if len(s) != len(b) || s == string(b) {
		panic("replace did not apply")
	}
	return []byte(s)
}

func TestUnmarshalErrors(t *testing.T) {
	const secret = "jane@example.com"
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"not JSON", `{"v":1,"t":{"email":{"v":"` + secret + `"`, "malformed"},
		{"wrong type", `{"v":1,"t":{"email":{"v":"` + secret + `","a":"` + secret + `"}}}`, "malformed"},
		{"invalid value", `{"v":1,"t":{"email":{"v":` + secret + `,"a":1}}}`, "malformed"},
		{"unknown version", `{"v":2}`, "unknown version 2"},
		{"no version", `{}`, "unknown version 0"},
		{"live trait without a value", `{"v":1,"t":{"email":{"a":1}},"c":{}}`, "trait value"},
		{"live trait set to null", `{"v":1,"t":{"email":{"v":null,"a":1}},"c":{}}`, "trait value"},
		{"tombstone with a value", `{"v":1,"d":{"email":{"v":"` + secret + `","a":1}},"c":{}}`, "tombstone value"},
		{"trait without a time", `{"v":1,"t":{"email":{"v":1,"a":0}},"c":{}}`, "trait time"},
		{"time out of range", `{"v":1,"t":{"email":{"v":1,"a":-5}},"c":{}}`, "trait time"},
		{"key both live and deleted", `{"v":1,"t":{"k":{"v":1,"a":1}},"d":{"k":{"a":1}},"c":{}}`, "tombstone key"},
		{"empty key", `{"v":1,"t":{"":{"v":1,"a":1}},"c":{}}`, "trait key"},
		{"last seen before first", `{"v":1,"c":{"f":5,"l":4}}`, "first_seen/last_seen"},
		{"first seen alone", `{"v":1,"c":{"f":5}}`, "first_seen/last_seen"},
		{"channels unsorted", `{"v":1,"c":{"s":[2,1]}}`, "channels"},
		{"channels repeated", `{"v":1,"c":{"s":[1,1]}}`, "channels"},
		{"views out of order", `{"v":1,"c":{"pv":[{"p":"` + secret + `","a":1},{"p":"b","a":2}]}}`, "last_viewed order"},
		{"views repeated", `{"v":1,"c":{"pv":[{"p":"a","a":2},{"p":"a","a":1}]}}`, "last_viewed"},
		{"view without a product", `{"v":1,"c":{"pv":[{"p":"","a":2}]}}`, "last_viewed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := State{Traits: map[string]Trait{"keep": {}}}
			err := s.UnmarshalBinary([]byte(tt.in))
			if err == nil {
				t.Fatal("no error")
			}
			if trustloop.ErrorCode(err) != trustloop.EINTERNAL || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want EINTERNAL about %q", err, tt.want)
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "jane") {
				t.Errorf("error quotes the data: %v", err)
			}
			if _, ok := s.Traits["keep"]; !ok || len(s.Traits) != 1 {
				t.Error("a failed UnmarshalBinary changed the state")
			}
		})
	}
}

func TestMarshalErrors(t *testing.T) {
	tests := []struct {
		name string
		s    State
		want string
	}{
		{"invalid trait value", State{Traits: map[string]Trait{"k": {Value: []byte(`{jane`), At: at(1)}}}, "trait value"},
		{"live trait without a value", State{Traits: map[string]Trait{"k": {At: at(1)}}}, "trait value"},
		{"trait without a time", State{Traits: map[string]Trait{"k": {Value: []byte(`1`)}}}, "trait time"},
		{"time beyond the range", State{Computed: Computed{FirstSeen: at(1), LastSeen: time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)}}, "last_seen"},
		{"view without a time", State{Computed: Computed{LastViewed: []View{{Product: "p"}}}}, "last_viewed"},
	}
	for _, tt := range tests {
		_, err := tt.s.MarshalBinary()
		if trustloop.ErrorCode(err) != trustloop.EINTERNAL || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "jane") {
			t.Errorf("%s: error %v, want EINTERNAL about %q", tt.name, err, tt.want)
		}
	}
}

func TestClone(t *testing.T) {
	s, _ := applyAll(Config{},
		identify(1, `{"plan":"pro","gone":null}`),
		track(3, "Product Viewed", `{"product_id":"p","category":"c"}`),
	)
	c := s.Clone()
	if !sameState(t, c, s) {
		t.Fatal("clone differs")
	}
	before := encode(t, s)
	Config{}.Apply(c, track(4, "Product Viewed", `{"product_id":"q","category":"d"}`))
	Config{}.Apply(c, identify(5, `{"plan":"free","gone":1}`))
	c.Computed.Sources[0] = 9
	if string(encode(t, s)) != string(before) {
		t.Error("changing the clone changed the original")
	}
}
