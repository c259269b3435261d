package profile

import (
	"testing"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/collect"
)

func TestInputFrom(t *testing.T) {
	tests := []struct {
		name string
		body string
		typ  trustloop.EventType
		want Input // raw members as strings in want's fields; times are checked apart
	}{
		{"identify",
			`{"userId":"u1","traits":{"plan":"pro"},"context":{"traits":{"age":3}}}`, trustloop.EventIdentify,
			Input{Type: trustloop.EventIdentify, Traits: raw(`{"plan":"pro"}`), ContextTraits: raw(`{"age":3}`)}},
		{"track",
			`{"userId":"u1","event":"Order Completed","properties":{"revenue":5},"traits":{"ignored":1}}`, trustloop.EventTrack,
			Input{Type: trustloop.EventTrack, Event: "Order Completed", Properties: raw(`{"revenue":5}`)}},
		{"group with a string id",
			`{"userId":"u1","groupId":" g1 ","traits":{"plan":"team"}}`, trustloop.EventGroup,
			Input{Type: trustloop.EventGroup, GroupID: "g1", Traits: raw(`{"plan":"team"}`)}},
		{"group with a numeric id",
			`{"userId":"u1","groupId":42,"traits":{"plan":"team"}}`, trustloop.EventGroup,
			Input{Type: trustloop.EventGroup, GroupID: "42", Traits: raw(`{"plan":"team"}`)}},
		{"page: properties and traits are not read",
			`{"userId":"u1","name":"Home","properties":{"category":"x"},"traits":{"a":1},"context":{"traits":{"b":2}}}`, trustloop.EventPage,
			Input{Type: trustloop.EventPage, ContextTraits: raw(`{"b":2}`)}},
		{"nulls are absent",
			`{"userId":"u1","traits":null,"context":{"traits":null}}`, trustloop.EventIdentify,
			Input{Type: trustloop.EventIdentify}},
		{"white space around members",
			"{ \"userId\" : \"u1\" , \"traits\" : { \"a\" : 1 } , \"context\" : { \"traits\" : { } } }", trustloop.EventIdentify,
			Input{Type: trustloop.EventIdentify, Traits: raw(`{ "a" : 1 }`), ContextTraits: raw(`{ }`)}},
		{"the last of duplicate members",
			`{"userId":"u1","traits":{"a":1},"traits":{"b":2}}`, trustloop.EventIdentify,
			Input{Type: trustloop.EventIdentify, Traits: raw(`{"b":2}`)}},
		{"non-object traits are passed on for Apply to refuse",
			`{"userId":"u1","context":{"traits":"x"}}`, trustloop.EventScreen,
			Input{Type: trustloop.EventScreen, ContextTraits: raw(`"x"`)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := decode(t, []byte(tt.body), tt.typ)
			got := InputFrom(m, 7)
			if !got.Timestamp.Equal(m.Timestamp) || !got.ReceivedAt.Equal(m.ReceivedAt) || got.SourceID != 7 {
				t.Errorf("times/source = %v %v %d", got.Timestamp, got.ReceivedAt, got.SourceID)
			}
			got.Timestamp, got.ReceivedAt, got.SourceID = time.Time{}, time.Time{}, 0
			if !sameInput(got, tt.want) {
				t.Errorf("InputFrom =\n%s\nwant\n%s", describe(got), describe(tt.want))
			}
		})
	}
}

func TestInputFromBatchContext(t *testing.T) {
	body := `{"context":{"traits":{"plan":"batch"},"locale":"en"},"batch":[` +
		`{"type":"track","userId":"u1","event":"A"},` +
		`{"type":"track","userId":"u1","event":"B","context":{"locale":"de"}},` +
		`{"type":"track","userId":"u1","event":"C","context":{"traits":{"plan":"own"}}},` +
		`{"type":"track","userId":"u1","event":"D","context":{"traits":null}}]}`
	req, err := collect.Decode([]byte(body), collect.Batch, collect.Options{ReceivedAt: t0, NewID: func() string { return "x" }})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`{"plan":"batch"}`, `{"plan":"batch"}`, `{"plan":"own"}`, `{"plan":"batch"}`}
	for i := range req.Messages {
		if got := InputFrom(&req.Messages[i], 1).ContextTraits; string(got) != want[i] {
			t.Errorf("message %d: context traits %s, want %s", i, got, want[i])
		}
	}
}

// TestInputFromTypical checks the fixtures the benchmarks use.
func TestInputFromTypical(t *testing.T) {
	m := decode(t, fixture(t, "track.json"), trustloop.EventTrack)
	s := &State{}
	r := Config{}.Apply(s, InputFrom(m, 1))
	if len(r.Skipped) != 0 || s.Computed.Categories["Games"] != 1 || s.Computed.LastViewedProducts()[0] != "507f1f77bcf86cd799439011" {
		t.Errorf("track: %+v %+v", r, s.Computed)
	}
	m = decode(t, fixture(t, "identify.json"), trustloop.EventIdentify)
	r = Config{}.Apply(s, InputFrom(m, 1))
	if len(r.Skipped) != 0 || len(s.Traits) != 10 || string(s.Traits["company"].Value) != `{"name":"Initech","employees":120}` {
		t.Errorf("identify: %+v %v", r, traitValues(s))
	}
}

// TestInputFromMalformed: bytes the collector would refuse give no members, and
// nothing panics.
func TestInputFromMalformed(t *testing.T) {
	for _, raw := range []string{``, `[]`, `"x"`, `{"traits":`, `{`, `nul`} {
		m := &trustloop.Message{Type: trustloop.EventIdentify, Raw: []byte(raw), BatchContext: []byte(`{"traits":`), Timestamp: at(1)}
		in := InputFrom(m, 1)
		Config{}.Apply(&State{}, in)
	}
}

func raw(s string) []byte { return []byte(s) }

func sameInput(a, b Input) bool {
	return a.Type == b.Type && a.Event == b.Event && a.GroupID == b.GroupID && a.SourceID == b.SourceID &&
		a.Timestamp.Equal(b.Timestamp) && a.ReceivedAt.Equal(b.ReceivedAt) &&
		string(a.Traits) == string(b.Traits) && string(a.ContextTraits) == string(b.ContextTraits) &&
		string(a.Properties) == string(b.Properties)
}

func describe(in Input) string {
	return in.Type.String() + " event=" + in.Event + " group=" + in.GroupID + " traits=" + string(in.Traits) +
		" context.traits=" + string(in.ContextTraits) + " properties=" + string(in.Properties)
}
