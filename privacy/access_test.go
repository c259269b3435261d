package privacy_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/privacy"
	"github.com/trustloop/trustloop/sqlite"
)

// exportPackage runs an access request for the identifier and returns its
// JSON package, decoded and raw.
func (h *harness) exportPackage(identifier string) (map[string]any, []byte) {
	h.t.Helper()
	r := h.run(privacy.NewRequest{Type: trustloop.RequestAccess, Identifier: identifier})
	var buf bytes.Buffer
	if err := h.svc.Export(bg, h.ws, r.ID, "json", trustloop.AuditActor{Kind: trustloop.ActorAPIKey, ID: "key:1"}, &buf); err != nil {
		h.t.Fatal(err)
	}
	var pkg map[string]any
	if err := json.Unmarshal(buf.Bytes(), &pkg); err != nil {
		h.t.Fatalf("the package is not JSON: %v", err)
	}
	return pkg, buf.Bytes()
}

// packageConsent returns the hashes of a package's consent history.
func packageConsent(pkg map[string]any) []string {
	var out []string
	hist, _ := pkg["consent_history"].([]any)
	for _, e := range hist {
		out = append(out, e.(map[string]any)["hash"].(string))
	}
	slices.Sort(out)
	return out
}

// consentBy returns the hashes of the consent records under a blind index
// that the given messages carried.
func (h *harness) consentBy(blind []byte, messageIDs ...string) []string {
	h.t.Helper()
	recs, err := h.db.ConsentRecords(bg, h.ws, blind)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, id := range messageIDs {
		mh, err := h.keys.MessageHash(h.ws, id)
		if err != nil {
			h.t.Fatal(err)
		}
		for _, r := range recs {
			if r.Evidence == "message:"+hex.EncodeToString(mh) {
				out = append(out, hex.EncodeToString(r.Hash))
			}
		}
	}
	slices.Sort(out)
	return out
}

// A broken client sends a blocked anonymous id ("null"), which the identity
// rules keep out: its events are sealed under the blocked value's key and
// applied to the profile of their email (the foreign timeline); consent
// changes they carry are kept under no one's name for the blocked value (a
// placeholder names no one), only under a real id they carry. Ann's profile
// is made by such an event, so its key is the blocked value's. Her access
// package holds her own consent and nothing of Bob's, who sends the same
// value: not his consent, not his events under its key; and erasing Ann
// keeps the key, Bob's events and his consent.
func TestAccessPackageUnderBlockedKey(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ann, bob := newPerson("a", "Ann"), newPerson("b", "Bob")
	nullBlind := h.blind(trustloop.IDAnonymousID, "null")
	// consentChange is a banner's change sent with ids, and an email in
	// context.traits unless email is empty.
	consentChange := func(id, ids, email, prefs string) string {
		traits := ""
		if email != "" {
			traits = `"traits":{"email":` + q(email) + `},`
		}
		return `{"type":"track","messageId":` + q(id) + `,` + ids + `,"event":"Segment Consent Preference Updated",` +
			`"context":{` + traits + `"consent":{"categoryPreferences":` + prefs + `}}}`
	}
	viewed := func(id, email, sku string) string {
		return `{"type":"track","messageId":` + q(id) + `,"anonymousId":"null","event":"Product Viewed",` +
			`"properties":{"product_id":` + q(sku) + `},"context":{"traits":{"email":` + q(email) + `}}}`
	}
	h.ingest("", viewed("a1-"+ann.user, ann.email, ann.sku),
		consentChange("a2-"+ann.user, `"anonymousId":"null"`, ann.email, `{"Advertising":false}`))
	h.ingest("", `{"type":"identify","messageId":"a3-`+ann.user+`","anonymousId":`+q(ann.anon)+`,"userId":`+q(ann.user)+
		`,"traits":{"email":`+q(ann.email)+`,"name":`+q(ann.name)+`}}`)
	// Ann's banner on her own device: kept under her anonymous id.
	h.ingest("", consentChange("a4-"+ann.user, `"anonymousId":`+q(ann.anon), "", `{"Analytics":true}`))
	// Bob, logged in, changes consent with the blocked value as his
	// anonymous id: his message is sealed under his user id's key, so every
	// event under the blocked value's key is still Ann's, and his change is
	// kept under his user id alone.
	h.ingest("", consentChange("b1-"+bob.user, `"userId":`+q(bob.user)+`,"anonymousId":"null"`, "", `{"Analytics":false}`))
	if got := h.consentBy(nullBlind, "a2-"+ann.user, "b1-"+bob.user); len(got) != 0 {
		t.Fatalf("consent kept under the blocked value: %v", got)
	}
	annConsent := h.consentBy(h.blind(trustloop.IDAnonymousID, ann.anon), "a4-"+ann.user)
	if len(annConsent) == 0 {
		t.Fatal("Ann's own banner choice was not kept")
	}
	check := func(when string, wantEvents int) {
		t.Helper()
		pkg, raw := h.exportPackage("email:" + ann.email)
		if got := packageConsent(pkg); !slices.Equal(got, annConsent) {
			t.Errorf("%s: Ann's package has consent %v, want hers %v", when, got, annConsent)
		}
		if n := pkg["event_count"]; n != float64(wantEvents) {
			t.Errorf("%s: Ann's package has %v events, want %d", when, n, wantEvents)
		}
		for _, v := range []string{ann.sku, ann.name, "a2-" + ann.user} {
			if !bytes.Contains(raw, []byte(v)) {
				t.Errorf("%s: Ann's package lacks %q", when, v)
			}
		}
		for _, v := range bob.values() {
			if bytes.Contains(raw, []byte(v)) {
				t.Errorf("%s: Bob's %q is in Ann's package", when, v)
			}
		}
	}
	check("the blocked value's key holds Ann's events only", 4)

	// Bob's client sends the blocked value alone, with his email, and a
	// consent change the same way (the key is shared now, its first event
	// having made a profile of Bob's email), then he logs in with the email.
	h.ingest("", viewed("b2-"+bob.user, bob.email, bob.sku),
		consentChange("b3-"+bob.user, `"anonymousId":"null"`, bob.email, `{"Functional":false}`),
		`{"type":"identify","messageId":"b4-`+bob.user+`","userId":`+q(bob.user)+`,"traits":{"email":`+q(bob.email)+`}}`)
	check("the blocked value's key is shared", 4)

	bobPkg, bobRaw := h.exportPackage("email:" + bob.email)
	bobAll := h.consentBy(h.blind(trustloop.IDUserID, bob.user), "b1-"+bob.user)
	if got := packageConsent(bobPkg); !slices.Equal(got, bobAll) {
		t.Errorf("Bob's package has consent %v, want %v", got, bobAll)
	}
	if bytes.Contains(bobRaw, []byte(ann.sku)) || bytes.Contains(bobRaw, []byte(ann.email)) {
		t.Errorf("Ann's events are in Bob's package")
	}

	// Erasing Ann takes her events under the blocked value's key, not the
	// key: Bob's events under it stay readable, his profile and consent too.
	before := h.events()
	res := result(t, h.run(privacy.NewRequest{Type: trustloop.RequestErasure, Identifier: "email:" + ann.email}))
	if res["found"] != true || h.events() != before-4 {
		t.Fatalf("the erasure: %v; events %d → %d", res, before, h.events())
	}
	after, raw := h.exportPackage("email:" + bob.email)
	if after["event_count"] != bobPkg["event_count"] || !bytes.Contains(raw, []byte(bob.sku)) {
		t.Fatalf("Bob's events after Ann's erasure: %v, want %v", after["event_count"], bobPkg["event_count"])
	}
	if got := packageConsent(after); !slices.Equal(got, bobAll) {
		t.Errorf("Bob's consent after Ann's erasure: %v, want %v", got, bobAll)
	}
	if got := h.consentBy(h.blind(trustloop.IDAnonymousID, ann.anon), "a4-"+ann.user); len(got) != 0 {
		t.Errorf("Ann's consent survived her erasure: %v", got)
	}
}

// progressStore records the progress of every request update, and can act
// at the first progress report of a running request.
type progressStore struct {
	*sqlite.DB
	mu       sync.Mutex
	progress []string
	first    func(r *trustloop.PrivacyRequest)
}

func (p *progressStore) UpdatePrivacyRequest(ctx context.Context, r *trustloop.PrivacyRequest, job *trustloop.Job) error {
	p.mu.Lock()
	first := p.first
	if strings.HasPrefix(r.Progress, "counted ") {
		p.first = nil
	} else {
		first = nil
	}
	p.mu.Unlock()
	if first != nil {
		first(r)
	}
	err := p.DB.UpdatePrivacyRequest(ctx, r, job)
	if err == nil {
		p.mu.Lock()
		p.progress = append(p.progress, r.Progress)
		p.mu.Unlock()
	}
	return err
}

// An access request reports on the request how many events it has counted,
// every ProgressEvery; one changed meanwhile takes the progress still, one
// rejected meanwhile stops.
func TestAccessProgress(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ps := &progressStore{DB: h.db}
	h.svc.Store, h.svc.ProgressEvery = ps, 4
	p := newPerson("p", "Pia")
	var msgs []string
	for i := range 9 {
		msgs = append(msgs, `{"type":"track","messageId":"`+p.user+`-`+strconv.Itoa(i)+`","userId":`+q(p.user)+`,"event":"Product Viewed"}`)
	}
	h.ingest("", msgs...)

	r := h.run(privacy.NewRequest{Type: trustloop.RequestAccess, Identifier: "user_id:" + p.user})
	if want := []string{"started", "counted 4 events", "counted 8 events", "done"}; !slices.Equal(ps.progress, want) {
		t.Fatalf("progress %q, want %q", ps.progress, want)
	}
	if res := result(t, r); res["events"] != 9.0 || r.Progress != "done" {
		t.Fatalf("result %v, progress %q", res, r.Progress)
	}

	// Extended while it counts: the progress is recorded on the extended
	// request, which completes extended.
	ps.progress = nil
	ps.first = func(r *trustloop.PrivacyRequest) {
		if _, err := h.svc.Extend(bg, h.ws, r.ID, "many events", trustloop.AuditActor{}); err != nil {
			t.Error(err)
		}
	}
	r = h.run(privacy.NewRequest{Type: trustloop.RequestPortability, Identifier: "user_id:" + p.user})
	if r.ExtendedAt.IsZero() || result(t, r)["events"] != 9.0 {
		t.Fatalf("extended while counting: extended at %v, result %s", r.ExtendedAt, r.Result)
	}
	// (The extension's own update keeps the progress it found: started.)
	if want := []string{"started", "started", "counted 4 events", "counted 8 events", "done"}; !slices.Equal(ps.progress, want) {
		t.Fatalf("progress %q, want %q", ps.progress, want)
	}

	// Rejected while it counts: the work stops, the request stays rejected.
	ps.first = func(r *trustloop.PrivacyRequest) {
		if _, err := h.svc.Reject(bg, h.ws, r.ID, "not verified after all", trustloop.AuditActor{}); err != nil {
			t.Error(err)
		}
	}
	r = h.create(privacy.NewRequest{Type: trustloop.RequestAccess, Identifier: "user_id:" + p.user, VerifiedBy: "key:1"})
	if n := h.work(); n != 1 {
		t.Fatalf("the worker ran %d jobs", n)
	}
	if got := h.get(r.ID); got.Status != trustloop.RequestRejected || got.Result != nil {
		t.Fatalf("rejected while counting: %s, result %s", got.Status, got.Result)
	}
	// Its job is over, not failed and waiting for a retry.
	jobs, err := h.db.JobsOf(bg, h.ws, r.ID)
	if err != nil || len(jobs) != 1 || jobs[0].State != trustloop.JobDone || jobs[0].LastError != "" {
		t.Fatalf("the job of the request rejected while counting: %+v %v", jobs, err)
	}
}
