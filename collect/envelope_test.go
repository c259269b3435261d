package collect

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
)

// roundTrip seals nothing: it appends m's envelope after a prefix, checks the prefix
// survives and the envelope is valid JSON, and opens it.
func roundTrip(t *testing.T, m *trustloop.Message) (*Envelope, []byte) {
	t.Helper()
	out := AppendEnvelope([]byte("prefix"), m)
	if !bytes.HasPrefix(out, []byte("prefix")) {
		t.Fatalf("AppendEnvelope lost dst: %s", out)
	}
	env := out[len("prefix"):]
	if !json.Valid(env) {
		t.Fatalf("envelope is not valid JSON: %s", env)
	}
	e, err := OpenEnvelope(env)
	if err != nil {
		t.Fatalf("OpenEnvelope(%s): %v", env, err)
	}
	return e, env
}

func timePtr(t time.Time) *time.Time { return &t }

func TestEnvelopeRoundTrip(t *testing.T) {
	nanos := 123456789 * time.Nanosecond
	full := trustloop.Message{
		Type:              trustloop.EventTrack,
		MessageID:         "ajs-next-1",
		UserID:            "u1",
		Event:             "Order Completed",
		OriginalTimestamp: received.Add(-time.Minute + nanos),
		SentAt:            received.Add(time.Hour).In(time.FixedZone("CEST", 2*3600)),
		Timestamp:         received.Add(-2 * time.Minute),
		ReceivedAt:        received.Add(nanos),
		Consent: trustloop.ConsentSignals{
			CategoryPreferences: map[string]bool{"Analytics": true, "Advertising": false},
			TCString:            "CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA",
			GPC:                 true,
		},
		Raw:          []byte(`{ "type":"track","userId":"u1","event":"Order Completed","properties":{"total":9.99} }`),
		BatchContext: []byte(`{"library":{"name":"analytics-node","version":"2.1.0"}}`),
	}
	tests := []struct {
		name string
		m    trustloop.Message
		want Envelope
	}{
		{"everything", full, Envelope{
			V:                 1,
			Type:              "track",
			MessageID:         "ajs-next-1",
			ReceivedAt:        received.Add(123 * time.Millisecond),
			Timestamp:         received.Add(-2 * time.Minute),
			OriginalTimestamp: timePtr(received.Add(-time.Minute + 123*time.Millisecond)),
			SentAt:            timePtr(received.Add(time.Hour)),
			GPC:               true,
			Consent: &EnvelopeConsent{
				CategoryPreferences: map[string]bool{"Analytics": true, "Advertising": false},
				TCString:            "CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA",
			},
			BatchContext: json.RawMessage(full.BatchContext),
			Message:      json.RawMessage(full.Raw),
		}},
		{"minimal", trustloop.Message{
			Type: trustloop.EventIdentify, MessageID: "m", Timestamp: received, ReceivedAt: received,
			Raw: []byte(`{"userId":"u1"}`),
		}, Envelope{
			V: 1, Type: "identify", MessageID: "m", ReceivedAt: received, Timestamp: received,
			Message: json.RawMessage(`{"userId":"u1"}`),
		}},
		{"only a TC string", trustloop.Message{
			Type: trustloop.EventPage, MessageID: "m", Timestamp: received, ReceivedAt: received,
			Consent: trustloop.ConsentSignals{TCString: "TC"},
			Raw:     []byte(`{}`),
		}, Envelope{
			V: 1, Type: "page", MessageID: "m", ReceivedAt: received, Timestamp: received,
			Consent: &EnvelopeConsent{TCString: "TC"}, Message: json.RawMessage(`{}`),
		}},
		{"only preferences", trustloop.Message{
			Type: trustloop.EventScreen, MessageID: "m", Timestamp: received, ReceivedAt: received,
			Consent: trustloop.ConsentSignals{CategoryPreferences: map[string]bool{`We "quote"`: true, "é\n": false}},
			Raw:     []byte(`{}`),
		}, Envelope{
			V: 1, Type: "screen", MessageID: "m", ReceivedAt: received, Timestamp: received,
			Consent: &EnvelopeConsent{CategoryPreferences: map[string]bool{`We "quote"`: true, "é\n": false}},
			Message: json.RawMessage(`{}`),
		}},
		{"empty preferences are still recorded", trustloop.Message{
			Type: trustloop.EventGroup, MessageID: "m", Timestamp: received, ReceivedAt: received,
			Consent: trustloop.ConsentSignals{CategoryPreferences: map[string]bool{}},
			Raw:     []byte(`{}`),
		}, Envelope{
			V: 1, Type: "group", MessageID: "m", ReceivedAt: received, Timestamp: received,
			Consent: &EnvelopeConsent{CategoryPreferences: map[string]bool{}}, Message: json.RawMessage(`{}`),
		}},
		{"gpc alone", trustloop.Message{
			Type: trustloop.EventAlias, MessageID: "m", Timestamp: received, ReceivedAt: received,
			Consent: trustloop.ConsentSignals{GPC: true}, Raw: []byte(`{}`),
		}, Envelope{
			V: 1, Type: "alias", MessageID: "m", ReceivedAt: received, Timestamp: received,
			GPC: true, Message: json.RawMessage(`{}`),
		}},
		{"zero times", trustloop.Message{Type: trustloop.EventTrack, MessageID: "m", Raw: []byte(`{}`)}, Envelope{
			V: 1, Type: "track", MessageID: "m", Message: json.RawMessage(`{}`),
		}},
		{"far times", trustloop.Message{
			Type: trustloop.EventTrack, MessageID: "m", Raw: []byte(`{}`),
			OriginalTimestamp: time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC),
			Timestamp:         time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
			ReceivedAt:        received,
		}, Envelope{
			V: 1, Type: "track", MessageID: "m", Message: json.RawMessage(`{}`), ReceivedAt: received,
			OriginalTimestamp: timePtr(time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)),
			Timestamp:         time.Date(9999, 12, 31, 23, 59, 59, 999000000, time.UTC),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := roundTrip(t, &tt.m)
			// Compare times as instants; the rest as values.
			if !got.ReceivedAt.Equal(tt.want.ReceivedAt) || !got.Timestamp.Equal(tt.want.Timestamp) {
				t.Errorf("receivedAt=%v timestamp=%v, want %v %v", got.ReceivedAt, got.Timestamp, tt.want.ReceivedAt, tt.want.Timestamp)
			}
			if !equalTimePtr(got.OriginalTimestamp, tt.want.OriginalTimestamp) || !equalTimePtr(got.SentAt, tt.want.SentAt) {
				t.Errorf("originalTimestamp=%v sentAt=%v, want %v %v", got.OriginalTimestamp, got.SentAt, tt.want.OriginalTimestamp, tt.want.SentAt)
			}
			for _, p := range []*time.Time{&got.ReceivedAt, &got.Timestamp, got.OriginalTimestamp, got.SentAt} {
				if p != nil && p.Location() != time.UTC {
					t.Errorf("%v is not UTC", *p)
				}
			}
			got.ReceivedAt, got.Timestamp, got.OriginalTimestamp, got.SentAt = tt.want.ReceivedAt, tt.want.Timestamp, tt.want.OriginalTimestamp, tt.want.SentAt
			if !reflect.DeepEqual(*got, tt.want) {
				t.Errorf("opened\n%+v\nwant\n%+v", *got, tt.want)
			}
		})
	}
}

func equalTimePtr(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

// TestEnvelopeFormat pins version 1 byte for byte: sealed envelopes outlive the
// code that wrote them.
func TestEnvelopeFormat(t *testing.T) {
	m := trustloop.Message{
		Type:              trustloop.EventTrack,
		MessageID:         "m-1",
		OriginalTimestamp: time.Date(2024, 5, 1, 12, 59, 50, 0, time.UTC),
		SentAt:            time.Date(2024, 5, 1, 15, 0, 0, 999999999, time.FixedZone("", 2*3600)),
		Timestamp:         time.Date(2024, 5, 1, 11, 59, 50, 0, time.UTC),
		ReceivedAt:        time.Date(2024, 5, 1, 12, 0, 0, 1000000, time.UTC),
		Consent: trustloop.ConsentSignals{
			CategoryPreferences: map[string]bool{"b": false, "a": true},
			TCString:            "TC",
			GPC:                 true,
		},
		BatchContext: []byte(`{"ip":"1.2.3.4"}`),
		Raw:          []byte(`{"event":"E"}`),
	}
	want := `{"v":1,"type":"track","messageId":"m-1","receivedAt":"2024-05-01T12:00:00.001Z",` +
		`"timestamp":"2024-05-01T11:59:50.000Z","originalTimestamp":"2024-05-01T12:59:50.000Z",` +
		`"sentAt":"2024-05-01T13:00:00.999Z","gpc":true,` +
		`"consent":{"categoryPreferences":{"a":true,"b":false},"tcString":"TC"},` +
		`"batchContext":{"ip":"1.2.3.4"},"message":{"event":"E"}}`
	if got := string(AppendEnvelope(nil, &m)); got != want {
		t.Errorf("envelope\n%s\nwant\n%s", got, want)
	}

	minimal := trustloop.Message{Type: trustloop.EventIdentify, MessageID: "m-2", Timestamp: m.Timestamp, ReceivedAt: m.ReceivedAt, Raw: []byte(`{}`)}
	want = `{"v":1,"type":"identify","messageId":"m-2","receivedAt":"2024-05-01T12:00:00.001Z",` +
		`"timestamp":"2024-05-01T11:59:50.000Z","message":{}}`
	if got := string(AppendEnvelope(nil, &minimal)); got != want {
		t.Errorf("envelope\n%s\nwant\n%s", got, want)
	}
}

func TestEnvelopeStrings(t *testing.T) {
	tests := []struct {
		name string
		s    string
	}{
		{"quotes", `a"b"c`},
		{"backslashes", `a\b\\c\`},
		{"json-looking", `","v":2,"x":"`},
		{"control chars", "a\x00b\nc\td\x1f"},
		{"DEL", "\x7f"},
		{"invalid UTF-8", "a\xffb\xc3"},
		{"surrogate bytes", "\xed\xa0\x80"},
		{"line separators", "a\u2028b\u2029"},
		{"HTML", "</script><b>&"},
		{"emoji", "🎉👩‍💻"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := trustloop.Message{
				Type: trustloop.EventTrack, MessageID: tt.s, Timestamp: received, ReceivedAt: received,
				Consent: trustloop.ConsentSignals{TCString: tt.s, CategoryPreferences: map[string]bool{tt.s: true}},
				Raw:     []byte(`{}`),
			}
			e, _ := roundTrip(t, &m)
			want := string([]rune(tt.s)) // invalid bytes read back as U+FFFD
			if e.MessageID != want || e.Consent == nil || e.Consent.TCString != want || !e.Consent.CategoryPreferences[want] {
				t.Errorf("opened messageId=%q consent=%+v, want %q", e.MessageID, e.Consent, want)
			}
		})
	}
}

func TestEnvelopeOfDecodedMessages(t *testing.T) {
	body := `{"batch":[
		{"type":"track","userId":"u1","event":"Product Viewed","messageId":"m\"1","writeKey":"leak",
		 "timestamp":"2024-05-01T12:59:50.123456Z","properties":{"price":18.99},
		 "context":{"consent":{"categoryPreferences":{"Analytics":true}}}},
		{"type":"identify","anonymousId":"a1","traits":{"email":"x@example.com"}}
	],"sentAt":"2024-05-01T13:00:00Z","context":{"consent":{"tcString":"BATCH"},"ip":"1.2.3.4"},"writeKey":"wk"}`
	opt := testOptions()
	opt.GPC = true
	req := mustDecode(t, body, Batch, opt)
	for i := range req.Messages {
		m := &req.Messages[i]
		e, env := roundTrip(t, m)
		if bytes.Contains(env, []byte("leak")) || bytes.Contains(env, []byte(`"wk"`)) {
			t.Errorf("message %d: envelope holds a write key: %s", i, env)
		}
		if e.Type != m.Type.String() || e.MessageID != m.MessageID || !e.GPC {
			t.Errorf("message %d: opened %+v", i, e)
		}
		if !bytes.Equal(e.Message, m.Raw) || !bytes.Equal(e.BatchContext, m.BatchContext) {
			t.Errorf("message %d: message=%s batchContext=%s", i, e.Message, e.BatchContext)
		}
		if !e.Timestamp.Equal(m.Timestamp.Truncate(time.Millisecond)) || !e.ReceivedAt.Equal(received) {
			t.Errorf("message %d: timestamp=%v receivedAt=%v", i, e.Timestamp, e.ReceivedAt)
		}
		if e.SentAt == nil || !e.SentAt.Equal(m.SentAt) {
			t.Errorf("message %d: sentAt=%v", i, e.SentAt)
		}
	}
	first, _ := roundTrip(t, &req.Messages[0])
	// Field by field: the message's preferences, the batch's TC string.
	if want := (&EnvelopeConsent{CategoryPreferences: map[string]bool{"Analytics": true}, TCString: "BATCH"}); !reflect.DeepEqual(first.Consent, want) {
		t.Errorf("consent = %+v, want the message's preferences under the batch's TC string %+v", first.Consent, want)
	}
	if first.OriginalTimestamp == nil || !first.OriginalTimestamp.Equal(time.Date(2024, 5, 1, 12, 59, 50, 123000000, time.UTC)) {
		t.Errorf("originalTimestamp = %v", first.OriginalTimestamp)
	}
	second, _ := roundTrip(t, &req.Messages[1])
	if want := (&EnvelopeConsent{TCString: "BATCH"}); !reflect.DeepEqual(second.Consent, want) {
		t.Errorf("consent = %+v, want the batch's %+v", second.Consent, want)
	}
	if second.OriginalTimestamp != nil {
		t.Errorf("originalTimestamp = %v, want none", second.OriginalTimestamp)
	}
}

func TestOpenEnvelopeErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"empty", ``, "open envelope"},
		{"not JSON", `{"v":1,`, "open envelope"},
		{"no version", `{"type":"track","message":{}}`, "unknown version 0"},
		{"future version", `{"v":2,"type":"track","message":{}}`, "unknown version 2"},
		{"bad time", `{"v":1,"receivedAt":"yesterday","message":{}}`, "open envelope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := OpenEnvelope([]byte(tt.in))
			if err == nil || e != nil {
				t.Fatalf("OpenEnvelope(%q) = %+v, %v", tt.in, e, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func FuzzEnvelopeStrings(f *testing.F) {
	f.Add("m-1", "TC", "Analytics")
	f.Add(`"\`, "\x00\xff", "\u2028")
	f.Fuzz(func(t *testing.T, id, tc, category string) {
		m := trustloop.Message{
			Type: trustloop.EventTrack, MessageID: id, Timestamp: received, ReceivedAt: received,
			Consent: trustloop.ConsentSignals{TCString: tc, CategoryPreferences: map[string]bool{category: true}},
			Raw:     []byte(`{}`),
		}
		e, _ := roundTrip(t, &m)
		if e.MessageID != string([]rune(id)) || e.Consent.TCString != string([]rune(tc)) {
			t.Fatalf("opened %q %q, want %q %q", e.MessageID, e.Consent.TCString, id, tc)
		}
	})
}
