package collect

import (
	"encoding/json"
	"errors"
	"strconv"
	"unicode/utf8"

	"github.com/trustloop/trustloop"
)

// maxDepth bounds nesting so a hostile body cannot make the scanner recurse deeply.
const maxDepth = 64

// scanner is a validating, allocation-free JSON reader over one buffer. It skips
// what the collector does not read and hands back byte ranges for what it does.
type scanner struct {
	data  []byte
	pos   int
	depth int
	// text: strings must be text (UTF-8, no lone surrogate escape), as the
	// collector demands at the door (Decode). Lookups into what it stored
	// read it as it was taken.
	text bool
}

var (
	errSyntax = errors.New("malformed JSON")
	// errNumberRange, errUTF8 and errSurrogate are valid syntax refused on
	// purpose: what encoding/json would read as another value (infinity,
	// U+FFFD).
	errNumberRange = errors.New("a number is beyond ±1.8e308")
	errUTF8        = errors.New("a string is not valid UTF-8")
	errSurrogate   = errors.New("a string escapes half a UTF-16 surrogate pair (\\uD800–\\uDFFF alone), which is no character")
	errEOF         = errors.New("unexpected end of JSON")
	errTooDeep     = errors.New("JSON nested more than 64 levels")
	errTrailing    = errors.New("unexpected data after the JSON value")
)

func (s *scanner) ws() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// peek returns the next non-space byte without consuming it, 0 at the end.
func (s *scanner) peek() byte {
	s.ws()
	if s.pos >= len(s.data) {
		return 0
	}
	return s.data[s.pos]
}

// end checks that only white space follows.
func (s *scanner) end() error {
	s.ws()
	if s.pos != len(s.data) {
		return errTrailing
	}
	return nil
}

// value validates and skips one JSON value.
func (s *scanner) value() error {
	switch s.peek() {
	case '{':
		return s.object(func([]byte, bool) error { return s.value() })
	case '[':
		return s.array(func(int) error { return s.value() })
	case '"':
		_, _, _, err := s.str()
		return err
	case 't':
		return s.lit("true")
	case 'f':
		return s.lit("false")
	case 'n':
		return s.lit("null")
	case 0:
		return errEOF
	default:
		return s.number()
	}
}

func (s *scanner) lit(w string) error {
	if len(s.data)-s.pos < len(w) {
		return errEOF
	}
	if string(s.data[s.pos:s.pos+len(w)]) != w {
		return errSyntax
	}
	s.pos += len(w)
	return nil
}

func (s *scanner) number() error {
	d, i := s.data, s.pos
	if i < len(d) && d[i] == '-' {
		i++
	}
	if i >= len(d) {
		return errEOF
	}
	switch {
	case d[i] == '0':
		i++
	case d[i] >= '1' && d[i] <= '9':
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	default:
		return errSyntax
	}
	if i < len(d) && d[i] == '.' {
		i++
		start := i
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
		if i == start {
			return errSyntax
		}
	}
	big := i-s.pos > 300 // more integer digits than a float64 holds
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		start := i
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
		if i == start {
			return errSyntax
		}
		big = true
	}
	// A number past float64's range is read as infinity, which JSON has not:
	// the value would be kept in the event and dropped from the profile.
	if big {
		if _, err := strconv.ParseFloat(string(d[s.pos:i]), 64); err != nil {
			return errNumberRange
		}
	}
	s.pos = i
	return nil
}

// str reads a string at the cursor and returns the range of its contents (without
// the quotes) and whether it holds escapes.
func (s *scanner) str() (start, end int, escaped bool, err error) {
	d := s.data
	if s.pos >= len(d) || d[s.pos] != '"' {
		return 0, 0, false, errSyntax
	}
	i := s.pos + 1
	start = i
	wide := false // a byte past ASCII
	for i < len(d) {
		c := d[i]
		switch {
		case c == '"':
			// JSON is UTF-8 (RFC 8259), and half a surrogate pair is no
			// character: either would be stored as sent and read as U+FFFD.
			// Checked only for the strings that can hold one.
			if s.text && wide && !utf8.Valid(d[start:i]) {
				s.pos = start
				for r, n := utf8.DecodeRune(d[s.pos:]); r != utf8.RuneError || n != 1; r, n = utf8.DecodeRune(d[s.pos:]) {
					s.pos += n // to the broken byte, for the error's offset
				}
				return 0, 0, false, errUTF8
			}
			if s.text && escaped && trustloop.HasLoneSurrogate(d[start:i]) {
				s.pos = start
				return 0, 0, false, errSurrogate
			}
			s.pos = i + 1
			return start, i, escaped, nil
		case c == '\\':
			escaped = true
			i++
			if i >= len(d) {
				return 0, 0, false, errEOF
			}
			switch d[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i++
			case 'u':
				for j := i + 1; j < i+5; j++ {
					if j >= len(d) {
						return 0, 0, false, errEOF
					}
					if !isHex(d[j]) {
						return 0, 0, false, errSyntax
					}
				}
				i += 5
			default:
				return 0, 0, false, errSyntax
			}
		case c < 0x20:
			return 0, 0, false, errSyntax
		default:
			wide = wide || c >= utf8.RuneSelf
			i++
		}
	}
	return 0, 0, false, errEOF
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// object reads an object, calling member for each key with the cursor on the value;
// member must consume the value.
func (s *scanner) object(member func(key []byte, escaped bool) error) error {
	if s.peek() != '{' {
		return errSyntax
	}
	s.depth++
	if s.depth > maxDepth {
		return errTooDeep
	}
	s.pos++
	if s.peek() == '}' {
		s.pos++
		s.depth--
		return nil
	}
	for {
		if s.peek() != '"' {
			if s.pos >= len(s.data) {
				return errEOF
			}
			return errSyntax
		}
		ks, ke, esc, err := s.str()
		if err != nil {
			return err
		}
		if c := s.peek(); c != ':' {
			if c == 0 {
				return errEOF
			}
			return errSyntax
		}
		s.pos++
		s.ws()
		if err := member(s.data[ks:ke], esc); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.pos++
		case '}':
			s.pos++
			s.depth--
			return nil
		case 0:
			return errEOF
		default:
			return errSyntax
		}
	}
}

// array reads an array, calling elem for each element with the cursor on it.
func (s *scanner) array(elem func(i int) error) error {
	if s.peek() != '[' {
		return errSyntax
	}
	s.depth++
	if s.depth > maxDepth {
		return errTooDeep
	}
	s.pos++
	if s.peek() == ']' {
		s.pos++
		s.depth--
		return nil
	}
	for i := 0; ; i++ {
		s.ws()
		if err := elem(i); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.pos++
		case ']':
			s.pos++
			s.depth--
			return nil
		case 0:
			return errEOF
		default:
			return errSyntax
		}
	}
}

// unquote returns the string value of a string's contents.
func unquote(raw []byte, escaped bool) string {
	if !escaped {
		return string(raw)
	}
	q := make([]byte, 0, len(raw)+2)
	q = append(q, '"')
	q = append(q, raw...)
	q = append(q, '"')
	var out string
	// The scanner already checked the escapes; Unmarshal only decodes them.
	if err := json.Unmarshal(q, &out); err != nil {
		return string(raw)
	}
	return out
}

// keyIs reports whether an object key equals name.
func keyIs(key []byte, escaped bool, name string) bool {
	if !escaped {
		return string(key) == name
	}
	return unquote(key, true) == name
}

// appendString appends s as a JSON string, escaping as encoding/json does (control
// characters as \u00XX, invalid UTF-8 as U+FFFD).
func appendString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c < 0x20:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			dst = append(dst, "\\ufffd"...)
		} else {
			dst = append(dst, s[i:i+n]...)
		}
		i += n
	}
	return append(dst, '"')
}
