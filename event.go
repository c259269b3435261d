package trustloop

import (
	"context"
	"time"
)

// EventType is the Segment call a message was made with.
type EventType uint8

const (
	EventTrack EventType = iota + 1
	EventIdentify
	EventPage
	EventScreen
	EventGroup
	EventAlias
)

var eventTypeNames = [...]string{"", "track", "identify", "page", "screen", "group", "alias"}

func (t EventType) String() string {
	if int(t) < len(eventTypeNames) {
		return eventTypeNames[t]
	}
	return "unknown"
}

// ParseEventType maps a Segment type name to its EventType; ok is false for an
// unknown name.
func ParseEventType(s string) (t EventType, ok bool) {
	for i := 1; i < len(eventTypeNames); i++ {
		if eventTypeNames[i] == s {
			return EventType(i), true
		}
	}
	return 0, false
}

// Wire limits of the collector (API.md).
const (
	MaxEventBytes    = 32 * 1024
	MaxRequestBytes  = 500 * 1024
	MaxBatchEvents   = 2500
	MaxMessageIDLen  = 99 // "< 100 chars"
	MaxIdentifierLen = 1024
)

// ConsentSignals are the consent facts a request carried, captured with each event
// as evidence and as input to the consent decision. Category names are the CMP's
// own (mapped to purposes through the catalog's aliases, not here).
type ConsentSignals struct {
	// CategoryPreferences is context.consent.categoryPreferences, in Segment's format.
	CategoryPreferences map[string]bool
	// TCString is context.consent.tcString (IAB TCF v2.2), undecoded.
	TCString string
	// GPC is true when the request carried exactly `Sec-GPC: 1`.
	GPC bool
	// Jurisdiction is context.consent.jurisdiction (a Trustloop extension): the
	// jurisdiction the site applied, which may override the workspace regime.
	Jurisdiction string
}

// Message is one decoded, validated Segment message: the few fields Trustloop needs
// to route, deduplicate and key it, and the raw JSON to seal. Decoding does not look
// into properties or traits; their bytes travel untouched.
type Message struct {
	Type        EventType
	MessageID   string
	UserID      string
	AnonymousID string
	// Event is the track event's name.
	Event string
	// OriginalTimestamp is the client's own time of the event (zero if none was sent).
	OriginalTimestamp time.Time
	SentAt            time.Time
	// Timestamp is the event time after clock-skew correction.
	Timestamp  time.Time
	ReceivedAt time.Time
	// GeneratedID is true when the collector made MessageID up.
	GeneratedID bool
	Consent     ConsentSignals
	// Purposes are the purposes allowed when the event was collected, set by
	// the consent stage and sealed with it.
	Purposes []string
	// Raw is the message object as sent, less any writeKey member.
	Raw []byte
	// BatchContext is the batch-level context object, which applies to every
	// message of the batch under the message's own context.
	BatchContext []byte
}

// Subject returns the identifier a message's data is keyed to: the user id when
// there is one, else the anonymous id. (Identity resolution joins these later; the
// key stays with the identifier it was made for.)
func (m *Message) Subject() (idType, value string) {
	if m.UserID != "" {
		return "user_id", m.UserID
	}
	return "anonymous_id", m.AnonymousID
}

// StoredEvent is an event as the log keeps it: routing columns in the clear, which
// hold no personal data, and the sealed envelope.
type StoredEvent struct {
	// Seq is the log position, assigned by the store at commit.
	Seq         int64
	WorkspaceID int64
	SourceID    int64
	// MessageHash is a keyed hash of the messageId; (SourceID, MessageHash) is unique.
	MessageHash []byte
	// KeyID names the subject key that sealed Payload.
	KeyID      int64
	Type       EventType
	ReceivedAt time.Time
	Timestamp  time.Time
	Payload    []byte
}

// SubjectKey is one subject's data key as stored: wrapped by the master key and
// found by the blind index of the subject's identifier.
type SubjectKey struct {
	ID          int64
	WorkspaceID int64
	Blind       []byte
	Wrapped     []byte
	CreatedAt   time.Time
}

// CommitBatch is what one group commit writes: keys made for subjects seen for the
// first time, and the events.
type CommitBatch struct {
	NewKeys []SubjectKey
	Events  []StoredEvent
	// Project, when set, is called inside the transaction once the repeats are
	// known, and its changes are written in the same transaction.
	Project Projector
}

// EventStore is the durable event log.
type EventStore interface {
	// AppendEvents writes the batch in one durable transaction: when it returns nil
	// everything is committed (synced). Events whose (SourceID, MessageHash) is
	// already stored are skipped; stored counts the rest. Returns ECONFLICT when a
	// key in NewKeys was created concurrently by another writer (the caller reloads
	// keys and retries); nothing is written then.
	AppendEvents(ctx context.Context, b *CommitBatch) (stored int, err error)

	// ListEvents returns up to limit events of the workspace with Seq > after, in
	// Seq order.
	ListEvents(ctx context.Context, workspaceID, after int64, limit int) ([]StoredEvent, error)

	// FindSubjectKeys returns the stored keys of the given blind indexes, keyed by
	// string(blind). Absent ones are missing from the map.
	FindSubjectKeys(ctx context.Context, workspaceID int64, blinds [][]byte) (map[string]SubjectKey, error)
}
