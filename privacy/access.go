package privacy

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strconv"

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
// writes nothing of the subject's data: the download reads it live. While it
// counts the events it reports how far it got on the request (ProgressEvery).
func (s *Service) access(ctx context.Context, r *trustloop.PrivacyRequest) error {
	pkg, keyIDs, err := s.gather(ctx, r)
	if err != nil {
		return err
	}
	res := AccessResult{Found: pkg.Found, Identities: len(pkg.Identities), ConsentRecords: len(pkg.Consent),
		DataUses: len(pkg.DataUses), PrivacyRequests: len(pkg.PrivacyRequests)}
	every := s.ProgressEvery
	if every <= 0 {
		every = 10_000
	}
	err = s.eachEvent(ctx, r.WorkspaceID, keyIDs, func(ExportEvent) error {
		res.Events++
		if res.Events%every != 0 {
			return nil
		}
		return s.progress(ctx, r, "counted "+strconv.Itoa(res.Events)+" events")
	})
	if errors.Is(err, errClosed) {
		return nil // rejected meanwhile: nothing is left to do
	} else if err != nil {
		return err
	}
	return s.complete(ctx, r, res.Found, res)
}

// errClosed stops the work on a request that was closed while it ran.
var errClosed = errors.New("privacy: the request was closed meanwhile")

// progress records how far the work on a running request got. A request
// changed meanwhile (extended, say) is read again and takes the progress;
// one no longer open (rejected) stops the work (errClosed). Progress is for
// people to look at: a store that cannot take it now does not fail the work.
func (s *Service) progress(ctx context.Context, r *trustloop.PrivacyRequest, msg string) error {
	for attempt := 0; ; attempt++ {
		r.Progress, r.UpdatedAt = msg, s.now()
		err := s.Store.UpdatePrivacyRequest(ctx, r, nil)
		if err == nil {
			return nil
		}
		if trustloop.ErrorCode(err) != trustloop.ECONFLICT || attempt == 3 {
			s.Log.Warn("recording a privacy request's progress failed", "request", r.ID, "err", err)
			return nil
		}
		cur, err := s.Store.FindPrivacyRequest(ctx, r.WorkspaceID, r.ID)
		if err != nil {
			return err
		}
		if !cur.Open() {
			return errClosed
		}
		*r = *cur
	}
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
