package trustloop

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"slices"
	"strings"
	"time"
)

// Privacy requests (issue 5, T6): a customer's rights under the GDPR and the
// CCPA — access, portability, erasure, rectification, restriction, objection —
// each with a lifecycle, a legal deadline and every step in the audit log.
//
// A request never holds an identifier in the clear: it names its subject by the
// blind index of the identifier it was made for, and an erasure clears even
// that when it completes, leaving only the request's id, times and counts.

// Privacy request types.
const (
	RequestAccess        = "access"
	RequestPortability   = "portability"
	RequestErasure       = "erasure"
	RequestRectification = "rectification"
	RequestRestriction   = "restriction"
	RequestObjection     = "objection"
)

// RequestTypes lists every type, for validation and documentation.
var RequestTypes = []string{RequestAccess, RequestPortability, RequestErasure, RequestRectification, RequestRestriction, RequestObjection}

// Privacy request statuses: received → verified → in_progress → completed, or
// rejected (with a reason) from any status before completed.
const (
	RequestReceived   = "received"
	RequestVerified   = "verified"
	RequestInProgress = "in_progress"
	RequestCompleted  = "completed"
	RequestRejected   = "rejected"
)

// OpenRequestStatuses are the statuses of a request still being worked on: a
// second request of the same type for the same subject joins it.
var OpenRequestStatuses = []string{RequestReceived, RequestVerified, RequestInProgress}

// Legal regimes of deadlines.
const (
	RegimeGDPR = "gdpr"
	RegimeCCPA = "ccpa"
)

// PrivacyRequest is one request and where it stands.
type PrivacyRequest struct {
	ID          string
	WorkspaceID int64
	Type        string
	Status      string
	// IdentifierType is the type of the identifier the request was made for
	// (user_id, email, …); Subject its blind index. Subject is nil once an
	// erasure completed.
	IdentifierType string
	Subject        []byte
	// Regime decides the deadlines (gdpr or ccpa).
	Regime     string
	ReceivedAt time.Time
	// AckDueAt is when the request must have been acknowledged (10 business
	// days); DueAt when it must be answered.
	AckDueAt time.Time
	DueAt    time.Time
	// ExtendedAt and ExtensionReason record the one extension the law allows.
	ExtendedAt      time.Time
	ExtensionReason string
	// VerifiedBy says who verified the requester's identity ("key:12",
	// "portal:…", "operator:3"); empty until verified.
	VerifiedBy   string
	VerifiedAt   time.Time
	CompletedAt  time.Time
	RejectReason string
	// Suppress (erasure only): keep a suppression entry so that future events
	// from the subject's identifiers are not collected.
	Suppress bool
	// Suppression is the suppression hash of the identifier the request named
	// (a keyed hash distinct from its blind index), kept until the erasure.
	Suppression []byte
	// Payload is request-specific input, sealed (rectification: the corrected
	// traits); cleared when the request completes.
	Payload []byte
	// Result is the outcome as JSON (counts; no personal data), Receipt the
	// signed receipt of a completed erasure.
	Result  []byte
	Receipt string
	// Progress is a short machine string the worker updates.
	Progress  string
	UpdatedAt time.Time
	// Version is bumped by every update (optimistic concurrency).
	Version int64
}

// Open reports whether the request is still being worked on.
func (r *PrivacyRequest) Open() bool { return slices.Contains(OpenRequestStatuses, r.Status) }

// NewRequestID returns a random request id ("prq_" and 26 base32 characters).
func NewRequestID() string {
	var b [16]byte
	rand.Read(b[:])
	return "prq_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// ValidRequestID reports whether s has the form of a request id (so a path
// parameter never reaches a query as free text).
func ValidRequestID(s string) bool {
	if len(s) != 30 || !strings.HasPrefix(s, "prq_") {
		return false
	}
	for _, c := range s[4:] {
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// RequestDeadlines returns when a request received at t must be acknowledged
// and answered under regime: the GDPR (Art. 12(3)) gives one month, the CCPA
// (§ 1798.130, regs. § 7021) 45 days; both are acknowledged within 10 business
// days (the CCPA's rule, applied to both: a customer should hear back soon).
func RequestDeadlines(regime string, t time.Time) (ack, due time.Time) {
	ack = AddBusinessDays(t, 10)
	if regime == RegimeCCPA {
		return ack, t.AddDate(0, 0, 45)
	}
	return ack, AddMonths(t, 1)
}

// AddMonths adds calendar months the way periods are counted in EU law
// (Regulation 1182/71, Art. 3(2)(c)): the same day of the month n months on,
// or the target month's last day when it has no such day — 31 January plus a
// month is 28 (or 29) February, not 3 March as time.AddDate would make it.
func AddMonths(t time.Time, n int) time.Time {
	y, m, d := t.Date()
	last := time.Date(y, m+time.Month(n)+1, 0, 0, 0, 0, 0, t.Location()).Day()
	hh, mm, ss := t.Clock()
	return time.Date(y, m+time.Month(n), min(d, last), hh, mm, ss, t.Nanosecond(), t.Location())
}

// AddBusinessDays adds n Monday-to-Friday days to t (no public holidays: they
// differ by country, and the deadline only gets earlier for it).
func AddBusinessDays(t time.Time, n int) time.Time {
	for n > 0 {
		t = t.AddDate(0, 0, 1)
		if wd := t.Weekday(); wd != time.Saturday && wd != time.Sunday {
			n--
		}
	}
	return t
}

// ExtendRequest applies the one extension the law allows: the GDPR two more
// months, the CCPA 45 more days, with a recorded reason. EINVALID or ECONFLICT
// (already extended, or closed), with nothing changed.
func ExtendRequest(r *PrivacyRequest, reason string, now time.Time) error {
	reason = strings.TrimSpace(reason)
	switch {
	case !r.Open():
		return Errorf(ECONFLICT, "The request is %s; only an open request can be extended.", r.Status).
			WithHint("A closed request stays closed; file a new one if the customer asks again.")
	case !r.ExtendedAt.IsZero():
		return Errorf(ECONFLICT, "The request was extended already; the law allows one extension.").
			WithHint("Answer it by its due date.")
	case reason == "" || len(reason) > 500:
		return Errorf(EINVALID, "An extension needs a reason of 1 to 500 characters.").
			WithHint("Say why the request is complex or why there are many requests (it is kept with the request; write no personal data in it).")
	}
	if r.Regime == RegimeCCPA {
		r.DueAt = r.DueAt.AddDate(0, 0, 45)
	} else {
		// Three months from receipt in all (Art. 12(3)), counted like the
		// first: adding two to the first month's end would cut a request
		// received on 31 January short (28 February + 2 = 28 April, not 30).
		r.DueAt = AddMonths(r.ReceivedAt, 3)
	}
	r.ExtendedAt, r.ExtensionReason = now, reason
	return nil
}

// CanMoveRequest reports whether a request may go from one status to another.
func CanMoveRequest(from, to string) bool {
	switch to {
	case RequestVerified:
		return from == RequestReceived
	case RequestInProgress:
		return from == RequestVerified || from == RequestInProgress
	case RequestCompleted:
		return from == RequestInProgress
	case RequestRejected:
		return from == RequestReceived || from == RequestVerified || from == RequestInProgress
	}
	return false
}

// PrivacyFilter selects requests to list.
type PrivacyFilter struct {
	// Status, when set, keeps only requests in it.
	Status string
	// After pages: requests ordered by (due_at, id) after this position.
	AfterDue time.Time
	AfterID  string
	// Limit bounds the page (default 50, at most 1000).
	Limit int
}

// PrivacyStore keeps privacy requests and suppression entries.
type PrivacyStore interface {
	// CreatePrivacyRequest stores r and enqueues job (its Ref set to r.ID) in
	// one transaction. If an open request of the same workspace, type and
	// subject exists, nothing is stored and that request is returned instead.
	CreatePrivacyRequest(ctx context.Context, r *PrivacyRequest, job *Job) (existing *PrivacyRequest, err error)
	// FindPrivacyRequest returns one; ENOTFOUND if the workspace has none with
	// the id.
	FindPrivacyRequest(ctx context.Context, workspaceID int64, id string) (*PrivacyRequest, error)
	// ListPrivacyRequests returns requests by due date, then id.
	ListPrivacyRequests(ctx context.Context, workspaceID int64, f PrivacyFilter) ([]*PrivacyRequest, error)
	// SubjectPrivacyRequests returns the requests naming any of the subjects
	// (blind indexes), by received time.
	SubjectPrivacyRequests(ctx context.Context, workspaceID int64, subjects [][]byte) ([]*PrivacyRequest, error)
	// UpdatePrivacyRequest writes r if its stored Version is r.Version, and
	// bumps r.Version; ECONFLICT if it changed meanwhile. With job, the job is
	// enqueued in the same transaction.
	UpdatePrivacyRequest(ctx context.Context, r *PrivacyRequest, job *Job) error
	// Suppressions returns every suppression hash of the workspace.
	Suppressions(ctx context.Context, workspaceID int64) ([][]byte, error)
}

// Job states.
const (
	JobQueued    = "queued"
	JobRunning   = "running"
	JobDone      = "done"
	JobFailed    = "failed"
	JobCancelled = "cancelled"
)

// Job is one unit of background work in the store's durable queue: it
// survives restarts, is taken by one worker at a time under a lease, and is
// retried with backoff until MaxAttempts.
type Job struct {
	ID          int64
	WorkspaceID int64
	// Kind names the handler ("privacy_request", "retention"); Ref what it
	// works on (a request id). Neither holds personal data.
	Kind        string
	Ref         string
	State       string
	Attempts    int
	MaxAttempts int
	RunAt       time.Time
	// LockedBy and LockedUntil are the lease of the worker running it.
	LockedBy    string
	LockedUntil time.Time
	Progress    string
	LastError   string
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// JobStore is the durable job queue.
type JobStore interface {
	// EnqueueJob stores a queued job (ID, State, CreatedAt filled in).
	EnqueueJob(ctx context.Context, j *Job) error
	// ClaimJob takes the oldest job of the kinds that is queued and due at now,
	// or running with an expired lease (its worker died), marks it running
	// under worker's lease until now+lease and counts the attempt. nil, nil
	// when there is none. Two workers never hold the same job.
	ClaimJob(ctx context.Context, worker string, kinds []string, now time.Time, lease time.Duration) (*Job, error)
	// ProgressJob records progress and extends the lease; ECONFLICT if worker
	// no longer holds it.
	ProgressJob(ctx context.Context, id int64, worker, progress string, until time.Time) error
	// FinishJob ends worker's hold of a job: state done, failed or cancelled,
	// or queued again (a retry) at runAt. lastError is a short message without
	// personal data. ECONFLICT if worker no longer holds it.
	FinishJob(ctx context.Context, id int64, worker, state, lastError string, runAt time.Time) error
	// CancelJobs cancels the queued jobs of the workspace with the ref.
	CancelJobs(ctx context.Context, workspaceID int64, ref string) (int, error)
	// JobsOf returns the jobs with the ref, by id.
	JobsOf(ctx context.Context, workspaceID int64, ref string) ([]Job, error)
}

// Erasure says everything to remove of one subject, and the request to
// complete in the same transaction.
type Erasure struct {
	WorkspaceID int64
	// RequestID is the erasure's own request (not cleared with the subject's
	// other requests: Complete writes it).
	RequestID string
	// KeyIDs are the subject keys to destroy (crypto-shredding); their events
	// and timelines go too.
	KeyIDs []int64
	// Seqs are the log positions of the keys' events when known (from their
	// timelines); ScanEvents also deletes by key over the whole log (no
	// timeline to go by).
	Seqs       []int64
	ScanEvents bool
	// ForeignSeqs are positions of the subject's events under keys shared
	// with others (deleted by position alone; the keys stay), and
	// TimelineKeys the timelines listing them (projection.ForeignKey).
	ForeignSeqs  []int64
	TimelineKeys []int64
	// ProfileIDs are the profile and every profile merged into it.
	ProfileIDs []int64
	// Blinds are the blind indexes of every identifier of the subject: its
	// identities, consent chains and other privacy requests.
	Blinds [][]byte
	// Suppress are suppression hashes to add.
	Suppress [][]byte
	// Complete, when set, is called inside the transaction with the counts and
	// returns the request to write (completed, with its receipt) as
	// UpdatePrivacyRequest would: the erasure record exists exactly when the
	// erasure happened.
	Complete func(ErasureCounts) (*PrivacyRequest, error)
}

// ErasureCounts says what an erasure removed (the erasure record keeps it).
type ErasureCounts struct {
	Events              int64 `json:"events"`
	SubjectKeys         int64 `json:"subject_keys"`
	Profiles            int64 `json:"profiles"`
	Identities          int64 `json:"identities"`
	Merges              int64 `json:"merges"`
	ConsentRecords      int64 `json:"consent_records"`
	ConsentReceipts     int64 `json:"consent_receipts"`
	AudienceMemberships int64 `json:"audience_memberships"`
	TimelineRuns        int64 `json:"timeline_runs"`
	PrivacyRequests     int64 `json:"privacy_requests_cleared"`
	Suppressions        int64 `json:"suppressions"`
}

// ErasureStore removes a subject.
type ErasureStore interface {
	RetentionStore
	RekeyStore
	// Erase deletes everything e names in one transaction and returns the
	// counts. An error means nothing was committed.
	Erase(ctx context.Context, e *Erasure) (ErasureCounts, error)
	// ScrubLog makes sure no file of the store keeps old images of rows an
	// erasure or a rekey removed: on SQLite it checkpoints and truncates the
	// WAL (secure_delete already zeroed the cells in the database pages); on
	// PostgreSQL there is nothing the client can do (the server's WAL and
	// dead tuples are its own; see docs/privacy.md). It is separate from Erase
	// and Rekey so that a failure here (readers holding old snapshots) cannot
	// be mistaken for an uncommitted erasure: the caller retries it alone.
	ScrubLog(ctx context.Context) error
	// FindSubjectKeysByID returns stored subject keys by id; unknown ones are
	// missing.
	FindSubjectKeysByID(ctx context.Context, workspaceID int64, ids []int64) (map[int64]SubjectKey, error)
	// MergedProfiles returns the ids of the profiles merged into any of the
	// given ones (one step; callers repeat until none is new).
	MergedProfiles(ctx context.Context, workspaceID int64, into []int64) ([]int64, error)
}

// RetentionStore is what the retention sweep needs beyond the event log.
type RetentionStore interface {
	// DeleteEvents deletes the workspace's events at the given log positions
	// and returns how many there were.
	DeleteEvents(ctx context.Context, workspaceID int64, seqs []int64) (int64, error)
	// ExpiredConsent returns up to limit records that are the latest of their
	// subject and purpose, given, and expired before now.
	ExpiredConsent(ctx context.Context, workspaceID int64, now time.Time, limit int) ([]ConsentRecord, error)
}

// Rekey is a rectification's rewrite of a subject: every payload, identity
// value and profile state sealed under the subject's keys, sealed again under
// fresh keys (with the corrected values), and the keys' wrapped forms
// replaced, in one transaction.
type Rekey struct {
	WorkspaceID int64
	// Keys are the subject keys with their new wrapped data keys.
	Keys []SubjectKey
	// Events are the rewritten payloads by log position.
	Events []StoredEvent
	// Identities are the identities' new sealed values (Blind, Sealed).
	Identities []IdentityRecord
	// Profiles are the profiles' new sealed states (ID, State).
	Profiles []ProfileRecord
	// Complete, when set, returns the request to write (completed) in the
	// same transaction.
	Complete func() (*PrivacyRequest, error)
}

// RekeyStore writes a Rekey.
type RekeyStore interface {
	// Rekey writes everything r names in one transaction; an error means
	// nothing was committed. The caller then calls ScrubLog, as after Erase.
	Rekey(ctx context.Context, r *Rekey) error
}
