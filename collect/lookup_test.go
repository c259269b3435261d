package collect

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// trackMessage is a typical analytics.js track call as the collector stores it
// (~700 bytes): properties before context, the identifiers at the end.
const trackMessage = `{"timestamp":"2024-05-01T12:59:58.412Z","integrations":{},"type":"track",` +
	`"properties":{"product_id":"507f1f77bcf86cd799439011","sku":"G-32","price":18.99,"currency":"usd"},` +
	`"event":"Product Viewed","messageId":"ajs-next-1714568398412-4b8a4f5e-7c2e-4bd0-9f1a-2c3d4e5f6a7b",` +
	`"anonymousId":"9f1c2e3d-4b5a-4c6d-8e7f-0a1b2c3d4e5f",` +
	`"context":{"page":{"path":"/products/monopoly","title":"Monopoly","url":"https://shop.example.com/products/monopoly"},` +
	`"userAgent":"Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0","locale":"en-US",` +
	`"library":{"name":"analytics.js","version":"npm:next-1.70.0"},"device":{"id":"B5372DB0-C21E-11E4-8DFC-AA07A5B093DB"},` +
	`"traits":{"email":"Jane.Doe@Example.com"},"consent":{"categoryPreferences":{"Analytics":true}}},` +
	`"userId":"u-1234","sentAt":"2024-05-01T13:00:00.000Z"}`

func TestLookup(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		path []string
		want string // raw value; "" means not found
	}{
		{"top-level string", `{"a":"x"}`, []string{"a"}, `"x"`},
		{"nested", `{"a":{"b":{"c":1}}}`, []string{"a", "b", "c"}, `1`},
		{"nested object", `{"a":{"b":{"c":1}}}`, []string{"a", "b"}, `{"c":1}`},
		{"no path is the whole value", ` {"a":1} `, nil, `{"a":1}`},
		{"missing", `{"a":1}`, []string{"b"}, ""},
		{"missing nested", `{"a":{"b":1}}`, []string{"a", "c"}, ""},
		{"through a non-object", `{"a":[{"b":1}]}`, []string{"a", "b"}, ""},
		{"through a string", `{"a":"{\"b\":1}"}`, []string{"a", "b"}, ""},
		{"not an object", `[1,2]`, []string{"a"}, ""},
		{"null member", `{"a":null}`, []string{"a"}, `null`},
		{"white space kept out", "{ \"a\" :\n [ 1 , 2 ] \n}", []string{"a"}, `[ 1 , 2 ]`},
		{"last duplicate wins", `{"a":1,"b":2,"a":3}`, []string{"a"}, `3`},
		{"last duplicate wins nested", `{"a":{"b":1},"a":{"c":2}}`, []string{"a", "b"}, ""},
		{"escaped key", `{"\u0061":1}`, []string{"a"}, `1`},
		{"key with quote", `{"a\"b":1}`, []string{`a"b`}, `1`},
		{"string with escaped quote and brace", `{"a":"x\"}{","b":2}`, []string{"b"}, `2`},
		{"string ending in escaped backslash", `{"a":"x\\","b":2}`, []string{"b"}, `2`},
		{"brackets inside strings", `{"a":{"x":"]}"},"b":true}`, []string{"b"}, `true`},
		{"empty key", `{"":5}`, []string{""}, `5`},
		{"number then member", `{"a":-1.5e3,"b":false}`, []string{"a"}, `-1.5e3`},
		{"member names are case-sensitive", `{"Email":"x"}`, []string{"email"}, ""},
		{"empty input", ``, []string{"a"}, ""},
		{"truncated", `{"a":{"b":1`, []string{"a", "b"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Lookup([]byte(tt.raw), tt.path...)
			if ok != (tt.want != "") || string(got) != tt.want {
				t.Fatalf("Lookup(%q, %q) = %q, %v; want %q", tt.raw, tt.path, got, ok, tt.want)
			}
		})
	}
}

func TestLookupString(t *testing.T) {
	tests := []struct {
		raw  string
		path []string
		want string
		ok   bool
	}{
		{`{"a":"x"}`, []string{"a"}, "x", true},
		{`{"a":"\u00e9\n\"q\""}`, []string{"a"}, "é\n\"q\"", true},
		{`{"a":""}`, []string{"a"}, "", true},
		{`{"a":12}`, []string{"a"}, "", false},
		{`{"a":null}`, []string{"a"}, "", false},
		{`{"a":{"b":"y"}}`, []string{"a"}, "", false},
		{`{"a":{"b":"y"}}`, []string{"a", "b"}, "y", true},
		{`{"b":"y"}`, []string{"a"}, "", false},
	}
	for _, tt := range tests {
		got, ok := LookupString([]byte(tt.raw), tt.path...)
		if got != tt.want || ok != tt.ok {
			t.Errorf("LookupString(%q, %q) = %q, %v; want %q, %v", tt.raw, tt.path, got, ok, tt.want, tt.ok)
		}
	}
}

func TestMembers(t *testing.T) {
	raw := []byte(`{"a":1, "b" : {"c":[1,2]},"\u0064":"x","a":null}`)
	var got []string
	err := Members(raw, func(k string, v []byte) error {
		got = append(got, k+"="+string(v))
		return nil
	})
	want := []string{"a=1", `b={"c":[1,2]}`, `d="x"`, "a=null"}
	if err != nil || strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("Members = %q, %v; want %q", got, err, want)
	}

	stop := errors.New("enough")
	n := 0
	err = Members(raw, func(string, []byte) error {
		n++
		return stop
	})
	if err != stop || n != 1 {
		t.Fatalf("Members with a stopping fn = %v after %d calls", err, n)
	}
	if err := Members([]byte(`[1]`), func(string, []byte) error { return nil }); err == nil {
		t.Fatal("Members of an array: no error")
	}
	if err := Members([]byte(`{}`), func(string, []byte) error { t.Fatal("called"); return nil }); err != nil {
		t.Fatalf("Members of {}: %v", err)
	}
}

func TestPick(t *testing.T) {
	raw := []byte(`{"traits":{"email":"a@b.co"},"x":1,"context":{},"traits":{"phone":"+331"}}`)
	names := []string{"traits", "context", "previousId"}
	values := make([][]byte, 3)
	if !Pick(raw, names, values) {
		t.Fatal("Pick: not ok")
	}
	if string(values[0]) != `{"phone":"+331"}` || string(values[1]) != `{}` || values[2] != nil {
		t.Fatalf("Pick = %q", values)
	}
	if Pick([]byte(`"x"`), names, values) || values[0] != nil {
		t.Fatalf("Pick of a string = %q", values)
	}
}

// TestLookupMatchesEncodingJSON checks Lookup against encoding/json on every
// member path of some real messages.
func TestLookupMatchesEncodingJSON(t *testing.T) {
	docs := []string{trackMessage, `{"a":{"a":{"a":1},"b":[]},"a ":2}`}
	for _, doc := range docs {
		var paths [][]string
		var walk func(v []byte, path []string)
		walk = func(v []byte, path []string) {
			paths = append(paths, path)
			_ = Members(v, func(k string, sub []byte) error {
				walk(sub, append(path[:len(path):len(path)], k))
				return nil
			})
		}
		walk([]byte(doc), nil)
		if len(paths) < 3 {
			t.Fatalf("only %d paths", len(paths))
		}
		for _, p := range paths {
			got, ok := Lookup([]byte(doc), p...)
			want, wok := lookupStd([]byte(doc), p)
			if ok != wok || !bytes.Equal(got, want) {
				t.Errorf("Lookup(%q) = %q, %v; encoding/json: %q, %v", p, got, ok, want, wok)
			}
		}
	}
}

// lookupStd is Lookup done with encoding/json (whose objects also keep the last of
// duplicate names).
func lookupStd(raw []byte, path []string) ([]byte, bool) {
	v := json.RawMessage(bytes.TrimSpace(raw))
	for _, name := range path {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(v, &m); err != nil || m == nil {
			return nil, false
		}
		var ok bool
		if v, ok = m[name]; !ok {
			return nil, false
		}
	}
	return v, true
}

func TestLookupAllocations(t *testing.T) {
	raw := []byte(trackMessage)
	n := testing.AllocsPerRun(100, func() {
		Lookup(raw, "context", "device", "id")
		Lookup(raw, "context", "traits", "email")
		Lookup(raw, "userId")
	})
	if n != 0 {
		t.Fatalf("Lookup allocates %v times", n)
	}
	values := make([][]byte, 2)
	names := []string{"context", "userId"}
	if n := testing.AllocsPerRun(100, func() { Pick(raw, names, values) }); n != 0 {
		t.Fatalf("Pick allocates %v times", n)
	}
}

// FuzzLookup: never panics on any input; on valid UTF-8 JSON it agrees with
// encoding/json.
func FuzzLookup(f *testing.F) {
	f.Add([]byte(trackMessage), "context", "device", "id")
	f.Add([]byte(`{"a":{"b":"c"},"a":{"b":"\"d"}}`), "a", "b", "")
	f.Add([]byte(`{"a":"\\\"","b":[{"]":"}"}]}`), "b", "", "")
	f.Add([]byte(`{"a`), "a", "", "")
	f.Add([]byte(`{"a":tru`), "a", "", "")
	f.Add([]byte(`{"":{"":{"":"x"}}}`), "", "", "")
	f.Fuzz(func(t *testing.T, raw []byte, p1, p2, p3 string) {
		var path []string
		for _, p := range []string{p1, p2, p3} {
			if p == "" && len(path) > 0 {
				break
			}
			path = append(path, p)
		}
		got, ok := Lookup(raw, path...)
		s, sok := LookupString(raw, path...)
		_ = Members(raw, func(string, []byte) error { return nil })
		Pick(raw, path, make([][]byte, len(path)))
		if !json.Valid(raw) || !utf8.Valid(raw) {
			return
		}
		want, wok := lookupStd(raw, path)
		if ok != wok || !bytes.Equal(got, want) {
			t.Fatalf("Lookup(%q) = %q, %v; encoding/json: %q, %v", path, got, ok, want, wok)
		}
		var ws string
		werr := json.Unmarshal(want, &ws)
		wsok := wok && werr == nil && len(want) > 0 && want[0] == '"'
		if sok != wsok || s != ws {
			t.Fatalf("LookupString(%q) = %q, %v; encoding/json: %q, %v", path, s, sok, ws, wsok)
		}
	})
}

// BenchmarkLookup is three lookups into a typical track message.
func BenchmarkLookup(b *testing.B) {
	raw := []byte(trackMessage)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := Lookup(raw, "context", "device", "id"); !ok {
			b.Fatal("no device id")
		}
		if _, ok := Lookup(raw, "context", "traits", "email"); !ok {
			b.Fatal("no email")
		}
		if _, ok := Lookup(raw, "userId"); !ok {
			b.Fatal("no user id")
		}
	}
}

func BenchmarkLookupString(b *testing.B) {
	raw := []byte(trackMessage)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := LookupString(raw, "context", "traits", "email"); !ok {
			b.Fatal("no email")
		}
	}
}

// BenchmarkPick reads the same three values as BenchmarkLookup with one pass per
// object on the way (the way identity.FromMessage reads a message).
func BenchmarkPick(b *testing.B) {
	raw := []byte(trackMessage)
	top, ctx := []string{"context", "userId"}, []string{"device", "traits"}
	var tv, cv [2][]byte
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		Pick(raw, top, tv[:])
		Pick(tv[0], ctx, cv[:])
		_, ok1 := Lookup(cv[0], "id")
		_, ok2 := Lookup(cv[1], "email")
		if !ok1 || !ok2 || tv[1] == nil {
			b.Fatal("not found")
		}
	}
}
