package trustloop

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"time"
)

// Consent states (ISO/IEC TS 27560's vocabulary, narrowed to what Trustloop acts
// on). Only given counts as a yes (T1: anything else, or nothing, is a no).
const (
	ConsentGiven     = "given"
	ConsentRefused   = "refused"
	ConsentWithdrawn = "withdrawn"
	ConsentExpired   = "expired"
)

// Consent methods: how a choice reached Trustloop.
const (
	MethodPreferenceCenter = "preference_center"
	MethodBanner           = "banner"
	MethodAPI              = "api"
	MethodGPC              = "gpc"
	MethodTCF              = "tcf"
	MethodImport           = "import"
	// MethodPrivacyRequest: a restriction or objection request changed it.
	MethodPrivacyRequest = "privacy_request"
	// MethodExpiry: the retention sweep marked a given consent past its
	// expiry (it was no already; the record makes it visible).
	MethodExpiry = "expiry"
)

// ConsentMethods lists every method, for validation and documentation.
var ConsentMethods = []string{MethodPreferenceCenter, MethodBanner, MethodAPI, MethodGPC, MethodTCF, MethodImport, MethodPrivacyRequest, MethodExpiry}

// ValidJurisdiction reports whether s is a jurisdiction code as Trustloop
// takes them (ISO 3166 codes such as EU, DE or US-CA): letters, digits and
// '-', 2 to 16 characters. A consent receipt names it, so no free text.
func ValidJurisdiction(s string) bool {
	if len(s) < 2 || len(s) > 16 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// Data categories (PRODUCT.md): what kind of personal data a purpose may use.
const (
	CategoryIdentity     = "identity"
	CategoryContact      = "contact"
	CategoryBehavior     = "behavior"
	CategoryTransactions = "transactions"
	CategoryDevice       = "device"
	CategoryPreferences  = "preferences"
)

// Categories lists every data category.
var Categories = []string{CategoryIdentity, CategoryContact, CategoryBehavior, CategoryTransactions, CategoryDevice, CategoryPreferences}

// ConsentRecord is one change of one subject's consent to one purpose, with the
// ISO/IEC TS 27560 fields. Records of a subject form a hash chain: each holds the
// hash of the one before, so a removed, edited or reordered record breaks it.
//
// Subject is the blind index of the subject's identifier: records never hold an
// identifier in the clear.
type ConsentRecord struct {
	WorkspaceID int64
	Subject     []byte
	// Seq numbers a subject's records from 1, in chain order.
	Seq     int64
	Purpose string
	State   string
	At      time.Time
	// ExpiresAt, when set, is when a given consent lapses (asking again).
	ExpiresAt     time.Time
	Method        string
	NoticeVersion string
	Jurisdiction  string
	// SourceID is the source (channel) the choice came through; 0 for the API.
	SourceID int64
	// Evidence says what carried the choice, without personal data: e.g.
	// "message:<hex keyed hash of the messageId>" or "api_key:12".
	Evidence  string
	ReceiptID string
	PrevHash  []byte
	Hash      []byte
	// Pseudonym names the subject in the audit log: random, set by the store
	// when it appends (one per subject), and deleted with the subject by an
	// erasure, after which no entry links to anyone. Not part of the hash.
	Pseudonym string
}

// NewPseudonym returns a random subject pseudonym (32 lower-case hex digits).
func NewPseudonym() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ConsentRecordHash is the chain hash of r after prev: SHA-256 over a
// length-prefixed encoding of every field but Seq's position and Hash itself.
// Stores compute it when they append, so the chain is the store's truth.
func ConsentRecordHash(prev []byte, r *ConsentRecord) []byte {
	h := sha256.New()
	var n [8]byte
	put := func(b []byte) {
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	num := func(v int64) {
		binary.BigEndian.PutUint64(n[:], uint64(v))
		h.Write(n[:])
	}
	h.Write([]byte("trustloop/consent-record/v1"))
	put(prev)
	num(r.WorkspaceID)
	put(r.Subject)
	num(r.Seq)
	put([]byte(r.Purpose))
	put([]byte(r.State))
	num(r.At.UnixMilli())
	if r.ExpiresAt.IsZero() {
		num(0)
	} else {
		num(r.ExpiresAt.UnixMilli())
	}
	put([]byte(r.Method))
	put([]byte(r.NoticeVersion))
	put([]byte(r.Jurisdiction))
	num(r.SourceID)
	put([]byte(r.Evidence))
	put([]byte(r.ReceiptID))
	return h.Sum(nil)
}

// ConsentReceipt is a signed statement of one consent change, handed to the
// customer. Body is the signed JSON document (see docs/consent.md); the store
// keeps it as issued.
type ConsentReceipt struct {
	ID          string
	WorkspaceID int64
	Subject     []byte
	At          time.Time
	Body        []byte
}

// ConsentStore keeps consent records and receipts.
type ConsentStore interface {
	// AppendConsent appends records to their subjects' chains in one
	// transaction: it numbers them (Seq), links each to the previous record of
	// its subject and fills in PrevHash and Hash (ConsentRecordHash). When sign is
	// not nil it is called inside the transaction with the completed records and
	// its receipt is stored with them, so a receipt exists exactly when its
	// records do.
	AppendConsent(ctx context.Context, recs []ConsentRecord, sign func([]ConsentRecord) (*ConsentReceipt, error)) error
	// ConsentRecords returns a subject's records in chain order.
	ConsentRecords(ctx context.Context, workspaceID int64, subject []byte) ([]ConsentRecord, error)
	// FindConsentReceipt returns a receipt; ENOTFOUND if there is none in the
	// workspace.
	FindConsentReceipt(ctx context.Context, workspaceID int64, id string) (*ConsentReceipt, error)
	// ConsentPurposeUsed reports whether any consent record of the workspace
	// names the purpose (such a purpose stays in the catalog).
	ConsentPurposeUsed(ctx context.Context, workspaceID int64, purpose string) (bool, error)
}
