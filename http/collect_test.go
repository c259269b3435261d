package http_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
	tlhttp "github.com/trustloop/trustloop/http"
)

// collectorPaths are the collector's paths and what each takes. TestOpenAPIServed
// checks it against the document's paths, which the internal TestOpenAPIDocument
// checks against the router.
var collectorPaths = []struct {
	path  string
	typ   string // "" for a batch
	short bool   // analytics.js's browser path
}{
	{"/v1/track", "track", false},
	{"/v1/identify", "identify", false},
	{"/v1/page", "page", false},
	{"/v1/screen", "screen", false},
	{"/v1/group", "group", false},
	{"/v1/alias", "alias", false},
	{"/v1/batch", "", false},
	{"/v1/import", "", false},
	{"/v1/t", "track", true},
	{"/v1/i", "identify", true},
	{"/v1/p", "page", true},
	{"/v1/s", "screen", true},
	{"/v1/g", "group", true},
	{"/v1/a", "alias", true},
	{"/v1/b", "", true},
}

// TestCollectEveryPath sends a valid request to every collector path, both with
// Basic auth and with the write key in the body, and reads the stored events back.
func TestCollectEveryPath(t *testing.T) {
	for _, p := range collectorPaths {
		for _, auth := range []string{"basic", "body"} {
			t.Run(p.path+" "+auth, func(t *testing.T) {
				s := newServer(t, options{})
				var body obj
				want := []string{p.typ}
				if p.typ == "" {
					body = batchOf(msg("identify", "u1", "m-1"), msg("track", "u1", "m-2"), msg("page", "u1", "m-3"),
						msg("screen", "u1", "m-4"), msg("group", "u1", "m-5"), msg("alias", "u1", "m-6"))
					want = []string{"identify", "track", "page", "screen", "group", "alias"}
				} else {
					body = msg(p.typ, "u1", "m-1")
					if p.short {
						delete(body, "type") // the path decides
					}
				}
				rq := req{path: p.path}
				if auth == "basic" {
					rq.auth = testWriteKey
				} else {
					body["writeKey"] = testWriteKey
				}
				rq.body = mustJSON(t, body)
				mustOK(t, s.do(t, rq))
				envs := s.openAll(t, "user_id", "u1")
				if len(envs) != len(want) {
					t.Fatalf("stored %d events, want %d", len(envs), len(want))
				}
				for i, env := range envs {
					if env.Type != want[i] {
						t.Errorf("event %d type = %q, want %q", i, env.Type, want[i])
					}
					if env.MessageID != fmt.Sprintf("m-%d", i+1) {
						t.Errorf("event %d messageId = %q", i, env.MessageID)
					}
					if bytes.Contains(env.Message, []byte(testWriteKey)) || bytes.Contains(env.Message, []byte("writeKey")) {
						t.Errorf("stored message holds the write key: %s", env.Message)
					}
				}
			})
		}
	}
}

// TestCollectSingleRouteTypeWins: on a single-message path the path decides the
// type, whatever the body says.
func TestCollectSingleRouteTypeWins(t *testing.T) {
	s := newServer(t, options{})
	m := msg("track", "u1", "m-1")
	m["type"] = "identify"
	mustOK(t, s.post(t, "/v1/track", m))
	if env := s.openAll(t, "user_id", "u1")[0]; env.Type != "track" {
		t.Errorf("type = %q, want track", env.Type)
	}
	if evs := s.list(t); evs[0].Type != trustloop.EventTrack {
		t.Errorf("stored type = %v", evs[0].Type)
	}
}

// browserContext is a context like analytics.js sends.
func browserContext() obj {
	return obj{
		"page": obj{"path": "/shop", "referrer": "", "search": "", "title": "Shop",
			"url": "https://shop.example/shop"},
		"userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
		"locale":    "en-US",
		"library":   obj{"name": "analytics.js", "version": "npm:next-1.70.0"},
		"consent": obj{"categoryPreferences": obj{"Analytics": true, "Advertising": false},
			"tcString": "CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA"},
	}
}

// TestCollectBrowserShortPaths sends exactly what analytics.js sends: text/plain,
// the write key in the body, userId null for an anonymous visitor.
func TestCollectBrowserShortPaths(t *testing.T) {
	const anon = "6d3c1d7e-7f29-4a0b-9a56-3f1f2c2e8b11"
	sentAt := fixedNow.Add(-2 * time.Second)
	event := func(typ, id string) obj {
		m := obj{
			"timestamp":    sentAt.Add(-500 * time.Millisecond).Format(time.RFC3339Nano),
			"integrations": obj{},
			"type":         typ,
			"messageId":    "ajs-next-" + id,
			"anonymousId":  anon,
			"userId":       nil,
			"context":      browserContext(),
			"sentAt":       sentAt.Format(time.RFC3339Nano),
			"_metadata":    obj{"bundled": []string{"Segment.io"}, "unbundled": []string{}, "bundledIds": []string{}},
			"writeKey":     testWriteKey,
		}
		switch typ {
		case "track":
			m["event"] = "Product Added"
			m["properties"] = obj{"sku": "A-1", "price": 12.5}
		case "page", "screen":
			m["name"] = "Shop"
			m["properties"] = obj{"path": "/shop"}
		case "identify":
			m["traits"] = obj{"newsletter": true}
		case "group":
			m["groupId"] = "team-9"
		case "alias":
			m["userId"] = "user-9"
			m["previousId"] = anon
			delete(m, "anonymousId")
		}
		return m
	}
	for _, p := range collectorPaths {
		if !p.short {
			continue
		}
		t.Run(p.path, func(t *testing.T) {
			s := newServer(t, options{})
			var body obj
			n := 1
			if p.typ == "" {
				body = obj{"batch": []any{event("track", "1"), event("page", "2"), event("identify", "3")},
					"sentAt": sentAt.Format(time.RFC3339Nano), "writeKey": testWriteKey}
				n = 3
			} else {
				body = event(p.typ, "1")
			}
			r := s.do(t, req{path: p.path, body: mustJSON(t, body), headers: map[string]string{
				"Content-Type": "text/plain;charset=UTF-8", "Origin": "https://shop.example"}})
			mustOK(t, r)
			if got := r.Header.Get("Access-Control-Allow-Origin"); got != "https://shop.example" {
				t.Errorf("Access-Control-Allow-Origin = %q", got)
			}
			idType, id := "anonymous_id", anon
			if p.typ == "alias" {
				idType, id = "user_id", "user-9"
			}
			evs := s.list(t)
			if len(evs) != n {
				t.Fatalf("stored %d events, want %d", len(evs), n)
			}
			for _, ev := range evs {
				env, plain := s.open(t, ev, idType, id)
				if bytes.Contains(plain, []byte(testWriteKey)) || bytes.Contains(plain, []byte(`"writeKey"`)) {
					t.Errorf("stored envelope holds the write key: %s", plain)
				}
				if !strings.HasPrefix(env.MessageID, "ajs-next-") {
					t.Errorf("messageId = %q", env.MessageID)
				}
				if env.Consent == nil || env.Consent.TCString == "" || !env.Consent.CategoryPreferences["Analytics"] {
					t.Errorf("consent not recorded: %+v", env.Consent)
				}
				// The message is kept as sent (less the write key).
				var m map[string]any
				if err := json.Unmarshal(env.Message, &m); err != nil {
					t.Fatal(err)
				}
				if _, ok := m["_metadata"]; !ok {
					t.Errorf("unknown members were not kept: %s", env.Message)
				}
			}
		})
	}
}

// TestCollectAuth covers where the write key may come from.
func TestCollectAuth(t *testing.T) {
	s := newServer(t, options{})
	body := func(writeKey string) []byte {
		m := msg("track", "u1", "")
		if writeKey != "" {
			m["writeKey"] = writeKey
		}
		return mustJSON(t, m)
	}
	for _, tc := range []struct {
		name     string
		path     string
		auth     string
		header   string
		body     []byte
		want     int
		wantMsg  string
		wantCode string
	}{
		{name: "basic", path: "/v1/track", auth: testWriteKey, body: body(""), want: 200},
		{name: "basic on short path", path: "/v1/t", auth: testWriteKey, body: body(""), want: 200},
		{name: "body on long path", path: "/v1/track", body: body(testWriteKey), want: 200},
		{name: "header wins over body", path: "/v1/track", auth: testWriteKey, body: body("wk_bogus"), want: 200},
		{name: "unknown key in header", path: "/v1/track", auth: "wk_bogus", body: body(testWriteKey),
			want: 401, wantCode: "unauthorized", wantMsg: "The write key is not valid."},
		{name: "unknown key in body", path: "/v1/t", body: body("wk_bogus"),
			want: 401, wantCode: "unauthorized", wantMsg: "The write key is not valid."},
		{name: "missing key", path: "/v1/track", body: body(""),
			want: 401, wantCode: "unauthorized", wantMsg: "No write key was sent."},
		{name: "empty basic user", path: "/v1/track", header: "Basic Og==", body: body(""),
			want: 401, wantCode: "unauthorized", wantMsg: "No write key was sent."},
		{name: "bearer", path: "/v1/track", header: "Bearer " + testWriteKey, body: body(""),
			want: 401, wantCode: "unauthorized", wantMsg: "not HTTP Basic"},
		{name: "basic not base64", path: "/v1/track", header: "Basic !!!", body: body(testWriteKey),
			want: 401, wantCode: "unauthorized", wantMsg: "not HTTP Basic"},
		{name: "key differing in case", path: "/v1/track", auth: strings.ToUpper(testWriteKey), body: body(""),
			want: 401, wantCode: "unauthorized"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := s.events(t)
			rq := req{path: tc.path, body: tc.body, auth: tc.auth}
			if tc.header != "" {
				rq.headers = map[string]string{"Authorization": tc.header}
			}
			r := s.do(t, rq)
			if tc.want == 200 {
				mustOK(t, r)
				if s.events(t) != before+1 {
					t.Errorf("events = %d, want %d", s.events(t), before+1)
				}
				return
			}
			if r.Status != tc.want {
				t.Fatalf("status = %d, want %d: %s", r.Status, tc.want, r.Body)
			}
			e := r.apiError(t)
			if e.Error.Code != tc.wantCode || !strings.Contains(e.Error.Message, tc.wantMsg) {
				t.Errorf("error = %+v, want %s %q", e.Error, tc.wantCode, tc.wantMsg)
			}
			if e.Error.Hint == "" {
				t.Error("no hint")
			}
			if strings.Contains(string(r.Body), "wk_bogus") || strings.Contains(string(r.Body), testWriteKey) {
				t.Errorf("the error echoes a write key: %s", r.Body)
			}
			if s.events(t) != before {
				t.Errorf("a refused request stored events")
			}
		})
	}
}

func TestCollectGzip(t *testing.T) {
	s := newServer(t, options{})
	for _, tc := range []struct {
		name    string
		path    string
		body    any
		headers map[string]string
		auth    string
		n       int64
	}{
		{"single", "/v1/track", msg("track", "u1", "g-1"), nil, testWriteKey, 1},
		{"batch", "/v1/batch", batchOf(msg("track", "u1", "g-2"), msg("identify", "u1", "g-3")), nil, testWriteKey, 2},
		{"browser text/plain", "/v1/b",
			obj{"writeKey": testWriteKey, "batch": []any{msg("page", "u1", "g-4")}},
			map[string]string{"Content-Type": "text/plain"}, "", 1},
		{"gzip and charset", "/v1/import", batchOf(msg("screen", "u1", "g-5")),
			map[string]string{"Content-Type": "application/json; charset=utf-8"}, testWriteKey, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := s.events(t)
			h := map[string]string{"Content-Encoding": "gzip"}
			for k, v := range tc.headers {
				h[k] = v
			}
			mustOK(t, s.do(t, req{path: tc.path, body: gzipBytes(t, mustJSON(t, tc.body)), auth: tc.auth, headers: h}))
			if got := s.events(t); got != before+tc.n {
				t.Errorf("events = %d, want %d", got, before+tc.n)
			}
		})
	}
	// Gzip of a body that is large when decompressed but within the limit.
	var items []obj
	for i := range 400 {
		m := msg("track", "u1", fmt.Sprintf("big-%d", i))
		m["properties"] = obj{"blob": strings.Repeat("x", 1000)}
		items = append(items, m)
	}
	big := mustJSON(t, batchOf(items...))
	if len(big) > trustloop.MaxRequestBytes || len(big) < 400_000 {
		t.Fatalf("test body is %d bytes", len(big))
	}
	before := s.events(t)
	mustOK(t, s.do(t, req{path: "/v1/batch", body: gzipBytes(t, big), auth: testWriteKey,
		headers: map[string]string{"Content-Encoding": "gzip"}}))
	if got := s.events(t); got != before+400 {
		t.Errorf("events = %d, want %d", got, before+400)
	}
}

// TestCollectLimitsAccepted: what is just within the limits is taken.
func TestCollectLimitsAccepted(t *testing.T) {
	s := newServer(t, options{})
	// 2,500 events in a batch.
	items := make([]obj, trustloop.MaxBatchEvents)
	for i := range items {
		items[i] = obj{"type": "track", "event": "e", "userId": "u1", "messageId": strconv.Itoa(i)}
	}
	mustOK(t, s.post(t, "/v1/batch", batchOf(items...)))
	if got := s.events(t); got != trustloop.MaxBatchEvents {
		t.Fatalf("events = %d", got)
	}
	// An event of exactly 32 KB.
	m := msg("track", "u1", "exactly-32k")
	m["properties"] = obj{"blob": ""}
	pad := trustloop.MaxEventBytes - len(mustJSON(t, m))
	m["properties"] = obj{"blob": strings.Repeat("x", pad)}
	if n := len(mustJSON(t, m)); n != trustloop.MaxEventBytes {
		t.Fatalf("event is %d bytes", n)
	}
	mustOK(t, s.post(t, "/v1/track", m))
	// One byte more is too large.
	m["messageId"] = "exactly-32k+1"
	if r := s.post(t, "/v1/track", m); r.Status != http.StatusRequestEntityTooLarge {
		t.Errorf("32 KB + 1: status = %d, want 413", r.Status)
	}
	// 32 KB once the write key, which is not stored, is taken out.
	m["messageId"] = "exactly-32k-w"
	if n := len(mustJSON(t, m)); n != trustloop.MaxEventBytes+2 {
		t.Fatalf("event is %d bytes", n)
	}
	m["properties"] = obj{"blob": strings.Repeat("x", pad-2)}
	m["writeKey"] = testWriteKey
	if n := len(mustJSON(t, m)); n <= trustloop.MaxEventBytes {
		t.Fatalf("event is %d bytes, want over the limit with its write key", n)
	}
	mustOK(t, s.do(t, req{path: "/v1/t", body: mustJSON(t, m), headers: map[string]string{"Content-Type": "text/plain"}}))
}

// rejection is one request the collector must refuse, storing nothing.
type rejection struct {
	name       string
	method     string
	path       string
	body       []byte
	chunked    bool
	auth       string
	headers    map[string]string
	wantStatus int
	wantCode   string
	wantMsg    string // substring of the message
	details    []trustloop.ErrorDetail
	wantHeader map[string]string
	// noMetric: the request is not counted as a rejected collector request.
	noMetric bool
}

func TestCollectRejected(t *testing.T) {
	s := newServer(t, options{})
	good := func(i int) obj { return msg("track", "u1", fmt.Sprintf("good-%d", i)) }
	j := func(v any) []byte { return mustJSON(t, v) }
	bigEvent := func() obj {
		m := msg("track", "u1", "")
		m["properties"] = obj{"blob": strings.Repeat("x", trustloop.MaxEventBytes)}
		return m
	}
	// A valid batch of more than 500 KB.
	var bigItems []obj
	for i := range 60 {
		m := good(i)
		m["properties"] = obj{"blob": strings.Repeat("y", 10_000)}
		bigItems = append(bigItems, m)
	}
	bigBody := j(batchOf(bigItems...))
	if len(bigBody) <= trustloop.MaxRequestBytes {
		t.Fatalf("big body is %d bytes", len(bigBody))
	}
	// Just over the limit: one byte of white space more than 500 KB.
	edge := j(batchOf(good(0)))
	edge = append(edge, bytes.Repeat([]byte(" "), trustloop.MaxRequestBytes+1-len(edge))...)
	var many []obj
	for i := range trustloop.MaxBatchEvents + 1 {
		many = append(many, obj{"type": "track", "event": "e", "userId": "u1", "messageId": strconv.Itoa(i)})
	}
	// 50 MB of JSON white space compresses to ~50 KB.
	bomb := gzipBytes(t, append(append([]byte(`{"batch":[`), bytes.Repeat([]byte(" "), 50<<20)...), []byte(`]}`)...))
	gz := gzipBytes(t, j(batchOf(good(0))))
	badCRC := bytes.Clone(gz)
	badCRC[len(badCRC)-8] ^= 0xff

	cases := []rejection{
		// Malformed and invalid bodies.
		{name: "malformed JSON", path: "/v1/track", body: []byte(`{"type":"track","event":"e","userId":"u1"`),
			wantStatus: 400, wantCode: "invalid", wantMsg: "Malformed JSON"},
		{name: "trailing garbage", path: "/v1/track", body: []byte(`{"event":"e","userId":"u1"} x`),
			wantStatus: 400, wantCode: "invalid", wantMsg: "Malformed JSON"},
		{name: "not an object", path: "/v1/track", body: []byte(`["track"]`),
			wantStatus: 400, wantCode: "invalid", wantMsg: "Malformed JSON"},
		{name: "empty body", path: "/v1/track", body: []byte(``),
			wantStatus: 400, wantCode: "invalid", wantMsg: "empty"},
		{name: "missing userId and anonymousId", path: "/v1/track", body: j(obj{"event": "e"}),
			wantStatus: 400, wantCode: "invalid", wantMsg: "1 message is invalid; nothing was stored.",
			details: []trustloop.ErrorDetail{{Index: 0, Reason: "userId or anonymousId is required"}}},
		{name: "blank userId", path: "/v1/identify", body: j(obj{"userId": "   "}),
			wantStatus: 400, wantCode: "invalid",
			details: []trustloop.ErrorDetail{{Index: 0, Reason: "userId or anonymousId is required"}}},
		{name: "userId object", path: "/v1/track", body: j(obj{"event": "e", "userId": obj{"id": 1}}),
			wantStatus: 400, wantCode: "invalid",
			details: []trustloop.ErrorDetail{{Index: 0, Reason: "userId must be a string or a number"}}},
		{name: "userId too long", path: "/v1/track", body: j(obj{"event": "e", "userId": strings.Repeat("u", 1025)}),
			wantStatus: 400, wantCode: "invalid",
			details: []trustloop.ErrorDetail{{Index: 0, Reason: "userId is longer than 1024 bytes"}}},
		{name: "event number", path: "/v1/track", body: j(obj{"event": 5, "userId": "u1"}),
			wantStatus: 400, wantCode: "invalid",
			details: []trustloop.ErrorDetail{{Index: 0, Reason: "event must be a string"}}},
		{name: "track without event", path: "/v1/track", body: j(obj{"userId": "u1"}),
			wantStatus: 400, wantCode: "invalid",
			details: []trustloop.ErrorDetail{{Index: 0, Reason: "track needs a non-empty event name"}}},
		{name: "alias without previousId", path: "/v1/alias", body: j(obj{"userId": "u1"}),
			wantStatus: 400, wantCode: "invalid",
			details: []trustloop.ErrorDetail{{Index: 0, Reason: "alias needs previousId and userId"}}},
		{name: "group without groupId", path: "/v1/g", body: j(obj{"userId": "u1", "writeKey": testWriteKey}),
			wantStatus: 400, wantCode: "invalid",
			details: []trustloop.ErrorDetail{{Index: 0, Reason: "group needs a groupId"}}},
		{name: "properties string", path: "/v1/track", body: j(obj{"event": "e", "userId": "u1", "properties": "x"}),
			wantStatus: 400, wantCode: "invalid",
			details: []trustloop.ErrorDetail{{Index: 0, Reason: "properties must be an object"}}},
		{name: "timestamp not a date", path: "/v1/track", body: j(obj{"event": "e", "userId": "u1", "timestamp": "yesterday"}),
			wantStatus: 400, wantCode: "invalid",
			details: []trustloop.ErrorDetail{{Index: 0, Reason: "timestamp must be an ISO-8601 date string"}}},
		{name: "messageId too long", path: "/v1/track", body: j(obj{"event": "e", "userId": "u1", "messageId": strings.Repeat("m", 100)}),
			wantStatus: 400, wantCode: "invalid",
			details: []trustloop.ErrorDetail{{Index: 0, Reason: "messageId must be shorter than 100 characters"}}},
		{name: "messageId number", path: "/v1/track", body: j(obj{"event": "e", "userId": "u1", "messageId": 7}),
			wantStatus: 400, wantCode: "invalid",
			details: []trustloop.ErrorDetail{{Index: 0, Reason: "messageId must be a string"}}},
		{name: "consent preference not boolean", path: "/v1/track",
			body:       j(obj{"event": "e", "userId": "u1", "context": obj{"consent": obj{"categoryPreferences": obj{"ads": "yes"}}}}),
			wantStatus: 400, wantCode: "invalid",
			details: []trustloop.ErrorDetail{{Index: 0, Reason: "context.consent.categoryPreferences values must be true or false"}}},
		{name: "batch with one bad event", path: "/v1/batch",
			body:       j(batchOf(good(0), good(1), obj{"type": "track", "event": "e"}, good(3))),
			wantStatus: 400, wantCode: "invalid", wantMsg: "1 message is invalid; nothing was stored.",
			details: []trustloop.ErrorDetail{{Index: 2, Reason: "userId or anonymousId is required"}}},
		{name: "batch with two bad events", path: "/v1/import",
			body:       j(batchOf(good(0), obj{"type": "track", "userId": "u1"}, good(2), obj{"type": "bogus", "userId": "u1"})),
			wantStatus: 400, wantCode: "invalid", wantMsg: "2 messages are invalid; nothing was stored.",
			details: []trustloop.ErrorDetail{{Index: 1, Reason: "track needs a non-empty event name"},
				{Index: 3, Reason: "type must be one of track, identify, page, screen, group, alias"}}},
		{name: "batch item without type", path: "/v1/batch",
			body:       j(obj{"batch": []any{good(0), obj{"userId": "u1", "event": "e"}}}),
			wantStatus: 400, wantCode: "invalid",
			details: []trustloop.ErrorDetail{{Index: 1, Reason: "type is required"}}},
		{name: "batch item not an object", path: "/v1/b",
			body:       j(obj{"writeKey": testWriteKey, "batch": []any{good(0), "track"}}),
			headers:    map[string]string{"Content-Type": "text/plain"},
			wantStatus: 400, wantCode: "invalid",
			details: []trustloop.ErrorDetail{{Index: 1, Reason: "each batch item must be a JSON object"}}},
		{name: "batch context not an object", path: "/v1/batch",
			body:       j(obj{"batch": []any{good(0)}, "context": "x"}),
			wantStatus: 400, wantCode: "invalid", wantMsg: "The batch is invalid",
			details: []trustloop.ErrorDetail{{Index: -1, Reason: "batch context must be an object"}}},
		{name: "no batch array", path: "/v1/batch", body: j(good(0)),
			wantStatus: 400, wantCode: "invalid", wantMsg: `no "batch" array`},
		{name: "batch not an array", path: "/v1/batch", body: j(obj{"batch": good(0)}),
			wantStatus: 400, wantCode: "invalid", wantMsg: `"batch" must be an array`},
		{name: "empty batch", path: "/v1/batch", body: j(obj{"batch": []any{}}),
			wantStatus: 400, wantCode: "invalid", wantMsg: "The batch is empty."},

		// Limits.
		{name: "event over 32 KB", path: "/v1/track", body: j(bigEvent()),
			wantStatus: 413, wantCode: "too_large", wantMsg: "32 KB",
			details: []trustloop.ErrorDetail{{Index: 0, Reason: "event is larger than 32 KB"}}},
		{name: "batch event over 32 KB", path: "/v1/batch", body: j(batchOf(good(0), bigEvent(), good(2))),
			wantStatus: 413, wantCode: "too_large", wantMsg: "32 KB",
			details: []trustloop.ErrorDetail{{Index: 1, Reason: "event is larger than 32 KB"}}},
		{name: "body over 500 KB", path: "/v1/batch", body: bigBody,
			wantStatus: 413, wantCode: "too_large", wantMsg: "500 KB"},
		{name: "body over 500 KB chunked", path: "/v1/batch", body: bigBody, chunked: true,
			wantStatus: 413, wantCode: "too_large", wantMsg: "500 KB"},
		{name: "body one byte over 500 KB", path: "/v1/batch", body: edge,
			wantStatus: 413, wantCode: "too_large", wantMsg: "500 KB"},
		{name: "body one byte over 500 KB chunked", path: "/v1/batch", body: edge, chunked: true,
			wantStatus: 413, wantCode: "too_large", wantMsg: "500 KB"},
		{name: "2501 events", path: "/v1/batch", body: j(batchOf(many...)),
			wantStatus: 413, wantCode: "too_large", wantMsg: "more than 2500 events"},
		{name: "gzip bomb", path: "/v1/batch", body: bomb, headers: map[string]string{"Content-Encoding": "gzip"},
			wantStatus: 413, wantCode: "too_large", wantMsg: "500 KB"},
		{name: "gzip over 500 KB", path: "/v1/batch", body: gzipBytes(t, bigBody), headers: map[string]string{"Content-Encoding": "gzip"},
			wantStatus: 413, wantCode: "too_large", wantMsg: "500 KB"},
		{name: "gzip over 500 KB chunked", path: "/v1/batch", body: gzipBytes(t, bigBody), headers: map[string]string{"Content-Encoding": "gzip"}, chunked: true,
			wantStatus: 413, wantCode: "too_large", wantMsg: "500 KB"},
		{name: "corrupt gzip", path: "/v1/batch", body: j(batchOf(good(0))), headers: map[string]string{"Content-Encoding": "gzip"},
			wantStatus: 400, wantCode: "invalid", wantMsg: "not valid gzip"},
		{name: "truncated gzip", path: "/v1/batch", body: gz[:len(gz)/2], headers: map[string]string{"Content-Encoding": "gzip"},
			wantStatus: 400, wantCode: "invalid", wantMsg: "not valid gzip"},
		{name: "gzip with a bad checksum", path: "/v1/batch", body: badCRC, headers: map[string]string{"Content-Encoding": "gzip"},
			wantStatus: 400, wantCode: "invalid", wantMsg: "not valid gzip"},

		// Auth.
		{name: "unknown write key", path: "/v1/track", body: j(good(0)), auth: "wk_unknown",
			wantStatus: 401, wantCode: "unauthorized", wantMsg: "The write key is not valid."},
		{name: "unknown write key in body", path: "/v1/t", body: j(obj{"writeKey": "wk_unknown", "event": "e", "userId": "u1"}),
			headers: map[string]string{"Content-Type": "text/plain"}, auth: "-",
			wantStatus: 401, wantCode: "unauthorized", wantMsg: "The write key is not valid."},
		{name: "missing write key", path: "/v1/track", body: j(good(0)), auth: "-",
			wantStatus: 401, wantCode: "unauthorized", wantMsg: "No write key was sent."},
		{name: "bearer token", path: "/v1/track", body: j(good(0)), auth: "-",
			headers:    map[string]string{"Authorization": "Bearer " + testWriteKey},
			wantStatus: 401, wantCode: "unauthorized", wantMsg: "not HTTP Basic"},

		// Methods, media types, paths.
		{name: "GET", method: http.MethodGet, path: "/v1/track",
			wantStatus: 405, wantCode: "method_not_allowed", wantMsg: "GET is not allowed here.",
			wantHeader: map[string]string{"Allow": "POST, OPTIONS"}, noMetric: true},
		{name: "PUT", method: http.MethodPut, path: "/v1/batch", body: j(batchOf(good(0))),
			wantStatus: 405, wantCode: "method_not_allowed", wantMsg: "PUT is not allowed here.",
			wantHeader: map[string]string{"Allow": "POST, OPTIONS"}},
		{name: "DELETE", method: http.MethodDelete, path: "/v1/t",
			wantStatus: 405, wantCode: "method_not_allowed", wantMsg: "DELETE is not allowed here.",
			wantHeader: map[string]string{"Allow": "POST, OPTIONS"}},
		{name: "PATCH", method: http.MethodPatch, path: "/v1/identify", body: j(good(0)),
			wantStatus: 405, wantCode: "method_not_allowed",
			wantHeader: map[string]string{"Allow": "POST, OPTIONS"}},
		{name: "html content type", path: "/v1/track", body: j(good(0)),
			headers:    map[string]string{"Content-Type": "text/html; charset=utf-8"},
			wantStatus: 415, wantCode: "unsupported_media_type", wantMsg: `Content-Type "text/html" is not supported.`},
		{name: "unparseable content type", path: "/v1/track", body: j(good(0)),
			headers:    map[string]string{"Content-Type": "/json"},
			wantStatus: 415, wantCode: "unsupported_media_type", wantMsg: `Content-Type "/json" is not supported.`},
		// Form-encoded bodies are read as JSON (the label RudderStack's Node SDK
		// puts on its JSON): real form data is malformed JSON.
		{name: "form data", path: "/v1/track", body: []byte("event=e&userId=u1"),
			headers:    map[string]string{"Content-Type": "application/x-www-form-urlencoded"},
			wantStatus: 400, wantCode: "invalid", wantMsg: "Malformed JSON"},
		{name: "multipart content type", path: "/v1/track", body: j(good(0)),
			headers:    map[string]string{"Content-Type": "multipart/form-data; boundary=x"},
			wantStatus: 415, wantCode: "unsupported_media_type"},
		{name: "xml content type", path: "/v1/track", body: j(good(0)),
			headers:    map[string]string{"Content-Type": "application/xml"},
			wantStatus: 415, wantCode: "unsupported_media_type"},
		{name: "brotli", path: "/v1/track", body: j(good(0)),
			headers:    map[string]string{"Content-Encoding": "br"},
			wantStatus: 415, wantCode: "unsupported_media_type", wantMsg: `Content-Encoding "br" is not supported.`},
		{name: "deflate", path: "/v1/track", body: j(good(0)),
			headers:    map[string]string{"Content-Encoding": "deflate"},
			wantStatus: 415, wantCode: "unsupported_media_type"},
		{name: "unknown path", path: "/v1/unknown", body: j(good(0)),
			wantStatus: 404, wantCode: "not_found", wantMsg: "No such path."},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := s.events(t)
			rejectedBefore := rejectedCount(t, s, tc.wantCode)
			rq := req{method: tc.method, path: tc.path, auth: tc.auth, headers: tc.headers}
			if rq.auth == "" {
				rq.auth = testWriteKey
			} else if rq.auth == "-" {
				rq.auth = ""
			}
			if tc.chunked {
				rq.bodyReader = bytes.NewReader(tc.body)
			} else {
				rq.body = tc.body
			}
			r := s.do(t, rq)
			checkRejection(t, r, tc)
			if got := s.events(t); got != before {
				t.Fatalf("a refused request changed the store: %d events, had %d", got, before)
			}
			wantRejected := rejectedBefore + 1
			if tc.noMetric {
				wantRejected = rejectedBefore
			}
			if got := rejectedCount(t, s, tc.wantCode); got != wantRejected {
				t.Errorf(`trustloop_requests_rejected_total{reason=%q} = %v, want %v`, tc.wantCode, got, wantRejected)
			}
			// The server is fine afterwards.
			mustOK(t, s.post(t, "/v1/track", msg("track", "u1", "")))
			if got := s.events(t); got != before+1 {
				t.Fatalf("events after a valid request = %d, want %d", got, before+1)
			}
		})
	}
}

func checkRejection(t *testing.T, r *response, tc rejection) {
	t.Helper()
	if r.Status != tc.wantStatus {
		t.Fatalf("status = %d, want %d: %s", r.Status, tc.wantStatus, r.Body)
	}
	e := r.apiError(t)
	if e.Error.Code != tc.wantCode {
		t.Errorf("code = %q, want %q", e.Error.Code, tc.wantCode)
	}
	if !strings.Contains(e.Error.Message, tc.wantMsg) {
		t.Errorf("message = %q, want it to contain %q", e.Error.Message, tc.wantMsg)
	}
	if e.Error.Message == "" || e.Error.Hint == "" {
		t.Errorf("message %q, hint %q: want both", e.Error.Message, e.Error.Hint)
	}
	if tc.details != nil {
		if fmt.Sprint(e.Error.Details) != fmt.Sprint(tc.details) {
			t.Errorf("details = %+v, want %+v", e.Error.Details, tc.details)
		}
	}
	for k, v := range tc.wantHeader {
		if got := r.Header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
}

// rejectedCount reads trustloop_requests_rejected_total for a reason.
func rejectedCount(t *testing.T, s *testServer, reason string) float64 {
	t.Helper()
	prefix := fmt.Sprintf(`trustloop_requests_rejected_total{reason=%q} `, reason)
	for _, line := range strings.Split(s.metricsText(t), "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	return 0
}

// TestCollectMediaTypes: the labels a JSON body may carry, and the encodings.
func TestCollectMediaTypes(t *testing.T) {
	s := newServer(t, options{})
	for _, tc := range []struct {
		contentType, encoding string
		want                  int
	}{
		{"", "", 200},
		{"application/json", "", 200},
		{"application/json; charset=utf-8", "", 200},
		{"APPLICATION/JSON;charset=UTF-8", "", 200},
		{"text/plain", "", 200},
		{"text/plain;charset=UTF-8", "", 200},
		{"application/vnd.segment+json", "", 200},
		{"application/x-www-form-urlencoded", "gzip", 200}, // RudderStack's Node SDK
		{"application/octet-stream", "", 200},
		{"application/json; charset", "", 200}, // a malformed parameter is ignored
		{"application/json", "identity", 200},
		{"application/json", "gzip", 200},
		{"application/json", "GZIP", 200},
		{"application/json", "x-gzip", 200},
		{"text/plain", "Gzip", 200},
		{"text/html", "", 415},
		{"application/xml", "", 415},
		{"multipart/form-data; boundary=x", "", 415},
		{"image/png", "gzip", 415},
		{"json", "", 415},
		{"application/json", "br", 415},
		{"application/json", "deflate", 415},
		{"application/json", "compress", 415},
		{"application/json", "gzip, br", 415},
	} {
		t.Run(tc.contentType+" "+tc.encoding, func(t *testing.T) {
			before := s.events(t)
			body := mustJSON(t, msg("track", "u1", ""))
			h := map[string]string{"Content-Type": tc.contentType}
			if tc.encoding != "" {
				h["Content-Encoding"] = tc.encoding
				if strings.Contains(strings.ToLower(tc.encoding), "gzip") {
					body = gzipBytes(t, body)
				}
			}
			r := s.do(t, req{path: "/v1/track", body: body, auth: testWriteKey, headers: h})
			if tc.want == 200 {
				mustOK(t, r)
				if s.events(t) != before+1 {
					t.Error("not stored")
				}
				return
			}
			checkRejection(t, r, rejection{wantStatus: tc.want, wantCode: "unsupported_media_type", wantMsg: "is not supported."})
			if s.events(t) != before {
				t.Error("a refused request stored events")
			}
		})
	}
}

func TestCollectDetailsAreCapped(t *testing.T) {
	s := newServer(t, options{})
	items := make([]obj, 200)
	for i := range items {
		items[i] = obj{"type": "track", "userId": "u1"} // no event name
	}
	r := s.post(t, "/v1/batch", batchOf(items...))
	if r.Status != http.StatusBadRequest {
		t.Fatalf("status = %d", r.Status)
	}
	e := r.apiError(t)
	if e.Error.Message != "200 messages are invalid; nothing was stored." {
		t.Errorf("message = %q", e.Error.Message)
	}
	if n := len(e.Error.Details); n == 0 || n > 50 {
		t.Errorf("%d details, want 1 to 50", n)
	}
	if s.events(t) != 0 {
		t.Error("stored events")
	}
}

func TestCollectDedupe(t *testing.T) {
	s := newServer(t, options{})
	// The same messageId twice, and again in a batch and on a short path: stored once.
	mustOK(t, s.post(t, "/v1/track", msg("track", "u1", "dup-1")))
	mustOK(t, s.post(t, "/v1/track", msg("track", "u1", "dup-1")))
	mustOK(t, s.post(t, "/v1/batch", batchOf(msg("track", "u1", "dup-1"), msg("track", "u1", "dup-2"))))
	if got := s.events(t); got != 2 {
		t.Fatalf("events = %d, want 2 (dup-1 once, dup-2)", got)
	}
	// A repeat within one batch.
	mustOK(t, s.post(t, "/v1/batch", batchOf(msg("track", "u1", "dup-3"), msg("page", "u1", "dup-3"))))
	if got := s.events(t); got != 3 {
		t.Fatalf("events = %d, want 3", got)
	}
	// Different messageIds are different events, even with equal contents.
	mustOK(t, s.post(t, "/v1/track", msg("track", "u1", "dup-4")))
	mustOK(t, s.post(t, "/v1/track", msg("track", "u1", "dup-5")))
	if got := s.events(t); got != 5 {
		t.Fatalf("events = %d, want 5", got)
	}
	// Events without a messageId each get one, so equal bodies are kept apart.
	mustOK(t, s.post(t, "/v1/track", msg("track", "u1", "")))
	mustOK(t, s.post(t, "/v1/track", msg("track", "u1", "")))
	mustOK(t, s.post(t, "/v1/batch", batchOf(msg("track", "u1", ""), msg("track", "u1", ""))))
	if got := s.events(t); got != 9 {
		t.Fatalf("events = %d, want 9", got)
	}
	ids := map[string]int{}
	for _, env := range s.openAll(t, "user_id", "u1") {
		ids[env.MessageID]++
	}
	for _, id := range []string{"dup-1", "dup-2", "dup-3", "dup-4", "dup-5",
		"generated-1", "generated-2", "generated-3", "generated-4"} {
		if ids[id] != 1 {
			t.Errorf("messageId %q stored %d times, want once (all: %v)", id, ids[id], ids)
		}
	}
	// The repeat is answered 200 but not counted as stored.
	text := s.metricsText(t)
	for _, want := range []string{"trustloop_events_stored_total 9", "trustloop_events_duplicate_total 3"} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// The dedupe key is the messageId, not the subject: another user's event with
	// a stored messageId is a repeat too (Segment's rule, per source).
	mustOK(t, s.post(t, "/v1/track", msg("track", "u2", "dup-1")))
	if got := s.events(t); got != 9 {
		t.Errorf("events = %d, want 9", got)
	}
}

// TestCollectEnvelope decrypts what was stored and checks what the collector
// added: messageId, receivedAt, the corrected timestamp and the consent signals.
func TestCollectEnvelope(t *testing.T) {
	s := newServer(t, options{})
	now := s.Clock.Now()
	// The client's clock is 1 hour behind: it sent at now-1h, the event happened
	// 3 seconds before that by its clock.
	sentAt := now.Add(-time.Hour)
	orig := sentAt.Add(-3 * time.Second)
	m := obj{
		"userId": "alice@example.com", "event": "Order Completed", "messageId": "env-1",
		"timestamp": orig.Format(time.RFC3339Nano), "sentAt": sentAt.Format(time.RFC3339Nano),
		"writeKey": testWriteKey,
		"context": obj{"consent": obj{"categoryPreferences": obj{"analytics": true, "advertising": false},
			"tcString": "CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA"}},
		"properties": obj{"total": 42.5},
	}
	mustOK(t, s.do(t, req{path: "/v1/t", body: mustJSON(t, m), headers: map[string]string{
		"Content-Type": "text/plain", "Sec-GPC": "1"}}))
	evs := s.list(t)
	if len(evs) != 1 {
		t.Fatalf("%d events", len(evs))
	}
	ev := evs[0]
	env, plain := s.open(t, ev, "user_id", "alice@example.com")
	wantTS := now.Add(-3 * time.Second)
	if env.MessageID != "env-1" {
		t.Errorf("messageId = %q", env.MessageID)
	}
	if env.Type != "track" {
		t.Errorf("type = %q", env.Type)
	}
	if !env.ReceivedAt.Equal(now) || !ev.ReceivedAt.Equal(now) {
		t.Errorf("receivedAt = %v (column %v), want %v", env.ReceivedAt, ev.ReceivedAt, now)
	}
	if !env.Timestamp.Equal(wantTS) || !ev.Timestamp.Equal(wantTS) {
		t.Errorf("timestamp = %v (column %v), want receivedAt - (sentAt - originalTimestamp) = %v", env.Timestamp, ev.Timestamp, wantTS)
	}
	if env.OriginalTimestamp == nil || !env.OriginalTimestamp.Equal(orig) {
		t.Errorf("originalTimestamp = %v, want %v", env.OriginalTimestamp, orig)
	}
	if env.SentAt == nil || !env.SentAt.Equal(sentAt) {
		t.Errorf("sentAt = %v, want %v", env.SentAt, sentAt)
	}
	if !env.GPC {
		t.Error("Sec-GPC: 1 was not recorded")
	}
	if env.Consent == nil || env.Consent.CategoryPreferences["analytics"] != true ||
		env.Consent.CategoryPreferences["advertising"] != false || len(env.Consent.CategoryPreferences) != 2 {
		t.Errorf("categoryPreferences = %+v", env.Consent)
	}
	if env.Consent == nil || env.Consent.TCString != "CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA" {
		t.Errorf("tcString = %+v", env.Consent)
	}
	if bytes.Contains(plain, []byte(testWriteKey)) || bytes.Contains(env.Message, []byte("writeKey")) {
		t.Errorf("the write key was stored: %s", plain)
	}
	var stored map[string]any
	if err := json.Unmarshal(env.Message, &stored); err != nil {
		t.Fatal(err)
	}
	if stored["event"] != "Order Completed" || stored["properties"].(map[string]any)["total"] != 42.5 {
		t.Errorf("message not kept as sent: %s", env.Message)
	}
	// Nothing personal in the clear columns.
	if bytes.Contains(ev.Payload, []byte("alice")) || bytes.Contains(ev.MessageHash, []byte("env-1")) {
		t.Error("personal data in the clear")
	}
}

// TestCollectTimestamps covers the clock-skew rule's cases.
func TestCollectTimestamps(t *testing.T) {
	iso := func(t time.Time) string { return t.Format(time.RFC3339Nano) }
	now := fixedNow
	for _, tc := range []struct {
		name string
		body obj
		path string
		want time.Time
	}{
		{"no client time", obj{"event": "e", "userId": "u1"}, "/v1/track", now},
		{"timestamp without sentAt is kept", obj{"event": "e", "userId": "u1", "timestamp": iso(now.Add(-48 * time.Hour))},
			"/v1/track", now.Add(-48 * time.Hour)},
		{"client clock ahead", obj{"event": "e", "userId": "u1", "timestamp": iso(now.Add(time.Hour - time.Second)), "sentAt": iso(now.Add(time.Hour))},
			"/v1/track", now.Add(-time.Second)},
		{"originalTimestamp wins over timestamp", obj{"event": "e", "userId": "u1",
			"originalTimestamp": iso(now.Add(-10 * time.Second)), "timestamp": iso(now.Add(-99 * time.Second)), "sentAt": iso(now.Add(-5 * time.Second))},
			"/v1/track", now.Add(-5 * time.Second)},
		{"batch sentAt applies", obj{"sentAt": iso(now.Add(time.Minute)),
			"batch": []any{obj{"type": "track", "event": "e", "userId": "u1", "timestamp": iso(now.Add(time.Minute - 2*time.Second))}}},
			"/v1/batch", now.Add(-2 * time.Second)},
		{"message sentAt wins over batch sentAt", obj{"sentAt": iso(now.Add(time.Minute)),
			"batch": []any{obj{"type": "track", "event": "e", "userId": "u1", "timestamp": iso(now.Add(-7 * time.Second)), "sentAt": iso(now)}}},
			"/v1/batch", now.Add(-7 * time.Second)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, options{})
			mustOK(t, s.post(t, tc.path, tc.body))
			env := s.openAll(t, "user_id", "u1")[0]
			if !env.Timestamp.Equal(tc.want) {
				t.Errorf("timestamp = %v, want %v", env.Timestamp, tc.want)
			}
			if !env.ReceivedAt.Equal(now) {
				t.Errorf("receivedAt = %v, want %v", env.ReceivedAt, now)
			}
		})
	}
}

// TestCollectBatchConsent: the batch context's consent applies to messages that
// carry none of their own.
func TestCollectBatchConsent(t *testing.T) {
	s := newServer(t, options{})
	own := msg("track", "u1", "own")
	own["context"] = obj{"consent": obj{"categoryPreferences": obj{"marketing": true}}}
	body := batchOf(msg("track", "u1", "inherits"), own)
	body["context"] = obj{"consent": obj{"categoryPreferences": obj{"marketing": false}, "tcString": "TCBATCH"}}
	mustOK(t, s.post(t, "/v1/batch", body))
	for _, env := range s.openAll(t, "user_id", "u1") {
		switch env.MessageID {
		case "inherits":
			if env.Consent == nil || env.Consent.CategoryPreferences["marketing"] != false || env.Consent.TCString != "TCBATCH" {
				t.Errorf("inherited consent = %+v", env.Consent)
			}
			if len(env.BatchContext) == 0 {
				t.Error("batch context not recorded")
			}
		case "own":
			if env.Consent == nil || env.Consent.CategoryPreferences["marketing"] != true {
				t.Errorf("own consent = %+v", env.Consent)
			}
		}
	}
}

func TestCollectGPC(t *testing.T) {
	for _, tc := range []struct {
		name   string
		header string
		want   bool
	}{
		{"1", "1", true},
		{"0", "0", false},
		{"true", "true", false},
		{"absent", "", false},
		{"yes", "yes", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, options{})
			rq := req{path: "/v1/batch", body: mustJSON(t, batchOf(msg("track", "u1", "a"), msg("page", "u1", "b"))), auth: testWriteKey}
			if tc.header != "" {
				rq.headers = map[string]string{"Sec-GPC": tc.header}
			}
			mustOK(t, s.do(t, rq))
			for _, env := range s.openAll(t, "user_id", "u1") {
				if env.GPC != tc.want {
					t.Errorf("%s: gpc = %v, want %v", env.MessageID, env.GPC, tc.want)
				}
			}
		})
	}
}

func TestCollectCORS(t *testing.T) {
	s := newServer(t, options{})
	const origin = "https://shop.example"
	for _, path := range []string{"/v1/t", "/v1/b", "/v1/track", "/v1/batch", "/v1/import"} {
		t.Run("preflight "+path, func(t *testing.T) {
			r := s.do(t, req{method: http.MethodOptions, path: path, headers: map[string]string{
				"Origin": origin, "Access-Control-Request-Method": "POST",
				"Access-Control-Request-Headers": "content-type,authorization"}})
			if r.Status != http.StatusNoContent {
				t.Fatalf("status = %d, want 204", r.Status)
			}
			if len(r.Body) != 0 {
				t.Errorf("body = %q", r.Body)
			}
			h := r.Header
			if got := h.Get("Access-Control-Allow-Origin"); got != origin {
				t.Errorf("Allow-Origin = %q", got)
			}
			if got := h.Get("Access-Control-Allow-Methods"); !strings.Contains(got, "POST") {
				t.Errorf("Allow-Methods = %q", got)
			}
			if got := strings.ToLower(h.Get("Access-Control-Allow-Headers")); !strings.Contains(got, "content-type") || !strings.Contains(got, "authorization") {
				t.Errorf("Allow-Headers = %q", got)
			}
			if h.Get("Access-Control-Max-Age") == "" {
				t.Error("no Max-Age")
			}
			if got := h.Get("Access-Control-Expose-Headers"); !strings.Contains(got, "Retry-After") {
				t.Errorf("Expose-Headers = %q, want Retry-After", got)
			}
			if !strings.Contains(strings.Join(h.Values("Vary"), ","), "Origin") {
				t.Errorf("Vary = %q", h.Values("Vary"))
			}
		})
	}
	t.Run("preflight without request headers", func(t *testing.T) {
		r := s.do(t, req{method: http.MethodOptions, path: "/v1/t", headers: map[string]string{
			"Origin": origin, "Access-Control-Request-Method": "POST"}})
		if r.Status != http.StatusNoContent {
			t.Fatalf("status = %d", r.Status)
		}
		got := r.Header.Get("Access-Control-Allow-Headers")
		for _, want := range []string{"Content-Type", "Authorization", "Content-Encoding"} {
			if !strings.Contains(got, want) {
				t.Errorf("Allow-Headers = %q, lacks %s", got, want)
			}
		}
	})
	t.Run("POST with Origin", func(t *testing.T) {
		before := s.events(t)
		r := s.do(t, req{path: "/v1/track", body: mustJSON(t, msg("track", "u1", "")), auth: testWriteKey,
			headers: map[string]string{"Origin": origin}})
		mustOK(t, r)
		if got := r.Header.Get("Access-Control-Allow-Origin"); got != origin {
			t.Errorf("Allow-Origin = %q", got)
		}
		if got := r.Header.Get("Access-Control-Expose-Headers"); got != "Retry-After" {
			t.Errorf("Expose-Headers = %q, want Retry-After", got)
		}
		if s.events(t) != before+1 {
			t.Error("not stored")
		}
	})
	t.Run("error with Origin is readable", func(t *testing.T) {
		r := s.do(t, req{path: "/v1/track", body: []byte("{"), auth: testWriteKey, headers: map[string]string{"Origin": origin}})
		if r.Status != 400 || r.Header.Get("Access-Control-Allow-Origin") != origin {
			t.Errorf("status %d, Allow-Origin %q", r.Status, r.Header.Get("Access-Control-Allow-Origin"))
		}
	})
	t.Run("no Origin, no CORS headers", func(t *testing.T) {
		r := s.post(t, "/v1/track", msg("track", "u1", ""))
		mustOK(t, r)
		if got := r.Header.Get("Access-Control-Allow-Origin"); got != "" {
			t.Errorf("Allow-Origin = %q", got)
		}
	})
}

func TestCollectAllowedOrigins(t *testing.T) {
	s := newServer(t, options{allowedOrigins: []string{"https://shop.example", "https://www.shop.example"}})
	body := func() []byte {
		return mustJSON(t, obj{"writeKey": testWriteKey, "event": "e", "anonymousId": "a1"})
	}
	for _, tc := range []struct {
		name   string
		origin string
		want   int
	}{
		{"allowed", "https://shop.example", 200},
		{"second allowed", "https://www.shop.example", 200},
		{"allowed, other case", "https://SHOP.example", 200},
		{"other origin", "https://evil.example", 403},
		{"other scheme", "http://shop.example", 403},
		{"other port", "https://shop.example:8443", 403},
		{"null origin", "null", 403},
		{"no origin (server side)", "", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := s.events(t)
			rq := req{path: "/v1/t", body: body(), headers: map[string]string{"Content-Type": "text/plain"}}
			if tc.origin != "" {
				rq.headers["Origin"] = tc.origin
			}
			r := s.do(t, rq)
			if tc.want == 200 {
				mustOK(t, r)
				if s.events(t) != before+1 {
					t.Error("not stored")
				}
				return
			}
			checkRejection(t, r, rejection{wantStatus: 403, wantCode: "forbidden", wantMsg: "does not accept events from the page's origin"})
			if s.events(t) != before {
				t.Error("a refused request stored events")
			}
			// The refusal is readable by the page, so its console shows why.
			if got := r.Header.Get("Access-Control-Allow-Origin"); got != tc.origin {
				t.Errorf("Allow-Origin = %q", got)
			}
			// Preflights pass whatever the origin: the source is not known then.
			p := s.do(t, req{method: http.MethodOptions, path: "/v1/t", headers: map[string]string{"Origin": tc.origin}})
			if p.Status != http.StatusNoContent {
				t.Errorf("preflight = %d", p.Status)
			}
		})
	}
}

func TestCollectRateLimit(t *testing.T) {
	s := newServer(t, options{config: tlhttp.Config{RateLimit: 5, RateBurst: 10}})
	batch := func(n int, prefix string) obj {
		items := make([]obj, n)
		for i := range items {
			items[i] = msg("track", "u1", fmt.Sprintf("%s-%d", prefix, i))
		}
		return batchOf(items...)
	}
	// The burst passes at once.
	mustOK(t, s.post(t, "/v1/batch", batch(10, "a")))
	if s.events(t) != 10 {
		t.Fatalf("events = %d", s.events(t))
	}
	// The next event right after is over the rate.
	r := s.post(t, "/v1/track", msg("track", "u1", "b-0"))
	checkRejection(t, r, rejection{wantStatus: 429, wantCode: "rate_limited", wantMsg: "faster than its rate limit; nothing was stored."})
	ra, err := strconv.Atoi(r.Header.Get("Retry-After"))
	if err != nil || ra < 1 {
		t.Errorf("Retry-After = %q, want whole seconds >= 1", r.Header.Get("Retry-After"))
	}
	if s.events(t) != 10 {
		t.Fatalf("a rate-limited request stored events: %d", s.events(t))
	}
	// Every path shares the write key's limit, the browser ones too.
	r = s.do(t, req{path: "/v1/t", body: mustJSON(t, obj{"writeKey": testWriteKey, "event": "e", "userId": "u1"}),
		headers: map[string]string{"Content-Type": "text/plain"}})
	if r.Status != http.StatusTooManyRequests {
		t.Errorf("short path: status = %d, want 429", r.Status)
	}
	// A batch larger than the burst can never pass.
	r = s.post(t, "/v1/batch", batch(11, "c"))
	checkRejection(t, r, rejection{wantStatus: 429, wantCode: "rate_limited", wantMsg: "more than this write key's burst of 10"})
	// After Retry-After seconds the event passes.
	s.Clock.Add(time.Duration(ra) * time.Second)
	mustOK(t, s.post(t, "/v1/track", msg("track", "u1", "b-0")))
	// 2 s later the bucket is full again: a whole burst passes, one more does not.
	s.Clock.Add(2 * time.Second)
	mustOK(t, s.post(t, "/v1/batch", batch(10, "d")))
	r = s.post(t, "/v1/batch", batch(3, "e"))
	if r.Status != http.StatusTooManyRequests {
		t.Fatalf("status = %d, want 429", r.Status)
	}
	// 3 events at 5/s need 0.6 s: Retry-After rounds up to 1.
	if got := r.Header.Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After = %q, want 1", got)
	}
	if s.events(t) != 21 {
		t.Errorf("events = %d, want 21", s.events(t))
	}
	if got := rejectedCount(t, s, "rate_limited"); got != 4 {
		t.Errorf("rejected rate_limited = %v, want 4", got)
	}
	// Refused requests used no tokens: after 0.6 s the 3 pass.
	s.Clock.Add(600 * time.Millisecond)
	mustOK(t, s.post(t, "/v1/batch", batch(3, "e")))
	// Invalid requests do not use tokens either.
	s.Clock.Add(2 * time.Second)
	if r := s.post(t, "/v1/track", obj{"userId": "u1"}); r.Status != http.StatusBadRequest {
		t.Fatalf("invalid: %d", r.Status)
	}
	mustOK(t, s.post(t, "/v1/batch", batch(10, "f")))
}

func TestCollectNoRateLimitByDefault(t *testing.T) {
	s := newServer(t, options{})
	for range 5 {
		items := make([]obj, 500)
		for j := range items {
			items[j] = msg("track", "u1", "")
		}
		mustOK(t, s.post(t, "/v1/batch", batchOf(items...)))
	}
	if s.events(t) != 2500 {
		t.Errorf("events = %d", s.events(t))
	}
}
