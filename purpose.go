package trustloop

// The default purpose catalog's ids (PRODUCT.md). Every read of personal data
// names one of them. The consent issue makes the catalog per workspace and
// editable; until then these are the purposes every workspace has.
const (
	PurposeEssential       = "essential"
	PurposeAnalytics       = "analytics"
	PurposePersonalization = "personalization"
	PurposeMarketing       = "marketing"
	PurposeSharing         = "sharing"
)

// DefaultPurposes lists the default catalog in its display order.
var DefaultPurposes = []string{PurposeEssential, PurposeAnalytics, PurposePersonalization, PurposeMarketing, PurposeSharing}

// IsDefaultPurpose reports whether id is in the default catalog.
func IsDefaultPurpose(id string) bool {
	for _, p := range DefaultPurposes {
		if p == id {
			return true
		}
	}
	return false
}
