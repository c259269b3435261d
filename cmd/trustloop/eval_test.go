package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const evalFixtures = "../../recommend/testdata/eval/"

func TestEvalRatings(t *testing.T) {
	var out bytes.Buffer
	if err := runEval(context.Background(), []string{"--ratings", evalFixtures + "ratings.tsv"}, &out); err != nil {
		t.Fatal(err)
	}
	// 40 users with 12 ratings each: 9 train, 3 test.
	for _, want := range []string{
		"480 user–item rows, 40 users, 60 items",
		"75/25 per user, seed 42: 360 train, 120 test rows",
		"jaccard, half-life 720h0m0s, max-items 100, threshold 1",
		"40 evaluated (40 test users, 0 without training ratings)",
		"precision@10   0.",
		"recall@10      0.",
		"nDCG@10        0.",
		"MAP            0.",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}

	// --json, other flags; the same seed gives the same figures.
	args := []string{"--ratings", evalFixtures + "ratings.tsv", "--json", "--k", "5", "--seed", "7",
		"--similarity", "lift", "--half-life", "0", "--max-items", "5", "--threshold", "2"}
	var first evalResult
	for i := 0; i < 2; i++ {
		out.Reset()
		if err := runEval(context.Background(), args, &out); err != nil {
			t.Fatal(err)
		}
		var r evalResult
		if err := json.Unmarshal(out.Bytes(), &r); err != nil {
			t.Fatalf("%v: %s", err, out.String())
		}
		if r.Source != "ratings" || r.Ratings != 480 || r.Train != 360 || r.Test != 120 || r.K != 5 || r.Seed != 7 ||
			r.Similarity != "lift" || r.HalfLife != "0s" || r.MaxItems != 5 || r.Threshold != 2 || r.Metrics.Users != 40 {
			t.Fatalf("result %+v", r)
		}
		if m := r.Metrics; !(m.Precision > 0 && m.Precision <= 1 && m.Recall > 0 && m.NDCG > 0 && m.MAP > 0) {
			t.Fatalf("metrics %+v", m)
		}
		if i == 0 {
			first = r
		} else if r.Metrics != first.Metrics {
			t.Errorf("seed 7 twice: %+v, then %+v", first.Metrics, r.Metrics)
		}
	}
}

func TestEvalEvents(t *testing.T) {
	var out bytes.Buffer
	err := runEval(context.Background(), []string{"--events", evalFixtures + "events.jsonl", "--json",
		"--weights", "Product Viewed=1,Product Added=2,Order Completed=4"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	var r evalResult
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	if r.Source != "events" || r.Events == nil || r.Events.Events != 266 || r.Events.Interactions != 240 ||
		r.Events.Skipped["not_interaction"] != 20 || r.Events.Skipped["no_product_id"] != 6 ||
		r.Weights != "Order Completed=4,Product Added=2,Product Viewed=1" || r.Ratings != 240 || r.Users != 30 || r.Metrics.Users != 30 {
		t.Fatalf("result %s", out.String())
	}
	if m := r.Metrics; !(m.Precision > 0 && m.Recall > 0 && m.NDCG > 0 && m.MAP > 0) {
		t.Fatalf("metrics %+v", m)
	}
	// Only orders weighted: the views and carts are skipped.
	out.Reset()
	err = runEval(context.Background(), []string{"--events", evalFixtures + "events.jsonl", "--weights", "Order Completed=1"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "266 read, ") || strings.Contains(out.String(), "240 interactions") {
		t.Errorf("orders only:\n%s", out.String())
	}
}

// TestEvalMalformed: a malformed file is bad input, exit 2 (a usage error),
// with the file, the line and a hint, and no value from the line.
func TestEvalMalformed(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string { return writeTestFile(t, dir, name, []byte(content)) }
	badEvents := file("events.jsonl", `{"type":"track","userId":"u1","event":"Product Viewed","properties":{"product_id":"p1"},"timestamp":"2024-05-01T10:00:00Z"}`+
		"\n\n{\"type\":\"track\",\"userId\":\"someone@example.com\"\n")
	fixture, err := os.ReadFile(evalFixtures + "ratings.tsv")
	if err != nil {
		t.Fatal(err)
	}
	// A file joined with itself: every pair twice, in train and test alike.
	doubled := file("doubled.tsv", string(fixture)+string(fixture))
	const ok = "someone@example.com\tp1\t4\t100\n"
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--ratings", evalFixtures + "bad.tsv"}, evalFixtures + "bad.tsv: Line 4: the rating is not a positive number"},
		{[]string{"--events", badEvents}, badEvents + ": Line 3: not a JSON object"},
		{[]string{"--events", evalFixtures + "ratings.tsv"}, evalFixtures + "ratings.tsv: Line 1: not a JSON object"},
		{[]string{"--ratings", evalFixtures + "events.jsonl"}, evalFixtures + "events.jsonl: Line 1: want 4 fields"},
		{[]string{"--ratings", doubled}, doubled + ": Line 481 repeats the user and item of line 1."},
		{[]string{"--ratings", file("again.tsv", ok+"\n"+ok)}, filepath.Join(dir, "again.tsv") + ": Line 3 repeats the user and item of line 1."},
		{[]string{"--ratings", file("hex.tsv", "someone@example.com\tp1\t0x1p1\t100\n")}, filepath.Join(dir, "hex.tsv") + ": Line 1: the rating is not a positive number"},
		{[]string{"--ratings", file("underscore.tsv", ok+"someone@example.com\tp2\t1_0\t100\n")}, filepath.Join(dir, "underscore.tsv") + ": Line 2: the rating is not a positive number"},
		{[]string{"--ratings", file("plus.tsv", ok+"someone@example.com\tp2\t4\t+5\n")}, filepath.Join(dir, "plus.tsv") + ": Line 2: the timestamp is not whole seconds"},
		{[]string{"--ratings", file("latin1.tsv", ok+"someone@example.com\tp\xe9\t4\t100\n")}, filepath.Join(dir, "latin1.tsv") + ": Line 2: the item is not valid UTF-8"},
	} {
		var out bytes.Buffer
		err := runEval(context.Background(), c.args, &out)
		var ue *usageError
		if !errors.As(err, &ue) || !strings.HasPrefix(ue.msg, c.want) {
			t.Errorf("%v: %v, want a usage error starting %q", c.args, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "example.com") {
			t.Errorf("the error echoes the line: %s", err)
		}
		if out.Len() != 0 {
			t.Errorf("%v printed %q", c.args, out.String())
		}
	}
}

// TestEvalEventsRepeat: in an event export a customer meeting an item again is
// ordinary: the events are summed into one user–item row, not refused.
func TestEvalEventsRepeat(t *testing.T) {
	events, err := os.ReadFile(evalFixtures + "events.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	doubled := filepath.Join(t.TempDir(), "events.jsonl")
	if err := os.WriteFile(doubled, append(events, events...), 0o600); err != nil {
		t.Fatal(err)
	}
	var once, twice evalResult
	for _, c := range []struct {
		file string
		into *evalResult
	}{{evalFixtures + "events.jsonl", &once}, {doubled, &twice}} {
		var out bytes.Buffer
		if err := runEval(context.Background(), []string{"--events", c.file, "--json"}, &out); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(out.Bytes(), c.into); err != nil {
			t.Fatal(err)
		}
	}
	if twice.Ratings != once.Ratings || twice.Events.Events != 2*once.Events.Events || twice.Metrics != once.Metrics {
		t.Errorf("doubled events: %d rows, %d events, %+v; once: %d rows, %d events, %+v",
			twice.Ratings, twice.Events.Events, twice.Metrics, once.Ratings, once.Events.Events, once.Metrics)
	}
}

func TestEvalUsage(t *testing.T) {
	ratings := evalFixtures + "ratings.tsv"
	for _, args := range [][]string{
		{},
		{"--ratings", ratings, "--events", ratings},
		{"--ratings", ratings, "--weights", "Product Viewed=1"},
		{"--events", ratings, "--weights", "Product Viewed"},
		{"--ratings", ratings, "--ratio", "1"},
		{"--ratings", ratings, "--ratio", "0"},
		{"--ratings", ratings, "--k", "0"},
		{"--ratings", ratings, "--max-items", "0"},
		{"--ratings", ratings, "--threshold", "0"},
		{"--ratings", ratings, "--threshold", "-1"},
		{"--ratings", ratings, "--threshold", "1001"},
		{"--ratings", ratings, "--threshold", "99999999"},
		{"--ratings", ratings, "--half-life", "30m"},
		{"--ratings", ratings, "--half-life", "-1h"},
		{"--ratings", ratings, "--max-items", "20000"},
		{"--ratings", ratings, "--similarity", "cosine"}, // the model's own check, said as serve says it
		{"--ratings", ratings, "extra"},
		{"--ratings", ratings, "--no-such-flag"},
	} {
		var ue *usageError
		if err := runEval(context.Background(), args, &bytes.Buffer{}); !errors.As(err, &ue) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
	// A file that cannot be read is bad input too.
	for _, file := range []string{filepath.Join(t.TempDir(), "none.tsv"), t.TempDir()} {
		var ue *usageError
		if err := runEval(context.Background(), []string{"--ratings", file}, &bytes.Buffer{}); !errors.As(err, &ue) || !strings.Contains(ue.msg, "cannot read it") {
			t.Errorf("%s: %v, want a usage error", file, err)
		}
	}
	if err := runEval(context.Background(), []string{"--ratings", ratings, "--threshold", "1000", "--json"}, &bytes.Buffer{}); err != nil {
		t.Errorf("--threshold 1000: %v", err)
	}
	if err := runEval(context.Background(), []string{"-h"}, &bytes.Buffer{}); err != nil {
		t.Errorf("-h: %v", err)
	}
}
