package profile

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

func TestReadMembers(t *testing.T) {
	tests := []struct {
		raw  string
		want []string // key=value pairs; nil when malformed
	}{
		{`{}`, []string{}},
		{` { } `, []string{}},
		{`{"a":1,"b":"x","c":null,"d":[1,{"e":true}],"f":{"g":-1.5e3}}`,
			[]string{`a=1`, `b="x"`, `c=null`, `d=[1,{"e":true}]`, `f={"g":-1.5e3}`}},
		{"{\n \"a\" : [ 1 ] \n}", []string{`a=[ 1 ]`}},
		{`{"\u0061\n":1}`, []string{"a\n=1"}},
		{`{"a":"\"}"}`, []string{`a="\"}"`}},
		{`{"a":"\ud800"}`, []string{`a="\ud800"`}},
		{`{"a":1`, nil},
		{`{"a":1,}`, nil},
		{`{"a":01}`, nil},
		{`{"a":1.}`, nil},
		{`{"a":-}`, nil},
		{`{"a":tru}`, nil},
		{`{"a":"x` + "\n" + `"}`, nil},
		{`{"a":"\x"}`, nil},
		{`{"a":"\u12"}`, nil},
		{`{"a" 1}`, nil},
		{`{a:1}`, nil},
		{`{"a":1}}`, nil},
		{`{"a":1} {}`, nil},
		{`{"a":[1,]}`, nil},
		{`{"a":[1 2]}`, nil},
		{`[1]`, nil},
		{``, nil},
		{`{"a":` + strings.Repeat("[", 63) + strings.Repeat("]", 63) + `}`, []string{`a=` + strings.Repeat("[", 63) + strings.Repeat("]", 63)}},
		{`{"a":` + strings.Repeat("[", 64) + strings.Repeat("]", 64) + `}`, nil},
	}
	for _, tt := range tests {
		got, ok := readMembers(nil, []byte(tt.raw))
		if ok != (tt.want != nil) {
			t.Errorf("readMembers(%.40q) ok = %v", tt.raw, ok)
			continue
		}
		var pairs []string
		for _, m := range got {
			pairs = append(pairs, string(m.key)+"="+string(m.val))
		}
		if strings.Join(pairs, " ") != strings.Join(tt.want, " ") {
			t.Errorf("readMembers(%.40q) = %q, want %q", tt.raw, pairs, tt.want)
		}
	}
}

// TestScannerAgreesWithEncodingJSON: readMembers (collect.ValidMembers) accepts exactly what
// encoding/json accepts, on JSON-ish random text.
func TestScannerAgreesWithEncodingJSON(t *testing.T) {
	alphabet := []string{`{`, `}`, `[`, `]`, `,`, `:`, `"a"`, `"\u00e9"`, `"\"`, `"\q"`, `1`, `-0.5e2`, `01`, `true`, `nul`, `null`, " ", `"`, "\x01"}
	rapid.Check(t, func(t *rapid.T) {
		parts := rapid.SliceOfN(rapid.SampledFrom(alphabet), 0, 12).Draw(t, "parts")
		raw := []byte(`{"k":` + strings.Join(parts, "") + `}`)
		_, ok := readMembers(nil, raw)
		if want := json.Valid(raw); ok != want {
			t.Fatalf("readMembers(%s) ok = %v, encoding/json says %v", raw, ok, want)
		}
	})
}

func TestCompact(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		v := jsonValue(3).Draw(t, "v")
		indented, _ := json.MarshalIndent(v, " ", "\t")
		var want bytes.Buffer
		if err := json.Compact(&want, indented); err != nil {
			t.Fatal(err)
		}
		got := appendCompact(nil, indented)
		if !bytes.Equal(got, want.Bytes()) || compactLen(indented) != len(got) {
			t.Fatalf("compact(%s) = %s (len %d), want %s", indented, got, compactLen(indented), want.Bytes())
		}
	})
}

// jsonValue generates JSON-able values with awkward strings.
func jsonValue(depth int) *rapid.Generator[any] {
	str := rapid.SampledFrom([]string{"", "a b", `q"uote`, `back\slash`, "tab\t", "é", "<&>", "\u2028"})
	scalar := rapid.OneOf(
		rapid.Map(str, func(s string) any { return s }),
		rapid.Map(rapid.Float64Range(-1e6, 1e6), func(f float64) any { return f }),
		rapid.Map(rapid.Bool(), func(b bool) any { return b }),
		rapid.Just[any](nil),
	)
	if depth == 0 {
		return scalar
	}
	return rapid.OneOf(scalar,
		rapid.Map(rapid.SliceOfN(jsonValue(depth-1), 0, 3), func(s []any) any { return s }),
		rapid.Map(rapid.MapOfN(str, jsonValue(depth-1), 0, 3), func(m map[string]any) any { return m }),
	)
}

func TestStringValue(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{`"abc"`, "abc", true},
		{`"a\"b"`, `a"b`, true},
		{`"\u00e9"`, "é", true},
		{"\"a\xffb\"", "a\uFFFDb", true},
		{`"\ud800"`, "\uFFFD", true},
		{`""`, "", true},
		{`"a"b"`, "", false},
		{`"a`, "", false},
		{`1`, "", false},
		{`"a" `, "", false},
		{``, "", false},
	}
	for _, tt := range tests {
		got, ok := stringValue([]byte(tt.in))
		if got != tt.want || ok != tt.ok {
			t.Errorf("stringValue(%q) = %q %v, want %q %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}
