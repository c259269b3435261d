package privacy_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/auditlog"
	"github.com/trustloop/trustloop/privacy"
	"github.com/trustloop/trustloop/sqlite"
)

// A derived model that cannot forget stops the erasure before anything is
// deleted; the retry, once the model can, erases and tells it whom.
func TestErasureWaitsForDerivedModels(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	sue, bob := newPerson("s", "Sue"), newPerson("b", "Bob")
	h.history(sue)
	h.history(bob)
	before := h.events()
	var down atomic.Bool
	down.Store(true)
	var told []privacy.Erased
	h.svc.OnErase = []func(context.Context, privacy.Erased) error{func(_ context.Context, e privacy.Erased) error {
		if down.Load() {
			return errors.New("model unavailable")
		}
		told = append(told, e)
		return nil
	}}
	r := h.create(privacy.NewRequest{Type: trustloop.RequestErasure, Identifier: "user_id:" + sue.user, VerifiedBy: "key:1"})
	if n := h.work(); n != 1 {
		t.Fatalf("the worker ran %d jobs, want 1", n)
	}
	if got := h.get(r.ID); got.Status != trustloop.RequestInProgress {
		t.Fatalf("with the model down the request is %s, want in_progress", got.Status)
	}
	if got := h.events(); got != before {
		t.Fatalf("%d events deleted while a model could not forget", before-got)
	}
	if _, err := h.lookup(trustloop.IDUserID, sue.user); err != nil {
		t.Fatalf("the profile went while a model could not forget: %v", err)
	}
	down.Store(false)
	h.skew.Store(int64(time.Minute)) // past the retry's backoff
	if n := h.work(); n != 1 {
		t.Fatalf("the retry: the worker ran %d jobs, want 1", n)
	}
	if got := h.get(r.ID); got.Status != trustloop.RequestCompleted {
		t.Fatalf("after the retry the request is %s", got.Status)
	}
	if len(told) != 1 || len(told[0].KeyIDs) == 0 || len(told[0].Blinds) == 0 || len(told[0].ProfileIDs) == 0 {
		t.Fatalf("the model was told %+v", told)
	}
	if _, err := h.lookup(trustloop.IDUserID, sue.user); trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
		t.Fatalf("lookup after the erasure: %v", err)
	}
	if _, err := h.lookup(trustloop.IDUserID, bob.user); err != nil {
		t.Fatalf("the other customer: %v", err)
	}
}

// scrubFails is the store with a WAL truncation that fails n times (a reader
// holding an old snapshot).
type scrubFails struct {
	*sqlite.DB
	n     *atomic.Int32
	calls *atomic.Int32
}

func (s scrubFails) ScrubLog(ctx context.Context) error {
	s.calls.Add(1)
	if s.n.Add(-1) >= 0 {
		return errors.New("sqlite: the WAL could not be truncated (readers busy)")
	}
	return s.DB.ScrubLog(ctx)
}

// A truncation that fails after the erasure committed does not undo or
// hide the erasure: the request is complete with its receipt, suppression
// holds, and the truncation is retried as a job of its own until it works.
func TestScrubRetriedAfterErasure(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	sue := newPerson("s", "Sue")
	h.history(sue)
	st := scrubFails{DB: h.db, n: new(atomic.Int32), calls: new(atomic.Int32)}
	st.n.Store(2)
	h.svc.Store = st
	r := h.create(privacy.NewRequest{Type: trustloop.RequestErasure, Identifier: "user_id:" + sue.user, Suppress: true, VerifiedBy: "key:1"})
	// The erasure, then the scrub job it queued, which fails once more.
	if n := h.work(); n != 2 {
		t.Fatalf("the worker ran %d jobs, want the erasure and the scrub", n)
	}
	if r = h.get(r.ID); r.Status != trustloop.RequestCompleted || r.Receipt == "" || st.calls.Load() != 2 {
		t.Fatalf("request %s, receipt %q, %d truncations", r.Status, r.Receipt, st.calls.Load())
	}
	jobs, err := h.db.JobsOf(bg, h.ws, privacy.ScrubKind)
	if err != nil || len(jobs) != 1 || jobs[0].State != trustloop.JobQueued || jobs[0].Attempts != 1 {
		t.Fatalf("scrub jobs after two failed truncations: %+v %v", jobs, err)
	}
	// Suppression started although the truncation failed.
	before := h.events()
	h.ingest("", `{"type":"track","messageId":"again-`+sue.user+`","userId":`+q(sue.user)+`,"event":"Product Viewed"}`)
	if h.events() != before {
		t.Fatal("a suppressed customer's event was stored")
	}
	// Past its backoff the job runs again, and works.
	h.skew.Store(int64(time.Hour))
	if n := h.work(); n != 1 {
		t.Fatalf("the retry: the worker ran %d jobs", n)
	}
	jobs, err = h.db.JobsOf(bg, h.ws, privacy.ScrubKind)
	if err != nil || len(jobs) != 1 || jobs[0].State != trustloop.JobDone || jobs[0].Attempts != 2 {
		t.Fatalf("scrub job after the retries: %+v %v", jobs, err)
	}
	if st.calls.Load() != 3 {
		t.Fatalf("%d truncations, want 3", st.calls.Load())
	}
}

// stepsRecorded returns the audit log's privacy-request steps for request id,
// by action and actor.
func (h *harness) stepsRecorded(id string) []string {
	h.t.Helper()
	n, err := h.db.AuditSize(bg, h.ws)
	if err != nil {
		h.t.Fatal(err)
	}
	recs, err := h.db.AuditRecords(bg, h.ws, 0, n)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, r := range recs {
		e, err := trustloop.DecodeAuditEntry(r.Data)
		if err != nil {
			h.t.Fatal(err)
		}
		if e.Detail == "request "+id {
			out = append(out, e.Action+" by "+e.Actor.ID)
		}
	}
	return out
}

// A step the audit log cannot take when it happens is recorded later, by a
// job of its own, with the actor it had.
func TestAuditStepRetried(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	working := h.svc.Audit
	down := auditlog.New(h.db, h.keys, auditlog.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	down.Close()
	h.svc.Audit = down
	actor := trustloop.AuditActor{Kind: trustloop.ActorAPIKey, ID: "key:1"}
	r := h.create(privacy.NewRequest{Type: trustloop.RequestAccess, Identifier: "user_id:nobody", VerifiedBy: "key:1", Actor: actor})
	if got := h.stepsRecorded(r.ID); len(got) != 0 {
		t.Fatalf("steps recorded with the log down: %v", got)
	}
	h.svc.Audit = working
	h.work() // the access request and the queued audit steps
	got := h.stepsRecorded(r.ID)
	if !slices.Contains(got, "privacy_request access received by key:1") || !slices.Contains(got, "privacy_request access completed by component:privacy") {
		t.Fatalf("steps after the retry: %v; want the reception by its key, and the completion", got)
	}
	jobs, err := h.db.JobsOf(bg, h.ws, r.ID+"|received|"+trustloop.ActorAPIKey+"|key:1")
	if err != nil || len(jobs) != 1 || jobs[0].State != trustloop.JobDone {
		t.Fatalf("the audit step's job: %+v %v", jobs, err)
	}
}

// leaseLost is the store as a worker sees it once another took its job: the
// lease cannot be renewed, and a request's consent history is read until the
// work is cancelled (a long read).
type leaseLost struct {
	*sqlite.DB
	renewals atomic.Int32
}

func (l *leaseLost) ProgressJob(context.Context, int64, string, string, time.Time) error {
	l.renewals.Add(1)
	return trustloop.Errorf(trustloop.ECONFLICT, "The job is held by another worker.")
}

func (l *leaseLost) ConsentRecords(ctx context.Context, ws int64, subject []byte) ([]trustloop.ConsentRecord, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// A running job renews its lease every heartbeat; a worker that finds the
// job taken by another cancels its work instead of finishing it beside them.
// (Not parallel: it sets the package's heartbeat.)
func TestLostLeaseCancelsTheWork(t *testing.T) {
	defer privacy.SetHeartbeat(10 * time.Millisecond)()
	h := newHarness(t)
	p := newPerson("l", "Lea")
	h.history(p)
	st := &leaseLost{DB: h.db}
	h.svc.Store = st
	r := h.create(privacy.NewRequest{Type: trustloop.RequestAccess, Identifier: "user_id:" + p.user, VerifiedBy: "key:1"})
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.svc.RunOnce(bg)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the work went on after its lease was lost")
	}
	if st.renewals.Load() == 0 {
		t.Fatal("the lease was never renewed")
	}
	if got := h.get(r.ID); got.Status == trustloop.RequestCompleted {
		t.Fatalf("a request whose lease was lost completed: %s", got.Status)
	}
}
