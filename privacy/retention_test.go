package privacy_test

import (
	"testing"
	"time"

	"github.com/trustloop/trustloop"
)

// The retention sweep deletes the events whose purposes' retention has all
// passed, keeps what the contract needs, and marks consent past its expiry.
func TestRetentionSweep(t *testing.T) {
	h := newHarness(t)
	h.ingest("",
		`{"type":"identify","messageId":"r1","userId":"ret-user","traits":{"email":"ret@example.org"}}`,
		`{"type":"page","messageId":"r2","userId":"ret-user","name":"Home"}`,
		`{"type":"track","messageId":"r3","userId":"ret-user","event":"Product Viewed","properties":{"product_id":"p1"}}`,
		`{"type":"track","messageId":"r4","userId":"ret-user","event":"Segment Consent Preference Updated","context":{"consent":{"categoryPreferences":{"Analytics":true}}}}`)
	stored := h.events()
	if stored < 3 {
		t.Fatalf("%d events stored", stored)
	}
	// Nothing is due yet.
	res, err := h.svc.Retention(bg, h.ws)
	if err != nil || res.EventsDeleted != 0 || res.ConsentExpired != 0 {
		t.Fatalf("a sweep now: %+v %v", res, err)
	}
	// 400 days on: past the 395 days of every consent purpose and of the
	// consent given by the banner.
	h.skew.Store(int64(400 * 24 * time.Hour))
	res, err = h.svc.Retention(bg, h.ws)
	if err != nil {
		t.Fatal(err)
	}
	if res.EventsDeleted == 0 || res.ConsentExpired != 1 {
		t.Fatalf("the sweep 400 days on: %+v", res)
	}
	left := h.events()
	if left != stored-res.EventsDeleted || left == 0 {
		t.Fatalf("%d events left of %d after deleting %d", left, stored, res.EventsDeleted)
	}
	// What is left is what the contract uses: the identify's contact data and
	// the consent choice (evidence of consent); the page and the product view
	// (behaviour, no contract use) are gone.
	if res.EventsDeleted != 2 || left != 2 {
		t.Fatalf("deleted %d, left %d; want the page and the view deleted, the identify and the choice kept", res.EventsDeleted, left)
	}
	evs, err := h.db.ListEvents(bg, h.ws, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.Type == trustloop.EventPage {
			t.Error("the page view outlived its retention")
		}
	}
	recs, err := h.db.ConsentRecords(bg, h.ws, h.blind(trustloop.IDUserID, "ret-user"))
	if err != nil || len(recs) < 2 || recs[len(recs)-1].State != trustloop.ConsentExpired || recs[len(recs)-1].Method != trustloop.MethodExpiry {
		t.Fatalf("consent history after the sweep: %+v %v", recs, err)
	}
	// A second sweep finds nothing more to do.
	if res, err := h.svc.Retention(bg, h.ws); err != nil || res.EventsDeleted != 0 || res.ConsentExpired != 0 {
		t.Fatalf("a second sweep: %+v %v", res, err)
	}
}
