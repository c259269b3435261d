package privacy

import (
	"context"
	"encoding/json"
	"time"

	"github.com/trustloop/trustloop"
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

// Source is the pseudo-source of changes a privacy request makes to a profile
// (its events carry source_id 0).
var Source = trustloop.Source{ID: 0, Name: "privacy_request"}

// Ingester takes a synthetic event to the log (ingest.Pipeline).
type Ingester interface {
	Ingest(ctx context.Context, src *trustloop.Source, msgs []trustloop.Message) error
}

// rectify applies corrected traits: an identify event of the subject, dated
// now, goes through the collector's pipeline like any other, so the profile
// shows the corrected values (the last write by time wins) and the change is
// in the log, sealed under the subject's key.
func (s *Service) rectify(ctx context.Context, r *trustloop.PrivacyRequest) error {
	if s.Ingester == nil || r.Payload == nil {
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
	// The identify names the subject by a user or anonymous id it has.
	var user, anon string
	if s.Profiles != nil {
		sub, err := s.Profiles.Find(ctx, s.Store, r.WorkspaceID, r.Subject)
		if err != nil {
			return err
		}
		if sub != nil {
			for _, v := range sub.Values {
				switch {
				case v.Type == trustloop.IDUserID && user == "":
					user = v.Value
				case v.Type == trustloop.IDAnonymousID && anon == "":
					anon = v.Value
				}
			}
		}
	}
	if user == "" && anon == "" {
		return s.complete(ctx, r, false, map[string]any{"found": false})
	}
	now := s.now()
	raw, err := json.Marshal(map[string]any{"type": "identify", "userId": user, "anonymousId": anon, "traits": traits,
		"messageId": r.ID, "timestamp": now.Format(time.RFC3339Nano)})
	if err != nil {
		return err
	}
	msg := trustloop.Message{Type: trustloop.EventIdentify, MessageID: r.ID, UserID: user, AnonymousID: anon,
		ReceivedAt: now, Timestamp: now, Raw: raw}
	if user == "" {
		msg.UserID = ""
	}
	src := Source
	src.WorkspaceID = r.WorkspaceID
	if err := s.Ingester.Ingest(ctx, &src, []trustloop.Message{msg}); err != nil {
		return err
	}
	names := make([]string, 0, len(traits))
	for k := range traits {
		names = append(names, k)
	}
	return s.complete(ctx, r, true, map[string]any{"found": true, "traits_corrected": names})
}
