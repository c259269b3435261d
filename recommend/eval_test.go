package recommend

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
)

// wantLineError checks that err is an EINVALID trustloop error whose message
// starts with the line number, says what is wrong and echoes no value.
func wantLineError(t *testing.T, err error, line int, what, secret string) {
	t.Helper()
	var e *trustloop.Error
	if !errors.As(err, &e) || e.Code != trustloop.EINVALID {
		t.Fatalf("error = %v, want an EINVALID trustloop.Error", err)
	}
	if prefix := fmt.Sprintf("Line %d: ", line); !strings.HasPrefix(e.Message, prefix) {
		t.Errorf("message %q does not start with %q", e.Message, prefix)
	}
	if !strings.Contains(e.Message, what) {
		t.Errorf("message %q does not say %q", e.Message, what)
	}
	if secret != "" && strings.Contains(e.Message+e.Hint, secret) {
		t.Errorf("message %q echoes the value %q", e.Message, secret)
	}
}

func TestReadRatings(t *testing.T) {
	good := []struct {
		name, in string
		want     []Rating
	}{
		{"tab (ML-100K)", "196\t242\t3\t881250949\n\n186\t302\t3.5\t891717742\r\n",
			[]Rating{{"196", "242", 3, 881250949}, {"186", "302", 3.5, 891717742}}},
		{"double colon (ML-1M)", "1::1193::5::978300760\n1::661::3::978302109\n",
			[]Rating{{"1", "1193", 5, 978300760}, {"1", "661", 3, 978302109}}},
		{"csv with header (ml-latest)", "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,0.5,964981247\n",
			[]Rating{{"1", "1", 4, 964982703}, {"1", "3", 0.5, 964981247}}},
		{"csv without header", "\n  7,42,2,100  \n", []Rating{{"7", "42", 2, 100}}},
		{"byte order mark", "\xef\xbb\xbfuserId,movieId,rating,timestamp\n1,1,4.0,964982703\n", []Rating{{"1", "1", 4, 964982703}}},
		{"spaces around fields", "u 1 \t i 2\t 1 \t0\n", []Rating{{"u 1", "i 2", 1, 0}}},
		{"decimal forms", "1\t1\t.5\t07\n1\t2\t5.\t1\n1\t3\t5e-1\t1\n1\t4\t1E2\t1\n1\t5\t2.5e+1\t1\n",
			[]Rating{{"1", "1", 0.5, 7}, {"1", "2", 5, 1}, {"1", "3", 0.5, 1}, {"1", "4", 100, 1}, {"1", "5", 25, 1}}},
		{"same user, other items; same item, other users", "1\t1\t4\t1\n1\t2\t4\t1\n2\t1\t4\t1\n",
			[]Rating{{"1", "1", 4, 1}, {"1", "2", 4, 1}, {"2", "1", 4, 1}}},
		{"ids that join alike", "ab\tc\t4\t1\na\tbc\t4\t1\n", []Rating{{"ab", "c", 4, 1}, {"a", "bc", 4, 1}}},
		{"user and item swapped", "1\t2\t4\t1\n2\t1\t4\t1\n", []Rating{{"1", "2", 4, 1}, {"2", "1", 4, 1}}},
		{"UTF-8 ids", "Zoë\tcafé ☕\t4\t1\n", []Rating{{"Zoë", "café ☕", 4, 1}}},
	}
	for _, c := range good {
		t.Run(c.name, func(t *testing.T) {
			got, err := ReadRatings(strings.NewReader(c.in))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
		})
	}

	const ok = "1\t10\t4\t100\n"
	const ok2 = "1\t11\t4\t100\n" // another pair: a repeated one is an error of its own
	bad := []struct {
		name, in string
		line     int
		what     string
		secret   string
	}{
		{"three fields", ok + "\n2\t20\tSECRET\n", 3, "want 4 fields (user, item, rating, timestamp), found 3", "SECRET"},
		{"five fields", ok + "2\t20\t4\t100\tSECRET\n", 2, "found 5", "SECRET"},
		{"other separator later", ok + "2::20::4::100\n", 2, "found 1", ""},
		{"empty user", ok + "\t20\t4\t100\n", 2, "the user is empty", ""},
		{"empty item", ok + "2\t \t4\t100\n", 2, "the item is empty", ""},
		{"long item", ok + "2\t" + strings.Repeat("x", MaxItemID+1) + "\t4\t100\n", 2, "item is longer than 200 bytes", "xxx"},
		{"long user", ok + strings.Repeat("u", trustloop.MaxIdentifierLen+1) + "\t2\t4\t100\n", 2, "user is longer than 1024 bytes", "uuu"},
		{"rating not a number", ok + ok2 + "2\t20\tSECRET\t100\n", 3, "the rating is not a positive number", "SECRET"},
		{"rating zero", ok + "2\t20\t0\t100\n", 2, "the rating is not a positive number", ""},
		{"rating negative", ok + "2\t20\t-1\t100\n", 2, "the rating is not a positive number", ""},
		{"rating NaN", ok + "2\t20\tNaN\t100\n", 2, "the rating is not a positive number", ""},
		{"rating infinite", ok + "2\t20\tInf\t100\n", 2, "the rating is not a positive number", ""},
		// strconv.ParseFloat takes these; no ratings file writes them.
		{"rating in hex", ok + "2\t20\t0x1p1\t100\n", 2, "the rating is not a positive number", "0x1p1"},
		{"rating with an underscore", ok + "2\t20\t1_0\t100\n", 2, "the rating is not a positive number", "1_0"},
		{"rating with a plus", ok + "2\t20\t+4\t100\n", 2, "the rating is not a positive number", ""},
		{"rating with two dots", ok + "2\t20\t1.2.3\t100\n", 2, "the rating is not a positive number", "1.2.3"},
		{"rating with an empty exponent", ok + "2\t20\t1e\t100\n", 2, "the rating is not a positive number", ""},
		{"rating with a signed empty exponent", ok + "2\t20\t1e+\t100\n", 2, "the rating is not a positive number", ""},
		{"rating a lone dot", ok + "2\t20\t.\t100\n", 2, "the rating is not a positive number", ""},
		{"timestamp with a plus", ok + "2\t20\t4\t+5\n", 2, "the timestamp is not whole seconds", ""},
		{"timestamp with an underscore", ok + "2\t20\t4\t1_000\n", 2, "the timestamp is not whole seconds", "1_000"},
		{"timestamp in hex", ok + "2\t20\t4\t0x10\n", 2, "the timestamp is not whole seconds", "0x10"},
		{"user not UTF-8", ok + "SECRET\xff\t20\t4\t100\n", 2, "the user is not valid UTF-8", "SECRET"},
		{"item not UTF-8", ok + "2\tSECRET\xc3\t4\t100\n", 2, "the item is not valid UTF-8", "SECRET"},
		{"timestamp fractional", ok + "2\t20\t4\t100.5\n", 2, "the timestamp is not whole seconds", "100.5"},
		{"timestamp negative", ok + "2\t20\t4\t-100\n", 2, "the timestamp is not whole seconds", ""},
		{"timestamp in milliseconds", ok + "2\t20\t4\t1659304800025\n", 2, "the timestamp is not whole seconds", ""},
		{"timestamp missing", ok + "2\t20\t4\t\n", 2, "the timestamp is not whole seconds", ""},
		{"header in the middle", "userId,movieId,rating,timestamp\n1,1,4,1\nuserId,movieId,rating,timestamp\n", 3, "the rating is not", ""},
		{"no separator", "\n\nSECRET\n", 3, "no field separator", "SECRET"},
		{"line too long", ok + ok2 + strings.Repeat("1", MaxEvalLine+1) + "\n", 3, "longer than", ""},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			got, err := ReadRatings(strings.NewReader(c.in))
			if err == nil {
				t.Fatalf("no error; read %d ratings", len(got))
			}
			wantLineError(t, err, c.line, c.what, c.secret)
		})
	}

	// A repeated user–item pair would land in both train and test: refused,
	// by line numbers only.
	for _, c := range []struct {
		name, in    string
		line, first int
	}{
		{"the same line twice", "SECRET\tITEM\t4\t100\n" + ok + "SECRET\tITEM\t4\t100\n", 3, 1},
		{"another rating and time", ok + "\n" + ok2 + "1\t10\t2\t999\n", 4, 1},
		{"spaced otherwise", "userId,movieId,rating,timestamp\n1,10,4,100\n 1 , 10 ,5,1\n", 3, 2},
		{"the first repeat", ok + ok2 + ok2 + ok, 3, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ReadRatings(strings.NewReader(c.in))
			want := fmt.Sprintf("Line %d repeats the user and item of line %d.", c.line, c.first)
			if trustloop.ErrorCode(err) != trustloop.EINVALID || trustloop.ErrorMessage(err) != want {
				t.Fatalf("error = %v, want EINVALID %q", err, want)
			}
			var e *trustloop.Error
			if errors.As(err, &e) && (e.Hint == "" || strings.Contains(e.Message+e.Hint, "SECRET") || strings.Contains(e.Message+e.Hint, "ITEM")) {
				t.Errorf("hint %q: want one, echoing no id", e.Hint)
			}
		})
	}

	for _, in := range []string{"", "\n \n\t\n", "userId,movieId,rating,timestamp\n"} {
		_, err := ReadRatings(strings.NewReader(in))
		if trustloop.ErrorCode(err) != trustloop.EINVALID || !strings.Contains(trustloop.ErrorMessage(err), "no ratings") {
			t.Errorf("ReadRatings(%q) = %v, want an error saying there are no ratings", in, err)
		}
	}
}

// TestThresholdRange: the co-occurrence threshold is bounded as the supports
// are, with a hint naming eval's flag.
func TestThresholdRange(t *testing.T) {
	for _, c := range []struct {
		threshold int
		ok        bool
	}{
		{0, true}, // the default
		{1, true},
		{1000, true},
		{-1, false},
		{1001, false},
		{99_999_999, false},
	} {
		_, err := NewModel(Config{Threshold: c.threshold})
		if c.ok != (err == nil) {
			t.Errorf("threshold %d: %v, want ok %v", c.threshold, err, c.ok)
		}
		var e *trustloop.Error
		if err != nil && (!errors.As(err, &e) || e.Code != trustloop.EINVALID || !strings.Contains(e.Hint, "--threshold")) {
			t.Errorf("threshold %d: %v, want EINVALID with a hint naming --threshold", c.threshold, err)
		}
	}
}

func TestReadRatingsFixtures(t *testing.T) {
	f, err := os.Open("testdata/eval/ratings.tsv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rs, err := ReadRatings(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 480 || rs[0] != (Rating{"user-00000", "item-00001", 3, 1600899253}) {
		t.Fatalf("read %d ratings, the first %v", len(rs), rs[0])
	}
	b, err := os.Open("testdata/eval/bad.tsv")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	_, err = ReadRatings(b)
	wantLineError(t, err, 4, "the rating is not a positive number", "five")
}

func TestReadEvents(t *testing.T) {
	in := strings.Join([]string{
		// Line 1: a viewed product, by a known user.
		`{"type":"track","userId":"u1","event":"Product Viewed","properties":{"product_id":"p1"},"timestamp":"2024-05-01T10:00:00Z"}`,
		// 2: an anonymous visitor; the sku stands in for a product id.
		`{"type":"track","anonymousId":"a1","event":"Product Added","properties":{"sku":"p2"},"timestamp":"2024-05-01T10:00:05.250+02:00"}`,
		``,
		// 4: not an interaction: a page call.
		`{"type":"page","userId":"u1","name":"Home","timestamp":"2024-05-01T10:00:00Z"}`,
		// 5: not an interaction: an event without a weight.
		`{"type":"track","userId":"u1","event":"Checkout Started","properties":{"product_id":"p1"},"timestamp":"2024-05-01T10:00:00Z"}`,
		// 6: weighted, but no product.
		`{"type":"track","userId":"u1","event":"Product Viewed","properties":{"name":"x"},"timestamp":"2024-05-01T10:00:00Z"}`,
		// 7: an order of two products (one id a number), by a numeric user id.
		`{"type":"track","userId":1,"event":"Order Completed","properties":{"products":[{"product_id":"p1"},{"product_id":9}]},"timestamp":"2024-05-02T00:00:00Z"}`,
		// 8: u1 views p1 again, later: one pair, weights summed, latest time.
		`{"type":"track","userId":"u1","anonymousId":"a9","event":"Product Viewed","properties":{"product_id":"p1"},"timestamp":"2024-05-03T00:00:00Z"}`,
		// 9: an OTTO session: a click, a cart and an order of one product,
		// and a click on another.
		`{"session":7,"events":[{"aid":100,"ts":1659304800025,"type":"clicks"},{"aid":100,"ts":1659304900000,"type":"carts"},{"aid":200,"ts":1659304950000,"type":"clicks"},{"aid":100,"ts":1659305000999,"type":"orders"}]}`,
		// 10: identify, no timestamp needed.
		`{"type":"identify","userId":"u1","traits":{"plan":"pro"}}`,
	}, "\n")
	rs, counts, err := ReadEventsCounted(strings.NewReader(in), Config{})
	if err != nil {
		t.Fatal(err)
	}
	want := []Rating{
		{"u1", "p1", 1 + 1, 1714694400},
		{"a1", "p2", 3, 1714550405},
		{"1", "p1", 5, 1714608000},
		{"1", "9", 5, 1714608000},
		{"session-7", "100", 1 + 3 + 5, 1659305000},
		{"session-7", "200", 1, 1659304950},
	}
	if !reflect.DeepEqual(rs, want) {
		t.Errorf("ratings:\n got %v\nwant %v", rs, want)
	}
	wantCounts := EventCounts{Events: 12, Interactions: 8, Skipped: map[string]int{NotInteraction: 3, IgnoredNoProduct: 1}}
	if !reflect.DeepEqual(counts, wantCounts) {
		t.Errorf("counts = %+v, want %+v", counts, wantCounts)
	}

	// Weights name the interactions: without Product Viewed, clicks and views
	// are skipped.
	rs, counts, err = ReadEventsCounted(strings.NewReader(in), Config{Weights: map[string]float64{"Order Completed": 2}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 3 || counts.Interactions != 2 || counts.Skipped[NotInteraction] != 10 {
		t.Errorf("with orders only: %v, %+v", rs, counts)
	}
	if _, err := ReadEvents(strings.NewReader(in), Config{Weights: map[string]float64{"Order Completed": -1}}); trustloop.ErrorCode(err) != trustloop.EINVALID {
		t.Errorf("a negative weight: %v", err)
	}

	const ok = `{"type":"track","userId":"u1","event":"Product Viewed","properties":{"product_id":"p1"},"timestamp":"2024-05-01T10:00:00Z"}` + "\n"
	bad := []struct {
		name, in string
		line     int
		what     string
		secret   string
	}{
		{"not JSON", ok + "SECRET\n", 2, "not a JSON object", "SECRET"},
		{"truncated JSON", ok + `{"type":"track","userId":"SECRET"` + "\n", 2, "not a JSON object", "SECRET"},
		{"array", ok + `["SECRET"]` + "\n", 2, "not a JSON object", "SECRET"},
		{"no type", ok + `{"userId":"u1","event":"Product Viewed"}`, 2, "no type", ""},
		{"type not a string", ok + `{"type":5,"userId":"u1"}`, 2, "type has the wrong type", ""},
		{"unknown type", ok + `{"type":"SECRET","userId":"u1"}`, 2, "type is not a Segment call", "SECRET"},
		{"no user", "\n" + ok + `{"type":"track","event":"Product Viewed","properties":{"product_id":"p1"},"timestamp":"2024-05-01T10:00:00Z"}`, 3, "neither userId nor anonymousId", ""},
		{"empty user", ok + `{"type":"track","userId":" ","anonymousId":null,"event":"Product Viewed"}`, 2, "neither userId nor anonymousId", ""},
		{"user an object", ok + `{"type":"track","userId":{"SECRET":1},"event":"Product Viewed"}`, 2, "userId is not a string", "SECRET"},
		{"anonymousId an array", ok + `{"type":"track","anonymousId":["SECRET"],"event":"Product Viewed"}`, 2, "anonymousId is not a string", "SECRET"},
		{"event not a string", ok + `{"type":"track","userId":"u1","event":true}`, 2, "event has the wrong type", ""},
		{"no timestamp", ok + `{"type":"track","userId":"u1","event":"Product Viewed","properties":{"product_id":"p1"}}`, 2, "no timestamp", ""},
		{"bad timestamp", ok + `{"type":"track","userId":"u1","event":"Product Viewed","properties":{"product_id":"p1"},"timestamp":"SECRET"}`, 2, "timestamp is not an RFC 3339 time", "SECRET"},
		{"OTTO session not a number", ok + `{"session":"SECRET","events":[]}`, 2, "session", "SECRET"},
		{"OTTO session negative", ok + `{"session":-1,"events":[]}`, 2, "session is not a whole number", ""},
		{"OTTO aid not a number", ok + `{"session":1,"events":[{"aid":1,"ts":1,"type":"clicks"},{"aid":"SECRET","ts":1,"type":"clicks"}]}`, 2, "aid", "SECRET"},
		{"OTTO aid fractional", ok + `{"session":1,"events":[{"aid":1.5,"ts":1,"type":"clicks"}]}`, 2, "event 1: aid is not a whole number", ""},
		{"OTTO ts missing", ok + `{"session":1,"events":[{"aid":1,"type":"clicks"}]}`, 2, "event 1: ts is not milliseconds", ""},
		{"OTTO type unknown", ok + `{"session":1,"events":[{"aid":1,"ts":1,"type":"SECRET"}]}`, 2, "event 1: type is not clicks, carts or orders", "SECRET"},
		{"OTTO events not a list", ok + `{"session":1,"events":{"aid":1}}`, 2, "events has the wrong type", ""},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			rs, err := ReadEvents(strings.NewReader(c.in), Config{})
			if err == nil {
				t.Fatalf("no error; read %v", rs)
			}
			wantLineError(t, err, c.line, c.what, c.secret)
		})
	}

	for _, in := range []string{"", "\n\n", `{"type":"page","userId":"u1"}`, `{"session":1,"events":[]}`} {
		_, err := ReadEvents(strings.NewReader(in), Config{})
		if trustloop.ErrorCode(err) != trustloop.EINVALID || !strings.Contains(trustloop.ErrorMessage(err), "no interactions") {
			t.Errorf("ReadEvents(%q) = %v, want an error saying there are no interactions", in, err)
		}
	}
}

func TestReadEventsFixture(t *testing.T) {
	f, err := os.Open("testdata/eval/events.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rs, counts, err := ReadEventsCounted(f, Config{})
	if err != nil {
		t.Fatal(err)
	}
	// 240 interactions of distinct pairs; 7 page and 6 Checkout Started lines
	// are not interactions (identify lines too), 6 views lack a product.
	want := EventCounts{Events: 266, Interactions: 240, Skipped: map[string]int{NotInteraction: 20, IgnoredNoProduct: 6}}
	if len(rs) != 240 || !reflect.DeepEqual(counts, want) {
		t.Fatalf("%d ratings, counts %+v; want 240, %+v", len(rs), counts, want)
	}
	anon := 0
	for _, r := range rs {
		if strings.HasPrefix(r.User, "anon-") {
			anon++
		}
	}
	if anon != 3*8 { // users 7, 17, 27
		t.Errorf("%d ratings of anonymous visitors, want 24", anon)
	}
}

func TestSplit(t *testing.T) {
	// User uN has N ratings, N = 1..13, interleaved.
	var rs []Rating
	for i := 0; i < 13; i++ {
		for n := 1; n <= 13; n++ {
			if i < n {
				rs = append(rs, Rating{User: fmt.Sprintf("u%d", n), Item: fmt.Sprintf("i%d", i), Value: 1, Time: int64(i)})
			}
		}
	}
	train, test := Split(rs, 0.75, 42)
	if len(train)+len(test) != len(rs) {
		t.Fatalf("%d + %d rows, want %d", len(train), len(test), len(rs))
	}
	// Both parts keep the input's order, and together are the input.
	merged := slices.Concat(train, test)
	slices.SortFunc(merged, cmpRating)
	all := slices.Clone(rs)
	slices.SortFunc(all, cmpRating)
	if !slices.Equal(merged, all) {
		t.Fatal("train and test are not the input")
	}
	if !slices.IsSortedFunc(train, byTime) || !slices.IsSortedFunc(test, byTime) {
		t.Error("a part is not in the input's order")
	}
	count := func(part []Rating) map[string]int {
		m := map[string]int{}
		for _, r := range part {
			m[r.User]++
		}
		return m
	}
	tr, te := count(train), count(test)
	// round(0.75 n), halves to even: 1→1 (0.75), 2→2 (1.5), 3→2 (2.25),
	// 4→3, 5→4 (3.75), 6→4 (4.5), 7→5 (5.25), 8→6, 9→7 (6.75), 10→8 (7.5),
	// 11→8 (8.25), 12→9, 13→10 (9.75).
	wantTrain := []int{0, 1, 2, 2, 3, 4, 4, 5, 6, 7, 8, 8, 9, 10}
	for n := 1; n <= 13; n++ {
		u := fmt.Sprintf("u%d", n)
		if tr[u] != wantTrain[n] || te[u] != n-wantTrain[n] {
			t.Errorf("%s: %d train, %d test; want %d, %d", u, tr[u], te[u], wantTrain[n], n-wantTrain[n])
		}
		if n >= 3 && (tr[u] == 0 || te[u] == 0) {
			t.Errorf("%s with %d ratings is not on both sides", u, n)
		}
	}

	// Deterministic for a seed; another seed draws other rows.
	train2, test2 := Split(rs, 0.75, 42)
	if !slices.Equal(train, train2) || !slices.Equal(test, test2) {
		t.Error("the same seed split differently")
	}
	train3, _ := Split(rs, 0.75, 43)
	if slices.Equal(train, train3) {
		t.Error("seeds 42 and 43 split the same way")
	}
	// Each user's split is their own: the same alone as among the others.
	var u13 []Rating
	for _, r := range rs {
		if r.User == "u13" {
			u13 = append(u13, r)
		}
	}
	alone, _ := Split(u13, 0.75, 42)
	var among []Rating
	for _, r := range train {
		if r.User == "u13" {
			among = append(among, r)
		}
	}
	if !slices.Equal(alone, among) {
		t.Errorf("u13 alone trains on %v, among others on %v", alone, among)
	}

	// On a larger set the share is 75/25 overall.
	big := Synthetic(1, 500, 300, 5, 20)
	train, test = Split(big, 0.75, 42)
	if len(train) != 500*15 || len(test) != 500*5 {
		t.Errorf("20 ratings a user: %d train, %d test, want 7500, 2500", len(train), len(test))
	}
}

func cmpRating(a, b Rating) int {
	return cmp.Or(cmp.Compare(a.User, b.User), cmp.Compare(a.Item, b.Item), cmp.Compare(a.Time, b.Time))
}

func byTime(a, b Rating) int { return cmp.Compare(a.Time, b.Time) }

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestEvalMetricsByHand(t *testing.T) {
	set := func(items ...string) map[string]bool {
		m := map[string]bool{}
		for _, i := range items {
			m[i] = true
		}
		return m
	}
	ln := math.Log
	acc := newAccumulator(5)
	// User 1: hits at ranks 2 and 4 of 5; 3 relevant items.
	//   precision 2/5 = 0.4; recall 2/3;
	//   DCG = 1/ln 3 + 1/ln 5 = 0.910239 + 0.621335 = 1.531574,
	//   IDCG = 1/ln 2 + 1/ln 3 + 1/ln 4 = 1.442695 + 0.910239 + 0.721348 = 3.074282,
	//   nDCG = 0.498190;
	//   AP = (1/2 + 2/4) / 3 = 1/3.
	acc.add([]string{"a", "b", "c", "d", "e"}, set("b", "d", "x"))
	// User 2: no hit: all 0.
	acc.add([]string{"a", "b"}, set("z"))
	// User 3: one item back, relevant, of k = 5: precision 1/5 (k, not what came
	// back), recall 1, nDCG 1, AP 1.
	acc.add([]string{"q"}, set("q"))
	// A user without relevant items is not counted.
	acc.add([]string{"q"}, set())
	m := acc.metrics()
	want := Metrics{
		Users:     3,
		Precision: (0.4 + 0 + 0.2) / 3,                                       // 0.2
		Recall:    (2.0/3 + 0 + 1) / 3,                                       // 0.555556
		NDCG:      ((1/ln(3)+1/ln(5))/(1/ln(2)+1/ln(3)+1/ln(4)) + 0 + 1) / 3, // 0.499397
		MAP:       (1.0/3 + 0 + 1) / 3,                                       // 0.444444
	}
	if m.Users != want.Users || !near(m.Precision, want.Precision) || !near(m.Recall, want.Recall) ||
		!near(m.NDCG, want.NDCG) || !near(m.MAP, want.MAP) {
		t.Errorf("got %+v\nwant %+v", m, want)
	}
	// The hand-rounded figures above, so that a wrong formula in want fails too.
	if math.Abs(want.NDCG-0.499397) > 1e-6 || math.Abs(want.Recall-0.555556) > 1e-6 {
		t.Errorf("hand figures: nDCG %.6f, recall %.6f", want.NDCG, want.Recall)
	}

	// More relevant items than k: 10 hits of 12 relevant at k = 10.
	//   precision 1, recall 10/12, nDCG 1 (IDCG over min(12, 10) ranks),
	//   AP = (1/1 + 2/2 + … + 10/10) / 12 = 10/12: MAP divides by the relevant
	//   items, as reco_utils' map_at_k did (today's map_at_k would say 1).
	acc = newAccumulator(10)
	recs := []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}
	acc.add(recs, set(append(slices.Clone(recs), "10", "11")...))
	m = acc.metrics()
	if !near(m.Precision, 1) || !near(m.Recall, 10.0/12) || !near(m.NDCG, 1) || !near(m.MAP, 10.0/12) {
		t.Errorf("12 relevant, 10 hits: %+v", m)
	}
	// Only the first k recommendations count.
	acc = newAccumulator(2)
	acc.add([]string{"a", "b", "c"}, set("c"))
	if m := acc.metrics(); m.Precision != 0 || m.Recall != 0 {
		t.Errorf("a hit past k counted: %+v", m)
	}
}

func TestEvaluateByHand(t *testing.T) {
	r := func(u, i string) Rating { return Rating{User: u, Item: i, Value: 1, Time: 1_700_000_000} }
	train := []Rating{
		r("u1", "A"), r("u1", "B"),
		r("u2", "A"), r("u2", "B"), r("u2", "C"),
		r("u3", "A"), r("u3", "C"),
		r("u4", "B"), r("u4", "D"),
	}
	// Users per item: A 3, B 3, C 2, D 1. Co-occurrence: AB 2, AC 2, BC 1,
	// BD 1. Jaccard: AB 2/4, AC 2/3, BC 1/4, BD 1/3.
	// u1 (A, B seen): C = 2/3 + 1/4 = 11/12, D = 0 + 1/3: [C, D].
	// u4 (B, D seen): A = 2/4 + 0, C = 1/4 + 0: [A, C].
	// u5 has no training ratings: not scored.
	test := []Rating{r("u1", "C"), r("u4", "C"), r("u5", "A")}
	m, err := Evaluate(train, test, Config{}, 2)
	if err != nil {
		t.Fatal(err)
	}
	// u1: hit at rank 1: precision 1/2, recall 1, nDCG 1, AP 1.
	// u4: hit at rank 2: precision 1/2, recall 1, nDCG (1/ln 3)/(1/ln 2) =
	// 0.630930, AP 1/2.
	want := Metrics{Users: 2, Precision: 0.5, Recall: 1, NDCG: (1 + math.Log(2)/math.Log(3)) / 2, MAP: 0.75}
	if m.Users != want.Users || !near(m.Precision, want.Precision) || !near(m.Recall, want.Recall) ||
		!near(m.NDCG, want.NDCG) || !near(m.MAP, want.MAP) {
		t.Errorf("got %+v\nwant %+v", m, want)
	}
	// Seen items are excluded whatever cfg says; k = 1: u1 gets C (hit), u4
	// gets A (miss).
	m, err = Evaluate(train, test, Config{Exclude: ExcludeNone}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if m.Users != 2 || !near(m.Precision, 0.5) || !near(m.MAP, 0.5) {
		t.Errorf("k = 1: %+v", m)
	}

	// Time decay: u1 met A ten hours before B. C goes with A only, D with B
	// only, equally (Jaccard 1/2). Without decay they tie and C comes first
	// (by id); with a one-hour half-life B's items win.
	train = []Rating{
		{"u1", "A", 1, 1_700_000_000}, {"u1", "B", 1, 1_700_036_000},
		{"u2", "A", 1, 1_700_000_000}, {"u2", "C", 1, 1_700_000_000},
		{"u3", "B", 1, 1_700_000_000}, {"u3", "D", 1, 1_700_000_000},
	}
	test = []Rating{{"u1", "D", 1, 1_700_040_000}}
	for _, c := range []struct {
		halfLife  time.Duration
		precision float64
	}{{0, 0}, {time.Hour, 1}} {
		m, err := Evaluate(train, test, Config{HalfLife: c.halfLife}, 1)
		if err != nil {
			t.Fatal(err)
		}
		if m.Precision != c.precision {
			t.Errorf("half-life %s: precision@1 %g, want %g", c.halfLife, m.Precision, c.precision)
		}
	}

	for _, c := range []struct {
		name        string
		train, test []Rating
		cfg         Config
		k           int
	}{
		{"k 0", train, test, Config{}, 0},
		{"no train", nil, test, Config{}, 10},
		{"bad config", train, test, Config{Similarity: "cosine"}, 10},
		{"no test user trained", train, []Rating{r("u9", "A")}, Config{}, 10},
	} {
		if _, err := Evaluate(c.train, c.test, c.cfg, c.k); trustloop.ErrorCode(err) != trustloop.EINVALID {
			t.Errorf("%s: %v, want EINVALID", c.name, err)
		}
	}
}

// popularityBaseline scores, for every test user with training ratings, the
// k items the most training users rated, less the user's own.
func popularityBaseline(train, test []Rating, k int) Metrics {
	users := map[string]map[string]bool{}
	pop := map[string]int{}
	for _, r := range train {
		if users[r.User] == nil {
			users[r.User] = map[string]bool{}
		}
		if !users[r.User][r.Item] {
			users[r.User][r.Item] = true
			pop[r.Item]++
		}
	}
	items := make([]string, 0, len(pop))
	for i := range pop {
		items = append(items, i)
	}
	slices.SortFunc(items, func(a, b string) int { return cmp.Or(cmp.Compare(pop[b], pop[a]), cmp.Compare(a, b)) })
	testUsers, relevant := testSets(test)
	acc := newAccumulator(k)
	for _, u := range testUsers {
		seen := users[u]
		if seen == nil {
			continue
		}
		var recs []string
		for _, i := range items {
			if len(recs) == k {
				break
			}
			if !seen[i] {
				recs = append(recs, i)
			}
		}
		acc.add(recs, relevant[u])
	}
	return acc.metrics()
}

func TestSyntheticBeatsPopularity(t *testing.T) {
	rs := Synthetic(7, 600, 300, 6, 20)
	if len(rs) != 600*20 || !reflect.DeepEqual(rs, Synthetic(7, 600, 300, 6, 20)) || reflect.DeepEqual(rs, Synthetic(8, 600, 300, 6, 20)) {
		t.Fatal("Synthetic is not deterministic per seed, or ignores it")
	}
	// The planted structure: most of a user's items are in one cluster of 50.
	home := 0
	for u := 0; u < 600; u++ {
		per := map[int]int{}
		pairs := map[string]bool{}
		for _, r := range rs[u*20 : (u+1)*20] {
			var it int
			fmt.Sscanf(r.Item, "item-%d", &it)
			per[it/50]++
			pairs[r.Item] = true
			if r.User != rs[u*20].User || r.Value < 1 || r.Value > 5 {
				t.Fatalf("rating %v", r)
			}
		}
		if len(pairs) != 20 {
			t.Fatalf("user %d has %d distinct items, want 20", u, len(pairs))
		}
		home += slices.Max(mapValues(per))
	}
	if share := float64(home) / float64(len(rs)); share < 0.75 {
		t.Errorf("%.2f of the ratings are in the user's main cluster, want about 0.83", share)
	}

	train, test := Split(rs, 0.75, 42)
	model, err := Evaluate(train, test, Config{HalfLife: 30 * 24 * time.Hour}, 10)
	if err != nil {
		t.Fatal(err)
	}
	base := popularityBaseline(train, test, 10)
	t.Logf("model      %+v", model)
	t.Logf("popularity %+v", base)
	if model.Users != 600 || base.Users != 600 {
		t.Fatalf("users: model %d, popularity %d, want 600", model.Users, base.Users)
	}
	// A user's 5 held-out items are about 4 of the ~37 unseen items of their
	// cluster and 1 of the rest: precision@10 near 0.1 at the least for a model
	// that finds the cluster, near 5/285 ≈ 0.02 for popularity.
	if model.Precision < 0.08 || model.Precision < 3*base.Precision {
		t.Errorf("precision@10: model %.4f, popularity %.4f; want the model above 0.08 and 3× popularity", model.Precision, base.Precision)
	}
	for _, c := range []struct {
		name        string
		model, base float64
	}{{"recall", model.Recall, base.Recall}, {"nDCG", model.NDCG, base.NDCG}, {"MAP", model.MAP, base.MAP}} {
		if c.model < 3*c.base {
			t.Errorf("%s: model %.4f, popularity %.4f; want 3×", c.name, c.model, c.base)
		}
	}
}

func mapValues(m map[int]int) []int {
	out := make([]int, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// TestOttoSample runs the whole evaluation on 20 real shopping sessions of
// the OTTO data set: too few to measure quality (the sessions share few
// products), enough to check that real data flows through sanely.
func TestOttoSample(t *testing.T) {
	// The copy the demo embeds (CC-BY 4.0, attribution beside it).
	f, err := os.Open("../demo/data/sessions.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rs, counts, err := ReadEventsCounted(f, Config{})
	if err != nil {
		t.Fatal(err)
	}
	// README: 862 events (800 clicks, 52 carts, 10 orders), all interactions.
	if counts.Events != 862 || counts.Interactions != 862 || len(counts.Skipped) != 0 {
		t.Fatalf("counts %+v", counts)
	}
	users, items := map[string]bool{}, map[string]bool{}
	for _, r := range rs {
		users[r.User], items[r.Item] = true, true
		if !strings.HasPrefix(r.User, "session-") || r.Value < 1 || r.Time < 1659304800 || r.Time > 1662000000 {
			t.Fatalf("rating %v", r)
		}
	}
	if len(users) != 20 || len(items) != 510 || len(rs) >= 862 {
		t.Fatalf("%d sessions, %d products, %d pairs", len(users), len(items), len(rs))
	}
	var sum Metrics
	for seed := int64(42); seed < 52; seed++ {
		train, test := Split(rs, 0.75, seed)
		m, err := Evaluate(train, test, Defaults(), 10)
		if err != nil {
			t.Fatal(err)
		}
		if seed == 42 {
			t.Logf("seed 42: %d train, %d test: %+v", len(train), len(test), m)
		}
		for _, v := range []float64{m.Precision, m.Recall, m.NDCG, m.MAP} {
			if !(v >= 0 && v <= 1) {
				t.Fatalf("seed %d: a metric out of [0, 1]: %+v", seed, m)
			}
		}
		// Sessions with 3 or more products are on both sides.
		if m.Users < 10 || m.Users > 20 {
			t.Fatalf("seed %d: %d users evaluated", seed, m.Users)
		}
		if m.MAP > m.Recall {
			t.Fatalf("seed %d: MAP above recall: %+v", seed, m)
		}
		sum.Precision += m.Precision
		sum.Recall += m.Recall
		sum.NDCG += m.NDCG
		sum.MAP += m.MAP
	}
	if sum.Precision == 0 || sum.Recall == 0 || sum.NDCG == 0 || sum.MAP == 0 {
		t.Errorf("no hit in 10 splits: %+v", sum)
	}
}

// referenceSAR scores like Microsoft Recommenders' SAR, written out plainly
// with dense matrices: affinity A[u,i] = Σ rating × 2^(−(now − t)/halfLife)
// with now the latest training time, co-occurrence C over each user's first
// maxItems distinct items in time order, similarity (Jaccard, lift or count)
// with a threshold,
// scores A·S with the user's training items removed, best k first (ties by
// item id, positive scores only). It returns the metrics of those lists.
func referenceSAR(train, test []Rating, similarity Similarity, halfLife time.Duration, maxItems, threshold, k int) Metrics {
	order := slices.Clone(train)
	slices.SortStableFunc(order, byTime)
	var now int64
	for _, r := range order {
		now = max(now, r.Time)
	}
	itemIndex := map[string]int{}
	var itemIDs []string
	for _, r := range order {
		if _, ok := itemIndex[r.Item]; !ok {
			itemIndex[r.Item] = len(itemIDs)
			itemIDs = append(itemIDs, r.Item)
		}
	}
	n := len(itemIDs)
	aff := map[string][]float64{}
	counted := map[string][]int{}
	seen := map[string]map[int]bool{}
	for _, r := range order {
		if aff[r.User] == nil {
			aff[r.User] = make([]float64, n)
			seen[r.User] = map[int]bool{}
		}
		i := itemIndex[r.Item]
		f := 1.0
		if halfLife > 0 {
			f = math.Exp2(-float64(now-r.Time) / halfLife.Seconds())
		}
		aff[r.User][i] += r.Value * f
		if !seen[r.User][i] {
			seen[r.User][i] = true
			if len(counted[r.User]) < maxItems {
				counted[r.User] = append(counted[r.User], i)
			}
		}
	}
	c := make([][]int, n)
	for i := range c {
		c[i] = make([]int, n)
	}
	for _, items := range counted {
		for _, i := range items {
			for _, j := range items {
				c[i][j]++
			}
		}
	}
	sim := func(i, j int) float64 {
		cij, ci, cj := float64(c[i][j]), float64(c[i][i]), float64(c[j][j])
		switch {
		case c[i][j] < threshold:
			return 0
		case similarity == Lift:
			return cij / (ci * cj)
		case similarity == Count:
			return cij
		}
		return cij / (ci + cj - cij)
	}
	users, relevant := testSets(test)
	acc := newAccumulator(k)
	for _, u := range users {
		a := aff[u]
		if a == nil {
			continue
		}
		scores := make([]float64, n)
		for i, w := range a {
			if w == 0 {
				continue
			}
			for j := range n {
				scores[j] += w * sim(i, j)
			}
		}
		var cand []int
		for j, s := range scores {
			if s > 0 && !seen[u][j] {
				cand = append(cand, j)
			}
		}
		slices.SortFunc(cand, func(x, y int) int {
			return cmp.Or(cmp.Compare(scores[y], scores[x]), cmp.Compare(itemIDs[x], itemIDs[y]))
		})
		var recs []string
		for _, j := range cand[:min(k, len(cand))] {
			recs = append(recs, itemIDs[j])
		}
		acc.add(recs, relevant[u])
	}
	return acc.metrics()
}

// TestEvaluateMatchesReferenceSAR: the incremental model under Evaluate ranks
// as SAR's matrix formulation does (so the protocol measures SAR), with and
// without time decay, with each similarity, and with the co-occurrence cap.
func TestEvaluateMatchesReferenceSAR(t *testing.T) {
	rs := Synthetic(11, 150, 80, 4, 12)
	train, test := Split(rs, 0.75, 42)
	for _, c := range []struct {
		similarity          Similarity
		halfLife            time.Duration
		maxItems, threshold int
	}{
		{Jaccard, 0, 200, 1},
		{Jaccard, 30 * 24 * time.Hour, 200, 1},
		{Jaccard, 24 * time.Hour, 200, 2},
		{Jaccard, 30 * 24 * time.Hour, 4, 1},
		{Lift, 30 * 24 * time.Hour, 200, 1},
		{Count, 0, 200, 3},
	} {
		cfg := Config{Similarity: c.similarity, HalfLife: c.halfLife, MaxItems: c.maxItems, Threshold: c.threshold}
		got, err := Evaluate(train, test, cfg, 10)
		if err != nil {
			t.Fatal(err)
		}
		want := referenceSAR(train, test, c.similarity, c.halfLife, c.maxItems, c.threshold, 10)
		if got.Users != want.Users || math.Abs(got.Precision-want.Precision) > 1e-12 || math.Abs(got.Recall-want.Recall) > 1e-12 ||
			math.Abs(got.NDCG-want.NDCG) > 1e-12 || math.Abs(got.MAP-want.MAP) > 1e-12 {
			t.Errorf("%+v:\n got %+v\nwant %+v", c, got, want)
		}
	}
}
