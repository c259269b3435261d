package tcf

import (
	"errors"
	"iter"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Sentinel errors. Every error Decode returns is a *DecodeError that wraps
// exactly one of them, so callers can tell "this is not a TC string we
// read" (ErrUnsupportedVersion, e.g. a TCF v1.1 string) from "this string is
// broken" (ErrMalformed) with errors.Is. Either way there is no consent.
var (
	ErrMalformed          = errors.New("malformed TC string")
	ErrUnsupportedVersion = errors.New("unsupported TC string version")
)

// DecodeError says where a TC string failed to decode. It never contains
// the input or any part of it.
type DecodeError struct {
	// Segment is "core", "disclosed vendors", "allowed vendors",
	// "publisher TC", or "segment N" (1-based) when the failure is in
	// telling which segment it is. Empty when the input as a whole failed.
	Segment string
	// Field is the spec's field name, prefixed by its section where a name
	// repeats across sections, e.g. "VendorConsents.NumEntries".
	Field string
	// Reason says what was wrong with the field.
	Reason string
	// Err is ErrMalformed or ErrUnsupportedVersion.
	Err error
}

func (e *DecodeError) Error() string {
	var b strings.Builder
	b.WriteString("tcf: ")
	if e.Segment != "" {
		b.WriteString(e.Segment)
		b.WriteString(" segment: ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Reason)
	return b.String()
}

func (e *DecodeError) Unwrap() error { return e.Err }

// TCString is a decoded TC string. Field names follow the TCF v2 spec's
// names ("Consent string and vendor list formats v2"). Purpose, special
// feature and custom purpose numbers are 1-based, as in the spec.
type TCString struct {
	// Version is the encoding format version; Decode only returns 2.
	Version int
	// Created and LastUpdated are the spec's decisecond timestamps, in UTC.
	// Since v2.2 CMPs write the same day-level value into both.
	Created     time.Time
	LastUpdated time.Time
	// CmpID is the registered ID of the CMP that last updated the string,
	// CmpVersion that CMP's own version number.
	CmpID      int
	CmpVersion int
	// ConsentScreen is the CMP's internal number of the screen where the
	// choice was made.
	ConsentScreen int
	// ConsentLanguage is the two-letter ISO 639-1 code, upper case, of the
	// language the CMP UI was shown in.
	ConsentLanguage string
	// VendorListVersion is the version of the Global Vendor List the CMP
	// used.
	VendorListVersion int
	// PolicyVersion is TcfPolicyVersion: 4 for TCF v2.2, 5 for v2.3.
	// Strings older than the caller accepts are the caller's to refuse.
	PolicyVersion int
	// IsServiceSpecific is true when the signals were stored for this
	// service only rather than in the (now retired) global scope.
	IsServiceSpecific bool
	// UseNonStandardTexts is true when the CMP showed publisher-modified
	// stack descriptions or illustrations.
	UseNonStandardTexts bool
	// SpecialFeatureOptIns has one bit per special feature (12 bits).
	SpecialFeatureOptIns Bits
	// PurposesConsent has the user's consent per purpose (24 bits).
	PurposesConsent Bits
	// PurposesLITransparency has, per purpose (24 bits), whether
	// legitimate-interest transparency was established and the user did
	// not object.
	PurposesLITransparency Bits
	// PurposeOneTreatment is true when purpose 1 was not disclosed at all
	// because the publisher's jurisdiction does not require it.
	PurposeOneTreatment bool
	// PublisherCC is the ISO 3166-1 alpha-2 country code, upper case, of
	// the publisher's legislation of reference.
	PublisherCC string
	// VendorConsents and VendorLegitimateInterests are the vendor consent
	// and vendor legitimate-interest sections.
	VendorConsents            VendorSet
	VendorLegitimateInterests VendorSet
	// PublisherRestrictions are the publisher's restrictions, in string
	// order. The same purpose and type may appear more than once (some
	// CMPs write that); use RestrictionFor to ask about one vendor.
	PublisherRestrictions []PublisherRestriction

	// HasDisclosedVendors is true when the string carries a
	// DisclosedVendors segment (type 1); DisclosedVendors is then the
	// vendors the CMP disclosed to the user. TCF v2.3 makes the segment
	// mandatory; whether its absence is acceptable is the caller's call.
	HasDisclosedVendors bool
	DisclosedVendors    VendorSet
	// HasAllowedVendors is true when the string carries the legacy
	// AllowedVendors segment (type 2, removed from the spec in v2.2).
	HasAllowedVendors bool
	AllowedVendors    VendorSet

	// HasPublisherSegment is true when the string carries a Publisher TC
	// segment (type 3). The Pub* and Custom* fields are zero otherwise.
	HasPublisherSegment bool
	// PubPurposesConsent and PubPurposesLITransparency are the publisher's
	// own consent and legitimate-interest signals per purpose (24 bits
	// each).
	PubPurposesConsent        Bits
	PubPurposesLITransparency Bits
	// NumCustomPurposes is how many custom purposes the publisher defined
	// (0-63); CustomPurposesConsent and CustomPurposesLITransparency have
	// that many bits.
	NumCustomPurposes            int
	CustomPurposesConsent        Bits
	CustomPurposesLITransparency Bits
}

// PurposeConsent reports whether the user consented to TCF purpose n.
func (t *TCString) PurposeConsent(n int) bool { return t.PurposesConsent.Has(n) }

// PurposeLITransparency reports whether legitimate interest was
// established for TCF purpose n and not objected to.
func (t *TCString) PurposeLITransparency(n int) bool { return t.PurposesLITransparency.Has(n) }

// SpecialFeatureOptIn reports whether the user opted in to special feature n.
func (t *TCString) SpecialFeatureOptIn(n int) bool { return t.SpecialFeatureOptIns.Has(n) }

// VendorConsent reports whether the user consented to vendor id.
func (t *TCString) VendorConsent(id int) bool { return t.VendorConsents.Has(id) }

// VendorLegitimateInterest reports whether vendor id's legitimate interest
// was established and not objected to.
func (t *TCString) VendorLegitimateInterest(id int) bool {
	return t.VendorLegitimateInterests.Has(id)
}

// PublisherPurposeConsent reports whether the Publisher TC segment records
// consent for TCF purpose n. False when there is no such segment.
func (t *TCString) PublisherPurposeConsent(n int) bool { return t.PubPurposesConsent.Has(n) }

// PublisherPurposeLITransparency reports whether the Publisher TC segment
// records legitimate interest for TCF purpose n.
func (t *TCString) PublisherPurposeLITransparency(n int) bool {
	return t.PubPurposesLITransparency.Has(n)
}

// CustomPurposeConsent reports whether the user consented to the
// publisher's custom purpose n.
func (t *TCString) CustomPurposeConsent(n int) bool { return t.CustomPurposesConsent.Has(n) }

// CustomPurposeLITransparency reports whether legitimate interest was
// established for the publisher's custom purpose n.
func (t *TCString) CustomPurposeLITransparency(n int) bool {
	return t.CustomPurposesLITransparency.Has(n)
}

// RestrictionFor reports the publisher's restriction on vendorID for
// purposeID, if any. When the string restricts the pair more than once, the
// lowest type wins, NotAllowed first, as in the official IAB library: a
// string that both forbids and conditions a purpose forbids it.
func (t *TCString) RestrictionFor(vendorID, purposeID int) (RestrictionType, bool) {
	var (
		found bool
		typ   RestrictionType
	)
	for i := range t.PublisherRestrictions {
		r := &t.PublisherRestrictions[i]
		if r.PurposeID != purposeID || !r.Vendors.Has(vendorID) {
			continue
		}
		if !found || r.Type < typ {
			typ, found = r.Type, true
		}
	}
	return typ, found
}

// RestrictionType is a publisher restriction's type.
type RestrictionType uint8

// Restriction types as the spec numbers them. The spec leaves 3 undefined;
// Decode rejects it.
const (
	// NotAllowed: the vendor may not process for the purpose at all.
	NotAllowed RestrictionType = 0
	// RequireConsent: a flexible vendor must use consent, not legitimate
	// interest.
	RequireConsent RestrictionType = 1
	// RequireLegitimateInterest: a flexible vendor must use legitimate
	// interest, not consent.
	RequireLegitimateInterest RestrictionType = 2
)

func (r RestrictionType) String() string {
	switch r {
	case NotAllowed:
		return "not allowed"
	case RequireConsent:
		return "require consent"
	case RequireLegitimateInterest:
		return "require legitimate interest"
	}
	return "restriction type " + strconv.Itoa(int(r))
}

// PublisherRestriction is one PubRestrictionEntry: the publisher restricts
// Vendors for the purpose PurposeID.
type PublisherRestriction struct {
	PurposeID int
	Type      RestrictionType
	// Vendors is always range encoded; MaxVendorID is its highest id.
	Vendors VendorSet
}

// Bits is a fixed-width field of 1-based flags: purposes (24 bits),
// special features (12) or custom purposes (up to 63). Bit n-1 holds flag
// n, so the zero value has no flag set.
type Bits struct {
	set   uint64
	width uint8
}

// Has reports whether flag n is set. Out-of-range n is simply not set.
func (b Bits) Has(n int) bool {
	return n >= 1 && n <= int(b.width) && b.set>>(n-1)&1 == 1
}

// Width is the number of flags the field carries.
func (b Bits) Width() int { return int(b.width) }

// Len is the number of flags set.
func (b Bits) Len() int { return bits.OnesCount64(b.set) }

// IDs lists the set flags in ascending order; nil when none is set.
func (b Bits) IDs() []int {
	if b.set == 0 {
		return nil
	}
	out := make([]int, 0, bits.OnesCount64(b.set))
	for v := b.set; v != 0; v &= v - 1 {
		out = append(out, bits.TrailingZeros64(v)+1)
	}
	return out
}

// VendorSet is a set of vendor ids (1-65535) decoded from a vendor section.
// It keeps the section's own shape, so its size is bounded by the bits the
// string spent on it: a bitfield section becomes a bitset of MaxVendorId
// bits, a range section a sorted list of disjoint ranges. The zero value is
// the empty set.
type VendorSet struct {
	maxID        int
	rangeEncoded bool
	// bitset holds vendor id i at bit (i-1)%64 of word (i-1)/64; set only
	// for bitfield sections.
	bitset []uint64
	// ranges is sorted, disjoint and non-adjacent; set only for range
	// sections.
	ranges []idRange
}

// idRange is an inclusive range of vendor ids; uint16 because the spec's
// vendor ids are 16 bits, which keeps a range at four bytes.
type idRange struct{ lo, hi uint16 }

// Has reports whether id is in the set.
func (v VendorSet) Has(id int) bool {
	if id < 1 || id > v.maxID {
		return false
	}
	if !v.rangeEncoded {
		i := id - 1
		return v.bitset[i>>6]>>(i&63)&1 == 1
	}
	// The first range that ends at or after id is the only one that can
	// hold it.
	i, _ := slices.BinarySearchFunc(v.ranges, id, func(r idRange, id int) int { return int(r.hi) - id })
	return i < len(v.ranges) && int(v.ranges[i].lo) <= id
}

// Len is the number of vendor ids in the set.
func (v VendorSet) Len() int {
	n := 0
	for _, w := range v.bitset {
		n += bits.OnesCount64(w)
	}
	for _, r := range v.ranges {
		n += int(r.hi) - int(r.lo) + 1
	}
	return n
}

// All yields the vendor ids in ascending order.
func (v VendorSet) All() iter.Seq[int] {
	return func(yield func(int) bool) {
		for wi, w := range v.bitset {
			for ; w != 0; w &= w - 1 {
				if !yield(wi*64 + bits.TrailingZeros64(w) + 1) {
					return
				}
			}
		}
		for _, r := range v.ranges {
			for id := int(r.lo); id <= int(r.hi); id++ {
				if !yield(id) {
					return
				}
			}
		}
	}
}

// IDs lists the vendor ids in ascending order; nil when the set is empty.
// A range section can name tens of thousands of ids in a few bytes; prefer
// Has or All where the list itself is not needed.
func (v VendorSet) IDs() []int {
	n := v.Len()
	if n == 0 {
		return nil
	}
	out := make([]int, 0, n)
	for id := range v.All() {
		out = append(out, id)
	}
	return out
}

// MaxVendorID is the section's MaxVendorId: no id above it is in the set.
func (v VendorSet) MaxVendorID() int { return v.maxID }

// RangeEncoded reports whether the section used range encoding rather
// than a bitfield.
func (v VendorSet) RangeEncoded() bool { return v.rangeEncoded }

// Segment types, the first three bits of every segment but the core one.
// The core segment's first six bits are the version, 2, whose first three
// bits read as 0.
const (
	segCore             = 0
	segDisclosedVendors = 1
	segAllowedVendors   = 2
	segPublisherTC      = 3
)

var segNames = [...]string{
	segCore:             "core",
	segDisclosedVendors: "disclosed vendors",
	segAllowedVendors:   "allowed vendors",
	segPublisherTC:      "publisher TC",
}

// Decode decodes a TC string: a core segment, then optionally
// DisclosedVendors, AllowedVendors and Publisher TC segments in any order,
// joined by '.'. Each segment is base64url without padding; up to two
// trailing '=' per segment are tolerated because some encoders add them,
// nothing else (no '+', '/', whitespace). Bits after a segment's last field
// are padding and ignored, as the spec's encoders pad to whole characters.
//
// On error the result is nil: see the package comment for what is rejected
// and why.
func Decode(s string) (*TCString, error) {
	if s == "" {
		return nil, &DecodeError{Field: "input", Reason: "empty", Err: ErrMalformed}
	}
	t := &TCString{}
	var seen [4]bool
	rest := s
	for n := 1; ; n++ {
		seg, tail, more := strings.Cut(rest, ".")
		r := reader{segN: n}
		if r.init(seg); r.err != nil {
			return nil, r.err
		}
		if n == 1 {
			// The core segment has no segment type: its first field is
			// the version, which must come first.
			r.seg = segNames[segCore]
			decodeCore(&r, t)
		} else {
			typ := int(r.read("SegmentType", 3))
			switch {
			case typ == segCore:
				r.fail("SegmentType", "a second core segment", ErrMalformed)
			case typ > segPublisherTC:
				r.fail("SegmentType", "unknown segment type "+strconv.Itoa(typ), ErrMalformed)
			case seen[typ]:
				r.fail("SegmentType", "the "+segNames[typ]+" segment appears twice", ErrMalformed)
			default:
				seen[typ] = true
				r.seg = segNames[typ]
				switch typ {
				case segDisclosedVendors:
					t.HasDisclosedVendors = true
					t.DisclosedVendors = r.vendorSection("DisclosedVendors")
				case segAllowedVendors:
					t.HasAllowedVendors = true
					t.AllowedVendors = r.vendorSection("AllowedVendors")
				case segPublisherTC:
					decodePublisherTC(&r, t)
				}
			}
		}
		if r.err != nil {
			return nil, r.err
		}
		if !more {
			return t, nil
		}
		rest = tail
	}
}

func decodeCore(r *reader, t *TCString) {
	version := r.read("Version", 6)
	switch {
	case r.err != nil:
		return
	case version>>3 >= segDisclosedVendors && version>>3 <= segPublisherTC:
		// Not a version at all: the string starts with another segment,
		// whose type sits in the top three bits.
		r.fail("Version", "the string starts with a "+segNames[version>>3]+" segment, not the core segment", ErrMalformed)
		return
	case version != 2:
		r.fail("Version", "version "+strconv.FormatUint(version, 10)+" is not supported, only 2", ErrUnsupportedVersion)
		return
	}
	t.Version = 2
	t.Created = r.deciseconds("Created")
	t.LastUpdated = r.deciseconds("LastUpdated")
	t.CmpID = int(r.read("CmpId", 12))
	if r.err == nil && t.CmpID < 2 {
		// The official library refuses these on decode too: CMP ids 0 and
		// 1 were never assigned, so the string was not written by a CMP.
		r.fail("CmpId", "must be at least 2", ErrMalformed)
	}
	t.CmpVersion = int(r.read("CmpVersion", 12))
	t.ConsentScreen = int(r.read("ConsentScreen", 6))
	t.ConsentLanguage = r.letters("ConsentLanguage")
	t.VendorListVersion = int(r.read("VendorListVersion", 12))
	t.PolicyVersion = int(r.read("TcfPolicyVersion", 6))
	t.IsServiceSpecific = r.read("IsServiceSpecific", 1) == 1
	t.UseNonStandardTexts = r.read("UseNonStandardTexts", 1) == 1
	t.SpecialFeatureOptIns = r.flags("SpecialFeatureOptIns", 12)
	t.PurposesConsent = r.flags("PurposesConsent", 24)
	t.PurposesLITransparency = r.flags("PurposesLITransparency", 24)
	t.PurposeOneTreatment = r.read("PurposeOneTreatment", 1) == 1
	t.PublisherCC = r.letters("PublisherCC")
	t.VendorConsents = r.vendorSection("VendorConsents")
	t.VendorLegitimateInterests = r.vendorSection("VendorLegitimateInterests")
	t.PublisherRestrictions = r.publisherRestrictions()
}

func decodePublisherTC(r *reader, t *TCString) {
	t.HasPublisherSegment = true
	t.PubPurposesConsent = r.flags("PubPurposesConsent", 24)
	t.PubPurposesLITransparency = r.flags("PubPurposesLITransparency", 24)
	t.NumCustomPurposes = int(r.read("NumCustomPurposes", 6))
	t.CustomPurposesConsent = r.flags("CustomPurposesConsent", t.NumCustomPurposes)
	t.CustomPurposesLITransparency = r.flags("CustomPurposesLITransparency", t.NumCustomPurposes)
}

// reader reads big-endian bit fields straight from one segment's
// base64url text, without decoding it into a buffer first. The first
// failure sticks in err and every later read returns zero, so decoders read
// a run of fields and check err only where a value decides what to do
// next (a count to allocate for, a version).
type reader struct {
	s       string // the segment's base64url characters, validated by init
	pos     int    // next bit
	n       int    // bits in s
	segN    int    // 1-based position of the segment in the string
	seg     string // segment name for errors, once its type is known
	section string // field prefix for errors, e.g. "VendorConsents"
	err     *DecodeError
}

// b64 maps a base64url character to its 6-bit value, or 0xFF.
var b64 = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xFF
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := 0; i < len(alphabet); i++ {
		t[alphabet[i]] = byte(i)
	}
	return t
}()

// init checks seg's characters and points the reader at it.
func (r *reader) init(seg string) {
	// Tolerate the padding a standard base64 encoder would add, and only
	// that: up to two '=' at the very end.
	for i := 0; i < 2 && strings.HasSuffix(seg, "="); i++ {
		seg = seg[:len(seg)-1]
	}
	if seg == "" {
		r.fail("segment", "empty", ErrMalformed)
		return
	}
	for i := 0; i < len(seg); i++ {
		if b64[seg[i]] == 0xFF {
			// Say where, not what: the character is part of the input.
			r.fail("segment", "character "+strconv.Itoa(i+1)+" is not base64url", ErrMalformed)
			return
		}
	}
	r.s, r.n = seg, 6*len(seg)
}

func (r *reader) fail(field, reason string, err error) {
	if r.err != nil {
		return
	}
	if r.section != "" {
		field = r.section + "." + field
	}
	seg := r.seg
	if seg == "" {
		seg = "segment " + strconv.Itoa(r.segN)
	}
	r.err = &DecodeError{Segment: seg, Field: field, Reason: reason, Err: err}
}

func (r *reader) remaining() int { return r.n - r.pos }

// read reads a width-bit (at most 64) unsigned field.
func (r *reader) read(field string, width int) uint64 {
	if r.err != nil {
		return 0
	}
	if r.remaining() < width {
		r.fail(field, "truncated: needs "+strconv.Itoa(width)+" bits, "+strconv.Itoa(r.remaining())+" left", ErrMalformed)
		return 0
	}
	var v uint64
	for width > 0 {
		c := uint64(b64[r.s[r.pos/6]])
		avail := 6 - r.pos%6
		take := min(avail, width)
		v = v<<take | c>>(avail-take)&(1<<take-1)
		r.pos += take
		width -= take
	}
	return v
}

// flags reads a width-bit field of 1-based flags whose leftmost bit is
// flag 1.
func (r *reader) flags(field string, width int) Bits {
	v := r.read(field, width)
	if width == 0 || r.err != nil {
		return Bits{}
	}
	return Bits{set: bits.Reverse64(v) >> (64 - width), width: uint8(width)}
}

func (r *reader) deciseconds(field string) time.Time {
	// 36 bits of deciseconds is at most ~6.9e9 s, far inside int64 ms.
	ds := r.read(field, 36)
	return time.UnixMilli(int64(ds) * 100).UTC()
}

// letterPairs holds "AA", "AB", ... "ZZ" back to back, so a two-letter code
// is a substring of it rather than a fresh allocation per decode.
var letterPairs = func() string {
	var b strings.Builder
	for a := 'A'; a <= 'Z'; a++ {
		for c := 'A'; c <= 'Z'; c++ {
			b.WriteRune(a)
			b.WriteRune(c)
		}
	}
	return b.String()
}()

// letters reads a two-letter code, 6 bits a letter, A=0 .. Z=25.
func (r *reader) letters(field string) string {
	a, b := r.read(field, 6), r.read(field, 6)
	if r.err != nil {
		return ""
	}
	if a > 25 || b > 25 {
		r.fail(field, "not two letters A-Z", ErrMalformed)
		return ""
	}
	i := 2 * (a*26 + b)
	return letterPairs[i : i+2]
}

// Bits a range entry takes at least (IsARange and one vendor id) and a
// publisher restriction at least (PurposeId, RestrictionType, NumEntries):
// the yardsticks a claimed count is checked against before allocating.
const (
	minRangeEntryBits  = 1 + 16
	minRestrictionBits = 6 + 2 + 12
)

// maxVendorID is the largest vendor id 16 bits can say.
const maxVendorID = 1<<16 - 1

// vendorSection reads MaxVendorId, IsRangeEncoding and a bitfield or range
// section, the shape shared by the vendor consent, vendor legitimate
// interest, DisclosedVendors and AllowedVendors sections.
func (r *reader) vendorSection(section string) VendorSet {
	r.section = section
	defer func() { r.section = "" }()
	maxID := int(r.read("MaxVendorId", 16))
	isRange := r.read("IsRangeEncoding", 1) == 1
	if r.err != nil {
		return VendorSet{}
	}
	v := VendorSet{maxID: maxID, rangeEncoded: isRange}
	if isRange {
		v.ranges = r.rangeEntries(maxID)
	} else {
		v.bitset = r.bitfield(maxID)
	}
	if r.err != nil {
		return VendorSet{}
	}
	return v
}

// bitfield reads maxID bits, the first for vendor 1, into a bitset.
func (r *reader) bitfield(maxID int) []uint64 {
	if maxID == 0 {
		return nil
	}
	if r.remaining() < maxID {
		// A bitfield shorter than MaxVendorId leaves the last vendors'
		// signals unknown; guessing them "no" would still be reading a
		// string its writer did not finish.
		r.fail("BitField", "shorter than MaxVendorId", ErrMalformed)
		return nil
	}
	out := make([]uint64, (maxID+63)/64)
	for i := range out {
		width := min(64, maxID-64*i)
		out[i] = bits.Reverse64(r.read("BitField", width)) >> (64 - width)
	}
	return out
}

// rangeEntries reads NumEntries and the RangeEntry list that follows, with
// every id at most maxID: a vendor section's MaxVendorId, or maxVendorID
// for publisher restrictions, which have no MaxVendorId of their own. The
// result is sorted and merged; nil when empty.
func (r *reader) rangeEntries(maxID int) []idRange {
	n := int(r.read("NumEntries", 12))
	if r.err != nil || n == 0 {
		return nil
	}
	if n > r.remaining()/minRangeEntryBits {
		r.fail("NumEntries", "claims more range entries than the segment has bits for", ErrMalformed)
		return nil
	}
	out := make([]idRange, 0, n)
	for range n {
		isRange := r.read("IsARange", 1) == 1
		start := r.read("StartOrOnlyVendorId", 16)
		end := start
		if isRange {
			end = r.read("EndVendorId", 16)
		}
		switch {
		case r.err != nil:
			return nil
		case start == 0:
			r.fail("StartOrOnlyVendorId", "vendor id 0", ErrMalformed)
			return nil
		case end < start:
			r.fail("EndVendorId", "before StartOrOnlyVendorId", ErrMalformed)
			return nil
		case end > uint64(maxID):
			// MaxVendorId is the section's own statement of its extent; a
			// range past it contradicts the string.
			r.fail("EndVendorId", "above MaxVendorId", ErrMalformed)
			return nil
		}
		out = append(out, idRange{lo: uint16(start), hi: uint16(end)})
	}
	return mergeRanges(out)
}

// mergeRanges sorts ranges and merges overlapping and adjacent ones, so a
// set has one representation however its writer split or repeated it.
func mergeRanges(rs []idRange) []idRange {
	if !slices.IsSortedFunc(rs, func(a, b idRange) int { return int(a.lo) - int(b.lo) }) {
		slices.SortFunc(rs, func(a, b idRange) int { return int(a.lo) - int(b.lo) })
	}
	out := rs[:1]
	for _, cur := range rs[1:] {
		last := &out[len(out)-1]
		if int(cur.lo) <= int(last.hi)+1 {
			last.hi = max(last.hi, cur.hi)
			continue
		}
		out = append(out, cur)
	}
	return slices.Clip(out)
}

// publisherRestrictions reads NumPubRestrictions and its entries.
func (r *reader) publisherRestrictions() []PublisherRestriction {
	r.section = "PublisherRestrictions"
	defer func() { r.section = "" }()
	n := int(r.read("NumPubRestrictions", 12))
	if r.err != nil || n == 0 {
		return nil
	}
	if n > r.remaining()/minRestrictionBits {
		r.fail("NumPubRestrictions", "claims more restrictions than the segment has bits for", ErrMalformed)
		return nil
	}
	out := make([]PublisherRestriction, 0, n)
	for range n {
		purpose := int(r.read("PurposeId", 6))
		typ := RestrictionType(r.read("RestrictionType", 2))
		switch {
		case r.err != nil:
			return nil
		case purpose == 0:
			r.fail("PurposeId", "purpose 0", ErrMalformed)
			return nil
		case typ > RequireLegitimateInterest:
			// The spec leaves 3 undefined. Guessing what a publisher meant
			// by it could only widen what vendors may do.
			r.fail("RestrictionType", "undefined restriction type 3", ErrMalformed)
			return nil
		}
		ranges := r.rangeEntries(maxVendorID)
		if r.err != nil {
			return nil
		}
		v := VendorSet{rangeEncoded: true, ranges: ranges}
		if len(ranges) > 0 {
			v.maxID = int(ranges[len(ranges)-1].hi)
		}
		out = append(out, PublisherRestriction{PurposeID: purpose, Type: typ, Vendors: v})
	}
	return out
}
