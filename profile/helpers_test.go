package profile

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/collect"
)

// t0 is the base time of the tests' events.
var t0 = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

// fixture reads a file of testdata/profile at the repository root.
func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "profile", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decode runs a body through the collector, as ingest does, and returns its first
// message.
func decode(t testing.TB, body []byte, typ trustloop.EventType) *trustloop.Message {
	t.Helper()
	req, err := collect.Decode(body, collect.Route{Type: typ}, collect.Options{
		ReceivedAt: t0.Add(time.Hour), NewID: func() string { return "gen" }})
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return &req.Messages[0]
}

// at returns t0 plus n seconds.
func at(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }

// track returns a track input at t0+n seconds.
func track(n int, event, props string) Input {
	in := Input{Type: trustloop.EventTrack, Event: event, Timestamp: at(n), ReceivedAt: at(n + 1), SourceID: 1}
	if props != "" {
		in.Properties = []byte(props)
	}
	return in
}

// identify returns an identify input at t0+n seconds.
func identify(n int, traits string) Input {
	in := Input{Type: trustloop.EventIdentify, Timestamp: at(n), ReceivedAt: at(n + 1), SourceID: 1}
	if traits != "" {
		in.Traits = []byte(traits)
	}
	return in
}

// encode is a state's sealed form, which is equal for equal states.
func encode(t testing.TB, s *State) []byte {
	t.Helper()
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatalf("MarshalBinary: %v", err)
	}
	return b
}

func sameState(t testing.TB, got, want *State) bool {
	t.Helper()
	return bytes.Equal(encode(t, got), encode(t, want))
}
