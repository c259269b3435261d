package collect

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/trustloop/trustloop"
)

// The envelope is the plaintext that gets sealed for one event: the message as sent
// and what the collector added to it. Version 1:
//
//	{"v":1,"type":"track","messageId":"…","receivedAt":"…","timestamp":"…",
//	 "originalTimestamp":"…","sentAt":"…","gpc":true,
//	 "consent":{"categoryPreferences":{…},"tcString":"…","jurisdiction":"…"},
//	 "purposes":["essential","analytics"],
//	 "batchContext":{…},"message":{…}}
//
// originalTimestamp, sentAt, gpc, consent, purposes and batchContext are left out
// when empty. purposes are those allowed when the event was collected (T3:
// a read for a purpose uses only events collected while it was allowed).
// The consent member records the signals as they were applied at collection (the
// message's context, with the batch's filling in missing fields), the evidence of
// the decision.
const envelopeVersion = 1

// AppendEnvelope appends the envelope of m to dst.
func AppendEnvelope(dst []byte, m *trustloop.Message) []byte {
	dst = append(dst, `{"v":1,"type":"`...)
	dst = append(dst, m.Type.String()...)
	dst = append(dst, `","messageId":`...)
	dst = appendString(dst, m.MessageID)
	dst = appendTime(append(dst, `,"receivedAt":`...), m.ReceivedAt)
	dst = appendTime(append(dst, `,"timestamp":`...), m.Timestamp)
	if !m.OriginalTimestamp.IsZero() {
		dst = appendTime(append(dst, `,"originalTimestamp":`...), m.OriginalTimestamp)
	}
	if !m.SentAt.IsZero() {
		dst = appendTime(append(dst, `,"sentAt":`...), m.SentAt)
	}
	if m.Consent.GPC {
		dst = append(dst, `,"gpc":true`...)
	}
	if m.Consent.CategoryPreferences != nil || m.Consent.TCString != "" || m.Consent.Jurisdiction != "" {
		dst = append(dst, `,"consent":{`...)
		comma := false
		if m.Consent.CategoryPreferences != nil {
			dst = appendPreferences(append(dst, `"categoryPreferences":`...), m.Consent.CategoryPreferences)
			comma = true
		}
		if m.Consent.TCString != "" {
			if comma {
				dst = append(dst, ',')
			}
			dst = appendString(append(dst, `"tcString":`...), m.Consent.TCString)
			comma = true
		}
		if m.Consent.Jurisdiction != "" {
			if comma {
				dst = append(dst, ',')
			}
			dst = appendString(append(dst, `"jurisdiction":`...), m.Consent.Jurisdiction)
		}
		dst = append(dst, '}')
	}
	if m.Purposes != nil {
		dst = append(dst, `,"purposes":[`...)
		for i, p := range m.Purposes {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, p)
		}
		dst = append(dst, ']')
	}
	if len(m.BatchContext) > 0 {
		dst = append(append(dst, `,"batchContext":`...), m.BatchContext...)
	}
	dst = append(append(dst, `,"message":`...), m.Raw...)
	return append(dst, '}')
}

// appendPreferences appends the map as a JSON object with sorted keys, as
// json.Marshal would, without its reflection cost on the ingest path.
func appendPreferences(dst []byte, prefs map[string]bool) []byte {
	var small [16]string
	keys := small[:0]
	for k := range prefs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	dst = append(dst, '{')
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, k)
		if prefs[k] {
			dst = append(dst, ":true"...)
		} else {
			dst = append(dst, ":false"...)
		}
	}
	return append(dst, '}')
}

func appendTime(dst []byte, t time.Time) []byte {
	dst = append(dst, '"')
	dst = t.UTC().AppendFormat(dst, "2006-01-02T15:04:05.000Z07:00")
	return append(dst, '"')
}

// Envelope is an opened envelope.
type Envelope struct {
	V                 int              `json:"v"`
	Type              string           `json:"type"`
	MessageID         string           `json:"messageId"`
	ReceivedAt        time.Time        `json:"receivedAt"`
	Timestamp         time.Time        `json:"timestamp"`
	OriginalTimestamp *time.Time       `json:"originalTimestamp,omitempty"`
	SentAt            *time.Time       `json:"sentAt,omitempty"`
	GPC               bool             `json:"gpc,omitempty"`
	Consent           *EnvelopeConsent `json:"consent,omitempty"`
	// Purposes are the purposes allowed when the event was collected
	// (absent in events collected before consent enforcement).
	Purposes     []string        `json:"purposes,omitempty"`
	BatchContext json.RawMessage `json:"batchContext,omitempty"`
	Message      json.RawMessage `json:"message"`
}

// EnvelopeConsent is the consent context recorded with an event.
type EnvelopeConsent struct {
	CategoryPreferences map[string]bool `json:"categoryPreferences,omitempty"`
	TCString            string          `json:"tcString,omitempty"`
	Jurisdiction        string          `json:"jurisdiction,omitempty"`
}

// OpenEnvelope parses an envelope's plaintext.
func OpenEnvelope(b []byte) (*Envelope, error) {
	var e Envelope
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("open envelope: %w", err)
	}
	if e.V != envelopeVersion {
		return nil, fmt.Errorf("open envelope: unknown version %d", e.V)
	}
	return &e, nil
}
