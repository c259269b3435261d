package privacy

import (
	"context"
	"strings"

	"github.com/trustloop/trustloop"
)

// Follow-ups are the steps that come after a request's state change committed
// and must not be lost when they fail: truncating SQLite's WAL after an
// erasure or a rectification (readers on old snapshots can hold it), and
// recording a step in the audit log. The request itself is already complete
// (or verified, or rejected), so a retry of its own job would do nothing; each
// such step that fails becomes a job of its own in the durable queue, retried
// with backoff until it succeeds. Neither job holds personal data: a scrub
// names nothing, an audit step names the request id, the step and the actor.

// ScrubKind and AuditKind are the job kinds of follow-ups.
const (
	ScrubKind = "scrub_log"
	AuditKind = "audit_step"
)

// scrub truncates the store's log now, or queues it.
func (s *Service) scrub(ctx context.Context, ws int64) {
	err := s.Store.ScrubLog(ctx)
	if err == nil {
		return
	}
	s.Log.Error("truncating the store's log after an erasure or a rectification failed; retried as a job", "err", err)
	s.later(ctx, &trustloop.Job{WorkspaceID: ws, Kind: ScrubKind, Ref: ScrubKind})
}

// auditRef is an audit follow-up's job ref: request id, step, actor kind and
// actor id (last: the only part that could hold the separator).
func auditRef(r *trustloop.PrivacyRequest, step string, actor trustloop.AuditActor) string {
	return strings.Join([]string{r.ID, step, actor.Kind, actor.ID}, "|")
}

// auditEntry is the audit log's record of a request's step.
func (s *Service) auditEntry(r *trustloop.PrivacyRequest, actor trustloop.AuditActor, step string) trustloop.AuditEntry {
	if actor.Kind == "" {
		actor = trustloop.AuditActor{Kind: trustloop.ActorComponent, ID: "component:privacy"}
	}
	kind := trustloop.AuditPrivacyRequest
	if r.Type == trustloop.RequestErasure && step == "completed" {
		kind = trustloop.AuditErasure
	}
	return trustloop.AuditEntry{WorkspaceID: r.WorkspaceID, Time: s.now(), Kind: kind, Actor: actor,
		Action: "privacy_request " + r.Type + " " + step, Detail: "request " + r.ID}
}

// later queues a follow-up job; if even that fails, the log says so (the
// store is then failing as a whole, and the operator sees it).
func (s *Service) later(ctx context.Context, j *trustloop.Job) {
	// Backoff grows to an hour: 1,000 attempts are some 40 days of trying.
	j.RunAt, j.MaxAttempts = s.now(), 1000
	if err := s.Store.EnqueueJob(context.WithoutCancel(ctx), j); err != nil {
		s.Log.Error("queueing a follow-up job failed", "kind", j.Kind, "err", err)
		return
	}
	s.Wake()
}

// followUp runs a follow-up job.
func (s *Service) followUp(ctx context.Context, job *trustloop.Job) error {
	if job.Kind == ScrubKind {
		return s.Store.ScrubLog(ctx)
	}
	parts := strings.SplitN(job.Ref, "|", 4)
	if len(parts) != 4 || s.Audit == nil {
		return nil // not one of ours: nothing to retry
	}
	r, err := s.Store.FindPrivacyRequest(ctx, job.WorkspaceID, parts[0])
	if trustloop.ErrorCode(err) == trustloop.ENOTFOUND {
		return nil
	} else if err != nil {
		return err
	}
	e := s.auditEntry(r, trustloop.AuditActor{Kind: parts[2], ID: parts[3]}, parts[1])
	return s.Audit.Append(ctx, e)
}
