package profile

import (
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/trustloop/trustloop"
)

// Input is what the projection reads of one event. The raw members are sub-slices
// of the message; Apply copies what it keeps.
type Input struct {
	Type trustloop.EventType
	// Event is the track event's name.
	Event string
	// Timestamp is the event time after clock-skew correction; ReceivedAt the
	// collector's time of receipt (the fallback, and a tie-breaker).
	Timestamp  time.Time
	ReceivedAt time.Time
	SourceID   int64
	// Traits is the `traits` member of an identify or group call, nil otherwise.
	Traits json.RawMessage
	// GroupID is a group call's groupId (a number as its literal text).
	GroupID string
	// ContextTraits is context.traits of the message, else of its batch's context.
	ContextTraits json.RawMessage
	// Properties is the `properties` member of a track call, nil otherwise.
	Properties json.RawMessage
	// Purposes are the purposes the event was collected for (those it may
	// serve), sorted; nil when not known (collected before consent was
	// enforced).
	Purposes []string
}

// The members InputFrom reads, in the order of its values array.
var (
	messageMembers = []string{"traits", "properties", "context", "groupId"}
	contextMembers = []string{"traits"}
)

// InputFrom extracts the projection's input from a message collect.Decode
// accepted. JSON nulls read as absent. It copies nothing: the Input's raw members
// are slices of m.Raw and m.BatchContext.
func InputFrom(m *trustloop.Message, sourceID int64) Input {
	in := Input{
		Type:       m.Type,
		Event:      m.Event,
		Timestamp:  m.Timestamp,
		ReceivedAt: m.ReceivedAt,
		SourceID:   sourceID,
		Purposes:   sortedPurposes(m.Purposes),
	}
	var v [4][]byte
	if !pick(m.Raw, messageMembers, v[:]) {
		return in
	}
	traits, props, ctx, gid := notNull(v[0]), notNull(v[1]), notNull(v[2]), notNull(v[3])
	switch m.Type {
	case trustloop.EventIdentify:
		in.Traits = traits
	case trustloop.EventGroup:
		in.Traits = traits
		in.GroupID = idValue(gid)
	case trustloop.EventTrack:
		in.Properties = props
	}
	// The batch's context applies under the message's own: its traits count only
	// when the message's context has none.
	if in.ContextTraits = contextTraits(ctx); in.ContextTraits == nil {
		in.ContextTraits = contextTraits(m.BatchContext)
	}
	return in
}

// contextTraits returns the traits member of a context object, nil when there is
// none or it is null.
func contextTraits(ctx []byte) []byte {
	if len(ctx) == 0 {
		return nil
	}
	var v [1][]byte
	if !pick(ctx, contextMembers, v[:]) {
		return nil
	}
	return notNull(v[0])
}

// idValue reads an identifier as collect does: a string, or a number as its literal
// text, trimmed. Anything else gives "".
func idValue(v []byte) string {
	if s, ok := stringValue(v); ok {
		return strings.TrimSpace(s)
	}
	if numberValue(v) {
		return string(v)
	}
	return ""
}

func isNull(v []byte) bool { return string(v) == "null" }

func notNull(v []byte) []byte {
	if isNull(v) {
		return nil
	}
	return v
}

// sortedPurposes returns purposes sorted (the catalog's order is not the
// alphabet's), copying only when they are not.
func sortedPurposes(p []string) []string {
	if p == nil || slices.IsSorted(p) {
		return p
	}
	return slices.Sorted(slices.Values(p))
}
