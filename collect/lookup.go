package collect

import (
	"encoding/binary"
	"errors"
	"math/bits"
)

// Reading a few members out of raw JSON.
//
// The collector keeps properties, traits and context as raw bytes (see doc.go);
// later stages (identity resolution first) need a handful of members out of them
// per event. Decoding the whole message for that would cost more than collecting
// it, so these functions walk the bytes with the package's scanner and skip, without
// validating again, every value they do not need: the collector validated the whole
// body before a message could exist.
//
// Duplicate member names: the last one wins, as in encoding/json and JavaScript's
// JSON.parse, and as the collector itself does for userId and anonymousId. Taking
// the first (and stopping there) would be faster, but then identity resolution and
// anything that decodes traits with encoding/json could disagree about the same
// message, and such a disagreement is the raw material of parser-differential tricks.
//
// On bytes that are not valid JSON these functions never panic and always return;
// what they return then is unspecified (not ok, or some value), which is why callers
// must only feed them bytes the collector accepted.

// errStop ends a walk early without being an error of the input.
var errStop = errors.New("stop")

// Lookup returns the raw JSON value at a path of member names (for example
// Lookup(raw, "context", "device", "id")), with no surrounding white space. ok is
// false when a member is missing or something on the path is not an object. An
// empty path returns the whole value. It does not allocate.
func Lookup(raw []byte, path ...string) (value []byte, ok bool) {
	if len(path) > maxDepth {
		return nil, false
	}
	s := scanner{data: raw}
	start, end, ok, err := s.lookup(path)
	if err != nil || !ok {
		return nil, false
	}
	return raw[start:end], true
}

// lookup consumes the value at the cursor and returns the range of the value at
// path inside it. It walks the bytes once: a matching member is searched as it is
// passed instead of being skipped and then walked again.
func (s *scanner) lookup(path []string) (start, end int, found bool, err error) {
	s.ws()
	if len(path) == 0 {
		start = s.pos
		err = s.skip()
		return start, s.pos, err == nil, err
	}
	if s.peek() != '{' {
		return 0, 0, false, s.skip()
	}
	err = s.object(func(key []byte, esc bool) error {
		if !keyIs(key, esc, path[0]) {
			return s.skip()
		}
		// A later member of the same name replaces this one, found or not.
		var err error
		start, end, found, err = s.lookup(path[1:])
		return err
	})
	return start, end, found && err == nil, err
}

// LookupString returns the string at a path, unescaped. ok is false when the member
// is missing or is not a JSON string (null and numbers included).
func LookupString(raw []byte, path ...string) (string, bool) {
	v, ok := Lookup(raw, path...)
	if !ok {
		return "", false
	}
	return StringValue(v)
}

// StringValue returns the value of a raw JSON string, unescaped; ok is false when
// v is not exactly one JSON string.
func StringValue(v []byte) (string, bool) {
	s := scanner{data: v}
	st, en, esc, err := s.str()
	if err != nil || s.pos != len(v) {
		return "", false
	}
	return unquote(v[st:en], esc), true
}

// Members calls fn for each member of the object raw, in order, with the member's
// unescaped name and raw value. It stops at the first error fn returns and returns
// it; it returns a (value-free) error of its own when raw is not an object. Each name
// is a new string: to read known members without allocating, use Pick.
func Members(raw []byte, fn func(key string, value []byte) error) error {
	s := scanner{data: raw}
	var ferr error
	err := s.object(func(key []byte, esc bool) error {
		vs := s.pos
		if err := s.skip(); err != nil {
			return err
		}
		if err := fn(unquote(key, esc), raw[vs:s.pos]); err != nil {
			ferr = err
			return errStop
		}
		return nil
	})
	if ferr != nil {
		return ferr
	}
	return err
}

// ValidMembers is Members for bytes the collector did not vouch for: it validates
// the whole object (and that nothing but white space follows it) while walking it,
// and calls fn with each member's name, unescaped only when it held escapes (the
// slice is then new; otherwise it points into raw), and its raw, well-formed value.
// It returns a value-free error when raw is not a well-formed object; fn is then
// possibly called for the members before the fault.
func ValidMembers(raw []byte, fn func(key, value []byte) error) error {
	s := scanner{data: raw}
	var ferr error
	err := s.object(func(key []byte, esc bool) error {
		s.ws()
		vs := s.pos
		if err := s.value(); err != nil {
			return err
		}
		if esc {
			key = []byte(unquote(key, true))
		}
		if err := fn(key, raw[vs:s.pos]); err != nil {
			ferr = err
			return errStop
		}
		return nil
	})
	if ferr != nil {
		return ferr
	}
	if err != nil {
		return err
	}
	return s.end()
}

// ValidNumber reports whether v is exactly one well-formed JSON number.
func ValidNumber(v []byte) bool {
	s := scanner{data: v}
	return s.number() == nil && s.pos == len(v)
}

// Pick reads several members of the object raw in one pass: values[i] is set to the
// raw value of the member names[i], or nil when there is none. It does not allocate.
// ok is false when raw is not an object (values are then all nil); len(values) must
// be at least len(names).
func Pick(raw []byte, names []string, values [][]byte) (ok bool) {
	values = values[:len(names)]
	clear(values)
	s := scanner{data: raw}
	err := s.object(func(key []byte, esc bool) error {
		vs := s.pos
		if err := s.skip(); err != nil {
			return err
		}
		if esc {
			key = []byte(unquote(key, true)) // rare: decode once, not once per name
		}
		for i, name := range names {
			if string(key) == name {
				values[i] = raw[vs:s.pos]
			}
		}
		return nil
	})
	if err != nil {
		clear(values)
		return false
	}
	return true
}

// skip moves the cursor past one JSON value without validating it: strings are
// found by their closing quote and containers by bracket depth (outside strings),
// which is all that valid JSON needs and several times faster than value. Whatever
// the bytes, it only moves forward, stops at the end and does not recurse.
func (s *scanner) skip() error {
	d := s.data
	switch s.peek() {
	case 0:
		return errEOF
	case '"':
		i, err := skipString(d, s.pos+1)
		s.pos = i
		return err
	case '{', '[':
	default:
		// A number or literal runs to the next delimiter.
		i := s.pos
		for i < len(d) && !delimiter[d[i]] {
			i++
		}
		if i == s.pos {
			return errSyntax
		}
		s.pos = i
		return nil
	}
	depth := 0
	i := s.pos
	for i < len(d) {
		switch d[i] {
		case '"':
			var err error
			if i, err = skipString(d, i+1); err != nil {
				s.pos = i
				return err
			}
			continue
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				s.pos = i + 1
				return nil
			}
		}
		i++
	}
	s.pos = i
	return errEOF
}

// delimiter marks the bytes that end a number or a literal.
var delimiter = [256]bool{',': true, '}': true, ']': true, ' ': true, '\t': true, '\n': true,
	'\r': true, ':': true, '"': true, '{': true, '[': true}

// skipString returns the index just past the closing quote of the string whose
// contents start at i. It looks at eight bytes at a time for a quote or a
// backslash: most of a message is short strings, and this is where skipping spends
// its time.
func skipString(d []byte, i int) (int, error) {
	for {
		for i+8 <= len(d) {
			w := binary.LittleEndian.Uint64(d[i:])
			if m := hasByte(w, '"') | hasByte(w, '\\'); m != 0 {
				i += bits.TrailingZeros64(m) / 8
				break
			}
			i += 8
		}
		for i < len(d) && d[i] != '"' && d[i] != '\\' {
			i++
		}
		switch {
		case i >= len(d):
			return len(d), errEOF
		case d[i] == '"':
			return i + 1, nil
		}
		i += 2 // a backslash and the byte it escapes
	}
}

// hasByte returns a word whose high bit is set in each byte of w equal to b, at
// least for the lowest such byte (the classic SWAR zero-byte test: bytes above the
// first match may be falsely flagged, which is harmless when only the lowest one
// is used).
func hasByte(w uint64, b byte) uint64 {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	x := w ^ (lo * uint64(b))
	return (x - lo) &^ x & hi
}
