package consent

import (
	"regexp"
	"slices"
	"strings"
	"unicode"

	"github.com/trustloop/trustloop"
)

// Regimes: what a purpose with a consent legal basis does before the subject has
// chosen. Opt-in (GDPR-style) means no; opt-out (CCPA-style) means yes until the
// subject says no.
const (
	RegimeOptIn  = "opt_in"
	RegimeOptOut = "opt_out"
)

// Legal bases of a purpose.
const (
	BasisConsent  = "consent"
	BasisContract = "contract"
)

// SettingName is the workspace setting that holds the catalog; the setting's
// version is the catalog's version.
const SettingName = "purposes"

// MaxPurposes bounds a catalog: decisions are bit sets of one machine word.
const MaxPurposes = 32

// Catalog is a workspace's purpose catalog as stored and served.
type Catalog struct {
	// Version counts changes; it is the setting's version (0: the defaults, never
	// edited). It is set on read and ignored on write.
	Version int64 `json:"version"`
	// Regime is the workspace's default regime.
	Regime string `json:"regime"`
	// Jurisdictions override the regime for events and choices that name a
	// jurisdiction (ISO 3166 codes, e.g. "US-CA" or "DE"; compared case-blind).
	Jurisdictions map[string]string `json:"jurisdictions,omitempty"`
	// ConsentTTLDays is how long a given consent lasts before it expires and must
	// be asked again (0: it does not expire). Default 395 (13 months).
	ConsentTTLDays int       `json:"consent_ttl_days"`
	Purposes       []Purpose `json:"purposes"`
}

// Purpose is one entry of the catalog.
type Purpose struct {
	ID string `json:"id"`
	// Title and Description are shown to the customer: what the purpose gives
	// them, in plain words.
	Title       string `json:"title"`
	Description string `json:"description"`
	// Texts are Title and Description in other languages, by language code
	// ("de"): the preference center shows the reader's, else these.
	Texts      map[string]PurposeText `json:"texts,omitempty"`
	LegalBasis string                 `json:"legal_basis"`
	// DefaultAllowed says, per regime, whether the purpose is allowed before the
	// subject has chosen. Ignored for the contract basis (always allowed).
	DefaultAllowed map[string]bool `json:"default_allowed"`
	// Categories are the data categories the purpose may use.
	Categories []string `json:"categories"`
	// RetentionDays is how long data collected for the purpose is kept (0: as
	// long as the subject allows it).
	RetentionDays int `json:"retention_days"`
	// Aliases are the consent management platform's names for this purpose in
	// context.consent.categoryPreferences (compared case-blind).
	Aliases []string `json:"aliases"`
	// TCFPurposes are the IAB TCF purposes (1–11) that must all have consent,
	// with purpose 1, for a TC string to allow this purpose. Empty: a TC string
	// never allows it.
	TCFPurposes []int `json:"tcf_purposes"`
	// DPV names the W3C Data Privacy Vocabulary purposes this one corresponds to.
	DPV []string `json:"dpv"`
	// GPCOptOut: a Sec-GPC: 1 signal opts the subject out of this purpose (sale,
	// sharing and targeted advertising under CCPA/CPRA).
	GPCOptOut bool `json:"gpc_opt_out"`
}

// PurposeText is a purpose's title and description in one language.
type PurposeText struct {
	Title       string `json:"title"`
	Description string `json:"description"`
}

// In returns the purpose's title and description in language lang, or its
// own when it has none in that language.
func (p *Purpose) In(lang string) PurposeText {
	if t, ok := p.Texts[lang]; ok {
		return t
	}
	return PurposeText{Title: p.Title, Description: p.Description}
}

// langCode is a language code a catalog's texts may be keyed by.
var langCode = regexp.MustCompile(`^[a-z]{2,3}(-[a-z0-9]{2,8})?$`)

// DefaultCatalog returns the catalog of PRODUCT.md in the opt-in regime.
func DefaultCatalog() *Catalog {
	both := func(optIn, optOut bool) map[string]bool {
		return map[string]bool{RegimeOptIn: optIn, RegimeOptOut: optOut}
	}
	return &Catalog{
		Regime:         RegimeOptIn,
		ConsentTTLDays: 395,
		Jurisdictions:  map[string]string{},
		Purposes: []Purpose{
			{ID: trustloop.PurposeEssential, Title: "Essential",
				Description: "What you asked us for: your account, your orders, delivery and support. This is needed to serve you and cannot be switched off.",
				Texts:       map[string]PurposeText{"de": {Title: "Notwendig", Description: "Was Sie bei uns bestellt haben: Ihr Kundenkonto, Ihre Bestellungen, Lieferung und Kundendienst. Das ist nötig, um Sie zu bedienen, und lässt sich nicht ausschalten."}},
				LegalBasis:  BasisContract, DefaultAllowed: both(true, true),
				Categories: []string{trustloop.CategoryIdentity, trustloop.CategoryContact, trustloop.CategoryTransactions, trustloop.CategoryPreferences},
				Aliases:    []string{"Essential", "Necessary", "Strictly Necessary", "C0001"},
				DPV:        []string{"dpv:ServiceProvision", "dpv:LegalCompliance"}},
			{ID: trustloop.PurposeAnalytics, Title: "Analytics",
				Description: "We learn which pages and products work and which do not, so we can make the shop better for you.",
				Texts:       map[string]PurposeText{"de": {Title: "Analyse", Description: "Wir lernen, welche Seiten und Produkte gut ankommen und welche nicht, damit wir den Shop für Sie verbessern können."}},
				LegalBasis:  BasisConsent, DefaultAllowed: both(false, true), RetentionDays: 395,
				Categories:  []string{trustloop.CategoryIdentity, trustloop.CategoryBehavior, trustloop.CategoryTransactions, trustloop.CategoryDevice},
				Aliases:     []string{"Analytics", "Performance", "Statistics", "marketingAndAnalytics", "C0002"},
				TCFPurposes: []int{1, 8, 9}, DPV: []string{"dpv:ServiceOptimisation"}},
			{ID: trustloop.PurposePersonalization, Title: "Personalization",
				Description: "We suggest products you are likely to like and remember what you were looking at, on every device.",
				Texts:       map[string]PurposeText{"de": {Title: "Personalisierung", Description: "Wir schlagen Ihnen Produkte vor, die Ihnen gefallen dürften, und merken uns auf jedem Gerät, was Sie sich angesehen haben."}},
				LegalBasis:  BasisConsent, DefaultAllowed: both(false, true), RetentionDays: 395,
				Categories:  []string{trustloop.CategoryIdentity, trustloop.CategoryBehavior, trustloop.CategoryTransactions, trustloop.CategoryPreferences},
				Aliases:     []string{"Personalization", "Personalisation", "Functional", "Functional Cookies", "C0003"},
				TCFPurposes: []int{1, 5, 6}, DPV: []string{"dpv:ServicePersonalisation"}},
			{ID: trustloop.PurposeMarketing, Title: "Marketing",
				Description: "We send you offers and show you ads that fit what you like, instead of random ones.",
				Texts:       map[string]PurposeText{"de": {Title: "Werbung", Description: "Wir schicken Ihnen Angebote und zeigen Ihnen Anzeigen, die zu Ihnen passen, statt beliebiger."}},
				LegalBasis:  BasisConsent, DefaultAllowed: both(false, true), RetentionDays: 395, GPCOptOut: true,
				Categories:  []string{trustloop.CategoryIdentity, trustloop.CategoryContact, trustloop.CategoryBehavior, trustloop.CategoryTransactions},
				Aliases:     []string{"Marketing", "Advertising", "Targeting", "C0004"},
				TCFPurposes: []int{1, 3, 4, 7}, DPV: []string{"dpv:Marketing", "dpv:PersonalisedAdvertising"}},
			{ID: trustloop.PurposeSharing, Title: "Sharing with partners",
				Description: "We share data about you with selected partners, who may use it for their own offers. Off unless you switch it on.",
				Texts:       map[string]PurposeText{"de": {Title: "Weitergabe an Partner", Description: "Wir geben Daten über Sie an ausgewählte Partner weiter, die sie für eigene Angebote nutzen können. Aus, solange Sie es nicht einschalten."}},
				LegalBasis:  BasisConsent, DefaultAllowed: both(false, true), RetentionDays: 395, GPCOptOut: true,
				Categories: []string{trustloop.CategoryIdentity, trustloop.CategoryContact, trustloop.CategoryBehavior, trustloop.CategoryTransactions},
				Aliases:    []string{"Sharing", "Sale of Personal Data", "Social Media", "C0005"},
				DPV:        []string{"dpv:SellDataToThirdParties", "dpv:SharingWithThirdParties"}},
		},
	}
}

var (
	purposeID = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)
)

func invalid(format string, args ...any) *trustloop.Error {
	return trustloop.Errorf(trustloop.EINVALID, format, args...).
		WithHint("Fix the catalog and send it again; GET /v1/purposes shows the current one.")
}

// Validate checks a catalog as an editor sent it. prev is the catalog it
// replaces (nil for none): a purpose of the defaults, or one still named by an
// API key or a stored consent (inUse), may not be removed, because data and
// access depend on it.
func Validate(c *Catalog, prev *Catalog, inUse func(purpose string) (bool, error)) error {
	if c.Regime != RegimeOptIn && c.Regime != RegimeOptOut {
		return invalid("regime must be %q or %q.", RegimeOptIn, RegimeOptOut)
	}
	folded := map[string]bool{}
	for j := range c.Jurisdictions {
		if folded[strings.ToLower(j)] {
			return invalid("Jurisdiction %q appears twice (codes are compared case-blind).", j)
		}
		folded[strings.ToLower(j)] = true
	}
	for j, r := range c.Jurisdictions {
		if !trustloop.ValidJurisdiction(j) {
			return invalid("Jurisdiction codes are ISO 3166 codes: letters, digits and '-', 2–16 characters (e.g. US-CA).")
		}
		if r != RegimeOptIn && r != RegimeOptOut {
			return invalid("The regime of jurisdiction %q must be %q or %q.", j, RegimeOptIn, RegimeOptOut)
		}
	}
	if c.ConsentTTLDays < 0 || c.ConsentTTLDays > 3650 {
		return invalid("consent_ttl_days must be from 0 (never expires) to 3650.")
	}
	if len(c.Purposes) == 0 || len(c.Purposes) > MaxPurposes {
		return invalid("A catalog holds 1 to %d purposes.", MaxPurposes)
	}
	ids := map[string]bool{}
	// An alias may not be another purpose's id either: a banner's name for one
	// purpose must never grant another.
	aliases := map[string]string{}
	for _, p := range c.Purposes {
		aliases[strings.ToLower(p.ID)] = p.ID
	}
	for i := range c.Purposes {
		p := &c.Purposes[i]
		if !purposeID.MatchString(p.ID) {
			return invalid("Purpose %d: id must be lowercase letters, digits and _ (1–32, starting with a letter).", i)
		}
		if ids[p.ID] {
			return invalid("Purpose %q appears twice.", p.ID)
		}
		ids[p.ID] = true
		if strings.TrimSpace(p.Title) == "" || strings.TrimSpace(p.Description) == "" {
			return invalid("Purpose %q needs a title and a plain-language description for customers.", p.ID)
		}
		if len(p.Title) > 200 || len(p.Description) > 2000 {
			return invalid("Purpose %q: title up to 200 and description up to 2,000 characters.", p.ID)
		}
		if badText(p.Title, false) || badText(p.Description, true) {
			return invalid("Purpose %q: its title or description holds control characters (a description may break lines).", p.ID)
		}
		for lang, t := range p.Texts {
			switch {
			case badText(t.Title, false) || badText(t.Description, true):
				return invalid("Purpose %q: its %s title or description holds control characters.", p.ID, lang)
			case !langCode.MatchString(lang):
				return invalid("Purpose %q: texts are keyed by a lower-case language code such as de or pt-br.", p.ID)
			case strings.TrimSpace(t.Title) == "" || strings.TrimSpace(t.Description) == "":
				return invalid("Purpose %q: its %s text needs a title and a description.", p.ID, lang)
			case len(t.Title) > 200 || len(t.Description) > 2000:
				return invalid("Purpose %q: its %s title up to 200 and description up to 2,000 characters.", p.ID, lang)
			}
		}
		switch p.LegalBasis {
		case BasisConsent:
		case BasisContract:
			if p.ID != trustloop.PurposeEssential {
				return invalid("Only %q may rest on the contract; purpose %q needs consent.", trustloop.PurposeEssential, p.ID)
			}
		default:
			return invalid("Purpose %q: legal_basis must be %q or %q.", p.ID, BasisConsent, BasisContract)
		}
		if p.ID == trustloop.PurposeEssential && p.LegalBasis != BasisContract {
			return invalid("%q rests on the contract and cannot be switched off.", trustloop.PurposeEssential)
		}
		for r := range p.DefaultAllowed {
			if r != RegimeOptIn && r != RegimeOptOut {
				return invalid("Purpose %q: default_allowed names unknown regime %q.", p.ID, r)
			}
		}
		if p.LegalBasis == BasisConsent && p.DefaultAllowed[RegimeOptIn] {
			return invalid("Purpose %q: under opt-in nothing but the contract is allowed without consent.", p.ID)
		}
		if len(p.Categories) == 0 {
			return invalid("Purpose %q must name the data categories it may use.", p.ID)
		}
		for _, cat := range p.Categories {
			if !slices.Contains(trustloop.Categories, cat) {
				return invalid("Purpose %q: unknown data category %q (categories: %s).", p.ID, cat, strings.Join(trustloop.Categories, ", "))
			}
		}
		if p.RetentionDays < 0 || p.RetentionDays > 36500 {
			return invalid("Purpose %q: retention_days must be from 0 to 36500.", p.ID)
		}
		for _, a := range p.Aliases {
			k := strings.ToLower(strings.TrimSpace(a))
			if k == "" || len(a) > 100 {
				return invalid("Purpose %q: aliases must be 1–100 characters.", p.ID)
			}
			if other, ok := aliases[k]; ok && other != p.ID {
				return invalid("Alias %q names both %q and %q.", a, other, p.ID)
			} else if ok && !strings.EqualFold(a, p.ID) {
				return invalid("Alias %q appears twice for %q.", a, p.ID)
			}
			aliases[k] = p.ID
		}
		for _, t := range p.TCFPurposes {
			if t < 1 || t > 11 {
				return invalid("Purpose %q: TCF purposes are numbered 1 to 11.", p.ID)
			}
		}
		if len(p.TCFPurposes) > 0 && !slices.Contains(p.TCFPurposes, 1) {
			return invalid("Purpose %q: a TCF mapping must include TCF purpose 1 (storage and access).", p.ID)
		}
		if p.ID == trustloop.PurposeSharing && len(p.TCFPurposes) > 0 {
			return invalid("%q is never granted by a TC string alone; leave its tcf_purposes empty.", trustloop.PurposeSharing)
		}
	}
	for _, d := range trustloop.DefaultPurposes {
		if !ids[d] {
			return invalid("The default purpose %q cannot be removed: keys, events and consent depend on it.", d)
		}
	}
	if prev != nil {
		for _, p := range prev.Purposes {
			if ids[p.ID] {
				continue
			}
			if inUse != nil {
				used, err := inUse(p.ID)
				if err != nil {
					return err
				}
				if used {
					return trustloop.Errorf(trustloop.ECONFLICT, "Purpose %q cannot be removed: stored consent or an API key depends on it.", p.ID).
						WithHint("Revoke the keys that read for it first; consent records are kept as evidence, so such a purpose stays.")
				}
			}
		}
	}
	return nil
}

// DecodeCatalog parses a catalog sent by an editor, refusing unknown fields.
func DecodeCatalog(b []byte) (*Catalog, error) {
	var c Catalog
	if err := trustloop.DecodeJSON(b, &c); err != nil {
		return nil, invalid("The catalog is not valid JSON of the documented shape: %v.", err)
	}
	return &c, nil
}

// badText reports whether a customer-facing text holds control characters
// (newlines allowed where lines may break): a customer sees it as it is.
func badText(t string, lines bool) bool {
	for _, r := range t {
		if unicode.IsControl(r) && !(lines && (r == '\n' || r == '\r')) {
			return true
		}
	}
	return false
}
