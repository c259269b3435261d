package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/recommend"
)

// evalResult is what `trustloop eval` prints.
type evalResult struct {
	Source     string                 `json:"source"` // ratings or events
	File       string                 `json:"file"`
	Ratings    int                    `json:"ratings"` // user–item rows read
	Events     *recommend.EventCounts `json:"events,omitempty"`
	Users      int                    `json:"users"`
	Items      int                    `json:"items"`
	Train      int                    `json:"train"`
	Test       int                    `json:"test"`
	TestUsers  int                    `json:"test_users"`
	Cold       int                    `json:"cold_users"` // test users without training ratings
	K          int                    `json:"k"`
	Ratio      float64                `json:"ratio"`
	Seed       int64                  `json:"seed"`
	Similarity string                 `json:"similarity"`
	HalfLife   string                 `json:"half_life"`
	MaxItems   int                    `json:"max_items"`
	Threshold  int                    `json:"threshold"`
	Support    int                    `json:"item_support"`
	Weights    string                 `json:"weights,omitempty"`
	Metrics    recommend.Metrics      `json:"metrics"`
	Seconds    float64                `json:"seconds"` // training and scoring
}

func runEval(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("eval", flag.ContinueOnError)
	ratings := fs.String("ratings", "", "MovieLens-style ratings file: user, item, rating, timestamp (seconds) a line, separated by TABs, \"::\" or commas")
	events := fs.String("events", "", "event export in JSON Lines: Segment messages (track events weighted by --weights) or OTTO sessions")
	k := fs.Int("k", 10, "recommendations per user (top-k)")
	ratio := fs.Float64("ratio", 0.75, "share of each user's ratings trained on; the rest are held out")
	seed := fs.Int64("seed", 42, "seed of the per-user random split")
	similarity := fs.String("similarity", string(recommend.Jaccard), "item similarity: jaccard, lift or count")
	halfLife := fs.Duration("half-life", recommend.Defaults().HalfLife, "time decay of affinity: a rating counts half as much this much before the latest training rating (0: no decay)")
	maxItems := fs.Int("max-items", recommend.Defaults().MaxItems, "distinct items per user counted in co-occurrence (1 to 10000)")
	threshold := fs.Int("threshold", 1, "co-occurrence counts below this are taken as 0 (1 to 1000)")
	support := fs.Int("item-support", recommend.Defaults().ItemSupport, "fewest users who must count an item before its co-occurrences are kept (1: all)")
	weights := fs.String("weights", "", "with --events: interaction weights as \"Event Name=weight,…\" (default: "+recommend.FormatWeights(recommend.Defaults().Weights)+")")
	asJSON := fs.Bool("json", false, "print the result as one JSON object")
	if err := parseFlags(fs, args); err != nil {
		if err == errHelp {
			return nil
		}
		return err
	}
	switch {
	case (*ratings == "") == (*events == ""):
		return &usageError{"eval needs one of --ratings FILE or --events FILE"}
	case *weights != "" && *events == "":
		return &usageError{"--weights applies to --events only"}
	case *k < 1 || *k > 1000:
		return &usageError{fmt.Sprintf("--k %d: want 1 to 1000", *k)}
	case !(*ratio > 0 && *ratio < 1):
		return &usageError{fmt.Sprintf("--ratio %g: want a number between 0 and 1", *ratio)}
	// 0 would mean "the default" to the model: here it is a mistake. The
	// ranges are the model's to check (NewModel, below).
	case *maxItems == 0:
		return &usageError{"--max-items 0: want 1 to 10000"}
	case *threshold == 0:
		return &usageError{"--threshold 0: want 1 to 1000"}
	case *support == 0:
		return &usageError{"--item-support 0: want 1 to 1000"}
	}
	cfg := recommend.Config{
		Similarity:  recommend.Similarity(*similarity),
		HalfLife:    *halfLife,
		MaxItems:    *maxItems,
		Threshold:   *threshold,
		ItemSupport: *support,
	}
	if *weights != "" {
		w, err := recommend.ParseWeights(*weights)
		if err != nil {
			return &usageError{"--weights: " + trustloop.ErrorMessage(err)}
		}
		cfg.Weights = w
	}
	// Check the configuration before reading what may be a large file.
	m, err := recommend.NewModel(cfg)
	if err != nil {
		return &usageError{"eval: " + describe(err)}
	}
	res := evalResult{K: *k, Ratio: *ratio, Seed: *seed, Similarity: string(m.Config().Similarity),
		HalfLife: halfLife.String(), MaxItems: *maxItems, Threshold: *threshold, Support: *support}

	res.Source, res.File = "ratings", *ratings
	if *events != "" {
		res.Source, res.File = "events", *events
		res.Weights = recommend.FormatWeights(m.Config().Weights)
	}
	// A file that cannot be read, or is malformed, is bad input: exit 2 (a
	// usage error), not 1.
	unreadable := func(err error) error {
		return &usageError{fmt.Sprintf("%s: cannot read it: %v; give the path of a ratings or events file", res.File, unwrapPath(err))}
	}
	f, err := os.Open(res.File)
	if err != nil {
		return unreadable(err)
	}
	var rs []recommend.Rating
	if *events != "" {
		var counts recommend.EventCounts
		rs, counts, err = recommend.ReadEventsCounted(f, cfg)
		res.Events = &counts
	} else {
		rs, err = recommend.ReadRatings(f)
	}
	f.Close()
	var te *trustloop.Error
	switch {
	case errors.As(err, &te):
		return &usageError{describe(inFile(res.File, err))} // the line at fault, and the hint
	case err != nil:
		return unreadable(err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	users, items := map[string]bool{}, map[string]bool{}
	for _, r := range rs {
		users[r.User], items[r.Item] = true, true
	}
	res.Ratings, res.Users, res.Items = len(rs), len(users), len(items)
	train, test := recommend.Split(rs, *ratio, *seed)
	res.Train, res.Test = len(train), len(test)
	trained := map[string]bool{}
	for _, r := range train {
		trained[r.User] = true
	}
	testUsers := map[string]bool{}
	for _, r := range test {
		if !testUsers[r.User] {
			testUsers[r.User] = true
			if !trained[r.User] {
				res.Cold++
			}
		}
	}
	res.TestUsers = len(testUsers)

	start := time.Now()
	res.Metrics, err = recommend.Evaluate(train, test, cfg, *k)
	if err != nil {
		return err
	}
	res.Seconds = time.Since(start).Seconds()
	return res.print(stdout, *asJSON)
}

// inFile puts the file's name before a reading error's message.
func inFile(path string, err error) error {
	var e *trustloop.Error
	if errors.As(err, &e) {
		return &trustloop.Error{Code: e.Code, Message: path + ": " + e.Message, Hint: e.Hint}
	}
	return fmt.Errorf("%s: %w", path, err)
}

func (r *evalResult) print(w io.Writer, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(w).Encode(r)
	}
	var err error
	p := func(label, format string, args ...any) {
		if err == nil {
			_, err = fmt.Fprintf(w, "%-14s "+format+"\n", append([]any{label}, args...)...)
		}
	}
	p("data", "%s (%s): %d user–item rows, %d users, %d items", r.File, r.Source, r.Ratings, r.Users, r.Items)
	if e := r.Events; e != nil {
		reasons := make([]string, 0, len(e.Skipped))
		for reason := range e.Skipped {
			reasons = append(reasons, reason)
		}
		sort.Strings(reasons)
		skipped := ""
		for _, reason := range reasons {
			skipped += fmt.Sprintf(", %d skipped (%s)", e.Skipped[reason], reason)
		}
		p("events", "%d read, %d interactions%s; weights %s", e.Events, e.Interactions, skipped, r.Weights)
	}
	p("split", "%.4g/%.4g per user, seed %d: %d train, %d test rows", r.Ratio*100, (1-r.Ratio)*100, r.Seed, r.Train, r.Test)
	p("model", "%s, half-life %s, max-items %d, threshold %d, item support %d, seen items excluded", r.Similarity, r.HalfLife, r.MaxItems, r.Threshold, r.Support)
	p("users", "%d evaluated (%d test users, %d without training ratings)", r.Metrics.Users, r.TestUsers, r.Cold)
	p(fmt.Sprintf("precision@%d", r.K), "%.4f", r.Metrics.Precision)
	p(fmt.Sprintf("recall@%d", r.K), "%.4f", r.Metrics.Recall)
	p(fmt.Sprintf("nDCG@%d", r.K), "%.4f", r.Metrics.NDCG)
	p("MAP", "%.4f", r.Metrics.MAP)
	p("seconds", "%.3f (training and scoring)", r.Seconds)
	return err
}
