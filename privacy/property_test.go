package privacy_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/privacy"
)

// The erasure property (issue 5): for random event streams over several
// customers, erasing one leaves every other customer's data, profile and
// audiences exactly as if the erased one had never existed — compared with a
// store built from the same stream without them.

// streamEvent is one generated message and whose it is.
type streamEvent struct {
	who  int
	json string
}

// blockedValues are anonymous ids the identity rules block (identity
// DefaultConfig): several customers may send the same one, so they share
// nothing through it but the value.
var blockedValues = []string{"anonymous", "null"}

// customer is one generated customer's identifiers: a user id, an email and
// one to three devices, each an anonymous id and a device id; blocked is the
// blocked anonymous id their broken client sends ("" when it is not broken).
type customer struct {
	id, user, email string
	anons, devices  []string
	blocked         string
}

func newCustomer(r *rand.Rand, seed uint64, who int) customer {
	id := fmt.Sprintf("s%d-c%d", seed, who)
	c := customer{id: id, user: "user-" + id, email: "mail-" + id + "@example.org"}
	for d := range 1 + r.IntN(3) {
		c.anons = append(c.anons, fmt.Sprintf("anon-%s-%d", id, d))
		c.devices = append(c.devices, fmt.Sprintf("dev-%s-%d", id, d))
	}
	if r.IntN(2) == 0 {
		c.blocked = blockedValues[r.IntN(len(blockedValues))]
	}
	return c
}

// identifiers are what a customer may be looked up (and erased) by.
func (c customer) identifiers() []trustloop.Identifier {
	out := []trustloop.Identifier{{Type: trustloop.IDUserID, Value: c.user}, {Type: trustloop.IDEmail, Value: c.email}}
	for i, a := range c.anons {
		out = append(out, trustloop.Identifier{Type: trustloop.IDAnonymousID, Value: a},
			trustloop.Identifier{Type: trustloop.IDDeviceID, Value: c.devices[i]})
	}
	return out
}

// genStream makes a random history for n customers: anonymous browsing on
// several devices (each an anonymous id and a device id), logins (an identify
// with the user id joins the device's anonymous id), a second device joined
// by the email in context.traits, orders, consent changes (Segment Consent
// Preference Updated), and for some customers events under a blocked
// anonymous id ("anonymous", "null": shared by whoever sends it), with the
// user id or with the email; in a random interleaving, with fixed timestamps
// so both stores see the same times. The customers share no identifier: a
// blocked value is no identifier.
func genStream(r *rand.Rand, seed uint64, n int) ([]customer, []streamEvent) {
	base := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	cs := make([]customer, n)
	for who := range cs {
		cs[who] = newCustomer(r, seed, who)
	}
	var out []streamEvent
	for i := 0; i < 30+r.IntN(50); i++ {
		who := r.IntN(n)
		c := cs[who]
		ts := base.Add(time.Duration(i) * time.Minute).Format(time.RFC3339)
		d := r.IntN(len(c.anons))
		anon, dev := c.anons[d], c.devices[d]
		device := fmt.Sprintf(`"context":{"device":{"id":%q}}`, dev)
		mid := fmt.Sprintf("m-%d-%d", seed, i)
		kinds := 7
		if c.blocked != "" {
			kinds = 10
		}
		var m string
		switch r.IntN(kinds) {
		case 0:
			m = fmt.Sprintf(`{"type":"page","messageId":%q,"anonymousId":%q,"name":"Home","timestamp":%q,%s}`, mid, anon, ts, device)
		case 1: // a login on this device
			m = fmt.Sprintf(`{"type":"identify","messageId":%q,"anonymousId":%q,"userId":%q,"timestamp":%q,`+
				`"traits":{"email":%q,"tier":"t%d"},%s}`, mid, anon, c.user, ts, c.email, r.IntN(3), device)
		case 2:
			m = fmt.Sprintf(`{"type":"track","messageId":%q,"anonymousId":%q,"event":"Product Viewed","timestamp":%q,`+
				`"properties":{"product_id":"p%d","category":"c%d"},%s}`, mid, anon, ts, r.IntN(5), r.IntN(3), device)
		case 3: // a device joined by the email
			m = fmt.Sprintf(`{"type":"track","messageId":%q,"anonymousId":%q,"event":"Product Viewed","timestamp":%q,`+
				`"properties":{"product_id":"p%d"},"context":{"traits":{"email":%q},"device":{"id":%q}}}`, mid, anon, ts, r.IntN(5), c.email, dev)
		case 4:
			m = fmt.Sprintf(`{"type":"track","messageId":%q,"userId":%q,"event":"Order Completed","timestamp":%q,`+
				`"properties":{"revenue":%d}}`, mid, c.user, ts, 1+r.IntN(100))
		case 5: // a consent change, logged in on a device
			m = fmt.Sprintf(`{"type":"track","messageId":%q,"anonymousId":%q,"userId":%q,"event":"Segment Consent Preference Updated",`+
				`"timestamp":%q,"context":{"consent":{"categoryPreferences":{"Advertising":%v,"Analytics":%v,"Functional":%v}}}}`,
				mid, anon, c.user, ts, r.IntN(2) == 0, r.IntN(3) > 0, r.IntN(2) == 0)
		case 6:
			m = fmt.Sprintf(`{"type":"track","messageId":%q,"anonymousId":%q,"userId":%q,"event":"Product Viewed",`+
				`"timestamp":%q,"properties":{"product_id":"p%d"}}`, mid, anon, c.user, ts, r.IntN(5))
		case 7: // the broken client, logged in
			m = fmt.Sprintf(`{"type":"track","messageId":%q,"anonymousId":%q,"userId":%q,"event":"Product Viewed",`+
				`"timestamp":%q,"properties":{"product_id":"p%d"}}`, mid, c.blocked, c.user, ts, r.IntN(5))
		case 9: // the broken client's consent change: recorded under the user id
			// alone (a blocked value names no one, so no consent is kept under it)
			m = fmt.Sprintf(`{"type":"track","messageId":%q,"anonymousId":%q,"userId":%q,"event":"Segment Consent Preference Updated",`+
				`"timestamp":%q,"context":{"consent":{"categoryPreferences":{"Advertising":%v,"Analytics":%v,"Functional":%v}}}}`,
				mid, c.blocked, c.user, ts, r.IntN(2) == 0, r.IntN(3) > 0, r.IntN(2) == 0)
		default: // the broken client, known by the email only
			m = fmt.Sprintf(`{"type":"track","messageId":%q,"anonymousId":%q,"event":"Product Viewed","timestamp":%q,`+
				`"properties":{"product_id":"p%d"},"context":{"traits":{"email":%q}}}`, mid, c.blocked, ts, r.IntN(5), c.email)
		}
		out = append(out, streamEvent{who: who, json: m})
	}
	return cs, out
}

// feed ingests the stream (leaving out one customer's events when skip >= 0)
// in batches of random sizes.
func feed(h *harness, r *rand.Rand, stream []streamEvent, skip int) {
	var batch []string
	for _, e := range stream {
		if e.who == skip {
			continue
		}
		batch = append(batch, e.json)
		if r.IntN(3) == 0 {
			h.ingest("", batch...)
			batch = nil
		}
	}
	if len(batch) > 0 {
		h.ingest("", batch...)
	}
}

// profileView is one profile as a customer sees it, without store-made ids:
// identities, traits, computed traits, audiences and the timeline's messages.
type profileView struct {
	Identities []string
	Traits     map[string]any
	Computed   map[string]any
	Audiences  []string
	Timeline   []string
}

// consentView is one consent record without what differs between two stores
// by construction: times (the records' are the wall clock's), hashes and
// evidence (keyed by each workspace's own key) and receipt ids (random).
type consentView struct {
	Subject                                             string
	Seq                                                 int64
	Purpose, State, Method, NoticeVersion, Jurisdiction string
	SourceID                                            int64
	Expires, Receipt                                    bool
}

// view is what a customer looks like: every profile any of their
// identifiers leads to, and the consent records under their user and
// anonymous ids.
type view struct {
	Profiles []profileView
	Consent  []consentView
}

func (h *harness) view(c customer) *view {
	h.t.Helper()
	v := &view{}
	seen := map[string]bool{}
	for _, ident := range c.identifiers() {
		got, err := h.lookup(ident.Type, ident.Value)
		if trustloop.ErrorCode(err) == trustloop.ENOTFOUND {
			continue
		} else if err != nil {
			h.t.Fatal(err)
		}
		if seen[got.ProfileID] {
			continue
		}
		seen[got.ProfileID] = true
		p := profileView{Traits: got.Traits, Computed: got.Computed}
		for _, i := range got.Identities {
			p.Identities = append(p.Identities, i.Type+":"+i.Value)
		}
		slices.Sort(p.Identities)
		for _, a := range got.Audiences {
			p.Audiences = append(p.Audiences, a.Name)
		}
		slices.Sort(p.Audiences)
		for cursor := ""; ; {
			evs, next, err := h.profiles.Events(bg, h.ws, got.ID(), cursor, 100, nil)
			if err != nil {
				h.t.Fatal(err)
			}
			for _, e := range evs {
				p.Timeline = append(p.Timeline, string(e.Message))
			}
			if next == "" {
				break
			}
			cursor = next
		}
		slices.Sort(p.Timeline)
		v.Profiles = append(v.Profiles, p)
	}
	slices.SortFunc(v.Profiles, func(a, b profileView) int { return slices.Compare(a.Identities, b.Identities) })
	for _, ident := range c.identifiers() {
		if ident.Type != trustloop.IDUserID && ident.Type != trustloop.IDAnonymousID {
			continue
		}
		recs, err := h.db.ConsentRecords(bg, h.ws, h.blind(ident.Type, ident.Value))
		if err != nil {
			h.t.Fatal(err)
		}
		for _, r := range recs {
			v.Consent = append(v.Consent, consentView{Subject: ident.Type + ":" + ident.Value, Seq: r.Seq, Purpose: r.Purpose,
				State: r.State, Method: r.Method, NoticeVersion: r.NoticeVersion, Jurisdiction: r.Jurisdiction, SourceID: r.SourceID,
				Expires: !r.ExpiresAt.IsZero(), Receipt: r.ReceiptID != ""})
		}
	}
	if len(v.Profiles) == 0 && len(v.Consent) == 0 {
		return nil
	}
	return v
}

func TestErasureAsIfNeverExisted(t *testing.T) {
	seeds := 16
	if testing.Short() {
		seeds = 4
	}
	if n, err := strconv.Atoi(os.Getenv("TRUSTLOOP_PROPERTY_SEEDS")); err == nil && n > 0 {
		seeds = n // a longer search: TRUSTLOOP_PROPERTY_SEEDS=500
	}
	// What the compared customers' histories covered, so that a generator
	// that stops making them fails here rather than passing vacuously.
	var compared, merged, blocked, shared, consented atomic.Int64
	defer func() {
		if t.Failed() {
			return
		}
		t.Logf("compared %d customers: %d with merged devices, %d with events under a blocked anonymous id "+
			"(%d the erased customer's too), %d with consent records",
			compared.Load(), merged.Load(), blocked.Load(), shared.Load(), consented.Load())
		if compared.Load() == 0 || merged.Load() == 0 || blocked.Load() == 0 || shared.Load() == 0 || consented.Load() == 0 {
			t.Error("the generated histories did not cover merges, blocked ids (shared with the erased customer) and consent")
		}
	}()
	for seed := uint64(1); seed <= uint64(seeds); seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 7))
			n := 2 + r.IntN(3)
			cs, stream := genStream(r, seed, n)
			victim := r.IntN(n)
			order := r.Uint64()

			with, without := newHarness(t), newHarness(t)
			for _, h := range []*harness{with, without} {
				a := &trustloop.Audience{WorkspaceID: h.ws, Name: "Buyers", Rule: `computed.order_count >= 1`}
				if err := h.profiles.SaveAudience(bg, a); err != nil {
					t.Fatal(err)
				}
			}
			feed(with, rand.New(rand.NewPCG(order, 1)), stream, -1)
			feed(without, rand.New(rand.NewPCG(order, 1)), stream, victim)

			// Erase the victim by every identifier still found (devices never
			// joined are profiles of their own).
			erased := false
			for _, ident := range cs[victim].identifiers() {
				if _, err := with.lookup(ident.Type, ident.Value); err != nil {
					continue
				}
				req := with.runWithFollowUps(privacy.NewRequest{Type: trustloop.RequestErasure, Identifier: ident.Type + ":" + ident.Value})
				if res := result(t, req); res["found"] != true {
					t.Fatalf("erasure of %s found nothing: %v", ident.Type, res)
				}
				erased = true
			}
			if !erased && slices.ContainsFunc(stream, func(e streamEvent) bool { return e.who == victim }) {
				t.Fatal("the victim had events but no profile")
			}

			for who, c := range cs {
				if who == victim {
					if v := with.view(c); v != nil {
						t.Fatalf("the erased customer is still there: %+v", v)
					}
					continue
				}
				a, b := with.view(c), without.view(c)
				if !reflect.DeepEqual(a, b) {
					t.Fatalf("customer %d differs after erasing %d:\n%s", who, victim, diffViews(a, b))
				}
				if a == nil {
					continue
				}
				compared.Add(1)
				if slices.ContainsFunc(a.Profiles, func(p profileView) bool {
					return len(slices.DeleteFunc(slices.Clone(p.Identities), func(s string) bool { return !strings.HasPrefix(s, "anonymous_id:") })) > 1
				}) {
					merged.Add(1)
				}
				if c.blocked != "" && slices.ContainsFunc(a.Profiles, func(p profileView) bool {
					return slices.ContainsFunc(p.Timeline, func(m string) bool { return strings.Contains(m, `"anonymousId":"`+c.blocked+`"`) })
				}) {
					blocked.Add(1)
					if c.blocked == cs[victim].blocked && slices.ContainsFunc(stream, func(e streamEvent) bool {
						return e.who == victim && strings.Contains(e.json, `"anonymousId":"`+c.blocked+`"`)
					}) {
						shared.Add(1)
					}
				}
				if len(a.Consent) > 0 {
					consented.Add(1)
				}
			}
			sa, err := with.db.Stats(bg)
			if err != nil {
				t.Fatal(err)
			}
			sb, err := without.db.Stats(bg)
			if err != nil {
				t.Fatal(err)
			}
			if sa.Events != sb.Events || sa.Profiles != sb.Profiles || sa.Identities != sb.Identities || sa.SubjectKeys != sb.SubjectKeys {
				t.Fatalf("stores differ: erased %+v, never existed %+v", sa, sb)
			}
		})
	}
}

// diffViews says where two views differ: the parts that do, as JSON.
func diffViews(erased, never *view) string {
	var b strings.Builder
	line := func(what string, x, y any) {
		jx, _ := json.Marshal(x)
		jy, _ := json.Marshal(y)
		fmt.Fprintf(&b, "%s:\n  erased:        %s\n  never existed: %s\n", what, jx, jy)
	}
	if erased == nil || never == nil {
		line("view", erased, never)
		return b.String()
	}
	if len(erased.Profiles) != len(never.Profiles) {
		line("profiles", erased.Profiles, never.Profiles)
	} else {
		for i := range erased.Profiles {
			x, y := erased.Profiles[i], never.Profiles[i]
			for _, f := range []struct {
				name string
				x, y any
			}{{"identities", x.Identities, y.Identities}, {"traits", x.Traits, y.Traits}, {"computed", x.Computed, y.Computed},
				{"audiences", x.Audiences, y.Audiences}} {
				if !reflect.DeepEqual(f.x, f.y) {
					line(fmt.Sprintf("profile %d %s", i, f.name), f.x, f.y)
				}
			}
			if !reflect.DeepEqual(x.Timeline, y.Timeline) {
				line(fmt.Sprintf("profile %d timeline, only after the erasure / only without the customer", i),
					slices.DeleteFunc(slices.Clone(x.Timeline), func(m string) bool { return slices.Contains(y.Timeline, m) }),
					slices.DeleteFunc(slices.Clone(y.Timeline), func(m string) bool { return slices.Contains(x.Timeline, m) }))
			}
		}
	}
	if !reflect.DeepEqual(erased.Consent, never.Consent) {
		line("consent", erased.Consent, never.Consent)
	}
	return b.String()
}

// runWithFollowUps is run for a request whose completion may leave a
// follow-up job (a WAL truncation that met a reader is retried as a job of
// its own): it works the queue until it is empty.
func (h *harness) runWithFollowUps(in privacy.NewRequest) *trustloop.PrivacyRequest {
	h.t.Helper()
	in.VerifiedBy = "key:1"
	r := h.create(in)
	if n := h.work(); n < 1 {
		h.t.Fatalf("the worker ran %d jobs, want at least 1", n)
	}
	r = h.get(r.ID)
	if r.Status != trustloop.RequestCompleted {
		h.t.Fatalf("request %s is %s (progress %q)", r.ID, r.Status, r.Progress)
	}
	return r
}
