package trustloop

// The default purpose catalog's ids (PRODUCT.md). A workspace's catalog
// (consent.Catalog) starts with them and always keeps them.
const (
	PurposeEssential       = "essential"
	PurposeAnalytics       = "analytics"
	PurposePersonalization = "personalization"
	PurposeMarketing       = "marketing"
	PurposeSharing         = "sharing"
)

// DefaultPurposes lists the default catalog in its display order.
var DefaultPurposes = []string{PurposeEssential, PurposeAnalytics, PurposePersonalization, PurposeMarketing, PurposeSharing}
