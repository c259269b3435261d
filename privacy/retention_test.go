package privacy_test

import (
	"slices"
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

// An event collected for purposes none of which may use it any more (the
// catalog changed since) is kept by nothing: the next sweep that reaches it
// deletes it, while the contract's identify stays.
func TestRetentionOfEventsNoPurposeMayUse(t *testing.T) {
	h := newHarness(t)
	h.ingest("",
		`{"type":"identify","messageId":"n1","userId":"np-user","traits":{"email":"np@example.org"}}`,
		`{"type":"page","messageId":"n2","userId":"np-user","name":"Home"}`)
	stored := h.events()
	cur, err := h.consent.Catalog(bg, h.ws)
	if err != nil {
		t.Fatal(err)
	}
	c := *cur.Catalog
	c.Purposes = slices.Clone(c.Purposes)
	for i := range c.Purposes {
		p := &c.Purposes[i]
		p.Categories = slices.DeleteFunc(slices.Clone(p.Categories), func(s string) bool { return s == trustloop.CategoryBehavior })
		if p.RetentionDays > 0 {
			p.RetentionDays = 30
		}
	}
	if _, err := h.consent.PutCatalog(bg, h.ws, &c, cur.Catalog.Version); err != nil {
		t.Fatal(err)
	}
	// 40 days on: past the shortest retention, far from what the purposes
	// would have kept a page view for before the change (395 days).
	h.skew.Store(int64(40 * 24 * time.Hour))
	res, err := h.svc.Retention(bg, h.ws)
	if err != nil {
		t.Fatal(err)
	}
	if res.EventsDeleted != 1 || h.events() != stored-1 {
		t.Fatalf("sweep: %+v, %d of %d events left; want the page view deleted", res, h.events(), stored)
	}
	evs, err := h.db.ListEvents(bg, h.ws, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.Type == trustloop.EventPage {
			t.Error("a page view no purpose may use outlived the sweep")
		}
	}
}
