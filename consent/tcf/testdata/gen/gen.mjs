// gen.mjs writes ../vectors.json: TC strings encoded by the official IAB
// library (@iabtechlabtcf/core, version pinned in package.json) together with
// what that same library reports after decoding them. The Go tests in
// consent/tcf compare package tcf's decoder against those reports, so the Go
// side needs no Node and no network.
//
// Regenerate (from the repository root):
//
//	cd consent/tcf/testdata/gen && npm ci --no-audit --no-fund && node gen.mjs
//
// Everything here is deterministic: dates are fixed, the GVL is a small
// literal built in this script (no fetch), so running it twice writes the
// same file.

import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import {
  Base64Url,
  BitLength,
  GVL,
  PurposeRestriction,
  RestrictionType,
  Segment,
  SegmentIDs,
  TCModel,
  TCString,
  VendorVectorEncoder,
} from '@iabtechlabtcf/core';

const here = dirname(fileURLToPath(import.meta.url));
// The package's "exports" map hides package.json, so read it from disk.
const libVersion = JSON.parse(readFileSync(join(here, 'node_modules', '@iabtechlabtcf', 'core', 'package.json'), 'utf8')).version;
const pinned = JSON.parse(readFileSync(join(here, 'package.json'), 'utf8')).dependencies['@iabtechlabtcf/core'];
if (libVersion !== pinned) {
  throw new Error(`installed @iabtechlabtcf/core ${libVersion} is not the pinned ${pinned}: run npm ci`);
}

// ---------------------------------------------------------------------------
// A minimal GVL, built in-script. The encoder drops any vendor signal the GVL
// cannot justify (unknown vendor, no declared purpose for that legal basis, a
// restriction on a purpose that is not flexible), so every vendor id a vector
// uses must be declared here with purposes that make its signals legal.

const range = (lo, hi, step = 1) => {
  const out = [];
  for (let i = lo; i <= hi; i += step) out.push(i);
  return out;
};

const named = (ids) => Object.fromEntries(ids.map((id) => [id, { id, name: `item ${id}`, description: '', illustrations: [] }]));

// Even ids: consent purposes incl. 2 (flexible, so "require LI" is legal).
// Odd ids: LI purposes incl. 2 (flexible, so "require consent" is legal).
const vendorDecl = (id) => ({
  id,
  name: `vendor ${id}`,
  purposes: id % 2 === 0 ? [1, 2, 3, 4] : [1, 3, 4],
  legIntPurposes: id % 2 === 0 ? [7, 9, 10] : [2, 7, 8],
  flexiblePurposes: id % 2 === 0 ? [2, 7] : [2],
  specialPurposes: [1, 2],
  features: [1],
  specialFeatures: id % 3 === 0 ? [1] : [],
  usesCookies: true,
  cookieMaxAgeSeconds: 86400,
  cookieRefresh: false,
  usesNonCookieAccess: false,
  policyUrl: 'https://vendor.invalid/privacy',
});

function makeGVL({ vendorListVersion, tcfPolicyVersion = 4, vendors, language }) {
  const json = {
    gvlSpecificationVersion: 3,
    vendorListVersion,
    tcfPolicyVersion,
    lastUpdated: '2024-01-15T16:00:00Z',
    purposes: named(range(1, 11)),
    specialPurposes: named(range(1, 3)),
    features: named(range(1, 3)),
    specialFeatures: named(range(1, 2)),
    stacks: {},
    dataCategories: {},
    vendors: Object.fromEntries([...new Set(vendors)].map((id) => [id, vendorDecl(id)])),
  };
  return new GVL(json, language ? { language } : undefined);
}

// ---------------------------------------------------------------------------
// Vectors. Each builds a TCModel; `segments` (optional) is passed to
// TCString.encode as the explicit segment sequence, `options` as the rest of
// the encoding options.

const DAY = Date.UTC(2024, 2, 1); // a day-level timestamp, as v2.2 CMPs write

const vectors = [
  {
    name: 'no-consent-global',
    note: 'nothing granted; global scope, so the library adds an empty DisclosedVendors segment',
    gvl: { vendorListVersion: 120, vendors: range(1, 20) },
    build(m) {
      m.cmpId = 10;
      m.cmpVersion = 1;
      m.isServiceSpecific = false;
      m.created = new Date(DAY);
      m.lastUpdated = new Date(DAY);
    },
  },
  {
    name: 'all-purposes-dense-vendors',
    note: 'every purpose consented, LI on the purposes v2.2 still allows, dense vendor ids (bitfield)',
    gvl: { vendorListVersion: 200, vendors: range(1, 140), language: 'de' },
    build(m) {
      m.cmpId = 300;
      m.cmpVersion = 7;
      m.consentScreen = 2;
      m.publisherCountryCode = 'DE';
      m.created = new Date(DAY);
      m.lastUpdated = new Date(DAY);
      m.purposeConsents.set(range(1, 11));
      m.purposeLegitimateInterests.set(range(1, 11)); // the encoder clears 1 and 3-6
      m.specialFeatureOptins.set([1, 2]);
      m.vendorConsents.set(range(1, 140).filter((id) => id % 7 !== 0));
      m.vendorLegitimateInterests.set(range(1, 140).filter((id) => id % 5 !== 0));
      m.vendorsDisclosed.set(range(1, 140));
    },
  },
  {
    name: 'purpose-one-only',
    note: 'only purpose 1 (store/access on a device) and a single vendor',
    gvl: { vendorListVersion: 150, vendors: [1, 2, 3, 755] },
    build(m) {
      m.cmpId = 28;
      m.cmpVersion = 3;
      m.created = new Date(DAY);
      m.lastUpdated = new Date(DAY);
      m.purposeConsents.set(1);
      m.vendorConsents.set(755);
      m.vendorsDisclosed.set([1, 2, 3, 755]);
    },
  },
  {
    name: 'mixed-purposes-li',
    note: 'alternating purpose consent, LI on 2/7/8/10, interleaved vendor consent and LI',
    gvl: { vendorListVersion: 310, vendors: range(1, 60), language: 'fr' },
    build(m) {
      m.cmpId = 92;
      m.cmpVersion = 12;
      m.consentScreen = 1;
      m.publisherCountryCode = 'FR';
      m.created = new Date(Date.UTC(2023, 10, 14, 22, 13, 20, 149)); // rounds down to .1 s
      m.lastUpdated = new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 650)); // rounds up to .7 s
      m.purposeConsents.set([1, 3, 5, 7, 9, 11]);
      m.purposeLegitimateInterests.set([2, 7, 8, 10]);
      m.vendorConsents.set(range(2, 60, 2));
      m.vendorLegitimateInterests.set(range(1, 59, 2));
      m.vendorsDisclosed.set(range(1, 60));
    },
  },
  {
    name: 'sparse-large-vendor-ids-range',
    note: 'a few very large vendor ids: the library picks range encoding for consents, LI and disclosed',
    gvl: { vendorListVersion: 401, vendors: [4, 1000, 5000, 20000, 40000, 65535] },
    build(m) {
      m.cmpId = 5;
      m.cmpVersion = 2;
      m.isServiceSpecific = false;
      m.created = new Date(DAY);
      m.lastUpdated = new Date(DAY);
      m.purposeConsents.set([1, 2, 3, 4]);
      m.vendorConsents.set([4, 1000, 5000, 20000, 40000, 65535]);
      m.vendorLegitimateInterests.set([5000, 65535]);
      m.vendorsDisclosed.set([4, 1000, 5000, 20000, 40000, 65535]);
    },
  },
  {
    name: 'contiguous-block-range',
    note: 'vendors 1..1500 all consented: one range entry is far smaller than 1500 bits',
    gvl: { vendorListVersion: 402, vendors: range(1, 1500), language: 'es' },
    build(m) {
      m.cmpId = 4095;
      m.cmpVersion = 4095;
      m.consentScreen = 63;
      m.publisherCountryCode = 'ES';
      m.created = new Date(DAY);
      m.lastUpdated = new Date(DAY);
      m.purposeConsents.set(range(1, 10));
      m.vendorConsents.set(range(1, 1500));
      m.vendorLegitimateInterests.set(range(1, 300, 3));
      m.vendorsDisclosed.set(range(1, 1500));
    },
  },
  {
    name: 'dense-every-third-bitfield',
    note: 'every third vendor up to 600: bitfield wins',
    gvl: { vendorListVersion: 403, vendors: range(1, 600), language: 'it' },
    build(m) {
      m.cmpId = 77;
      m.cmpVersion = 1;
      m.publisherCountryCode = 'IT';
      m.created = new Date(DAY);
      m.lastUpdated = new Date(DAY);
      m.purposeConsents.set([1, 2, 7, 8, 9, 10]);
      m.purposeLegitimateInterests.set([2, 7, 9]);
      m.vendorConsents.set(range(3, 600, 3));
      m.vendorLegitimateInterests.set(range(1, 600, 3));
      m.vendorsDisclosed.set(range(1, 600));
    },
  },
  {
    name: 'special-features-all',
    note: 'all 12 special-feature bits set, including ids the GVL does not (yet) define',
    gvl: { vendorListVersion: 404, vendors: range(1, 12), language: 'pl' },
    build(m) {
      m.cmpId = 134;
      m.cmpVersion = 4;
      m.publisherCountryCode = 'PL';
      m.created = new Date(DAY);
      m.lastUpdated = new Date(DAY);
      m.specialFeatureOptins.set(range(1, 12));
      m.purposeConsents.set([1, 24]); // the last of the 24 purpose bits
      m.vendorConsents.set([3, 6, 9, 12]);
      m.vendorsDisclosed.set(range(1, 12));
    },
  },
  {
    name: 'publisher-restrictions',
    note: 'not-allowed, require-consent and require-LI restrictions; gaps in the GVL let the library merge ranges',
    gvl: { vendorListVersion: 405, vendors: [...range(1, 8), ...range(11, 16), 20, 30, 31, 32, 40] },
    build(m) {
      m.cmpId = 21;
      m.cmpVersion = 9;
      m.publisherCountryCode = 'NL';
      m.created = new Date(DAY);
      m.lastUpdated = new Date(DAY);
      m.purposeConsents.set([1, 2, 3, 4, 7]);
      m.purposeLegitimateInterests.set([2, 7]);
      m.vendorConsents.set([...range(1, 8), 12, 14, 20]);
      m.vendorLegitimateInterests.set([11, 13, 15, 31]);
      const notAllowed3 = new PurposeRestriction(3, RestrictionType.NOT_ALLOWED);
      for (const id of [5, 6, 7, 8, 11, 20]) m.publisherRestrictions.add(id, notAllowed3);
      const requireConsent2 = new PurposeRestriction(2, RestrictionType.REQUIRE_CONSENT);
      for (const id of [11, 13, 15, 31]) m.publisherRestrictions.add(id, requireConsent2);
      const requireLI2 = new PurposeRestriction(2, RestrictionType.REQUIRE_LI);
      for (const id of [12, 14, 30, 32, 40]) m.publisherRestrictions.add(id, requireLI2);
      m.vendorsDisclosed.set([...range(1, 8), ...range(11, 16), 20, 30, 31, 32, 40]);
    },
  },
  {
    name: 'publisher-tc-custom-purposes',
    note: 'service-specific: DisclosedVendors and a Publisher TC segment with 5 custom purposes',
    gvl: { vendorListVersion: 406, vendors: range(1, 30), language: 'nl' },
    build(m) {
      m.cmpId = 300;
      m.cmpVersion = 22;
      m.publisherCountryCode = 'NL';
      m.created = new Date(DAY);
      m.lastUpdated = new Date(DAY);
      m.purposeConsents.set([1, 2]);
      m.vendorConsents.set([2, 4, 6]);
      m.publisherConsents.set([1, 2, 3, 4]);
      m.publisherLegitimateInterests.set([2, 7]);
      m.numCustomPurposes = 5;
      m.publisherCustomConsents.set([1, 3, 5]);
      m.publisherCustomLegitimateInterests.set([2, 4]);
      m.vendorsDisclosed.set(range(1, 30));
    },
  },
  {
    name: 'publisher-tc-for-vendors-global',
    note: 'global scope encoded for vendors (isForVendors): core + Publisher TC, no DisclosedVendors',
    gvl: { vendorListVersion: 407, vendors: range(1, 10), language: 'sv' },
    options: { isForVendors: true },
    build(m) {
      m.cmpId = 68;
      m.cmpVersion = 1;
      m.isServiceSpecific = false;
      m.publisherCountryCode = 'SE';
      m.created = new Date(DAY);
      m.lastUpdated = new Date(DAY);
      m.purposeConsents.set([1, 2, 3]);
      m.vendorConsents.set([2, 4]);
      m.publisherConsents.set([1]);
      m.publisherLegitimateInterests.set([8]);
    },
  },
  {
    name: 'custom-purposes-63',
    note: 'the widest Publisher TC segment: 63 custom purposes',
    gvl: { vendorListVersion: 408, vendors: range(1, 4) },
    segments: [Segment.CORE, Segment.PUBLISHER_TC],
    build(m) {
      m.cmpId = 2;
      m.cmpVersion = 0;
      m.created = new Date(DAY);
      m.lastUpdated = new Date(DAY);
      m.publisherConsents.set([1, 24]);
      m.numCustomPurposes = 63;
      m.publisherCustomConsents.set([1, 32, 63]);
      m.publisherCustomLegitimateInterests.set([2, 62]);
    },
  },
  {
    name: 'purpose-one-treatment',
    note: 'purpose 1 not disclosed (jurisdiction), non-standard texts, consent screen 5',
    gvl: { vendorListVersion: 409, vendors: range(1, 8), language: 'da' },
    build(m) {
      m.cmpId = 31;
      m.cmpVersion = 100;
      m.consentScreen = 5;
      m.purposeOneTreatment = true;
      m.useNonStandardTexts = true;
      m.publisherCountryCode = 'DK';
      m.created = new Date(DAY);
      m.lastUpdated = new Date(Date.UTC(2024, 5, 30));
      m.purposeConsents.set([2, 3, 4]);
      m.vendorConsents.set([2, 4, 6, 8]);
      m.vendorsDisclosed.set(range(1, 8));
    },
  },
  {
    name: 'core-only',
    note: 'a bare core segment, as v2.0/v2.1 CMPs surfaced it to vendors',
    gvl: { vendorListVersion: 410, vendors: range(1, 50), language: 'pt' },
    segments: [Segment.CORE],
    build(m) {
      m.cmpId = 6;
      m.cmpVersion = 5;
      m.publisherCountryCode = 'PT';
      m.created = new Date(Date.UTC(2021, 6, 1, 12));
      m.lastUpdated = new Date(Date.UTC(2021, 6, 1, 12));
      m.purposeConsents.set([1, 2, 3, 4, 5, 6]);
      m.vendorConsents.set(range(1, 50, 2));
    },
  },
  {
    name: 'vendors-allowed-legacy',
    note: 'the legacy AllowedVendors segment (type 2) next to DisclosedVendors',
    gvl: { vendorListVersion: 411, vendors: range(1, 40) },
    segments: [Segment.CORE, Segment.VENDORS_DISCLOSED, Segment.VENDORS_ALLOWED],
    build(m) {
      m.cmpId = 50;
      m.cmpVersion = 2;
      m.isServiceSpecific = false;
      m.created = new Date(DAY);
      m.lastUpdated = new Date(DAY);
      m.purposeConsents.set([1]);
      m.vendorConsents.set([10, 20, 30, 40]);
      m.vendorsDisclosed.set(range(1, 40));
      m.vendorsAllowed.set([10, 11, 12]);
    },
  },
  {
    name: 'policy-v5-disclosed-sparse',
    note: 'TCF v2.3 policy version 5; disclosed vendors sparse (range), consents dense (bitfield)',
    gvl: { vendorListVersion: 120, tcfPolicyVersion: 5, vendors: [...range(1, 64), 30000, 31000], language: 'cs' },
    build(m) {
      m.cmpId = 212;
      m.cmpVersion = 31;
      m.publisherCountryCode = 'CZ';
      m.created = new Date(Date.UTC(2025, 8, 1));
      m.lastUpdated = new Date(Date.UTC(2025, 8, 1));
      m.purposeConsents.set([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
      m.purposeLegitimateInterests.set([2, 7, 8, 9, 10, 11]);
      m.vendorConsents.set(range(1, 64).filter((id) => id % 4 !== 1));
      m.vendorLegitimateInterests.set(range(1, 64).filter((id) => id % 2 === 1));
      m.vendorsDisclosed.set([1, 2, 3, 30000, 31000]);
    },
  },
  {
    name: 'max-field-values',
    note: 'the largest values the fixed-width fields hold',
    gvl: { vendorListVersion: 4095, tcfPolicyVersion: 63, vendors: [65535], language: 'zh' },
    build(m) {
      m.cmpId = 4095;
      m.cmpVersion = 4095;
      m.consentScreen = 63;
      m.publisherCountryCode = 'ZZ';
      m.created = new Date(Date.UTC(2150, 0, 1)); // 36 bits of deciseconds last until 2187
      m.lastUpdated = new Date(Date.UTC(2150, 0, 1));
      m.purposeConsents.set(range(1, 24));
      m.vendorConsents.set(65535);
      m.vendorLegitimateInterests.set(65535);
      m.vendorsDisclosed.set(65535);
    },
  },
];

// ---------------------------------------------------------------------------
// Strings the library did not make here: the worked example printed in the
// IAB TCF v2 specification, and strings from the official library's own
// reported-issue tests. Their expected values are, again, what the library
// decodes.

const external = [
  {
    name: 'spec-worked-example-2025',
    source: 'IAB Tech Lab, Consent string and vendor list formats v2, "TC String Format" example (June 2025 revision); note its TcfPolicyVersion is 2',
    tcString: 'CQSbk4AQSbk4ANwAAAENAwCgAAAAAAAAAAYgACPAAAAA.IDKQA4AAgAKAGQAygAAA.YAAAAAAAAAAA',
  },
  {
    name: 'spec-service-specific-example-v20',
    source: 'IAB Tech Lab, Consent string and vendor list formats v2 (v2.0 text), service-specific example [Core].[Publisher TC]',
    tcString: 'CLcVDxRMWfGmWAVAHCENAXCkAKDAADnAABRgA5mdfCKZuYJez-NQm0TBMYA4oCAAGQYIAAAAAAEAIAEgAA.argAC0gAAAAAAAAAAAA',
  },
  {
    name: 'spec-oob-example-v20',
    source: 'IAB Tech Lab, Consent string and vendor list formats v2 (v2.0 text), OOB example [Core].[DisclosedVendors]',
    tcString: 'COvFyGBOvFyGBAbAAAENAPCAAOAAAAAAAAAAAEEUACCKAAA.IFoEUQQgAIQwgIwQABAEAAAAOIAACAIAAAAQAIAgEAACEAAAAAgAQBAAAAAAAGBAAgAAAAAAAFAAECAAAgAAQARAEQAAAAAJAAIAAgAAAYQEAAAQmAgBC3ZAYzUw',
  },
  {
    name: 'spec-oob-allowed-example-v20',
    source: 'IAB Tech Lab, Consent string and vendor list formats v2 (v2.0 text), [Core].[DisclosedVendors].[AllowedVendors]',
    tcString: 'CGL23UdMFJzvuA9ACCENAXCEAC0AAGrAAA5YA5ht7-_d_7_vd-f-nrf4_4A4hM4JCKoK4YhmAqABgAEgAA.IFut_a83_Ma_t-_SvB3v4-IAeIAACAIgSAAQAIAgEQACEABAAAgAQFAEAIAAAGBAAgAAAAQAIFAAMCQAAgAAQiRAEQAAAAANAAIAAggAIYQFAAARmggBC3ZCYzU2yIA.QFulWfTw4obx_Z2zUj6XkNIAeIAACAIgSAAQAIAgEQACEABAAAgAQFAEAIAAAGBAAgAAAAQAIFAAMCQAAgAAQiRAEQAAAAANAAIAAggAIYQFAAARmggBC3ZCYzU2yIA',
  },
  {
    name: 'iabtcf-es-issue-201-duplicate-restrictions',
    source: 'iabtcf-es modules/core/test/ReportedIssues.test.ts, issue 201: a purpose restriction repeated for the same vendors; the test expects purpose 1 / require-consent vendors [7,20,71,122,140,183]',
    tcString: 'CO4VGswO4VGswAfZCBDEAzCsAP_AAH_AAAigGUNf_X9fb2vj-_599_t0eY1f9_63t-wzjheMs-8NyZ-X_J4Wv2MyvB34JqQKGRgkunLBAQdtHGncTQgBwIlViTLMY02MjzNKJrJEilsbe2dYGH9vn8XT_ZKZ70-_v__7v3___33_5Ayhr_6_r7e18f3_Pvv9ujzGr_v_W9v2GccLxln3huTPy_5PC1-xmV4O_BNSBQyMEl05YICDto407iaEAOBEqsSZZjGmxkeZpRNZIkUtjb2zrAw_t8_i6f7JTPen39___d-___--__ICgKAOAAcAA4AFAAjgB6AEYALcGACAW0AtoJAHAAOAAcACgARwA9ACMAFuFABALaAW0GgDgAHAAOABQAI4AegBGAC3DgAgFtALaEQBwADgAHAAoAEcAPQAjABbiQAQC2gFtCoA4ABwADgAUACOAHoARgAtxYAIBbQC2hkAcAA4ABwAKABHAD0AIwAW40AEAtoBbQ6AOAAcAA4AFAAjgB6AEYALceACAW0AtohAHAAOAAcACgARwA9ACMAFuRABALaAW0SgDgAHAAOABQAI4AegBGAC3JgAgFtALaKQBwADgAHAAoAEcAPQAjABblQAQC2gFtA',
  },
];

// ---------------------------------------------------------------------------
// Reports, in the library's own words.

const ids = (vector) => [...vector.values()].map(Number).sort((a, b) => a - b);

// segmentsOf names the segments of s the way TCString.decode identifies them:
// the first three bits of each segment.
const segmentsOf = (s) => s.split('.').map((seg) => {
  const bits = Base64Url.decode(seg.charAt(0));
  return SegmentIDs.ID_TO_KEY[parseInt(bits.substr(0, BitLength.segmentType), 2)];
});

// encodingOf asks the library's vendor-vector encoder which encoding it picks
// for a set (bit 16, after the 16-bit MaxVendorId, is IsRangeEncoding).
const encodingOf = (vector) => (VendorVectorEncoder.encode(vector).charAt(BitLength.maxId) === '1' ? 'range' : 'bitfield');

function report(tcString, { withEncodings }) {
  const d = TCString.decode(tcString);
  const restrictions = d.publisherRestrictions.getRestrictions()
    .map((pr) => ({ purposeId: pr.purposeId, restrictionType: pr.restrictionType, vendors: d.publisherRestrictions.getVendors(pr) }))
    .sort((a, b) => a.purposeId - b.purposeId || a.restrictionType - b.restrictionType);
  const out = {
    segments: segmentsOf(tcString),
    version: d.version,
    created: d.created.getTime(),
    lastUpdated: d.lastUpdated.getTime(),
    cmpId: d.cmpId,
    cmpVersion: d.cmpVersion,
    consentScreen: d.consentScreen,
    consentLanguage: d.consentLanguage,
    vendorListVersion: d.vendorListVersion,
    policyVersion: d.policyVersion,
    isServiceSpecific: d.isServiceSpecific,
    useNonStandardTexts: d.useNonStandardTexts,
    purposeOneTreatment: d.purposeOneTreatment,
    publisherCountryCode: d.publisherCountryCode,
    specialFeatureOptins: ids(d.specialFeatureOptins),
    purposeConsents: ids(d.purposeConsents),
    purposeLegitimateInterests: ids(d.purposeLegitimateInterests),
    vendorConsents: ids(d.vendorConsents),
    vendorLegitimateInterests: ids(d.vendorLegitimateInterests),
    vendorsDisclosed: ids(d.vendorsDisclosed),
    vendorsAllowed: ids(d.vendorsAllowed),
    publisherRestrictions: restrictions,
    publisherConsents: ids(d.publisherConsents),
    publisherLegitimateInterests: ids(d.publisherLegitimateInterests),
    numCustomPurposes: Number(d.numCustomPurposes),
    publisherCustomConsents: ids(d.publisherCustomConsents),
    publisherCustomLegitimateInterests: ids(d.publisherCustomLegitimateInterests),
  };
  if (withEncodings) {
    // Only meaningful for strings this library encoded: for those, the
    // choice it makes for the decoded set is the choice it made when
    // encoding (MaxVendorId is the highest set id in both).
    out.vendorConsentsEncoding = encodingOf(d.vendorConsents);
    out.vendorLegitimateInterestsEncoding = encodingOf(d.vendorLegitimateInterests);
    if (out.segments.includes(Segment.VENDORS_DISCLOSED)) out.vendorsDisclosedEncoding = encodingOf(d.vendorsDisclosed);
  }
  return out;
}

const valid = [];
for (const v of vectors) {
  const gvl = makeGVL(v.gvl);
  const model = new TCModel(gvl);
  v.build(model);
  const options = { ...(v.options ?? {}) };
  if (v.segments) options.segments = v.segments;
  const tcString = TCString.encode(model, options);
  valid.push({ name: v.name, source: `encoded by @iabtechlabtcf/core ${libVersion}`, note: v.note, tcString, expected: report(tcString, { withEncodings: true }) });
}
for (const v of external) {
  valid.push({ name: v.name, source: v.source, tcString: v.tcString, expected: report(v.tcString, { withEncodings: false }) });
}

// ---------------------------------------------------------------------------
// Invalid strings. Package tcf must reject every one; libraryRejects records
// whether the official library also throws (it is laxer in places: it reads
// past the end of a truncated field as if the missing bits were absent).

const encodeBits = (bits) => Base64Url.encode(bits);
const int = (value, width) => value.toString(2).padStart(width, '0');

// A library-made core whose vendor sections we can splice: the fixed-width
// core header is everything before the vendor consent section.
const base = valid.find((v) => v.name === 'purpose-one-only').tcString.split('.')[0];
const headerBits = Base64Url.decode(base).substr(0, 213);
if (parseInt(headerBits.substr(0, 6), 2) !== 2) throw new Error('header splice is off');
const emptyVendorSection = int(0, 16) + '0';

const v1Model = new TCModel(makeGVL({ vendorListVersion: 12, vendors: [1, 2, 3] }));
v1Model.cmpId = 10;
v1Model.cmpVersion = 1;
v1Model.created = new Date(DAY);
v1Model.lastUpdated = new Date(DAY);
v1Model.purposeConsents.set([1, 2]);
v1Model.vendorConsents.set([1, 2, 3]);
const v1String = TCString.encode(v1Model, { version: 1 });

const good = valid.find((v) => v.name === 'publisher-tc-custom-purposes').tcString;
const [goodCore, goodDisclosed, goodPub] = good.split('.');

const invalidList = [
  { name: 'empty', tcString: '' },
  { name: 'version-1-string', tcString: v1String, note: 'TCF v1.1 consent string encoded by the official library ({version: 1})' },
  { name: 'truncated-core', tcString: goodCore.slice(0, 20) },
  { name: 'truncated-core-in-vendor-section', tcString: goodCore.slice(0, 38) },
  { name: 'standard-base64-plus', tcString: goodCore.slice(0, 10) + '+' + goodCore.slice(11) },
  { name: 'standard-base64-slash', tcString: goodCore.slice(0, 10) + '/' + goodCore.slice(11) },
  { name: 'space-inside', tcString: goodCore.slice(0, 10) + ' ' + goodCore.slice(11) },
  { name: 'padding-inside', tcString: goodCore.slice(0, 10) + '=' + goodCore.slice(11) },
  { name: 'too-much-padding', tcString: goodCore + '===' },
  { name: 'empty-segment', tcString: goodCore + '..' + goodPub },
  { name: 'trailing-dot', tcString: goodCore + '.' },
  { name: 'leading-dot', tcString: '.' + goodCore },
  {
    name: 'range-more-entries-than-bits',
    note: 'vendor consents claim 4095 range entries but carry one',
    tcString: encodeBits(headerBits + int(100, 16) + '1' + int(4095, 12) + '0' + int(7, 16)),
  },
  {
    name: 'bitfield-shorter-than-max-vendor-id',
    note: 'MaxVendorId 65535 with a handful of bits after it',
    tcString: encodeBits(headerBits + int(65535, 16) + '0' + '1'.repeat(30)),
  },
  {
    name: 'publisher-restrictions-count-past-end',
    note: 'NumPubRestrictions 4095 with nothing after it',
    tcString: encodeBits(headerBits + emptyVendorSection + emptyVendorSection + int(4095, 12)),
  },
  {
    name: 'unknown-segment-type-4',
    tcString: `${goodCore}.${encodeBits(int(4, 3) + '0'.repeat(45))}`,
  },
  {
    name: 'unknown-segment-type-7',
    tcString: `${goodCore}.${encodeBits(int(7, 3) + '0'.repeat(45))}`,
  },
  { name: 'core-segment-twice', tcString: `${goodCore}.${goodCore}` },
  { name: 'disclosed-vendors-twice', tcString: `${goodCore}.${goodDisclosed}.${goodDisclosed}` },
  { name: 'publisher-tc-twice', tcString: `${goodCore}.${goodPub}.${goodPub}` },
  { name: 'segment-without-core', tcString: goodDisclosed },
  {
    name: 'publisher-tc-custom-purposes-past-end',
    note: 'NumCustomPurposes 63 and no bits for them',
    tcString: `${goodCore}.${encodeBits(int(3, 3) + '0'.repeat(48) + int(63, 6))}`,
  },
  {
    name: 'iabtcf-es-issue-142-bitfield-length',
    note: 'iabtcf-es ReportedIssues.test.ts issue 142: bitfield length does not match MaxVendorId',
    tcString: 'CLSYjTaOngnCIAOABBENAXCMAGOAABBAAA7IA5n-m7fP6_3fbqVv6E__PoA5Aqff3aJx8tv_1967rfnQEQoAIAAQCrwkAEABAcACABIMACAAuApEVABABUSABgBCAVSAtIoACACIArYQAHACgAFgAVwBJgDcAI7AWgMAAgBiKgAgBMgFfKQAQBRkQAQA4AFiBAAoA-AEVAJlAVgAtYcACAJcAr4eABAK8OgBgFzAOmAqwgABAWyA.IFukWSQh',
  },
  {
    name: 'spec-example-duplicate-disclosed-segment',
    note: 'a v2.0 spec example whose last segment is a second DisclosedVendors segment (type 1) that does not decode',
    tcString: 'COvFyGBOvFyGBAbAAAENAPCAAOAAAAAAAAAAAEEUACCKAAA.IFoEUQQgAIQwgIwQABAEAAAAOIAACAIAAAAQAIAgEAACEAAAAAgAQBAAAAAAAGBAAgAAAAAAAFAAECAAAgAAQARAEQAAAAAJAAIAAgAAAYQEAAAQmAgBC3ZAYzUw.PVAfDObdrA',
  },
];

const invalid = invalidList.map((v) => {
  let libraryRejects = true;
  try {
    const d = TCString.decode(v.tcString);
    // A v1 string decodes fine in the library (it supports v1); what counts
    // for us is that it is not a v2 string.
    libraryRejects = d.version !== 2;
  } catch (e) {
    libraryRejects = true;
  }
  return { name: v.name, note: v.note, tcString: v.tcString, libraryRejects };
});

const out = {
  comment: 'Generated by consent/tcf/testdata/gen/gen.mjs; do not edit. Expected values are what the official IAB library reports after TCString.decode.',
  library: { name: '@iabtechlabtcf/core', version: libVersion },
  valid,
  invalid,
};
// Indented for review, but each id list on one line: a vector with 1500
// vendor ids stays one line instead of 1500.
const text = JSON.stringify(out, null, 2).replace(/\[\s*([0-9][0-9,\s]*?)\s*\]/g, (_, body) => `[${body.split(/[\s,]+/).filter(Boolean).join(',')}]`);
writeFileSync(join(here, '..', 'vectors.json'), text + '\n');
console.log(`wrote ${valid.length} valid and ${invalid.length} invalid vectors (@iabtechlabtcf/core ${libVersion})`);
