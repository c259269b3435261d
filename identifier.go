package trustloop

import "strings"

// Identifier types known to every workspace. Workspaces may configure custom types
// (for example "loyalty_id") beside these.
const (
	IDUserID      = "user_id"
	IDEmail       = "email"
	IDPhone       = "phone"
	IDAnonymousID = "anonymous_id"
	IDDeviceID    = "device_id"
)

// Identifier is one typed identifier of a customer, as matched by identity
// resolution: Value is normalized (see the identity package) before it is compared
// or blind-indexed. It is personal data: it never goes into logs, metrics or errors.
type Identifier struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

// String is "type:value", the form API callers use (`identifier=email:a@b.c`).
func (id Identifier) String() string { return id.Type + ":" + id.Value }

// NormalizeIdentifier puts an identifier value in the one form it is indexed and
// matched in: trimmed, and lower-cased for emails (whose domain is case-insensitive
// and whose local part is in practice). Identity resolution extends this rule.
func NormalizeIdentifier(idType, value string) string {
	value = strings.TrimSpace(value)
	if idType == IDEmail {
		value = strings.ToLower(value)
	}
	return value
}
