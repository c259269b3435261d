package privacy

import (
	"context"
	"encoding/json"
	"maps"
	"slices"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/ingest"
)

// AccessResult is a completed access or portability request's summary; the
// package itself is made when it is downloaded.
type AccessResult struct {
	Found           bool `json:"found"`
	Identities      int  `json:"identities"`
	Events          int  `json:"events"`
	ConsentRecords  int  `json:"consent_records"`
	DataUses        int  `json:"data_uses"`
	PrivacyRequests int  `json:"privacy_requests"`
}

// access checks what the package will hold and completes the request. It
// writes nothing of the subject's data: the download reads it live.
func (s *Service) access(ctx context.Context, r *trustloop.PrivacyRequest) error {
	pkg, keyIDs, err := s.gather(ctx, r)
	if err != nil {
		return err
	}
	res := AccessResult{Found: pkg.Found, Identities: len(pkg.Identities), ConsentRecords: len(pkg.Consent),
		DataUses: len(pkg.DataUses), PrivacyRequests: len(pkg.PrivacyRequests)}
	if err := s.eachEvent(ctx, r.WorkspaceID, keyIDs, func(ExportEvent) error { res.Events++; return nil }); err != nil {
		return err
	}
	return s.complete(ctx, r, res.Found, res)
}

// rectify corrects traits everywhere the subject's data holds them and seals
// it all again under fresh keys (projection.Rectify), on the collector's
// writer so no event of the subject commits meanwhile; events prepared before
// are sealed again under the new keys.
func (s *Service) rectify(ctx context.Context, r *trustloop.PrivacyRequest) error {
	if s.Profiles == nil || r.Payload == nil {
		return s.complete(ctx, r, false, map[string]any{"found": false})
	}
	plain, err := s.Keys.OpenWorkspace(r.WorkspaceID, r.Payload, []byte(r.ID))
	if err != nil {
		return err
	}
	var traits map[string]json.RawMessage
	if err := json.Unmarshal(plain, &traits); err != nil {
		return err
	}
	var found, done bool
	var events int
	err = s.Ingest.Exclusive(ctx, func(ctx context.Context) (ingest.Outcome, error) {
		rekeyed, ok, err := s.Profiles.Rectify(ctx, s.Store, r.WorkspaceID, r.Subject, traits, s.now(), func(rk *trustloop.Rekey) error {
			events = len(rk.Events)
			rk.Complete = func() (*trustloop.PrivacyRequest, error) {
				return s.completed(r, true, map[string]any{"found": true, "traits_corrected": slices.Sorted(maps.Keys(traits)),
					"events_resealed": events})
			}
			return s.Store.Rekey(ctx, rk)
		})
		found, done = ok, err == nil && ok
		return ingest.Outcome{Rekeyed: rekeyed}, err
	})
	if err != nil {
		return err
	}
	if !found {
		return s.complete(ctx, r, false, map[string]any{"found": false})
	}
	if done {
		s.scrub(ctx, r.WorkspaceID)
		s.audit(ctx, r, trustloop.AuditActor{}, "completed")
	}
	return nil
}
