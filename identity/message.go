package identity

import (
	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/collect"
)

// Member names FromMessage picks, in the order of the value slots it reads them
// into.
var (
	messageMembers = []string{"traits", "context", "previousId"}
	contextMembers = []string{"traits", "device"}
)

// FromMessage extracts the identifiers of one decoded Segment message, normalized,
// each (type, value) once. Values that cannot be matched on (malformed emails and
// phones, placeholders, wrong JSON types) come back as skips: they stay in the
// message as traits, they are only not used to join profiles.
//
// Where identifiers are read:
//   - userId as user_id and anonymousId as anonymous_id;
//   - context.device.id as device_id;
//   - email, phone and the custom types' trait keys in context.traits (every
//     call) and in traits (identify calls; group calls only with
//     Config.GroupTraits, because a group's traits describe the group);
//   - an alias call's previousId as PreviousID, which Resolve matches as a user_id
//     or an anonymous_id.
//
// The batch-level context (m.BatchContext) applies under the message's own, member
// by member: context.device.id and each trait key are taken from the message's
// context when it has that member (even null), else from the batch's. Strings and
// numbers (as their literal text, as the collector does for userId) are accepted;
// null is the same as absent.
func (r *Rules) FromMessage(m *trustloop.Message) (ids []trustloop.Identifier, skipped []Skip) {
	x := extraction{r: r, ids: make([]trustloop.Identifier, 0, 4)}
	x.add(trustloop.IDUserID, m.UserID)
	x.add(trustloop.IDAnonymousID, m.AnonymousID)

	var top [3][]byte
	collect.Pick(m.Raw, messageMembers, top[:])
	if m.Type == trustloop.EventAlias {
		x.addRaw(PreviousID, top[2])
	}
	var ctx, batch [2][]byte
	collect.Pick(top[1], contextMembers, ctx[:])
	collect.Pick(m.BatchContext, contextMembers, batch[:])
	if v, ok := collect.Lookup(ctx[1], "id"); ok {
		x.addRaw(trustloop.IDDeviceID, v)
	} else if v, ok := collect.Lookup(batch[1], "id"); ok {
		x.addRaw(trustloop.IDDeviceID, v)
	}

	if m.Type == trustloop.EventIdentify || m.Type == trustloop.EventGroup && r.groupTraits {
		x.traits(top[0], nil)
	}
	x.traits(ctx[0], batch[0])
	return x.ids, x.skipped
}

// extraction accumulates one message's identifiers.
type extraction struct {
	r       *Rules
	ids     []trustloop.Identifier
	skipped []Skip
}

// traits reads the trait keys of the rules out of a traits object, each from
// below when over lacks it.
func (x *extraction) traits(over, below []byte) {
	if over == nil && below == nil {
		return
	}
	n := len(x.r.traitKeys)
	var buf [16][]byte
	vals := buf[:0]
	if 2*n > len(buf) {
		vals = make([][]byte, 0, 2*n)
	}
	vals = vals[:2*n]
	collect.Pick(over, x.r.traitKeys, vals[:n])
	collect.Pick(below, x.r.traitKeys, vals[n:])
	for i := range n {
		v := vals[i]
		if v == nil {
			v = vals[n+i]
		}
		x.addRaw(x.r.types[x.r.traitTypes[i]].name, v)
	}
}

// addRaw adds the identifier held by a raw JSON value; nil means absent.
func (x *extraction) addRaw(typ string, v []byte) {
	if len(v) == 0 {
		return
	}
	switch c := v[0]; {
	case c == '"':
		s, ok := collect.StringValue(v)
		if !ok {
			x.skip(typ, ReasonNotString)
			return
		}
		if s == "" {
			x.skip(typ, ReasonEmpty)
			return
		}
		x.add(typ, s)
	case c == '-' || c >= '0' && c <= '9':
		x.add(typ, string(v))
	case c == 'n': // null
	default:
		x.skip(typ, ReasonNotString)
	}
}

// add normalizes and adds a value; "" means absent (the collector reads a missing
// userId and a null one alike).
func (x *extraction) add(typ, value string) {
	if value == "" {
		return
	}
	v, reason := x.r.normalize(typ, value)
	if reason != "" {
		x.skip(typ, reason)
		return
	}
	id := trustloop.Identifier{Type: typ, Value: v}
	for _, have := range x.ids {
		if have == id {
			return
		}
	}
	x.ids = append(x.ids, id)
}

func (x *extraction) skip(typ, reason string) {
	x.skipped = append(x.skipped, Skip{Type: typ, Reason: reason})
}
