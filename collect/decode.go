package collect

import (
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/trustloop/trustloop"
)

// Route says what a request body holds: one message of a given type, or a batch.
type Route struct {
	// Type is the message type of a single-message route; 0 for a batch.
	Type trustloop.EventType
}

var errDuplicateBatch = errors.New(`"batch" appears twice`)

// Batch is the route of /v1/batch, /v1/import and /v1/b.
var Batch = Route{}

// Request is a decoded tracking-API request.
type Request struct {
	// WriteKey is the writeKey member of the body, if any (browser paths send it
	// there instead of in the Authorization header).
	WriteKey string
	Messages []trustloop.Message
}

// Options are the collector's per-request inputs that do not come from the body.
type Options struct {
	ReceivedAt time.Time
	// NewID makes a messageId for a message that has none.
	NewID func() string
	// GPC is true when the request carried `Sec-GPC: 1`.
	GPC bool
}

// maxDetails caps the per-index reasons of one error so that a 2,500-event batch of
// garbage gets a readable answer.
const maxDetails = 50

// Decode parses and validates a request body. It is all or nothing: any invalid
// message makes it return an EINVALID (or ETOOLARGE) error listing the offending
// indexes, and no messages.
func Decode(body []byte, route Route, opt Options) (*Request, error) {
	s := &scanner{data: body, text: true}
	if s.peek() != '{' {
		if s.pos >= len(body) {
			return nil, trustloop.Errorf(trustloop.EINVALID, "The request body is empty.").
				WithHint("Send a JSON object in the body.")
		}
		return nil, syntaxError(s, fmt.Errorf("the body must be a JSON object"))
	}
	if route.Type != 0 {
		return decodeSingle(s, route.Type, opt)
	}
	return decodeBatch(s, opt)
}

func syntaxError(s *scanner, err error) error {
	return trustloop.Errorf(trustloop.EINVALID, "Malformed JSON at byte %d: %v.", s.pos, err).
		WithHint("Send a valid JSON object (RFC 8259) in UTF-8.")
}

func decodeSingle(s *scanner, typ trustloop.EventType, opt Options) (*Request, error) {
	req := &Request{}
	m, writeKey, reason, err := decodeMessage(s, typ, opt)
	if err != nil {
		return nil, syntaxError(s, err)
	}
	if err := s.end(); err != nil {
		return nil, syntaxError(s, err)
	}
	req.WriteKey = writeKey
	if reason == "" {
		reason = finish(&m, &batchConsent{}, time.Time{}, opt)
	}
	if reason != "" {
		return nil, invalid([]trustloop.ErrorDetail{{Index: 0, Reason: reason}}, 1)
	}
	if len(m.Raw) > trustloop.MaxEventBytes {
		return nil, tooLargeEvents([]trustloop.ErrorDetail{{Index: 0, Reason: "event is larger than 32 KB"}})
	}
	req.Messages = []trustloop.Message{m}
	return req, nil
}

func decodeBatch(s *scanner, opt Options) (*Request, error) {
	req := &Request{}
	var (
		batchContext []byte
		batchSentAt  time.Time
		batchBad     bool // a batch-level member is invalid (detail index -1)
		sawBatch     bool
		batchNotArr  bool
		over         bool // more than MaxBatchEvents items
		details      []trustloop.ErrorDetail
		tooLarge     []trustloop.ErrorDetail
		nInvalid     int
	)
	err := s.object(func(key []byte, esc bool) error {
		switch {
		case keyIs(key, esc, "batch"):
			if sawBatch {
				return errDuplicateBatch
			}
			sawBatch = true
			if s.peek() != '[' {
				batchNotArr = true
				return s.value()
			}
			req.Messages = req.Messages[:0]
			tooLarge, nInvalid, over = nil, 0, false
			return s.array(func(i int) error {
				if i >= trustloop.MaxBatchEvents {
					// Keep checking the syntax but stop decoding: the batch is
					// rejected as too large below.
					over = true
					return s.value()
				}
				if s.peek() != '{' {
					nInvalid++
					details = addDetail(details, i, "each batch item must be a JSON object")
					return s.value()
				}
				m, _, reason, err := decodeMessage(s, 0, opt)
				if err != nil {
					return err
				}
				if reason != "" {
					nInvalid++
					details = addDetail(details, i, reason)
				} else if len(m.Raw) > trustloop.MaxEventBytes {
					tooLarge = addDetail(tooLarge, i, "event is larger than 32 KB")
				}
				req.Messages = append(req.Messages, m)
				return nil
			})
		case keyIs(key, esc, "context"):
			start := s.pos
			switch s.peek() {
			case '{':
				if err := s.value(); err != nil {
					return err
				}
				batchContext = s.data[start:s.pos]
				return nil
			case 'n':
				return s.value()
			}
			batchBad = true
			details = addDetail(details, -1, "batch context must be an object")
			return s.value()
		case keyIs(key, esc, "sentAt"):
			t, ok, err := readTime(s)
			if err != nil {
				return err
			}
			if !ok {
				batchBad = true
				details = addDetail(details, -1, "batch sentAt must be an ISO-8601 date string")
			}
			batchSentAt = t
			return nil
		case keyIs(key, esc, "writeKey"):
			v, ok, err := readString(s)
			if err != nil {
				return err
			}
			if ok {
				req.WriteKey = v
			}
			return nil
		default:
			return s.value()
		}
	})
	if err != nil {
		return nil, syntaxError(s, err)
	}
	if err := s.end(); err != nil {
		return nil, syntaxError(s, err)
	}
	total := len(req.Messages)
	switch {
	case !sawBatch:
		return nil, trustloop.Errorf(trustloop.EINVALID, "The body has no \"batch\" array.").
			WithHint(`Send {"batch":[{...},{...}]}.`)
	case batchNotArr:
		return nil, trustloop.Errorf(trustloop.EINVALID, "\"batch\" must be an array of messages.").
			WithHint(`Send {"batch":[{...},{...}]}.`)
	case over:
		return nil, trustloop.Errorf(trustloop.ETOOLARGE, "The batch has more than %d events.", trustloop.MaxBatchEvents).
			WithHint(fmt.Sprintf("Split it into batches of at most %d events.", trustloop.MaxBatchEvents))
	case total == 0 && nInvalid == 0 && !batchBad:
		return nil, trustloop.Errorf(trustloop.EINVALID, "The batch is empty.").
			WithHint("Send at least one message in \"batch\".")
	}
	if nInvalid > 0 || batchBad {
		return nil, invalid(details, nInvalid)
	}
	if len(tooLarge) > 0 {
		return nil, tooLargeEvents(tooLarge)
	}
	bc := &batchConsent{raw: batchContext}
	for i := range req.Messages {
		if reason := finish(&req.Messages[i], bc, batchSentAt, opt); reason != "" {
			nInvalid++
			details = addDetail(details, i, reason)
		}
	}
	if nInvalid > 0 {
		return nil, invalid(details, nInvalid)
	}
	return req, nil
}

func addDetail(d []trustloop.ErrorDetail, i int, reason string) []trustloop.ErrorDetail {
	if len(d) >= maxDetails {
		return d
	}
	return append(d, trustloop.ErrorDetail{Index: i, Reason: reason})
}

func invalid(details []trustloop.ErrorDetail, n int) error {
	msg := "1 message is invalid; nothing was stored."
	if n != 1 {
		msg = fmt.Sprintf("%d messages are invalid; nothing was stored.", n)
	}
	if n == 0 {
		msg = "The batch is invalid; nothing was stored."
	}
	return &trustloop.Error{Code: trustloop.EINVALID, Message: msg, Details: details,
		Hint: "Fix the messages listed in details (index -1 is the batch itself) and send the whole request again."}
}

func tooLargeEvents(details []trustloop.ErrorDetail) error {
	return &trustloop.Error{Code: trustloop.ETOOLARGE, Details: details,
		Message: "An event is larger than the 32 KB limit; nothing was stored.",
		Hint:    "Keep each event under 32 KB: move large blobs out of properties and traits."}
}

// decodeMessage reads one message object. A wrong type of a known field gives a
// reason (the message is invalid); only malformed JSON gives an error. A typ of 0
// means the message must name its own type.
func decodeMessage(s *scanner, typ trustloop.EventType, opt Options) (m trustloop.Message, writeKey, reason string, err error) {
	start := s.pos
	var (
		typeSeen          bool
		writeKeys         [][2]int // value ranges of every writeKey member
		hasPrevID, hasGID bool
		ts, ots           time.Time
	)
	bad := func(r string) {
		if reason == "" {
			reason = r
		}
	}
	err = s.object(func(key []byte, esc bool) error {
		k := string(key)
		if esc {
			k = unquote(key, true)
		}
		switch k {
		case "type":
			v, ok, err := readString(s)
			if err != nil {
				return err
			}
			typeSeen = true
			t, known := trustloop.ParseEventType(v)
			switch {
			case !ok:
				bad("type must be a string")
			case typ == 0 && !known:
				bad("type must be one of track, identify, page, screen, group, alias")
			case typ == 0:
				m.Type = t
			}
		case "userId", "anonymousId", "previousId", "groupId":
			v, ok, err := readID(s)
			if err != nil {
				return err
			}
			switch {
			case !ok:
				bad(k + " must be a string or a number")
			case len(v) > trustloop.MaxIdentifierLen:
				bad(fmt.Sprintf("%s is longer than %d bytes", k, trustloop.MaxIdentifierLen))
			}
			switch k {
			case "userId":
				m.UserID = v
			case "anonymousId":
				m.AnonymousID = v
			case "previousId":
				hasPrevID = strings.TrimSpace(v) != ""
			case "groupId":
				hasGID = strings.TrimSpace(v) != ""
			}
		case "event":
			v, ok, err := readString(s)
			if err != nil {
				return err
			}
			if !ok {
				bad("event must be a string")
			}
			m.Event = v
		case "messageId":
			v, ok, err := readString(s)
			if err != nil {
				return err
			}
			switch {
			case !ok:
				bad("messageId must be a string")
			case utf8.RuneCountInString(v) > trustloop.MaxMessageIDLen:
				bad("messageId must be shorter than 100 characters")
			}
			m.MessageID = v
		case "timestamp", "originalTimestamp", "sentAt":
			t, ok, err := readTime(s)
			if err != nil {
				return err
			}
			if !ok {
				bad(k + " must be an ISO-8601 date string")
			}
			switch k {
			case "timestamp":
				ts = t
			case "originalTimestamp":
				ots = t
			default:
				m.SentAt = t
			}
		case "context":
			if r, err := readContext(s, &m.Consent); err != nil {
				return err
			} else if r != "" {
				bad(r)
			}
		case "properties", "traits", "integrations":
			if c := s.peek(); c != '{' && c != 'n' {
				bad(k + " must be an object")
			}
			return s.value()
		case "writeKey":
			wkStart := s.pos
			v, ok, err := readString(s)
			if err != nil {
				return err
			}
			writeKeys = append(writeKeys, [2]int{wkStart - start, s.pos - start})
			if ok {
				writeKey = v
			}
		default:
			return s.value()
		}
		return nil
	})
	if err != nil {
		return m, "", "", err
	}
	m.Raw = s.data[start:s.pos]
	// A key may be sent twice; remove every one, last first so that the earlier
	// ranges stay put.
	for i := len(writeKeys) - 1; i >= 0; i-- {
		m.Raw = withoutMember(m.Raw, writeKeys[i][0], writeKeys[i][1])
	}
	if typ != 0 {
		m.Type = typ
	} else if !typeSeen && reason == "" {
		bad("type is required")
	}
	if ots.IsZero() {
		ots = ts
	}
	m.OriginalTimestamp = ots
	if reason != "" {
		return m, writeKey, reason, nil
	}
	m.UserID = strings.TrimSpace(m.UserID)
	m.AnonymousID = strings.TrimSpace(m.AnonymousID)
	switch {
	case m.UserID == "" && m.AnonymousID == "":
		bad("userId or anonymousId is required")
	case m.Type == trustloop.EventTrack && strings.TrimSpace(m.Event) == "":
		bad("track needs a non-empty event name")
	case m.Type == trustloop.EventAlias && (!hasPrevID || m.UserID == ""):
		bad("alias needs previousId and userId")
	case m.Type == trustloop.EventGroup && !hasGID:
		bad("group needs a groupId")
	}
	return m, writeKey, reason, nil
}

// finish applies what depends on the whole request: the batch context and sentAt,
// the messageId, receivedAt and the clock-skew correction.
// batchConsent is a batch context's consent signals, read once for all its
// messages.
type batchConsent struct {
	raw    []byte
	read   bool
	sig    trustloop.ConsentSignals
	reason string
}

func (b *batchConsent) signals() (trustloop.ConsentSignals, string) {
	if !b.read {
		b.read = true
		sc := &scanner{data: b.raw}
		if r, err := readContext(sc, &b.sig); err != nil || r != "" {
			if r == "" {
				r = "batch context is malformed"
			}
			b.reason = "batch " + r
		}
	}
	return b.sig, b.reason
}

func finish(m *trustloop.Message, bc *batchConsent, batchSentAt time.Time, opt Options) string {
	if batchContext := bc.raw; len(batchContext) > 0 {
		m.BatchContext = batchContext
		// The batch's consent signals apply field by field under the message's
		// own: a message naming only its jurisdiction keeps the batch's
		// preferences, and the other way round. Each message gets its own copy
		// of the preferences.
		batch, reason := bc.signals()
		if reason != "" {
			return reason
		}
		if m.Consent.CategoryPreferences == nil && batch.CategoryPreferences != nil {
			m.Consent.CategoryPreferences = maps.Clone(batch.CategoryPreferences)
		}
		if m.Consent.TCString == "" {
			m.Consent.TCString = batch.TCString
		}
		if m.Consent.Jurisdiction == "" {
			m.Consent.Jurisdiction = batch.Jurisdiction
		}
	}
	if m.SentAt.IsZero() {
		m.SentAt = batchSentAt
	}
	if m.MessageID == "" {
		m.MessageID = opt.NewID()
		m.GeneratedID = true
	}
	m.Consent.GPC = opt.GPC
	m.ReceivedAt = opt.ReceivedAt
	m.Timestamp = CorrectTimestamp(opt.ReceivedAt, m.SentAt, m.OriginalTimestamp)
	return ""
}

// CorrectTimestamp is Segment's clock-skew rule: the client's clock error is what
// separates its sentAt from our receivedAt, and the event time is moved by as much.
// Without sentAt the client's own time is kept (historical imports); without any
// client time the event happened when it arrived.
func CorrectTimestamp(receivedAt, sentAt, original time.Time) time.Time {
	switch {
	case original.IsZero():
		return receivedAt
	case sentAt.IsZero():
		return original
	default:
		return receivedAt.Add(-sentAt.Sub(original))
	}
}

// withoutMember removes the object member whose value spans [vs, ve) of obj, with
// its key and one adjoining comma, so a write key never reaches storage.
func withoutMember(obj []byte, vs, ve int) []byte {
	// Walk back from the value over ':' and the key string to the member's start.
	i := vs - 1
	for obj[i] != ':' {
		i--
	}
	i--
	for obj[i] != '"' { // white space between key and ':'
		i--
	}
	i--
	for !(obj[i] == '"' && !escapedQuote(obj, i)) {
		i--
	}
	ks := i
	// Take the comma after the value if there is one, else the one before the key.
	j := ve
	for j < len(obj) && isSpace(obj[j]) {
		j++
	}
	out := make([]byte, 0, len(obj))
	if obj[j] == ',' {
		out = append(out, obj[:ks]...)
		out = append(out, obj[j+1:]...)
		return out
	}
	k := ks - 1
	for isSpace(obj[k]) {
		k--
	}
	if obj[k] == ',' {
		out = append(out, obj[:k]...)
	} else {
		out = append(out, obj[:ks]...)
	}
	out = append(out, obj[j:]...)
	return out
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// escapedQuote reports whether the quote at i is escaped by an odd run of
// backslashes.
func escapedQuote(b []byte, i int) bool {
	n := 0
	for j := i - 1; j >= 0 && b[j] == '\\'; j-- {
		n++
	}
	return n%2 == 1
}

// readString reads a string value; ok is false (and the value skipped) when it is
// another type. null reads as "" and ok.
func readString(s *scanner) (string, bool, error) {
	switch s.peek() {
	case '"':
		st, en, esc, err := s.str()
		if err != nil {
			return "", false, err
		}
		return unquote(s.data[st:en], esc), true, nil
	case 'n':
		return "", true, s.lit("null")
	}
	return "", false, s.value()
}

// readID reads an identifier: a string, or a number taken as its literal text
// (some libraries send numeric user ids).
func readID(s *scanner) (string, bool, error) {
	c := s.peek()
	if c == '-' || (c >= '0' && c <= '9') {
		st := s.pos
		if err := s.number(); err != nil {
			return "", false, err
		}
		return string(s.data[st:s.pos]), true, nil
	}
	return readString(s)
}

// timeLayouts are the ISO-8601 forms client libraries send.
var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999Z0700",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02",
}

// readTime reads an ISO-8601 date string; null reads as the zero time and ok.
func readTime(s *scanner) (time.Time, bool, error) {
	v, ok, err := readString(s)
	if err != nil || !ok || v == "" {
		return time.Time{}, ok, err
	}
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, v); err == nil {
			// A zone offset can push a year-0 or year-9999 time out of the
			// four-digit years that RFC 3339, and so OpenEnvelope, can read.
			if t = t.UTC(); t.Year() < 0 || t.Year() > 9999 {
				return time.Time{}, false, nil
			}
			return t, true, nil
		}
	}
	return time.Time{}, false, nil
}

// readContext reads a context object, keeping only its consent member.
func readContext(s *scanner, c *trustloop.ConsentSignals) (reason string, err error) {
	switch s.peek() {
	case 'n':
		return "", s.value()
	case '{':
	default:
		return "context must be an object", s.value()
	}
	err = s.object(func(key []byte, esc bool) error {
		if !keyIs(key, esc, "consent") {
			return s.value()
		}
		switch s.peek() {
		case 'n':
			return s.value()
		case '{':
		default:
			reason = "context.consent must be an object"
			return s.value()
		}
		return s.object(func(key []byte, esc bool) error {
			switch {
			case keyIs(key, esc, "categoryPreferences"):
				r, err := readPreferences(s, c)
				if reason == "" {
					reason = r
				}
				return err
			case keyIs(key, esc, "tcString"):
				v, ok, err := readString(s)
				if !ok && reason == "" {
					reason = "context.consent.tcString must be a string"
				}
				c.TCString = v
				return err
			case keyIs(key, esc, "jurisdiction"):
				// Trustloop's extension: the jurisdiction the site applied (ISO
				// 3166, e.g. "US-CA"), which may override the workspace regime.
				v, ok, err := readString(s)
				if (!ok || (v != "" && !trustloop.ValidJurisdiction(v))) && reason == "" {
					reason = "context.consent.jurisdiction must be an ISO 3166 code such as EU or US-CA (letters, digits and '-', at most 16 characters)"
				}
				c.Jurisdiction = v
				return err
			}
			return s.value()
		})
	})
	return reason, err
}

func readPreferences(s *scanner, c *trustloop.ConsentSignals) (reason string, err error) {
	switch s.peek() {
	case 'n':
		return "", s.value()
	case '{':
	default:
		return "context.consent.categoryPreferences must be an object", s.value()
	}
	prefs := map[string]bool{}
	err = s.object(func(key []byte, esc bool) error {
		switch s.peek() {
		case 't':
			prefs[unquote(key, esc)] = true
			return s.lit("true")
		case 'f':
			prefs[unquote(key, esc)] = false
			return s.lit("false")
		}
		if reason == "" {
			reason = "context.consent.categoryPreferences values must be true or false"
		}
		return s.value()
	})
	c.CategoryPreferences = prefs
	return reason, err
}
