package profile

import (
	"bytes"
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
//   - readMembers walks a traits object with collect.ValidMembers, which
//     validates, because trait values are stored and re-encoded: a malformed
//     object yields no member at all, and every value it returns is well-formed.

// pick reads the members names of the object raw into values (nil when absent); ok
// is false when raw is not an object.
func pick(raw []byte, names []string, values [][]byte) bool {
	return collect.Pick(raw, names, values)
}

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
	err := collect.ValidMembers(raw, func(k, v []byte) error {
		// White space only matters outside strings, but looking for it anywhere is
		// a cheap, safe test for whether compaction is worth a pass.
		dst = append(dst, member{k, v, bytes.ContainsAny(v, " \t\n\r")})
		return nil
	})
	if err != nil {
		return dst[:n], false
	}
	return dst, true
}

// unquote decodes the contents of a string that holds escapes or invalid UTF-8.
// Invalid UTF-8 and lone surrogates become U+FFFD, as encoding/json does, so that a
// decoded string survives a JSON round trip unchanged.
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
	out, ok := collect.StringValue(v)
	if ok && !utf8.ValidString(out) {
		out = unquote(v[1 : len(v)-1])
	}
	return out, ok
}

// numberValue reports whether v is exactly one well-formed JSON number.
func numberValue(v []byte) bool { return collect.ValidNumber(v) }

// appendCompact appends the validated JSON value v without the white space outside
// its strings, so that equal values written with different spacing store (and
// compare, for last-write-wins ties) as the same bytes.
func appendCompact(dst, v []byte) []byte {
	dst, _ = compact(dst, v, true)
	return dst
}

// compactLen is the length appendCompact would produce; it lets oversized values
// be refused before anything is copied.
func compactLen(v []byte) int {
	_, n := compact(nil, v, false)
	return n
}

// compact is the one walk behind appendCompact and compactLen: it counts the
// bytes kept and, when keep is set, appends them to dst.
func compact(dst, v []byte, keep bool) ([]byte, int) {
	n, in := 0, false
	emit := func(c byte) {
		n++
		if keep {
			dst = append(dst, c)
		}
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if in {
			emit(c)
			switch c {
			case '\\':
				if i+1 < len(v) {
					i++
					emit(v[i])
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
		emit(c)
	}
	return dst, n
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
