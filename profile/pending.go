package profile

import (
	"encoding/binary"
	"time"

	"github.com/trustloop/trustloop"
)

// Pending inputs: the projection may hold an event's Input, encoded, instead of
// applying it at once (see "Held events" in projection), and apply it later with
// the profile's next decode. AppendInput keeps only what Apply reads of a track
// call's properties (the members readProperties picks), so a product view
// costs about a hundred bytes, not its message.
//
// The encoding lives in memory only (it is never sealed or stored), so it has no
// version: a process reads only what it wrote. ReadInput still checks what it
// reads and fails instead of panicking on bytes it did not write.

// AppendInput appends the encoding of in to b. Apply gives the same state and
// the same Result for ReadInput's answer as for in (TestPendingInputApplies).
func AppendInput(b []byte, in *Input) []byte {
	b = append(b, byte(in.Type))
	b = appendString(b, in.Event)
	b = appendInstant(b, in.Timestamp)
	b = appendInstant(b, in.ReceivedAt)
	b = binary.AppendVarint(b, in.SourceID)
	b = appendBytes(b, in.Traits)
	b = appendString(b, in.GroupID)
	b = appendBytes(b, in.ContextTraits)
	var buf [256]byte
	b = appendBytes(b, reduceProperties(buf[:0], in.Properties))
	b = binary.AppendUvarint(b, uint64(len(in.Purposes)))
	for _, p := range in.Purposes {
		b = appendString(b, p)
	}
	return b
}

// ReadInput decodes the first input of b and returns it with the rest of b. The
// input's raw members are slices of b, which must not change while it is used;
// its strings are its own.
func ReadInput(b []byte) (Input, []byte, error) {
	r := reader{b: b}
	var in Input
	if len(b) == 0 {
		return in, nil, malformedInput()
	}
	in.Type, r.b = trustloop.EventType(b[0]), b[1:]
	if ev := r.bytes(); len(ev) > 0 {
		// Its own string (a map key of the state), not interned: any name a
		// client sends, of any length, before Apply's checks.
		in.Event = string(ev)
	}
	in.Timestamp = r.instant()
	in.ReceivedAt = r.instant()
	in.SourceID = r.varint()
	in.Traits = nilIfEmpty(r.bytes())
	if g := r.bytes(); len(g) > 0 {
		in.GroupID = string(g)
	}
	in.ContextTraits = nilIfEmpty(r.bytes())
	in.Properties = nilIfEmpty(r.bytes())
	if n := r.count(1); n > 0 {
		in.Purposes = make([]string, n)
		for i := range in.Purposes {
			in.Purposes[i] = intern(r.bytes()) // the catalog's ids: few, never personal
		}
	}
	if r.bad {
		return Input{}, nil, malformedInput()
	}
	return in, r.b, nil
}

func malformedInput() error {
	return trustloop.Errorf(trustloop.EINTERNAL, "profile: malformed pending input")
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// appendInstant writes a time exactly (Apply tells a zero time from an
// out-of-range one): 0 for zero, else 1, its Unix seconds and nanoseconds.
func appendInstant(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, 0)
	}
	b = append(b, 1)
	b = binary.AppendVarint(b, t.Unix())
	return binary.AppendVarint(b, int64(t.Nanosecond()))
}

func (r *reader) instant() time.Time {
	if r.bad || len(r.b) == 0 {
		r.bad = true
		return time.Time{}
	}
	set := r.b[0]
	r.b = r.b[1:]
	switch set {
	case 0:
		return time.Time{}
	case 1:
		sec, ns := r.varint(), r.varint()
		if ns < 0 || ns >= int64(time.Second) {
			r.bad = true
			return time.Time{}
		}
		return time.Unix(sec, ns).UTC()
	}
	r.bad = true
	return time.Time{}
}

// reduceProperties returns, for a properties object, an object of only the
// members Apply reads (the last of each name, as pick reads them; nulls left
// out, as Apply ignores them), built in out; anything that is not an object
// pick can read is kept whole, so that Apply names the same reason for it.
// raw must be what the collector validated (pick does not validate).
func reduceProperties(out, raw []byte) []byte {
	if len(raw) == 0 || isNull(raw) || firstByte(raw) != '{' {
		return raw
	}
	var v [6][]byte
	if !pick(raw, propertyMembers, v[:]) {
		return raw
	}
	out = append(out, '{')
	for i, name := range propertyMembers {
		if val := notNull(v[i]); val != nil {
			if len(out) > 1 {
				out = append(out, ',')
			}
			out = append(append(append(append(out, '"'), name...), `":`...), val...)
		}
	}
	if len(out) >= len(raw) {
		return raw // nothing saved (a small object of only these members)
	}
	return append(out, '}')
}
