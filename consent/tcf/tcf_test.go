package tcf

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// ---------------------------------------------------------------------------
// testdata/vectors.json, written by testdata/gen/gen.mjs with the official
// IAB library. "expected" is what that library reports after decoding.

type vectorFile struct {
	Comment string
	Library struct{ Name, Version string }
	Valid   []validVector
	Invalid []invalidVector
}

type validVector struct {
	Name, Source, Note string
	TCString           string `json:"tcString"`
	Expected           expected
}

type invalidVector struct {
	Name, Note     string
	TCString       string `json:"tcString"`
	LibraryRejects bool
}

type expected struct {
	Segments                           []string
	Version                            int
	Created, LastUpdated               int64
	CmpID                              int `json:"cmpId"`
	CmpVersion                         int
	ConsentScreen                      int
	ConsentLanguage                    string
	VendorListVersion                  int
	PolicyVersion                      int
	IsServiceSpecific                  bool
	UseNonStandardTexts                bool
	PurposeOneTreatment                bool
	PublisherCountryCode               string
	SpecialFeatureOptins               []int
	PurposeConsents                    []int
	PurposeLegitimateInterests         []int
	VendorConsents                     []int
	VendorLegitimateInterests          []int
	VendorsDisclosed                   []int
	VendorsAllowed                     []int
	PublisherRestrictions              []expectedRestriction
	PublisherConsents                  []int
	PublisherLegitimateInterests       []int
	NumCustomPurposes                  int
	PublisherCustomConsents            []int
	PublisherCustomLegitimateInterests []int
	// Present only for strings the library itself encoded.
	VendorConsentsEncoding            string
	VendorLegitimateInterestsEncoding string
	VendorsDisclosedEncoding          string
}

type expectedRestriction struct {
	PurposeID       int `json:"purposeId"`
	RestrictionType int
	Vendors         []int
}

func loadVectors(tb testing.TB) vectorFile {
	tb.Helper()
	raw, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		tb.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	// A field the generator adds and this test ignores would be a check
	// that silently stopped happening.
	dec.DisallowUnknownFields()
	var vf vectorFile
	if err := dec.Decode(&vf); err != nil {
		tb.Fatalf("testdata/vectors.json: %v", err)
	}
	if len(vf.Valid) == 0 || len(vf.Invalid) == 0 {
		tb.Fatal("testdata/vectors.json has no vectors")
	}
	return vf
}

func vectorByName(tb testing.TB, name string) string {
	tb.Helper()
	for _, v := range loadVectors(tb).Valid {
		if v.Name == name {
			return v.TCString
		}
	}
	tb.Fatalf("no vector %q", name)
	return ""
}

// TestOfficialLibraryVectors: TC strings made by the official IAB library
// (and the spec's and the library's own published strings) decode to what
// that library reports, field by field.
func TestOfficialLibraryVectors(t *testing.T) {
	vf := loadVectors(t)
	if vf.Library.Name != "@iabtechlabtcf/core" || vf.Library.Version == "" {
		t.Fatalf("vectors.json library = %+v", vf.Library)
	}
	for _, v := range vf.Valid {
		t.Run(v.Name, func(t *testing.T) {
			got, err := Decode(v.TCString)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			compareToLibrary(t, got, v.Expected)
		})
	}
}

func compareToLibrary(t *testing.T, got *TCString, want expected) {
	t.Helper()
	eq := func(field string, g, w any) {
		t.Helper()
		if !reflect.DeepEqual(g, w) {
			t.Errorf("%s = %v, library says %v", field, g, w)
		}
	}
	ids := func(field string, g, w []int) {
		t.Helper()
		if !slices.Equal(g, w) {
			t.Errorf("%s = %v, library says %v", field, g, w)
		}
	}
	eq("Version", got.Version, want.Version)
	eq("Created", got.Created.UnixMilli(), want.Created)
	eq("LastUpdated", got.LastUpdated.UnixMilli(), want.LastUpdated)
	eq("Created location", got.Created.Location(), time.UTC)
	eq("CmpID", got.CmpID, want.CmpID)
	eq("CmpVersion", got.CmpVersion, want.CmpVersion)
	eq("ConsentScreen", got.ConsentScreen, want.ConsentScreen)
	eq("ConsentLanguage", got.ConsentLanguage, want.ConsentLanguage)
	eq("VendorListVersion", got.VendorListVersion, want.VendorListVersion)
	eq("PolicyVersion", got.PolicyVersion, want.PolicyVersion)
	eq("IsServiceSpecific", got.IsServiceSpecific, want.IsServiceSpecific)
	eq("UseNonStandardTexts", got.UseNonStandardTexts, want.UseNonStandardTexts)
	eq("PurposeOneTreatment", got.PurposeOneTreatment, want.PurposeOneTreatment)
	eq("PublisherCC", got.PublisherCC, want.PublisherCountryCode)

	ids("SpecialFeatureOptIns", got.SpecialFeatureOptIns.IDs(), want.SpecialFeatureOptins)
	ids("PurposesConsent", got.PurposesConsent.IDs(), want.PurposeConsents)
	ids("PurposesLITransparency", got.PurposesLITransparency.IDs(), want.PurposeLegitimateInterests)
	ids("VendorConsents", got.VendorConsents.IDs(), want.VendorConsents)
	ids("VendorLegitimateInterests", got.VendorLegitimateInterests.IDs(), want.VendorLegitimateInterests)
	ids("DisclosedVendors", got.DisclosedVendors.IDs(), want.VendorsDisclosed)
	ids("AllowedVendors", got.AllowedVendors.IDs(), want.VendorsAllowed)
	ids("PubPurposesConsent", got.PubPurposesConsent.IDs(), want.PublisherConsents)
	ids("PubPurposesLITransparency", got.PubPurposesLITransparency.IDs(), want.PublisherLegitimateInterests)
	eq("NumCustomPurposes", got.NumCustomPurposes, want.NumCustomPurposes)
	ids("CustomPurposesConsent", got.CustomPurposesConsent.IDs(), want.PublisherCustomConsents)
	ids("CustomPurposesLITransparency", got.CustomPurposesLITransparency.IDs(), want.PublisherCustomLegitimateInterests)

	// The 1-based accessors agree with the lists, including just outside
	// the fields' widths.
	for n := -1; n <= 65; n++ {
		eq(fmt.Sprintf("PurposeConsent(%d)", n), got.PurposeConsent(n), slices.Contains(want.PurposeConsents, n))
		eq(fmt.Sprintf("PurposeLITransparency(%d)", n), got.PurposeLITransparency(n), slices.Contains(want.PurposeLegitimateInterests, n))
		eq(fmt.Sprintf("SpecialFeatureOptIn(%d)", n), got.SpecialFeatureOptIn(n), slices.Contains(want.SpecialFeatureOptins, n))
		eq(fmt.Sprintf("PublisherPurposeConsent(%d)", n), got.PublisherPurposeConsent(n), slices.Contains(want.PublisherConsents, n))
		eq(fmt.Sprintf("PublisherPurposeLITransparency(%d)", n), got.PublisherPurposeLITransparency(n), slices.Contains(want.PublisherLegitimateInterests, n))
		eq(fmt.Sprintf("CustomPurposeConsent(%d)", n), got.CustomPurposeConsent(n), slices.Contains(want.PublisherCustomConsents, n))
		eq(fmt.Sprintf("CustomPurposeLITransparency(%d)", n), got.CustomPurposeLITransparency(n), slices.Contains(want.PublisherCustomLegitimateInterests, n))
	}
	checkSet(t, "VendorConsents", got.VendorConsents, want.VendorConsents)
	checkSet(t, "VendorLegitimateInterests", got.VendorLegitimateInterests, want.VendorLegitimateInterests)
	checkSet(t, "DisclosedVendors", got.DisclosedVendors, want.VendorsDisclosed)
	for _, id := range want.VendorConsents {
		eq(fmt.Sprintf("VendorConsent(%d)", id), got.VendorConsent(id), true)
	}
	for _, id := range want.VendorLegitimateInterests {
		eq(fmt.Sprintf("VendorLegitimateInterest(%d)", id), got.VendorLegitimateInterest(id), true)
	}

	// The library merges entries that repeat a purpose and type; so does
	// this comparison.
	eq("PublisherRestrictions", mergedRestrictions(got.PublisherRestrictions), want.PublisherRestrictions)

	eq("HasDisclosedVendors", got.HasDisclosedVendors, slices.Contains(want.Segments, "vendorsDisclosed"))
	eq("HasAllowedVendors", got.HasAllowedVendors, slices.Contains(want.Segments, "vendorsAllowed"))
	eq("HasPublisherSegment", got.HasPublisherSegment, slices.Contains(want.Segments, "publisherTC"))

	enc := func(field string, v VendorSet, want string) {
		t.Helper()
		if want == "" {
			return
		}
		g := "bitfield"
		if v.RangeEncoded() {
			g = "range"
		}
		eq(field+" encoding", g, want)
	}
	enc("VendorConsents", got.VendorConsents, want.VendorConsentsEncoding)
	enc("VendorLegitimateInterests", got.VendorLegitimateInterests, want.VendorLegitimateInterestsEncoding)
	enc("DisclosedVendors", got.DisclosedVendors, want.VendorsDisclosedEncoding)
}

// checkSet checks a VendorSet's methods against the ids it should hold.
func checkSet(t *testing.T, field string, v VendorSet, want []int) {
	t.Helper()
	if v.Len() != len(want) {
		t.Errorf("%s.Len() = %d, want %d", field, v.Len(), len(want))
	}
	for _, id := range want {
		if !v.Has(id) {
			t.Errorf("%s.Has(%d) = false", field, id)
		}
		if id > v.MaxVendorID() {
			t.Errorf("%s holds %d above MaxVendorID %d", field, id, v.MaxVendorID())
		}
	}
	for _, id := range []int{-1, 0, v.MaxVendorID() + 1, 65536} {
		if v.Has(id) {
			t.Errorf("%s.Has(%d) = true", field, id)
		}
	}
	// Probe the ids around each wanted one, so a range or word boundary
	// off by one shows.
	for _, id := range want {
		for _, n := range []int{id - 1, id + 1} {
			if v.Has(n) != slices.Contains(want, n) {
				t.Errorf("%s.Has(%d) = %v", field, n, v.Has(n))
			}
		}
	}
}

func mergedRestrictions(rs []PublisherRestriction) []expectedRestriction {
	type key struct{ purpose, typ int }
	m := map[key][]int{}
	for _, r := range rs {
		k := key{r.PurposeID, int(r.Type)}
		m[k] = append(m[k], r.Vendors.IDs()...)
	}
	out := []expectedRestriction{}
	for k, ids := range m {
		slices.Sort(ids)
		out = append(out, expectedRestriction{PurposeID: k.purpose, RestrictionType: k.typ, Vendors: slices.Compact(ids)})
	}
	slices.SortFunc(out, func(a, b expectedRestriction) int {
		if a.PurposeID != b.PurposeID {
			return a.PurposeID - b.PurposeID
		}
		return a.RestrictionType - b.RestrictionType
	})
	return out
}

// TestVectorsCoverBothEncodings guards the generator: the vectors must keep
// exercising both vendor encodings, restrictions and the publisher segment.
func TestVectorsCoverBothEncodings(t *testing.T) {
	var ranged, bitfield, restrictions, custom, allowed bool
	for _, v := range loadVectors(t).Valid {
		got, err := Decode(v.TCString)
		if err != nil {
			t.Fatalf("%s: %v", v.Name, err)
		}
		for _, s := range []VendorSet{got.VendorConsents, got.VendorLegitimateInterests, got.DisclosedVendors} {
			if s.Len() == 0 {
				continue
			}
			if s.RangeEncoded() {
				ranged = true
			} else {
				bitfield = true
			}
		}
		restrictions = restrictions || len(got.PublisherRestrictions) > 0
		custom = custom || got.NumCustomPurposes > 0
		allowed = allowed || got.HasAllowedVendors
	}
	if !ranged || !bitfield || !restrictions || !custom || !allowed {
		t.Fatalf("coverage: range %v, bitfield %v, restrictions %v, custom purposes %v, allowed vendors %v", ranged, bitfield, restrictions, custom, allowed)
	}
}

// TestPublishedStrings pins, by hand, what the published strings say, so a
// regenerated vectors.json that drifted would not go unnoticed.
func TestPublishedStrings(t *testing.T) {
	tests := []struct {
		name  string
		check func(t *testing.T, tc *TCString)
	}{
		{"spec-worked-example-2025", func(t *testing.T, tc *TCString) {
			if tc.CmpID != 880 || tc.VendorListVersion != 48 || tc.PolicyVersion != 2 || tc.PublisherCC != "DE" || tc.ConsentLanguage != "EN" {
				t.Errorf("metadata = cmp %d, gvl %d, policy %d, cc %s, lang %s", tc.CmpID, tc.VendorListVersion, tc.PolicyVersion, tc.PublisherCC, tc.ConsentLanguage)
			}
			if want := time.Date(2025, 6, 3, 0, 0, 0, 0, time.UTC); !tc.Created.Equal(want) || !tc.LastUpdated.Equal(want) {
				t.Errorf("Created, LastUpdated = %v, %v", tc.Created, tc.LastUpdated)
			}
			if got := tc.VendorConsents.IDs(); !slices.Equal(got, []int{1, 2, 3, 4}) {
				t.Errorf("VendorConsents = %v", got)
			}
			if got := tc.DisclosedVendors.IDs(); !slices.Equal(got, []int{1, 2, 3, 4, 5, 100, 404}) {
				t.Errorf("DisclosedVendors = %v", got)
			}
			if !tc.HasPublisherSegment || tc.NumCustomPurposes != 0 || tc.PurposesConsent.Len() != 0 {
				t.Errorf("publisher segment %v, custom %d, purposes %v", tc.HasPublisherSegment, tc.NumCustomPurposes, tc.PurposesConsent.IDs())
			}
		}},
		{"iabtcf-es-issue-201-duplicate-restrictions", func(t *testing.T, tc *TCString) {
			var got []int
			for _, r := range tc.PublisherRestrictions {
				if r.PurposeID == 1 && r.Type == RequireConsent {
					got = append(got, r.Vendors.IDs()...)
				}
			}
			slices.Sort(got)
			if got = slices.Compact(got); !slices.Equal(got, []int{7, 20, 71, 122, 140, 183}) {
				t.Errorf("purpose 1 require-consent vendors = %v", got)
			}
			if typ, ok := tc.RestrictionFor(730, 4); !ok || typ != RequireLegitimateInterest {
				t.Errorf("RestrictionFor(730, 4) = %v, %v", typ, ok)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc, err := Decode(vectorByName(t, tt.name))
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, tc)
		})
	}
}

// TestInvalidVectors: every malformed or unsupported string in
// vectors.json is an error, with no result and no trace of the input in the
// message.
func TestInvalidVectors(t *testing.T) {
	for _, v := range loadVectors(t).Invalid {
		t.Run(v.Name, func(t *testing.T) {
			got, err := Decode(v.TCString)
			if err == nil {
				t.Fatalf("Decode succeeded: %+v", got)
			}
			if got != nil {
				t.Error("a failed Decode returned a result")
			}
			checkError(t, err, v.TCString)
		})
	}
}

// checkError checks the error contract: a *DecodeError wrapping one of the
// sentinels, naming a field, quoting nothing of the input.
func checkError(t *testing.T, err error, input string) {
	t.Helper()
	var de *DecodeError
	if !errors.As(err, &de) {
		t.Fatalf("error %T is not a *DecodeError: %v", err, err)
	}
	if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupportedVersion) {
		t.Errorf("error wraps neither sentinel: %v", err)
	}
	if de.Field == "" || de.Reason == "" {
		t.Errorf("error does not say which field failed: %+v", de)
	}
	msg := err.Error()
	for _, part := range strings.Split(input, ".") {
		if len(part) >= 8 && strings.Contains(msg, part) {
			t.Errorf("error message quotes the input: %q", msg)
		}
	}
}

// ---------------------------------------------------------------------------
// A test-only encoder, to build the strings the official library will not
// (contradictory ranges, undefined types) and to round-trip decoded values.

type bitWriter struct{ bits []byte }

func (w *bitWriter) put(v uint64, width int) *bitWriter {
	for i := width - 1; i >= 0; i-- {
		w.bits = append(w.bits, byte(v>>i&1))
	}
	return w
}

func (w *bitWriter) bool(b bool) *bitWriter {
	if b {
		return w.put(1, 1)
	}
	return w.put(0, 1)
}

func (w *bitWriter) flags(b Bits, width int) *bitWriter {
	for n := 1; n <= width; n++ {
		w.bool(b.Has(n))
	}
	return w
}

func (w *bitWriter) letters(s string) *bitWriter {
	return w.put(uint64(s[0]-'A'), 6).put(uint64(s[1]-'A'), 6)
}

func (w *bitWriter) vendors(v VendorSet) *bitWriter {
	w.put(uint64(v.maxID), 16)
	if !v.rangeEncoded {
		w.put(0, 1)
		for id := 1; id <= v.maxID; id++ {
			w.bool(v.Has(id))
		}
		return w
	}
	w.put(1, 1)
	return w.ranges(v.ranges)
}

func (w *bitWriter) ranges(rs []idRange) *bitWriter {
	w.put(uint64(len(rs)), 12)
	for _, r := range rs {
		if r.lo == r.hi {
			w.put(0, 1).put(uint64(r.lo), 16)
		} else {
			w.put(1, 1).put(uint64(r.lo), 16).put(uint64(r.hi), 16)
		}
	}
	return w
}

// String is the base64url text, the last character padded with zero bits.
func (w *bitWriter) String() string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	var b strings.Builder
	for i := 0; i < len(w.bits); i += 6 {
		var c byte
		for j := range 6 {
			c <<= 1
			if i+j < len(w.bits) {
				c |= w.bits[i+j]
			}
		}
		b.WriteByte(alphabet[c])
	}
	return b.String()
}

// encode writes tc back as a TC string, in canonical segment order.
func encode(tc *TCString) string {
	w := &bitWriter{}
	w.put(uint64(tc.Version), 6).
		put(uint64(tc.Created.UnixMilli()/100), 36).
		put(uint64(tc.LastUpdated.UnixMilli()/100), 36).
		put(uint64(tc.CmpID), 12).
		put(uint64(tc.CmpVersion), 12).
		put(uint64(tc.ConsentScreen), 6).
		letters(tc.ConsentLanguage).
		put(uint64(tc.VendorListVersion), 12).
		put(uint64(tc.PolicyVersion), 6).
		bool(tc.IsServiceSpecific).
		bool(tc.UseNonStandardTexts).
		flags(tc.SpecialFeatureOptIns, 12).
		flags(tc.PurposesConsent, 24).
		flags(tc.PurposesLITransparency, 24).
		bool(tc.PurposeOneTreatment).
		letters(tc.PublisherCC).
		vendors(tc.VendorConsents).
		vendors(tc.VendorLegitimateInterests).
		put(uint64(len(tc.PublisherRestrictions)), 12)
	for _, r := range tc.PublisherRestrictions {
		w.put(uint64(r.PurposeID), 6).put(uint64(r.Type), 2).ranges(r.Vendors.ranges)
	}
	out := w.String()
	if tc.HasDisclosedVendors {
		out += "." + (&bitWriter{}).put(segDisclosedVendors, 3).vendors(tc.DisclosedVendors).String()
	}
	if tc.HasAllowedVendors {
		out += "." + (&bitWriter{}).put(segAllowedVendors, 3).vendors(tc.AllowedVendors).String()
	}
	if tc.HasPublisherSegment {
		out += "." + (&bitWriter{}).put(segPublisherTC, 3).
			flags(tc.PubPurposesConsent, 24).
			flags(tc.PubPurposesLITransparency, 24).
			put(uint64(tc.NumCustomPurposes), 6).
			flags(tc.CustomPurposesConsent, tc.NumCustomPurposes).
			flags(tc.CustomPurposesLITransparency, tc.NumCustomPurposes).String()
	}
	return out
}

// core writes a core segment up to and including PublisherCC, with the
// given version, CMP id and language letters (A=0); the caller appends the
// vendor sections and restrictions.
func core(version, cmpID int, lang, cc [2]uint64) *bitWriter {
	w := &bitWriter{}
	return w.put(uint64(version), 6).
		put(17000000000, 36).put(17000000000, 36).
		put(uint64(cmpID), 12).put(1, 12).put(0, 6).
		put(lang[0], 6).put(lang[1], 6).
		put(100, 12).put(4, 6).
		put(1, 1).put(0, 1).
		put(0, 12).put(0xC00000, 24).put(0, 24).
		put(0, 1).
		put(cc[0], 6).put(cc[1], 6)
}

var en, de = [2]uint64{4, 13}, [2]uint64{3, 4}

func okCore() *bitWriter { return core(2, 10, en, de) }

// emptyVendors is MaxVendorId 0, bitfield: no vendors.
func emptyVendors(w *bitWriter) *bitWriter { return w.put(0, 16).put(0, 1) }

func TestCraftedCore(t *testing.T) {
	w := okCore().put(5, 16).put(0, 1).put(0b10110, 5) // vendors 1, 3, 4
	w.put(3, 16).put(1, 1).put(1, 12).put(1, 1).put(2, 16).put(3, 16)
	w.put(1, 12).put(7, 6).put(uint64(NotAllowed), 2).put(2, 12).put(0, 1).put(9, 16).put(1, 1).put(4, 16).put(6, 16)
	tc, err := Decode(w.String())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tc.VendorConsents.IDs(), []int{1, 3, 4}) || tc.VendorConsents.RangeEncoded() || tc.VendorConsents.MaxVendorID() != 5 {
		t.Errorf("VendorConsents = %v (range %v, max %d)", tc.VendorConsents.IDs(), tc.VendorConsents.RangeEncoded(), tc.VendorConsents.MaxVendorID())
	}
	if !slices.Equal(tc.VendorLegitimateInterests.IDs(), []int{2, 3}) || !tc.VendorLegitimateInterests.RangeEncoded() {
		t.Errorf("VendorLegitimateInterests = %v", tc.VendorLegitimateInterests.IDs())
	}
	if len(tc.PublisherRestrictions) != 1 {
		t.Fatalf("PublisherRestrictions = %+v", tc.PublisherRestrictions)
	}
	// Entries 9 and 4-6, out of order, come back sorted.
	if r := tc.PublisherRestrictions[0]; r.PurposeID != 7 || r.Type != NotAllowed || !slices.Equal(r.Vendors.IDs(), []int{4, 5, 6, 9}) || r.Vendors.MaxVendorID() != 9 {
		t.Errorf("restriction = %d %v %v max %d", r.PurposeID, r.Type, r.Vendors.IDs(), r.Vendors.MaxVendorID())
	}
	if typ, ok := tc.RestrictionFor(5, 7); !ok || typ != NotAllowed {
		t.Errorf("RestrictionFor(5, 7) = %v, %v", typ, ok)
	}
	if _, ok := tc.RestrictionFor(7, 7); ok {
		t.Error("RestrictionFor(7, 7) found a restriction")
	}
	if _, ok := tc.RestrictionFor(5, 6); ok {
		t.Error("RestrictionFor(5, 6) found a restriction")
	}
	if tc.ConsentLanguage != "EN" || tc.PublisherCC != "DE" || !tc.PurposeConsent(1) || !tc.PurposeConsent(2) || tc.PurposeConsent(3) {
		t.Errorf("lang %s cc %s purposes %v", tc.ConsentLanguage, tc.PublisherCC, tc.PurposesConsent.IDs())
	}
	if want := time.UnixMilli(1700000000000).UTC(); !tc.Created.Equal(want) {
		t.Errorf("Created = %v, want %v", tc.Created, want)
	}
	if tc.HasDisclosedVendors || tc.HasAllowedVendors || tc.HasPublisherSegment {
		t.Error("a core-only string reports other segments")
	}
}

// TestOverlappingRanges: ranges that overlap or touch merge, and several
// restrictions on one pair resolve to the lowest type.
func TestOverlappingRanges(t *testing.T) {
	w := okCore().put(20, 16).put(1, 1).put(3, 12).
		put(1, 1).put(5, 16).put(10, 16).
		put(1, 1).put(8, 16).put(12, 16).
		put(0, 1).put(13, 16)
	emptyVendors(w)
	w.put(2, 12).
		put(2, 6).put(uint64(RequireLegitimateInterest), 2).put(1, 12).put(0, 1).put(7, 16).
		put(2, 6).put(uint64(RequireConsent), 2).put(1, 12).put(1, 1).put(1, 16).put(7, 16)
	tc, err := Decode(w.String())
	if err != nil {
		t.Fatal(err)
	}
	if got := tc.VendorConsents.ranges; !slices.Equal(got, []idRange{{5, 13}}) {
		t.Errorf("ranges = %v, want one 5-13", got)
	}
	if typ, ok := tc.RestrictionFor(7, 2); !ok || typ != RequireConsent {
		t.Errorf("RestrictionFor(7, 2) = %v, %v", typ, ok)
	}
}

func TestCraftedInvalid(t *testing.T) {
	type tcase struct {
		name      string
		s         string
		sentinel  error
		wantField string
	}
	restrictionsWith := func(entry func(w *bitWriter)) string {
		w := emptyVendors(emptyVendors(okCore())).put(1, 12)
		entry(w)
		return w.String()
	}
	vendorsWith := func(section func(w *bitWriter)) string {
		w := okCore()
		section(w)
		return emptyVendors(w).put(0, 12).String()
	}
	valid := emptyVendors(emptyVendors(okCore())).put(0, 12).String()
	tests := []tcase{
		{"version 1", emptyVendors(emptyVendors(core(1, 10, en, de))).put(0, 12).String(), ErrUnsupportedVersion, "Version"},
		{"version 3", emptyVendors(emptyVendors(core(3, 10, en, de))).put(0, 12).String(), ErrUnsupportedVersion, "Version"},
		{"version 0", emptyVendors(emptyVendors(core(0, 10, en, de))).put(0, 12).String(), ErrUnsupportedVersion, "Version"},
		{"publisher TC segment first", (&bitWriter{}).put(segPublisherTC, 3).put(0, 60).String(), ErrMalformed, "Version"},
		{"cmp id 0", emptyVendors(emptyVendors(core(2, 0, en, de))).put(0, 12).String(), ErrMalformed, "CmpId"},
		{"cmp id 1", emptyVendors(emptyVendors(core(2, 1, en, de))).put(0, 12).String(), ErrMalformed, "CmpId"},
		{"language letter 26", emptyVendors(emptyVendors(core(2, 10, [2]uint64{4, 26}, de))).put(0, 12).String(), ErrMalformed, "ConsentLanguage"},
		{"country letter 63", emptyVendors(emptyVendors(core(2, 10, en, [2]uint64{63, 4}))).put(0, 12).String(), ErrMalformed, "PublisherCC"},
		{"truncated in Created", core(2, 10, en, de).String()[:4], ErrMalformed, "Created"},
		{"no vendor sections", okCore().String(), ErrMalformed, "VendorConsents.MaxVendorId"},
		{"no NumPubRestrictions", emptyVendors(emptyVendors(okCore())).String(), ErrMalformed, "PublisherRestrictions.NumPubRestrictions"},
		{"bitfield shorter than MaxVendorId", vendorsWith(func(w *bitWriter) { w.put(400, 16).put(0, 1).put(1, 30) }), ErrMalformed, "VendorConsents.BitField"},
		{"range start 0", vendorsWith(func(w *bitWriter) { w.put(10, 16).put(1, 1).put(1, 12).put(0, 1).put(0, 16) }), ErrMalformed, "VendorConsents.StartOrOnlyVendorId"},
		{"range end before start", vendorsWith(func(w *bitWriter) { w.put(10, 16).put(1, 1).put(1, 12).put(1, 1).put(9, 16).put(3, 16) }), ErrMalformed, "VendorConsents.EndVendorId"},
		{"range past MaxVendorId", vendorsWith(func(w *bitWriter) { w.put(10, 16).put(1, 1).put(1, 12).put(1, 1).put(9, 16).put(11, 16) }), ErrMalformed, "VendorConsents.EndVendorId"},
		{"range with MaxVendorId 0", vendorsWith(func(w *bitWriter) { w.put(0, 16).put(1, 1).put(1, 12).put(0, 1).put(64105, 16) }), ErrMalformed, "VendorConsents.EndVendorId"},
		{"single id past MaxVendorId", vendorsWith(func(w *bitWriter) { w.put(10, 16).put(1, 1).put(1, 12).put(0, 1).put(11, 16) }), ErrMalformed, "VendorConsents.EndVendorId"},
		{"range entries past the end", vendorsWith(func(w *bitWriter) { w.put(65535, 16).put(1, 1).put(4095, 12).put(0, 1).put(7, 16) }), ErrMalformed, "VendorConsents.NumEntries"},
		{"range entry cut in EndVendorId", okCore().put(9, 16).put(1, 1).put(1, 12).put(1, 1).put(3, 16).put(1, 3).String(), ErrMalformed, "VendorConsents"},
		{"LI section broken", emptyVendors(okCore()).put(10, 16).put(1, 1).put(1, 12).put(0, 1).put(0, 16).put(0, 12).String(), ErrMalformed, "VendorLegitimateInterests.StartOrOnlyVendorId"},
		{"restriction type 3", restrictionsWith(func(w *bitWriter) { w.put(2, 6).put(3, 2).put(1, 12).put(0, 1).put(5, 16) }), ErrMalformed, "PublisherRestrictions.RestrictionType"},
		{"restriction purpose 0", restrictionsWith(func(w *bitWriter) { w.put(0, 6).put(0, 2).put(1, 12).put(0, 1).put(5, 16) }), ErrMalformed, "PublisherRestrictions.PurposeId"},
		{"restriction range backwards", restrictionsWith(func(w *bitWriter) { w.put(2, 6).put(0, 2).put(1, 12).put(1, 1).put(5, 16).put(4, 16) }), ErrMalformed, "PublisherRestrictions.EndVendorId"},
		{"restriction entries past the end", restrictionsWith(func(w *bitWriter) { w.put(2, 6).put(0, 2).put(4095, 12).put(0, 1).put(5, 16) }), ErrMalformed, "PublisherRestrictions.NumEntries"},
		{"restrictions past the end", emptyVendors(emptyVendors(okCore())).put(4095, 12).put(0, 20).String(), ErrMalformed, "PublisherRestrictions.NumPubRestrictions"},
		{"disclosed vendors truncated", valid + "." + (&bitWriter{}).put(segDisclosedVendors, 3).put(1, 3).String(), ErrMalformed, "DisclosedVendors.MaxVendorId"},
		{"allowed vendors bitfield short", valid + "." + (&bitWriter{}).put(segAllowedVendors, 3).put(100, 16).put(0, 1).put(0, 10).String(), ErrMalformed, "AllowedVendors.BitField"},
		{"publisher TC truncated", valid + "." + (&bitWriter{}).put(segPublisherTC, 3).put(0, 30).String(), ErrMalformed, "PubPurposesLITransparency"},
		{"custom purposes truncated", valid + "." + (&bitWriter{}).put(segPublisherTC, 3).put(0, 48).put(40, 6).put(0, 50).String(), ErrMalformed, "CustomPurposesLITransparency"},
	}
	for typ := 4; typ <= 7; typ++ {
		tests = append(tests, tcase{fmt.Sprintf("segment type %d", typ), valid + "." + (&bitWriter{}).put(uint64(typ), 3).put(0, 45).String(), ErrMalformed, "SegmentType"})
	}
	if _, err := Decode(valid); err != nil {
		t.Fatalf("the base string does not decode: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode(tt.s)
			if err == nil {
				t.Fatalf("Decode succeeded: %+v", got)
			}
			if !errors.Is(err, tt.sentinel) {
				t.Errorf("error %v does not wrap %v", err, tt.sentinel)
			}
			var de *DecodeError
			if errors.As(err, &de) && !strings.HasPrefix(de.Field, tt.wantField) {
				t.Errorf("Field = %q, want prefix %q (%v)", de.Field, tt.wantField, err)
			}
			checkError(t, err, tt.s)
		})
	}
}

// TestPadding: trailing '=' padding is tolerated (up to two per segment)
// and changes nothing.
func TestPadding(t *testing.T) {
	s := vectorByName(t, "publisher-tc-custom-purposes")
	want, err := Decode(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, pad := range []string{"=", "=="} {
		parts := strings.Split(s, ".")
		for i := range parts {
			parts[i] += pad
		}
		got, err := Decode(strings.Join(parts, "."))
		if err != nil {
			t.Fatalf("padding %q: %v", pad, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("padding %q changed the result", pad)
		}
	}
}

func TestErrorMessage(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "tcf: input: empty"},
		// 8 characters are 48 bits: Version and Created fit, LastUpdated
		// does not.
		{"CAAAAAAA", "tcf: core segment: LastUpdated: truncated: needs 36 bits, 6 left"},
		// The core segment fails before the second is looked at.
		{"CPtest.AA", "tcf: core segment: Created: truncated: needs 36 bits, 30 left"},
		{vectorByName(t, "core-only") + ".AB*", "tcf: segment 2 segment: segment: character 3 is not base64url"},
		{"BOEFEAyOEFEAyAHABDENAI4AAAB9vABAASA", "tcf: core segment: Version: version 1 is not supported, only 2"},
	}
	for _, tt := range tests {
		_, err := Decode(tt.in)
		if err == nil || err.Error() != tt.want {
			t.Errorf("Decode(%q) error = %v, want %q", tt.in, err, tt.want)
		}
	}
}

func TestBits(t *testing.T) {
	var zero Bits
	if zero.Has(1) || zero.Len() != 0 || zero.IDs() != nil || zero.Width() != 0 {
		t.Error("zero Bits is not empty")
	}
	b := Bits{set: 1 | 1<<23, width: 24}
	if !b.Has(1) || !b.Has(24) || b.Has(0) || b.Has(25) || b.Has(2) || b.Len() != 2 || !slices.Equal(b.IDs(), []int{1, 24}) || b.Width() != 24 {
		t.Errorf("Bits %+v: ids %v", b, b.IDs())
	}
	// A flag beyond the width is never reported, whatever the word holds.
	if (Bits{set: 1 << 5, width: 5}).Has(6) {
		t.Error("Has reads past the width")
	}
}

func TestVendorSetZero(t *testing.T) {
	var v VendorSet
	if v.Has(1) || v.Len() != 0 || v.IDs() != nil || v.MaxVendorID() != 0 || v.RangeEncoded() {
		t.Error("zero VendorSet is not empty")
	}
	for range v.All() {
		t.Error("zero VendorSet yields ids")
	}
	// All stops when asked to.
	s := VendorSet{maxID: 200, bitset: []uint64{^uint64(0), ^uint64(0), ^uint64(0), 0xFF}}
	n := 0
	for range s.All() {
		if n++; n == 3 {
			break
		}
	}
	r := VendorSet{maxID: 100, rangeEncoded: true, ranges: []idRange{{1, 50}, {60, 100}}}
	n = 0
	for range r.All() {
		if n++; n == 3 {
			break
		}
	}
	if r.Len() != 91 || !r.Has(50) || r.Has(51) || r.Has(59) || !r.Has(60) || !r.Has(100) {
		t.Errorf("range set: len %d", r.Len())
	}
}

func TestRestrictionTypeString(t *testing.T) {
	for typ, want := range map[RestrictionType]string{NotAllowed: "not allowed", RequireConsent: "require consent", RequireLegitimateInterest: "require legitimate interest", 3: "restriction type 3"} {
		if got := typ.String(); got != want {
			t.Errorf("%d.String() = %q", typ, got)
		}
	}
}

// TestRoundTrip: every vector re-encodes to a string that decodes to the
// same value, which is what FuzzDecode relies on.
func TestRoundTrip(t *testing.T) {
	for _, v := range loadVectors(t).Valid {
		tc, err := Decode(v.TCString)
		if err != nil {
			t.Fatalf("%s: %v", v.Name, err)
		}
		again, err := Decode(encode(tc))
		if err != nil {
			t.Fatalf("%s: re-encoded: %v", v.Name, err)
		}
		if !reflect.DeepEqual(tc, again) {
			t.Errorf("%s: round trip changed the value", v.Name)
		}
	}
}

// TestAllocationBounded: a string that claims thousands of entries but
// carries a few bits allocates no more than a well-formed one, because
// counts are checked against the remaining bits first.
func TestAllocationBounded(t *testing.T) {
	hostile := map[string]string{
		"vendor ranges": okCore().put(65535, 16).put(1, 1).put(4095, 12).put(0, 1).put(7, 16).String(),
		"restrictions":  emptyVendors(emptyVendors(okCore())).put(4095, 12).put(0, 40).String(),
		"restriction ranges": emptyVendors(emptyVendors(okCore())).put(1, 12).
			put(2, 6).put(0, 2).put(4095, 12).put(0, 1).put(5, 16).String(),
		"bitfield": okCore().put(65535, 16).put(0, 1).put(0, 64).String(),
	}
	for name, s := range hostile {
		if _, err := Decode(s); err == nil {
			t.Fatalf("%s: decoded", name)
		}
		if per := bytesPerDecode(s); per > 1024 {
			t.Errorf("%s: %d bytes allocated per Decode", name, per)
		}
	}
}

func bytesPerDecode(s string) uint64 {
	const runs = 200
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range runs {
		_, _ = Decode(s)
	}
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / runs
}

// ---------------------------------------------------------------------------

// FuzzDecode: Decode never panics; it fails with the documented error
// shape or succeeds deterministically, and what it decodes re-encodes to a
// string that decodes to the same value.
func FuzzDecode(f *testing.F) {
	vf := loadVectors(f)
	for _, v := range vf.Valid {
		f.Add(v.TCString)
	}
	for _, v := range vf.Invalid {
		f.Add(v.TCString)
	}
	f.Add(emptyVendors(emptyVendors(okCore())).put(0, 12).String())
	f.Fuzz(func(t *testing.T, s string) {
		first, err1 := Decode(s)
		second, err2 := Decode(s)
		if (err1 == nil) != (err2 == nil) {
			t.Fatalf("Decode is not deterministic: %v then %v", err1, err2)
		}
		if err1 != nil {
			if first != nil {
				t.Fatal("a failed Decode returned a result")
			}
			if err1.Error() != err2.Error() {
				t.Fatalf("errors differ: %v then %v", err1, err2)
			}
			var de *DecodeError
			if !errors.As(err1, &de) || (!errors.Is(err1, ErrMalformed) && !errors.Is(err1, ErrUnsupportedVersion)) {
				t.Fatalf("undocumented error: %#v", err1)
			}
			if len(s) >= 16 && strings.Contains(err1.Error(), s) {
				t.Fatalf("error quotes the input: %v", err1)
			}
			return
		}
		if !reflect.DeepEqual(first, second) {
			t.Fatal("Decode is not deterministic")
		}
		if first.Version != 2 {
			t.Fatalf("Version = %d", first.Version)
		}
		for _, v := range []VendorSet{first.VendorConsents, first.VendorLegitimateInterests, first.DisclosedVendors, first.AllowedVendors} {
			n := 0
			for id := range v.All() {
				if !v.Has(id) || id < 1 || id > v.MaxVendorID() {
					t.Fatalf("All yields %d, which the set does not hold (max %d)", id, v.MaxVendorID())
				}
				n++
			}
			if n != v.Len() {
				t.Fatalf("All yields %d ids, Len says %d", n, v.Len())
			}
		}
		again, err := Decode(encode(first))
		if err != nil {
			t.Fatalf("re-encoded value does not decode: %v", err)
		}
		if !reflect.DeepEqual(first, again) {
			t.Fatal("round trip changed the value")
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	for _, name := range []string{
		"all-purposes-dense-vendors",                 // a typical v2.2 string, bitfield vendors
		"sparse-large-vendor-ids-range",              // range sections
		"publisher-restrictions",                     // restrictions and all three segments
		"iabtcf-es-issue-201-duplicate-restrictions", // a large real-world string, 20 restrictions
	} {
		s := vectorByName(b, name)
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(s)))
			for b.Loop() {
				if _, err := Decode(s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
