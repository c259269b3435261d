package privacy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/auditlog"
	"github.com/trustloop/trustloop/collect"
	"github.com/trustloop/trustloop/consent"
	"github.com/trustloop/trustloop/identity"
	"github.com/trustloop/trustloop/ingest"
	"github.com/trustloop/trustloop/keyring"
	"github.com/trustloop/trustloop/privacy"
	"github.com/trustloop/trustloop/profile"
	"github.com/trustloop/trustloop/projection"
	"github.com/trustloop/trustloop/sqlite"
	"github.com/trustloop/trustloop/storetest"
)

// harness is the real thing on a temporary SQLite store: keyring, consent
// (opt-out catalog, so events are admitted without a banner), projection,
// collector pipeline, audit log and the privacy service, whose worker the
// tests drive with RunOnce.
type harness struct {
	t        *testing.T
	db       *sqlite.DB
	keys     *keyring.Keyring
	ws       int64
	src      *trustloop.Source
	consent  *consent.Service
	profiles *projection.Service
	pipeline *ingest.Pipeline
	svc      *privacy.Service
	// skew moves the service's clock (job leases).
	skew *atomic.Int64
	// drops counts the events the collector dropped, by reason.
	drops *drops
}

// drops is an ingest.Observer counting dropped events by reason.
type drops struct {
	mu sync.Mutex
	n  map[string]int
}

func (d *drops) Committed(int, int, int, time.Duration) {}

func (d *drops) Dropped(reason string, n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.n == nil {
		d.n = map[string]int{}
	}
	d.n[reason] += n
}

func (d *drops) count(reason string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n[reason]
}

// with returns the harness reporting to t (a subtest).
func (h *harness) with(t *testing.T) *harness {
	c := *h
	c.t = t
	return &c
}

var bg = context.Background()

func newHarness(t *testing.T) *harness { return newHarnessWith(t, true) }

// newHarnessWith builds a harness, with or without profiles (serve
// --profiles): without, a subject is one user or anonymous id and its key.
func newHarnessWith(t *testing.T, withProfiles bool) *harness {
	t.Helper()
	db, err := sqlite.Open(bg, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	keys := keyring.New(keyring.NewKey(), 1000)
	keys.Load = db.FindWorkspace
	b := storetest.Bootstrap("default")
	b.Workspace.IndexKey = keys.NewIndexKey()
	if created, err := db.Bootstrap(bg, b); err != nil || !created {
		t.Fatalf("bootstrap: %v %v", created, err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cs := consent.New(db, keys, log, 10_000)
	c := consent.DefaultCatalog()
	c.Regime = consent.RegimeOptOut
	if _, err := cs.PutCatalog(bg, b.Workspace.ID, c, 0); err != nil {
		t.Fatal(err)
	}
	rules, err := identity.Compile(identity.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	profiles := projection.New(db, keys, rules, profile.Config{})
	admit := func(ctx context.Context, src *trustloop.Source, m *trustloop.Message, hash, user, anon []byte) ([]string, error) {
		a, err := cs.Admit(ctx, src, m, hash, user, anon)
		return a.Purposes, err
	}
	cfg := ingest.Config{Projection: profiles, Placeholders: profiles.Placeholders}
	if !withProfiles {
		profiles, cfg.Projection = nil, nil
		cfg.Placeholders = func(_ int64, user, anon string) (bool, bool) {
			return rules.Placeholder(user), rules.Placeholder(anon)
		}
	}
	dropped := &drops{}
	p := ingest.New(db, keys, dropped, log, admit, cfg)
	al := auditlog.New(db, keys, auditlog.Config{Logger: log})
	cs.OnChange = func(ctx context.Context, recs []trustloop.ConsentRecord) {
		if err := al.Append(ctx, consent.AuditEntries(recs)...); err != nil {
			t.Errorf("audit: %v", err)
		}
	}
	h := &harness{t: t, db: db, keys: keys, ws: b.Workspace.ID, src: &b.Source, consent: cs, profiles: profiles, pipeline: p,
		skew: new(atomic.Int64), drops: dropped}
	h.svc = &privacy.Service{Store: db, Keys: keys, Consent: cs, Profiles: profiles, Audit: al, Ingest: p,
		Log: log, Worker: "test", Now: func() time.Time { return time.Now().Add(time.Duration(h.skew.Load())) }}
	t.Cleanup(func() {
		p.Close()
		al.Close()
		if err := db.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return h
}

// decode turns a batch body into messages as the collector would.
func decode(t testing.TB, body string) []trustloop.Message {
	t.Helper()
	req, err := collect.Decode([]byte(body), collect.Batch, collect.Options{ReceivedAt: time.Now().UTC().Truncate(time.Millisecond),
		NewID: func() string { return trustloop.NewRequestID() }})
	if err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return req.Messages
}

// ingest sends messages (JSON objects) as one batch, with an optional
// batch-level context.
func (h *harness) ingest(batchContext string, msgs ...string) {
	h.t.Helper()
	body := `{"batch":[` + strings.Join(msgs, ",") + `]`
	if batchContext != "" {
		body += `,"context":` + batchContext
	}
	if err := h.pipeline.Ingest(bg, h.src, decode(h.t, body+"}")); err != nil {
		h.t.Fatalf("ingest: %v", err)
	}
}

func (h *harness) events() int64 {
	h.t.Helper()
	st, err := h.db.Stats(bg)
	if err != nil {
		h.t.Fatal(err)
	}
	return st.Events
}

// create files a request and fails the test on an error.
func (h *harness) create(in privacy.NewRequest) *trustloop.PrivacyRequest {
	h.t.Helper()
	r, _, err := h.svc.Create(bg, h.ws, in)
	if err != nil {
		h.t.Fatalf("Create %+v: %v", in, err)
	}
	return r
}

func (h *harness) get(id string) *trustloop.PrivacyRequest {
	h.t.Helper()
	r, err := h.svc.Get(bg, h.ws, id)
	if err != nil {
		h.t.Fatal(err)
	}
	return r
}

// work runs the worker until it finds nothing, and returns how many jobs it ran.
func (h *harness) work() int {
	h.t.Helper()
	n := 0
	for {
		did, err := h.svc.RunOnce(bg)
		if err != nil {
			h.t.Fatalf("RunOnce: %v", err)
		}
		if !did {
			return n
		}
		n++
	}
}

// run files a verified request, works it and returns it completed.
func (h *harness) run(in privacy.NewRequest) *trustloop.PrivacyRequest {
	h.t.Helper()
	in.VerifiedBy = "key:1"
	r := h.create(in)
	if n := h.work(); n != 1 {
		h.t.Fatalf("the worker ran %d jobs, want 1", n)
	}
	r = h.get(r.ID)
	if r.Status != trustloop.RequestCompleted {
		h.t.Fatalf("request %s is %s (progress %q)", r.ID, r.Status, r.Progress)
	}
	return r
}

func (h *harness) blind(typ, value string) []byte {
	h.t.Helper()
	b, err := h.keys.Blind(h.ws, typ, value)
	if err != nil {
		h.t.Fatal(err)
	}
	return b
}

func (h *harness) lookup(typ, value string) (*projection.Profile, error) {
	return h.profiles.Lookup(bg, h.ws, trustloop.Identifier{Type: typ, Value: trustloop.NormalizeIdentifier(typ, value)})
}

// result decodes a request's result.
func result(t testing.TB, r *trustloop.PrivacyRequest) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Result, &m); err != nil {
		t.Fatalf("result %s: %v", r.Result, err)
	}
	return m
}

// person is one customer's unique values.
type person struct {
	user, anon, anon2, email, name, phone, device, sku, sku2, note, batch, html string
}

var runs atomic.Int64

func newPerson(tag, name string) person {
	run := fmt.Sprintf("%s%d%d", tag, time.Now().UnixNano()%1_000_000, runs.Add(1))
	return person{user: "uid-" + run, anon: "anon-" + run, anon2: "anon2-" + run, email: "Pat." + run + "@Example.org",
		name: name + " " + run, phone: fmt.Sprintf("+4915%08d", time.Now().UnixNano()%100_000_000), device: "dev-" + run,
		sku: "sku-" + run, sku2: "sku2-" + run, note: "note " + run + " likes hiking", batch: "campaign-" + run,
		html: "<script>alert('" + run + "')</script>"}
}

func q(s string) string { b, _ := json.Marshal(s); return string(b) }

// history ingests a customer's life: anonymous browsing on one device, a login
// (user id joins the anonymous id), browsing on a second device joined by the
// email in context.traits, an order with free text and a hostile property, and
// a consent banner choice; one batch, with a batch-level context.
func (h *harness) history(p person) {
	h.t.Helper()
	h.ingest(`{"campaign":{"name":`+q(p.batch)+`}}`,
		`{"type":"page","messageId":"pg-`+p.user+`","anonymousId":`+q(p.anon)+`,"name":"Home","context":{"device":{"id":`+q(p.device)+`}}}`,
		`{"type":"identify","messageId":"id-`+p.user+`","anonymousId":`+q(p.anon)+`,"userId":`+q(p.user)+
			`,"traits":{"email":`+q(p.email)+`,"name":`+q(p.name)+`,"phone":`+q(p.phone)+`,"plan":"pro"}}`,
		`{"type":"track","messageId":"tr-`+p.user+`","anonymousId":`+q(p.anon2)+`,"event":"Product Viewed",`+
			`"properties":{"product_id":`+q(p.sku)+`,"category":"Boots"},"context":{"traits":{"email":`+q(p.email)+`}}}`,
		`{"type":"track","messageId":"oc-`+p.user+`","userId":`+q(p.user)+`,"event":"Order Completed",`+
			`"properties":{"revenue":42,"product_id":`+q(p.sku2)+`,"note":`+q(p.note)+`,"gift_message":`+q(p.html)+`}}`,
		`{"type":"track","messageId":"cp-`+p.user+`","userId":`+q(p.user)+`,"event":"Segment Consent Preference Updated",`+
			`"context":{"consent":{"categoryPreferences":{"Advertising":false,"Analytics":true}}}}`)
}

// values are what a person's history ingested, as sent and as normalized.
func (p person) values() []string {
	return []string{p.user, p.anon, p.anon2, p.email, strings.ToLower(p.email), p.name, p.phone, p.device, p.sku, p.sku2,
		p.note, p.batch, p.html}
}

func (p person) identifiers() []trustloop.Identifier {
	return []trustloop.Identifier{{Type: trustloop.IDUserID, Value: p.user}, {Type: trustloop.IDAnonymousID, Value: p.anon},
		{Type: trustloop.IDAnonymousID, Value: p.anon2}, {Type: trustloop.IDEmail, Value: strings.ToLower(p.email)},
		{Type: trustloop.IDPhone, Value: p.phone}, {Type: trustloop.IDDeviceID, Value: p.device}}
}

// strs collects every string (keys included) of a decoded JSON value.
func strs(v any, out []string) []string {
	switch v := v.(type) {
	case string:
		out = append(out, v)
	case []any:
		for _, e := range v {
			out = strs(e, out)
		}
	case map[string]any:
		for k, e := range v {
			out = strs(e, append(out, k))
		}
	}
	return out
}

func containsAny(all []string, v string) bool {
	return slices.ContainsFunc(all, func(s string) bool { return strings.Contains(s, v) })
}

func TestLifecycle(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	alice := newPerson("a", "Alice")
	h.history(alice)

	t.Run("verified at creation: queued, worked, completed", func(t *testing.T) {
		h := h.with(t)
		r, created, err := h.svc.Create(bg, h.ws, privacy.NewRequest{Type: trustloop.RequestAccess, Identifier: "user_id:" + alice.user,
			VerifiedBy: "key:7"})
		if err != nil || !created {
			t.Fatalf("Create: %v created=%v", err, created)
		}
		if r.Status != trustloop.RequestVerified || r.VerifiedBy != "key:7" || r.VerifiedAt.IsZero() || !trustloop.ValidRequestID(r.ID) {
			t.Fatalf("created %+v", r)
		}
		// The workspace is opt-out (CCPA-style): the regime follows.
		if r.Regime != trustloop.RegimeCCPA || !r.DueAt.Equal(r.ReceivedAt.AddDate(0, 0, 45)) || !r.AckDueAt.Equal(trustloop.AddBusinessDays(r.ReceivedAt, 10)) {
			t.Fatalf("regime %s, received %s, due %s, ack %s", r.Regime, r.ReceivedAt, r.DueAt, r.AckDueAt)
		}
		jobs, err := h.db.JobsOf(bg, h.ws, r.ID)
		if err != nil || len(jobs) != 1 || jobs[0].State != trustloop.JobQueued || jobs[0].Kind != privacy.JobKind {
			t.Fatalf("jobs %+v %v", jobs, err)
		}
		if n := h.work(); n != 1 {
			t.Fatalf("worked %d jobs", n)
		}
		r = h.get(r.ID)
		if r.Status != trustloop.RequestCompleted || r.CompletedAt.IsZero() || r.Progress != "done" || r.Subject == nil {
			t.Fatalf("after the worker: %+v", r)
		}
		if res := result(t, r); res["found"] != true || res["events"] != 5.0 || res["identities"] != 6.0 {
			t.Fatalf("result %v", res)
		}
		if jobs, _ := h.db.JobsOf(bg, h.ws, r.ID); len(jobs) != 1 || jobs[0].State != trustloop.JobDone || jobs[0].Attempts != 1 {
			t.Fatalf("jobs after %+v", jobs)
		}
	})

	t.Run("unverified stays received until verified", func(t *testing.T) {
		h := h.with(t)
		r := h.create(privacy.NewRequest{Type: trustloop.RequestPortability, Identifier: "email:" + alice.email})
		if r.Status != trustloop.RequestReceived || r.VerifiedBy != "" {
			t.Fatalf("created %+v", r)
		}
		if jobs, _ := h.db.JobsOf(bg, h.ws, r.ID); len(jobs) != 0 {
			t.Fatalf("an unverified request has jobs %+v", jobs)
		}
		if n := h.work(); n != 0 {
			t.Fatalf("the worker ran %d jobs for an unverified request", n)
		}
		if got := h.get(r.ID); got.Status != trustloop.RequestReceived {
			t.Fatalf("status %s", got.Status)
		}
		v, err := h.svc.Verify(bg, h.ws, r.ID, "operator:3", trustloop.AuditActor{})
		if err != nil || v.Status != trustloop.RequestVerified || v.VerifiedBy != "operator:3" {
			t.Fatalf("Verify: %+v %v", v, err)
		}
		if _, err := h.svc.Verify(bg, h.ws, r.ID, "operator:3", trustloop.AuditActor{}); trustloop.ErrorCode(err) != trustloop.ECONFLICT {
			t.Fatalf("a second Verify: %v", err)
		}
		if n := h.work(); n != 1 {
			t.Fatalf("worked %d jobs", n)
		}
		if got := h.get(r.ID); got.Status != trustloop.RequestCompleted {
			t.Fatalf("status %s", got.Status)
		}
	})

	t.Run("reject", func(t *testing.T) {
		h := h.with(t)
		r := h.create(privacy.NewRequest{Type: trustloop.RequestErasure, Identifier: "user_id:" + alice.user, VerifiedBy: "key:1"})
		if _, err := h.svc.Reject(bg, h.ws, r.ID, "  ", trustloop.AuditActor{}); trustloop.ErrorCode(err) != trustloop.EINVALID {
			t.Fatalf("Reject without a reason: %v", err)
		}
		got, err := h.svc.Reject(bg, h.ws, r.ID, "  could not verify the requester  ", trustloop.AuditActor{})
		if err != nil {
			t.Fatal(err)
		}
		stored := h.get(r.ID)
		for _, x := range []*trustloop.PrivacyRequest{got, stored} {
			if x.Status != trustloop.RequestRejected || x.RejectReason != "could not verify the requester" || x.Subject != nil ||
				x.Suppression != nil || x.CompletedAt.IsZero() {
				t.Fatalf("rejected: %+v", x)
			}
		}
		// Its queued job is cancelled: nothing is erased.
		if jobs, _ := h.db.JobsOf(bg, h.ws, r.ID); len(jobs) != 1 || jobs[0].State != trustloop.JobCancelled {
			t.Fatalf("jobs %+v", jobs)
		}
		if n := h.work(); n != 0 {
			t.Fatalf("worked %d jobs", n)
		}
		if _, err := h.lookup(trustloop.IDUserID, alice.user); err != nil {
			t.Fatalf("a rejected erasure erased: %v", err)
		}
		if _, err := h.svc.Reject(bg, h.ws, r.ID, "again", trustloop.AuditActor{}); trustloop.ErrorCode(err) != trustloop.ECONFLICT {
			t.Fatalf("rejecting a rejected request: %v", err)
		}
		done := h.run(privacy.NewRequest{Type: trustloop.RequestAccess, Identifier: "phone:" + alice.phone})
		if _, err := h.svc.Reject(bg, h.ws, done.ID, "too late", trustloop.AuditActor{}); trustloop.ErrorCode(err) != trustloop.ECONFLICT {
			t.Fatalf("rejecting a completed request: %v", err)
		}
		if got := h.get(done.ID); got.Status != trustloop.RequestCompleted || got.RejectReason != "" {
			t.Fatalf("the refused rejection changed the request: %+v", got)
		}
	})

	t.Run("extend", func(t *testing.T) {
		h := h.with(t)
		r := h.create(privacy.NewRequest{Type: trustloop.RequestAccess, Identifier: "device_id:" + alice.device, Regime: trustloop.RegimeGDPR})
		if !r.DueAt.Equal(r.ReceivedAt.AddDate(0, 1, 0)) {
			t.Fatalf("gdpr due %s for %s", r.DueAt, r.ReceivedAt)
		}
		if _, err := h.svc.Extend(bg, h.ws, r.ID, "", trustloop.AuditActor{}); trustloop.ErrorCode(err) != trustloop.EINVALID {
			t.Fatalf("Extend without a reason: %v", err)
		}
		got, err := h.svc.Extend(bg, h.ws, r.ID, "many requests this month", trustloop.AuditActor{})
		if err != nil {
			t.Fatal(err)
		}
		stored := h.get(r.ID)
		if !stored.DueAt.Equal(r.DueAt.AddDate(0, 2, 0)) || stored.ExtensionReason != "many requests this month" ||
			stored.ExtendedAt.IsZero() || !got.DueAt.Equal(stored.DueAt) {
			t.Fatalf("extended: %+v", stored)
		}
		if _, err := h.svc.Extend(bg, h.ws, r.ID, "again", trustloop.AuditActor{}); trustloop.ErrorCode(err) != trustloop.ECONFLICT {
			t.Fatalf("a second extension: %v", err)
		}
		if _, err := h.svc.Extend(bg, h.ws, "prq_nope", "x", trustloop.AuditActor{}); trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
			t.Fatalf("extending a malformed id: %v", err)
		}
	})

	t.Run("duplicates join the open request", func(t *testing.T) {
		h := h.with(t)
		first, created, err := h.svc.Create(bg, h.ws, privacy.NewRequest{Type: trustloop.RequestRestriction, Identifier: "user_id:" + alice.user})
		if err != nil || !created {
			t.Fatal(err, created)
		}
		// The same type and identifier (normalized the same) while it is open.
		for _, in := range []privacy.NewRequest{
			{Type: trustloop.RequestRestriction, Identifier: "user_id:" + alice.user},
			{Type: trustloop.RequestRestriction, Identifier: "user_id:  " + alice.user + " ", VerifiedBy: "key:1"},
		} {
			again, created, err := h.svc.Create(bg, h.ws, in)
			if err != nil || created || again.ID != first.ID {
				t.Fatalf("a duplicate: created=%v id %s (first %s) %v", created, again.ID, first.ID, err)
			}
		}
		// Another type, or another identifier, is another request.
		other := h.create(privacy.NewRequest{Type: trustloop.RequestObjection, Identifier: "user_id:" + alice.user})
		byEmail := h.create(privacy.NewRequest{Type: trustloop.RequestRestriction, Identifier: "email:" + alice.email})
		if other.ID == first.ID || byEmail.ID == first.ID {
			t.Fatal("a different request joined")
		}
		// The verified duplicate verified the request it joined.
		if got := h.get(first.ID); got.Status != trustloop.RequestVerified || got.VerifiedBy != "key:1" {
			t.Fatalf("after a verified duplicate: %s by %q", got.Status, got.VerifiedBy)
		}
		// Once completed, the same request is a new one.
		h.work()
		if got := h.get(first.ID); got.Status != trustloop.RequestCompleted {
			t.Fatalf("status %s", got.Status)
		}
		again, created, err := h.svc.Create(bg, h.ws, privacy.NewRequest{Type: trustloop.RequestRestriction, Identifier: "user_id:" + alice.user})
		if err != nil || !created || again.ID == first.ID {
			t.Fatalf("after completion: created=%v %v", created, err)
		}
		for _, id := range []string{other.ID, byEmail.ID, again.ID} {
			if _, err := h.svc.Reject(bg, h.ws, id, "test cleanup", trustloop.AuditActor{}); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("overdue", func(t *testing.T) {
		h := h.with(t)
		h.skew.Store(int64(-60 * 24 * time.Hour))
		old := h.create(privacy.NewRequest{Type: trustloop.RequestPortability, Identifier: "anonymous_id:" + alice.anon2})
		h.skew.Store(0)
		if v := privacy.View(h.get(old.ID)); !v.Overdue || !v.AckOverdue || v.RequestID != old.ID || v.VerifiedAt != nil || v.CompletedAt != nil {
			t.Fatalf("a request received 60 days ago: %+v", v)
		}
		// A rejected request is closed, not overdue; its view names no one.
		rej, err := h.svc.Reject(bg, h.ws, old.ID, "the requester did not answer", trustloop.AuditActor{})
		if err != nil {
			t.Fatal(err)
		}
		v := privacy.View(rej)
		if v.Overdue || v.AckOverdue || v.RejectReason == "" || v.CompletedAt == nil {
			t.Fatalf("rejected view %+v", v)
		}
		b, _ := json.Marshal(v)
		if bytes.Contains(b, []byte(alice.anon2)) || bytes.Contains(b, []byte("subject")) {
			t.Fatalf("a request's view shows its subject: %s", b)
		}
	})

	t.Run("list by due date with a status filter", func(t *testing.T) {
		h := h.with(t)
		all, err := h.svc.List(bg, h.ws, trustloop.PrivacyFilter{Limit: 500})
		if err != nil || len(all) < 8 {
			t.Fatalf("List: %d %v", len(all), err)
		}
		for i := 1; i < len(all); i++ {
			a, b := all[i-1], all[i]
			if a.DueAt.After(b.DueAt) || a.DueAt.Equal(b.DueAt) && a.ID > b.ID {
				t.Fatalf("not by due date, then id: %s %s, %s %s", a.DueAt, a.ID, b.DueAt, b.ID)
			}
		}
		// The gdpr request (one month, then extended) is due last.
		if last := all[len(all)-1]; last.Regime != trustloop.RegimeGDPR || last.ExtendedAt.IsZero() {
			t.Fatalf("last due: %+v", last)
		}
		count := map[string]int{}
		for _, r := range all {
			count[r.Status]++
		}
		for _, st := range []string{trustloop.RequestReceived, trustloop.RequestCompleted, trustloop.RequestRejected, trustloop.RequestVerified} {
			got, err := h.svc.List(bg, h.ws, trustloop.PrivacyFilter{Status: st})
			if err != nil || len(got) != count[st] {
				t.Fatalf("List(%s) = %d, want %d: %v", st, len(got), count[st], err)
			}
			for _, r := range got {
				if r.Status != st {
					t.Fatalf("List(%s) returned a %s request", st, r.Status)
				}
			}
		}
		page, err := h.svc.List(bg, h.ws, trustloop.PrivacyFilter{Limit: 3})
		if err != nil || len(page) != 3 {
			t.Fatal(len(page), err)
		}
		next, err := h.svc.List(bg, h.ws, trustloop.PrivacyFilter{Limit: 500, AfterDue: page[2].DueAt, AfterID: page[2].ID})
		if err != nil || len(next) != len(all)-3 || next[0].ID != all[3].ID {
			t.Fatalf("the next page: %d %v", len(next), err)
		}
		if _, err := h.svc.List(bg, h.ws, trustloop.PrivacyFilter{Status: "done"}); trustloop.ErrorCode(err) != trustloop.EINVALID {
			t.Fatalf("List(done): %v", err)
		}
	})

	t.Run("get", func(t *testing.T) {
		h := h.with(t)
		for _, id := range []string{"", "prq_x", "prq_" + strings.Repeat("a", 26), "../etc"} {
			if _, err := h.svc.Get(bg, h.ws, id); trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
				t.Fatalf("Get(%q): %v", id, err)
			}
		}
		some, _ := h.svc.List(bg, h.ws, trustloop.PrivacyFilter{Limit: 1})
		if _, err := h.svc.Get(bg, h.ws+1, some[0].ID); trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
			t.Fatalf("another workspace's request: %v", err)
		}
	})
}

func TestCreateRefusesBadInput(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	p := newPerson("b", "Bea")
	h.history(p)
	id := "user_id:" + p.user
	for _, tc := range []struct {
		name string
		in   privacy.NewRequest
	}{
		{"unknown type", privacy.NewRequest{Type: "forget", Identifier: id}},
		{"empty type", privacy.NewRequest{Identifier: id}},
		{"identifier without a type", privacy.NewRequest{Type: trustloop.RequestAccess, Identifier: "nonsense"}},
		{"identifier without a value", privacy.NewRequest{Type: trustloop.RequestAccess, Identifier: "email:"}},
		{"unknown identifier type", privacy.NewRequest{Type: trustloop.RequestAccess, Identifier: "passport:X123"}},
		{"malformed email", privacy.NewRequest{Type: trustloop.RequestAccess, Identifier: "email:not-an-email"}},
		{"empty identifier", privacy.NewRequest{Type: trustloop.RequestErasure}},
		{"suppress on access", privacy.NewRequest{Type: trustloop.RequestAccess, Identifier: id, Suppress: true}},
		{"suppress on restriction", privacy.NewRequest{Type: trustloop.RequestRestriction, Identifier: id, Suppress: true}},
		{"traits on erasure", privacy.NewRequest{Type: trustloop.RequestErasure, Identifier: id, Traits: map[string]any{"name": "x"}}},
		{"empty traits on access", privacy.NewRequest{Type: trustloop.RequestAccess, Identifier: id, Traits: map[string]any{}}},
		{"no traits on rectification", privacy.NewRequest{Type: trustloop.RequestRectification, Identifier: id}},
		{"empty traits on rectification", privacy.NewRequest{Type: trustloop.RequestRectification, Identifier: id, Traits: map[string]any{}}},
		{"object trait on rectification", privacy.NewRequest{Type: trustloop.RequestRectification, Identifier: id,
			Traits: map[string]any{"address": map[string]any{"city": "x"}}}},
		{"empty trait name", privacy.NewRequest{Type: trustloop.RequestRectification, Identifier: id, Traits: map[string]any{"": "x"}}},
		{"bad regime", privacy.NewRequest{Type: trustloop.RequestAccess, Identifier: id, Regime: "lgpd"}},
		{"regime in capitals", privacy.NewRequest{Type: trustloop.RequestAccess, Identifier: id, Regime: "GDPR"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := h.with(t)
			tc.in.VerifiedBy = "key:1"
			r, created, err := h.svc.Create(bg, h.ws, tc.in)
			if trustloop.ErrorCode(err) != trustloop.EINVALID || r != nil || created {
				t.Fatalf("Create: %v (%v, created %v), want EINVALID", err, r, created)
			}
			// The message names what is wrong, never the value.
			if msg := trustloop.ErrorMessage(err); strings.Contains(msg, p.user) || strings.Contains(msg, "X123") {
				t.Fatalf("the error shows the identifier: %q", msg)
			}
			if all, err := h.svc.List(bg, h.ws, trustloop.PrivacyFilter{}); err != nil || len(all) != 0 {
				t.Fatalf("a refused request was stored: %d %v", len(all), err)
			}
			if n := h.work(); n != 0 {
				t.Fatalf("a refused request queued %d jobs", n)
			}
		})
	}
}

// An identifier nobody has is a request like any other: recorded, worked,
// completed with found=false, and then it keeps no blind index.
func TestUnknownIdentifier(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.history(newPerson("c", "Cy"))
	events := h.events()
	nobody := newPerson("n", "Nobody")
	for _, in := range []privacy.NewRequest{
		{Type: trustloop.RequestAccess, Identifier: "email:" + nobody.email},
		{Type: trustloop.RequestPortability, Identifier: "user_id:" + nobody.user},
		{Type: trustloop.RequestErasure, Identifier: "email:" + nobody.email, Suppress: true},
		{Type: trustloop.RequestRectification, Identifier: "phone:" + nobody.phone, Traits: map[string]any{"name": "x"}},
		{Type: trustloop.RequestRestriction, Identifier: "email:" + nobody.email},
		{Type: trustloop.RequestObjection, Identifier: "device_id:" + nobody.device},
		// By a user or anonymous id nobody has: no refusals are recorded for
		// an id never seen, and the request keeps no blind index.
		{Type: trustloop.RequestRestriction, Identifier: "user_id:" + nobody.user},
		{Type: trustloop.RequestObjection, Identifier: "anonymous_id:" + nobody.anon},
	} {
		t.Run(in.Type+" by "+strings.SplitN(in.Identifier, ":", 2)[0], func(t *testing.T) {
			h := h.with(t)
			r := h.run(in)
			bug := ""
			if (in.Type == trustloop.RequestRestriction || in.Type == trustloop.RequestObjection) &&
				(strings.HasPrefix(in.Identifier, "user_id:") || strings.HasPrefix(in.Identifier, "anonymous_id:")) {
				bug = "regression: "
			}
			if res := result(t, r); res["found"] != false {
				t.Errorf("%sresult %v, want found false", bug, res)
			}
			if r.Subject != nil || r.Suppression != nil || r.Payload != nil {
				t.Errorf("%sa request about no one keeps subject %x suppression %x payload %x", bug, r.Subject, r.Suppression, r.Payload)
			}
			if in.Type == trustloop.RequestAccess {
				var buf bytes.Buffer
				if err := h.svc.Export(bg, h.ws, r.ID, "json", trustloop.AuditActor{Kind: trustloop.ActorAPIKey, ID: "key:1"}, &buf); err != nil {
					t.Fatal(err)
				}
				var pkg map[string]any
				if err := json.Unmarshal(buf.Bytes(), &pkg); err != nil || pkg["found"] != false || pkg["event_count"] != 0.0 {
					t.Fatalf("package %s: %v", buf.Bytes(), err)
				}
			}
		})
	}
	if got := h.events(); got != events {
		t.Fatalf("events %d, was %d", got, events)
	}
	// An erasure with suppress keeps the identifier's entry even when nothing
	// was found: the customer asked not to be collected from now on.
	if hashes, _ := h.db.Suppressions(bg, h.ws); len(hashes) != 1 {
		t.Fatalf("suppressions after erasing an unknown identifier: %d, want 1", len(hashes))
	}
	h.ingest("", `{"type":"identify","messageId":"n1","anonymousId":"n-anon","traits":{"email":`+q(nobody.email)+`}}`)
	if got := h.events(); got != events {
		t.Fatalf("an event of the suppressed (unknown) email was stored")
	}
}

// The access package holds everything of the subject and nothing of anyone
// else (acceptance point of issue 5).
func TestAccessPackage(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ann := newPerson("a", "Ann <Lee> & Søn")
	bob := newPerson("b", "Bob Bobson")
	h.history(ann)
	h.history(bob)
	// A consent change through the API too (a receipt).
	if _, _, err := h.consent.Record(bg, h.ws, [][]byte{h.blind(trustloop.IDUserID, ann.user)},
		[]consent.Change{{Purpose: trustloop.PurposeSharing, State: trustloop.ConsentGiven}}, consent.Meta{Method: trustloop.MethodAPI}); err != nil {
		t.Fatal(err)
	}
	prof, err := h.lookup(trustloop.IDEmail, ann.email)
	if err != nil || len(prof.Identities) != 6 {
		t.Fatalf("Ann's profile is not merged across devices: %v %v", prof, err)
	}
	r := h.run(privacy.NewRequest{Type: trustloop.RequestAccess, Identifier: "email:" + ann.email})
	actor := trustloop.AuditActor{Kind: trustloop.ActorAPIKey, ID: "key:1"}
	var buf bytes.Buffer
	if err := h.svc.Export(bg, h.ws, r.ID, "json", actor, &buf); err != nil {
		t.Fatal(err)
	}
	raw := buf.Bytes()
	var pkg map[string]any
	if err := json.Unmarshal(raw, &pkg); err != nil {
		t.Fatalf("the package is not JSON: %v\n%s", err, raw)
	}
	if pkg["format"] != privacy.PackageFormat || pkg["version"] != 1.0 || pkg["request_id"] != r.ID || pkg["found"] != true {
		t.Fatalf("head: %v %v %v %v", pkg["format"], pkg["version"], pkg["request_id"], pkg["found"])
	}
	if pkg["event_count"] != 5.0 || len(pkg["events"].([]any)) != 5 {
		t.Fatalf("events: %v", pkg["event_count"])
	}
	if ids := pkg["identities"].([]any); len(ids) != 6 {
		t.Fatalf("identities: %v", ids)
	}
	hist := pkg["consent_history"].([]any)
	methods := map[string]bool{}
	for _, e := range hist {
		methods[e.(map[string]any)["method"].(string)] = true
	}
	if !methods[trustloop.MethodBanner] || !methods[trustloop.MethodAPI] || len(pkg["consent_receipts"].([]any)) < 2 {
		t.Fatalf("consent history %v, receipts %v", hist, pkg["consent_receipts"])
	}
	if reqs := pkg["privacy_requests"].([]any); len(reqs) != 1 || reqs[0].(map[string]any)["request_id"] != r.ID {
		t.Fatalf("privacy requests %v", reqs)
	}
	all := strs(pkg, nil)
	for _, v := range ann.values() {
		if !containsAny(all, v) {
			t.Errorf("Ann's %q is missing from her access package", v)
		}
	}
	for _, v := range bob.values() {
		if bytes.Contains(raw, []byte(v)) || containsAny(all, v) {
			t.Errorf("Bob's %q is in Ann's access package", v)
		}
	}
	// A completed request's package can be downloaded again: it is made when
	// downloaded, from what is held then.
	var again bytes.Buffer
	if err := h.svc.Export(bg, h.ws, r.ID, "json", actor, &again); err != nil || again.Len() == 0 {
		t.Fatal(err)
	}

	t.Run("html", func(t *testing.T) {
		h := h.with(t)
		var page bytes.Buffer
		if err := h.svc.Export(bg, h.ws, r.ID, "html", actor, &page); err != nil {
			t.Fatal(err)
		}
		s := page.String()
		if strings.Contains(strings.ToLower(s), "<script") {
			t.Errorf("the page holds a raw <script from a property value")
		}
		// Every value is on the page as the customer wrote it, once the
		// page's HTML escaping is undone (html/template escapes more than
		// html.EscapeString: + as &#43;, for one).
		text := html.UnescapeString(s)
		for _, v := range ann.values() {
			if !strings.Contains(text, v) {
				t.Errorf("the page lacks Ann's %q", v)
			}
		}
		// Markup in values is escaped, not JSON-escaped (\u003c) and not raw.
		for _, v := range []string{ann.name, ann.html} {
			if !strings.Contains(s, html.EscapeString(v)) {
				t.Errorf("the page lacks %q, HTML-escaped as %q", v, html.EscapeString(v))
			}
		}
		if strings.Contains(s, `\u003c`) || strings.Contains(s, `\u0026`) {
			t.Errorf("the page shows JSON escapes instead of the characters")
		}
		for _, v := range bob.values() {
			if strings.Contains(s, v) || strings.Contains(s, html.EscapeString(v)) {
				t.Errorf("Bob's %q is on Ann's page", v)
			}
		}
	})

	t.Run("refused exports", func(t *testing.T) {
		h := h.with(t)
		for _, tc := range []struct {
			id, format, code string
		}{
			{r.ID, "xml", trustloop.EINVALID},
			{"prq_" + strings.Repeat("b", 26), "json", trustloop.ENOTFOUND},
		} {
			var w bytes.Buffer
			if err := h.svc.Export(bg, h.ws, tc.id, tc.format, actor, &w); trustloop.ErrorCode(err) != tc.code || w.Len() != 0 {
				t.Fatalf("Export(%s, %s): %v, %d bytes", tc.id, tc.format, err, w.Len())
			}
		}
		open := h.create(privacy.NewRequest{Type: trustloop.RequestAccess, Identifier: "user_id:" + bob.user})
		var w bytes.Buffer
		if err := h.svc.Export(bg, h.ws, open.ID, "json", actor, &w); trustloop.ErrorCode(err) != trustloop.ECONFLICT || w.Len() != 0 {
			t.Fatalf("Export of a received request: %v", err)
		}
		er := h.create(privacy.NewRequest{Type: trustloop.RequestErasure, Identifier: "user_id:" + bob.user})
		if err := h.svc.Export(bg, h.ws, er.ID, "json", actor, &w); trustloop.ErrorCode(err) != trustloop.EINVALID || w.Len() != 0 {
			t.Fatalf("Export of an erasure: %v", err)
		}
	})
}

// consentOf returns the latest record of each purpose of a subject.
func (h *harness) consentOf(blind []byte) map[string]trustloop.ConsentRecord {
	h.t.Helper()
	recs, err := h.consent.History(bg, h.ws, blind)
	if err != nil {
		h.t.Fatal(err)
	}
	out := map[string]trustloop.ConsentRecord{}
	for _, r := range recs {
		out[r.Purpose] = r
	}
	return out
}

func TestRestrictionAndObjection(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	p := newPerson("r", "Rae")
	h.ingest("", `{"type":"identify","messageId":"i-`+p.user+`","userId":`+q(p.user)+`,"anonymousId":`+q(p.anon)+`,"traits":{"email":`+q(p.email)+`}}`)
	user, anon := h.blind(trustloop.IDUserID, p.user), h.blind(trustloop.IDAnonymousID, p.anon)
	if _, _, err := h.consent.Record(bg, h.ws, [][]byte{user, anon},
		[]consent.Change{{Purpose: trustloop.PurposeMarketing, State: trustloop.ConsentGiven}, {Purpose: trustloop.PurposeAnalytics, State: trustloop.ConsentGiven}},
		consent.Meta{Method: trustloop.MethodBanner}); err != nil {
		t.Fatal(err)
	}
	k, err := h.consent.Catalog(bg, h.ws)
	if err != nil {
		t.Fatal(err)
	}
	idx := func(purpose string) int { i, _ := k.Index(purpose); return i }

	// An objection: marketing and personalization (profiling) only.
	r := h.run(privacy.NewRequest{Type: trustloop.RequestObjection, Identifier: "email:" + p.email})
	res := result(t, r)
	if res["found"] != true || fmt.Sprint(res["purposes_withdrawn"]) != "[marketing personalization]" || res["consent_receipt_id"] == "" {
		t.Fatalf("objection result %v", res)
	}
	for _, b := range [][]byte{user, anon} {
		latest := h.consentOf(b)
		for purpose, want := range map[string]string{trustloop.PurposeMarketing: trustloop.ConsentWithdrawn,
			trustloop.PurposePersonalization: trustloop.ConsentRefused, trustloop.PurposeAnalytics: trustloop.ConsentGiven} {
			if got := latest[purpose]; got.State != want {
				t.Errorf("after the objection %s is %q, want %q", purpose, got.State, want)
			}
		}
		if m := latest[trustloop.PurposeMarketing].Method; m != trustloop.MethodPrivacyRequest {
			t.Errorf("marketing's method %q", m)
		}
		if _, ok := latest[trustloop.PurposeSharing]; ok {
			t.Errorf("an objection changed sharing")
		}
		st, _, err := h.consent.Stored(bg, k, h.ws, b)
		if err != nil {
			t.Fatal(err)
		}
		if st.Given.Has(idx(trustloop.PurposeMarketing)) || st.Given.Has(idx(trustloop.PurposePersonalization)) || !st.Given.Has(idx(trustloop.PurposeAnalytics)) {
			t.Errorf("stored consent after the objection: %+v", st)
		}
	}

	// A restriction: every purpose but those resting on the contract.
	r = h.run(privacy.NewRequest{Type: trustloop.RequestRestriction, Identifier: "user_id:" + p.user})
	if res := result(t, r); fmt.Sprint(res["purposes_withdrawn"]) != "[analytics marketing personalization sharing]" {
		t.Fatalf("restriction result %v", res)
	}
	for _, b := range [][]byte{user, anon} {
		st, _, err := h.consent.Stored(bg, k, h.ws, b)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < k.Len(); i++ {
			if k.Contract().Has(i) {
				continue
			}
			if st.Given.Has(i) || !(st.Refused | st.Withdrawn).Has(i) {
				t.Errorf("after the restriction %s is not withdrawn: %+v", k.ID(i), st)
			}
		}
		latest := h.consentOf(b)
		for _, purpose := range []string{trustloop.PurposeAnalytics, trustloop.PurposeMarketing, trustloop.PurposePersonalization, trustloop.PurposeSharing} {
			if rec := latest[purpose]; rec.Method != trustloop.MethodPrivacyRequest || rec.Evidence != "request:"+r.ID || rec.State == trustloop.ConsentGiven {
				t.Errorf("%s: %+v", purpose, rec)
			}
		}
		if _, ok := latest[trustloop.PurposeEssential]; ok {
			t.Errorf("a restriction touched the contract purpose")
		}
	}
	// The collector decides by it at once: a tracked event of the customer is
	// collected for the contract purpose only.
	before := h.events()
	h.ingest("", `{"type":"track","messageId":"after-`+p.user+`","userId":`+q(p.user)+`,"event":"Order Completed","properties":{"revenue":1}}`)
	if h.events() != before+1 {
		t.Fatalf("an order of a restricted customer was not kept for the contract")
	}
}

// snapshot is what must not change about a profile.
type snapshot struct {
	ID         string
	Traits     map[string]any
	Computed   map[string]any
	Identities []trustloop.Identifier
	Audiences  []projection.AudienceRef
}

func (h *harness) snapshot(typ, value string) snapshot {
	h.t.Helper()
	p, err := h.lookup(typ, value)
	if err != nil {
		h.t.Fatal(err)
	}
	return snapshot{p.ProfileID, p.Traits, p.Computed, p.Identities, p.Audiences}
}

func TestErasure(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	if err := h.profiles.SaveAudience(bg, &trustloop.Audience{WorkspaceID: h.ws, Name: "pro", Rule: `traits.plan == "pro"`}); err != nil {
		t.Fatal(err)
	}
	eve, bob := newPerson("e", "Eve"), newPerson("b", "Bob")
	h.history(eve)
	h.history(bob)
	bobBefore := h.snapshot(trustloop.IDUserID, bob.user)
	if len(bobBefore.Audiences) != 1 || len(bobBefore.Identities) != 6 {
		t.Fatalf("Bob before: %+v", bobBefore)
	}
	done := h.run(privacy.NewRequest{Type: trustloop.RequestPortability, Identifier: "anonymous_id:" + eve.anon2})
	access := h.create(privacy.NewRequest{Type: trustloop.RequestAccess, Identifier: "user_id:" + eve.user})
	eveKeys, err := h.db.FindSubjectKeys(bg, h.ws, [][]byte{h.blind(trustloop.IDUserID, eve.user),
		h.blind(trustloop.IDAnonymousID, eve.anon), h.blind(trustloop.IDAnonymousID, eve.anon2)})
	if err != nil || len(eveKeys) != 3 {
		t.Fatalf("Eve's keys: %d %v", len(eveKeys), err)
	}
	events := h.events()

	r := h.run(privacy.NewRequest{Type: trustloop.RequestErasure, Identifier: "email:" + eve.email})
	if r.Subject != nil || r.Suppression != nil || r.Receipt == "" {
		t.Fatalf("completed erasure: %+v", r)
	}
	var res privacy.ErasureResult
	if err := json.Unmarshal(r.Result, &res); err != nil {
		t.Fatal(err)
	}
	if res.Counts.Events != 5 || res.Counts.SubjectKeys != 3 || res.Counts.Identities != 6 || res.Counts.Profiles != 1 ||
		res.Counts.ConsentRecords == 0 || res.Counts.AudienceMemberships != 1 {
		t.Fatalf("result %+v", res)
	}
	// The result and the signed receipt say the erasure found the customer
	// (found was once assigned only after the store's transaction had
	// written them, so both said false).
	if !res.Found {
		t.Errorf("the erasure's result says found=false after erasing %d events of a profile", res.Counts.Events)
	}
	if bobAfter := h.snapshot(trustloop.IDUserID, bob.user); !reflect.DeepEqual(bobAfter, bobBefore) {
		t.Fatalf("Bob's profile changed:\n%+v\nwas\n%+v", bobAfter, bobBefore)
	}
	if got := h.events(); got != events-5 {
		t.Fatalf("events %d after the erasure, want %d", got, events-5)
	}
	for _, id := range eve.identifiers() {
		if _, err := h.lookup(id.Type, id.Value); trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
			t.Errorf("Lookup(%s) after the erasure: %v", id.Type, err)
		}
		if recs, _ := h.db.ConsentRecords(bg, h.ws, h.blind(id.Type, id.Value)); len(recs) != 0 {
			t.Errorf("%s: %d consent records left", id.Type, len(recs))
		}
	}
	var ids []int64
	for _, k := range eveKeys {
		ids = append(ids, k.ID)
	}
	if left, err := h.db.FindSubjectKeysByID(bg, h.ws, ids); err != nil || len(left) != 0 {
		t.Fatalf("subject keys left: %v %v", left, err)
	}
	evs, _ := h.db.ListEvents(bg, h.ws, 0, 10_000)
	for _, e := range evs {
		if slices.Contains(ids, e.KeyID) {
			t.Fatalf("event %d sealed under an erased key is left", e.Seq)
		}
	}
	// The open access request about Eve ended with her: it names no one.
	if a := h.get(access.ID); a.Status != trustloop.RequestRejected || a.Subject != nil {
		t.Fatalf("Eve's open access request after her erasure: %s %x", a.Status, a.Subject)
	}
	// A package downloaded after the erasure, of a request completed before
	// it, holds nothing of her.
	var pkg bytes.Buffer
	if err := h.svc.Export(bg, h.ws, done.ID, "json", trustloop.AuditActor{Kind: trustloop.ActorAPIKey, ID: "key:1"}, &pkg); err != nil {
		t.Fatal(err)
	}
	for _, v := range eve.values() {
		if bytes.Contains(pkg.Bytes(), []byte(v)) {
			t.Errorf("Eve's %q is in a package downloaded after her erasure", v)
		}
	}
	if !bytes.Contains(pkg.Bytes(), []byte(`"found":false`)) {
		t.Errorf("a package after the erasure: %s", pkg.Bytes())
	}

	// The receipt.
	rc, err := h.svc.VerifyErasureReceipt(h.ws, r.Receipt)
	if err != nil || rc.RequestID != r.ID || rc.WorkspaceID != h.ws || rc.Counts != res.Counts || rc.Suppressed ||
		!rc.ReceivedAt.Equal(r.ReceivedAt) || !rc.CompletedAt.Equal(r.CompletedAt) {
		t.Fatalf("VerifyErasureReceipt: %+v %v", rc, err)
	}
	if !rc.Found {
		t.Errorf("the signed erasure receipt says found=false")
	}
	parts := strings.Split(r.Receipt, ".")
	flip := func(s string) string {
		b := []byte(s)
		if b[len(b)/2] == 'A' {
			b[len(b)/2] = 'B'
		} else {
			b[len(b)/2] = 'A'
		}
		return string(b)
	}
	for name, bad := range map[string]string{
		"payload":          parts[0] + "." + flip(parts[1]) + "." + parts[2],
		"signature":        parts[0] + "." + parts[1] + "." + flip(parts[2]),
		"header":           flip(parts[0]) + "." + parts[1] + "." + parts[2],
		"truncated":        parts[0] + "." + parts[1],
		"empty":            "",
		"other workspace":  r.Receipt, // checked below against another key
		"not base64 chars": parts[0] + ".!!!." + parts[2],
	} {
		ws := h.ws
		if name == "other workspace" {
			ws = h.ws + 100
		}
		if _, err := h.svc.VerifyErasureReceipt(ws, bad); err == nil {
			t.Errorf("a receipt with a tampered %s verifies", name)
		}
	}
	// An access request now finds nothing.
	if a := h.run(privacy.NewRequest{Type: trustloop.RequestAccess, Identifier: "email:" + eve.email}); result(t, a)["found"] != false {
		t.Fatalf("access after erasure: %s", a.Result)
	}
	// Without suppression she may come back, as a new customer.
	before := h.events()
	h.ingest("", `{"type":"track","messageId":"back-`+eve.user+`","userId":`+q(eve.user)+`,"event":"Product Viewed","properties":{"product_id":"p"}}`)
	if h.events() != before+1 {
		t.Fatal("an event of an erased customer without suppression was dropped")
	}
	if p, err := h.lookup(trustloop.IDUserID, eve.user); err != nil || p.Computed[profile.ComputedEvents] != int64(1) || len(p.Traits) != 0 {
		t.Fatalf("the returning customer's profile: %+v %v", p, err)
	}
}

// An event whose anonymous id is refused by an identity limit (default 5
// anonymous ids a profile) but whose other identifier (the email in an
// identify's traits) joins it to a profile is applied to that profile yet
// sealed under the anonymous id's own key, which is no identity of the
// profile. The projection lists it on the profile's foreign timeline, so the
// access package shows it and the erasure takes it (and its key, which holds
// nothing else).
func TestErasureOfEventsBeyondIdentityLimits(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	p := newPerson("l", "Lim")
	h.ingest("", `{"type":"identify","messageId":"l0-`+p.user+`","userId":`+q(p.user)+`,"anonymousId":`+q(p.anon)+`,"traits":{"email":`+q(p.email)+`}}`)
	// Five more browsers, each signing up with the same email: the fifth is
	// the profile's sixth anonymous id.
	for i := 1; i <= 5; i++ {
		h.ingest("", fmt.Sprintf(`{"type":"identify","messageId":"l%d-%s","anonymousId":"%s-%d","traits":{"email":%s,"newsletter":true}}`,
			i, p.user, p.anon, i, q(p.email)))
	}
	prof, err := h.lookup(trustloop.IDEmail, p.email)
	if err != nil {
		t.Fatal(err)
	}
	if n := prof.Computed[profile.ComputedEvents]; fmt.Sprint(n) != "6" {
		t.Fatalf("the profile counts %v events, want 6", n)
	}
	acc := h.run(privacy.NewRequest{Type: trustloop.RequestAccess, Identifier: "email:" + p.email})
	if n := result(t, acc)["events"]; n != 6.0 {
		t.Errorf("the access package holds %v of the 6 events the profile took", n)
	}
	h.run(privacy.NewRequest{Type: trustloop.RequestErasure, Identifier: "email:" + p.email})
	evs, err := h.db.ListEvents(bg, h.ws, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		sks, err := h.db.FindSubjectKeysByID(bg, h.ws, []int64{e.KeyID})
		if err != nil || len(sks) != 1 {
			t.Fatalf("event %d: key %v %v", e.Seq, sks, err)
		}
		k, err := h.keys.OpenSubjectKey(sks[e.KeyID])
		if err != nil {
			t.Fatal(err)
		}
		env, err := projection.OpenEvent(h.ws, e, k)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(env.Message, []byte(p.email)) {
			t.Errorf("after the erasure, event %d (%s) still holds the customer's email, readable with its key", e.Seq, env.MessageID)
		}
	}
}

func TestErasureWithSuppression(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	sue, bob := newPerson("s", "Sue"), newPerson("b", "Bob")
	h.history(sue)
	h.history(bob)
	r := h.run(privacy.NewRequest{Type: trustloop.RequestErasure, Identifier: "user_id:" + sue.user, Suppress: true})
	if rc, err := h.svc.VerifyErasureReceipt(h.ws, r.Receipt); err != nil || !rc.Suppressed {
		t.Fatalf("receipt %+v %v", rc, err)
	}
	hashes, err := h.db.Suppressions(bg, h.ws)
	if err != nil || len(hashes) < 6 {
		t.Fatalf("suppressions: %d %v", len(hashes), err)
	}
	before := h.events()
	for _, m := range []string{
		// The erased user id.
		`{"type":"track","messageId":"s1-` + sue.user + `","userId":` + q(sue.user) + `,"event":"Product Viewed"}`,
		// The erased email, in an identify from a new anonymous id.
		`{"type":"identify","messageId":"s2-` + sue.user + `","anonymousId":"fresh-` + sue.user + `","traits":{"email":` + q(sue.email) + `}}`,
		// The erased email, written differently.
		`{"type":"identify","messageId":"s3-` + sue.user + `","anonymousId":"fresh2-` + sue.user + `","traits":{"email":` + q(strings.ToUpper(sue.email)) + `}}`,
		// An erased anonymous id, and the erased phone.
		`{"type":"page","messageId":"s4-` + sue.user + `","anonymousId":` + q(sue.anon2) + `,"name":"Home"}`,
		`{"type":"identify","messageId":"s5-` + sue.user + `","userId":"new-` + sue.user + `","traits":{"phone":` + q(sue.phone) + `}}`,
	} {
		h.ingest("", m)
	}
	if got := h.events(); got != before {
		t.Fatalf("%d events of the suppressed customer were stored", got-before)
	}
	h.ingest("", `{"type":"track","messageId":"b1-`+bob.user+`","userId":`+q(bob.user)+`,"event":"Product Viewed"}`,
		`{"type":"identify","messageId":"b2-`+bob.user+`","anonymousId":"fresh-`+bob.user+`","traits":{"email":"someone.else@example.org"}}`)
	if got := h.events(); got != before+2 {
		t.Fatalf("other customers' events: %d stored, want 2", got-before)
	}
	for _, id := range sue.identifiers() {
		if _, err := h.lookup(id.Type, id.Value); trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
			t.Errorf("Lookup(%s) after a suppressed erasure: %v", id.Type, err)
		}
	}
}

func TestRectification(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	p := newPerson("t", "Tom")
	h.history(p)
	r := h.run(privacy.NewRequest{Type: trustloop.RequestRectification, Identifier: "email:" + p.email,
		Traits: map[string]any{"name": "Tom Corrected", "plan": nil}})
	if r.Payload != nil || result(t, r)["found"] != true {
		t.Fatalf("rectified: %s, payload %x", r.Result, r.Payload)
	}
	prof, err := h.lookup(trustloop.IDUserID, p.user)
	if err != nil {
		t.Fatal(err)
	}
	if prof.Traits["name"] != "Tom Corrected" {
		t.Fatalf("traits after rectification: %v", prof.Traits)
	}
	if _, ok := prof.Traits["plan"]; ok {
		t.Fatalf("a null trait was not removed: %v", prof.Traits)
	}
}

// The API asks List for one more than its page (up to 500) to learn whether
// there is a next page; the store must give it.
func TestListPageOf500(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	for i := 0; i < 501; i++ {
		r := &trustloop.PrivacyRequest{ID: trustloop.NewRequestID(), WorkspaceID: h.ws, Type: trustloop.RequestAccess,
			Status: trustloop.RequestReceived, IdentifierType: trustloop.IDUserID, Subject: h.blind(trustloop.IDUserID, fmt.Sprint("u", i)),
			Regime: trustloop.RegimeGDPR, ReceivedAt: now, AckDueAt: now, DueAt: now.Add(time.Duration(i) * time.Second)}
		if _, err := h.db.CreatePrivacyRequest(bg, r, nil); err != nil {
			t.Fatal(err)
		}
	}
	// What GET /v1/privacy-requests?limit=500 asks for.
	got, err := h.svc.List(bg, h.ws, trustloop.PrivacyFilter{Limit: 500 + 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 501 {
		t.Errorf("List(Limit 501) returned %d of 501 requests: GET /v1/privacy-requests?limit=500 then has no next_cursor", len(got))
	}
}

// The deadline regime comes from the subject's recorded jurisdiction, read
// from the consent of its user and anonymous ids whatever identifier the
// request names.
func TestRegimeFromJurisdiction(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	c := consent.DefaultCatalog()
	c.Regime = consent.RegimeOptOut
	c.Jurisdictions = map[string]string{"DE": consent.RegimeOptIn}
	if _, err := h.consent.PutCatalog(bg, h.ws, c, 1); err != nil {
		t.Fatal(err)
	}
	p := newPerson("j", "Jo")
	h.history(p)
	if _, _, err := h.consent.Record(bg, h.ws, [][]byte{h.blind(trustloop.IDUserID, p.user), h.blind(trustloop.IDAnonymousID, p.anon)},
		[]consent.Change{{Purpose: trustloop.PurposeAnalytics, State: trustloop.ConsentGiven}},
		consent.Meta{Method: trustloop.MethodBanner, Jurisdiction: "DE"}); err != nil {
		t.Fatal(err)
	}
	other := newPerson("k", "Kim")
	h.history(other)
	for _, tc := range []struct {
		identifier, want string
		bug              bool
	}{
		{"user_id:" + p.user, trustloop.RegimeGDPR, false},
		{"anonymous_id:" + p.anon, trustloop.RegimeGDPR, false},
		{"email:" + p.email, trustloop.RegimeGDPR, true},
		{"phone:" + p.phone, trustloop.RegimeGDPR, true},
		{"user_id:" + other.user, trustloop.RegimeCCPA, false}, // no jurisdiction: the workspace's regime
	} {
		r := h.create(privacy.NewRequest{Type: trustloop.RequestAccess, Identifier: tc.identifier})
		if r.Regime != tc.want {
			prefix := ""
			if tc.bug {
				prefix = "regression: "
			}
			t.Errorf("%sa request by %s of a customer in DE has regime %s (due %s), want %s",
				prefix, strings.SplitN(tc.identifier, ":", 2)[0], r.Regime, r.DueAt.Format(time.DateOnly), tc.want)
		}
	}
	// An explicit regime wins.
	if r := h.create(privacy.NewRequest{Type: trustloop.RequestErasure, Identifier: "user_id:" + p.user, Regime: trustloop.RegimeCCPA}); r.Regime != trustloop.RegimeCCPA {
		t.Errorf("explicit regime: %s", r.Regime)
	}
}

// Without profiles a subject is one user or anonymous id: its events are
// found by a scan of the log.
func TestWithoutProfiles(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, false)
	p, o := newPerson("w", "Wes"), newPerson("o", "Ola")
	h.history(p)
	h.history(o)
	for _, bad := range []string{"email:" + p.email, "phone:" + p.phone} {
		if _, _, err := h.svc.Create(bg, h.ws, privacy.NewRequest{Type: trustloop.RequestAccess, Identifier: bad}); trustloop.ErrorCode(err) != trustloop.EINVALID {
			t.Fatalf("Create by %s without profiles: %v", bad, err)
		}
	}
	acc := h.run(privacy.NewRequest{Type: trustloop.RequestAccess, Identifier: "user_id:" + p.user})
	// The user id's events: the identify, the order and the consent choice.
	if res := result(t, acc); res["found"] != true || res["events"] != 3.0 {
		t.Fatalf("access: %v", res)
	}
	var pkg bytes.Buffer
	if err := h.svc.Export(bg, h.ws, acc.ID, "json", trustloop.AuditActor{Kind: trustloop.ActorAPIKey, ID: "key:1"}, &pkg); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{p.user, p.name, p.note, p.sku2, p.html} {
		var all []string
		var doc any
		if err := json.Unmarshal(pkg.Bytes(), &doc); err != nil {
			t.Fatal(err)
		}
		if all = strs(doc, all); !containsAny(all, v) {
			t.Errorf("%q is missing from the package", v)
		}
	}
	for _, v := range o.values() {
		if bytes.Contains(pkg.Bytes(), []byte(v)) {
			t.Errorf("the other customer's %q is in the package", v)
		}
	}
	events := h.events()
	er := h.run(privacy.NewRequest{Type: trustloop.RequestErasure, Identifier: "user_id:" + p.user, Suppress: true})
	var res privacy.ErasureResult
	if err := json.Unmarshal(er.Result, &res); err != nil || !res.Found || res.Counts.Events != 3 || res.Counts.SubjectKeys != 1 {
		t.Fatalf("erasure result %s %v", er.Result, err)
	}
	if got := h.events(); got != events-3 {
		t.Fatalf("events %d, want %d", got, events-3)
	}
	if keys, _ := h.db.FindSubjectKeys(bg, h.ws, [][]byte{h.blind(trustloop.IDUserID, p.user)}); len(keys) != 0 {
		t.Fatal("the user id's key survived")
	}
	h.ingest("", `{"type":"track","messageId":"w-again","userId":`+q(p.user)+`,"event":"Product Viewed"}`)
	if h.events() != events-3 {
		t.Fatal("an event of the suppressed user id was stored")
	}
	if _, err := h.svc.VerifyErasureReceipt(h.ws, er.Receipt); err != nil {
		t.Fatal(err)
	}
}

// A job whose worker died is taken again once its lease ran out, and the
// request completes.
func TestDeadWorker(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	p := newPerson("d", "Dee")
	h.history(p)
	r := h.create(privacy.NewRequest{Type: trustloop.RequestAccess, Identifier: "user_id:" + p.user, VerifiedBy: "key:1"})
	job, err := h.db.ClaimJob(bg, "dead", []string{privacy.JobKind}, time.Now(), time.Minute)
	if err != nil || job == nil || job.Ref != r.ID {
		t.Fatalf("ClaimJob: %+v %v", job, err)
	}
	// While its lease holds, no one else takes it.
	if n := h.work(); n != 0 {
		t.Fatalf("a held job was taken (%d)", n)
	}
	if got := h.get(r.ID); got.Status != trustloop.RequestVerified {
		t.Fatalf("status %s", got.Status)
	}
	// Three minutes later (past the dead worker's lease and the service's own
	// two-minute lease).
	h.skew.Store(int64(3 * time.Minute))
	if n := h.work(); n != 1 {
		t.Fatalf("the expired job was not taken (%d)", n)
	}
	if got := h.get(r.ID); got.Status != trustloop.RequestCompleted || result(t, got)["found"] != true {
		t.Fatalf("after the takeover: %s %s", got.Status, got.Result)
	}
	jobs, err := h.db.JobsOf(bg, h.ws, r.ID)
	if err != nil || len(jobs) != 1 || jobs[0].State != trustloop.JobDone || jobs[0].Attempts != 2 {
		t.Fatalf("jobs %+v %v", jobs, err)
	}
	// The dead worker, had it woken up, no longer holds it.
	if err := h.db.FinishJob(bg, job.ID, "dead", trustloop.JobDone, "", time.Time{}); trustloop.ErrorCode(err) != trustloop.ECONFLICT {
		t.Fatalf("the dead worker finished a job it lost: %v", err)
	}

	// Same for an erasure whose worker died after taking it and marking it in
	// progress.
	er := h.create(privacy.NewRequest{Type: trustloop.RequestErasure, Identifier: "user_id:" + p.user, VerifiedBy: "key:1"})
	if job, err := h.db.ClaimJob(bg, "dead", []string{privacy.JobKind}, h.svc.Now(), time.Second); err != nil || job == nil {
		t.Fatalf("ClaimJob: %+v %v", job, err)
	}
	started := h.get(er.ID)
	started.Status, started.Progress = trustloop.RequestInProgress, "started"
	if err := h.db.UpdatePrivacyRequest(bg, started, nil); err != nil {
		t.Fatal(err)
	}
	h.skew.Add(int64(time.Minute))
	if n := h.work(); n != 1 {
		t.Fatalf("worked %d", n)
	}
	if got := h.get(er.ID); got.Status != trustloop.RequestCompleted || got.Receipt == "" {
		t.Fatalf("erasure after the takeover: %s", got.Status)
	}
	if _, err := h.lookup(trustloop.IDUserID, p.user); trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
		t.Fatalf("Lookup after the erasure: %v", err)
	}
}

// Erasure while the same subject's events keep arriving: nothing erased comes
// back (acceptance point of issue 5). Every stored event of X began its
// ingestion after the erasure completed, no event sealed under an erased key
// is left, and X's profile, if X came back, counts exactly those events. With
// suppression nothing of X is stored at all.
// The race is real: at least one round must have had events of X in flight
// across the erasure, prepared before it and dropped after it ("erased");
// rounds go on (up to 10) until one has, so a slow machine that serialized
// every round does not pass vacuously.
func TestErasureDuringIngestion(t *testing.T) {
	t.Parallel()
	for _, suppress := range []bool{false, true} {
		t.Run(fmt.Sprintf("suppress=%v", suppress), func(t *testing.T) {
			t.Parallel()
			raced := 0
			for round := 0; round < 3 || raced == 0 && round < 10; round++ {
				if eraseWhileIngesting(t, suppress, round) > 0 {
					raced++
				}
			}
			if raced == 0 {
				t.Fatal("in no round was an event of X in flight across the erasure: the race was not tested")
			}
		})
	}
}

// eraseWhileIngesting runs one round and returns how many events of X were
// in flight across the erasure (dropped as erased).
func eraseWhileIngesting(t *testing.T, suppress bool, round int) int {
	h := newHarness(t)
	x, y := newPerson("x", "Xan"), newPerson("y", "Yul")
	h.history(x)
	h.history(y)
	req := h.create(privacy.NewRequest{Type: trustloop.RequestErasure, Identifier: "user_id:" + x.user, Suppress: suppress, VerifiedBy: "key:1"})

	type sent struct{ start, ack time.Time }
	var (
		mu        sync.Mutex
		erasedAt  time.Time
		erasedIDs []int64
		acked     = map[string]sent{} // acknowledged events of X
		yAcked    = map[string]bool{}
		ingestErr error
		xAcked    atomic.Int64
		stop      atomic.Bool
		failed    atomic.Bool
		wg        sync.WaitGroup
	)
	h.svc.OnErase = []func(context.Context, privacy.Erased) error{func(_ context.Context, e privacy.Erased) error {
		mu.Lock()
		erasedAt, erasedIDs = time.Now(), e.KeyIDs
		mu.Unlock()
		return nil
	}}
	// Three senders: X's user id; X's user id and X's email in an identify
	// from another anonymous id (joined to X by the email; always the same
	// one, so X stays within the identity limits: see
	// TestErasureOfEventsBeyondIdentityLimits); X and Y.
	for g := 0; g < 3; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				id := fmt.Sprintf("race-%d-%d-%d", round, g, i)
				body := `{"type":"track","messageId":"` + id + `","userId":` + q(x.user) + `,"event":"Product Viewed","properties":{"product_id":"` + id + `"}}`
				isY := g == 2 && i%2 == 1
				switch {
				case isY:
					body = `{"type":"track","messageId":"` + id + `","userId":` + q(y.user) + `,"event":"Product Viewed"}`
				case g == 1 && i%2 == 1:
					body = `{"type":"identify","messageId":"` + id + `","anonymousId":` + q("race-"+x.anon) + `,"traits":{"email":` + q(x.email) + `}}`
				}
				req, err := collect.Decode([]byte(`{"batch":[`+body+`]}`), collect.Batch, collect.Options{ReceivedAt: time.Now().UTC()})
				if err != nil {
					panic(err)
				}
				start := time.Now()
				err = h.pipeline.Ingest(bg, h.src, req.Messages)
				ack := time.Now()
				mu.Lock()
				switch {
				case err != nil:
					ingestErr = err
					failed.Store(true)
				case isY:
					yAcked[id] = true
				default:
					acked[id] = sent{start, ack}
					xAcked.Add(1)
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	waitFor := func(n int64) {
		deadline := time.Now().Add(10 * time.Second)
		for xAcked.Load() < n && time.Now().Before(deadline) && !failed.Load() {
			time.Sleep(time.Millisecond)
		}
	}
	waitFor(15)
	runStart := time.Now()
	if did, err := h.svc.RunOnce(bg); err != nil || !did {
		t.Fatalf("RunOnce: %v %v", did, err)
	}
	runEnd := time.Now()
	waitFor(xAcked.Load() + 20)
	stop.Store(true)
	wg.Wait()
	if ingestErr != nil {
		t.Fatalf("ingest: %v", ingestErr)
	}
	if got := h.get(req.ID); got.Status != trustloop.RequestCompleted || got.Subject != nil {
		t.Fatalf("the erasure: %s", got.Status)
	}
	if erasedAt.Before(runStart) || erasedAt.After(runEnd) || len(erasedIDs) == 0 {
		t.Fatalf("erasure hook at %s, run %s–%s, keys %v", erasedAt, runStart, runEnd, erasedIDs)
	}

	// Every event left opens with a stored key; none is sealed under an
	// erased key.
	evs, err := h.db.ListEvents(bg, h.ws, 0, 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	var keyIDs []int64
	for _, e := range evs {
		keyIDs = append(keyIDs, e.KeyID)
	}
	sks, err := h.db.FindSubjectKeysByID(bg, h.ws, keyIDs)
	if err != nil {
		t.Fatal(err)
	}
	var byUser, byEmail []string // stored events of X
	yStored := 0
	for _, e := range evs {
		if slices.Contains(erasedIDs, e.KeyID) {
			t.Fatalf("round %d: event %d is sealed under erased key %d", round, e.Seq, e.KeyID)
		}
		sk, ok := sks[e.KeyID]
		if !ok {
			t.Fatalf("round %d: event %d is sealed under key %d, which does not exist", round, e.Seq, e.KeyID)
		}
		k, err := h.keys.OpenSubjectKey(sk)
		if err != nil {
			t.Fatal(err)
		}
		env, err := projection.OpenEvent(h.ws, e, k)
		if err != nil {
			t.Fatal(err)
		}
		u, _ := collect.LookupString(env.Message, "userId")
		switch {
		case u == x.user:
			byUser = append(byUser, env.MessageID)
		case bytes.Contains(env.Message, []byte(x.email)):
			byEmail = append(byEmail, env.MessageID)
		case u == y.user && yAcked[env.MessageID]:
			yStored++
		}
		for _, v := range []string{x.anon2, x.device, x.phone, x.name} {
			if bytes.Contains(env.Message, []byte(v)) {
				t.Fatalf("round %d: an event with X's %q survived", round, v)
			}
		}
	}
	if yStored != len(yAcked) {
		t.Fatalf("round %d: %d of Y's %d acknowledged events stored", round, yStored, len(yAcked))
	}
	// No resurrection: every stored event of X began its ingestion after the
	// erasure completed (the hook runs after the erasure's commit, before the
	// collector moves on).
	for _, id := range append(slices.Clone(byUser), byEmail...) {
		s, ok := acked[id]
		if !ok {
			t.Fatalf("round %d: stored event %s of X was never acknowledged", round, id)
		}
		if !s.start.After(erasedAt) {
			t.Errorf("round %d: X's event %s began ingestion %s before the erasure completed, and survived it",
				round, id, erasedAt.Sub(s.start))
		}
	}
	// No loss either: what was sent once the erasure had returned is kept
	// (unless suppressed).
	inFlight, after := 0, 0
	for id, s := range acked {
		if s.start.Before(erasedAt) && s.ack.After(erasedAt) {
			inFlight++
		}
		if s.start.After(runEnd) {
			after++
			if !suppress && !slices.Contains(byUser, id) && !slices.Contains(byEmail, id) {
				t.Errorf("round %d: X's event %s, sent after the erasure returned, was not stored", round, id)
			}
		}
	}
	// Events in flight across the erasure were dropped (only X's: Y's are
	// all stored, above); each began before the erasure returned and is not
	// stored.
	erasedDrops, gone := h.drops.count("erased"), 0
	for id, s := range acked {
		if s.start.Before(runEnd) && !slices.Contains(byUser, id) && !slices.Contains(byEmail, id) {
			gone++
		}
	}
	if erasedDrops > gone {
		t.Fatalf("round %d: %d events dropped as erased, but only %d of X's that began before the erasure returned are not stored",
			round, erasedDrops, gone)
	}
	t.Logf("round %d: %d events of X acknowledged, %d in flight during the erasure (%d dropped as erased), %d sent after it; "+
		"stored %d by user id, %d by email; %d of Y",
		round, len(acked), inFlight, erasedDrops, after, len(byUser), len(byEmail), yStored)
	// The profiles of X's identifiers, if X came back, count exactly the
	// events stored since.
	for _, c := range []struct {
		typ, value string
		stored     []string
	}{{trustloop.IDUserID, x.user, byUser}, {trustloop.IDEmail, x.email, byEmail}} {
		prof, err := h.lookup(c.typ, c.value)
		if len(c.stored) == 0 {
			if trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
				t.Fatalf("round %d: no event of X's %s is stored, but it has a profile: %v", round, c.typ, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("round %d: X came back by %s but has no profile: %v", round, c.typ, err)
		}
		if n := prof.Computed[profile.ComputedEvents]; fmt.Sprint(n) != fmt.Sprint(len(c.stored)) {
			t.Fatalf("round %d: X's %s profile counts %v events, %d are stored", round, c.typ, n, len(c.stored))
		}
		for _, id := range prof.Identities {
			if id.Value == x.anon2 || id.Value == x.phone || id.Value == x.device {
				t.Fatalf("round %d: X's new profile holds erased identifier %s", round, id.Type)
			}
		}
		if _, ok := prof.Traits["name"]; ok {
			t.Fatalf("round %d: X's new profile holds the erased name", round)
		}
	}
	if suppress && len(byUser)+len(byEmail) != 0 {
		t.Fatalf("round %d: with suppression %d events of X were stored", round, len(byUser)+len(byEmail))
	}
	if !suppress && len(byUser) == 0 {
		t.Fatalf("round %d: no event of X after the erasure was stored", round)
	}
	return erasedDrops
}
