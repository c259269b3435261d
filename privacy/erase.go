package privacy

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/consent"
	"github.com/trustloop/trustloop/ingest"
	"github.com/trustloop/trustloop/projection"
)

// Erasure (T6). It runs on the collector's writer, between two group commits
// (Ingest.Exclusive), so no event of the subject is committed while it runs,
// and an event prepared before it finished but committed after is dropped;
// under the projection's operation lock, after everything held in memory was
// written behind, so the store has every row to delete. In one transaction it
// destroys the subject keys (crypto-shredding: what stays in segment files, a
// backup or a WAL frame is ciphertext without a key) and deletes the events,
// identities, profiles (merged ones too), merges, timelines, memberships,
// consent chains and receipts, the audit pseudonym and whom other requests
// named, and completes the request with its counts and signed receipt. The
// derived models' hooks run just before that transaction (a failing hook
// stops the erasure before anything is deleted). After the commit nothing can
// fail the erasure any more: memory forgets the subject, suppression starts,
// the WAL is truncated and the audit log records it; a truncation or an
// audit append that fails is retried as a job of its own (Service.scrub and
// Service.audit queue ScrubKind and AuditKind jobs), since the request is
// already complete.

// ReceiptType is the JWS type of erasure receipts.
const ReceiptType = "trustloop-erasure-receipt+json"

// ErasureReceipt is what an erasure receipt states: which request, when, and
// how much was removed — nothing that identifies the customer.
type ErasureReceipt struct {
	Version     int                     `json:"version"`
	RequestID   string                  `json:"request_id"`
	WorkspaceID int64                   `json:"workspace_id"`
	ReceivedAt  time.Time               `json:"received_at"`
	CompletedAt time.Time               `json:"completed_at"`
	Found       bool                    `json:"found"`
	Counts      trustloop.ErasureCounts `json:"counts"`
	Suppressed  bool                    `json:"suppressed"`
}

// ErasureResult is a completed erasure's stored result.
type ErasureResult struct {
	Found  bool                    `json:"found"`
	Counts trustloop.ErasureCounts `json:"counts"`
	// Seconds is how long the erasure took, from the worker picking it up.
	Seconds float64 `json:"seconds"`
}

func (s *Service) erase(ctx context.Context, r *trustloop.PrivacyRequest) error {
	if r.Subject == nil {
		return nil // completed by an earlier attempt whose acknowledgement was lost
	}
	start := time.Now()
	ws := r.WorkspaceID
	return s.Ingest.Exclusive(ctx, func(ctx context.Context) (ingest.Outcome, error) {
		plan := &trustloop.Erasure{WorkspaceID: ws, RequestID: r.ID, Blinds: [][]byte{r.Subject}}
		if r.Suppress && r.Suppression != nil {
			plan.Suppress = [][]byte{r.Suppression}
		}
		var (
			hook   = Erased{WorkspaceID: ws}
			shared [][]byte
			found  bool
			counts trustloop.ErasureCounts
		)
		run := func() error {
			hook.Blinds, hook.KeyIDs, hook.ProfileIDs, hook.Shared = plan.Blinds, plan.KeyIDs, plan.ProfileIDs, shared
			for _, h := range s.OnErase {
				if err := h(ctx, hook); err != nil {
					return fmt.Errorf("privacy: a derived model could not forget the subject (nothing erased yet; the request is retried): %w", err)
				}
			}
			plan.Complete = func(c trustloop.ErasureCounts) (*trustloop.PrivacyRequest, error) {
				return s.completeErasure(r, found, c, start)
			}
			var err error
			counts, err = s.Store.Erase(ctx, plan)
			return err
		}
		var err error
		if s.Profiles != nil {
			found, err = s.Profiles.Erase(ctx, s.Store, ws, r.Subject, func(sub *projection.Subject) error {
				found = true // the receipt and result, written in the transaction, say so
				if err := s.shareKeys(ctx, ws, sub); err != nil {
					return err
				}
				plan.KeyIDs, plan.Seqs, plan.ProfileIDs = sub.KeyIDs, sub.Seqs, sub.ProfileIDs
				plan.ForeignSeqs, plan.TimelineKeys, shared = sub.ForeignSeqs, sub.TimelineKeys, sub.SharedBlinds
				plan.Blinds = appendNew(plan.Blinds, sub.Blinds()...)
				plan.Blinds = appendNew(plan.Blinds, sub.KeyBlinds...)
				if r.Suppress {
					for _, v := range sub.Values {
						if v.Value == "" {
							continue
						}
						h, err := s.Keys.Suppression(ws, v.Type, v.Value)
						if err != nil {
							return err
						}
						plan.Suppress = appendNew(plan.Suppress, h)
					}
				}
				return run()
			})
		}
		if err == nil && !found {
			// No profile: the subject is the identifier's own key, if it has
			// one; its events are found by a scan of the log.
			keys, kerr := s.Store.FindSubjectKeys(ctx, ws, [][]byte{r.Subject})
			if kerr != nil {
				return ingest.Outcome{}, kerr
			}
			for _, k := range keys {
				plan.KeyIDs = append(plan.KeyIDs, k.ID)
			}
			found = len(plan.KeyIDs) > 0
			plan.ScanEvents = found
			err = run()
		}
		// Whatever the outcome, memory forgets the subject: it reloads what
		// the store still has.
		s.Keys.Forget(ws, plan.Blinds)
		if s.Consent != nil {
			s.Consent.Forget(ws, plan.Blinds)
		}
		if s.Profiles != nil {
			s.Profiles.Forget(plan.KeyIDs)
		}
		if err != nil {
			return ingest.Outcome{Erased: plan.Blinds}, err
		}
		// Committed: from here on nothing fails the erasure.
		s.Ingest.Suppress(ws, plan.Suppress)
		s.scrub(ctx, ws)
		s.Log.Info("erasure completed", "request", r.ID, "events", counts.Events, "seconds", time.Since(start).Seconds())
		s.audit(ctx, r, trustloop.AuditActor{}, "completed")
		return ingest.Outcome{Erased: plan.Blinds}, nil
	})
}

// completeErasure fills in the completed request, with its signed receipt.
func (s *Service) completeErasure(r *trustloop.PrivacyRequest, found bool, c trustloop.ErasureCounts, start time.Time) (*trustloop.PrivacyRequest, error) {
	now := s.now()
	done := *r
	res, err := json.Marshal(ErasureResult{Found: found, Counts: c, Seconds: time.Since(start).Seconds()})
	if err != nil {
		return nil, err
	}
	key, err := s.Keys.SigningKey(r.WorkspaceID)
	if err != nil {
		return nil, err
	}
	jws, err := consent.SignDocument(key, ReceiptType, ErasureReceipt{Version: 1, RequestID: r.ID, WorkspaceID: r.WorkspaceID,
		ReceivedAt: r.ReceivedAt, CompletedAt: now, Found: found, Counts: c, Suppressed: r.Suppress})
	if err != nil {
		return nil, err
	}
	done.Status, done.CompletedAt, done.Result, done.Receipt, done.Progress, done.UpdatedAt =
		trustloop.RequestCompleted, now, res, jws, "done", now
	// A copy: the store may call this again if its transaction is retried.
	return &done, nil
}

// VerifyErasureReceipt checks an erasure receipt against the workspace's key.
func (s *Service) VerifyErasureReceipt(ws int64, jws string) (*ErasureReceipt, error) {
	key, err := s.Keys.SigningKey(ws)
	if err != nil {
		return nil, err
	}
	pb, err := consent.VerifyDocument(key.Public().(ed25519.PublicKey), ReceiptType, jws)
	if err != nil {
		return nil, err
	}
	var out ErasureReceipt
	if err := json.Unmarshal(pb, &out); err != nil {
		return nil, trustloop.Errorf(trustloop.EINVALID, "The receipt's payload is not an erasure receipt.").
			WithHint("Pass the erasure receipt exactly as the request returned it.")
	}
	return &out, nil
}

func appendNew(dst [][]byte, more ...[]byte) [][]byte {
next:
	for _, b := range more {
		for _, d := range dst {
			if string(d) == string(b) {
				continue next
			}
		}
		dst = append(dst, b)
	}
	return dst
}
