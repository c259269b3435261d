package privacy

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"html/template"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/collect"
	"github.com/trustloop/trustloop/keyring"
	"github.com/trustloop/trustloop/projection"
)

// The access package (GDPR Art. 15 and 20, CCPA § 1798.110): everything held
// about the subject, made when it is downloaded (nothing of it is stored at
// rest in the clear) and streamed, so its memory does not grow with the number
// of events. Format trustloop.access-package version 1, documented in
// docs/privacy.md; JSON for machines, HTML for people.

// PackageFormat and PackageVersion name the document.
const (
	PackageFormat  = "trustloop.access-package"
	PackageVersion = 1
)

// Package is the head of the document: everything but the events, which
// follow it streamed.
type Package struct {
	Format      string    `json:"format"`
	Version     int       `json:"version"`
	RequestID   string    `json:"request_id"`
	WorkspaceID int64     `json:"workspace_id"`
	GeneratedAt time.Time `json:"generated_at"`
	// Found is false when nothing is held about the identifier.
	Found           bool                   `json:"found"`
	Profiles        []*projection.Profile  `json:"profiles"`
	Identities      []trustloop.Identifier `json:"identities"`
	Consent         []ConsentEntry         `json:"consent_history"`
	Receipts        []Receipt              `json:"consent_receipts"`
	DataUses        []DataUse              `json:"data_uses"`
	PrivacyRequests []RequestView          `json:"privacy_requests"`
}

// ConsentEntry is one consent record as the customer sees it.
type ConsentEntry struct {
	Purpose       string     `json:"purpose"`
	State         string     `json:"state"`
	At            time.Time  `json:"at"`
	ExpiresAt     *time.Time `json:"expires_at,omitempty"`
	Method        string     `json:"method"`
	NoticeVersion string     `json:"notice_version,omitempty"`
	Jurisdiction  string     `json:"jurisdiction,omitempty"`
	SourceID      int64      `json:"source_id,omitempty"`
	ReceiptID     string     `json:"receipt_id,omitempty"`
	Hash          string     `json:"hash"`
}

// Receipt is a consent receipt as issued (a JWS the customer can verify).
type Receipt struct {
	ReceiptID string `json:"receipt_id"`
	JWS       string `json:"jws"`
}

// DataUse is one recorded use of the customer's data.
type DataUse struct {
	Index      int64                `json:"index"`
	Time       time.Time            `json:"time"`
	Kind       string               `json:"kind"`
	Actor      trustloop.AuditActor `json:"actor"`
	Purpose    string               `json:"purpose,omitempty"`
	Categories []string             `json:"categories,omitempty"`
	Action     string               `json:"action,omitempty"`
}

// ExportEvent is one event of the package: the message as collected, with
// what Trustloop added.
type ExportEvent struct {
	Type         string          `json:"type"`
	MessageID    string          `json:"message_id"`
	ReceivedAt   time.Time       `json:"received_at"`
	Timestamp    time.Time       `json:"timestamp"`
	SourceID     int64           `json:"source_id"`
	Purposes     []string        `json:"purposes,omitempty"`
	Message      json.RawMessage `json:"message"`
	BatchContext json.RawMessage `json:"batch_context,omitempty"`
}

// Export writes a completed access or portability request's package to w as
// "json" or "html". The download is recorded as a data use first (a read
// that cannot be recorded is not made).
func (s *Service) Export(ctx context.Context, ws int64, id, format string, actor trustloop.AuditActor, w io.Writer) error {
	if format != "json" && format != "html" {
		return invalid("format must be json or html.").WithHint("Leave format out for JSON.")
	}
	r, err := s.Get(ctx, ws, id)
	if err != nil {
		return err
	}
	if r.Type != trustloop.RequestAccess && r.Type != trustloop.RequestPortability {
		return invalid("Only access and portability requests have an export.").
			WithHint("File an access or portability request (POST /v1/privacy-requests) and download its export once it is completed.")
	}
	if r.Status != trustloop.RequestCompleted {
		return trustloop.Errorf(trustloop.ECONFLICT, "The request is %s; its export is ready once it is completed.", r.Status).
			WithHint("Poll GET /v1/privacy-requests/{id} until status is completed.")
	}
	pkg, keyIDs, err := s.gather(ctx, r)
	if err != nil {
		return err
	}
	if pkg.Found && s.Audit != nil {
		entries := []trustloop.AuditEntry{}
		for _, p := range pkg.Profiles {
			// Purpose essential: answering the subject's request is a legal
			// obligation (the catalog's essential purpose covers it).
			entries = append(entries, trustloop.AuditEntry{WorkspaceID: ws, Time: s.now(), Kind: trustloop.AuditDataUse, Actor: actor,
				Purpose: trustloop.PurposeEssential,
				Subject: p.ProfileID, Categories: trustloop.Categories, Action: "GET /v1/privacy-requests/{id}/export",
				Detail: "request " + r.ID})
		}
		if err := s.Audit.Append(ctx, entries...); err != nil {
			return &trustloop.Error{Code: trustloop.EUNAVAILABLE, Message: "The download could not be recorded, so it was not made.",
				Hint: "Retry shortly.", RetryAfterSeconds: 1}
		}
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	if format == "html" {
		err = s.writeHTML(ctx, bw, pkg, ws, keyIDs)
	} else {
		err = s.writeJSON(ctx, bw, pkg, ws, keyIDs)
	}
	if err != nil {
		return err
	}
	return bw.Flush()
}

// gather collects the package's head and the subject keys of its events.
func (s *Service) gather(ctx context.Context, r *trustloop.PrivacyRequest) (*Package, []int64, error) {
	ws := r.WorkspaceID
	pkg := &Package{Format: PackageFormat, Version: PackageVersion, RequestID: r.ID, WorkspaceID: ws, GeneratedAt: s.now(),
		Profiles: []*projection.Profile{}, Identities: []trustloop.Identifier{}, Consent: []ConsentEntry{}, Receipts: []Receipt{},
		DataUses: []DataUse{}, PrivacyRequests: []RequestView{}}
	if r.Subject == nil {
		return pkg, nil, nil // the subject was erased since
	}
	blinds := [][]byte{r.Subject}
	var (
		keyIDs []int64
		// attributed is the consent under the blind indexes of keys that
		// are not the subject's identities' (see consentUnderKeys).
		attributed []trustloop.ConsentRecord
	)
	if s.Profiles != nil {
		sub, err := s.Profiles.Find(ctx, s.Store, ws, r.Subject)
		if err != nil {
			return nil, nil, err
		}
		if sub != nil {
			pkg.Found = true
			ki, err := s.keyInfo(ctx, ws, sub)
			if err != nil {
				return nil, nil, err
			}
			// The events: under the identities' keys, and on the foreign
			// timelines. Not every event under the profiles' other keys: a
			// profile made by an event under a blocked id has that value's
			// key, which seals every customer's events sent with it; the
			// subject's own events under such a key are on its foreign
			// timelines.
			keyIDs = append(slices.Clone(ki.identity), sub.TimelineKeys...)
			blinds = appendNew(blinds, sub.Blinds()...)
			if attributed, err = s.consentUnderKeys(ctx, ws, sub, ki, keyIDs); err != nil {
				return nil, nil, err
			}
			pkg.Identities = append(pkg.Identities, sub.Values...)
			p, err := s.Profiles.Profile(ctx, ws, sub.ProfileIDs[0])
			if err != nil {
				return nil, nil, err
			}
			pkg.Profiles = append(pkg.Profiles, p)
			for _, id := range sub.ProfileIDs {
				if err := s.dataUses(ctx, ws, projection.FormatID(id), pkg); err != nil {
					return nil, nil, err
				}
			}
		}
	}
	if !pkg.Found {
		keys, err := s.Store.FindSubjectKeys(ctx, ws, [][]byte{r.Subject})
		if err != nil {
			return nil, nil, err
		}
		for _, k := range keys {
			keyIDs = append(keyIDs, k.ID)
			pkg.Found = true
		}
	}
	var recs []trustloop.ConsentRecord
	for _, b := range blinds {
		more, err := s.Store.ConsentRecords(ctx, ws, b)
		if err != nil {
			return nil, nil, err
		}
		recs = append(recs, more...)
	}
	recs = append(recs, attributed...)
	receipts := map[string]bool{}
	for _, rec := range recs {
		pkg.Found = true
		e := ConsentEntry{Purpose: rec.Purpose, State: rec.State, At: rec.At, Method: rec.Method, NoticeVersion: rec.NoticeVersion,
			Jurisdiction: rec.Jurisdiction, SourceID: rec.SourceID, ReceiptID: rec.ReceiptID, Hash: hex.EncodeToString(rec.Hash)}
		if !rec.ExpiresAt.IsZero() {
			t := rec.ExpiresAt
			e.ExpiresAt = &t
		}
		pkg.Consent = append(pkg.Consent, e)
		if rec.ReceiptID != "" && !receipts[rec.ReceiptID] {
			receipts[rec.ReceiptID] = true
			rc, err := s.Store.FindConsentReceipt(ctx, ws, rec.ReceiptID)
			if err == nil {
				pkg.Receipts = append(pkg.Receipts, Receipt{ReceiptID: rc.ID, JWS: string(rc.Body)})
			} else if trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
				return nil, nil, err
			}
		}
	}
	slices.SortStableFunc(pkg.Consent, func(a, b ConsentEntry) int { return a.At.Compare(b.At) })
	reqs, err := s.Store.SubjectPrivacyRequests(ctx, ws, blinds)
	if err != nil {
		return nil, nil, err
	}
	for _, q := range reqs {
		pkg.PrivacyRequests = append(pkg.PrivacyRequests, View(q))
	}
	return pkg, keyIDs, nil
}

// consentUnderKeys returns the subject's consent records kept under the blind
// indexes of keys that are not its identities' (its events' keys, keyIDs
// being where they are listed): a profile's key or a foreign event's, the
// key of an anonymous id kept out by a limit or of a blocked one. An erasure
// deletes the consent under such a key when every event under it is the
// subject's (Erasure.Blinds gets projection.Subject.KeyBlinds). A blocked
// value's key may be shared, and even one that holds only the subject's
// events can have others' consent under its blind index: the consent stage
// records a change under a message's anonymous id as well as its user id
// (under a placeholder id no more, but stores hold such records from
// before), and the message is then sealed under the user id's key. So a record here
// is the subject's when it says which message carried it and that message
// is one of the subject's events: nothing of another customer comes in,
// and a record no event vouches for (one made through the API, or whose
// event is gone) is left out.
func (s *Service) consentUnderKeys(ctx context.Context, ws int64, sub *projection.Subject, ki *keyInfo, keyIDs []int64) ([]trustloop.ConsentRecord, error) {
	// The keys: the profiles' other keys, and those of the events on the
	// foreign timelines.
	others := slices.Clone(ki.other)
	// (the rows only: nothing needs opening here)
	err := s.Profiles.EachStoredEvent(ctx, ws, sub.TimelineKeys, func(e trustloop.StoredEvent) error {
		if !slices.Contains(ki.identity, e.KeyID) && !slices.Contains(others, e.KeyID) {
			others = append(others, e.KeyID)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(others) == 0 {
		return nil, nil
	}
	sks, err := s.Store.FindSubjectKeysByID(ctx, ws, others)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{} // the identities' blind indexes (their consent is read anyway) and those read
	for _, b := range sub.Blinds() {
		seen[string(b)] = true
	}
	var (
		candidates []trustloop.ConsentRecord
		wanted     = map[string]bool{} // message hashes the candidates name
	)
	for _, k := range others {
		sk, ok := sks[k]
		if !ok || seen[string(sk.Blind)] {
			continue
		}
		seen[string(sk.Blind)] = true
		recs, err := s.Store.ConsentRecords(ctx, ws, sk.Blind)
		if err != nil {
			return nil, err
		}
		for _, rec := range recs {
			if h, ok := messageEvidence(rec.Evidence); ok {
				candidates = append(candidates, rec)
				wanted[h] = true
			}
		}
	}
	if len(candidates) == 0 {
		return nil, nil
	}
	// Which of those messages are the subject's: one pass over its events,
	// keeping only the hashes asked for (memory does not grow with them).
	mine := map[string]bool{}
	err = s.Profiles.EachStoredEvent(ctx, ws, keyIDs, func(e trustloop.StoredEvent) error {
		if h := string(e.MessageHash); wanted[h] {
			mine[h] = true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := candidates[:0]
	for _, rec := range candidates {
		if h, _ := messageEvidence(rec.Evidence); mine[h] {
			out = append(out, rec)
		}
	}
	return out, nil
}

// messageEvidence returns the message hash a consent record's evidence names
// ("message:<hex>"), as bytes in a string.
func messageEvidence(evidence string) (string, bool) {
	x, ok := strings.CutPrefix(evidence, "message:")
	if !ok {
		return "", false
	}
	h, err := hex.DecodeString(x)
	if err != nil || len(h) == 0 {
		return "", false
	}
	return string(h), true
}

// dataUses adds the recorded uses of one profile's data.
func (s *Service) dataUses(ctx context.Context, ws int64, subject string, pkg *Package) error {
	for before := int64(0); ; {
		recs, err := s.Store.AuditRecordsOf(ctx, ws, subject, before, 1000)
		if err != nil {
			return err
		}
		for _, rec := range recs {
			e, err := trustloop.DecodeAuditEntry(rec.Data)
			if err != nil {
				return err
			}
			pkg.DataUses = append(pkg.DataUses, DataUse{Index: e.Index, Time: e.Time, Kind: e.Kind, Actor: e.Actor,
				Purpose: e.Purpose, Categories: e.Categories, Action: e.Action})
		}
		if len(recs) < 1000 {
			return nil
		}
		before = recs[len(recs)-1].Index
	}
}

// eachEvent calls fn with every event of the keys, newest first.
func (s *Service) eachEvent(ctx context.Context, ws int64, keyIDs []int64, fn func(ExportEvent) error) error {
	if len(keyIDs) == 0 {
		return nil
	}
	emit := func(e trustloop.StoredEvent, env *collect.Envelope) error {
		return fn(ExportEvent{Type: e.Type.String(), MessageID: env.MessageID, ReceivedAt: e.ReceivedAt, Timestamp: e.Timestamp,
			SourceID: e.SourceID, Purposes: env.Purposes, Message: env.Message, BatchContext: env.BatchContext})
	}
	if s.Profiles != nil {
		return s.Profiles.EachEvent(ctx, ws, keyIDs, emit)
	}
	// No timelines without profiles: the log is scanned for the key's events
	// (oldest first).
	sks, err := s.keysByID(ctx, ws, keyIDs)
	if err != nil {
		return err
	}
	for after := int64(0); ; {
		page, err := s.Store.ListEvents(ctx, ws, after, 2000)
		if err != nil {
			return err
		}
		for _, e := range page {
			k, ok := sks[e.KeyID]
			if !ok {
				continue
			}
			env, err := projection.OpenEvent(ws, e, k)
			if err != nil {
				return err
			}
			if err := emit(e, env); err != nil {
				return err
			}
		}
		if len(page) < 2000 {
			return nil
		}
		after = page[len(page)-1].Seq
	}
}

func (s *Service) keysByID(ctx context.Context, ws int64, ids []int64) (map[int64]keyring.Key, error) {
	found, err := s.Store.FindSubjectKeysByID(ctx, ws, ids)
	if err != nil {
		return nil, err
	}
	out := make(map[int64]keyring.Key, len(found))
	for id, sk := range found {
		k, err := s.Keys.OpenSubjectKey(sk)
		if err != nil {
			return nil, err
		}
		out[id] = k
	}
	return out, nil
}

// writeJSON streams the package: its head's members, then the events one by
// one, then their count.
func (s *Service) writeJSON(ctx context.Context, w *bufio.Writer, pkg *Package, ws int64, keyIDs []int64) error {
	head, err := json.Marshal(pkg)
	if err != nil {
		return err
	}
	w.Write(head[:len(head)-1]) // without the closing brace: the events follow
	w.WriteString(`,"events":[`)
	n := 0
	err = s.eachEvent(ctx, ws, keyIDs, func(e ExportEvent) error {
		b, err := json.Marshal(e)
		if err != nil {
			return err
		}
		if n > 0 {
			w.WriteByte(',')
		}
		n++
		_, err = w.Write(b)
		return err
	})
	if err != nil {
		return err
	}
	c, _ := json.Marshal(n)
	w.WriteString(`],"event_count":`)
	w.Write(c)
	_, err = w.WriteString("}\n")
	return err
}

var pageTmpl = template.Must(template.New("head").Funcs(template.FuncMap{
	"json": indented,
	"date": func(t time.Time) string { return t.UTC().Format("2 January 2006, 15:04 UTC") },
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Your data — access package {{.RequestID}}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1a1a1a}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #ccc;vertical-align:top}
pre{white-space:pre-wrap;word-break:break-word;margin:0;font-size:.85rem}</style></head><body>
<h1>Your data</h1>
<p>Everything we hold about you, as of {{date .GeneratedAt}} (request {{.RequestID}}). The same package is available as JSON for moving it to another service.</p>
{{if not .Found}}<p><strong>We hold no data about this identifier.</strong></p>{{end}}
<h2>Who we know you as</h2>
<ul>{{range .Identities}}<li>{{.Type}}: {{.Value}}</li>{{else}}<li>No identifiers.</li>{{end}}</ul>
{{range .Profiles}}<h2>Your profile</h2>
<h3>Traits</h3><pre>{{json .Traits}}</pre>
<h3>What we computed from your activity</h3><pre>{{json .Computed}}</pre>
<h3>Audiences</h3><ul>{{range .Audiences}}<li>{{.Name}}</li>{{else}}<li>None.</li>{{end}}</ul>{{end}}
<h2>Your consent choices</h2>
<table><thead><tr><th scope="col">When</th><th scope="col">Purpose</th><th scope="col">Choice</th><th scope="col">How</th></tr></thead><tbody>
{{range .Consent}}<tr><td>{{date .At}}</td><td>{{.Purpose}}</td><td>{{.State}}</td><td>{{.Method}}</td></tr>{{else}}<tr><td colspan="4">No choices recorded.</td></tr>{{end}}
</tbody></table>
<h2>How your data was used</h2>
<table><thead><tr><th scope="col">When</th><th scope="col">Who</th><th scope="col">Purpose</th><th scope="col">What</th></tr></thead><tbody>
{{range .DataUses}}<tr><td>{{date .Time}}</td><td>{{.Actor.ID}}</td><td>{{.Purpose}}</td><td>{{.Action}}</td></tr>{{else}}<tr><td colspan="4">No recorded uses.</td></tr>{{end}}
</tbody></table>
<h2>Your requests</h2>
<ul>{{range .PrivacyRequests}}<li>{{.Type}} — {{.Status}}, received {{date .ReceivedAt}}</li>{{end}}</ul>
<h2>Your events</h2>
<table><thead><tr><th scope="col">When</th><th scope="col">Type</th><th scope="col">Details</th></tr></thead><tbody>
`))

var eventTmpl = template.Must(template.New("event").Funcs(template.FuncMap{
	"date": func(t time.Time) string { return t.UTC().Format("2 January 2006, 15:04:05 UTC") },
	"pretty": func(m json.RawMessage) string {
		var v any
		if json.Unmarshal(m, &v) != nil {
			return string(m)
		}
		return indented(v)
	},
}).Parse(`<tr><td>{{date .Timestamp}}</td><td>{{.Type}}</td><td><pre>{{pretty .Message}}</pre>{{if .BatchContext}}<pre>{{pretty .BatchContext}}</pre>{{end}}</td></tr>
`))

// indented is v as indented JSON with <, > and & left as they are: the
// template escapes them for HTML, so a customer reads their own name.
func indented(v any) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	enc.Encode(v)
	return strings.TrimSuffix(b.String(), "\n")
}

// writeHTML streams the readable page.
func (s *Service) writeHTML(ctx context.Context, w *bufio.Writer, pkg *Package, ws int64, keyIDs []int64) error {
	if err := pageTmpl.Execute(w, pkg); err != nil {
		return err
	}
	n := 0
	err := s.eachEvent(ctx, ws, keyIDs, func(e ExportEvent) error {
		n++
		return eventTmpl.Execute(w, e)
	})
	if err != nil {
		return err
	}
	if n == 0 {
		w.WriteString(`<tr><td colspan="3">No events.</td></tr>`)
	}
	_, err = w.WriteString("</tbody></table></body></html>\n")
	return err
}

// RequestView is a request as the API shows it: no subject, no payload.
type RequestView struct {
	RequestID       string          `json:"request_id"`
	Type            string          `json:"type"`
	Status          string          `json:"status"`
	IdentifierType  string          `json:"identifier_type"`
	Regime          string          `json:"regime"`
	ReceivedAt      time.Time       `json:"received_at"`
	AckDueAt        time.Time       `json:"acknowledge_by"`
	DueAt           time.Time       `json:"due_at"`
	ExtendedAt      *time.Time      `json:"extended_at,omitempty"`
	ExtensionReason string          `json:"extension_reason,omitempty"`
	VerifiedBy      string          `json:"verified_by,omitempty"`
	VerifiedAt      *time.Time      `json:"verified_at,omitempty"`
	CompletedAt     *time.Time      `json:"completed_at,omitempty"`
	RejectReason    string          `json:"reject_reason,omitempty"`
	Suppress        bool            `json:"suppress,omitempty"`
	Progress        string          `json:"progress,omitempty"`
	Result          json.RawMessage `json:"result,omitempty"`
	Receipt         string          `json:"receipt,omitempty"`
	Overdue         bool            `json:"overdue"`
	// AckOverdue: still waiting for verification (unacknowledged) past
	// acknowledge_by.
	AckOverdue bool `json:"acknowledgement_overdue"`
}

// View returns the API's view of a request.
func View(r *trustloop.PrivacyRequest) RequestView {
	opt := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		return &t
	}
	v := RequestView{RequestID: r.ID, Type: r.Type, Status: r.Status, IdentifierType: r.IdentifierType, Regime: r.Regime,
		ReceivedAt: r.ReceivedAt, AckDueAt: r.AckDueAt, DueAt: r.DueAt, ExtendedAt: opt(r.ExtendedAt), ExtensionReason: r.ExtensionReason,
		VerifiedBy: r.VerifiedBy, VerifiedAt: opt(r.VerifiedAt), CompletedAt: opt(r.CompletedAt), RejectReason: r.RejectReason,
		Suppress: r.Suppress, Progress: r.Progress, Result: r.Result, Receipt: r.Receipt}
	now := time.Now()
	v.Overdue = r.Open() && now.After(r.DueAt)
	v.AckOverdue = r.Status == trustloop.RequestReceived && now.After(r.AckDueAt)
	return v
}
