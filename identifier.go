package trustloop

import "strings"

// NormalizeIdentifier puts an identifier value in the one form it is indexed and
// matched in: trimmed, and lower-cased for emails (whose domain is case-insensitive
// and whose local part is in practice). Identity resolution extends this rule.
func NormalizeIdentifier(idType, value string) string {
	value = strings.TrimSpace(value)
	if idType == "email" {
		value = strings.ToLower(value)
	}
	return value
}
