package collect

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/trustloop/trustloop"
)

// scan runs the scanner over one whole document, as Decode does.
func scan(in []byte) error {
	s := &scanner{data: in, text: true}
	err := s.value()
	if err == nil {
		err = s.end()
	}
	return err
}

// nestingDepth is the deepest bracket nesting of in, counted outside strings. It
// bounds the depth the scanner can reach before it stops, valid JSON or not.
func nestingDepth(in []byte) int {
	depth, deepest := 0, 0
	inStr, esc := false, false
	for _, c := range in {
		switch {
		case inStr && esc:
			esc = false
		case inStr && c == '\\':
			esc = true
		case inStr && c == '"':
			inStr = false
		case inStr:
		case c == '"':
			inStr = true
		case c == '[' || c == '{':
			depth++
			if depth > deepest {
				deepest = depth
			}
		case c == ']' || c == '}':
			depth--
		}
	}
	return deepest
}

func nest(open, close string, n int, inner string) string {
	return strings.Repeat(open, n) + inner + strings.Repeat(close, n)
}

func TestScanner(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want error // nil: valid
	}{
		// literals
		{"true", `true`, nil},
		{"false", `false`, nil},
		{"null", `null`, nil},
		{"literal with spaces", " \t\r\n null \n", nil},
		{"truncated true", `tru`, errEOF},
		{"misspelt true", `trUe`, errSyntax},
		{"misspelt null", `nul1`, errSyntax},
		{"capitalized", `True`, errSyntax},
		{"literal then letters", `truex`, errTrailing},
		{"nan", `NaN`, errSyntax},
		{"undefined", `undefined`, errSyntax},

		// numbers
		{"zero", `0`, nil},
		{"minus zero", `-0`, nil},
		{"integer", `123`, nil},
		{"negative", `-123`, nil},
		{"fraction", `1.5`, nil},
		{"zero fraction", `0.000`, nil},
		{"exponent", `1e5`, nil},
		{"upper exponent", `1E5`, nil},
		{"signed exponent", `1e+5`, nil},
		{"negative exponent", `-1.25e-10`, nil},
		{"zero exponent", `0e0`, nil},
		{"huge exponent", `1e999999999`, errNumberRange},
		{"long number", `123456789012345678901234567890.123456789e123`, nil},
		{"leading zero", `01`, errTrailing},
		{"minus leading zero", `-01`, errTrailing},
		{"dot without digits", `1.`, errSyntax},
		{"dot then exponent", `1.e5`, errSyntax},
		{"leading dot", `.5`, errSyntax},
		{"plus sign", `+1`, errSyntax},
		{"minus alone", `-`, errEOF},
		{"minus letter", `-a`, errSyntax},
		{"exponent without digits", `1e`, errSyntax},
		{"exponent sign only", `1e+`, errSyntax},
		{"double minus", `--1`, errSyntax},
		{"hex", `0x10`, errTrailing},
		{"infinity", `Infinity`, errSyntax},
		{"number space number", `1 2`, errTrailing},

		// strings
		{"empty string", `""`, nil},
		{"string", `"hello"`, nil},
		{"all simple escapes", `"\" \\ \/ \b \f \n \r \t"`, nil},
		{"unicode escape", `"\u00e9\uD83D\uDE00"`, nil},
		{"upper hex", `"\uABCD"`, nil},
		{"lone high surrogate escape", `"\ud800"`, errSurrogate},
		{"lone low surrogate escape", `"a\uDC00b"`, errSurrogate},
		{"high surrogate before another escape", `"\ud83d\u0041"`, errSurrogate},
		{"high surrogate, then the end", `"\ud83d`, errEOF},
		{"an escaped backslash, then text", `"\\udc00"`, nil},
		{"raw UTF-8", `"héllo 世界 🎉"`, nil},
		{"invalid UTF-8", "\"\xff\xfe\"", errUTF8},
		{"a truncated sequence", "\"\xe2\x82\"", errUTF8},
		{"an encoded surrogate", "\"\xed\xa0\x80\"", errUTF8},
		{"DEL is not a control char", "\"\x7f\"", nil},
		{"bad hex", `"\u00g0"`, errSyntax},
		{"short unicode escape", `"\u12"`, errSyntax},
		{"unicode escape cut off", `"\u12`, errEOF},
		{"unknown escape", `"\x41"`, errSyntax},
		{"escaped single quote", `"\'"`, errSyntax},
		{"backslash at end", `"\`, errEOF},
		{"unterminated", `"abc`, errEOF},
		{"raw newline", "\"a\nb\"", errSyntax},
		{"raw tab", "\"a\tb\"", errSyntax},
		{"raw NUL", "\"a\x00b\"", errSyntax},
		{"raw unit separator", "\"\x1f\"", errSyntax},
		{"single quotes", `'a'`, errSyntax},
		{"escaped quote then end", `"a\"`, errEOF},
		{"escaped backslash then quote", `"a\\"`, nil},

		// arrays
		{"empty array", `[]`, nil},
		{"empty array with space", "[ \n ]", nil},
		{"array", `[1,"a",true,null,{},[]]`, nil},
		{"array with spaces", " [ 1 , 2 ] ", nil},
		{"trailing comma", `[1,]`, errSyntax},
		{"leading comma", `[,1]`, errSyntax},
		{"double comma", `[1,,2]`, errSyntax},
		{"missing comma", `[1 2]`, errSyntax},
		{"unclosed array", `[1`, errEOF},
		{"unclosed after comma", `[1,`, errEOF},
		{"open bracket only", `[`, errEOF},
		{"mismatched close", `[1}`, errSyntax},
		{"close only", `]`, errSyntax},

		// objects
		{"empty object", `{}`, nil},
		{"object", `{"a":1,"b":[true],"c":{"d":null}}`, nil},
		{"object with spaces", "{ \"a\" : 1 ,\n\t\"b\" : 2 }", nil},
		{"duplicate keys", `{"a":1,"a":2}`, nil},
		{"escaped key", `{"\u0061":1}`, nil},
		{"unquoted key", `{a:1}`, errSyntax},
		{"number key", `{1:1}`, errSyntax},
		{"missing colon", `{"a" 1}`, errSyntax},
		{"missing value", `{"a":}`, errSyntax},
		{"trailing comma in object", `{"a":1,}`, errSyntax},
		{"missing comma in object", `{"a":1 "b":2}`, errSyntax},
		{"unclosed object", `{"a":1`, errEOF},
		{"unclosed after key", `{"a"`, errEOF},
		{"unclosed after colon", `{"a":`, errEOF},
		{"open brace only", `{`, errEOF},
		{"mismatched close in object", `{"a":1]`, errSyntax},
		{"colon instead of comma", `{"a":1:"b"}`, errSyntax},

		// whole documents
		{"empty", ``, errEOF},
		{"only space", " \n\t\r ", errEOF},
		{"trailing data", `{} x`, errTrailing},
		{"two documents", `{}{}`, errTrailing},
		{"trailing comma at top", `1,`, errTrailing},
		{"NUL after value", "{}\x00", errTrailing},
		{"NUL instead of value", "\x00", errEOF},
		{"byte order mark", "\xef\xbb\xbf{}", errSyntax},
		{"form feed is not space", "\f{}", errSyntax},
		{"non-breaking space", "\u00a0{}", errSyntax},

		// numbers past float64's range (valid syntax, but read as infinity)
		{"1e308", `[1e308,-1.7976931348623157e308]`, nil},
		{"1e309", `[1e309]`, errNumberRange},
		{"-1e999999", `{"a":-1e999999}`, errNumberRange},
		{"400 digits", `[` + strings.Repeat("9", 400) + `]`, errNumberRange},
		{"a long fraction", `[0.` + strings.Repeat("0", 400) + `1]`, nil},
		{"tiny", `[1e-999]`, nil},

		// depth
		{"64 arrays", nest("[", "]", 64, ""), nil},
		{"65 arrays", nest("[", "]", 65, ""), errTooDeep},
		{"64 objects", nest(`{"a":`, "}", 63, "{}"), nil},
		{"65 objects", nest(`{"a":`, "}", 64, "{}"), errTooDeep},
		{"64 mixed", nest(`[{"a":`, "}]", 32, "0"), nil},
		{"65 mixed", nest(`[{"a":`, "}]", 32, "[]"), errTooDeep},
		{"deep but unclosed", nest("[", "", 1000, ""), errTooDeep},
		{"wide is not deep", "[" + strings.Repeat("[[]],", 1000) + "[]]", nil},
		{"depth is released", "[" + nest("[", "]", 63, "") + "," + nest("[", "]", 63, "") + "]", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := scan([]byte(tt.in))
			if !errors.Is(err, tt.want) {
				t.Fatalf("scan(%q) = %v, want %v", tt.in, err, tt.want)
			}
			if nestingDepth([]byte(tt.in)) > maxDepth || refusedOnPurpose(err) {
				return
			}
			if valid := json.Valid([]byte(tt.in)); valid != (err == nil) {
				t.Fatalf("scan(%q) = %v but json.Valid = %v", tt.in, err, valid)
			}
		})
	}
}

func TestScannerStr(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		content string
		escaped bool
		pos     int // cursor after the string
	}{
		{"plain", `"abc",`, "abc", false, 5},
		{"empty", `""`, "", false, 2},
		{"escape", `"a\nb"`, `a\nb`, true, 6},
		{"unicode", `"\u0041"x`, `\u0041`, true, 8},
		{"escaped quote", `"a\"b"`, `a\"b`, true, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &scanner{data: []byte(tt.in), text: true}
			st, en, esc, err := s.str()
			if err != nil {
				t.Fatal(err)
			}
			if got := tt.in[st:en]; got != tt.content || esc != tt.escaped || s.pos != tt.pos {
				t.Errorf("str(%q) = %q escaped=%v pos=%d, want %q %v %d", tt.in, got, esc, s.pos, tt.content, tt.escaped, tt.pos)
			}
		})
	}
	t.Run("not a string", func(t *testing.T) {
		s := &scanner{data: []byte(`abc`)}
		if _, _, _, err := s.str(); !errors.Is(err, errSyntax) {
			t.Fatalf("err = %v, want errSyntax", err)
		}
	})
}

func TestScannerObjectAndArrayCallbacks(t *testing.T) {
	in := []byte(` { "a" : 1 , "b\u0063" : [ "x" , { } , 2 ] , "d":null } `)
	s := &scanner{data: in}
	var keys []string
	var elems []int
	err := s.object(func(key []byte, esc bool) error {
		k := unquote(key, esc)
		keys = append(keys, k)
		if k == "bc" {
			return s.array(func(i int) error {
				elems = append(elems, i)
				return s.value()
			})
		}
		return s.value()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.end(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(keys, ","); got != "a,bc,d" {
		t.Errorf("keys = %s", got)
	}
	if len(elems) != 3 || elems[2] != 2 {
		t.Errorf("elements = %v", elems)
	}
	if s.depth != 0 {
		t.Errorf("depth after the object = %d, want 0", s.depth)
	}
}

func TestUnquote(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		escaped bool
		want    string
	}{
		{"plain", "abc", false, "abc"},
		{"plain with backslash not decoded", `a\nb`, false, `a\nb`},
		{"newline", `a\nb`, true, "a\nb"},
		{"all escapes", `\"\\\/\b\f\n\r\t`, true, "\"\\/\b\f\n\r\t"},
		{"unicode", `\u00e9`, true, "é"},
		{"surrogate pair", `\ud83d\ude00`, true, "😀"},
		{"lone surrogate", `\ud800`, true, "\ufffd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := unquote([]byte(tt.raw), tt.escaped); got != tt.want {
				t.Errorf("unquote(%q, %v) = %q, want %q", tt.raw, tt.escaped, got, tt.want)
			}
		})
	}
}

func TestKeyIs(t *testing.T) {
	tests := []struct {
		key     string
		escaped bool
		name    string
		want    bool
	}{
		{"writeKey", false, "writeKey", true},
		{"writekey", false, "writeKey", false},
		{`write\u004bey`, true, "writeKey", true},
		{`\u0077\u0072\u0069\u0074\u0065\u004b\u0065\u0079`, true, "writeKey", true},
		{`write\u004bey`, false, "writeKey", false},
		{`batch\n`, true, "batch", false},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			if got := keyIs([]byte(tt.key), tt.escaped, tt.name); got != tt.want {
				t.Errorf("keyIs(%q, %v, %q) = %v", tt.key, tt.escaped, tt.name, got)
			}
		})
	}
}

func TestAppendString(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"empty", "", `""`},
		{"plain", "abc-123", `"abc-123"`},
		{"quote and backslash", `a"b\c`, `"a\"b\\c"`},
		{"control chars", "\x00\n\x1f", `"\u0000\u000a\u001f"`},
		{"DEL kept", "\x7f", "\"\x7f\""},
		{"UTF-8 kept", "é世🎉", `"é世🎉"`},
		{"invalid UTF-8", "a\xffb", `"a\ufffdb"`},
		{"truncated rune", "\xe4\xb8", `"\ufffd\ufffd"`},
		{"HTML left alone", "<&>", `"<&>"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := appendString([]byte("x"), tt.in)
			if string(got) != "x"+tt.want {
				t.Errorf("appendString(%q) = %s, want x%s", tt.in, got, tt.want)
			}
			checkAppendString(t, tt.in, got[1:])
		})
	}
}

// checkAppendString checks that out is a JSON string that decodes to in, each
// invalid UTF-8 byte replaced by U+FFFD as encoding/json does.
func checkAppendString(t *testing.T, in string, out []byte) {
	t.Helper()
	if !json.Valid(out) {
		t.Fatalf("appendString(%q) = %s is not valid JSON", in, out)
	}
	var back string
	if err := json.Unmarshal(out, &back); err != nil {
		t.Fatal(err)
	}
	if want := string([]rune(in)); back != want {
		t.Fatalf("appendString(%q) decodes to %q, want %q", in, back, want)
	}
	if !utf8.Valid(out) {
		t.Fatalf("appendString(%q) = %q is not UTF-8", in, out)
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "abc", `"\`, "\x00\x1f\x7f", "é\xff世", "\xed\xa0\x80", "\u2028"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkAppendString(t, s, appendString(nil, s))
	})
}

func FuzzScanner(f *testing.F) {
	for _, s := range []string{
		``, ` `, `{}`, `[]`, `""`, `0`, `-0`, `1e5`, `1.5E-3`, `01`, `1.`, `-`, `.5`,
		`true`, `false`, `null`, `nul`, `truex`,
		`"a\"b\\c\/\b\f\n\r\t"`, `"\u00e9\uD83D\uDE00"`, `"\u00g0"`, `"\u12"`, "\"\x01\"",
		"\"\xff\"", `{"a":1,"b":[true,null,{"c":"d"}]}`, `{"a":1,}`, `[1,]`, `[1 2]`,
		`{"a" 1}`, `{a:1}`, `{} {}`, "{}\x00", "\xef\xbb\xbf{}",
		nest("[", "]", 64, ""), nest("[", "]", 65, ""), nest(`{"a":`, "}", 40, "[]"),
		`{"batch":[{"type":"track","event":"x","userId":"u","properties":{"p":1.5e3}}],"writeKey":"k"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		err := scan(in)
		if nestingDepth(in) > maxDepth {
			return
		}
		if errors.Is(err, errTooDeep) {
			t.Fatalf("scan(%q) = errTooDeep but it nests only %d deep", in, nestingDepth(in))
		}
		// Valid syntax the scanner refuses on purpose, each checked against
		// an independent judge.
		switch {
		case errors.Is(err, errNumberRange):
			var v any
			if json.Unmarshal(in, &v) == nil {
				t.Fatalf("scan(%q) = errNumberRange, yet encoding/json reads it", in)
			}
			return
		case errors.Is(err, errUTF8):
			if utf8.Valid(in) {
				t.Fatalf("scan(%q) = errUTF8, yet it is valid UTF-8", in)
			}
			return
		case errors.Is(err, errSurrogate):
			if !trustloop.HasLoneSurrogate(in) {
				t.Fatalf("scan(%q) = errSurrogate, yet it escapes no lone surrogate", in)
			}
			return
		case err == nil && (!utf8.Valid(in) || trustloop.HasLoneSurrogate(in)):
			t.Fatalf("scan(%q) took text that is not UTF-8 or escapes a lone surrogate", in)
		}
		if valid := json.Valid(in); valid != (err == nil) {
			t.Fatalf("scan(%q) = %v but json.Valid = %v", in, err, valid)
		}
	})
}

// refusedOnPurpose reports whether err is one of the scanner's refusals of
// valid JSON syntax (encoding/json would read another value).
func refusedOnPurpose(err error) bool {
	return errors.Is(err, errNumberRange) || errors.Is(err, errUTF8) || errors.Is(err, errSurrogate)
}

// Only the door checks that strings are text: a lookup into a message stored
// before that check (a key with a broken byte or a lone surrogate escape)
// reads it as it was taken.
func TestLookupReadsStoredTextAsTaken(t *testing.T) {
	for _, raw := range []string{"{\"k\xff\":1,\"event\":\"E\"}", `{"k\udc00":1,"event":"E"}`} {
		if v, ok := LookupString([]byte(raw), "event"); !ok || v != "E" {
			t.Errorf("LookupString(%q, event) = %q, %v", raw, v, ok)
		}
		if scan([]byte(raw)) == nil {
			t.Errorf("scan(%q) took it at the door", raw)
		}
	}
}
