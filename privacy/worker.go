package privacy

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/consent"
)

// The worker takes privacy requests from the store's durable job queue
// (trustloop.JobStore): a job survives a restart, is held by one worker at a
// time under a lease that its progress extends, and a worker that died loses
// it once the lease runs out. Every handler is idempotent: a request picked up
// again after a crash is worked on from its stored state.

// lease is how long a worker holds a job without reporting progress; a
// running job reports it every heartbeat, so a live worker keeps its job
// however long it runs, and a dead one loses it within a lease. maxJobTime
// bounds one attempt (the erasure of a profile with 100,000 events takes
// under a second; an access package of millions of events is counted in
// minutes).
const (
	lease      = 2 * time.Minute
	maxJobTime = 30 * time.Minute
)

// heartbeat is how often a running job renews its lease (a variable for the
// tests only).
var heartbeat = 20 * time.Second

// Run works on requests until ctx ends.
func (s *Service) Run(ctx context.Context) {
	s.init()
	every := s.PollEvery
	if every <= 0 {
		every = time.Second
	}
	sweepEvery := s.RetentionEvery
	if sweepEvery == 0 {
		sweepEvery = 24 * time.Hour
	}
	nextSweep := time.Now()
	for {
		if s.Workspaces != nil && sweepEvery > 0 && !time.Now().Before(nextSweep) {
			nextSweep = time.Now().Add(sweepEvery)
			wss, err := s.Workspaces(ctx)
			if err == nil {
				err = s.ScheduleRetention(ctx, wss)
			}
			if err != nil && ctx.Err() == nil {
				s.Log.Error("scheduling the retention sweep failed", "err", err)
			}
		}
		for ctx.Err() == nil {
			did, err := s.RunOnce(ctx)
			if err != nil {
				s.Log.Error("privacy worker", "err", err)
				break
			}
			if !did {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-time.After(every):
		}
	}
}

func (s *Service) init() {
	s.once.Do(func() { s.wake = make(chan struct{}, 1) })
}

// RunOnce claims and runs one due job; it reports whether there was one.
func (s *Service) RunOnce(ctx context.Context) (bool, error) {
	worker := s.Worker
	if worker == "" {
		worker = "worker"
	}
	job, err := s.Store.ClaimJob(ctx, worker, []string{JobKind, RetentionKind, ScrubKind, AuditKind}, s.now(), lease)
	if err != nil || job == nil {
		return false, err
	}
	start := time.Now()
	// A job once taken is finished even if the process is asked to stop: an
	// erasure is one transaction either way, but its request should not wait
	// for a lease to run out.
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), maxJobTime)
	defer cancel()
	beat := s.keepLease(pctx, cancel, job.ID, worker)
	perr := s.process(pctx, job)
	beat()
	state, msg, at := trustloop.JobDone, "", time.Time{}
	if perr != nil {
		// Retried with backoff; the message keeps only the error's code and
		// text, which never carry personal data (trustloop.Error's contract).
		msg = trustloop.ErrorCode(perr) + ": " + trustloop.ErrorMessage(perr)
		if len(msg) > 300 {
			msg = msg[:300]
		}
		state, at = trustloop.JobQueued, s.now().Add(min(time.Duration(job.Attempts*job.Attempts)*5*time.Second, time.Hour))
		if job.Attempts >= job.MaxAttempts {
			state = trustloop.JobFailed
		}
		s.Log.Error("privacy job failed", "job", job.ID, "kind", job.Kind, "attempt", job.Attempts, "err", perr)
	}
	// Finished with a context of its own: the job's may have run out
	// (maxJobTime), and a job left running would wait out its lease.
	fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer fcancel()
	if err := s.Store.FinishJob(fctx, job.ID, worker, state, msg, at); err != nil {
		return true, err
	}
	if state == trustloop.JobFailed && job.Kind == JobKind {
		// The request stays open (its deadline runs on and shows it overdue);
		// its progress tells the operator it needs them.
		if r, err := s.Store.FindPrivacyRequest(fctx, job.WorkspaceID, job.Ref); err == nil && r.Open() {
			r.Progress, r.UpdatedAt = "failed after "+strconv.Itoa(job.Attempts)+" attempts: "+trustloop.ErrorCode(perr)+"; retry with verify or reject", s.now()
			if err := s.Store.UpdatePrivacyRequest(fctx, r, nil); err != nil {
				s.Log.Error("marking a failed privacy request", "err", err)
			}
		}
	}
	if s.OnDone != nil && perr == nil {
		s.OnDone(job.Kind, state, time.Since(start))
	}
	return true, nil
}

// keepLease extends the job's lease every heartbeat until the returned stop
// is called. A worker that finds the job no longer its own (its lease ran out
// while it was stalled and another worker took it) cancels its context, so
// reads and exports stop; an erasure or a rectification already queued on the
// collector's writer runs to its end, and the request's version check keeps a
// second run from completing it twice.
func (s *Service) keepLease(ctx context.Context, cancel context.CancelFunc, id int64, worker string) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(heartbeat)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			err := s.Store.ProgressJob(ctx, id, worker, "running", s.now().Add(lease))
			if trustloop.ErrorCode(err) == trustloop.ECONFLICT {
				s.Log.Error("a job's lease was lost; its work is cancelled", "job", id)
				cancel()
				return
			} else if err != nil && ctx.Err() == nil {
				s.Log.Error("extending a job's lease failed", "job", id, "err", err)
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

func (s *Service) process(ctx context.Context, job *trustloop.Job) error {
	switch job.Kind {
	case ScrubKind, AuditKind:
		return s.followUp(ctx, job)
	case RetentionKind:
		res, err := s.Retention(ctx, job.WorkspaceID)
		if err == nil {
			s.Log.Info("retention sweep", "workspace", job.WorkspaceID, "events_examined", res.EventsExamined,
				"events_deleted", res.EventsDeleted, "consent_expired", res.ConsentExpired)
		}
		return err
	}
	r, err := s.Store.FindPrivacyRequest(ctx, job.WorkspaceID, job.Ref)
	if trustloop.ErrorCode(err) == trustloop.ENOTFOUND {
		return nil // nothing to do
	} else if err != nil {
		return err
	}
	if !r.Open() || r.Status == trustloop.RequestReceived {
		return nil
	}
	if r.Status == trustloop.RequestVerified {
		r.Status, r.Progress, r.UpdatedAt = trustloop.RequestInProgress, "started", s.now()
		if err := s.Store.UpdatePrivacyRequest(ctx, r, nil); err != nil {
			return err
		}
		s.audit(ctx, r, trustloop.AuditActor{}, "in_progress")
	}
	switch r.Type {
	case trustloop.RequestErasure:
		return s.erase(ctx, r)
	case trustloop.RequestAccess, trustloop.RequestPortability:
		return s.access(ctx, r)
	case trustloop.RequestRestriction, trustloop.RequestObjection:
		return s.restrict(ctx, r)
	case trustloop.RequestRectification:
		return s.rectify(ctx, r)
	}
	return fmt.Errorf("privacy: unknown request type %q", r.Type)
}

// complete stores a request's outcome. A request that found nothing keeps no
// blind index either: it is about no one held here, and it must not become
// the one row that links the identifier to the workspace.
func (s *Service) complete(ctx context.Context, r *trustloop.PrivacyRequest, found bool, result any) error {
	done, err := s.completed(r, found, result)
	if err != nil {
		return err
	}
	*r = *done
	if err := s.Store.UpdatePrivacyRequest(ctx, r, nil); err != nil {
		return err
	}
	s.audit(ctx, r, trustloop.AuditActor{}, "completed")
	return nil
}

// completed returns a copy of r, completed with result.
func (s *Service) completed(r *trustloop.PrivacyRequest, found bool, result any) (*trustloop.PrivacyRequest, error) {
	b, err := json.Marshal(result)
	if err != nil {
		return nil, err
	}
	now := s.now()
	done := *r
	done.Status, done.CompletedAt, done.Result, done.Progress, done.UpdatedAt, done.Payload = trustloop.RequestCompleted, now, b, "done", now, nil
	if !found {
		done.Subject, done.Suppression = nil, nil
	}
	return &done, nil
}

// subjects returns the blind indexes consent is stored under for the subject
// an identifier (its type and blind index) names: its profile's user and
// anonymous ids, or, without a profile, the identifier itself if it is a user
// or anonymous id with a subject key. None when nothing is held about it.
func (s *Service) subjects(ctx context.Context, ws int64, idType string, blind []byte) ([][]byte, error) {
	if s.Profiles != nil {
		sub, err := s.Profiles.Find(ctx, s.Store, ws, blind)
		if err != nil {
			return nil, err
		}
		if sub != nil {
			var out [][]byte
			for _, ir := range sub.Identities {
				if ir.Type == trustloop.IDUserID || ir.Type == trustloop.IDAnonymousID {
					out = append(out, ir.Blind)
				}
			}
			if len(out) > 0 {
				return out, nil
			}
		}
	}
	if idType == trustloop.IDUserID || idType == trustloop.IDAnonymousID {
		keys, err := s.Store.FindSubjectKeys(ctx, ws, [][]byte{blind})
		if err != nil || len(keys) == 0 {
			return nil, err
		}
		return [][]byte{blind}, nil
	}
	return nil, nil
}

// restrict withdraws purposes: a restriction every purpose but those resting
// on the contract (data kept, processing paused), an objection marketing and
// personalization (profiling). The change is an ordinary consent change with
// its receipt, method privacy_request, so it holds at collection and at every
// read at once (T4) and the customer can lift it the same way.
func (s *Service) restrict(ctx context.Context, r *trustloop.PrivacyRequest) error {
	subjects, err := s.subjects(ctx, r.WorkspaceID, r.IdentifierType, r.Subject)
	if err != nil {
		return err
	}
	if len(subjects) == 0 {
		return s.complete(ctx, r, false, map[string]any{"found": false})
	}
	k, err := s.Consent.Catalog(ctx, r.WorkspaceID)
	if err != nil {
		return err
	}
	wanted := map[string]bool{}
	for i := 0; i < k.Len(); i++ {
		id := k.ID(i)
		if k.Contract().Has(i) {
			continue
		}
		if r.Type == trustloop.RequestRestriction || id == "marketing" || id == "personalization" {
			wanted[id] = false
		}
	}
	if len(wanted) == 0 {
		return s.complete(ctx, r, true, map[string]any{"found": true, "purposes_withdrawn": []string{}})
	}
	_, latest, err := s.Consent.Stored(ctx, k, r.WorkspaceID, subjects...)
	if err != nil {
		return err
	}
	changes := consent.Changes(wanted, latest)
	jws, _, err := s.Consent.Record(ctx, r.WorkspaceID, subjects, changes,
		consent.Meta{Method: trustloop.MethodPrivacyRequest, Evidence: "request:" + r.ID})
	if err != nil {
		return err
	}
	withdrawn := make([]string, 0, len(changes))
	for _, c := range changes {
		withdrawn = append(withdrawn, c.Purpose)
	}
	slices.Sort(withdrawn)
	body, err := consent.ReceiptPayload(jws)
	if err != nil {
		return err
	}
	return s.complete(ctx, r, true, map[string]any{"found": true, "purposes_withdrawn": withdrawn, "consent_receipt_id": body.ReceiptID})
}
