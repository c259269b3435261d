package storetest

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
)

func consentRec(ws int64, subject []byte, purpose, state string) trustloop.ConsentRecord {
	return trustloop.ConsentRecord{WorkspaceID: ws, Subject: subject, Purpose: purpose, State: state,
		At: time.UnixMilli(1_700_000_000_000).UTC(), ExpiresAt: time.UnixMilli(1_800_000_000_000).UTC(),
		Method: trustloop.MethodAPI, NoticeVersion: "v3", Jurisdiction: "DE", SourceID: 7, Evidence: "api_key:1", ReceiptID: "rcpt_x"}
}

// testConsent checks the chain: numbering per subject, hashes linking each record
// to the one before, receipts stored exactly with their records, isolation by
// subject and workspace.
func testConsent(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	b := MustBootstrap(t, s)
	ws := b.Workspace.ID
	alice, bob := random(32), random(32)

	signed := 0
	sign := func(recs []trustloop.ConsentRecord) (*trustloop.ConsentReceipt, error) {
		signed++
		for _, r := range recs {
			if r.Seq == 0 || len(r.Hash) != 32 {
				t.Fatalf("sign saw an incomplete record: seq %d hash %x", r.Seq, r.Hash)
			}
		}
		return &trustloop.ConsentReceipt{ID: "rcpt_1", WorkspaceID: ws, Subject: alice, At: recs[0].At, Body: []byte("jws")}, nil
	}
	first := []trustloop.ConsentRecord{consentRec(ws, alice, "analytics", trustloop.ConsentGiven),
		consentRec(ws, alice, "marketing", trustloop.ConsentRefused), consentRec(ws, bob, "analytics", trustloop.ConsentGiven)}
	if err := s.AppendConsent(ctx, first, sign); err != nil {
		t.Fatal(err)
	}
	if signed != 1 {
		t.Fatalf("sign called %d times", signed)
	}
	if first[0].Seq != 1 || first[1].Seq != 2 || first[2].Seq != 1 {
		t.Fatalf("seqs %d %d %d, want 1 2 1 (per subject)", first[0].Seq, first[1].Seq, first[2].Seq)
	}
	if err := s.AppendConsent(ctx, []trustloop.ConsentRecord{consentRec(ws, alice, "analytics", trustloop.ConsentWithdrawn)}, nil); err != nil {
		t.Fatal(err)
	}
	got, err := s.ConsentRecords(ctx, ws, alice)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("alice has %d records, want 3", len(got))
	}
	prev := []byte{}
	for i, r := range got {
		if r.Seq != int64(i+1) || !bytes.Equal(r.PrevHash, prev) {
			t.Fatalf("record %d: seq %d prev %x, want %d %x", i, r.Seq, r.PrevHash, i+1, prev)
		}
		if want := trustloop.ConsentRecordHash(prev, &r); !bytes.Equal(r.Hash, want) {
			t.Fatalf("record %d: stored hash %x, recomputed %x", i, r.Hash, want)
		}
		prev = r.Hash
	}
	w := first[0]
	if g := got[0]; g.Purpose != w.Purpose || g.State != w.State || !g.At.Equal(w.At) || !g.ExpiresAt.Equal(w.ExpiresAt) ||
		g.Method != w.Method || g.NoticeVersion != w.NoticeVersion || g.Jurisdiction != w.Jurisdiction ||
		g.SourceID != w.SourceID || g.Evidence != w.Evidence || g.ReceiptID != w.ReceiptID {
		t.Fatalf("record read back as %+v, written %+v", g, w)
	}
	if got[2].State != trustloop.ConsentWithdrawn {
		t.Fatalf("third record %+v", got[2])
	}
	if bobs, _ := s.ConsentRecords(ctx, ws, bob); len(bobs) != 1 {
		t.Fatalf("bob has %d records, want 1", len(bobs))
	}
	if others, _ := s.ConsentRecords(ctx, other(b), alice); len(others) != 0 {
		t.Fatalf("another workspace sees %d of alice's records", len(others))
	}

	rc, err := s.FindConsentReceipt(ctx, ws, "rcpt_1")
	if err != nil || string(rc.Body) != "jws" || !bytes.Equal(rc.Subject, alice) {
		t.Fatalf("FindConsentReceipt = %+v, %v", rc, err)
	}
	if _, err := s.FindConsentReceipt(ctx, other(b), "rcpt_1"); trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
		t.Fatalf("receipt of another workspace: %v, want not_found", err)
	}

	// A failing signer writes nothing: no receipt means no records.
	boom := errors.New("signer down")
	err = s.AppendConsent(ctx, []trustloop.ConsentRecord{consentRec(ws, bob, "sharing", trustloop.ConsentGiven)},
		func([]trustloop.ConsentRecord) (*trustloop.ConsentReceipt, error) { return nil, boom })
	if !errors.Is(err, boom) {
		t.Fatalf("AppendConsent with a failing signer = %v", err)
	}
	if bobs, _ := s.ConsentRecords(ctx, ws, bob); len(bobs) != 1 {
		t.Fatalf("a failed append left %d records", len(bobs))
	}

	for _, c := range []struct {
		ws      int64
		purpose string
		want    bool
	}{{ws, "analytics", true}, {ws, "sharing", false}, {other(b), "analytics", false}} {
		used, err := s.ConsentPurposeUsed(ctx, c.ws, c.purpose)
		if err != nil || used != c.want {
			t.Fatalf("ConsentPurposeUsed(%d, %s) = %v, %v; want %v", c.ws, c.purpose, used, err, c.want)
		}
	}
	st, err := s.Stats(ctx)
	if err != nil || st.ConsentRecords != 4 {
		t.Fatalf("Stats consent_records = %d, %v; want 4", st.ConsentRecords, err)
	}
}
