package identity

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/collect"
)

// decodeOne decodes one message as the collector would, as a batch of one with an
// optional batch context.
func decodeOne(t testing.TB, msg, batchContext string) *trustloop.Message {
	t.Helper()
	body := `{"batch":[` + msg + `]`
	if batchContext != "" {
		body += `,"context":` + batchContext
	}
	body += `}`
	req, err := collect.Decode([]byte(body), collect.Batch, collect.Options{
		ReceivedAt: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC),
		NewID:      func() string { return "generated" },
	})
	if err != nil {
		t.Fatalf("Decode(%s): %v", msg, err)
	}
	return &req.Messages[0]
}

func TestFromMessage(t *testing.T) {
	c := DefaultConfig()
	c.CustomTypes = []CustomType{{Name: "crm_id", Traits: []string{"crmId", "crm_id"}}}
	r := mustCompile(t, c)
	tests := []struct {
		name, msg, batch string
		ids, skipped     string
	}{
		{"track with everything",
			`{"type":"track","event":"E","userId":" u1 ","anonymousId":"a1","context":{"device":{"id":"D1"},"traits":{"email":"X@Y.io","phone":"+33 6 12 34 56 78","crmId":"C1"}}}`, "",
			"user_id:u1 anonymous_id:a1 device_id:D1 email:x@y.io phone:+33612345678 crm_id:C1", ""},
		{"identify traits before context traits",
			`{"type":"identify","userId":"u1","traits":{"email":"a@x.io"},"context":{"traits":{"email":"b@x.io"}}}`, "",
			"user_id:u1 email:a@x.io email:b@x.io", ""},
		{"the same value twice is one identifier",
			`{"type":"identify","userId":"u1","traits":{"email":"A@x.io"},"context":{"traits":{"email":"a@x.io"}}}`, "",
			"user_id:u1 email:a@x.io", ""},
		{"both trait keys of a custom type",
			`{"type":"identify","userId":"u1","traits":{"crmId":"C1","crm_id":"C2"}}`, "",
			"user_id:u1 crm_id:C1 crm_id:C2", ""},
		{"track's own traits member is not read",
			`{"type":"track","event":"E","userId":"u1","traits":{"email":"a@x.io"}}`, "", "user_id:u1", ""},
		{"screen reads context traits",
			`{"type":"screen","anonymousId":"a1","context":{"traits":{"email":"a@x.io"}}}`, "", "anonymous_id:a1 email:a@x.io", ""},
		{"group traits are the group's",
			`{"type":"group","groupId":"g","userId":"u1","traits":{"email":"a@x.io"}}`, "", "user_id:u1", ""},
		{"previousId only on alias",
			`{"type":"track","event":"E","userId":"u1","previousId":"p1"}`, "", "user_id:u1", ""},
		{"alias", `{"type":"alias","userId":"u1","previousId":" p1 "}`, "", "user_id:u1 previous_id:p1", ""},
		{"numbers are literal text",
			`{"type":"identify","userId":42,"context":{"device":{"id":7}},"traits":{"crmId":-1.5e3}}`, "",
			"user_id:42 device_id:7 crm_id:-1.5e3", ""},
		{"wrong JSON types",
			`{"type":"identify","userId":"u1","context":{"device":{"id":{"x":1}}},"traits":{"email":{"a":1},"phone":["+33612345678"],"crmId":false}}`, "",
			"user_id:u1", "device_id:not_a_string email:not_a_string phone:not_a_string crm_id:not_a_string"},
		{"null is absent",
			`{"type":"identify","userId":"u1","context":{"device":{"id":null}},"traits":{"email":null}}`, "", "user_id:u1", ""},
		{"empty and placeholder values",
			`{"type":"identify","userId":"u1","context":{"device":{"id":""}},"traits":{"email":" ","phone":"null","crmId":"undefined"}}`, "",
			"user_id:u1", "device_id:empty email:empty phone:malformed_phone crm_id:blocked"},
		{"blocked ids", `{"type":"track","event":"E","userId":"null","anonymousId":"00000000-0000-0000-0000-000000000000"}`, "",
			"", "user_id:blocked anonymous_id:blocked"},
		{"escaped strings",
			`{"type":"identify","userId":"u\u0031","traits":{"em\u0061il":"a\u0040x.io"}}`, "", "user_id:u1 email:a@x.io", ""},
		{"batch context under the message's",
			`{"type":"track","event":"E","anonymousId":"a1","context":{"traits":{"email":"mine@x.io"}}}`,
			`{"device":{"id":"BATCH"},"traits":{"email":"batch@x.io","phone":"+33612345678"}}`,
			"anonymous_id:a1 device_id:BATCH email:mine@x.io phone:+33612345678", ""},
		{"the message's device hides the batch's",
			`{"type":"track","event":"E","anonymousId":"a1","context":{"device":{"id":"MINE"}}}`,
			`{"device":{"id":"BATCH"}}`, "anonymous_id:a1 device_id:MINE", ""},
		{"a message device without id falls back to the batch's",
			`{"type":"track","event":"E","anonymousId":"a1","context":{"device":{"type":"ios"}}}`,
			`{"device":{"id":"BATCH"}}`, "anonymous_id:a1 device_id:BATCH", ""},
		{"context traits that are not an object",
			`{"type":"track","event":"E","anonymousId":"a1","context":{"traits":"x","device":[1]}}`,
			`{"device":{"id":"BATCH"}}`, "anonymous_id:a1 device_id:BATCH", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := decodeOne(t, tt.msg, tt.batch)
			ids, skipped := r.FromMessage(m)
			if got := idList(ids); got != tt.ids && !(got == "(none)" && tt.ids == "") {
				t.Errorf("ids %s, want %s", got, tt.ids)
			}
			if got := skipList(skipped); got != tt.skipped {
				t.Errorf("skipped %q, want %q", got, tt.skipped)
			}
		})
	}
}

func TestFromMessageGroupTraits(t *testing.T) {
	c := DefaultConfig()
	c.GroupTraits = true
	r := mustCompile(t, c)
	m := decodeOne(t, `{"type":"group","groupId":"g","userId":"u1","traits":{"email":"a@x.io"}}`, "")
	if ids, _ := r.FromMessage(m); idList(ids) != "user_id:u1 email:a@x.io" {
		t.Errorf("ids %s", idList(ids))
	}
}

// FromMessage must cope with messages that did not come from the collector:
// hand-built ones, raw bytes that are not JSON.
func TestFromMessageOddInputs(t *testing.T) {
	r := mustCompile(t, DefaultConfig())
	for _, raw := range []string{"", "null", "[]", `{"traits":`, `{"context":{"device":{"id":"D`, "\xff\xfe", `{"previousId":tru}`} {
		for _, typ := range []trustloop.EventType{0, trustloop.EventIdentify, trustloop.EventAlias} {
			m := &trustloop.Message{Type: typ, Raw: []byte(raw), BatchContext: []byte(raw), AnonymousID: "a"}
			ids, _ := r.FromMessage(m)
			if len(ids) == 0 || ids[0] != (trustloop.Identifier{Type: trustloop.IDAnonymousID, Value: "a"}) {
				t.Errorf("FromMessage(%q) = %v", raw, ids)
			}
		}
	}
	m := &trustloop.Message{UserID: strings.Repeat("u", 2000)}
	if ids, skipped := r.FromMessage(m); len(ids) != 0 || skipList(skipped) != "user_id:too_long" {
		t.Errorf("FromMessage(long user id) = %v, %v", ids, skipped)
	}
}

// FuzzFromMessage: FromMessage never panics, whatever the bytes, and returns only
// normalized identifiers; Resolve and a Graph take them.
func FuzzFromMessage(f *testing.F) {
	f.Add(uint8(2), "u1", "a1", []byte(`{"traits":{"email":"A@b.co","phone":"0033612345678","crm":"7"},"context":{"device":{"id":"d"}}}`), []byte(`{"traits":{"email":"x@y.z"}}`))
	f.Add(uint8(6), "u1", "", []byte(`{"previousId":"p","userId":"u1"}`), []byte(nil))
	f.Add(uint8(1), "", "a", []byte(`{"context":{"traits":{"email":"\u0041@b.co"},"device":{"id":12}}}`), []byte(`{"device":{"id":"z"}}`))
	f.Add(uint8(5), "u", "", []byte(`{"traits":{"email":[{"a":"]"}],"phone":"\"+1"}}`), []byte(`{`))
	c := DefaultConfig()
	c.CustomTypes = []CustomType{{Name: "crm_id", Traits: []string{"crm"}}}
	r, err := Compile(c)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, typ uint8, userID, anonID string, raw, batchContext []byte) {
		m := &trustloop.Message{Type: trustloop.EventType(typ % 8), UserID: userID, AnonymousID: anonID,
			Raw: raw, BatchContext: batchContext}
		ids, skipped := r.FromMessage(m)
		for _, id := range ids {
			if v, reason := r.normalize(id.Type, id.Value); reason != "" || v != id.Value {
				t.Fatalf("identifier of type %s not normalized: %q → %q, %q", id.Type, id.Value, v, reason)
			}
		}
		for _, s := range skipped {
			if _, ok := r.index[s.Type]; !ok && s.Type != PreviousID {
				t.Fatalf("skip of an unknown type %q", s.Type)
			}
		}
		g := NewGraph(r)
		g.Apply(Event{Identifiers: ids})
		g.ApplyMessage(m)
		if err := checkGraph(g); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzNormalize: Normalize never panics; what it returns is normalized (a stored
// value passes again unchanged) and within the length limit; its errors are the
// fixed texts, which hold no value.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"Jane@Example.com", " +44 (0)20 7946 0958 ", "0033612345678", "null", "", " ",
		"a@b@c.d", "İ@example.com", strings.Repeat("ẞ", 400) + "@x.io", "\xff", "+" + strings.Repeat("1", 20)} {
		f.Add(uint8(0), s)
		f.Add(uint8(1), s)
		f.Add(uint8(3), s)
	}
	r, err := Compile(DefaultConfig())
	if err != nil {
		f.Fatal(err)
	}
	types := []string{"email", "phone", "user_id", "anonymous_id", "device_id", PreviousID, "cookie"}
	tricky := []string{`^null$`, `(?-i)Nil`, `ß`, `k`, `^[0-]*$`, `(?m)^x$`, `İ`, `-1`}
	c := DefaultConfig()
	c.Blocked = tricky
	rb, err := Compile(c)
	if err != nil {
		f.Fatal(err)
	}
	ref := referenceBlocked(tricky)
	f.Fuzz(func(t *testing.T, typ uint8, value string) {
		if got, want := rb.isBlocked(value), ref.MatchString(value); got != want {
			t.Fatalf("isBlocked(%q) = %v, the regexp says %v", value, got, want)
		}
		ty := types[int(typ)%len(types)]
		v, err := r.Normalize(ty, value)
		if err != nil {
			_, reason := r.normalize(ty, value)
			if ty == "cookie" {
				ty = ""
			}
			want := reasonError(ty, reason)
			if trustloop.ErrorMessage(err) != want.Message || err.(*trustloop.Error).Hint != want.Hint {
				t.Fatalf("error %q is not the fixed text of %s", trustloop.ErrorMessage(err), reason)
			}
			return
		}
		if len(v) > trustloop.MaxIdentifierLen || v == "" {
			t.Fatalf("normalized value of %d bytes", len(v))
		}
		again, err := r.Normalize(ty, v)
		if err != nil || again != v {
			t.Fatalf("Normalize(%s) not idempotent: %q → %q → %q, %v", ty, value, v, again, err)
		}
	})
}

func BenchmarkFromMessage(b *testing.B) {
	r := mustCompile(b, DefaultConfig())
	m := decodeOne(b, typicalTrack, "")
	b.ReportAllocs()
	for b.Loop() {
		if ids, _ := r.FromMessage(m); len(ids) != 4 {
			b.Fatal(fmt.Sprint(ids))
		}
	}
}

// typicalTrack is an analytics.js track call of ~800 bytes with a user id, an
// anonymous id, a device id and an email in context.traits.
const typicalTrack = `{"timestamp":"2024-05-01T12:59:58.412Z","integrations":{},"type":"track",` +
	`"properties":{"product_id":"507f1f77bcf86cd799439011","sku":"G-32","price":18.99,"currency":"usd"},` +
	`"event":"Product Viewed","messageId":"ajs-next-1714568398412-4b8a4f5e-7c2e-4bd0-9f1a-2c3d4e5f6a7b",` +
	`"anonymousId":"9f1c2e3d-4b5a-4c6d-8e7f-0a1b2c3d4e5f",` +
	`"context":{"page":{"path":"/products/monopoly","title":"Monopoly","url":"https://shop.example.com/products/monopoly"},` +
	`"userAgent":"Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0","locale":"en-US",` +
	`"library":{"name":"analytics.js","version":"npm:next-1.70.0"},"device":{"id":"B5372DB0-C21E-11E4-8DFC-AA07A5B093DB"},` +
	`"traits":{"email":"Jane.Doe@Example.com"},"consent":{"categoryPreferences":{"Analytics":true}}},` +
	`"userId":"u-1234","sentAt":"2024-05-01T13:00:00.000Z"}`
