package storetest

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
)

// The privacy side of the suite: PrivacyStore and the job queue. Request and
// job times are whole milliseconds, which is what the stores keep; jobs are
// claimed at times the tests pass in, so no test waits for a lease to run out.

var privacyBase = time.UnixMilli(1_750_000_000_000).UTC()

func privacyReq(ws int64, typ string, subject []byte, received time.Time) *trustloop.PrivacyRequest {
	ack, due := trustloop.RequestDeadlines(trustloop.RegimeGDPR, received)
	return &trustloop.PrivacyRequest{ID: trustloop.NewRequestID(), WorkspaceID: ws, Type: typ, Status: trustloop.RequestReceived,
		IdentifierType: "email", Subject: subject, Regime: trustloop.RegimeGDPR, ReceivedAt: received, AckDueAt: ack, DueAt: due}
}

// requestDiff names the first field in which g differs from w, "" if none.
func requestDiff(g, w *trustloop.PrivacyRequest) string {
	for _, f := range []struct {
		name string
		same bool
	}{
		{"ID", g.ID == w.ID}, {"WorkspaceID", g.WorkspaceID == w.WorkspaceID}, {"Type", g.Type == w.Type},
		{"Status", g.Status == w.Status}, {"IdentifierType", g.IdentifierType == w.IdentifierType},
		{"Subject", bytes.Equal(g.Subject, w.Subject) && (g.Subject == nil) == (w.Subject == nil)},
		{"Regime", g.Regime == w.Regime}, {"ReceivedAt", g.ReceivedAt.Equal(w.ReceivedAt)},
		{"AckDueAt", g.AckDueAt.Equal(w.AckDueAt)}, {"DueAt", g.DueAt.Equal(w.DueAt)},
		{"ExtendedAt", g.ExtendedAt.Equal(w.ExtendedAt)}, {"ExtensionReason", g.ExtensionReason == w.ExtensionReason},
		{"VerifiedBy", g.VerifiedBy == w.VerifiedBy}, {"VerifiedAt", g.VerifiedAt.Equal(w.VerifiedAt)},
		{"CompletedAt", g.CompletedAt.Equal(w.CompletedAt)}, {"RejectReason", g.RejectReason == w.RejectReason},
		{"Suppress", g.Suppress == w.Suppress},
		{"Suppression", bytes.Equal(g.Suppression, w.Suppression) && (g.Suppression == nil) == (w.Suppression == nil)},
		{"Payload", bytes.Equal(g.Payload, w.Payload) && (g.Payload == nil) == (w.Payload == nil)},
		{"Result", bytes.Equal(g.Result, w.Result) && (g.Result == nil) == (w.Result == nil)},
		{"Receipt", g.Receipt == w.Receipt}, {"Progress", g.Progress == w.Progress},
		{"UpdatedAt", g.UpdatedAt.Equal(w.UpdatedAt)}, {"Version", g.Version == w.Version},
	} {
		if !f.same {
			return fmt.Sprintf("%s differs:\n got %+v\nwant %+v", f.name, g, w)
		}
	}
	return ""
}

func mustFindRequest(t *testing.T, s trustloop.Store, want *trustloop.PrivacyRequest) {
	t.Helper()
	got, err := s.FindPrivacyRequest(context.Background(), want.WorkspaceID, want.ID)
	if err != nil {
		t.Fatalf("FindPrivacyRequest = %v", err)
	}
	if d := requestDiff(got, want); d != "" {
		t.Fatalf("request read back: %s", d)
	}
}

func mustCreateRequest(t *testing.T, s trustloop.Store, r *trustloop.PrivacyRequest, job *trustloop.Job) {
	t.Helper()
	if existing, err := s.CreatePrivacyRequest(context.Background(), r, job); err != nil || existing != nil {
		t.Fatalf("CreatePrivacyRequest = %v, %v; want a new request", existing, err)
	}
}

func mustUpdateRequest(t *testing.T, s trustloop.Store, r *trustloop.PrivacyRequest, job *trustloop.Job) {
	t.Helper()
	if err := s.UpdatePrivacyRequest(context.Background(), r, job); err != nil {
		t.Fatalf("UpdatePrivacyRequest(%s) = %v", r.Status, err)
	}
}

// testPrivacyRequests: a request and its job are stored together, every field
// comes back, and another workspace sees neither.
func testPrivacyRequests(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	b := MustBootstrap(t, s)
	ws := b.Workspace.ID
	if sup, err := s.Suppressions(ctx, ws); err != nil || len(sup) != 0 {
		t.Fatalf("Suppressions of a new store = %d, %v; want none", len(sup), err)
	}
	r := privacyReq(ws, trustloop.RequestErasure, random(32), privacyBase)
	r.Suppress, r.Suppression, r.Payload = true, random(32), random(40)
	r.VerifiedBy, r.VerifiedAt = "key:1", privacyBase.Add(time.Minute)
	r.ExtendedAt, r.ExtensionReason = privacyBase.Add(time.Hour), "many requests"
	r.Result, r.Receipt, r.Progress = []byte(`{"events":0}`), "rcpt", "queued"
	job := &trustloop.Job{Kind: "privacy_request", Ref: "ignored", RunAt: privacyBase}
	mustCreateRequest(t, s, r, job)
	if r.Version != 1 || !r.UpdatedAt.Equal(r.ReceivedAt) {
		t.Fatalf("created request: version %d, updated %v; want 1 and the received time %v", r.Version, r.UpdatedAt, r.ReceivedAt)
	}
	if job.ID == 0 || job.Ref != r.ID || job.WorkspaceID != ws || job.State != trustloop.JobQueued || job.MaxAttempts != 10 ||
		job.CreatedAt.IsZero() || !job.RunAt.Equal(privacyBase) {
		t.Fatalf("the request's job = %+v", job)
	}
	mustFindRequest(t, s, r)
	jobs, err := s.JobsOf(ctx, ws, r.ID)
	if err != nil || len(jobs) != 1 || jobs[0].ID != job.ID || jobs[0].Kind != job.Kind || jobs[0].State != trustloop.JobQueued ||
		!jobs[0].CreatedAt.Equal(job.CreatedAt) {
		t.Fatalf("JobsOf = %+v, %v; want the request's job %+v", jobs, err, job)
	}

	// Without a job, none is enqueued.
	plain := privacyReq(ws, trustloop.RequestAccess, random(32), privacyBase.Add(time.Second))
	plain.UpdatedAt = privacyBase.Add(2 * time.Second)
	mustCreateRequest(t, s, plain, nil)
	if !plain.UpdatedAt.Equal(privacyBase.Add(2 * time.Second)) {
		t.Fatalf("a set UpdatedAt was replaced by %v", plain.UpdatedAt)
	}
	mustFindRequest(t, s, plain)
	if jobs, err := s.JobsOf(ctx, ws, plain.ID); err != nil || len(jobs) != 0 {
		t.Fatalf("a request created without a job has %d jobs, %v", len(jobs), err)
	}

	// An id is never reused.
	dup := privacyReq(ws, trustloop.RequestPortability, random(32), privacyBase)
	dup.ID = r.ID
	if _, err := s.CreatePrivacyRequest(ctx, dup, nil); trustloop.ErrorCode(err) != trustloop.ECONFLICT {
		t.Fatalf("CreatePrivacyRequest with a taken id: err = %v, want conflict", err)
	}

	if _, err := s.FindPrivacyRequest(ctx, ws, trustloop.NewRequestID()); trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
		t.Fatalf("FindPrivacyRequest(unknown) err = %v, want not_found", err)
	}
	if _, err := s.FindPrivacyRequest(ctx, other(b), r.ID); trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
		t.Fatalf("another workspace finds the request: err = %v, want not_found", err)
	}
	if l, err := s.ListPrivacyRequests(ctx, other(b), trustloop.PrivacyFilter{}); err != nil || len(l) != 0 {
		t.Fatalf("another workspace lists %d requests, %v", len(l), err)
	}
	if l, err := s.SubjectPrivacyRequests(ctx, other(b), [][]byte{r.Subject}); err != nil || len(l) != 0 {
		t.Fatalf("another workspace finds %d requests by subject, %v", len(l), err)
	}
	if jobs, err := s.JobsOf(ctx, other(b), r.ID); err != nil || len(jobs) != 0 {
		t.Fatalf("another workspace sees %d jobs, %v", len(jobs), err)
	}
	if sup, err := s.Suppressions(ctx, ws); err != nil || len(sup) != 0 {
		t.Fatalf("Suppressions = %d, %v; a request alone adds none", len(sup), err)
	}
}

// testPrivacyRequestOpenOnce: a second open request of the same type for the
// same subject joins the first, storing nothing; once the first is closed a
// new one may be made.
func testPrivacyRequestOpenOnce(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	b := MustBootstrap(t, s)
	ws := b.Workspace.ID
	subject := random(32)
	first := privacyReq(ws, trustloop.RequestErasure, subject, privacyBase)
	mustCreateRequest(t, s, first, &trustloop.Job{Kind: "privacy_request"})

	joins := func(when string) {
		t.Helper()
		second := privacyReq(ws, trustloop.RequestErasure, subject, privacyBase.Add(time.Hour))
		job := &trustloop.Job{Kind: "privacy_request"}
		existing, err := s.CreatePrivacyRequest(ctx, second, job)
		if err != nil || existing == nil || existing.ID != first.ID {
			t.Fatalf("%s: a second open request = %+v, %v; want the first (%s)", when, existing, err, first.ID)
		}
		if d := requestDiff(existing, first); d != "" {
			t.Fatalf("%s: the existing request returned: %s", when, d)
		}
		if second.Version != 0 || job.ID != 0 {
			t.Fatalf("%s: the joined request was changed: version %d, job id %d", when, second.Version, job.ID)
		}
		if _, err := s.FindPrivacyRequest(ctx, ws, second.ID); trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
			t.Fatalf("%s: the joined request was stored: err = %v", when, err)
		}
		if jobs, err := s.JobsOf(ctx, ws, second.ID); err != nil || len(jobs) != 0 {
			t.Fatalf("%s: the joined request enqueued %d jobs, %v", when, len(jobs), err)
		}
		if jobs, err := s.JobsOf(ctx, ws, first.ID); err != nil || len(jobs) != 1 {
			t.Fatalf("%s: the first request has %d jobs, %v; want 1", when, len(jobs), err)
		}
	}
	joins("received")
	first.Status = trustloop.RequestVerified
	mustUpdateRequest(t, s, first, nil)
	joins("verified")
	first.Status = trustloop.RequestInProgress
	mustUpdateRequest(t, s, first, nil)
	joins("in progress")

	// Another type, or another workspace, is another request.
	mustCreateRequest(t, s, privacyReq(ws, trustloop.RequestAccess, subject, privacyBase), nil)
	mustCreateRequest(t, s, privacyReq(other(b), trustloop.RequestErasure, subject, privacyBase), nil)
	// Requests without a subject (erased) never join.
	mustCreateRequest(t, s, privacyReq(ws, trustloop.RequestErasure, nil, privacyBase), nil)
	mustCreateRequest(t, s, privacyReq(ws, trustloop.RequestErasure, nil, privacyBase), nil)

	// Completed, the first leaves room for a new one; so does a rejected one.
	first.Status, first.CompletedAt = trustloop.RequestCompleted, privacyBase.Add(time.Hour)
	mustUpdateRequest(t, s, first, nil)
	third := privacyReq(ws, trustloop.RequestErasure, subject, privacyBase.Add(2*time.Hour))
	mustCreateRequest(t, s, third, &trustloop.Job{Kind: "privacy_request"})
	third.Status, third.RejectReason = trustloop.RequestRejected, "unverified"
	mustUpdateRequest(t, s, third, nil)
	fourth := privacyReq(ws, trustloop.RequestErasure, subject, privacyBase.Add(3*time.Hour))
	mustCreateRequest(t, s, fourth, nil)
	got, err := s.SubjectPrivacyRequests(ctx, ws, [][]byte{subject})
	if err != nil || len(got) != 4 {
		t.Fatalf("the subject has %d requests, %v; want 4 (three erasures, one access)", len(got), err)
	}
}

// testPrivacyRequestRace: creators of the same request at once (on several
// nodes) end with one request and one job, and every loser is told of it.
func testPrivacyRequestRace(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	b := MustBootstrap(t, s)
	ws := b.Workspace.ID
	// Several rounds: the first may find a backend's connections still being
	// opened, which staggers the creators.
	for range 5 {
		subject := random(32)
		const creators = 8
		reqs := make([]*trustloop.PrivacyRequest, creators)
		existing := make([]*trustloop.PrivacyRequest, creators)
		errs := make([]error, creators)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range creators {
			reqs[i] = privacyReq(ws, trustloop.RequestErasure, subject, privacyBase)
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				existing[i], errs[i] = s.CreatePrivacyRequest(ctx, reqs[i], &trustloop.Job{Kind: "privacy_request"})
			}()
		}
		close(start)
		wg.Wait()
		var winner *trustloop.PrivacyRequest
		for i := range creators {
			if errs[i] != nil {
				t.Fatalf("creator %d: %v", i, errs[i])
			}
			if existing[i] == nil {
				if winner != nil {
					t.Fatalf("two creators stored the request: %s and %s", winner.ID, reqs[i].ID)
				}
				winner = reqs[i]
			}
		}
		if winner == nil {
			t.Fatal("no creator stored the request")
		}
		for i, e := range existing {
			if e != nil && e.ID != winner.ID {
				t.Fatalf("creator %d was told of %s, not the stored %s", i, e.ID, winner.ID)
			}
		}
		if got, err := s.SubjectPrivacyRequests(ctx, ws, [][]byte{subject}); err != nil || len(got) != 1 {
			t.Fatalf("the subject has %d requests, %v; want 1", len(got), err)
		}
		for _, r := range reqs {
			if jobs, err := s.JobsOf(ctx, ws, r.ID); err != nil || (len(jobs) == 1) != (r == winner) {
				t.Fatalf("request %s has %d jobs, %v (stored: %v)", r.ID, len(jobs), err, r == winner)
			}
		}
	}
}

// testPrivacyList: requests by due date then id, filtered by status, in pages.
func testPrivacyList(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	b := MustBootstrap(t, s)
	ws := b.Workspace.ID
	var all []*trustloop.PrivacyRequest
	for i := range 9 {
		// Pairs received at once share a due date: the id orders them.
		r := privacyReq(ws, trustloop.RequestAccess, random(32), privacyBase.Add(time.Duration(8-i)/2*time.Hour))
		mustCreateRequest(t, s, r, nil)
		if i%3 == 0 {
			r.Status = trustloop.RequestVerified
			mustUpdateRequest(t, s, r, nil)
		}
		all = append(all, r)
	}
	slices.SortFunc(all, func(a, b *trustloop.PrivacyRequest) int {
		if c := a.DueAt.Compare(b.DueAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	same := func(what string, got, want []*trustloop.PrivacyRequest) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %d requests, want %d", what, len(got), len(want))
		}
		for i := range got {
			if d := requestDiff(got[i], want[i]); d != "" {
				t.Fatalf("%s: request %d: %s", what, i, d)
			}
		}
	}
	got, err := s.ListPrivacyRequests(ctx, ws, trustloop.PrivacyFilter{})
	if err != nil {
		t.Fatal(err)
	}
	same("all", got, all)
	page := func(f trustloop.PrivacyFilter) []*trustloop.PrivacyRequest {
		t.Helper()
		var out []*trustloop.PrivacyRequest
		for n := 0; ; n++ {
			p, err := s.ListPrivacyRequests(ctx, ws, f)
			if err != nil {
				t.Fatal(err)
			}
			if len(p) > f.Limit {
				t.Fatalf("a page of %d requests, limit %d", len(p), f.Limit)
			}
			if len(p) == 0 || n > 20 {
				return out
			}
			out = append(out, p...)
			f.AfterDue, f.AfterID = p[len(p)-1].DueAt, p[len(p)-1].ID
		}
	}
	same("in pages of 2", page(trustloop.PrivacyFilter{Limit: 2}), all)
	var verified []*trustloop.PrivacyRequest
	for _, r := range all {
		if r.Status == trustloop.RequestVerified {
			verified = append(verified, r)
		}
	}
	got, err = s.ListPrivacyRequests(ctx, ws, trustloop.PrivacyFilter{Status: trustloop.RequestVerified})
	if err != nil {
		t.Fatal(err)
	}
	same("verified", got, verified)
	same("verified in pages of 1", page(trustloop.PrivacyFilter{Status: trustloop.RequestVerified, Limit: 1}), verified)
	got, err = s.ListPrivacyRequests(ctx, ws, trustloop.PrivacyFilter{Status: trustloop.RequestCompleted})
	if err != nil || len(got) != 0 {
		t.Fatalf("completed requests = %d, %v; want none", len(got), err)
	}
	// After the fourth's position, by its due date and id.
	got, err = s.ListPrivacyRequests(ctx, ws, trustloop.PrivacyFilter{AfterDue: all[3].DueAt, AfterID: all[3].ID, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	same("after the fourth", got, all[4:])
}

// testSubjectPrivacyRequests: the requests naming any of a person's blind
// indexes, by received time.
func testSubjectPrivacyRequests(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	b := MustBootstrap(t, s)
	ws := b.Workspace.ID
	email, userID, stranger := random(32), random(32), random(32)
	later := privacyReq(ws, trustloop.RequestErasure, email, privacyBase.Add(2*time.Hour))
	earlier := privacyReq(ws, trustloop.RequestAccess, email, privacyBase)
	byUser := privacyReq(ws, trustloop.RequestAccess, userID, privacyBase.Add(time.Hour))
	for _, r := range []*trustloop.PrivacyRequest{later, earlier, byUser,
		privacyReq(ws, trustloop.RequestAccess, stranger, privacyBase), privacyReq(ws, trustloop.RequestAccess, nil, privacyBase)} {
		mustCreateRequest(t, s, r, nil)
	}
	got, err := s.SubjectPrivacyRequests(ctx, ws, [][]byte{email, userID, random(32)})
	if err != nil {
		t.Fatal(err)
	}
	want := []*trustloop.PrivacyRequest{earlier, byUser, later}
	if len(got) != len(want) {
		t.Fatalf("SubjectPrivacyRequests = %d requests, want %d", len(got), len(want))
	}
	for i := range got {
		if d := requestDiff(got[i], want[i]); d != "" {
			t.Fatalf("request %d: %s", i, d)
		}
	}
	if got, err := s.SubjectPrivacyRequests(ctx, ws, nil); err != nil || len(got) != 0 {
		t.Fatalf("SubjectPrivacyRequests(none) = %d, %v", len(got), err)
	}
}

// testPrivacyUpdate: optimistic concurrency, every field written (nil blobs
// and unset times included), and a job enqueued with the update.
func testPrivacyUpdate(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	b := MustBootstrap(t, s)
	ws := b.Workspace.ID
	r := privacyReq(ws, trustloop.RequestRectification, random(32), privacyBase)
	r.Payload, r.Suppression = random(64), random(32)
	mustCreateRequest(t, s, r, nil)
	stale := *r

	r.Status, r.VerifiedBy, r.VerifiedAt, r.Progress = trustloop.RequestVerified, "operator:3", privacyBase.Add(time.Minute), "verified"
	mustUpdateRequest(t, s, r, nil)
	if r.Version != 2 || r.UpdatedAt.IsZero() {
		t.Fatalf("after one update: version %d, updated %v; want 2 and a time", r.Version, r.UpdatedAt)
	}
	mustFindRequest(t, s, r)

	stale.Status = trustloop.RequestRejected
	if err := s.UpdatePrivacyRequest(ctx, &stale, &trustloop.Job{Kind: "privacy_request"}); trustloop.ErrorCode(err) != trustloop.ECONFLICT {
		t.Fatalf("UpdatePrivacyRequest with a stale version: err = %v, want conflict", err)
	}
	if stale.Version != 1 {
		t.Fatalf("a failed update bumped the version to %d", stale.Version)
	}
	mustFindRequest(t, s, r)
	if jobs, err := s.JobsOf(ctx, ws, r.ID); err != nil || len(jobs) != 0 {
		t.Fatalf("a failed update enqueued %d jobs, %v", len(jobs), err)
	}

	// Every field changes; blobs become NULL, times unset.
	ack, due := trustloop.RequestDeadlines(trustloop.RegimeCCPA, privacyBase.Add(time.Hour))
	r.Type, r.Status, r.IdentifierType, r.Regime = trustloop.RequestObjection, trustloop.RequestInProgress, "user_id", trustloop.RegimeCCPA
	r.Subject, r.Payload, r.Suppression, r.Result = nil, nil, nil, []byte(`{"traits":2}`)
	r.ReceivedAt, r.AckDueAt, r.DueAt = privacyBase.Add(time.Hour), ack, due
	r.ExtendedAt, r.ExtensionReason = privacyBase.Add(2*time.Hour), "complex"
	r.VerifiedBy, r.VerifiedAt, r.CompletedAt = "portal:x", time.Time{}, privacyBase.Add(3*time.Hour)
	r.RejectReason, r.Suppress, r.Receipt, r.Progress = "none", true, "rcpt_2", "step 2"
	job := &trustloop.Job{Kind: "privacy_request", MaxAttempts: 3}
	mustUpdateRequest(t, s, r, job)
	if r.Version != 3 {
		t.Fatalf("after two updates: version %d, want 3", r.Version)
	}
	if job.ID == 0 || job.Ref != r.ID || job.WorkspaceID != ws || job.MaxAttempts != 3 || job.State != trustloop.JobQueued {
		t.Fatalf("the update's job = %+v", job)
	}
	mustFindRequest(t, s, r)
	got, _ := s.FindPrivacyRequest(ctx, ws, r.ID)
	if got.Subject != nil || got.Payload != nil || got.Suppression != nil || !got.VerifiedAt.IsZero() {
		t.Fatalf("cleared fields read back as %+v", got)
	}
	if jobs, err := s.JobsOf(ctx, ws, r.ID); err != nil || len(jobs) != 1 || jobs[0].ID != job.ID {
		t.Fatalf("JobsOf after an update with a job = %+v, %v", jobs, err)
	}

	// An unset time is stored as 0, not as the zero time's (negative) Unix
	// milliseconds: the list places a request with no due date just after -1.
	r.Result, r.DueAt = nil, time.Time{}
	mustUpdateRequest(t, s, r, nil)
	mustFindRequest(t, s, r)
	l, err := s.ListPrivacyRequests(ctx, ws, trustloop.PrivacyFilter{AfterDue: time.UnixMilli(-1)})
	if err != nil || len(l) != 1 || l[0].ID != r.ID || !l[0].DueAt.IsZero() {
		t.Fatalf("requests due after -1 ms = %v, %v; want the one without a due date", l, err)
	}

	unknown := *r
	unknown.ID = trustloop.NewRequestID()
	if err := s.UpdatePrivacyRequest(ctx, &unknown, nil); trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
		t.Fatalf("UpdatePrivacyRequest(unknown id) = %v, want not_found", err)
	}
	elsewhere := *r
	elsewhere.WorkspaceID = other(b)
	if err := s.UpdatePrivacyRequest(ctx, &elsewhere, nil); trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
		t.Fatalf("UpdatePrivacyRequest in another workspace = %v, want not_found", err)
	}
}

func mustEnqueue(t *testing.T, s trustloop.Store, ws int64, kind, ref string, runAt time.Time) *trustloop.Job {
	t.Helper()
	j := &trustloop.Job{WorkspaceID: ws, Kind: kind, Ref: ref, RunAt: runAt}
	if err := s.EnqueueJob(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	return j
}

// mustClaim claims at now with a one-minute lease and fails unless it gets
// the job want (nil: none).
func mustClaim(t *testing.T, s trustloop.Store, worker string, kinds []string, now time.Time, want *trustloop.Job) *trustloop.Job {
	t.Helper()
	j, err := s.ClaimJob(context.Background(), worker, kinds, now, time.Minute)
	if err != nil {
		t.Fatalf("ClaimJob = %v", err)
	}
	switch {
	case want == nil && j != nil:
		t.Fatalf("ClaimJob at %v took %+v; want none", now, j)
	case want != nil && j == nil:
		t.Fatalf("ClaimJob at %v took none; want job %d", now, want.ID)
	case want != nil && j.ID != want.ID:
		t.Fatalf("ClaimJob at %v took job %d (%s, run at %v); want %d", now, j.ID, j.Ref, j.RunAt, want.ID)
	}
	if j != nil && (j.State != trustloop.JobRunning || j.LockedBy != worker || !j.LockedUntil.Equal(now.Add(time.Minute)) ||
		j.Kind != want.Kind || j.Ref != want.Ref || j.WorkspaceID != want.WorkspaceID || !j.RunAt.Equal(want.RunAt)) {
		t.Fatalf("claimed job = %+v, from %+v", j, want)
	}
	return j
}

func jobState(t *testing.T, s trustloop.Store, j *trustloop.Job) trustloop.Job {
	t.Helper()
	jobs, err := s.JobsOf(context.Background(), j.WorkspaceID, j.Ref)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range jobs {
		if g.ID == j.ID {
			return g
		}
	}
	t.Fatalf("job %d not in JobsOf(%s)", j.ID, j.Ref)
	return trustloop.Job{}
}

// testJobs: enqueue and claim, oldest due first, by kind.
func testJobs(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	b := MustBootstrap(t, s)
	ws := b.Workspace.ID
	t0 := privacyBase
	if j, err := s.ClaimJob(ctx, "w1", []string{"a"}, t0, time.Minute); err != nil || j != nil {
		t.Fatalf("ClaimJob on an empty queue = %+v, %v; want nil, nil", j, err)
	}
	late := mustEnqueue(t, s, ws, "a", "r1", t0.Add(2*time.Second))
	first := mustEnqueue(t, s, ws, "a", "r2", t0.Add(time.Second))
	second := mustEnqueue(t, s, ws, "a", "r3", t0.Add(time.Second))
	future := mustEnqueue(t, s, ws, "a", "r4", t0.Add(time.Hour))
	kindB := mustEnqueue(t, s, other(b), "b", "r5", t0)
	if late.ID == 0 || late.State != trustloop.JobQueued || late.MaxAttempts != 10 || late.CreatedAt.IsZero() ||
		!late.UpdatedAt.Equal(late.CreatedAt) || late.Attempts != 0 {
		t.Fatalf("enqueued job = %+v", late)
	}
	// Not before its time.
	mustClaim(t, s, "w1", []string{"a"}, t0, nil)
	got := mustClaim(t, s, "w1", []string{"a"}, t0.Add(5*time.Second), first)
	if got.Attempts != 1 || got.Progress != "" || got.LastError != "" {
		t.Fatalf("first claim = %+v; want one attempt", got)
	}
	mustClaim(t, s, "w2", []string{"a", "c"}, t0.Add(5*time.Second), second)
	mustClaim(t, s, "w1", []string{"a"}, t0.Add(5*time.Second), late)
	mustClaim(t, s, "w1", []string{"a"}, t0.Add(5*time.Second), nil)
	if st := jobState(t, s, first); st.State != trustloop.JobRunning || st.LockedBy != "w1" || st.Attempts != 1 ||
		!st.LockedUntil.Equal(t0.Add(5*time.Second+time.Minute)) {
		t.Fatalf("a claimed job is stored as %+v", st)
	}
	// Done, they are not claimed again when their leases would have run out.
	for _, j := range []*trustloop.Job{first, late} {
		if err := s.FinishJob(ctx, j.ID, "w1", trustloop.JobDone, "", time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.FinishJob(ctx, second.ID, "w2", trustloop.JobDone, "", time.Time{}); err != nil {
		t.Fatal(err)
	}
	mustClaim(t, s, "w1", []string{"a"}, t0.Add(time.Hour), future)
	// Only the kinds asked for.
	mustClaim(t, s, "w1", []string{"a", "c"}, t0.Add(time.Hour), nil)
	if j, err := s.ClaimJob(ctx, "w1", nil, t0.Add(time.Hour), time.Minute); err != nil || j != nil {
		t.Fatalf("ClaimJob of no kinds = %+v, %v; want nil, nil", j, err)
	}
	mustClaim(t, s, "w3", []string{"b"}, t0.Add(time.Hour), kindB)

	// By default a job runs as soon as it is enqueued, and at most 10 times.
	now := mustEnqueue(t, s, ws, "d", "r6", time.Time{})
	if !now.RunAt.Equal(now.CreatedAt) {
		t.Fatalf("a job without RunAt runs at %v; want its creation %v", now.RunAt, now.CreatedAt)
	}
	capped := &trustloop.Job{WorkspaceID: ws, Kind: "d", Ref: "r7", MaxAttempts: 2, RunAt: t0}
	if err := s.EnqueueJob(ctx, capped); err != nil || capped.MaxAttempts != 2 {
		t.Fatalf("EnqueueJob with MaxAttempts 2 = %+v, %v", capped, err)
	}
	if st := jobState(t, s, now); st.RunAt.IsZero() || !st.RunAt.Equal(now.RunAt) || st.MaxAttempts != 10 {
		t.Fatalf("stored job = %+v", st)
	}
}

// testJobLease: a claimed job stays with its worker until the lease runs out;
// then another takes it, and the first can no longer report on it.
func testJobLease(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	b := MustBootstrap(t, s)
	ws := b.Workspace.ID
	t0 := privacyBase
	j := mustEnqueue(t, s, ws, "a", "r1", t0)
	mustClaim(t, s, "w1", []string{"a"}, t0, j)
	mustClaim(t, s, "w2", []string{"a"}, t0.Add(30*time.Second), nil)
	mustClaim(t, s, "w2", []string{"a"}, t0.Add(time.Minute), nil) // not before it ran out
	if err := s.ProgressJob(ctx, j.ID, "w1", "half", t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	// Extended: still w1's at the old lease's end.
	mustClaim(t, s, "w2", []string{"a"}, t0.Add(90*time.Second), nil)
	if st := jobState(t, s, j); st.Progress != "half" || !st.LockedUntil.Equal(t0.Add(2*time.Minute)) {
		t.Fatalf("after ProgressJob: %+v", st)
	}
	// w1 died: w2 takes the job, a second attempt.
	got := mustClaim(t, s, "w2", []string{"a"}, t0.Add(3*time.Minute), j)
	if got.Attempts != 2 {
		t.Fatalf("reclaimed job: %d attempts, want 2", got.Attempts)
	}
	if err := s.ProgressJob(ctx, j.ID, "w1", "late", t0.Add(time.Hour)); trustloop.ErrorCode(err) != trustloop.ECONFLICT {
		t.Fatalf("ProgressJob by the worker that lost the job = %v, want conflict", err)
	}
	if err := s.FinishJob(ctx, j.ID, "w1", trustloop.JobDone, "", time.Time{}); trustloop.ErrorCode(err) != trustloop.ECONFLICT {
		t.Fatalf("FinishJob by the worker that lost the job = %v, want conflict", err)
	}
	if st := jobState(t, s, j); st.State != trustloop.JobRunning || st.LockedBy != "w2" || st.Progress != "half" {
		t.Fatalf("the lost worker's calls changed the job: %+v", st)
	}
	if err := s.FinishJob(ctx, j.ID, "w2", "sleeping", "", time.Time{}); trustloop.ErrorCode(err) != trustloop.EINVALID {
		t.Fatalf("FinishJob as an unknown state = %v, want invalid", err)
	}
	if err := s.FinishJob(ctx, j.ID, "w2", trustloop.JobDone, "", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if st := jobState(t, s, j); st.State != trustloop.JobDone || st.Attempts != 2 {
		t.Fatalf("finished job = %+v", st)
	}
	mustClaim(t, s, "w3", []string{"a"}, t0.Add(time.Hour), nil)
	if err := s.FinishJob(ctx, j.ID, "w2", trustloop.JobDone, "", time.Time{}); trustloop.ErrorCode(err) != trustloop.ECONFLICT {
		t.Fatalf("FinishJob of a finished job = %v, want conflict", err)
	}
	if err := s.ProgressJob(ctx, 987654, "w2", "x", t0); trustloop.ErrorCode(err) != trustloop.ECONFLICT {
		t.Fatalf("ProgressJob of an unknown job = %v, want conflict", err)
	}

	// A job whose worker died on its last attempt is failed, not claimed.
	last := &trustloop.Job{WorkspaceID: ws, Kind: "a", Ref: "r2", MaxAttempts: 1, RunAt: t0}
	if err := s.EnqueueJob(ctx, last); err != nil {
		t.Fatal(err)
	}
	mustClaim(t, s, "w1", []string{"a"}, t0, last)
	mustClaim(t, s, "w2", []string{"a"}, t0.Add(2*time.Minute), nil)
	if st := jobState(t, s, last); st.State != trustloop.JobFailed || st.Attempts != 1 {
		t.Fatalf("a job out of attempts with its lease run out = %+v; want failed", st)
	}
}

// testJobRetry: a job finished as queued runs again at the time given;
// CancelJobs cancels only queued jobs.
func testJobRetry(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	b := MustBootstrap(t, s)
	ws := b.Workspace.ID
	t0 := privacyBase
	j := mustEnqueue(t, s, ws, "a", "r1", t0)
	mustClaim(t, s, "w1", []string{"a"}, t0, j)
	if err := s.FinishJob(ctx, j.ID, "w1", trustloop.JobQueued, "timeout", t0.Add(10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if st := jobState(t, s, j); st.State != trustloop.JobQueued || st.LockedBy != "" || !st.RunAt.Equal(t0.Add(10*time.Minute)) ||
		st.LastError != "timeout" || st.Attempts != 1 {
		t.Fatalf("a job queued again = %+v", st)
	}
	mustClaim(t, s, "w2", []string{"a"}, t0.Add(5*time.Minute), nil)
	want := *j
	want.RunAt = t0.Add(10 * time.Minute)
	got := mustClaim(t, s, "w2", []string{"a"}, t0.Add(10*time.Minute), &want)
	if got.Attempts != 2 || got.LastError != "timeout" {
		t.Fatalf("retried job = %+v; want a second attempt with the last error", got)
	}
	if err := s.FinishJob(ctx, j.ID, "w2", trustloop.JobFailed, "gave up", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if st := jobState(t, s, j); st.State != trustloop.JobFailed || st.LastError != "gave up" {
		t.Fatalf("failed job = %+v", st)
	}

	// One ref: one job queued, one running, one done; another ref's queued.
	queued := mustEnqueue(t, s, ws, "c", "req", t0.Add(time.Hour))
	running := mustEnqueue(t, s, ws, "c", "req", t0)
	done := mustEnqueue(t, s, ws, "c", "req", t0.Add(time.Second))
	mustClaim(t, s, "w1", []string{"c"}, t0.Add(time.Second), running)
	mustClaim(t, s, "w1", []string{"c"}, t0.Add(time.Second), done)
	if err := s.FinishJob(ctx, done.ID, "w1", trustloop.JobDone, "", time.Time{}); err != nil {
		t.Fatal(err)
	}
	otherRef := mustEnqueue(t, s, ws, "c", "req2", t0)
	if n, err := s.CancelJobs(ctx, other(b), "req"); err != nil || n != 0 {
		t.Fatalf("CancelJobs in another workspace = %d, %v; want 0", n, err)
	}
	if n, err := s.CancelJobs(ctx, ws, "req"); err != nil || n != 1 {
		t.Fatalf("CancelJobs = %d, %v; want 1", n, err)
	}
	jobs, err := s.JobsOf(ctx, ws, "req")
	if err != nil || len(jobs) != 3 {
		t.Fatalf("JobsOf = %d, %v; want 3", len(jobs), err)
	}
	for i, w := range []struct {
		id    int64
		state string
	}{{queued.ID, trustloop.JobCancelled}, {running.ID, trustloop.JobRunning}, {done.ID, trustloop.JobDone}} {
		if jobs[i].ID != w.id || jobs[i].State != w.state {
			t.Fatalf("JobsOf[%d] = job %d %s; want job %d %s (by id)", i, jobs[i].ID, jobs[i].State, w.id, w.state)
		}
	}
	if st := jobState(t, s, otherRef); st.State != trustloop.JobQueued {
		t.Fatalf("another ref's job = %s, want queued", st.State)
	}
	// While the running job's lease lasts, only the other ref's is left.
	mustClaim(t, s, "w2", []string{"c"}, t0.Add(30*time.Second), otherRef)
	mustClaim(t, s, "w2", []string{"c"}, t0.Add(30*time.Second), nil)
}

// testJobsConcurrent: workers claiming at once never hold one job together,
// and between them do every job.
func testJobsConcurrent(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	b := MustBootstrap(t, s)
	ws := b.Workspace.ID
	const jobs, workers = 50, 4
	for i := range jobs {
		mustEnqueue(t, s, ws, "a", "batch", privacyBase.Add(time.Duration(i%7)*time.Millisecond))
	}
	var mu sync.Mutex
	claimed := map[int64]string{}
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		worker := fmt.Sprintf("w%d", w)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				j, err := s.ClaimJob(ctx, worker, []string{"a"}, privacyBase.Add(time.Second), time.Hour)
				if err != nil {
					errs <- err
					return
				}
				if j == nil {
					return
				}
				mu.Lock()
				prev, twice := claimed[j.ID]
				claimed[j.ID] = worker
				mu.Unlock()
				if twice {
					errs <- fmt.Errorf("job %d claimed by %s and %s", j.ID, prev, worker)
					return
				}
				if err := s.FinishJob(ctx, j.ID, worker, trustloop.JobDone, "", time.Time{}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	all, err := s.JobsOf(ctx, ws, "batch")
	if err != nil || len(all) != jobs {
		t.Fatalf("JobsOf = %d, %v; want %d", len(all), err, jobs)
	}
	for _, j := range all {
		if j.State != trustloop.JobDone || j.Attempts != 1 {
			t.Fatalf("job %d: %s after %d attempts; want done after 1", j.ID, j.State, j.Attempts)
		}
	}
	if len(claimed) != jobs {
		t.Fatalf("%d jobs claimed, want %d", len(claimed), jobs)
	}
}
