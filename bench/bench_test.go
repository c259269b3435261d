package bench

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/trustloop/trustloop/collect"
)

// The generated load must be what the collector accepts, or the benchmark would
// measure error paths.
func TestGeneratorMakesValidUniqueEvents(t *testing.T) {
	g := newGenerator(42, 1000)
	seen := map[string]bool{}
	opt := collect.Options{ReceivedAt: time.Now(), NewID: func() string { t.Fatal("generator left out a messageId"); return "" }}
	for i := 0; i < 20; i++ {
		req, err := collect.Decode(g.batch(nil, 100, time.Now()), collect.Batch, opt)
		if err != nil {
			t.Fatalf("batch %d does not decode: %v", i, err)
		}
		if len(req.Messages) != 100 {
			t.Fatalf("batch of %d messages, want 100", len(req.Messages))
		}
		for _, m := range req.Messages {
			if seen[m.MessageID] {
				t.Fatalf("messageId %s repeated", m.MessageID)
			}
			seen[m.MessageID] = true
		}
		one, err := collect.Decode(g.track(nil, time.Now()), collect.Route{Type: 1}, opt)
		if err != nil || len(one.Messages) != 1 || one.Messages[0].Event == "" {
			t.Fatalf("track body: %v", err)
		}
	}
}

func TestRunRefusesBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{Shape: "stream", Concurrency: 1, BatchSize: 1, Duration: time.Second, Users: 1, WriteKey: "k"},
		{Shape: "batch", Concurrency: 0, BatchSize: 1, Duration: time.Second, Users: 1, WriteKey: "k"},
		{Shape: "batch", Concurrency: 1, BatchSize: 2501, Duration: time.Second, Users: 1, WriteKey: "k"},
		{Shape: "batch", Concurrency: 1, BatchSize: 1, Duration: time.Second, Users: 1},
	} {
		if _, err := Run(context.Background(), cfg); err == nil {
			t.Errorf("Run(%+v) accepted", cfg)
		}
	}
	_, err := Run(context.Background(), Config{URL: "http://127.0.0.1:1", Shape: "track", Concurrency: 1, BatchSize: 1,
		Duration: time.Second, Users: 1, WriteKey: "k"})
	if err == nil || !strings.Contains(err.Error(), "cannot reach") {
		t.Errorf("unreachable server: %v", err)
	}
}
