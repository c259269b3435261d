package demo

import (
	"bufio"
	"bytes"
	"cmp"
	_ "embed"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/trustloop/trustloop"
)

// sessionsJSONL is the OTTO sample (CC-BY 4.0, see data/README.md).
//
//go:embed data/sessions.jsonl
var sessionsJSONL []byte

// Seed fixes every made-up choice: ids, devices, prices, categories and where
// in the window each session falls. Changing it makes a different demo whose
// messageIds still match the old one's (they come from the sessions alone).
const Seed = 20220801

// Window is how far back from Now the sessions are spread; the longest OTTO
// session spans 27.9 days, so each keeps its own rhythm inside it.
const Window = 28 * 24 * time.Hour

// margin keeps the newest event this much before Now, so no event is ever in
// the server's future even if its clock is a little behind the loader's.
const margin = 10 * time.Minute

// visitGap splits a session into visits: a pause this long starts a new one
// (the usual web-analytics session timeout), and each visit is on one device.
const visitGap = 30 * time.Minute

// MaxBatch is the most events one request carries (the collector takes
// 2,500; 500 keeps a request of large orders far below its 500 KB).
const MaxBatch = 500

// maxBatchBytes bounds one request's body, under the collector's 500 KB.
const maxBatchBytes = 400 << 10

// Event names of Segment's e-commerce spec (v2) and consent.
const (
	EventViewed  = "Product Viewed"
	EventAdded   = "Product Added"
	EventOrdered = "Order Completed"
	EventConsent = "Segment Consent Preference Updated"
)

// Customer is one made-up customer around one real session.
type Customer struct {
	// Index is the customer's position (the session's line in the data);
	// errors and logs name customers by it, never by an identifier.
	Index   int
	Session int64
	// UserID, Email, FirstName and LastName are empty for a customer who stays
	// anonymous.
	UserID, Email, FirstName, LastName string
	Devices                            []Device
	// Consent is the categoryPreferences the customer's banner sends (Segment's
	// category names); nil when they never answer it.
	Consent map[string]bool
	// GPC: their browsers send `Sec-GPC: 1`.
	GPC bool
}

// Identifier is how the API finds the customer: their email, or the anonymous
// id of their first device.
func (c *Customer) Identifier() string {
	if c.Email != "" {
		return trustloop.IDEmail + ":" + c.Email
	}
	return trustloop.IDAnonymousID + ":" + c.Devices[0].AnonymousID
}

// Device is one browser or app a customer uses.
type Device struct {
	// Kind is "web" or "app".
	Kind string
	// Name says which, for people ("desktop browser", "iPhone app", …).
	Name        string
	AnonymousID string
	// DeviceID is the app's device id (context.device.id); empty on the web.
	DeviceID string
	context  map[string]any
}

// Batch is one request to /v1/batch: one customer's events, in time order.
type Batch struct {
	Customer int
	// GPC: the request carries `Sec-GPC: 1`.
	GPC      bool
	Messages []json.RawMessage
}

// Body is the request body.
func (b *Batch) Body() []byte {
	var buf bytes.Buffer
	buf.WriteString(`{"batch":[`)
	for i, m := range b.Messages {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(m)
	}
	buf.WriteString(`]}`)
	return buf.Bytes()
}

// ConsentChange is a later change a customer makes through the business's
// authenticated channel (PUT /v1/profiles/{id}/consent).
type ConsentChange struct {
	Customer int
	Purposes map[string]bool
}

// PrivacyRequest is one request filed with POST /v1/privacy-requests.
type PrivacyRequest struct {
	Customer int
	Type     string
	// Verified false leaves the request received, awaiting verification.
	Verified bool
	Suppress bool
	// Wait: the load waits until the request is completed.
	Wait bool
}

// Plan is everything the demo sends, in order.
type Plan struct {
	Customers       []Customer
	Batches         []Batch
	ConsentChanges  []ConsentChange
	PrivacyRequests []PrivacyRequest
	// SessionEvents counts the OTTO events mapped (clicks, carts, orders).
	SessionEvents int
	// Events counts the messages in all batches.
	Events int
	// From and To are the oldest and newest event times.
	From, To time.Time
	// Portal is the customer whose preference center to open: signed in,
	// several devices, and a consent history.
	Portal int
}

// persona is the made-up part of a customer.
type persona struct {
	first, last string // empty: stays anonymous
	devices     []deviceKind
	prefs       map[string]bool // nil: never answers the banner
	gpc         bool
}

type deviceKind int

const (
	webDesktop deviceKind = iota
	webFirefox
	webMobile
	iosApp
	androidApp
)

// Banner answers, in the category names of Segment's consent manager; the
// catalog maps Functional to personalization and Advertising to marketing.
var (
	allYes   = map[string]bool{"Analytics": true, "Functional": true, "Advertising": true}
	noAds    = map[string]bool{"Analytics": true, "Functional": true, "Advertising": false}
	noChoice = map[string]bool(nil)
	// A GPC-aware banner does not ask for what the browser already refused.
	gpcAware      = map[string]bool{"Analytics": true, "Functional": true}
	analyticsOnly = map[string]bool{"Analytics": true, "Functional": false, "Advertising": false}
)

// personas line up with the sessions in the data, in order. The big sessions
// get signed-in customers on several devices; four small ones stay anonymous.
var personas = []persona{
	{"Mara", "Schulz", []deviceKind{webDesktop, iosApp, webMobile}, allYes, false},
	{"Jonas", "Becker", []deviceKind{androidApp, webDesktop}, allYes, false},
	{"Lea", "Hoffmann", []deviceKind{webDesktop, iosApp}, noAds, false},
	{"Felix", "Wagner", []deviceKind{webDesktop, androidApp, webMobile}, allYes, false},
	{"Sophie", "Klein", []deviceKind{webMobile}, allYes, false},
	{"Paul", "Richter", []deviceKind{webFirefox, webMobile}, gpcAware, true},
	{"Emma", "Wolf", []deviceKind{webDesktop, iosApp}, noAds, false},
	{"Lukas", "Neumann", []deviceKind{webDesktop}, noChoice, false},
	{"Hannah", "Schwarz", []deviceKind{webMobile}, allYes, false},
	{"Noah", "Zimmermann", []deviceKind{webFirefox, webMobile}, gpcAware, true},
	{"Mia", "Krüger", []deviceKind{iosApp}, noAds, false},
	{"", "", []deviceKind{webMobile}, analyticsOnly, false},
	{"", "", []deviceKind{webDesktop}, noChoice, false},
	{"Ben", "Hartmann", []deviceKind{androidApp}, allYes, false},
	{"", "", []deviceKind{webDesktop}, allYes, false},
	{"Lina", "Braun", []deviceKind{webMobile}, noChoice, false},
	{"Elias", "Koch", []deviceKind{webDesktop}, noAds, false},
	{"Clara", "Lange", []deviceKind{iosApp}, allYes, false},
	{"", "", []deviceKind{webMobile}, noAds, false},
	{"Leon", "Frank", []deviceKind{webDesktop}, allYes, false},
}

// Later changes and requests, by customer index (see personas).
var (
	consentChanges = []ConsentChange{
		{Customer: 0, Purposes: map[string]bool{trustloop.PurposeMarketing: false}},
		{Customer: 4, Purposes: map[string]bool{trustloop.PurposeMarketing: false}},
		{Customer: 1, Purposes: map[string]bool{trustloop.PurposeMarketing: false}},
		// Jonas changes his mind back: a renewed yes.
		{Customer: 1, Purposes: map[string]bool{trustloop.PurposeMarketing: true}},
	}
	privacyRequests = []PrivacyRequest{
		{Customer: 8, Type: trustloop.RequestErasure, Verified: true, Suppress: true, Wait: true},
		{Customer: 3, Type: trustloop.RequestAccess, Verified: true},
		{Customer: 13, Type: trustloop.RequestPortability, Verified: false},
		{Customer: 6, Type: trustloop.RequestObjection, Verified: true},
		{Customer: 10, Type: trustloop.RequestRestriction, Verified: true},
	}
	portalCustomer = 0
)

type ottoEvent struct {
	AID  int64  `json:"aid"`
	TS   int64  `json:"ts"`
	Type string `json:"type"`
}

type ottoSession struct {
	Session int64       `json:"session"`
	Events  []ottoEvent `json:"events"`
}

func readSessions() ([]ottoSession, error) {
	var out []ottoSession
	sc := bufio.NewScanner(bytes.NewReader(sessionsJSONL))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var s ottoSession
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			return nil, trustloop.Errorf(trustloop.EINTERNAL, "Demo data: line %d is not a session: %v.", len(out)+1, err)
		}
		if len(s.Events) == 0 || !slices.IsSortedFunc(s.Events, func(a, b ottoEvent) int { return int(a.TS - b.TS) }) {
			return nil, trustloop.Errorf(trustloop.EINTERNAL, "Demo data: session on line %d is empty or out of time order.", len(out)+1)
		}
		out = append(out, s)
	}
	if len(out) != len(personas) {
		return nil, trustloop.Errorf(trustloop.EINTERNAL, "Demo data: %d sessions for %d customers.", len(out), len(personas))
	}
	return out, sc.Err()
}

// Build maps the sessions to what the demo sends. It is a pure function of the
// embedded data, Seed and now: the same now gives the same bytes, and any now
// gives the same messageIds.
func Build(now time.Time) (*Plan, error) {
	sessions, err := readSessions()
	if err != nil {
		return nil, err
	}
	p := &Plan{ConsentChanges: consentChanges, PrivacyRequests: privacyRequests, Portal: portalCustomer}
	for i, s := range sessions {
		// One generator per customer: a change to one persona leaves the
		// others' made-up values as they were.
		rng := rand.New(rand.NewPCG(Seed, uint64(i)))
		c, msgs := buildCustomer(i, s, personas[i], rng, now)
		p.Customers = append(p.Customers, c)
		p.SessionEvents += len(s.Events)
		for _, b := range split(i, c.GPC, msgs) {
			p.Batches = append(p.Batches, b)
			p.Events += len(b.Messages)
		}
		for _, m := range msgs {
			if p.From.IsZero() || m.at.Before(p.From) {
				p.From = m.at
			}
			if m.at.After(p.To) {
				p.To = m.at
			}
		}
	}
	return p, nil
}

// message is one event under construction: rel is its time relative to the
// session's first OTTO event, in milliseconds (made-up events just before a
// real one are negative at the start).
type message struct {
	rel  int64
	at   time.Time
	body map[string]any
	raw  json.RawMessage
}

func buildCustomer(i int, s ottoSession, p persona, rng *rand.Rand, now time.Time) (Customer, []message) {
	c := Customer{Index: i, Session: s.Session, Consent: p.prefs, GPC: p.gpc}
	if p.first != "" {
		c.FirstName, c.LastName = p.first, p.last
		c.Email = emailOf(p.first, p.last)
		c.UserID = fmt.Sprintf("cust-%07d", 1_000_000+rng.IntN(9_000_000))
	}
	visits := splitVisits(s.Events)
	nd := min(len(p.devices), len(visits))
	for d := range nd {
		c.Devices = append(c.Devices, newDevice(p.devices[d], rng))
	}
	onDevice := assignDevices(len(visits), nd, rng)

	var msgs []message
	add := func(rel int64, dev int, body map[string]any) {
		body["anonymousId"] = c.Devices[dev].AnonymousID
		body["context"] = c.contextOf(dev)
		msgs = append(msgs, message{rel: rel, body: body})
	}
	first := s.Events[0].TS
	seen := make([]bool, nd) // the device has had a visit
	identify := func(rel int64, dev int) {
		add(rel, dev, map[string]any{"type": "identify", "userId": c.UserID,
			"traits": map[string]any{"email": c.Email, "firstName": c.FirstName, "lastName": c.LastName}})
	}
	orderNo := 0
	for v, evs := range visits {
		dev := onDevice[v]
		t0 := evs[0].TS - first
		if !seen[dev] {
			seen[dev] = true
			if c.Consent != nil {
				// The banner answers before anything else is sent
				// (Segment's consent wrapper holds events until then).
				add(t0-3000, dev, map[string]any{"type": "track", "event": EventConsent})
			}
			if dev > 0 && c.UserID != "" {
				// The app or second browser is already signed in: its
				// identify joins this device to the customer.
				identify(t0-2500, dev)
			}
		}
		add(t0-2000, dev, c.Devices[dev].visitStart(v, evs[0].AID))
		// On the first device the customer signs in after a look around,
		// and before a checkout at the latest.
		login := -1
		if dev == 0 && v == 0 && c.UserID != "" {
			login = min(2, len(evs)-1)
			if o := slices.IndexFunc(evs, func(e ottoEvent) bool { return e.Type == "orders" }); o >= 0 {
				login = min(login, o)
			}
		}
		for k := 0; k < len(evs); k++ {
			e := evs[k]
			rel := e.TS - first
			if k == login {
				at := rel - 1000
				if k > 0 {
					at = (evs[k-1].TS - first + rel) / 2
				}
				identify(at, dev)
			}
			switch e.Type {
			case "clicks":
				add(rel, dev, map[string]any{"type": "track", "event": EventViewed, "properties": c.Devices[dev].product(e.AID, false)})
			case "carts":
				add(rel, dev, map[string]any{"type": "track", "event": EventAdded, "properties": c.Devices[dev].product(e.AID, true)})
			case "orders":
				// OTTO logs one row per product ordered; the rows of one
				// checkout share their time and become one order.
				var aids []int64
				for ; k < len(evs) && evs[k].Type == "orders" && evs[k].TS == e.TS; k++ {
					aids = append(aids, evs[k].AID)
				}
				k--
				orderNo++
				add(rel, dev, map[string]any{"type": "track", "event": EventOrdered,
					"properties": order(fmt.Sprintf("ORD-%d-%d", s.Session, orderNo), aids)})
			}
		}
	}
	attachUsers(&c, msgs)
	place(msgs, rng, now)
	for k := range msgs {
		m := &msgs[k]
		m.body["messageId"] = fmt.Sprintf("demo-%d-%04d", s.Session, k)
		m.body["timestamp"] = m.at.UTC().Format("2006-01-02T15:04:05.000Z")
		if c.Consent != nil {
			ctx := m.body["context"].(map[string]any)
			ctx["consent"] = map[string]any{"categoryPreferences": c.Consent}
		}
		m.raw, _ = json.Marshal(m.body) // maps of strings, numbers and bools: cannot fail
	}
	return c, msgs
}

// attachUsers sets userId on every event a device sends from its identify on:
// the library remembers who signed in.
func attachUsers(c *Customer, msgs []message) {
	if c.UserID == "" {
		return
	}
	slices.SortStableFunc(msgs, func(a, b message) int { return cmp.Compare(a.rel, b.rel) })
	in := map[string]bool{}
	for _, m := range msgs {
		anon := m.body["anonymousId"].(string)
		if m.body["type"] == "identify" {
			in[anon] = true
		}
		if in[anon] {
			m.body["userId"] = c.UserID
		}
	}
}

// place moves the customer's events into the window before now, keeping the
// session's rhythm: one shift for all its events, chosen by the seed. A
// session longer than the window (none in the data) would be compressed.
func place(msgs []message, rng *rand.Rand, now time.Time) {
	slices.SortStableFunc(msgs, func(a, b message) int { return cmp.Compare(a.rel, b.rel) })
	lo, hi := msgs[0].rel, msgs[len(msgs)-1].rel
	span := hi - lo
	avail := (Window - margin).Milliseconds()
	scale := 1.0
	if span > avail {
		scale, span = float64(avail)/float64(span), avail
	}
	// The offset depends on the seed and the span only, not on now: the same
	// demo lands at the same place relative to any now.
	start := now.Add(-Window).UnixMilli() + rng.Int64N(avail-span+1)
	for k := range msgs {
		d := msgs[k].rel - lo
		if scale != 1 {
			d = int64(float64(d) * scale)
		}
		msgs[k].at = time.UnixMilli(start + d).UTC()
	}
}

// split cuts a customer's events into requests of at most MaxBatch events and
// maxBatchBytes.
func split(customer int, gpc bool, msgs []message) []Batch {
	var out []Batch
	cur := Batch{Customer: customer, GPC: gpc}
	size := 0
	for _, m := range msgs {
		if len(cur.Messages) == MaxBatch || (len(cur.Messages) > 0 && size+len(m.raw)+16 > maxBatchBytes) {
			out = append(out, cur)
			cur, size = Batch{Customer: customer, GPC: gpc}, 0
		}
		cur.Messages = append(cur.Messages, m.raw)
		size += len(m.raw) + 1
	}
	if len(cur.Messages) > 0 {
		out = append(out, cur)
	}
	return out
}

// splitVisits cuts a session at pauses of visitGap or more.
func splitVisits(evs []ottoEvent) [][]ottoEvent {
	var out [][]ottoEvent
	start := 0
	for k := 1; k <= len(evs); k++ {
		if k == len(evs) || evs[k].TS-evs[k-1].TS >= visitGap.Milliseconds() {
			out = append(out, evs[start:k])
			start = k
		}
	}
	return out
}

// assignDevices says on which device each visit happens: the first on the
// first device, most on it, and every device used at least once.
func assignDevices(visits, devices int, rng *rand.Rand) []int {
	on := make([]int, visits)
	count := make([]int, devices)
	count[0] = 1
	for v := 1; v < visits; v++ {
		if rng.IntN(100) >= 55 {
			on[v] = rng.IntN(devices)
		}
		count[on[v]]++
	}
	for d := 1; d < devices; d++ {
		if count[d] > 0 {
			continue
		}
		// Some device has two visits (there are at least as many visits as
		// devices): the latest of those moves here.
		for v := visits - 1; v >= 1; v-- {
			if count[on[v]] > 1 {
				count[on[v]]--
				on[v] = d
				count[d]++
				break
			}
		}
	}
	return on
}

func emailOf(first, last string) string {
	r := strings.NewReplacer("ä", "ae", "ö", "oe", "ü", "ue", "ß", "ss")
	return r.Replace(strings.ToLower(first)) + "." + r.Replace(strings.ToLower(last)) + "@example.com"
}

// uuid makes a version-4 UUID from the generator.
func uuid(rng *rand.Rand) string {
	var b [16]byte
	for i := range b {
		b[i] = byte(rng.UintN(256))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

const shopURL = "https://shop.example.com"

func newDevice(k deviceKind, rng *rand.Rand) Device {
	d := Device{Kind: "web", AnonymousID: uuid(rng)}
	ctx := map[string]any{"locale": "de-DE", "timezone": "Europe/Berlin"}
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	switch k {
	case webDesktop:
		d.Name = "desktop browser"
		ctx["userAgent"] = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/" +
			pick("124.0.0.0", "125.0.0.0", "126.0.0.0") + " Safari/537.36"
		ctx["screen"] = map[string]any{"width": 1920, "height": 1080}
	case webFirefox:
		d.Name = "desktop browser"
		ctx["userAgent"] = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.5; rv:127.0) Gecko/20100101 Firefox/127.0"
		ctx["screen"] = map[string]any{"width": 1512, "height": 982}
	case webMobile:
		d.Name = "phone browser"
		v := pick("17_4", "17_5", "17_6")
		ctx["userAgent"] = "Mozilla/5.0 (iPhone; CPU iPhone OS " + v + " like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/" +
			strings.ReplaceAll(v, "_", ".") + " Mobile/15E148 Safari/604.1"
		ctx["screen"] = map[string]any{"width": 390, "height": 844}
	case iosApp:
		d.Kind, d.Name, d.DeviceID = "app", "iPhone app", strings.ToUpper(uuid(rng))
		ctx["device"] = map[string]any{"id": d.DeviceID, "manufacturer": "Apple", "model": pick("iPhone14,5", "iPhone15,2", "iPhone16,1"), "type": "ios"}
		ctx["os"] = map[string]any{"name": "iOS", "version": pick("17.4.1", "17.5.1")}
		ctx["library"] = map[string]any{"name": "analytics-swift", "version": "1.5.11"}
	case androidApp:
		d.Kind, d.Name, d.DeviceID = "app", "Android app", fmt.Sprintf("%016x", rng.Uint64())
		ctx["device"] = map[string]any{"id": d.DeviceID, "manufacturer": "samsung", "model": pick("SM-S911B", "SM-A546B", "SM-G991B"), "type": "android"}
		ctx["os"] = map[string]any{"name": "Android", "version": pick("13", "14")}
		ctx["library"] = map[string]any{"name": "analytics-kotlin", "version": "1.16.0"}
	}
	if d.Kind == "app" {
		ctx["app"] = map[string]any{"name": "Shop", "version": "5.12.0", "build": "51200", "namespace": "com.example.shop"}
	} else {
		ctx["library"] = map[string]any{"name": "analytics.js", "version": "next-1.70.0"}
	}
	d.context = ctx
	return d
}

// contextOf returns a fresh copy of the device's context for one event (the
// consent member is added per event).
func (c *Customer) contextOf(dev int) map[string]any {
	out := make(map[string]any, len(c.Devices[dev].context)+1)
	for k, v := range c.Devices[dev].context {
		out[k] = v
	}
	return out
}

// visitStart is the page (web) or screen (app) call a visit opens with.
func (d *Device) visitStart(visit int, landing int64) map[string]any {
	name, path := "Product", "/p/"+strconv.FormatInt(landing, 10)
	if visit == 0 {
		name, path = "Home", "/"
	}
	if d.Kind == "app" {
		return map[string]any{"type": "screen", "name": name}
	}
	return map[string]any{"type": "page", "name": name, "properties": map[string]any{
		"path": path, "url": shopURL + path, "title": name + " | Shop"}}
}

// Product catalogue: OTTO publishes product ids only, so names, prices and
// categories are made up, the same for a product wherever it appears.
var categories = []string{"Fashion", "Shoes", "Home & Living", "Electronics", "Sports", "Toys", "Beauty", "Kitchen", "Garden", "Furniture"}

func productHash(aid int64) uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%d/%d", Seed, aid)
	return h.Sum64()
}

// priceCents is a shop-like price: 4.99 to 299.99, ending in .99, .95 or .00.
func priceCents(aid int64) int64 {
	h := productHash(aid)
	euros := 4 + int64(h%296)
	return euros*100 + []int64{99, 95, 100}[(h>>20)%3]
}

func category(aid int64) string { return categories[(productHash(aid)>>40)%uint64(len(categories))] }

func money(cents int64) float64 { return float64(cents) / 100 }

func (d *Device) product(aid int64, added bool) map[string]any {
	id := strconv.FormatInt(aid, 10)
	p := map[string]any{"product_id": id, "sku": "OTTO-" + id, "name": "Product " + id, "price": money(priceCents(aid)),
		"currency": "EUR", "category": category(aid)}
	if added {
		p["quantity"] = 1
	}
	if d.Kind == "web" {
		p["url"] = shopURL + "/p/" + id
	}
	return p
}

// order is an Order Completed's properties: revenue excludes shipping and
// tax (the spec's meaning); prices include 19 % VAT, as German shops show them.
func order(id string, aids []int64) map[string]any {
	var revenue int64
	products := make([]map[string]any, 0, len(aids))
	for n, aid := range aids {
		pid := strconv.FormatInt(aid, 10)
		revenue += priceCents(aid)
		products = append(products, map[string]any{"product_id": pid, "sku": "OTTO-" + pid, "name": "Product " + pid,
			"price": money(priceCents(aid)), "quantity": 1, "category": category(aid), "position": n + 1})
	}
	shipping := int64(0)
	if revenue < 5000 {
		shipping = 495
	}
	total := revenue + shipping
	return map[string]any{"order_id": id, "affiliation": "Shop", "total": money(total), "revenue": money(revenue),
		"shipping": money(shipping), "tax": money(total * 19 / 119), "currency": "EUR", "products": products}
}
