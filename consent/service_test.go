package consent_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/consent"
	"github.com/trustloop/trustloop/keyring"
	"github.com/trustloop/trustloop/sqlite"
	"github.com/trustloop/trustloop/storetest"
)

type env struct {
	svc  *consent.Service
	db   *sqlite.DB
	keys *keyring.Keyring
	ws   int64
	src  *trustloop.Source
	now  time.Time
}

func newEnv(t *testing.T, c *consent.Catalog) *env {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	kr := keyring.New(bytes.Repeat([]byte{3}, keyring.KeySize), 100)
	b := storetest.Bootstrap("default")
	b.Workspace.IndexKey = kr.NewIndexKey()
	if _, err := db.Bootstrap(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := kr.AddWorkspace(&b.Workspace); err != nil {
		t.Fatal(err)
	}
	e := &env{svc: consent.New(db, kr, slog.New(slog.NewTextHandler(io.Discard, nil)), 400_000), db: db, keys: kr,
		ws: b.Workspace.ID, src: &b.Source, now: time.Now().UTC().Truncate(time.Millisecond)}
	e.svc.Now = func() time.Time { return e.now }
	if c != nil {
		if _, err := e.svc.PutCatalog(ctx, e.ws, c, 0); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func (e *env) blind(t *testing.T, typ, v string) []byte {
	b, err := e.keys.Blind(e.ws, typ, v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// admit decides one message of user (and anon, when not empty).
func (e *env) admit(t *testing.T, m trustloop.Message, user, anon string) consent.Admission {
	t.Helper()
	m.UserID, m.AnonymousID = user, anon
	if m.MessageID == "" {
		m.MessageID = fmt.Sprint(time.Now().UnixNano())
	}
	var ub, ab []byte
	if user != "" {
		ub = e.blind(t, trustloop.IDUserID, user)
	}
	if anon != "" {
		ab = e.blind(t, trustloop.IDAnonymousID, anon)
	}
	a, err := e.svc.Admit(context.Background(), e.src, &m, []byte("hash"), ub, ab)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

var viewed = trustloop.Message{Type: trustloop.EventTrack, Event: "Product Viewed"}

func prefUpdate(prefs map[string]bool) trustloop.Message {
	return trustloop.Message{Type: trustloop.EventTrack, Event: consent.ConsentPreferenceUpdated,
		Consent: trustloop.ConsentSignals{CategoryPreferences: prefs}}
}

func TestAdmitOptInFailsClosed(t *testing.T) {
	e := newEnv(t, nil)
	if a := e.admit(t, viewed, "u1", ""); len(a.Purposes) != 0 {
		t.Fatalf("a product view without consent under opt-in serves %v", a.Purposes)
	}
	if a := e.admit(t, trustloop.Message{Type: trustloop.EventIdentify}, "u1", ""); fmt.Sprint(a.Purposes) != "[essential]" {
		t.Fatalf("an identify serves %v, want the contract only", a.Purposes)
	}
	// Context saying yes does not grant under opt-in.
	m := viewed
	m.Consent.CategoryPreferences = map[string]bool{"Analytics": true}
	if a := e.admit(t, m, "u1", ""); len(a.Purposes) != 0 {
		t.Fatalf("context alone granted %v", a.Purposes)
	}
}

func TestPreferenceUpdateRecordsOnceAndCarriesOverLogin(t *testing.T) {
	e := newEnv(t, nil)
	upd := prefUpdate(map[string]bool{"Analytics": true, "Advertising": false})
	a := e.admit(t, upd, "", "anon-1")
	if a.Recorded != 2 {
		t.Fatalf("the update recorded %d records, want 2 (analytics given, marketing refused)", a.Recorded)
	}
	if a := e.admit(t, upd, "", "anon-1"); a.Recorded != 0 {
		t.Fatalf("the same update again recorded %d", a.Recorded)
	}
	if a := e.admit(t, viewed, "", "anon-1"); fmt.Sprint(a.Purposes) != "[essential analytics]" {
		t.Fatalf("after the update a view serves %v", a.Purposes)
	}
	// The login: the user id has no records, the anonymous id's choice counts.
	if a := e.admit(t, viewed, "user-1", "anon-1"); fmt.Sprint(a.Purposes) != "[essential analytics]" {
		t.Fatalf("after login a view serves %v", a.Purposes)
	}
	// Withdrawal through a later update under the user id: the newer choice wins.
	e.now = e.now.Add(time.Second)
	e.admit(t, prefUpdate(map[string]bool{"Analytics": false}), "user-1", "anon-1")
	if a := e.admit(t, viewed, "user-1", "anon-1"); len(a.Purposes) != 0 {
		t.Fatalf("after withdrawal a view serves %v", a.Purposes)
	}
	recs, _ := e.db.ConsentRecords(context.Background(), e.ws, e.blind(t, trustloop.IDUserID, "user-1"))
	if len(recs) != 1 || recs[0].State != trustloop.ConsentWithdrawn || recs[0].Method != trustloop.MethodBanner {
		t.Fatalf("user's records %+v", recs)
	}
}

func TestGPCRecordsOptOutOnce(t *testing.T) {
	c := consent.DefaultCatalog()
	c.Regime = consent.RegimeOptOut
	e := newEnv(t, c)
	m := viewed
	m.Consent.GPC = true
	a := e.admit(t, m, "u1", "")
	if a.Recorded != 2 || fmt.Sprint(a.Purposes) != "[essential analytics personalization]" {
		t.Fatalf("GPC: recorded %d, purposes %v", a.Recorded, a.Purposes)
	}
	if a := e.admit(t, m, "u1", ""); a.Recorded != 0 {
		t.Fatalf("GPC again recorded %d", a.Recorded)
	}
	// Without the header the refusal stands: it is stored.
	if a := e.admit(t, viewed, "u1", ""); fmt.Sprint(a.Purposes) != "[essential analytics personalization]" {
		t.Fatalf("after GPC, a view without the header serves %v", a.Purposes)
	}
	recs, _ := e.db.ConsentRecords(context.Background(), e.ws, e.blind(t, trustloop.IDUserID, "u1"))
	for _, r := range recs {
		if r.Method != trustloop.MethodGPC || r.State != trustloop.ConsentRefused {
			t.Fatalf("GPC record %+v", r)
		}
	}
}

func TestJurisdictionOverridesRegime(t *testing.T) {
	c := consent.DefaultCatalog()
	c.Jurisdictions = map[string]string{"US-CA": consent.RegimeOptOut}
	e := newEnv(t, c)
	m := viewed
	m.Consent.Jurisdiction = "us-ca"
	if a := e.admit(t, m, "u1", ""); fmt.Sprint(a.Purposes) != "[essential analytics personalization marketing sharing]" {
		t.Fatalf("a Californian view under an opt-in workspace serves %v", a.Purposes)
	}
	m.Consent.Jurisdiction = "DE"
	if a := e.admit(t, m, "u2", ""); len(a.Purposes) != 0 {
		t.Fatalf("a German view serves %v", a.Purposes)
	}
}

func TestMalformedTCStringIsNoConsent(t *testing.T) {
	c := consent.DefaultCatalog()
	c.Regime = consent.RegimeOptOut
	e := newEnv(t, c)
	m := viewed
	m.Consent.TCString = "not-a-tc-string"
	if a := e.admit(t, m, "u1", ""); len(a.Purposes) != 0 {
		t.Fatalf("a malformed TC string allowed %v", a.Purposes)
	}
	// In a preference update it records the TCF purposes as refused (method tcf).
	upd := prefUpdate(nil)
	upd.Consent.TCString = "garbage"
	if a := e.admit(t, upd, "u2", ""); a.Recorded != 3 {
		t.Fatalf("a malformed TC string in an update recorded %d, want 3", a.Recorded)
	}
}

func TestRecordRefusesBadChanges(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	sub := [][]byte{e.blind(t, trustloop.IDUserID, "u1")}
	for _, tc := range []struct {
		changes []consent.Change
		meta    consent.Meta
	}{
		{[]consent.Change{{Purpose: "essential", State: trustloop.ConsentWithdrawn}}, consent.Meta{Method: trustloop.MethodAPI}},
		{[]consent.Change{{Purpose: "astrology", State: trustloop.ConsentGiven}}, consent.Meta{Method: trustloop.MethodAPI}},
		{[]consent.Change{{Purpose: "analytics", State: trustloop.ConsentGiven}}, consent.Meta{Method: "telepathy"}},
		{[]consent.Change{{Purpose: "analytics", State: trustloop.ConsentGiven}}, consent.Meta{Method: trustloop.MethodAPI, NoticeVersion: strings.Repeat("v", 101)}},
		{nil, consent.Meta{Method: trustloop.MethodAPI}},
	} {
		if _, _, err := e.svc.Record(ctx, e.ws, sub, tc.changes, tc.meta); trustloop.ErrorCode(err) != trustloop.EINVALID {
			t.Errorf("Record(%v, %+v) = %v, want invalid", tc.changes, tc.meta, err)
		}
	}
	if recs, _ := e.db.ConsentRecords(ctx, e.ws, sub[0]); len(recs) != 0 {
		t.Fatalf("refused changes left %d records", len(recs))
	}
}

func TestReceipts(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	sub := [][]byte{e.blind(t, trustloop.IDUserID, "u1"), e.blind(t, trustloop.IDAnonymousID, "a1")}
	jws, recs, err := e.svc.Record(ctx, e.ws, sub, []consent.Change{{Purpose: "analytics", State: trustloop.ConsentGiven}},
		consent.Meta{Method: trustloop.MethodPreferenceCenter, NoticeVersion: "n1", Jurisdiction: "DE"})
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := e.svc.PublicKey(e.ws)
	body, err := consent.VerifyReceipt(pub, jws, e.now)
	if err != nil {
		t.Fatal(err)
	}
	if len(body.Records) != 2 || body.Records[0].Seq != 1 || body.Changes[0].State != "given" || body.ExpiresAt == nil ||
		!body.ExpiresAt.Equal(e.now.AddDate(0, 0, 395)) || recs[0].ReceiptID != body.ReceiptID {
		t.Fatalf("receipt body %+v", body)
	}
	stored, err := e.svc.Receipt(ctx, e.ws, body.ReceiptID)
	if err != nil || string(stored.Body) != jws {
		t.Fatalf("stored receipt %v, %v", stored, err)
	}
	parts := strings.Split(jws, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	otherPub, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	otherJWS, _ := consent.SignReceipt(otherKey, body)
	for name, bad := range map[string]string{
		"changed payload": parts[0] + "." + base64.RawURLEncoding.EncodeToString(bytes.Replace(payload, []byte("given"), []byte("gone!"), 1)) + "." + parts[2],
		"changed header":  base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + "." + parts[1] + "." + parts[2],
		"other key":       otherJWS,
		"two parts":       parts[0] + "." + parts[1],
		"not base64":      "a.b.c!",
		"empty":           "",
	} {
		if _, err := consent.VerifyReceipt(pub, bad, e.now); trustloop.ErrorCode(err) != trustloop.EINVALID {
			t.Errorf("%s: VerifyReceipt = %v, want invalid", name, err)
		}
	}
	if _, err := consent.VerifyReceipt(otherPub, otherJWS, e.now); err != nil {
		t.Errorf("a receipt under its own key: %v", err)
	}
	if _, err := consent.VerifyReceipt(pub, jws, e.now.AddDate(0, 0, 396)); trustloop.ErrorCode(err) != trustloop.EINVALID ||
		!strings.Contains(err.Error(), "expired") {
		t.Errorf("an expired receipt: %v", err)
	}
	if _, err := e.svc.Receipt(ctx, e.ws, strings.Repeat("x", 200)); trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
		t.Errorf("an absurd receipt id: %v", err)
	}
}

func TestExpiredConsentFailsClosed(t *testing.T) {
	e := newEnv(t, nil)
	e.admit(t, prefUpdate(map[string]bool{"Analytics": true}), "u1", "")
	if a := e.admit(t, viewed, "u1", ""); fmt.Sprint(a.Purposes) != "[essential analytics]" {
		t.Fatalf("given consent: %v", a.Purposes)
	}
	e.now = e.now.AddDate(0, 0, 396)
	if a := e.admit(t, viewed, "u1", ""); len(a.Purposes) != 0 {
		t.Fatalf("13 months later the consent still serves %v", a.Purposes)
	}
}

func TestCatalogValidation(t *testing.T) {
	mod := func(f func(c *consent.Catalog)) *consent.Catalog {
		c := consent.DefaultCatalog()
		f(c)
		return c
	}
	cases := map[string]*consent.Catalog{
		"bad regime":       mod(func(c *consent.Catalog) { c.Regime = "maybe" }),
		"bad jurisdiction": mod(func(c *consent.Catalog) { c.Jurisdictions = map[string]string{"US CA": consent.RegimeOptOut} }),
		"ttl too long":     mod(func(c *consent.Catalog) { c.ConsentTTLDays = 5000 }),
		"duplicate id":     mod(func(c *consent.Catalog) { c.Purposes = append(c.Purposes, c.Purposes[1]) }),
		"bad id":           mod(func(c *consent.Catalog) { c.Purposes[1].ID = "Analytics!" }),
		"no description":   mod(func(c *consent.Catalog) { c.Purposes[1].Description = " " }),
		"NUL in a title":   mod(func(c *consent.Catalog) { c.Purposes[1].Title = "Ana\x00lytics" }),
		"tab in a title":   mod(func(c *consent.Catalog) { c.Purposes[1].Title = "Ana\tlytics" }),
		"escape in a text": mod(func(c *consent.Catalog) {
			c.Purposes[1].Texts["de"] = consent.PurposeText{Title: "Analyse", Description: "x\x1b[31m"}
		}),
		"contract for ads":    mod(func(c *consent.Catalog) { c.Purposes[3].LegalBasis = consent.BasisContract }),
		"essential consent":   mod(func(c *consent.Catalog) { c.Purposes[0].LegalBasis = consent.BasisConsent }),
		"opt-in default yes":  mod(func(c *consent.Catalog) { c.Purposes[1].DefaultAllowed[consent.RegimeOptIn] = true }),
		"unknown category":    mod(func(c *consent.Catalog) { c.Purposes[1].Categories = []string{"dreams"} }),
		"no categories":       mod(func(c *consent.Catalog) { c.Purposes[1].Categories = nil }),
		"alias twice":         mod(func(c *consent.Catalog) { c.Purposes[2].Aliases = []string{"analytics"} }),
		"TCF out of range":    mod(func(c *consent.Catalog) { c.Purposes[1].TCFPurposes = []int{1, 12} }),
		"TCF without 1":       mod(func(c *consent.Catalog) { c.Purposes[1].TCFPurposes = []int{8} }),
		"TCF for sharing":     mod(func(c *consent.Catalog) { c.Purposes[4].TCFPurposes = []int{1, 10} }),
		"default removed":     mod(func(c *consent.Catalog) { c.Purposes = c.Purposes[:4] }),
		"negative retention":  mod(func(c *consent.Catalog) { c.Purposes[1].RetentionDays = -1 }),
		"unknown regime name": mod(func(c *consent.Catalog) { c.Purposes[1].DefaultAllowed["gdpr"] = false }),
	}
	for name, c := range cases {
		if err := consent.Validate(c, nil, nil); trustloop.ErrorCode(err) != trustloop.EINVALID {
			t.Errorf("%s: Validate = %v, want invalid", name, err)
		}
	}
	// A custom purpose may be added, and removed while nothing depends on it,
	// but not once consent names it.
	withCustom := mod(func(c *consent.Catalog) {
		c.Purposes = append(c.Purposes, consent.Purpose{ID: "research", Title: "Research", Description: "We study anonymised trends.",
			LegalBasis: consent.BasisConsent, Categories: []string{trustloop.CategoryBehavior}})
	})
	if err := consent.Validate(withCustom, nil, nil); err != nil {
		t.Fatal(err)
	}
	used := func(bool) func(string) (bool, error) {
		return func(string) (bool, error) { return true, nil }
	}
	if err := consent.Validate(consent.DefaultCatalog(), withCustom, func(string) (bool, error) { return false, nil }); err != nil {
		t.Fatalf("removing an unused custom purpose: %v", err)
	}
	if err := consent.Validate(consent.DefaultCatalog(), withCustom, used(true)); trustloop.ErrorCode(err) != trustloop.ECONFLICT {
		t.Fatalf("removing a custom purpose with consent: %v", err)
	}
	if _, err := consent.DecodeCatalog([]byte(`{"regime":"opt_in","purposes":[],"surprise":1}`)); trustloop.ErrorCode(err) != trustloop.EINVALID {
		t.Fatalf("unknown field: %v", err)
	}
	// One object and nothing after it, whatever follows.
	for _, tail := range []string{"}", "]", "} garbage", " {}", "x"} {
		if _, err := consent.DecodeCatalog([]byte(`{"regime":"opt_in","purposes":[]}` + tail)); trustloop.ErrorCode(err) != trustloop.EINVALID {
			t.Fatalf("a catalog followed by %q: %v", tail, err)
		}
	}
	if _, err := consent.DecodeCatalog([]byte("{\"regime\":\"opt_in\",\"purposes\":[]}\n  ")); err != nil {
		t.Fatalf("trailing white space: %v", err)
	}
}

// A collector goroutine that read the store just before a change committed
// must not put its stale answer back into the cache after the change: every
// decision after Record returns sees the change (T4).
func TestChangeNotHiddenByConcurrentLoads(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	ub := e.blind(t, trustloop.IDUserID, "u1")
	k, _ := e.svc.Catalog(ctx, e.ws)
	stop := make(chan struct{})
	done := make(chan struct{})
	for range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for {
				select {
				case <-stop:
					return
				default:
				}
				e.svc.Stored(ctx, k, e.ws, ub)
			}
		}()
	}
	analytics, _ := k.Index("analytics")
	for i := range 400 {
		state := []string{trustloop.ConsentGiven, trustloop.ConsentWithdrawn}[i%2]
		if _, _, err := e.svc.Record(ctx, e.ws, [][]byte{ub}, []consent.Change{{Purpose: "analytics", State: state}},
			consent.Meta{Method: trustloop.MethodAPI}); err != nil {
			t.Fatal(err)
		}
		st, _, err := e.svc.Stored(ctx, k, e.ws, ub)
		if err != nil {
			t.Fatal(err)
		}
		if st.Given.Has(analytics) != (state == trustloop.ConsentGiven) {
			close(stop)
			t.Fatalf("change %d (%s) hidden by a stale cache entry: %+v", i, state, st)
		}
	}
	close(stop)
	for range 4 {
		<-done
	}
}

// BenchmarkAdmit is the consent stage's cost per collected event once the
// subjects are cached: the bench load's shape (a logged-in visitor with an
// anonymous id, categoryPreferences, no stored choice, opt-out).
func BenchmarkAdmit(b *testing.B) {
	c := consent.DefaultCatalog()
	c.Regime = consent.RegimeOptOut
	t := &testing.T{}
	e := newEnv(t, c)
	const users = 100_000 // the bench load's: 150,000 subjects, beyond the CPU caches
	ub := make([][]byte, users)
	ab := make([][]byte, users)
	for i := range users {
		ub[i] = e.blind(t, trustloop.IDUserID, fmt.Sprint("user-", i))
		ab[i] = e.blind(t, trustloop.IDAnonymousID, fmt.Sprint("anon-", i))
	}
	m := viewed
	m.Consent.CategoryPreferences = map[string]bool{"Analytics": true, "Advertising": false, "Functional": true}
	ctx := context.Background()
	for i := range users { // warm the cache
		e.svc.Admit(ctx, e.src, &m, []byte("hash"), ub[i], ab[i])
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		a, err := e.svc.Admit(ctx, e.src, &m, []byte("hash"), ub[i%users], ab[i%users])
		if err != nil || len(a.Purposes) == 0 {
			b.Fatal(a, err)
		}
		i++
	}
}

// A profile's every subject counts: a withdrawal under the fifth anonymous id
// beats a consent given under the first (review finding: only four were read).
func TestStoredFoldsEverySubject(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	k, _ := e.svc.Catalog(ctx, e.ws)
	var subs [][]byte
	for i := range 6 {
		subs = append(subs, e.blind(t, trustloop.IDAnonymousID, fmt.Sprint("anon-", i)))
	}
	if _, _, err := e.svc.Record(ctx, e.ws, subs[:1], []consent.Change{{Purpose: "analytics", State: trustloop.ConsentGiven}}, consent.Meta{Method: trustloop.MethodAPI}); err != nil {
		t.Fatal(err)
	}
	e.now = e.now.Add(time.Minute)
	if _, _, err := e.svc.Record(ctx, e.ws, subs[5:], []consent.Change{{Purpose: "analytics", State: trustloop.ConsentWithdrawn}}, consent.Meta{Method: trustloop.MethodAPI}); err != nil {
		t.Fatal(err)
	}
	st, _, err := e.svc.StoredForRead(ctx, k, e.ws, subs...)
	if err != nil {
		t.Fatal(err)
	}
	if i, _ := k.Index("analytics"); !st.Withdrawn.Has(i) || st.Given.Has(i) {
		t.Fatalf("six subjects folded to %+v: the newest choice (withdrawn) must win", st)
	}
}

// A banner's yes renews a consent that expired (giving again is as easy as the
// first time).
func TestBannerRenewsExpiredConsent(t *testing.T) {
	e := newEnv(t, nil)
	upd := prefUpdate(map[string]bool{"Analytics": true})
	e.admit(t, upd, "u1", "")
	e.now = e.now.AddDate(0, 0, 400)
	if a := e.admit(t, upd, "u1", ""); a.Recorded != 1 {
		t.Fatalf("renewing an expired consent recorded %d", a.Recorded)
	}
	if a := e.admit(t, viewed, "u1", ""); fmt.Sprint(a.Purposes) != "[essential analytics]" {
		t.Fatalf("after renewal a view serves %v", a.Purposes)
	}
}

func TestCatalogAliasesAndJurisdictionsAreUnambiguous(t *testing.T) {
	c := consent.DefaultCatalog()
	c.Purposes[3].Aliases = append(c.Purposes[3].Aliases, "Analytics") // marketing named like analytics
	if err := consent.Validate(c, nil, nil); trustloop.ErrorCode(err) != trustloop.EINVALID {
		t.Fatalf("an alias equal to another purpose's id: %v", err)
	}
	c = consent.DefaultCatalog()
	c.Jurisdictions = map[string]string{"us-ca": consent.RegimeOptIn, "US-CA": consent.RegimeOptOut}
	if err := consent.Validate(c, nil, nil); trustloop.ErrorCode(err) != trustloop.EINVALID {
		t.Fatalf("jurisdictions differing only in case: %v", err)
	}
}

// A purpose an API key may read for stays in the catalog.
func TestPurposeOfAKeyStays(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	c := consent.DefaultCatalog()
	c.Purposes = append(c.Purposes, consent.Purpose{ID: "research", Title: "Research", Description: "Trends.",
		LegalBasis: consent.BasisConsent, Categories: []string{trustloop.CategoryBehavior}})
	saved, err := e.svc.PutCatalog(ctx, e.ws, c, 0)
	if err != nil {
		t.Fatal(err)
	}
	e.svc.KeysUsing = func(_ context.Context, _ int64, p string) (bool, error) { return p == "research", nil }
	if _, err := e.svc.PutCatalog(ctx, e.ws, consent.DefaultCatalog(), saved.Version); trustloop.ErrorCode(err) != trustloop.ECONFLICT {
		t.Fatalf("removing a purpose a key reads for: %v", err)
	}
	e.svc.KeysUsing = func(context.Context, int64, string) (bool, error) { return false, nil }
	if _, err := e.svc.PutCatalog(ctx, e.ws, consent.DefaultCatalog(), saved.Version); err != nil {
		t.Fatalf("removing it once no key does: %v", err)
	}
}

// The write key is public: an event's yes does not overturn a no the customer
// gave in the preference center (or through the API); an event's no always counts.
func TestEventsCannotOverturnAnAuthenticatedNo(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	ub := e.blind(t, trustloop.IDUserID, "victim")
	if _, _, err := e.svc.Record(ctx, e.ws, [][]byte{ub}, []consent.Change{{Purpose: "marketing", State: trustloop.ConsentRefused}},
		consent.Meta{Method: trustloop.MethodPreferenceCenter}); err != nil {
		t.Fatal(err)
	}
	e.now = e.now.Add(time.Minute)
	forged := prefUpdate(map[string]bool{"Marketing": true, "Analytics": true})
	if a := e.admit(t, forged, "victim", ""); a.Recorded != 1 {
		t.Fatalf("a banner update recorded %d, want 1 (analytics only)", a.Recorded)
	}
	m := viewed
	if a := e.admit(t, m, "victim", ""); slices.Contains(a.Purposes, "marketing") {
		t.Fatalf("an event overturned the preference center's no: %v", a.Purposes)
	}
	// The customer can still change it where they made it.
	if _, _, err := e.svc.Record(ctx, e.ws, [][]byte{ub}, []consent.Change{{Purpose: "marketing", State: trustloop.ConsentGiven}},
		consent.Meta{Method: trustloop.MethodPreferenceCenter}); err != nil {
		t.Fatal(err)
	}
	if a := e.admit(t, m, "victim", ""); !slices.Contains(a.Purposes, "marketing") {
		t.Fatalf("after the preference center's yes: %v", a.Purposes)
	}
}

// A message with no subject (the collector passes none for placeholder ids
// such as "null") is decided by its own signals, and records nothing: there
// is no one to record a banner choice or a GPC opt-out for (Record would
// refuse an empty subject list and fail the whole request).
func TestAdmitWithoutSubject(t *testing.T) {
	e := newEnv(t, nil)
	upd := prefUpdate(map[string]bool{"Analytics": true})
	upd.Consent.GPC = true
	if a := e.admit(t, upd, "", ""); a.Recorded != 0 || len(a.Purposes) == 0 {
		t.Fatalf("a subject-less preference update with GPC: recorded %d, purposes %v; want none recorded, the event admitted", a.Recorded, a.Purposes)
	}
	// Nothing stands for anyone afterwards: a view is decided by the regime.
	if a := e.admit(t, viewed, "", ""); len(a.Purposes) != 0 {
		t.Fatalf("a subject-less view after it serves %v, want nothing (opt-in)", a.Purposes)
	}
}

// A catalog document's own problems are said before whether it is stale,
// and a negative version is a mistake, not a conflict.
func TestPutCatalogInvalidBeforeStale(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	bad := consent.DefaultCatalog()
	bad.Regime = "maybe"
	if _, err := e.svc.PutCatalog(ctx, e.ws, bad, 99); trustloop.ErrorCode(err) != trustloop.EINVALID {
		t.Errorf("an invalid catalog with a stale version: %v, want EINVALID", err)
	}
	if _, err := e.svc.PutCatalog(ctx, e.ws, consent.DefaultCatalog(), -1); trustloop.ErrorCode(err) != trustloop.EINVALID {
		t.Errorf("version -1: %v, want EINVALID", err)
	}
	if _, err := e.svc.PutCatalog(ctx, e.ws, consent.DefaultCatalog(), 99); trustloop.ErrorCode(err) != trustloop.ECONFLICT {
		t.Errorf("a valid catalog with a stale version: %v, want ECONFLICT", err)
	}
}

// A jurisdiction kept from before they had to be codes is not carried
// into new records (Record would refuse it, and the portal with it).
func TestJurisdictionOfSkipsLegacyText(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	latest := map[string]trustloop.ConsentRecord{
		"analytics":       {Jurisdiction: "DE", At: at},
		"personalization": {Jurisdiction: "US_CA", At: at.Add(time.Hour)},
	}
	if j := consent.JurisdictionOf(latest); j != "DE" {
		t.Errorf("JurisdictionOf = %q, want DE (US_CA is no code)", j)
	}
}
