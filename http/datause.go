package http

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/consent"
	"github.com/trustloop/trustloop/projection"
)

// Data uses (T3, T7): every read that shows a customer's personal data is
// appended to the workspace's audit log before the answer is sent: who (the
// key), for what purpose, whose (the profile id), which categories, and through
// which route. A read that cannot be recorded is not answered.

var dataUsePaths = []string{"/v1/profiles/{id}/data-uses"}

// use is one profile's data shown by a read.
type use struct {
	profile    string
	categories []string
}

// recordUses appends the uses of one read; it returns an error (and the read
// fails) if the audit log cannot take them.
func (s *Server) recordUses(ctx context.Context, k *trustloop.APIKey, purpose, action string, uses []use) error {
	return s.recordUsesBy(ctx, k.WorkspaceID, actorOf(k), purpose, action, uses)
}

// recordUsesBy is recordUses for any actor: a key, an operator of the
// console, or the customer in the preference center.
func (s *Server) recordUsesBy(ctx context.Context, ws int64, actor trustloop.AuditActor, purpose, action string, uses []use) error {
	if s.Audit == nil || len(uses) == 0 {
		return nil
	}
	now := s.now()
	entries := make([]trustloop.AuditEntry, 0, len(uses))
	for _, u := range uses {
		entries = append(entries, trustloop.AuditEntry{WorkspaceID: ws, Time: now, Kind: trustloop.AuditDataUse,
			Actor: actor, Purpose: purpose, Subject: u.profile, Categories: u.categories, Action: action})
	}
	if err := s.Audit.Append(ctx, entries...); err != nil {
		if trustloop.ErrorCode(err) == trustloop.EINTERNAL {
			s.Log.Error("recording a data use failed; the read is refused", "err", err)
			return &trustloop.Error{Code: trustloop.EUNAVAILABLE, Message: "The read could not be recorded, so it was not made.",
				Hint: "Retry shortly.", RetryAfterSeconds: 1}
		}
		return err
	}
	return nil
}

// usesOf lists the profiles of views whose data was shown.
func usesOf(vs ...*profileView) []use {
	var out []use
	for _, v := range vs {
		if len(v.used) > 0 {
			out = append(out, use{profile: v.ProfileID, categories: v.used})
		}
	}
	return out
}

type dataUseView struct {
	Index      int64                `json:"index"`
	Time       time.Time            `json:"time"`
	Kind       string               `json:"kind"`
	Actor      trustloop.AuditActor `json:"actor"`
	Purpose    string               `json:"purpose"`
	Categories []string             `json:"categories"`
	Action     string               `json:"action"`
}

// dataUses lists the recorded uses of a profile's data, newest first. The
// entries hold no personal data; any role of the workspace may read them.
func (s *Server) dataUses(w http.ResponseWriter, r *http.Request, k *trustloop.APIKey) error {
	id, err := projection.ParseID(r.PathValue("id"))
	if err != nil {
		return err
	}
	if s.Audit == nil {
		return trustloop.Errorf(trustloop.ENOTFOUND, "This server keeps no audit log.").
			WithHint("Data uses are listed by a server that runs with its audit log (trustloop serve does by default).")
	}
	p, err := s.Profiles.Profile(r.Context(), k.WorkspaceID, id)
	if err != nil {
		return err
	}
	n, err := limit(r, 50, 500, true)
	if err != nil {
		return err
	}
	var before int64
	if c := r.URL.Query().Get("cursor"); c != "" {
		if before, err = strconv.ParseInt(c, 10, 64); err != nil || before <= 0 {
			return trustloop.Errorf(trustloop.EINVALID, "cursor is not one this API returned.").WithHint("Use next_cursor of the previous page.")
		}
	}
	recs, err := s.Audit.RecordsOf(r.Context(), k.WorkspaceID, p.ProfileID, before, n+1)
	if err != nil {
		return err
	}
	next := ""
	if len(recs) > n {
		recs = recs[:n]
		next = strconv.FormatInt(recs[n-1].Index, 10)
	}
	out := make([]dataUseView, 0, len(recs))
	for _, rec := range recs {
		e, err := trustloop.DecodeAuditEntry(rec.Data)
		if err != nil {
			return err
		}
		out = append(out, dataUseView{Index: e.Index, Time: e.Time, Kind: e.Kind, Actor: e.Actor, Purpose: e.Purpose,
			Categories: e.Categories, Action: e.Action})
	}
	writeJSON(w, http.StatusOK, page[dataUseView]{Data: out, NextCursor: next})
	return nil
}

// routeOf is the route pattern a request matched ("GET /v1/profiles/{id}"):
// audit entries name routes, never raw paths (which may carry identifiers).
func routeOf(r *http.Request) string { return r.Pattern }

// eventCategory is the data category of a timeline event (consent.EventCategories).
func eventCategory(typ string, message json.RawMessage) string {
	m := trustloop.Message{}
	m.Type, _ = trustloop.ParseEventType(typ)
	if m.Type == trustloop.EventTrack {
		var ev struct {
			Event string `json:"event"`
		}
		json.Unmarshal(message, &ev)
		m.Event = ev.Event
	}
	names := consent.EventCategories(&m).Names()
	if len(names) == 0 {
		return trustloop.CategoryBehavior
	}
	return names[0]
}
