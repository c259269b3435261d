package privacy

import (
	"context"
	"fmt"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/collect"
	"github.com/trustloop/trustloop/consent"
	"github.com/trustloop/trustloop/keyring"
	"github.com/trustloop/trustloop/projection"
)

// Retention (issue 5): a sweep, one job per workspace on the same durable
// queue (so one node runs it at a time), that
//   - marks given consent past its expiry (consent_ttl_days, "ask again after
//     13 months") with an "expired" record and receipt: the decision already
//     treats it as a no (T1), the record makes that visible in the history and
//     the audit log;
//   - deletes events whose retention has passed: an event is kept while any
//     purpose that uses it keeps it (allowed when it was collected and allowed
//     to use its data category; the catalog's retention_days, 0 keeping it as
//     long as the subject allows, so contract data stays), and is deleted once
//     the longest of them has passed since it was received.
// An event's purposes are sealed in it, so the sweep opens the events older
// than the shortest retention in the catalog, oldest first, and stops at the
// first younger one (the log is in order of receipt). Events with no recorded
// purposes (collected before consent enforcement) are left alone.

// RetentionKind is the job kind of retention sweeps.
const RetentionKind = "retention"

// RetentionResult is what one sweep did.
type RetentionResult struct {
	EventsExamined int
	EventsDeleted  int64
	ConsentExpired int
}

// ScheduleRetention queues a sweep for every workspace that has none queued
// or running.
func (s *Service) ScheduleRetention(ctx context.Context, workspaces []int64) error {
	for _, ws := range workspaces {
		jobs, err := s.Store.JobsOf(ctx, ws, RetentionKind)
		if err != nil {
			return err
		}
		busy := false
		for _, j := range jobs {
			busy = busy || j.State == trustloop.JobQueued || j.State == trustloop.JobRunning
		}
		if busy {
			continue
		}
		if err := s.Store.EnqueueJob(ctx, &trustloop.Job{WorkspaceID: ws, Kind: RetentionKind, Ref: RetentionKind,
			RunAt: s.now(), MaxAttempts: 3}); err != nil {
			return err
		}
		s.Wake()
	}
	return nil
}

// Retention runs one sweep of a workspace now.
func (s *Service) Retention(ctx context.Context, ws int64) (RetentionResult, error) {
	var res RetentionResult
	now := s.now()
	cat, err := s.Consent.Catalog(ctx, ws)
	if err != nil {
		return res, err
	}
	// Expired consent, a page of records at a time, one change per subject.
	for {
		recs, err := s.Store.ExpiredConsent(ctx, ws, now, 500)
		if err != nil {
			return res, err
		}
		if len(recs) == 0 {
			break
		}
		bySubject := map[string][]consent.Change{}
		for _, r := range recs {
			bySubject[string(r.Subject)] = append(bySubject[string(r.Subject)], consent.Change{Purpose: r.Purpose, State: trustloop.ConsentExpired})
		}
		for sub, changes := range bySubject {
			if _, _, err := s.Consent.Record(ctx, ws, [][]byte{[]byte(sub)}, changes,
				consent.Meta{Method: trustloop.MethodExpiry, Evidence: "retention"}); err != nil {
				return res, err
			}
			res.ConsentExpired += len(changes)
		}
		if len(recs) < 500 {
			break
		}
	}
	// Expired events.
	days := map[string]int{}
	shortest := 0
	for _, p := range cat.Catalog.Purposes {
		days[p.ID] = p.RetentionDays
		if p.RetentionDays > 0 && (shortest == 0 || p.RetentionDays < shortest) {
			shortest = p.RetentionDays
		}
	}
	if shortest == 0 {
		return res, nil
	}
	cutoff := now.AddDate(0, 0, -shortest)
	keys := map[int64]keyring.Key{}
	for after := int64(0); ; {
		page, err := s.Store.ListEvents(ctx, ws, after, 1000)
		if err != nil {
			return res, err
		}
		var expired []int64
		done := len(page) < 1000
		for i, e := range page {
			if !e.ReceivedAt.Before(cutoff) {
				done, page = true, page[:i]
				break
			}
		}
		if err := s.openKeys(ctx, ws, page, keys); err != nil {
			return res, err
		}
		for _, e := range page {
			res.EventsExamined++
			k, ok := keys[e.KeyID]
			if !ok {
				continue // its subject was erased: nothing readable is left
			}
			env, err := projection.OpenEvent(ws, e, k)
			if err != nil {
				return res, err
			}
			// The purposes that use it: those allowed at collection that may
			// use its category (a page view is not kept for the contract).
			m := &trustloop.Message{Type: e.Type}
			if e.Type == trustloop.EventTrack {
				m.Event, _ = collect.LookupString(env.Message, "event")
			}
			cats := consent.EventCategories(m)
			var using []string
			for _, p := range env.Purposes {
				if i, ok := cat.Index(p); !ok || cat.Categories(i)&cats != 0 {
					using = append(using, p) // an unknown purpose is kept, not guessed
				}
			}
			if len(env.Purposes) > 0 && len(using) == 0 {
				// Collected for purposes none of which may use it any more
				// (the catalog changed since): nothing keeps it.
				expired = append(expired, e.Seq)
			} else if until, ok := retainUntil(days, using, e.ReceivedAt); ok && now.After(until) {
				expired = append(expired, e.Seq)
			}
		}
		n, err := s.Store.DeleteEvents(ctx, ws, expired)
		if err != nil {
			return res, err
		}
		res.EventsDeleted += n
		if done || len(page) == 0 {
			break
		}
		after = page[len(page)-1].Seq
		if len(keys) > 100_000 {
			clear(keys)
		}
	}
	if s.OnRetention != nil {
		s.OnRetention(res.EventsDeleted, res.ConsentExpired)
	}
	if s.OnEventsDeleted != nil && res.EventsDeleted > 0 {
		s.OnEventsDeleted(ws)
	}
	return res, nil
}

// retainUntil is when an event collected for purposes at received may go:
// the longest retention among its purposes; ok is false when one keeps it
// indefinitely (retention 0, or a purpose no longer in the catalog: kept
// rather than guessed) or it has no purposes.
func retainUntil(days map[string]int, purposes []string, received time.Time) (time.Time, bool) {
	if len(purposes) == 0 {
		return time.Time{}, false
	}
	longest := 0
	for _, p := range purposes {
		d, known := days[p]
		if !known || d == 0 {
			return time.Time{}, false
		}
		longest = max(longest, d)
	}
	return received.AddDate(0, 0, longest), true
}

// openKeys adds to keys the subject keys of the events not in it yet.
func (s *Service) openKeys(ctx context.Context, ws int64, evs []trustloop.StoredEvent, keys map[int64]keyring.Key) error {
	var missing []int64
	for _, e := range evs {
		if _, ok := keys[e.KeyID]; !ok {
			missing = append(missing, e.KeyID)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	found, err := s.keysByID(ctx, ws, missing)
	if err != nil {
		return fmt.Errorf("privacy: retention keys: %w", err)
	}
	for id, k := range found {
		keys[id] = k
	}
	return nil
}
