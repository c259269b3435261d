package trustloop_test

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/trustloop/trustloop"
)

// A body is one JSON value of the expected shape; each way of not being one
// is said in the API's terms, never with Go's type names or a value of the
// body.
func TestDecodeJSON(t *testing.T) {
	type body struct {
		Name  string   `json:"name"`
		Count int      `json:"count"`
		Tags  []string `json:"tags"`
		On    bool     `json:"on"`
	}
	for _, c := range []struct{ in, want string }{
		{`{"name":"jane@example.com","count":2}`, ""},
		{"{\"name\":\"a\"}\n  \t", ""},
		{`{"name":"jane@example.com"} garbage`, "there is more after the first JSON value"},
		{`{"name":"a"}{"name":"b"}`, "there is more after the first JSON value"},
		{`{"name":"a"}}`, "there is more after the first JSON value"},
		{`{"name":"a"}]`, "there is more after the first JSON value"},
		{``, "the body is empty"},
		{"  \n", "the body is empty"},
		{`{"name":"jane@exa`, "the body ends in the middle of a value"},
		{`{"name" "jane@example.com"}`, "it is not valid JSON (at byte 9)"},
		{`{"name":5}`, "field name must be a JSON string, not a number"},
		{`{"count":"jane@example.com"}`, "field count must be a JSON number, not a string"},
		{`{"count":1.5}`, "field count cannot hold that number"},
		{`{"tags":{}}`, "field tags must be a JSON array, not an object"},
		{`{"on":[]}`, "field on must be a JSON boolean, not an array"},
		{`{"name":true}`, "field name must be a JSON string, not a boolean"},
		{`[]`, "it must be a JSON object, not an array"},
		{`{"email":"jane@example.com"}`, `unknown field "email"`},
	} {
		var b body
		err := trustloop.DecodeJSON([]byte(c.in), &b)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%q: %v", c.in, err)
		case c.want != "" && (err == nil || err.Error() != c.want):
			t.Errorf("%q: %v, want %q", c.in, err, c.want)
		case err != nil && (strings.Contains(err.Error(), "jane") || strings.Contains(err.Error(), "1.5") || strings.Contains(err.Error(), "Go ")):
			t.Errorf("%q: the error %q echoes the body or names Go types", c.in, err)
		}
	}
}

func TestHasLoneSurrogate(t *testing.T) {
	for in, want := range map[string]bool{
		`{"a":"plain"}`:                false,
		`{"a":"\u00e9 \n \\ \" \/"}`:   false,
		`{"a":"\ud83d\ude00"}`:         false, // a pair: 😀
		`{"a":"\\udc00"}`:              false, // an escaped backslash, then text
		`{"a":"\udc00"}`:               true,
		`{"a":"\ud83d"}`:               true,
		`{"a":"\ud83d\u0041"}`:         true,
		`{"a":"\ud83dx"}`:              true,
		`{"a":"x\ud83d`:                true,
		`{"a":"\uzzzz"}`:               false, // malformed: the decoder's to report
		`{"a":"\ud83d\ude00\udc00"}`:   true,
		`{"a":"\\\udc00"}`:             true,
		`{"a":"\u005c\u0075dc00"}`:     false,
		`{"u":"\uDBFF\uDFFF","v":"x"}`: false,
	} {
		if got := trustloop.HasLoneSurrogate([]byte(in)); got != want {
			t.Errorf("HasLoneSurrogate(%s) = %v, want %v", in, got, want)
		}
	}
}

// FuzzHasLoneSurrogate: a JSON string it passes decodes without a
// replacement character that was not in it (literally or as \ufffd).
func FuzzHasLoneSurrogate(f *testing.F) {
	for _, s := range []string{`"a"`, `"\udc00"`, `"\ud83d\ude00"`, `"\\udc00"`, `"\ud83d\u0041"`, `"x\ufffd"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		var s string
		if trustloop.HasLoneSurrogate([]byte(in)) || json.Unmarshal([]byte(in), &s) != nil || !utf8.ValidString(in) {
			return
		}
		if strings.ContainsRune(s, utf8.RuneError) && !strings.ContainsRune(in, utf8.RuneError) && !strings.Contains(strings.ToLower(in), `\ufffd`) {
			t.Fatalf("%q passed, yet decodes to %q", in, s)
		}
	})
}
