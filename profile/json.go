package profile

import (
	"encoding/json"
	"unicode/utf8"

	"github.com/trustloop/trustloop/collect"
)

// Raw JSON access. The rules read a few members of a message and store trait values
// byte for byte, so they work on raw value bytes and never decode whole messages
// (encoding/json on every event would cost more than the projection's budget).
//
// Two tools, for two kinds of input:
//   - pick reads members of bytes the collector validated (the message, its
//     context, properties): collect.Pick skips what it does not need without
//     validating again. On other bytes it returns unspecified slices, never
//     panics, so every picked value is checked before use (amountValue,
//     stringValue, idValue are strict).
//   - readMembers walks a traits object with this file's validating scanner,
//     because trait values are stored and re-encoded: a malformed object yields
//     no member at all, and every value it returns is well-formed JSON.

// pick reads the members names of the object raw into values (nil when absent); ok
// is false when raw is not an object.
func pick(raw []byte, names []string, values [][]byte) bool {
	return collect.Pick(raw, names, values)
}

// maxDepth bounds nesting, as collect's scanner does, so that a hostile value cannot
// make the scanner recurse deeply.
const maxDepth = 64

// scanner validates and skips JSON values in one buffer without allocating.
type scanner struct {
	d     []byte
	pos   int
	depth int
	// spaced records that white space was skipped, so that values without any
	// need no compaction pass.
	spaced bool
}

func (s *scanner) ws() {
	for s.pos < len(s.d) {
		switch s.d[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
			s.spaced = true
		default:
			return
		}
	}
}

// value validates and skips one value; false if it is malformed.
func (s *scanner) value() bool {
	s.ws()
	if s.pos >= len(s.d) {
		return false
	}
	switch s.d[s.pos] {
	case '{':
		return s.object()
	case '[':
		return s.array()
	case '"':
		_, _, _, ok := s.str()
		return ok
	case 't':
		return s.lit("true")
	case 'f':
		return s.lit("false")
	case 'n':
		return s.lit("null")
	default:
		return s.number()
	}
}

func (s *scanner) lit(w string) bool {
	if len(s.d)-s.pos < len(w) || string(s.d[s.pos:s.pos+len(w)]) != w {
		return false
	}
	s.pos += len(w)
	return true
}

func (s *scanner) number() bool {
	d, i := s.d, s.pos
	if i < len(d) && d[i] == '-' {
		i++
	}
	switch {
	case i >= len(d):
		return false
	case d[i] == '0':
		i++
	case d[i] >= '1' && d[i] <= '9':
		for i < len(d) && isDigit(d[i]) {
			i++
		}
	default:
		return false
	}
	if i < len(d) && d[i] == '.' {
		i++
		start := i
		for i < len(d) && isDigit(d[i]) {
			i++
		}
		if i == start {
			return false
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		start := i
		for i < len(d) && isDigit(d[i]) {
			i++
		}
		if i == start {
			return false
		}
	}
	s.pos = i
	return true
}

// plain marks the bytes a string holds without anything to check.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isHex(c byte) bool {
	return isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// str reads a string at the cursor and returns the range of its contents (without
// the quotes) and whether it holds escapes.
func (s *scanner) str() (start, end int, escaped, ok bool) {
	d := s.d
	if s.pos >= len(d) || d[s.pos] != '"' {
		return 0, 0, false, false
	}
	i := s.pos + 1
	start = i
	for i < len(d) {
		for i < len(d) && plain[d[i]] {
			i++
		}
		if i >= len(d) {
			break
		}
		c := d[i]
		switch {
		case c == '"':
			s.pos = i + 1
			return start, i, escaped, true
		case c == '\\':
			escaped = true
			i++
			if i >= len(d) {
				return 0, 0, false, false
			}
			switch d[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i++
			case 'u':
				if i+5 > len(d) {
					return 0, 0, false, false
				}
				for j := i + 1; j < i+5; j++ {
					if !isHex(d[j]) {
						return 0, 0, false, false
					}
				}
				i += 5
			default:
				return 0, 0, false, false
			}
		case c < 0x20:
			return 0, 0, false, false
		default:
			i++
		}
	}
	return 0, 0, false, false
}

func (s *scanner) object() bool {
	if s.depth++; s.depth > maxDepth {
		return false
	}
	s.pos++ // '{'
	s.ws()
	if s.pos < len(s.d) && s.d[s.pos] == '}' {
		s.pos++
		s.depth--
		return true
	}
	for {
		s.ws()
		if _, _, _, ok := s.str(); !ok {
			return false
		}
		s.ws()
		if s.pos >= len(s.d) || s.d[s.pos] != ':' {
			return false
		}
		s.pos++
		if !s.value() {
			return false
		}
		s.ws()
		if s.pos >= len(s.d) {
			return false
		}
		switch s.d[s.pos] {
		case ',':
			s.pos++
		case '}':
			s.pos++
			s.depth--
			return true
		default:
			return false
		}
	}
}

func (s *scanner) array() bool {
	if s.depth++; s.depth > maxDepth {
		return false
	}
	s.pos++ // '['
	s.ws()
	if s.pos < len(s.d) && s.d[s.pos] == ']' {
		s.pos++
		s.depth--
		return true
	}
	for {
		if !s.value() {
			return false
		}
		s.ws()
		if s.pos >= len(s.d) {
			return false
		}
		switch s.d[s.pos] {
		case ',':
			s.pos++
		case ']':
			s.pos++
			s.depth--
			return true
		default:
			return false
		}
	}
}

// objectIter walks the members of one raw JSON object, validating as it goes. The
// caller must not act on what it read until next returned false with bad() false:
// a malformed object is discovered only at its end.
type objectIter struct {
	s     scanner
	state uint8
}

const (
	iterStart uint8 = iota
	iterFirst
	iterMore
	iterDone
	iterBad
)

func iterObject(raw []byte) objectIter { return objectIter{s: scanner{d: raw}} }

// next returns the next member: its key as written (escaped reports backslashes in
// it) and its raw value. ok is false at the end or on malformed input. After it,
// it.s.spaced tells whether the value holds white space.
func (it *objectIter) next() (key []byte, escaped bool, val []byte, ok bool) {
	s := &it.s
	switch it.state {
	case iterDone, iterBad:
		return nil, false, nil, false
	case iterStart:
		s.ws()
		if s.pos >= len(s.d) || s.d[s.pos] != '{' {
			return it.fail()
		}
		s.pos++
		s.depth = 1
		s.ws()
		if s.pos < len(s.d) && s.d[s.pos] == '}' {
			s.pos++
			return it.finish()
		}
	case iterMore:
		s.ws()
		if s.pos >= len(s.d) {
			return it.fail()
		}
		switch s.d[s.pos] {
		case ',':
			s.pos++
		case '}':
			s.pos++
			return it.finish()
		default:
			return it.fail()
		}
	}
	s.ws()
	ks, ke, esc, good := s.str()
	if !good {
		return it.fail()
	}
	s.ws()
	if s.pos >= len(s.d) || s.d[s.pos] != ':' {
		return it.fail()
	}
	s.pos++
	s.ws()
	vs := s.pos
	s.spaced = false
	if !s.value() {
		return it.fail()
	}
	it.state = iterMore
	return s.d[ks:ke], esc, s.d[vs:s.pos], true
}

func (it *objectIter) fail() ([]byte, bool, []byte, bool) {
	it.state = iterBad
	return nil, false, nil, false
}

// finish checks that nothing but white space follows the object.
func (it *objectIter) finish() ([]byte, bool, []byte, bool) {
	it.s.ws()
	if it.s.pos != len(it.s.d) {
		return it.fail()
	}
	it.state = iterDone
	return nil, false, nil, false
}

// bad reports whether the object was malformed (or not an object at all).
func (it *objectIter) bad() bool { return it.state == iterBad }

// member is one member of an object: its decoded key and its raw value; spaced
// is false when the value holds no white space (outside strings or not).
type member struct {
	key    []byte
	val    []byte
	spaced bool
}

// readMembers appends the members of the object raw to dst. ok is false, and dst
// returned unchanged, when raw is not a well-formed object.
func readMembers(dst []member, raw []byte) ([]member, bool) {
	n := len(dst)
	it := iterObject(raw)
	for {
		k, esc, v, ok := it.next()
		if !ok {
			break
		}
		if esc {
			k = []byte(unquote(k))
		}
		dst = append(dst, member{k, v, it.s.spaced})
	}
	if it.bad() {
		return dst[:n], false
	}
	return dst, true
}

// unquote decodes the contents of a string that holds escapes (already validated by
// the scanner). Invalid UTF-8 and lone surrogates become U+FFFD, as encoding/json
// does, so that a decoded string survives a JSON round trip unchanged.
func unquote(contents []byte) string {
	q := make([]byte, 0, len(contents)+2)
	q = append(append(append(q, '"'), contents...), '"')
	var out string
	if err := json.Unmarshal(q, &out); err != nil {
		return ""
	}
	return out
}

// stringValue returns the text of a raw JSON string value; ok is false for any
// other value and for a malformed string. The text is valid UTF-8 (see unquote).
func stringValue(v []byte) (string, bool) {
	sc := scanner{d: v}
	st, en, esc, ok := sc.str()
	if !ok || sc.pos != len(v) {
		return "", false
	}
	if esc || !utf8.Valid(v[st:en]) {
		return unquote(v[st:en]), true
	}
	return string(v[st:en]), true
}

// numberValue reports whether v is exactly one well-formed JSON number.
func numberValue(v []byte) bool {
	sc := scanner{d: v}
	return sc.number() && sc.pos == len(v)
}

// appendCompact appends the validated JSON value v without the white space outside
// its strings, so that equal values written with different spacing store (and
// compare, for last-write-wins ties) as the same bytes.
func appendCompact(dst, v []byte) []byte {
	in := false
	for i := 0; i < len(v); i++ {
		c := v[i]
		if in {
			dst = append(dst, c)
			switch c {
			case '\\':
				if i+1 < len(v) {
					i++
					dst = append(dst, v[i])
				}
			case '"':
				in = false
			}
			continue
		}
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		case '"':
			in = true
		}
		dst = append(dst, c)
	}
	return dst
}

// compactLen is the length appendCompact would produce; it lets oversized values
// be refused before anything is copied.
func compactLen(v []byte) int {
	n, in := 0, false
	for i := 0; i < len(v); i++ {
		c := v[i]
		if in {
			n++
			switch c {
			case '\\':
				if i+1 < len(v) {
					i++
					n++
				}
			case '"':
				in = false
			}
			continue
		}
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		case '"':
			in = true
		}
		n++
	}
	return n
}
