package recommend

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/trustloop/trustloop"
)

// Offline evaluation, with the protocol of Microsoft Recommenders' benchmarks
// (the SAR MovieLens notebook and its reco_utils code): a per-user stratified
// random split (Split), the model trained on the training part with the items
// a user saw in training left out of their recommendations, and precision@k,
// recall@k, nDCG@k and MAP over the test part, every test interaction counting
// as relevant (Evaluate).

// Rating is one user–item interaction of an evaluation data set.
type Rating struct {
	User, Item string
	// Value is the interaction's weight (a MovieLens rating, or the summed
	// weights of a user's events on the item).
	Value float64
	// Time is in seconds since the epoch.
	Time int64
}

// MaxEvalLine is the longest line ReadRatings and ReadEvents read.
const MaxEvalLine = 1 << 20

// maxRatingTime bounds timestamps (seconds; about the year 5138), so that they
// are seconds and their milliseconds fit comfortably.
const maxRatingTime = 1e11

// lineError is a malformed-line error: its message names the line and what is
// wrong with it, never a value from it.
func lineError(line int, format string, args ...any) *trustloop.Error {
	return trustloop.Errorf(trustloop.EINVALID, "Line %d: %s.", line, fmt.Sprintf(format, args...)).
		WithHint(`A ratings file has user, item, rating and timestamp on each line, separated by TABs, "::" or commas (MovieLens' u.data or ratings.dat); an events file has one JSON object per line: a Segment message or an OTTO session.`)
}

// lines calls fn with each non-blank line (without its end of line, CR LF or
// LF, or a byte order mark) and its number, from 1.
func lines(r io.Reader, fn func(n int, line []byte) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), MaxEvalLine)
	n := 0
	for sc.Scan() {
		n++
		line := bytes.TrimSuffix(sc.Bytes(), []byte("\r"))
		if n == 1 {
			line = bytes.TrimPrefix(line, []byte("\xef\xbb\xbf")) // a UTF-8 byte order mark
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if err := fn(n, line); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return lineError(n+1, "longer than %d bytes", MaxEvalLine)
		}
		return err
	}
	return nil
}

// ReadRatings reads a MovieLens-style ratings file: one rating a line as
// user, item, rating and timestamp (seconds) separated by TABs (ML-100K's
// u.data), "::" (ML-1M's ratings.dat) or commas (ml-latest's ratings.csv, whose
// header line userId,movieId,rating,timestamp is skipped). The separator is the
// first data line's; blank lines are skipped. Ratings are plain decimal numbers
// (4, 3.5, 5e-1) and timestamps plain digits. A malformed line is an EINVALID
// error naming the line and the field at fault; so is a line that repeats an
// earlier line's user and item, and a file without ratings.
//
// A repeated pair is refused rather than summed (as ReadEvents sums a user's
// events on an item): a ratings file has one rating per user and item, so a
// repeat is a file joined with itself or a copy gone wrong, and left in, the
// split would train on one copy and test on the other.
func ReadRatings(r io.Reader) ([]Rating, error) {
	var (
		out []Rating
		sep string
	)
	// The line each user–item pair was first met on. The keys share the
	// ratings' strings.
	pairs := map[[2]string]int{}
	err := lines(r, func(n int, line []byte) error {
		s := string(line)
		if sep == "" {
			switch {
			case strings.Contains(s, "\t"):
				sep = "\t"
			case strings.Contains(s, "::"):
				sep = "::"
			case strings.Contains(s, ","):
				sep = ","
			default:
				return lineError(n, "no field separator (a TAB, \"::\" or a comma) between user, item, rating and timestamp")
			}
			if f := strings.Split(s, sep); len(f) == 4 && strings.EqualFold(strings.TrimSpace(f[2]), "rating") {
				return nil // the header line
			}
		}
		f := strings.Split(s, sep)
		if len(f) != 4 {
			return lineError(n, "want 4 fields (user, item, rating, timestamp), found %d", len(f))
		}
		for i := range f {
			f[i] = strings.TrimSpace(f[i])
		}
		rt := Rating{User: f[0], Item: f[1]}
		switch {
		case rt.User == "":
			return lineError(n, "the user is empty")
		case len(rt.User) > trustloop.MaxIdentifierLen:
			return lineError(n, "the user is longer than %d bytes", trustloop.MaxIdentifierLen)
		case rt.Item == "":
			return lineError(n, "the item is empty")
		case len(rt.Item) > MaxItemID:
			return lineError(n, "the item is longer than %d bytes", MaxItemID)
		case !utf8.ValidString(rt.User):
			return lineError(n, "the user is not valid UTF-8")
		case !utf8.ValidString(rt.Item):
			return lineError(n, "the item is not valid UTF-8")
		}
		// strconv alone would also take 0x1p1, 1_0, +5, Inf and NaN: no
		// ratings file writes those, so they are mistakes to point out.
		v, err := strconv.ParseFloat(f[2], 64)
		if err != nil || !plainDecimal(f[2]) || !(v > 0) || v > 1e6 {
			return lineError(n, "the rating is not a positive number up to 1e6 (written as 4, 3.5 or 5e-1)")
		}
		t, err := strconv.ParseInt(f[3], 10, 64)
		if err != nil || !digits(f[3]) || t > maxRatingTime {
			return lineError(n, "the timestamp is not whole seconds since 1970 (digits only)")
		}
		pair := [2]string{rt.User, rt.Item}
		if first, ok := pairs[pair]; ok {
			return trustloop.Errorf(trustloop.EINVALID, "Line %d repeats the user and item of line %d.", n, first).
				WithHint("A ratings file has one rating per user and item: remove the repeated line (or the earlier one), and check the file was not joined with itself.")
		}
		pairs[pair] = n
		rt.Value, rt.Time = v, t
		out = append(out, rt)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, trustloop.Errorf(trustloop.EINVALID, "The ratings file holds no ratings.").
			WithHint(`Give a file of user, item, rating and timestamp lines (separated by TABs, "::" or commas), such as MovieLens-100K's u.data.`)
	}
	return out, nil
}

// digits reports whether s is one or more ASCII digits.
func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// plainDecimal reports whether s is a plain decimal number: digits with at
// most one '.' among them (at least one digit in all), then optionally an
// exponent (e or E, an optional sign, digits). No sign, no hex, no '_'.
func plainDecimal(s string) bool {
	mant, exp, hasExp := s, "", false
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		mant, exp, hasExp = s[:i], s[i+1:], true
	}
	whole, frac, _ := strings.Cut(mant, ".")
	if whole == "" && frac == "" || whole != "" && !digits(whole) || frac != "" && !digits(frac) {
		return false
	}
	if !hasExp {
		return true
	}
	if exp != "" && (exp[0] == '+' || exp[0] == '-') {
		exp = exp[1:]
	}
	return digits(exp)
}

// EventCounts says what ReadEventsCounted made of an event export.
type EventCounts struct {
	// Events counts the events read (each event of an OTTO session).
	Events int `json:"events"`
	// Interactions counts the events that named a weighted event and a product.
	Interactions int `json:"interactions"`
	// Skipped counts the other events by reason: "not_interaction" (not a
	// track event, or an event with no weight), IgnoredNoProduct,
	// IgnoredLongID.
	Skipped map[string]int `json:"skipped"`
}

// NotInteraction is the reason an event that is not an interaction is
// skipped.
const NotInteraction = "not_interaction"

// OTTO's event types and the Segment events they stand for.
var ottoEvents = map[string]string{
	"clicks": "Product Viewed",
	"carts":  "Product Added",
	"orders": "Order Completed",
}

// eventTimeLayouts are the ISO-8601 forms Segment libraries send.
var eventTimeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999Z0700",
	"2006-01-02T15:04:05.999999999",
}

// ReadEvents reads an event export as ratings: see ReadEventsCounted.
func ReadEvents(r io.Reader, cfg Config) ([]Rating, error) {
	rs, _, err := ReadEventsCounted(r, cfg)
	return rs, err
}

// ReadEventsCounted reads an event export in JSON Lines: Segment messages as
// Trustloop (or Segment) exports them, one a line, or OTTO sessions
// ({"session":N,"events":[{"aid","ts","type"}]}, the OTTO recommender data
// set's format), told apart line by line. A Segment message's user is its
// userId, else its anonymousId; cfg.Extract says which events are interactions
// and with what items and weight. An OTTO session is the user "session-N";
// its clicks, carts and orders are Product Viewed, Product Added and Order
// Completed, weighted as cfg weights them. Events that are not interactions
// are skipped and counted.
//
// A user's interactions with one item become one Rating, in the order the
// pairs first appear: Value is the sum of their weights, Time the latest one's
// (seconds). So the split holds out user–item pairs, as MovieLens' rows are,
// and an item the user met again is never both trained on and held out.
//
// A line that is not a JSON object, or lacks what its format needs, is an
// EINVALID error naming the line and the field at fault; so is an export
// without interactions.
func ReadEventsCounted(r io.Reader, cfg Config) ([]Rating, EventCounts, error) {
	c, err := cfg.withDefaults()
	counts := EventCounts{Skipped: map[string]int{}}
	if err != nil {
		return nil, counts, err
	}
	var out []Rating
	at := map[[2]string]int{}
	add := func(user, item string, w float64, t int64) {
		k := [2]string{user, item}
		if i, ok := at[k]; ok {
			out[i].Value += w
			out[i].Time = max(out[i].Time, t)
			return
		}
		at[k] = len(out)
		out = append(out, Rating{User: user, Item: item, Value: w, Time: t})
	}
	err = lines(r, func(n int, line []byte) error {
		line = bytes.TrimSpace(line)
		if line[0] != '{' || !json.Valid(line) {
			return lineError(n, "not a JSON object")
		}
		var probe struct {
			Session json.RawMessage `json:"session"`
		}
		if err := json.Unmarshal(line, &probe); err != nil {
			return lineError(n, "not a JSON object")
		}
		if probe.Session != nil {
			return readOTTO(n, line, &c, &counts, add)
		}
		return readSegment(n, line, &c, &counts, add)
	})
	if err != nil {
		return nil, counts, err
	}
	if len(out) == 0 {
		return nil, counts, trustloop.Errorf(trustloop.EINVALID, "The export holds no interactions (%d events read).", counts.Events).
			WithHint("Interactions are track events with a weight (--weights) that name a product (properties.product_id or sku).")
	}
	return out, counts, nil
}

// fieldError names the member a JSON decoding error is about.
func fieldError(n int, err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return lineError(n, "%s has the wrong type", te.Field)
	}
	return lineError(n, "not a valid event")
}

func readSegment(n int, line []byte, c *Config, counts *EventCounts, add func(user, item string, w float64, t int64)) error {
	var m struct {
		Type              *string         `json:"type"`
		UserID            json.RawMessage `json:"userId"`
		AnonymousID       json.RawMessage `json:"anonymousId"`
		Event             string          `json:"event"`
		Timestamp         *string         `json:"timestamp"`
		OriginalTimestamp *string         `json:"originalTimestamp"`
	}
	if err := json.Unmarshal(line, &m); err != nil {
		return fieldError(n, err)
	}
	if m.Type == nil {
		return lineError(n, "no type")
	}
	typ, ok := trustloop.ParseEventType(*m.Type)
	if !ok {
		return lineError(n, "type is not a Segment call (track, identify, page, screen, group or alias)")
	}
	user, ok, err := segmentID(m.UserID)
	if err != nil {
		return lineError(n, "userId is not a string")
	}
	if !ok {
		if user, ok, err = segmentID(m.AnonymousID); err != nil {
			return lineError(n, "anonymousId is not a string")
		}
	}
	if !ok {
		return lineError(n, "neither userId nor anonymousId")
	}
	if len(user) > trustloop.MaxIdentifierLen {
		return lineError(n, "the user id is longer than %d bytes", trustloop.MaxIdentifierLen)
	}
	counts.Events++
	if _, weighted := c.Weights[m.Event]; typ != trustloop.EventTrack || !weighted {
		counts.Skipped[NotInteraction]++
		return nil
	}
	ts := m.Timestamp
	if ts == nil || *ts == "" {
		ts = m.OriginalTimestamp
	}
	if ts == nil || *ts == "" {
		return lineError(n, "no timestamp")
	}
	var t time.Time
	for _, l := range eventTimeLayouts {
		if t, err = time.Parse(l, *ts); err == nil {
			break
		}
	}
	if err != nil || t.Unix() < 0 || t.Unix() > maxRatingTime {
		return lineError(n, "timestamp is not an RFC 3339 time")
	}
	msg := trustloop.Message{Type: typ, Event: m.Event, Raw: line, Timestamp: t}
	in, reason := c.Extract(&msg)
	if in == nil {
		if reason == "" {
			reason = NotInteraction
		}
		counts.Skipped[reason]++
		return nil
	}
	counts.Interactions++
	for _, item := range in.Items {
		add(user, item, in.Weight, t.Unix())
	}
	return nil
}

// segmentID reads an identifier: a string, or a number taken as its literal
// text (as the collector does); ok is false when it is absent, null or empty.
func segmentID(raw json.RawMessage) (id string, ok bool, err error) {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) == 0 || string(raw) == "null":
		return "", false, nil
	case raw[0] == '"':
		if err := json.Unmarshal(raw, &id); err != nil {
			return "", false, err
		}
		id = strings.TrimSpace(id)
		return id, id != "", nil
	case raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9'):
		return string(raw), true, nil
	}
	return "", false, errors.New("not an identifier")
}

func readOTTO(n int, line []byte, c *Config, counts *EventCounts, add func(user, item string, w float64, t int64)) error {
	var s struct {
		Session json.RawMessage `json:"session"`
		Events  []struct {
			AID  json.RawMessage `json:"aid"`
			TS   json.RawMessage `json:"ts"`
			Type string          `json:"type"`
		} `json:"events"`
	}
	if err := json.Unmarshal(line, &s); err != nil {
		return fieldError(n, err)
	}
	// Whole numbers only, as JSON numbers (a quoted number is refused).
	whole := func(raw json.RawMessage) (int64, bool) {
		v, err := strconv.ParseInt(string(raw), 10, 64)
		return v, err == nil && v >= 0
	}
	session, ok := whole(s.Session)
	if !ok {
		return lineError(n, "session is not a whole number")
	}
	user := "session-" + strconv.FormatInt(session, 10)
	for i, e := range s.Events {
		aid, ok := whole(e.AID)
		if !ok {
			return lineError(n, "event %d: aid is not a whole number", i+1)
		}
		ts, ok := whole(e.TS)
		if !ok || ts/1000 > maxRatingTime {
			return lineError(n, "event %d: ts is not milliseconds since 1970", i+1)
		}
		name, ok := ottoEvents[e.Type]
		if !ok {
			return lineError(n, "event %d: type is not clicks, carts or orders", i+1)
		}
		counts.Events++
		w, ok := c.Weights[name]
		if !ok {
			counts.Skipped[NotInteraction]++
			continue
		}
		counts.Interactions++
		add(user, strconv.FormatInt(aid, 10), w, ts/1000)
	}
	return nil
}

// Split splits ratings per user as Microsoft Recommenders'
// python_stratified_split did when its SAR MovieLens benchmark was published
// (reco_utils, 2019–2021): each user's ratings are shuffled by a generator
// seeded with seed (the same seed for every user, as pandas' sample was given
// random_state=seed for every user), and the first round(ratio × n) of them
// (Python's round: halves to even) go to train, the rest to test. A user with
// one rating is all train at ratio 0.75, and one with two too (round(1.5) is
// 2); from three ratings on, every user is on both sides. Both parts keep the
// input's order. The shuffle is math/rand/v2's PCG, so the rows drawn differ
// from numpy's, but the counts per user are the same.
//
// (Today's python_stratified_split ranks each user's rows by a uniform draw
// and trains on those with rank/n ≤ ratio: floor(ratio × n) rows, so a user
// with one rating is all test.)
func Split(rs []Rating, ratio float64, seed int64) (train, test []Rating) {
	byUser := map[string][]int{}
	var users []string
	for i, r := range rs {
		if _, ok := byUser[r.User]; !ok {
			users = append(users, r.User)
		}
		byUser[r.User] = append(byUser[r.User], i)
	}
	inTrain := make([]bool, len(rs))
	for _, u := range users {
		rows := byUser[u]
		rng := rand.New(rand.NewPCG(uint64(seed), uint64(seed)^0x9e3779b97f4a7c15))
		rng.Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
		n := int(math.RoundToEven(ratio * float64(len(rows))))
		n = min(max(n, 0), len(rows))
		for _, i := range rows[:n] {
			inTrain[i] = true
		}
	}
	for i, r := range rs {
		if inTrain[i] {
			train = append(train, r)
		} else {
			test = append(test, r)
		}
	}
	return train, test
}

// Metrics are the ranking metrics of an evaluation, averaged over Users: the
// test users with training interactions.
type Metrics struct {
	Users     int     `json:"users"`
	Precision float64 `json:"precision"`
	Recall    float64 `json:"recall"`
	NDCG      float64 `json:"ndcg"`
	MAP       float64 `json:"map"`
}

// Evaluate trains a model with cfg on train and measures its top-k
// recommendations against test.
//
// Every training rating is one Interaction of its item (Weight the rating,
// Time in milliseconds), personal and popular, added in time order (input
// order on ties); the items a user has in training are never recommended to
// them (cfg.Exclude is forced to ExcludeSeen), and time decay is relative to
// the latest training rating, as SAR's is. Each test user with training
// interactions is asked for k items; their distinct test items are all
// relevant. The metrics are those of Microsoft Recommenders'
// python_evaluation, binary relevance, as its SAR MovieLens benchmark used
// them (reco_utils, 2019–2021), averaged over those users:
//
//   - precision@k: hits / k (k even when fewer than k items came back);
//   - recall@k: hits / relevant;
//   - nDCG@k: Σ over hits 1/ln(1+rank), over Σ for i = 1..min(relevant, k)
//     of 1/ln(1+i);
//   - MAP: Σ over hits (hits so far / rank), over relevant (the map_at_k of
//     then, today's map; today's map_at_k divides by min(relevant, k)).
//
// Test users without training interactions cannot be scored (SAR refuses
// them) and are left out of Users.
func Evaluate(train, test []Rating, cfg Config, k int) (Metrics, error) {
	if k < 1 || k > 10_000 {
		return Metrics{}, trustloop.Errorf(trustloop.EINVALID, "k must be 1 to 10000, not %d.", k).
			WithHint("The protocol of the published results uses --k 10.")
	}
	if len(train) == 0 {
		return Metrics{}, trustloop.Errorf(trustloop.EINVALID, "Nothing to train on: the training part is empty.").
			WithHint("Give more ratings: each user's are split 75/25 into training and test.")
	}
	cfg.Exclude = ExcludeSeen
	m, err := NewModel(cfg)
	if err != nil {
		return Metrics{}, err
	}
	order := make([]int, len(train))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case train[a].Time < train[b].Time:
			return -1
		case train[a].Time > train[b].Time:
			return 1
		}
		return 0
	})
	var now int64
	items := make([]string, 1)
	for _, i := range order {
		r := &train[i]
		items[0] = r.Item
		in := Interaction{Items: items, Weight: r.Value, Time: r.Time * 1000}
		m.Add(r.User, &in, true, true)
		now = max(now, in.Time)
	}
	users, relevant := testSets(test)
	acc := newAccumulator(k)
	ids := make([]string, 0, k)
	for _, u := range users {
		recs, history := m.Recommend([]string{u}, now, k)
		if !history {
			continue
		}
		ids = ids[:0]
		for _, r := range recs {
			ids = append(ids, r.ItemID)
		}
		acc.add(ids, relevant[u])
	}
	if acc.users == 0 {
		return Metrics{}, trustloop.Errorf(trustloop.EINVALID, "No test user has training interactions: nothing to evaluate.").
			WithHint("Give more ratings per user: with a 75/25 split a user needs three or more to appear in both parts.")
	}
	return acc.metrics(), nil
}

// testSets returns the test users in the order they first appear and each
// one's distinct items.
func testSets(test []Rating) ([]string, map[string]map[string]bool) {
	var users []string
	relevant := map[string]map[string]bool{}
	for _, r := range test {
		set := relevant[r.User]
		if set == nil {
			set = map[string]bool{}
			relevant[r.User] = set
			users = append(users, r.User)
		}
		set[r.Item] = true
	}
	return users, relevant
}

// accumulator sums the per-user ranking metrics.
type accumulator struct {
	k              int
	users          int
	p, r, ndcg, ap float64
	idcg           []float64 // idcg[n]: the ideal DCG of n relevant items
}

func newAccumulator(k int) *accumulator {
	a := &accumulator{k: k, idcg: make([]float64, k+1)}
	for i := 1; i <= k; i++ {
		a.idcg[i] = a.idcg[i-1] + 1/math.Log(1+float64(i))
	}
	return a
}

// add scores one user's recommendations (best first; only the first k count)
// against their relevant items. A user without relevant items is not scored.
func (a *accumulator) add(recs []string, relevant map[string]bool) {
	if len(relevant) == 0 {
		return
	}
	var hits int
	var dcg, ap float64
	for i, id := range recs[:min(len(recs), a.k)] {
		if !relevant[id] {
			continue
		}
		hits++
		rank := float64(i + 1)
		dcg += 1 / math.Log(1+rank)
		ap += float64(hits) / rank
	}
	n := float64(len(relevant))
	a.users++
	a.p += float64(hits) / float64(a.k)
	a.r += float64(hits) / n
	a.ndcg += dcg / a.idcg[min(len(relevant), a.k)]
	a.ap += ap / n
}

func (a *accumulator) metrics() Metrics {
	if a.users == 0 {
		return Metrics{}
	}
	u := float64(a.users)
	return Metrics{Users: a.users, Precision: a.p / u, Recall: a.r / u, NDCG: a.ndcg / u, MAP: a.ap / u}
}

// Synthetic returns ratings with a planted structure: the items fall into
// clusters of consecutive ids, and each user, whose home cluster is drawn at
// random, takes perUser distinct items, each from their home cluster with
// probability 0.8 and from all items otherwise (and from all items once the
// home cluster is used up). Items within a cluster are equally likely, so
// popularity says little and a recommender that learns the clusters scores far
// above it. Ratings are 1 to 5, times spread over 90 days; the same seed gives
// the same ratings.
func Synthetic(seed int64, users, items, clusters, perUser int) []Rating {
	if users < 1 || items < 1 {
		return nil
	}
	clusters = min(max(clusters, 1), items)
	perUser = min(max(perUser, 1), items)
	rng := rand.New(rand.NewPCG(uint64(seed), 0x5eed5eed5eed5eed))
	// Cluster c holds items [c*items/clusters, (c+1)*items/clusters).
	bound := func(c int) int { return c * items / clusters }
	const start = 1_600_000_000
	out := make([]Rating, 0, users*perUser)
	taken := map[int]bool{}
	for u := range users {
		clear(taken)
		home := rng.IntN(clusters)
		lo, hi := bound(home), bound(home+1)
		inHome := 0
		user := fmt.Sprintf("user-%05d", u)
		for len(taken) < perUser {
			var it int
			if inHome < hi-lo && rng.Float64() < 0.8 {
				it = lo + rng.IntN(hi-lo)
			} else {
				it = rng.IntN(items)
			}
			if taken[it] {
				continue
			}
			taken[it] = true
			if it >= lo && it < hi {
				inHome++
			}
			out = append(out, Rating{
				User:  user,
				Item:  fmt.Sprintf("item-%05d", it),
				Value: float64(1 + rng.IntN(5)),
				Time:  start + rng.Int64N(90*24*3600),
			})
		}
	}
	return out
}
