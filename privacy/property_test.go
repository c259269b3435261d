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

// genStream makes a random history for n customers who share no identifier:
// anonymous browsing on several devices, logins, identifies with changing
// traits, views and orders, in a random interleaving, with fixed timestamps so
// both stores see the same times.
func genStream(r *rand.Rand, seed uint64, n int) []streamEvent {
	base := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	var out []streamEvent
	for i := 0; i < 20+r.IntN(40); i++ {
		who := r.IntN(n)
		id := fmt.Sprintf("s%d-c%d", seed, who)
		ts := base.Add(time.Duration(i) * time.Minute).Format(time.RFC3339)
		anon := fmt.Sprintf("anon-%s-%d", id, r.IntN(3))
		mid := fmt.Sprintf("m-%d-%d", seed, i)
		var m string
		switch r.IntN(5) {
		case 0:
			m = fmt.Sprintf(`{"type":"page","messageId":%q,"anonymousId":%q,"name":"Home","timestamp":%q}`, mid, anon, ts)
		case 1:
			m = fmt.Sprintf(`{"type":"identify","messageId":%q,"anonymousId":%q,"userId":"user-%s","timestamp":%q,`+
				`"traits":{"email":"mail-%s@example.org","tier":"t%d"}}`, mid, anon, id, ts, id, r.IntN(3))
		case 2:
			m = fmt.Sprintf(`{"type":"track","messageId":%q,"anonymousId":%q,"event":"Product Viewed","timestamp":%q,`+
				`"properties":{"product_id":"p%d","category":"c%d"}}`, mid, anon, ts, r.IntN(5), r.IntN(3))
		case 3:
			m = fmt.Sprintf(`{"type":"track","messageId":%q,"userId":"user-%s","event":"Order Completed","timestamp":%q,`+
				`"properties":{"revenue":%d}}`, mid, id, ts, 1+r.IntN(100))
		default:
			m = fmt.Sprintf(`{"type":"track","messageId":%q,"anonymousId":%q,"userId":"user-%s","event":"Product Viewed",`+
				`"timestamp":%q,"properties":{"product_id":"p%d"}}`, mid, anon, id, ts, r.IntN(5))
		}
		out = append(out, streamEvent{who: who, json: m})
	}
	return out
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

// view is what a customer looks like, without store-made ids: identities,
// traits, computed traits, audiences and the timeline's messages.
type view struct {
	Identities []string
	Traits     map[string]any
	Computed   map[string]any
	Audiences  []string
	Timeline   []string
}

func (h *harness) view(seed uint64, who int) *view {
	h.t.Helper()
	id := fmt.Sprintf("s%d-c%d", seed, who)
	var p any
	for _, try := range []struct{ typ, value string }{{"user_id", "user-" + id}, {"anonymous_id", "anon-" + id + "-0"},
		{"anonymous_id", "anon-" + id + "-1"}, {"anonymous_id", "anon-" + id + "-2"}} {
		if got, err := h.lookup(try.typ, try.value); err == nil {
			p = got
			v := &view{Traits: got.Traits, Computed: got.Computed}
			for _, i := range got.Identities {
				v.Identities = append(v.Identities, i.Type+":"+i.Value)
			}
			slices.Sort(v.Identities)
			for _, a := range got.Audiences {
				v.Audiences = append(v.Audiences, a.Name)
			}
			slices.Sort(v.Audiences)
			for cursor := ""; ; {
				evs, next, err := h.profiles.Events(bg, h.ws, got.ID(), cursor, 100, nil)
				if err != nil {
					h.t.Fatal(err)
				}
				for _, e := range evs {
					v.Timeline = append(v.Timeline, string(e.Message))
				}
				if next == "" {
					break
				}
				cursor = next
			}
			slices.Sort(v.Timeline)
			return v
		}
	}
	_ = p
	return nil
}

func TestErasureAsIfNeverExisted(t *testing.T) {
	seeds := 12
	if testing.Short() {
		seeds = 4
	}
	if n, err := strconv.Atoi(os.Getenv("TRUSTLOOP_PROPERTY_SEEDS")); err == nil && n > 0 {
		seeds = n // a longer search: TRUSTLOOP_PROPERTY_SEEDS=500
	}
	compared := 0
	defer func() {
		if compared == 0 && !t.Failed() {
			t.Error("no customer was compared: the property was not tested")
		}
	}()
	for seed := uint64(1); seed <= uint64(seeds); seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 7))
			n := 2 + r.IntN(3)
			stream := genStream(r, seed, n)
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

			// Erase the victim by whichever identifier they were seen with.
			vid := fmt.Sprintf("s%d-c%d", seed, victim)
			erased := false
			for _, ident := range []string{"user_id:user-" + vid, "anonymous_id:anon-" + vid + "-0", "anonymous_id:anon-" + vid + "-1",
				"anonymous_id:anon-" + vid + "-2"} {
				typ, value, _ := strings.Cut(ident, ":")
				if _, err := with.lookup(typ, value); err != nil {
					continue
				}
				req := with.run(privacy.NewRequest{Type: trustloop.RequestErasure, Identifier: ident})
				if res := result(t, req); res["found"] != true {
					t.Fatalf("erasure of %s found nothing: %v", ident, res)
				}
				erased = true
			}
			if !erased && slices.ContainsFunc(stream, func(e streamEvent) bool { return e.who == victim }) {
				t.Fatal("the victim had events but no profile")
			}

			for who := 0; who < n; who++ {
				if who == victim {
					if v := with.view(seed, who); v != nil {
						t.Fatalf("the erased customer is still there: %+v", v)
					}
					continue
				}
				a, b := with.view(seed, who), without.view(seed, who)
				if a != nil {
					compared++
				}
				if !reflect.DeepEqual(a, b) {
					ja, _ := json.Marshal(a)
					jb, _ := json.Marshal(b)
					t.Fatalf("customer %d differs after erasing %d:\nerased:        %s\nnever existed: %s", who, victim, ja, jb)
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
