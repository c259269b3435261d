package sqlite_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/storetest"
)

// BenchmarkAppendEvents measures durable group commits (synchronous=FULL, on disk)
// of groups of 1, 100 and 1000 events with ~900-byte payloads. One op is one group.
func BenchmarkAppendEvents(b *testing.B) {
	const payloadSize = 900
	for _, group := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("group=%d", group), func(b *testing.B) {
			ctx := context.Background()
			db := MustOpen(b)
			defer db.Close()
			boot := storetest.MustBootstrap(b, db)
			payload := make([]byte, payloadSize)
			rand.Read(payload)
			now := time.Now().UTC()
			var seq uint64
			batch := &trustloop.CommitBatch{Events: make([]trustloop.StoredEvent, group)}
			b.SetBytes(int64(group * payloadSize))
			b.ReportAllocs()
			for b.Loop() {
				for i := range batch.Events {
					seq++
					var c [8]byte
					binary.BigEndian.PutUint64(c[:], seq)
					h := sha256.Sum256(c[:]) // message hashes are keyed digests
					batch.Events[i] = trustloop.StoredEvent{WorkspaceID: boot.Workspace.ID, SourceID: boot.Source.ID,
						MessageHash: h[:16], KeyID: 1, Type: trustloop.EventTrack, ReceivedAt: now, Timestamp: now,
						Payload: payload}
				}
				n, err := db.AppendEvents(ctx, batch)
				if err != nil {
					b.Fatal(err)
				}
				if n != group {
					b.Fatalf("stored %d of %d", n, group)
				}
			}
			b.ReportMetric(float64(b.N*group)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
