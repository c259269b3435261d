package sqlite_test

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/storetest"
)

// BenchmarkFlushProfiles measures the projection's write-behind flush: Behind
// rewrites of stored profile rows (~300-byte states) in id order, 5,000 rows a
// transaction, over a table of 100,000 profiles. "spread": the rows of a
// transaction are one in twenty over the whole table (the due profiles of a
// moment under evenly spread customers); "neighbours": every other row of a
// stretch of the table (a sweep of every dirty profile, see projection/flush.go).
// One op is one transaction.
func BenchmarkFlushProfiles(b *testing.B) {
	const profiles, batch = 100_000, 5000
	for _, c := range []struct {
		name   string
		stride int
	}{{"spread", profiles / batch}, {"neighbours", 2}} {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			db := MustOpen(b)
			defer db.Close()
			boot := storetest.MustBootstrap(b, db)
			now := time.Now().UTC()
			state := func(n int) []byte {
				s := make([]byte, n)
				rand.Read(s)
				return s
			}
			recs := make([]trustloop.ProfileRecord, profiles)
			for i := range recs {
				recs[i] = trustloop.ProfileRecord{ID: int64(i + 1), WorkspaceID: boot.Workspace.ID, KeyID: int64(i + 1),
					State: state(300), AppliedSeq: 1, CreatedAt: now, UpdatedAt: now}
			}
			for i := 0; i < profiles; i += batch {
				if err := db.WriteProjection(ctx, &trustloop.ProjectionChanges{Profiles: recs[i : i+batch]}); err != nil {
					b.Fatal(err)
				}
			}
			seq, off := int64(1), 0
			b.ReportAllocs()
			for b.Loop() {
				seq++
				rows := make([]trustloop.ProfileRecord, 0, batch)
				for i := 0; len(rows) < batch; i++ {
					r := recs[(off+c.stride*i)%profiles]
					r.State, r.AppliedSeq, r.UpdatedAt = state(290+i%20), seq, now
					rows = append(rows, r)
				}
				off = (off + 1 + batch*c.stride) % profiles
				if err := db.WriteProjection(ctx, &trustloop.ProjectionChanges{Profiles: rows, Behind: true, UptoSeq: seq}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
