package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
)

// The erasure side of the suite: ErasureStore (Erase, ScrubLog, Rekey),
// RetentionStore (DeleteEvents, ExpiredConsent) and Suppressions.
//
// eraseWorld is a workspace with two customers written through the stores' own
// methods, and a second workspace holding the same blind index as the first
// customer's user id: subject A (keys 101 and 102, profile 11 with profile 12
// merged into it, an email, consent, privacy requests, memberships, timelines,
// an event under the shared key 301 listed on its foreign timeline) and
// subject B (key 201, profile 21 with 22 merged into it, one event under the
// shared key). snapshot reads back everything the world holds, item by item,
// so a test can say exactly which items an operation may change.

// Subject key and profile ids are global in both stores (the caller picks
// them), so each is used once across the two workspaces.
var (
	eraseKeyIDs     = []int64{101, 102, 201, 301, 401}
	eraseProfileIDs = []int64{11, 12, 13, 21, 22, 31}
	eraseMergeIDs   = []int64{901, 902}
	eraseTimelines  = []int64{101, 102, 201, 301, 401, -11, -12, -21, -31}
	eraseAuditSubs  = []string{"11", "12", "21", "31"}
	eraseBlindNames = []string{"uA", "aA", "eA", "pA", "uB", "aB"}
	eraseReceipts   = []string{"rcpt_a", "rcpt_b", "rcpt_w2"}
)

type eraseWorld struct {
	b, b2   *trustloop.Bootstrap
	ws, ws2 int64
	blind   map[string][]byte // by name: uA (A's user id), aA, eA, pA; uB, aB
	keys    map[int64]trustloop.SubjectKey
	// Log positions: A's events under its own keys (101, then 102), A's
	// event under the shared key, B's events, and the second workspace's.
	seqA101, seqA102 []int64
	seqForeignA      int64
	seqB201          []int64
	seqSharedB       int64
	seqW2            []int64
	aud, aud2        int64
	// Requests: R is A's erasure (in progress, with suppression); R2 A's
	// open access request by email, R3 A's completed access request by
	// anonymous id; RB B's open erasure; RW2 the second workspace's request
	// for the same blind index as A's user id.
	req        map[string]*trustloop.PrivacyRequest
	pseudonyms map[string]string // "ws/name" -> the audit pseudonym of the subject's consent
}

// mustSecondWorkspace creates a workspace beside the bootstrapped one, whose
// data the erasure cases check stays untouched.
func mustSecondWorkspace(t *testing.T, s trustloop.Store) *trustloop.Bootstrap {
	t.Helper()
	b := Bootstrap("second")
	if err := s.CreateWorkspace(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	return b
}

func newEraseWorld(t *testing.T, s trustloop.Store) *eraseWorld {
	t.Helper()
	ctx := context.Background()
	w := &eraseWorld{b: MustBootstrap(t, s), b2: mustSecondWorkspace(t, s), blind: map[string][]byte{},
		keys: map[int64]trustloop.SubjectKey{}, req: map[string]*trustloop.PrivacyRequest{}, pseudonyms: map[string]string{}}
	w.ws, w.ws2 = w.b.Workspace.ID, w.b2.Workspace.ID
	for _, n := range eraseBlindNames {
		w.blind[n] = random(32)
	}
	key := func(b *trustloop.Bootstrap, id int64, blind []byte) trustloop.SubjectKey {
		k := newKey(b, id)
		if blind != nil {
			k.Blind = blind
		}
		w.keys[id] = k
		return k
	}
	// The user and anonymous ids' keys are found by their blind indexes, as
	// the identities are; the shared key is a blocked value's.
	wsKeys := []trustloop.SubjectKey{key(w.b, 101, w.blind["uA"]), key(w.b, 102, w.blind["aA"]), key(w.b, 201, w.blind["uB"]), key(w.b, 301, nil)}
	w2Keys := []trustloop.SubjectKey{key(w.b2, 401, w.blind["uA"])}

	now := time.Now().UTC().Truncate(time.Millisecond)
	small := []trustloop.StoredEvent{
		event(w.b, 101, random(16), now), event(w.b, 102, random(16), now), event(w.b, 102, random(16), now),
		event(w.b, 201, random(16), now), event(w.b, 201, random(16), now), event(w.b, 301, random(16), now), event(w.b, 301, random(16), now),
	}
	// Payloads large enough that SQLite keeps them in a segment file.
	big := []trustloop.StoredEvent{event(w.b, 101, random(16), now), event(w.b, 101, random(16), now)}
	for i := range big {
		big[i].Payload = random(70 << 10)
	}
	// The second workspace: an event under its own key, and one whose key id
	// is A's (only a read that mixed workspaces up would match it).
	theirs := []trustloop.StoredEvent{event(w.b2, 401, random(16), now), event(w.b2, 101, random(16), now)}
	for _, batch := range []*trustloop.CommitBatch{{NewKeys: wsKeys, Events: small}, {Events: big}, {NewKeys: w2Keys, Events: theirs}} {
		if n, err := s.AppendEvents(ctx, batch); err != nil || n != len(batch.Events) {
			t.Fatalf("AppendEvents = %d, %v; want %d", n, err, len(batch.Events))
		}
	}
	all, err := s.ListEvents(ctx, w.ws, 0, 100)
	if err != nil || len(all) != len(small)+len(big) {
		t.Fatalf("ListEvents = %d, %v", len(all), err)
	}
	w.seqA101 = []int64{all[0].Seq, all[7].Seq, all[8].Seq}
	w.seqA102 = []int64{all[1].Seq, all[2].Seq}
	w.seqB201 = []int64{all[3].Seq, all[4].Seq}
	w.seqForeignA, w.seqSharedB = all[5].Seq, all[6].Seq
	w2, err := s.ListEvents(ctx, w.ws2, 0, 100)
	if err != nil || len(w2) != 2 {
		t.Fatalf("ListEvents(second workspace) = %d, %v", len(w2), err)
	}
	w.seqW2 = []int64{w2[0].Seq, w2[1].Seq}

	// Profiles, identities, merges, memberships and timelines.
	for _, a := range []*trustloop.Audience{{WorkspaceID: w.ws, Name: "all", Rule: "true"}, {WorkspaceID: w.ws2, Name: "all", Rule: "true"}} {
		if err := s.CreateAudience(ctx, a); err != nil {
			t.Fatal(err)
		}
		if a.WorkspaceID == w.ws {
			w.aud = a.ID
		} else {
			w.aud2 = a.ID
		}
	}
	prof := func(b *trustloop.Bootstrap, id, key, into int64) trustloop.ProfileRecord {
		p := profileRec(b, id, fmt.Sprint("state-", id))
		p.KeyID, p.MergedInto = key, into
		return p
	}
	ident := func(b *trustloop.Bootstrap, name, typ string, profile, key int64) trustloop.IdentityRecord {
		ir := identityRec(b, typ, profile, time.Duration(len(name))*time.Second)
		ir.Blind, ir.KeyID = w.blind[name], key
		return ir
	}
	merge := func(id, into, from int64, moved []byte) trustloop.MergeRecord {
		return trustloop.MergeRecord{ID: id, WorkspaceID: w.ws, Into: into, From: from, Moved: [][]byte{moved},
			Linking: [][]byte{moved}, MessageHash: random(16), At: profileBase}
	}
	if err := s.WriteProjection(ctx, &trustloop.ProjectionChanges{
		Profiles: []trustloop.ProfileRecord{prof(w.b, 11, 101, 0), prof(w.b, 12, 102, 11), prof(w.b, 21, 201, 0), prof(w.b, 22, 201, 21)},
		Identities: []trustloop.IdentityRecord{ident(w.b, "uA", "user_id", 11, 101), ident(w.b, "aA", "anonymous_id", 11, 102),
			ident(w.b, "eA", "email", 11, 101),
			// An identifier of A's on no profile the erasure names: it goes by
			// its blind index.
			ident(w.b, "pA", "phone", 13, 101),
			ident(w.b, "uB", "user_id", 21, 201), ident(w.b, "aB", "anonymous_id", 21, 201)},
		Merges:  []trustloop.MergeRecord{merge(901, 11, 12, w.blind["aA"]), merge(902, 21, 22, w.blind["aB"])},
		Members: map[int64][]int64{11: {w.aud}, 12: {w.aud}, 21: {w.aud}},
		Timeline: []trustloop.TimelineRun{{KeyID: 101, Seqs: w.seqA101}, {KeyID: 102, Seqs: w.seqA102}, {KeyID: -11, Seqs: []int64{w.seqForeignA}},
			{KeyID: 201, Seqs: w.seqB201}, {KeyID: 301, Seqs: []int64{w.seqForeignA, w.seqSharedB}}},
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteProjection(ctx, &trustloop.ProjectionChanges{
		Profiles:   []trustloop.ProfileRecord{prof(w.b2, 31, 401, 0)},
		Identities: []trustloop.IdentityRecord{ident(w.b2, "uA", "user_id", 31, 401)},
		Members:    map[int64][]int64{31: {w.aud2}},
		Timeline:   []trustloop.TimelineRun{{KeyID: 401, Seqs: []int64{w.seqW2[0]}}},
	}); err != nil {
		t.Fatal(err)
	}

	// Consent: A by user id (with a receipt) and by email, B, and the same
	// blind index in the second workspace.
	consent := func(ws int64, name, receipt string, recs ...trustloop.ConsentRecord) {
		t.Helper()
		var sign func([]trustloop.ConsentRecord) (*trustloop.ConsentReceipt, error)
		if receipt != "" {
			sign = func(rs []trustloop.ConsentRecord) (*trustloop.ConsentReceipt, error) {
				return &trustloop.ConsentReceipt{ID: receipt, WorkspaceID: ws, Subject: w.blind[name], At: rs[0].At, Body: []byte("jws-" + receipt)}, nil
			}
		}
		if err := s.AppendConsent(ctx, recs, sign); err != nil {
			t.Fatal(err)
		}
		w.pseudonyms[fmt.Sprint(ws, "/", name)] = recs[0].Pseudonym
	}
	consent(w.ws, "uA", "rcpt_a", consentRec(w.ws, w.blind["uA"], "analytics", trustloop.ConsentGiven),
		consentRec(w.ws, w.blind["uA"], "marketing", trustloop.ConsentRefused))
	consent(w.ws, "eA", "", consentRec(w.ws, w.blind["eA"], "analytics", trustloop.ConsentGiven))
	consent(w.ws, "uB", "rcpt_b", consentRec(w.ws, w.blind["uB"], "analytics", trustloop.ConsentGiven))
	consent(w.ws2, "uA", "rcpt_w2", consentRec(w.ws2, w.blind["uA"], "analytics", trustloop.ConsentGiven))

	// Privacy requests, each open one with a queued job.
	request := func(name string, ws int64, typ, subject, status string) *trustloop.PrivacyRequest {
		r := privacyReq(ws, typ, w.blind[subject], privacyBase)
		r.Status = status
		var job *trustloop.Job
		if r.Open() {
			job = &trustloop.Job{Kind: "privacy_request", RunAt: privacyBase}
		}
		mustCreateRequest(t, s, r, job)
		w.req[name] = r
		return r
	}
	r := request("R", w.ws, trustloop.RequestErasure, "uA", trustloop.RequestInProgress)
	r.Suppress, r.Suppression, r.VerifiedBy, r.VerifiedAt = true, random(32), "key:1", privacyBase.Add(time.Minute)
	mustUpdateRequest(t, s, r, nil)
	request("R2", w.ws, trustloop.RequestAccess, "eA", trustloop.RequestReceived).Payload = random(40)
	mustUpdateRequest(t, s, w.req["R2"], nil)
	r3 := request("R3", w.ws, trustloop.RequestAccess, "aA", trustloop.RequestCompleted)
	r3.CompletedAt, r3.Result = privacyBase.Add(time.Hour), []byte(`{"found":true}`)
	mustUpdateRequest(t, s, r3, nil)
	request("RB", w.ws, trustloop.RequestErasure, "uB", trustloop.RequestReceived)
	request("RW2", w.ws2, trustloop.RequestAccess, "uA", trustloop.RequestReceived)

	// Data-use entries naming profiles; the second workspace's names an id of
	// this one's profiles, which an erasure here must leave.
	var entries []trustloop.AuditEntry
	for i, sub := range []string{"11", "12", "21"} {
		e := auditEntry(w.ws, i)
		e.Subject = sub
		entries = append(entries, e)
	}
	for i, sub := range []string{"11", "31"} {
		e := auditEntry(w.ws2, i)
		e.Subject = sub
		entries = append(entries, e)
	}
	if err := s.AppendAudit(ctx, entries); err != nil {
		t.Fatal(err)
	}
	return w
}

// seqsOfA are the log positions of A's events under its own keys.
func (w *eraseWorld) seqsOfA() []int64 { return append(slices.Clone(w.seqA101), w.seqA102...) }

// fullErasure is what the privacy service asks to erase A: its keys, every
// position its timelines list, its foreign event, its profiles and every blind
// index.
func (w *eraseWorld) fullErasure() *trustloop.Erasure {
	return &trustloop.Erasure{WorkspaceID: w.ws, RequestID: w.req["R"].ID, KeyIDs: []int64{101, 102}, Seqs: w.seqsOfA(),
		ForeignSeqs: []int64{w.seqForeignA}, TimelineKeys: []int64{-11, -12}, ProfileIDs: []int64{11, 12},
		Blinds: [][]byte{w.blind["uA"], w.blind["aA"], w.blind["eA"], w.blind["pA"]}}
}

// snapshot reads back every item of the world, rendered; an item that is not
// stored (or empty) is missing.
func (w *eraseWorld) snapshot(t *testing.T, s trustloop.Store) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	put := func(k, v string) {
		if v != "" {
			out[k] = v
		}
	}
	check := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("snapshot: %v", err)
		}
	}
	for _, ws := range []int64{w.ws, w.ws2} {
		evs, err := s.ListEvents(ctx, ws, 0, 1000)
		check(err)
		for _, e := range evs {
			put(fmt.Sprint("event ", e.Seq), fmt.Sprintf("ws=%d src=%d key=%d type=%d rec=%d ts=%d hash=%x payload=%x", e.WorkspaceID, e.SourceID,
				e.KeyID, e.Type, e.ReceivedAt.UnixMilli(), e.Timestamp.UnixMilli(), e.MessageHash, sha256.Sum256(e.Payload)))
		}
		keys, err := s.FindSubjectKeysByID(ctx, ws, eraseKeyIDs)
		check(err)
		for id, k := range keys {
			put(fmt.Sprint("key ", ws, "/", id), fmt.Sprintf("id=%d ws=%d blind=%x wrapped=%x created=%d", k.ID, k.WorkspaceID, k.Blind, k.Wrapped, k.CreatedAt.UnixMilli()))
		}
		var blinds [][]byte
		for _, n := range eraseBlindNames {
			blinds = append(blinds, w.blind[n])
		}
		ids, err := s.FindIdentities(ctx, ws, blinds)
		check(err)
		for _, n := range eraseBlindNames {
			if ir, ok := ids[string(w.blind[n])]; ok {
				put(fmt.Sprint("identity ", ws, "/", n), fmt.Sprintf("ws=%d type=%s profile=%d key=%d sealed=%x first=%d", ir.WorkspaceID, ir.Type,
					ir.ProfileID, ir.KeyID, ir.Sealed, ir.FirstSeen.UnixMilli()))
			}
			recs, err := s.ConsentRecords(ctx, ws, w.blind[n])
			check(err)
			var b strings.Builder
			for _, r := range recs {
				fmt.Fprintf(&b, "%d %s %s %x;", r.Seq, r.Purpose, r.State, r.Hash)
			}
			put(fmt.Sprint("consent ", ws, "/", n), b.String())
		}
		ps, err := s.FindProfiles(ctx, ws, eraseProfileIDs)
		check(err)
		for id, p := range ps {
			put(fmt.Sprint("profile ", ws, "/", id), fmt.Sprintf("ws=%d key=%d state=%q applied=%d into=%d created=%d updated=%d", p.WorkspaceID, p.KeyID,
				p.State, p.AppliedSeq, p.MergedInto, p.CreatedAt.UnixMilli(), p.UpdatedAt.UnixMilli()))
		}
		for _, id := range eraseProfileIDs {
			auds, err := s.ProfileAudiences(ctx, ws, id)
			check(err)
			if len(auds) > 0 {
				put(fmt.Sprint("members ", ws, "/", id), fmt.Sprint(auds))
			}
		}
		for _, id := range eraseMergeIDs {
			m, err := s.FindMerge(ctx, ws, id)
			if trustloop.ErrorCode(err) == trustloop.ENOTFOUND {
				continue
			}
			check(err)
			put(fmt.Sprint("merge ", ws, "/", id), fmt.Sprintf("into=%d from=%d moved=%x split=%v", m.Into, m.From, m.Moved, m.SplitAt != nil))
		}
		for _, id := range eraseReceipts {
			rc, err := s.FindConsentReceipt(ctx, ws, id)
			if trustloop.ErrorCode(err) == trustloop.ENOTFOUND {
				continue
			}
			check(err)
			put(fmt.Sprint("receipt ", ws, "/", id), fmt.Sprintf("subject=%x at=%d body=%q", rc.Subject, rc.At.UnixMilli(), rc.Body))
		}
		for _, sub := range eraseAuditSubs {
			recs, err := s.AuditRecordsOf(ctx, ws, sub, 0, 100)
			check(err)
			var idx []int64
			for _, r := range recs {
				idx = append(idx, r.Index)
			}
			if len(idx) > 0 {
				put(fmt.Sprint("audit ", ws, "/", sub), fmt.Sprint(idx))
			}
		}
		n, err := s.AuditSize(ctx, ws)
		check(err)
		put(fmt.Sprint("auditsize ", ws), fmt.Sprint(n))
		sup, err := s.Suppressions(ctx, ws)
		check(err)
		if len(sup) > 0 {
			put(fmt.Sprint("suppressions ", ws), fmt.Sprintf("%x", sortedBytes(sup)))
		}
	}
	for _, k := range eraseTimelines {
		seqs, err := s.TimelineSeqs(ctx, []int64{k})
		check(err)
		if len(seqs) > 0 {
			put(fmt.Sprint("timeline ", k), fmt.Sprint(seqs))
		}
	}
	for name, r := range w.req {
		got, err := s.FindPrivacyRequest(ctx, r.WorkspaceID, r.ID)
		check(err)
		put("request "+name, fmt.Sprintf("%+v", *got))
		jobs, err := s.JobsOf(ctx, r.WorkspaceID, r.ID)
		check(err)
		var b strings.Builder
		for _, j := range jobs {
			fmt.Fprintf(&b, "%d %s %s %d;", j.ID, j.Kind, j.State, j.UpdatedAt.UnixMilli())
		}
		put("jobs "+name, b.String())
	}
	return out
}

func sortedBytes(v [][]byte) [][]byte {
	v = slices.Clone(v)
	slices.SortFunc(v, bytes.Compare)
	return v
}

// changed returns the items that differ between two snapshots, sorted.
func changed(before, after map[string]string) []string {
	var out []string
	for k, v := range before {
		if after[k] != v {
			out = append(out, k)
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// mustChange fails unless exactly the items want changed from before to
// after.
func mustChange(t *testing.T, what string, before, after map[string]string, want ...string) {
	t.Helper()
	slices.Sort(want)
	got := changed(before, after)
	if slices.Equal(got, want) {
		return
	}
	var b strings.Builder
	for _, k := range got {
		if !slices.Contains(want, k) {
			fmt.Fprintf(&b, "\n  changed, should not have: %s\n    before: %s\n    after:  %s", k, before[k], after[k])
		}
	}
	for _, k := range want {
		if !slices.Contains(got, k) {
			fmt.Fprintf(&b, "\n  unchanged, should have changed: %s = %s", k, before[k])
		}
	}
	t.Fatalf("%s:%s", what, b.String())
}

func eventItems(seqs ...int64) []string {
	var out []string
	for _, q := range seqs {
		out = append(out, fmt.Sprint("event ", q))
	}
	return out
}

// testErase: everything the erasure names goes, in one transaction with its
// request's completion; nothing of the other subject or the other workspace
// changes; the counts say what went. Run again, it finds nothing left.
func testErase(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	w := newEraseWorld(t, s)
	ws := w.ws
	before := w.snapshot(t, s)
	if len(before) < 60 {
		t.Fatalf("the world's snapshot has %d items; the setup did not store what it should", len(before))
	}

	e := w.fullErasure()
	// A stale position of B's event and an unknown one: positions only take
	// events of the erased keys.
	e.Seqs = append(e.Seqs, w.seqB201[0], w.seqW2[0], 1<<40)
	h1, h2 := random(32), random(32)
	e.Suppress = [][]byte{h1, h2, h1}
	r := w.req["R"]
	calls := 0
	var seen trustloop.ErasureCounts
	e.Complete = func(c trustloop.ErasureCounts) (*trustloop.PrivacyRequest, error) {
		calls++
		seen = c
		done := *r
		done.Status, done.CompletedAt, done.Result, done.Receipt, done.Progress =
			trustloop.RequestCompleted, privacyBase.Add(2*time.Hour), []byte(`{"found":true}`), "erasure-receipt-jws", "done"
		return &done, nil
	}
	c, err := s.Erase(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	want := trustloop.ErasureCounts{Events: 6, SubjectKeys: 2, Profiles: 2, Identities: 4, Merges: 1, ConsentRecords: 3,
		ConsentReceipts: 1, AudienceMemberships: 2, TimelineRuns: 3, PrivacyRequests: 2, Suppressions: 2}
	if c != want {
		t.Fatalf("Erase counts = %+v\nwant %+v", c, want)
	}
	if calls == 0 || seen != c {
		t.Fatalf("Complete called %d times with %+v; want at least once with the counts %+v", calls, seen, c)
	}
	if err := s.ScrubLog(ctx); err != nil {
		t.Fatalf("ScrubLog after an erasure = %v", err)
	}

	after := w.snapshot(t, s)
	gone := append(eventItems(append(w.seqsOfA(), w.seqForeignA)...),
		keyItem(ws, 101), keyItem(ws, 102), item("identity", ws, "uA"), item("identity", ws, "aA"), item("identity", ws, "eA"), item("identity", ws, "pA"),
		item("profile", ws, 11), item("profile", ws, 12), item("merge", ws, 901), item("members", ws, 11), item("members", ws, 12),
		"timeline 101", "timeline 102", "timeline -11", item("consent", ws, "uA"), item("consent", ws, "eA"), item("receipt", ws, "rcpt_a"),
		item("audit", ws, 11), item("audit", ws, 12))
	for _, k := range gone {
		if v, ok := after[k]; ok {
			t.Fatalf("after the erasure %s is still stored: %s", k, v)
		}
	}
	mustChange(t, "Erase", before, after, append(gone, "request R", "request R2", "request R3", "jobs R2", item("suppressions", ws, ""))...)

	// The erasure's own request: completed, naming no one.
	done := *r
	done.Status, done.CompletedAt, done.Result, done.Receipt, done.Progress =
		trustloop.RequestCompleted, privacyBase.Add(2*time.Hour), []byte(`{"found":true}`), "erasure-receipt-jws", "done"
	done.Subject, done.Suppression, done.Payload, done.Version = nil, nil, nil, r.Version+1
	got, err := s.FindPrivacyRequest(ctx, ws, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	done.UpdatedAt = got.UpdatedAt
	if d := requestDiff(got, &done); d != "" || !got.UpdatedAt.After(r.UpdatedAt) {
		t.Fatalf("the completed erasure request: %s (updated %v, was %v)", d, got.UpdatedAt, r.UpdatedAt)
	}
	// A's other requests keep their ids and outcomes, not whom they were
	// about; the open one is rejected and its job cancelled.
	for name, status := range map[string]string{"R2": trustloop.RequestRejected, "R3": trustloop.RequestCompleted} {
		old := w.req[name]
		want := *old
		want.Subject, want.Suppression, want.Payload, want.Version, want.Status = nil, nil, nil, old.Version+1, status
		if status == trustloop.RequestRejected {
			want.RejectReason = "subject_erased"
		}
		got, err := s.FindPrivacyRequest(ctx, ws, old.ID)
		if err != nil {
			t.Fatal(err)
		}
		want.UpdatedAt = got.UpdatedAt
		if d := requestDiff(got, &want); d != "" {
			t.Fatalf("request %s after the erasure: %s", name, d)
		}
	}
	if jobs, err := s.JobsOf(ctx, ws, w.req["R2"].ID); err != nil || len(jobs) != 1 || jobs[0].State != trustloop.JobCancelled {
		t.Fatalf("the rejected request's jobs = %+v, %v; want its job cancelled", jobs, err)
	}
	if l, err := s.SubjectPrivacyRequests(ctx, ws, e.Blinds); err != nil || len(l) != 0 {
		t.Fatalf("SubjectPrivacyRequests after the erasure = %d, %v; want none", len(l), err)
	}
	if sup, err := s.Suppressions(ctx, ws); err != nil || !slices.EqualFunc(sortedBytes(sup), sortedBytes([][]byte{h1, h2}), bytes.Equal) {
		t.Fatalf("Suppressions = %x, %v; want the two hashes", sup, err)
	}
	if ids, err := s.MergedProfiles(ctx, ws, []int64{11}); err != nil || len(ids) != 0 {
		t.Fatalf("MergedProfiles(11) after the erasure = %v, %v", ids, err)
	}
	if ids, err := s.MergedProfiles(ctx, ws, []int64{21}); err != nil || !equalIDs(ids, []int64{22}) {
		t.Fatalf("MergedProfiles(21) after the erasure = %v, %v; want [22]", ids, err)
	}
	if ids := mustListProfiles(t, s, ws, w.aud, 0, 10); !equalIDs(ids, []int64{21}) {
		t.Fatalf("the audience's members after the erasure = %v; want [21]", ids)
	}

	// Again: nothing is left to erase, and nothing else goes.
	before = w.snapshot(t, s)
	again := w.fullErasure()
	again.Suppress = [][]byte{h2}
	if c, err := s.Erase(ctx, again); err != nil || c != (trustloop.ErasureCounts{}) {
		t.Fatalf("the erasure run again = %+v, %v; want nothing counted", c, err)
	}
	mustChange(t, "the erasure run again", before, w.snapshot(t, s))

	// The audit pseudonym went with the consent: A starts a new chain under a
	// new one; B and the other workspace keep theirs.
	for _, c := range []struct {
		ws   int64
		name string
		same bool
		seq  int64
	}{{ws, "uA", false, 1}, {ws, "uB", true, 2}, {w.ws2, "uA", true, 2}} {
		rec := []trustloop.ConsentRecord{consentRec(c.ws, w.blind[c.name], "analytics", trustloop.ConsentWithdrawn)}
		if err := s.AppendConsent(ctx, rec, nil); err != nil {
			t.Fatal(err)
		}
		old := w.pseudonyms[fmt.Sprint(c.ws, "/", c.name)]
		if rec[0].Seq != c.seq || rec[0].Pseudonym == "" || (rec[0].Pseudonym == old) != c.same {
			t.Fatalf("%d/%s: appended seq %d under pseudonym %q (was %q); want seq %d and the same pseudonym: %v",
				c.ws, c.name, rec[0].Seq, rec[0].Pseudonym, old, c.seq, c.same)
		}
	}

}

func keyItem(ws, id int64) string { return item("key", ws, id) }

func item(kind string, ws int64, name any) string {
	if name == "" {
		return fmt.Sprint(kind, " ", ws)
	}
	return fmt.Sprint(kind, " ", ws, "/", name)
}

// testEraseScan: without profiles, the erasure finds the keys' events by a
// scan of the workspace's log; blind indexes take identities, consent and
// requests even when no profile is named.
func testEraseScan(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	w := newEraseWorld(t, s)
	ws := w.ws
	before := w.snapshot(t, s)
	c, err := s.Erase(ctx, &trustloop.Erasure{WorkspaceID: ws, RequestID: w.req["R"].ID, KeyIDs: []int64{101, 102}, ScanEvents: true,
		Blinds: [][]byte{w.blind["uA"], w.blind["aA"]}})
	if err != nil {
		t.Fatal(err)
	}
	want := trustloop.ErasureCounts{Events: 5, SubjectKeys: 2, Identities: 2, ConsentRecords: 2, ConsentReceipts: 1, TimelineRuns: 2, PrivacyRequests: 1}
	if c != want {
		t.Fatalf("Erase counts = %+v\nwant %+v", c, want)
	}
	if err := s.ScrubLog(ctx); err != nil {
		t.Fatalf("ScrubLog = %v", err)
	}
	after := w.snapshot(t, s)
	gone := append(eventItems(w.seqsOfA()...), keyItem(ws, 101), keyItem(ws, 102), item("identity", ws, "uA"), item("identity", ws, "aA"),
		"timeline 101", "timeline 102", item("consent", ws, "uA"), item("receipt", ws, "rcpt_a"))
	for _, k := range gone {
		if v, ok := after[k]; ok {
			t.Fatalf("after the erasure %s is still stored: %s", k, v)
		}
	}
	// R is the erasure's own request (no Complete here: it stays as it was);
	// R3 named the anonymous id.
	mustChange(t, "Erase with a scan", before, after, append(gone, "request R3")...)
	if got, err := s.FindPrivacyRequest(ctx, ws, w.req["R3"].ID); err != nil || got.Subject != nil || got.Status != trustloop.RequestCompleted {
		t.Fatalf("R3 after the erasure = %+v, %v; want completed, naming no one", got, err)
	}
}

// testEraseFailure: a failing Complete, or a request that changed meanwhile,
// leaves everything as it was.
func testEraseFailure(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	w := newEraseWorld(t, s)
	before := w.snapshot(t, s)
	boom := errors.New("signer down")
	stale := *w.req["R"]
	stale.Version--
	unknown := *w.req["R"]
	unknown.ID = trustloop.NewRequestID()
	for _, c := range []struct {
		name     string
		complete func(trustloop.ErasureCounts) (*trustloop.PrivacyRequest, error)
		ok       func(error) bool
	}{
		{"failing Complete", func(trustloop.ErasureCounts) (*trustloop.PrivacyRequest, error) { return nil, boom },
			func(err error) bool { return errors.Is(err, boom) }},
		{"stale request", func(trustloop.ErasureCounts) (*trustloop.PrivacyRequest, error) { r := stale; return &r, nil },
			func(err error) bool { return trustloop.ErrorCode(err) == trustloop.ECONFLICT }},
		{"unknown request", func(trustloop.ErasureCounts) (*trustloop.PrivacyRequest, error) { r := unknown; return &r, nil },
			func(err error) bool { return err != nil }},
	} {
		e := w.fullErasure()
		e.ScanEvents, e.Suppress, e.Complete = true, [][]byte{random(32)}, c.complete
		if _, err := s.Erase(ctx, e); !c.ok(err) {
			t.Fatalf("%s: Erase err = %v", c.name, err)
		}
		mustChange(t, c.name, before, w.snapshot(t, s))
	}
	if err := s.ScrubLog(ctx); err != nil {
		t.Fatalf("ScrubLog after failed erasures = %v", err)
	}
}

// testEraseUnknown: an erasure naming nothing stored, or nothing at all,
// counts nothing and changes nothing; positions of events under other keys
// are not taken.
func testEraseUnknown(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	w := newEraseWorld(t, s)
	before := w.snapshot(t, s)
	for _, c := range []struct {
		name string
		e    *trustloop.Erasure
	}{
		{"empty", &trustloop.Erasure{WorkspaceID: w.ws}},
		{"unknown ids", &trustloop.Erasure{WorkspaceID: w.ws, RequestID: trustloop.NewRequestID(), KeyIDs: []int64{9991, 9992},
			Seqs: append(w.seqsOfA(), w.seqB201...), ScanEvents: true, ForeignSeqs: []int64{1 << 40}, TimelineKeys: []int64{-9991},
			ProfileIDs: []int64{9991}, Blinds: [][]byte{random(32)}}},
		{"unknown workspace", &trustloop.Erasure{WorkspaceID: other(w.b), KeyIDs: []int64{9991}, Seqs: w.seqsOfA(), ScanEvents: true,
			ForeignSeqs: []int64{w.seqForeignA}, Blinds: [][]byte{w.blind["uA"], w.blind["aA"]}}},
	} {
		if n, err := s.Erase(ctx, c.e); err != nil || n != (trustloop.ErasureCounts{}) {
			t.Fatalf("%s: Erase = %+v, %v; want nothing counted", c.name, n, err)
		}
		mustChange(t, c.name, before, w.snapshot(t, s))
	}
}

// testEraseOtherWorkspace: an erasure in another workspace's name that names
// this workspace's keys, positions, profiles and blind indexes changes nothing
// here (key and profile ids are unique across workspaces, so such an erasure
// is bad input, never a request of the other workspace).
func testEraseOtherWorkspace(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	w := newEraseWorld(t, s)
	before := w.snapshot(t, s)
	e := w.fullErasure()
	e.WorkspaceID, e.RequestID, e.ScanEvents = other(w.b), w.req["RW2"].ID, true
	if c, err := s.Erase(ctx, e); err != nil || c != (trustloop.ErasureCounts{}) {
		t.Errorf("Erase in another workspace's name = %+v, %v; want nothing counted", c, err)
	}
	mustChange(t, "Erase in another workspace's name", before, w.snapshot(t, s))
}

// testRekey: payloads, identity values, profile states and wrapped keys are
// replaced in one transaction with the request's completion; nothing else
// changes, nor does a rekey that fails or names nothing stored.
func testRekey(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	w := newEraseWorld(t, s)
	ws := w.ws
	rr := privacyReq(ws, trustloop.RequestRectification, w.blind["uA"], privacyBase)
	rr.Status, rr.Payload = trustloop.RequestInProgress, random(64)
	mustCreateRequest(t, s, rr, nil)
	w.req["RR"] = rr
	before := w.snapshot(t, s)

	rk := &trustloop.Rekey{WorkspaceID: ws,
		Keys: []trustloop.SubjectKey{{ID: 101, WorkspaceID: ws, Wrapped: random(60)}, {ID: 102, WorkspaceID: ws, Wrapped: random(60)}},
		Identities: []trustloop.IdentityRecord{{WorkspaceID: ws, Blind: w.blind["uA"], Sealed: random(48)},
			{WorkspaceID: ws, Blind: w.blind["eA"], Sealed: random(48)}},
		Profiles: []trustloop.ProfileRecord{{ID: 11, WorkspaceID: ws, State: []byte("rectified")}},
	}
	for _, q := range w.seqsOfA() {
		rk.Events = append(rk.Events, trustloop.StoredEvent{Seq: q, WorkspaceID: ws, Payload: random(300)})
	}
	complete := func() (*trustloop.PrivacyRequest, error) {
		done := *rr
		done.Status, done.CompletedAt, done.Result, done.Progress =
			trustloop.RequestCompleted, privacyBase.Add(time.Hour), []byte(`{"events_resealed":5}`), "done"
		return &done, nil
	}

	// Failures first: nothing of them may be written.
	boom := errors.New("no")
	rk.Complete = func() (*trustloop.PrivacyRequest, error) { return nil, boom }
	if err := s.Rekey(ctx, rk); !errors.Is(err, boom) {
		t.Fatalf("Rekey with a failing Complete = %v", err)
	}
	mustChange(t, "Rekey with a failing Complete", before, w.snapshot(t, s))
	rk.Complete = func() (*trustloop.PrivacyRequest, error) { r, _ := complete(); r.Version--; return r, nil }
	if err := s.Rekey(ctx, rk); trustloop.ErrorCode(err) != trustloop.ECONFLICT {
		t.Fatalf("Rekey completing a stale request = %v, want conflict", err)
	}
	mustChange(t, "Rekey completing a stale request", before, w.snapshot(t, s))

	// Unknown ids, or another workspace's name, change nothing.
	// (The second workspace holds an identity under A's user id blind index
	// of its own, which such a rekey could rightly rewrite: left out.)
	other := &trustloop.Rekey{WorkspaceID: w.ws2, Keys: rk.Keys, Events: rk.Events, Identities: rk.Identities[1:], Profiles: rk.Profiles}
	unknown := &trustloop.Rekey{WorkspaceID: ws, Keys: []trustloop.SubjectKey{{ID: 9991, WorkspaceID: ws, Wrapped: random(60)}},
		Events:     []trustloop.StoredEvent{{Seq: 1 << 40, WorkspaceID: ws, Payload: random(10)}},
		Identities: []trustloop.IdentityRecord{{WorkspaceID: ws, Blind: random(32), Sealed: random(48)}},
		Profiles:   []trustloop.ProfileRecord{{ID: 9991, WorkspaceID: ws, State: []byte("x")}}}
	for name, r := range map[string]*trustloop.Rekey{"another workspace": other, "unknown ids": unknown, "nothing": {WorkspaceID: ws}} {
		if err := s.Rekey(ctx, r); err != nil {
			t.Logf("Rekey naming %s = %v", name, err)
		}
		mustChange(t, "Rekey naming "+name, before, w.snapshot(t, s))
	}

	rk.Complete = complete
	if err := s.Rekey(ctx, rk); err != nil {
		t.Fatal(err)
	}
	if err := s.ScrubLog(ctx); err != nil {
		t.Fatalf("ScrubLog after a rekey = %v", err)
	}
	after := w.snapshot(t, s)
	mustChange(t, "Rekey", before, after, append(eventItems(w.seqsOfA()...), keyItem(ws, 101), keyItem(ws, 102),
		item("identity", ws, "uA"), item("identity", ws, "eA"), item("profile", ws, 11), "request RR")...)

	keys, err := s.FindSubjectKeysByID(ctx, ws, []int64{101, 102})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range rk.Keys {
		old := w.keys[k.ID]
		if g := keys[k.ID]; !bytes.Equal(g.Wrapped, k.Wrapped) || !bytes.Equal(g.Blind, old.Blind) || !g.CreatedAt.Equal(old.CreatedAt) {
			t.Fatalf("key %d after the rekey = %+v; want the new wrapped key, blind and time kept", k.ID, g)
		}
	}
	evs, err := s.EventsBySeq(ctx, ws, w.seqsOfA())
	if err != nil || len(evs) != len(rk.Events) {
		t.Fatalf("EventsBySeq = %d, %v", len(evs), err)
	}
	payloads := map[int64][]byte{}
	for _, e := range rk.Events {
		payloads[e.Seq] = e.Payload
	}
	for _, e := range evs {
		if !bytes.Equal(e.Payload, payloads[e.Seq]) {
			t.Fatalf("event %d after the rekey has the old payload", e.Seq)
		}
		// Everything else of the event is as it was.
		old := before[fmt.Sprint("event ", e.Seq)]
		if now := after[fmt.Sprint("event ", e.Seq)]; old[:strings.Index(old, " payload=")] != now[:strings.Index(now, " payload=")] {
			t.Fatalf("the rekey changed more than the payload: %s, was %s", now, old)
		}
	}
	ids, err := s.FindIdentities(ctx, ws, [][]byte{w.blind["uA"], w.blind["eA"]})
	if err != nil {
		t.Fatal(err)
	}
	for _, ir := range rk.Identities {
		g := ids[string(ir.Blind)]
		if !bytes.Equal(g.Sealed, ir.Sealed) {
			t.Fatalf("identity %+v after the rekey: sealed value not replaced", g)
		}
	}
	if !strings.Contains(after[item("identity", ws, "uA")], "profile=11 key=101") {
		t.Fatalf("the rekey moved an identity: %s", after[item("identity", ws, "uA")])
	}
	if p := mustFindProfile(t, s, w.b, 11); string(p.State) != "rectified" || p.KeyID != 101 || p.AppliedSeq != 12 {
		t.Fatalf("profile 11 after the rekey = %+v; want the new state, everything else kept", p)
	}
	got, err := s.FindPrivacyRequest(ctx, ws, rr.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != trustloop.RequestCompleted || !got.CompletedAt.Equal(privacyBase.Add(time.Hour)) || string(got.Result) != `{"events_resealed":5}` ||
		got.Progress != "done" || got.Payload != nil || got.Version != rr.Version+1 {
		t.Fatalf("the rectification after the rekey = %+v; want completed, its payload cleared", got)
	}
}

// testDeleteEvents: the workspace's events at the positions go, more than a
// statement's worth at once; unknown positions and other workspaces' events
// are not counted; timelines still list the positions.
func testDeleteEvents(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	b := MustBootstrap(t, s)
	ws := b.Workspace.ID
	b2 := mustSecondWorkspace(t, s)
	now := time.Now()
	batch := &trustloop.CommitBatch{NewKeys: []trustloop.SubjectKey{newKey(b, 1)}}
	for range 1203 {
		batch.Events = append(batch.Events, event(b, 1, random(16), now))
	}
	if n, err := s.AppendEvents(ctx, batch); err != nil || n != 1203 {
		t.Fatalf("AppendEvents = %d, %v", n, err)
	}
	if n, err := s.AppendEvents(ctx, &trustloop.CommitBatch{NewKeys: []trustloop.SubjectKey{newKey(b2, 2)},
		Events: []trustloop.StoredEvent{event(b2, 2, random(16), now), event(b2, 2, random(16), now)}}); err != nil || n != 2 {
		t.Fatalf("AppendEvents(second workspace) = %d, %v", n, err)
	}
	var all []trustloop.StoredEvent
	for after := int64(0); ; {
		page, err := s.ListEvents(ctx, ws, after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		all = append(all, page...)
		after = page[len(page)-1].Seq
	}
	theirs, err := s.ListEvents(ctx, b2.Workspace.ID, 0, 10)
	if err != nil || len(theirs) != 2 || len(all) != 1203 {
		t.Fatalf("ListEvents = %d and %d, %v", len(all), len(theirs), err)
	}
	if err := s.WriteProjection(ctx, &trustloop.ProjectionChanges{Timeline: []trustloop.TimelineRun{{KeyID: 1, Seqs: []int64{all[0].Seq, all[1].Seq, all[2].Seq}}}}); err != nil {
		t.Fatal(err)
	}

	// Every event but the second and the last, given out of order, with an
	// unknown position, the other workspace's and a repeat.
	var del []int64
	for i := len(all) - 2; i >= 0; i-- {
		if i != 1 {
			del = append(del, all[i].Seq)
		}
	}
	del = append(del, 1<<40, theirs[0].Seq, all[0].Seq)
	n, err := s.DeleteEvents(ctx, ws, del)
	if err != nil || n != 1201 {
		t.Fatalf("DeleteEvents = %d, %v; want 1201", n, err)
	}
	left, err := s.ListEvents(ctx, ws, 0, 10)
	if err != nil || len(left) != 2 || left[0].Seq != all[1].Seq || left[1].Seq != all[1202].Seq ||
		!bytes.Equal(left[1].Payload, all[1202].Payload) {
		t.Fatalf("left after DeleteEvents: %d events, %v; want the second and the last", len(left), err)
	}
	if got, err := s.ListEvents(ctx, b2.Workspace.ID, 0, 10); err != nil || len(got) != 2 {
		t.Fatalf("the other workspace has %d events, %v; want 2", len(got), err)
	}
	if seqs, err := s.TimelineSeqs(ctx, []int64{1}); err != nil || !equalIDs(seqs, []int64{all[0].Seq, all[1].Seq, all[2].Seq}) {
		t.Fatalf("TimelineSeqs after DeleteEvents = %v, %v; want the positions still listed", seqs, err)
	}
	if got, err := s.ProfileEvents(ctx, ws, []int64{1}, 0, 10); err != nil || len(got) != 1 || got[0].Seq != all[1].Seq {
		t.Fatalf("ProfileEvents after DeleteEvents = %d, %v; want the one left", len(got), err)
	}
	if st, err := s.Stats(ctx); err != nil || st.Events != 4 {
		t.Fatalf("Stats events = %d, %v; want 4", st.Events, err)
	}

	// Again, none; nor nothing; nor in another workspace's name.
	for _, c := range []struct {
		ws   int64
		seqs []int64
	}{{ws, del}, {ws, nil}, {b2.Workspace.ID, []int64{all[1].Seq, all[1202].Seq}}, {other(b), []int64{all[1].Seq, theirs[1].Seq}}} {
		if n, err := s.DeleteEvents(ctx, c.ws, c.seqs); err != nil || n != 0 {
			t.Fatalf("DeleteEvents(%d, %d positions) = %d, %v; want 0", c.ws, len(c.seqs), n, err)
		}
	}
	if st, err := s.Stats(ctx); err != nil || st.Events != 4 {
		t.Fatalf("Stats events = %d, %v; want 4", st.Events, err)
	}
}

// testExpiredConsent: the records that are the latest of their subject and
// purpose, given, and expired strictly before now; a limit caps them.
func testExpiredConsent(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	b := MustBootstrap(t, s)
	ws := b.Workspace.ID
	now := time.UnixMilli(1_800_000_000_000).UTC()
	subj := map[string][]byte{}
	for _, n := range []string{"s1", "s2", "s3", "s4", "s5", "s6", "s7"} {
		subj[n] = random(32)
	}
	// rec makes a record expiring at now+expires; none without expires.
	rec := func(ws int64, name, purpose, state string, at time.Time, expires ...time.Duration) trustloop.ConsentRecord {
		r := consentRec(ws, subj[name], purpose, state)
		r.At, r.Jurisdiction, r.ExpiresAt = at, "FR", time.Time{}
		if len(expires) > 0 {
			r.ExpiresAt = now.Add(expires[0])
		}
		return r
	}
	long := now.Add(-400 * 24 * time.Hour)
	given, refused := trustloop.ConsentGiven, trustloop.ConsentRefused
	recs := []trustloop.ConsentRecord{
		rec(ws, "s1", "analytics", given, long, -time.Hour), // expired: listed
		rec(ws, "s1", "marketing", given, long, -time.Hour), // expired, then withdrawn
		rec(ws, "s1", "marketing", trustloop.ConsentWithdrawn, long.Add(time.Hour)),
		rec(ws, "s2", "analytics", given, long, -2*time.Hour), // expired, then given again
		rec(ws, "s2", "analytics", given, now.Add(-time.Hour), time.Hour),
		rec(ws, "s3", "analytics", given, long),                                   // no expiry
		rec(ws, "s4", "analytics", given, long, time.Millisecond),                 // expires after now
		rec(ws, "s4", "marketing", given, long, 0),                                // expires at now: not before it
		rec(ws, "s5", "analytics", refused, long, -time.Hour),                     // not given
		rec(ws, "s6", "analytics", given, long, -3*time.Hour),                     // superseded by the next
		rec(ws, "s6", "analytics", given, long.Add(time.Hour), -time.Millisecond), // expired: listed
		rec(ws, "s7", "analytics", given, long, -time.Hour),                       // expired, and marked so already
		rec(ws, "s7", "analytics", trustloop.ConsentExpired, now.Add(-time.Minute)),
	}
	if err := s.AppendConsent(ctx, recs, nil); err != nil {
		t.Fatal(err)
	}
	b2 := mustSecondWorkspace(t, s)
	if err := s.AppendConsent(ctx, []trustloop.ConsentRecord{rec(b2.Workspace.ID, "s1", "analytics", given, long, -time.Hour)}, nil); err != nil {
		t.Fatal(err)
	}

	got, err := s.ExpiredConsent(ctx, ws, now, 100)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, func(a, b trustloop.ConsentRecord) int { return bytes.Compare(a.Subject, b.Subject) })
	want := []trustloop.ConsentRecord{recs[0], recs[10]}
	slices.SortFunc(want, func(a, b trustloop.ConsentRecord) int { return bytes.Compare(a.Subject, b.Subject) })
	if len(got) != len(want) {
		t.Fatalf("ExpiredConsent = %d records %+v; want %d", len(got), got, len(want))
	}
	for i, g := range got {
		w := want[i]
		if g.WorkspaceID != ws || !bytes.Equal(g.Subject, w.Subject) || g.Seq != w.Seq || g.Purpose != w.Purpose ||
			g.State != trustloop.ConsentGiven || !g.At.Equal(w.At) || !g.ExpiresAt.Equal(w.ExpiresAt) || g.Jurisdiction != w.Jurisdiction {
			t.Fatalf("ExpiredConsent[%d] = %+v\nwant %+v", i, g, w)
		}
	}
	if got, err := s.ExpiredConsent(ctx, ws, now, 1); err != nil || len(got) != 1 {
		t.Fatalf("ExpiredConsent(limit 1) = %d, %v; want 1", len(got), err)
	}
	if got, err := s.ExpiredConsent(ctx, b2.Workspace.ID, now, 100); err != nil || len(got) != 1 || !bytes.Equal(got[0].Subject, subj["s1"]) {
		t.Fatalf("ExpiredConsent in the second workspace = %+v, %v; want its one record", got, err)
	}
	if got, err := s.ExpiredConsent(ctx, other(b), now, 100); err != nil || len(got) != 0 {
		t.Fatalf("ExpiredConsent in an unknown workspace = %d, %v", len(got), err)
	}
	// Half an hour earlier, only what had expired by then.
	if got, err := s.ExpiredConsent(ctx, ws, now.Add(-30*time.Minute), 100); err != nil || len(got) != 1 ||
		!bytes.Equal(got[0].Subject, subj["s1"]) || got[0].Purpose != "analytics" {
		t.Fatalf("ExpiredConsent half an hour earlier = %+v, %v; want s1's analytics", got, err)
	}
}

// testSuppressions: the hashes erasures add, per workspace, each once.
func testSuppressions(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	b := MustBootstrap(t, s)
	ws := b.Workspace.ID
	b2 := mustSecondWorkspace(t, s)
	mustSuppressions := func(ws int64, want ...[]byte) {
		t.Helper()
		got, err := s.Suppressions(ctx, ws)
		if err != nil || !slices.EqualFunc(sortedBytes(got), sortedBytes(want), bytes.Equal) {
			t.Fatalf("Suppressions(%d) = %x, %v; want %x", ws, got, err, want)
		}
	}
	mustSuppressions(ws)
	h1, h2, h3, h4 := random(32), random(32), random(32), random(32)
	for _, c := range []struct {
		ws   int64
		add  [][]byte
		want int64
	}{{ws, [][]byte{h1, h2}, 2}, {b2.Workspace.ID, [][]byte{h3, h1}, 2}, {ws, [][]byte{h2, h4, h4}, 1}, {ws, [][]byte{h1}, 0}} {
		if n, err := s.Erase(ctx, &trustloop.Erasure{WorkspaceID: c.ws, Suppress: c.add}); err != nil || n != (trustloop.ErasureCounts{Suppressions: c.want}) {
			t.Fatalf("Erase suppressing %d hashes = %+v, %v; want %d suppressions counted", len(c.add), n, err, c.want)
		}
	}
	mustSuppressions(ws, h1, h2, h4)
	mustSuppressions(b2.Workspace.ID, h1, h3)
	mustSuppressions(other(b))
	// A failed erasure adds none.
	boom := errors.New("no")
	if _, err := s.Erase(ctx, &trustloop.Erasure{WorkspaceID: ws, Suppress: [][]byte{random(32)},
		Complete: func(trustloop.ErasureCounts) (*trustloop.PrivacyRequest, error) { return nil, boom }}); !errors.Is(err, boom) {
		t.Fatalf("Erase with a failing Complete = %v", err)
	}
	mustSuppressions(ws, h1, h2, h4)
}
