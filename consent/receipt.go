package consent

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"
	"time"

	"github.com/trustloop/trustloop"
)

// A consent receipt is a JWS (RFC 7515, compact serialization) signed with the
// workspace's Ed25519 key ("alg":"EdDSA", RFC 8037), so any JOSE library, or the
// few lines of docs/consent.md, verifies it offline with the public key alone.
// Its payload is ReceiptBody.

// ReceiptBody is what a receipt states. It holds no identifier in the clear:
// the subject is the blind index the records are chained under.
type ReceiptBody struct {
	Version       int             `json:"version"`
	ReceiptID     string          `json:"receipt_id"`
	WorkspaceID   int64           `json:"workspace_id"`
	IssuedAt      time.Time       `json:"issued_at"`
	Method        string          `json:"method"`
	NoticeVersion string          `json:"notice_version,omitempty"`
	Jurisdiction  string          `json:"jurisdiction,omitempty"`
	Changes       []ReceiptChange `json:"changes"`
	// Records are the hash-chain links the change appended, one per subject and
	// purpose.
	Records []ReceiptRecord `json:"records"`
	// ExpiresAt is when the earliest given consent in it lapses (absent if none
	// does): after it the receipt no longer shows a valid consent.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// ReceiptChange is one purpose's new state.
type ReceiptChange struct {
	Purpose string `json:"purpose"`
	State   string `json:"state"`
}

// ReceiptRecord is one appended consent record, by its chain position and hash.
type ReceiptRecord struct {
	Subject string `json:"subject"`
	Seq     int64  `json:"seq"`
	Purpose string `json:"purpose"`
	Hash    string `json:"hash"`
}

// ValidReceiptID reports whether id has the shape NewReceiptID gives
// ("rcpt_" and 26 lower-case base32 letters): anything else is no receipt,
// and never reaches the store.
func ValidReceiptID(id string) bool {
	rest, ok := strings.CutPrefix(id, "rcpt_")
	if !ok || len(rest) != 26 {
		return false
	}
	for i := 0; i < len(rest); i++ {
		if c := rest[i]; !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// NewReceiptID returns a random receipt id ("rcpt_" and 26 base32 characters).
func NewReceiptID() string {
	var b [16]byte
	rand.Read(b[:])
	return "rcpt_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// KeyID names a workspace signing key: its public key's SHA-256, shortened.
func KeyID(pub ed25519.PublicKey) string {
	h := sha256.Sum256(pub)
	return "ed25519:" + hex.EncodeToString(h[:8])
}

type jwsHeader struct {
	Alg string `json:"alg"`
	Typ string `json:"typ"`
	Kid string `json:"kid"`
}

const receiptType = "trustloop-consent-receipt+json"

var b64 = base64.RawURLEncoding

// SignReceipt returns the compact JWS of body under key.
func SignReceipt(key ed25519.PrivateKey, body *ReceiptBody) (string, error) {
	return SignDocument(key, receiptType, body)
}

// SignDocument returns the compact JWS (EdDSA) of body's JSON under key, with
// typ in its header: consent receipts, erasure receipts.
func SignDocument(key ed25519.PrivateKey, typ string, body any) (string, error) {
	h, err := json.Marshal(jwsHeader{Alg: "EdDSA", Typ: typ, Kid: KeyID(key.Public().(ed25519.PublicKey))})
	if err != nil {
		return "", err
	}
	p, err := json.Marshal(body)
	if err != nil {
		return "", err
	}
	signing := b64.EncodeToString(h) + "." + b64.EncodeToString(p)
	return signing + "." + b64.EncodeToString(ed25519.Sign(key, []byte(signing))), nil
}

// VerifyDocument checks a compact JWS of type typ against pub and returns its
// payload (EINVALID when forged, changed or of another type or key).
func VerifyDocument(pub ed25519.PublicKey, typ, jws string) ([]byte, error) {
	parts, hb, pb, sig, err := splitJWS(jws)
	if err != nil {
		return nil, err
	}
	var h jwsHeader
	if err := json.Unmarshal(hb, &h); err != nil || h.Alg != "EdDSA" || h.Typ != typ {
		return nil, forged("The document's header is not an EdDSA %s header.", typ)
	}
	if h.Kid != KeyID(pub) {
		return nil, forged("The document was signed with another key (%s) than this workspace's (%s).", h.Kid, KeyID(pub))
	}
	if len(sig) != ed25519.SignatureSize || !ed25519.Verify(pub, []byte(parts[0]+"."+parts[1]), sig) {
		return nil, forged("The document's signature does not verify.")
	}
	return pb, nil
}

func forged(format string, args ...any) *trustloop.Error {
	return trustloop.Errorf(trustloop.EINVALID, format, args...).
		WithHint("The receipt was not issued by this workspace or was changed after issue; ask for a new one.")
}

// VerifyReceipt checks a compact JWS receipt against the workspace's public key
// and returns its body. A receipt whose consent has expired at now is refused
// too (its signature is genuine, but it no longer shows a valid consent).
func VerifyReceipt(pub ed25519.PublicKey, jws string, now time.Time) (*ReceiptBody, error) {
	pb, err := VerifyDocument(pub, receiptType, jws)
	if err != nil {
		return nil, err
	}
	var body ReceiptBody
	dec := json.NewDecoder(bytes.NewReader(pb))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || body.Version != 1 || body.ReceiptID == "" {
		return nil, forged("The receipt's payload is not a version 1 consent receipt.")
	}
	if body.ExpiresAt != nil && now.After(*body.ExpiresAt) {
		return &body, trustloop.Errorf(trustloop.EINVALID, "The receipt is genuine but the consent it shows expired on %s.", body.ExpiresAt.UTC().Format(time.DateOnly)).
			WithHint("Consent lapses after the workspace's consent_ttl_days; the customer must be asked again.")
	}
	return &body, nil
}

// splitJWS splits a compact JWS and decodes its three parts.
func splitJWS(jws string) (parts []string, header, payload, sig []byte, err error) {
	parts = strings.Split(strings.TrimSpace(jws), ".")
	if len(parts) != 3 {
		return nil, nil, nil, nil, forged("A receipt is a compact JWS: three base64url parts separated by dots.")
	}
	header, err1 := b64.DecodeString(parts[0])
	payload, err2 := b64.DecodeString(parts[1])
	sig, err3 := b64.DecodeString(parts[2])
	if err1 != nil || err2 != nil || err3 != nil {
		return nil, nil, nil, nil, forged("The receipt is not valid base64url.")
	}
	return parts, header, payload, sig, nil
}

// ReceiptPayload returns a compact JWS's payload without verifying it (for
// display of a receipt the store issued).
func ReceiptPayload(jws string) (*ReceiptBody, error) {
	_, _, pb, _, err := splitJWS(jws)
	if err != nil {
		return nil, err
	}
	var body ReceiptBody
	if err := json.Unmarshal(pb, &body); err != nil {
		return nil, forged("The receipt's payload is not a consent receipt.")
	}
	return &body, nil
}
