package privacy

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/auditlog"
	"github.com/trustloop/trustloop/consent"
	"github.com/trustloop/trustloop/ingest"
	"github.com/trustloop/trustloop/keyring"
	"github.com/trustloop/trustloop/projection"
)

// Store is what the service needs of a backend.
type Store interface {
	trustloop.PrivacyStore
	trustloop.JobStore
	trustloop.ErasureStore
	FindSubjectKeys(ctx context.Context, workspaceID int64, blinds [][]byte) (map[string]trustloop.SubjectKey, error)
	ListEvents(ctx context.Context, workspaceID, after int64, limit int) ([]trustloop.StoredEvent, error)
	TimelineSeqs(ctx context.Context, keyIDs []int64) ([]int64, error)
	ConsentRecords(ctx context.Context, workspaceID int64, subject []byte) ([]trustloop.ConsentRecord, error)
	FindConsentReceipt(ctx context.Context, workspaceID int64, id string) (*trustloop.ConsentReceipt, error)
	AuditRecordsOf(ctx context.Context, workspaceID int64, subject string, before int64, limit int) ([]trustloop.AuditRecord, error)
}

// Ingest is what an erasure needs of the collector (ingest.Pipeline): to run
// while no group commits, and to refuse suppressed identifiers from then on.
type Ingest interface {
	Exclusive(ctx context.Context, fn func(ctx context.Context) (ingest.Outcome, error)) error
	Suppress(ws int64, hashes [][]byte)
}

// Erased tells a derived model (the recommender, destinations' queues) that a
// subject is gone: it must remove the subject's whole contribution before it
// returns. The service calls every registered hook just before the store's
// erasure transaction, while the collector holds its writer, so no event of
// the subject can reach a model from then on. A hook that fails stops the
// erasure before anything is deleted, and the request is retried: a hook
// must be idempotent (forgetting someone it no longer knows is no error).
// Forgetting first errs on the customer's side: if the transaction then
// fails, a model has forgotten someone whose data is still held until the
// retry, never the other way round.
type Erased struct {
	WorkspaceID int64
	Blinds      [][]byte
	KeyIDs      []int64
	ProfileIDs  []int64
	// Shared are the blind indexes of keys shared with others under which
	// some of the subject's events are deleted (the keys stay).
	Shared [][]byte
}

// Service runs privacy requests.
type Service struct {
	Store   Store
	Keys    *keyring.Keyring
	Consent *consent.Service
	// Profiles is nil when profiles are off: a subject is then one user or
	// anonymous id and its subject key.
	Profiles *projection.Service
	Audit    *auditlog.Log
	Ingest   Ingest
	Log      *slog.Logger
	Now      func() time.Time
	// OnErase hooks derived models into erasures (see Erased).
	OnErase []func(ctx context.Context, e Erased) error
	// Worker names this process's worker in job leases; PollEvery is how
	// often an idle worker looks for work (a new request wakes it at once).
	Worker    string
	PollEvery time.Duration
	// ProgressEvery is how many events an access or portability request
	// counts between two progress reports on the request ("counted N
	// events"); default 10,000.
	ProgressEvery int
	// OnDone, when set, observes a finished job (metrics).
	OnDone func(kind, state string, d time.Duration)
	// OnRetention, when set, observes a retention sweep (metrics).
	OnRetention func(eventsDeleted int64, consentExpired int)
	// OnEventsDeleted, when set, is told that a sweep deleted events of a
	// workspace (derived models rebuild from what the log still holds).
	OnEventsDeleted func(ws int64)
	// Workspaces lists the workspaces to sweep; RetentionEvery is how often
	// (default a day; negative: never).
	Workspaces     func(ctx context.Context) ([]int64, error)
	RetentionEvery time.Duration

	once sync.Once
	wake chan struct{}
}

// JobKind is the job kind of privacy requests.
const JobKind = "privacy_request"

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC().Truncate(time.Millisecond)
	}
	return time.Now().UTC().Truncate(time.Millisecond)
}

// NewRequest is what a caller asks for.
type NewRequest struct {
	Type string
	// Identifier is "type:value" as API callers write it.
	Identifier string
	// Regime is gdpr or ccpa; empty: from the subject's jurisdiction and the
	// workspace's catalog (opt_in → gdpr, opt_out → ccpa).
	Regime string
	// Suppress (erasure): keep a suppression entry.
	Suppress bool
	// Traits (rectification): the corrected values; null removes a trait.
	Traits map[string]any
	// VerifiedBy: who verified the requester ("key:12", …); empty leaves the
	// request received until Verify.
	VerifiedBy string
	Actor      trustloop.AuditActor
}

func invalid(format string, args ...any) *trustloop.Error {
	return trustloop.Errorf(trustloop.EINVALID, format, args...)
}

// Create records a request (and, when verified, queues it). A second open
// request of the same type for the same subject is joined: the first is
// returned and created is false. An identifier nobody has is recorded like any
// other (its processing finds no data): the answer never says whether someone
// exists.
func (s *Service) Create(ctx context.Context, ws int64, in NewRequest) (r *trustloop.PrivacyRequest, created bool, err error) {
	if !slices.Contains(trustloop.RequestTypes, in.Type) {
		return nil, false, invalid("Unknown request type %q.", in.Type).WithHint("Types: " + strings.Join(trustloop.RequestTypes, ", ") + ".")
	}
	if in.Regime != "" && in.Regime != trustloop.RegimeGDPR && in.Regime != trustloop.RegimeCCPA {
		return nil, false, invalid("regime must be gdpr or ccpa (or left out).").
			WithHint("Left out, the workspace's regime decides the deadline.")
	}
	if in.Suppress && in.Type != trustloop.RequestErasure {
		return nil, false, invalid("suppress applies to erasure requests only.").
			WithHint("Leave suppress out, or file an erasure request.")
	}
	var payload []byte
	if in.Type == trustloop.RequestRectification {
		if s.Profiles == nil {
			return nil, false, invalid("Rectification needs profiles: traits live in the unified profile.").
				WithHint("Start the server with --profiles.")
		}
		if payload, err = checkTraits(in.Traits); err != nil {
			return nil, false, err
		}
	} else if in.Traits != nil {
		return nil, false, invalid("traits apply to rectification requests only.").
			WithHint("Leave traits out, or file a rectification request.")
	}
	id, err := s.parseIdentifier(ctx, ws, in.Identifier)
	if err != nil {
		return nil, false, err
	}
	blind, err := s.Keys.Blind(ws, id.Type, id.Value)
	if err != nil {
		return nil, false, err
	}
	now := s.now()
	r = &trustloop.PrivacyRequest{ID: trustloop.NewRequestID(), WorkspaceID: ws, Type: in.Type, Status: trustloop.RequestReceived,
		IdentifierType: id.Type, Subject: blind, Regime: in.Regime, ReceivedAt: now, Suppress: in.Suppress, UpdatedAt: now}
	if r.Regime == "" {
		if r.Regime, err = s.regimeOf(ctx, ws, id.Type, blind); err != nil {
			return nil, false, err
		}
	}
	r.AckDueAt, r.DueAt = trustloop.RequestDeadlines(r.Regime, now)
	if in.Suppress {
		if r.Suppression, err = s.Keys.Suppression(ws, id.Type, id.Value); err != nil {
			return nil, false, err
		}
	}
	if payload != nil {
		if r.Payload, err = s.Keys.SealWorkspace(ws, payload, []byte(r.ID)); err != nil {
			return nil, false, err
		}
	}
	var job *trustloop.Job
	if in.VerifiedBy != "" {
		r.Status, r.VerifiedBy, r.VerifiedAt = trustloop.RequestVerified, in.VerifiedBy, now
		job = &trustloop.Job{Kind: JobKind, RunAt: now, MaxAttempts: 10}
	}
	existing, err := s.Store.CreatePrivacyRequest(ctx, r, job)
	if err != nil {
		return nil, false, err
	}
	if existing != nil {
		// A verified duplicate verifies the open request it joins.
		if existing.Status == trustloop.RequestReceived && in.VerifiedBy != "" {
			if v, err := s.Verify(ctx, ws, existing.ID, in.VerifiedBy, in.Actor); err == nil {
				existing = v
			} else if trustloop.ErrorCode(err) != trustloop.ECONFLICT {
				return nil, false, err
			}
		}
		return existing, false, nil
	}
	s.audit(ctx, r, in.Actor, "received")
	if job != nil {
		s.audit(ctx, r, in.Actor, "verified")
		s.Wake()
	}
	return r, true, nil
}

// checkTraits validates rectified traits and returns them as JSON.
func checkTraits(traits map[string]any) ([]byte, error) {
	if len(traits) == 0 || len(traits) > 50 {
		return nil, invalid("A rectification needs 1 to 50 traits to correct.").
			WithHint(`Send {"traits":{"name":"Jane Doe"}}; null removes a trait.`)
	}
	for k, v := range traits {
		if k == "" || len(k) > 100 {
			return nil, invalid("Trait names are 1 to 100 characters.").
				WithHint("Use the trait's name as the profile shows it, such as first_name.")
		}
		if k == "email" || k == "phone" {
			return nil, invalid("%s is an identifier, not only a trait: a rectification cannot change it.", k).
				WithHint("Send an identify with the new value (it joins the profile), then an erasure of the old identifier if it must go.")
		}
		switch v.(type) {
		case nil, string, float64, bool:
		default:
			return nil, invalid("Trait %q: a corrected value is a string, number, boolean or null.", k).
				WithHint("Send null to remove the trait; objects and lists cannot be corrected this way.")
		}
	}
	return json.Marshal(traits)
}

// parseIdentifier reads "type:value". With profiles, custom types of the
// workspace count too.
func (s *Service) parseIdentifier(ctx context.Context, ws int64, q string) (trustloop.Identifier, error) {
	if s.Profiles != nil {
		return s.Profiles.ParseIdentifier(ctx, ws, q)
	}
	typ, value, ok := strings.Cut(q, ":")
	if !ok || strings.TrimSpace(value) == "" {
		return trustloop.Identifier{}, invalid("identifier must be written type:value, e.g. user_id:42.").
			WithHint("Without profiles a request names user_id:… or anonymous_id:…; with profiles (serve --profiles) also email, phone, device_id and the workspace's custom types.")
	}
	if typ != trustloop.IDUserID && typ != trustloop.IDAnonymousID {
		return trustloop.Identifier{}, invalid("Without profiles (serve --profiles) a request names a user_id or anonymous_id.").
			WithHint("Start the server with --profiles to find customers by email, phone or device id.")
	}
	if len(value) > 512 {
		return trustloop.Identifier{}, invalid("The identifier is too long (at most 512 characters).").
			WithHint("Send the identifier the customer gave, as the events carried it.")
	}
	return trustloop.Identifier{Type: typ, Value: trustloop.NormalizeIdentifier(typ, value)}, nil
}

// regimeOf picks the deadline regime from the subject's recorded jurisdiction
// and the workspace's catalog.
func (s *Service) regimeOf(ctx context.Context, ws int64, idType string, blind []byte) (string, error) {
	if s.Consent == nil {
		return trustloop.RegimeGDPR, nil
	}
	k, err := s.Consent.Catalog(ctx, ws)
	if err != nil {
		return "", err
	}
	// Consent is stored under the subject's user and anonymous ids, whatever
	// identifier the request names.
	subjects, err := s.subjects(ctx, ws, idType, blind)
	if err != nil {
		return "", err
	}
	var latest map[string]trustloop.ConsentRecord
	if len(subjects) > 0 {
		if _, latest, err = s.Consent.Stored(ctx, k, ws, subjects...); err != nil {
			return "", err
		}
	}
	if consent.RegimeName(k.Regime(consent.JurisdictionOf(latest))) == consent.RegimeOptOut {
		return trustloop.RegimeCCPA, nil
	}
	return trustloop.RegimeGDPR, nil
}

// Get returns a request of the workspace.
func (s *Service) Get(ctx context.Context, ws int64, id string) (*trustloop.PrivacyRequest, error) {
	if !trustloop.ValidRequestID(id) {
		return nil, trustloop.Errorf(trustloop.ENOTFOUND, "No privacy request with this id.").
			WithHint("Request ids look like prq_… and come from POST /v1/privacy-requests.")
	}
	return s.Store.FindPrivacyRequest(ctx, ws, id)
}

// List returns requests by due date.
func (s *Service) List(ctx context.Context, ws int64, f trustloop.PrivacyFilter) ([]*trustloop.PrivacyRequest, error) {
	if f.Status != "" && !slices.Contains([]string{trustloop.RequestReceived, trustloop.RequestVerified, trustloop.RequestInProgress,
		trustloop.RequestCompleted, trustloop.RequestRejected}, f.Status) {
		return nil, invalid("Unknown status %q.", f.Status).WithHint("Statuses: received, verified, in_progress, completed, rejected.")
	}
	return s.Store.ListPrivacyRequests(ctx, ws, f)
}

// Verify records who verified the requester and queues the request.
func (s *Service) Verify(ctx context.Context, ws int64, id, by string, actor trustloop.AuditActor) (*trustloop.PrivacyRequest, error) {
	return s.move(ctx, ws, id, actor, "verified", func(r *trustloop.PrivacyRequest) (*trustloop.Job, error) {
		if r.Status != trustloop.RequestReceived {
			return nil, trustloop.Errorf(trustloop.ECONFLICT, "The request is %s; only a received request is verified.", r.Status).
				WithHint("GET the request for its status; nothing needs verifying now.")
		}
		r.Status, r.VerifiedBy, r.VerifiedAt = trustloop.RequestVerified, by, s.now()
		return &trustloop.Job{Kind: JobKind, RunAt: s.now(), MaxAttempts: 10}, nil
	})
}

// Reject closes an open request with a reason.
func (s *Service) Reject(ctx context.Context, ws int64, id, reason string, actor trustloop.AuditActor) (*trustloop.PrivacyRequest, error) {
	reason = strings.TrimSpace(reason)
	if reason == "" || len(reason) > 500 {
		return nil, invalid("A rejection needs a reason of 1 to 500 characters.").
			WithHint("The requester is told it; write no personal data in it.")
	}
	r, err := s.move(ctx, ws, id, actor, "rejected", func(r *trustloop.PrivacyRequest) (*trustloop.Job, error) {
		if !trustloop.CanMoveRequest(r.Status, trustloop.RequestRejected) {
			return nil, trustloop.Errorf(trustloop.ECONFLICT, "The request is %s and can no longer be rejected.", r.Status).
				WithHint("GET the request for its status and outcome.")
		}
		r.Status, r.RejectReason, r.CompletedAt = trustloop.RequestRejected, reason, s.now()
		// A rejected request keeps no blind index or input of anyone.
		r.Subject, r.Payload, r.Suppression = nil, nil, nil
		return nil, nil
	})
	if err == nil {
		_, err = s.Store.CancelJobs(ctx, ws, id)
	}
	return r, err
}

// Extend applies the one extension the law allows.
func (s *Service) Extend(ctx context.Context, ws int64, id, reason string, actor trustloop.AuditActor) (*trustloop.PrivacyRequest, error) {
	return s.move(ctx, ws, id, actor, "extended", func(r *trustloop.PrivacyRequest) (*trustloop.Job, error) {
		return nil, trustloop.ExtendRequest(r, reason, s.now())
	})
}

// move applies change to a stored request (optimistically, retried once on a
// concurrent change) and records the step.
func (s *Service) move(ctx context.Context, ws int64, id string, actor trustloop.AuditActor, step string, change func(*trustloop.PrivacyRequest) (*trustloop.Job, error)) (*trustloop.PrivacyRequest, error) {
	for attempt := 0; ; attempt++ {
		r, err := s.Get(ctx, ws, id)
		if err != nil {
			return nil, err
		}
		job, err := change(r)
		if err != nil {
			return nil, err
		}
		r.UpdatedAt = s.now()
		err = s.Store.UpdatePrivacyRequest(ctx, r, job)
		if trustloop.ErrorCode(err) == trustloop.ECONFLICT && attempt < 3 {
			continue
		}
		if err != nil {
			return nil, err
		}
		s.audit(ctx, r, actor, step)
		if job != nil {
			s.Wake()
		}
		return r, nil
	}
}

// audit records a step of a request. The entry names the request, never the
// subject: after an erasure nothing links it to anyone.
func (s *Service) audit(ctx context.Context, r *trustloop.PrivacyRequest, actor trustloop.AuditActor, step string) {
	if s.Audit == nil {
		return
	}
	if err := s.Audit.Append(ctx, s.auditEntry(r, actor, step)); err != nil {
		s.Log.Error("recording a privacy request step in the audit log failed; retried as a job", "step", step, "err", err)
		s.later(ctx, &trustloop.Job{WorkspaceID: r.WorkspaceID, Kind: AuditKind, Ref: auditRef(r, step, actor)})
	}
}

// Wake makes an idle worker look for work now.
func (s *Service) Wake() {
	s.init()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}
