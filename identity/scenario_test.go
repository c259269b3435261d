package identity

import (
	"flag"
	"fmt"
	"github.com/trustloop/trustloop/identity/identitytest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/collect"
)

// Scenario scripts, in the style of cockroachdb/datadriven: each case is a command
// line, optional input lines, a "----" line and the expected output, ended by a
// blank line. Lines starting with '#' between cases are comments. Run with
// -rewrite to regenerate the expected outputs (then read the diff).
//
// Commands:
//
//	config limit <type> <n> | default-limit <n> | block <regexp> | no-blocks |
//	       priority <type>... | custom <name> [<trait>...] | group-traits
//	                         change the rules (only before the first event)
//	event <id> <type>:<value>...   apply an event; a value may be "quoted"
//	replay <id>                    apply event <id>'s identifiers again
//	message <id>                   input: one Segment message (JSON), decoded by
//	                               collect.Decode as a batch of one, then applied
//	batch <id>                     input: a whole batch body, each message applied
//	split <merge-id>               split a merge
//	partition                      the profiles, "<id>: <identifiers>"
//	merges                         the merge records
//	profile-of <type>:<value>      the profile of an identifier
//
// After every command the graph's invariants are checked (see checkGraph).

var rewrite = flag.Bool("rewrite", false, "rewrite the expected outputs of the scenario scripts")

func TestScenarios(t *testing.T) {
	files, err := filepath.Glob("../testdata/identity/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenario files: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			runScript(t, file)
		})
	}
}

type scriptCase = identitytest.Case

func parseScript(t *testing.T, file string) ([]scriptCase, string) {
	cases, tail, err := identitytest.ParseScript(file)
	if err != nil {
		t.Fatal(err)
	}
	return cases, tail
}

func runScript(t *testing.T, file string) {
	cases, tail := parseScript(t, file)
	s := &script{t: t, config: DefaultConfig(), events: map[string][]trustloop.Identifier{}}
	s.compile()
	var out strings.Builder
	for _, c := range cases {
		got := strings.TrimRight(s.run(c), "\n")
		if got == "" {
			got = "ok"
		}
		if err := checkGraph(s.g); err != nil {
			t.Errorf("%s:%d: %s: graph invariant broken: %v", file, c.Line, c.Cmd, err)
		}
		out.WriteString(c.Head + got + "\n")
		if !*rewrite && got != c.Expect {
			t.Errorf("%s:%d: %s\n--- want\n%s\n--- got\n%s", file, c.Line, c.Cmd, c.Expect, got)
		}
	}
	if *rewrite {
		out.WriteString(tail)
		if err := os.WriteFile(file, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

type script struct {
	t       *testing.T
	config  Config
	rules   *Rules
	g       *Graph
	applied bool
	events  map[string][]trustloop.Identifier
}

func (s *script) compile() string {
	r, err := Compile(s.config)
	if err != nil {
		return "error: " + trustloop.ErrorCode(err) + ": " + trustloop.ErrorMessage(err)
	}
	s.rules, s.g = r, NewGraph(r)
	return ""
}

func (s *script) run(c scriptCase) string {
	args := tokenize(s.t, c.Cmd)
	switch args[0] {
	case "config":
		if s.applied {
			s.t.Fatalf("line %d: config after the first event", c.Line)
		}
		return s.configure(args[1:])
	case "event":
		ids := make([]trustloop.Identifier, 0, len(args)-2)
		for _, a := range args[2:] {
			ids = append(ids, parseID(s.t, a))
		}
		s.events[args[1]] = ids
		return s.apply(args[1], ids)
	case "replay":
		ids, ok := s.events[args[1]]
		if !ok {
			s.t.Fatalf("line %d: no event %s", c.Line, args[1])
		}
		return s.apply(args[1], ids)
	case "message":
		return s.decode(args[1], `{"batch":[`+strings.Join(c.Input, "\n")+`]}`)
	case "batch":
		return s.decode(args[1], strings.Join(c.Input, "\n"))
	case "split":
		id, err := strconv.ParseInt(args[1], 10, 64)
		if err != nil {
			s.t.Fatalf("line %d: %v", c.Line, err)
		}
		if err := s.g.Split(id); err != nil {
			return "error: " + trustloop.ErrorCode(err) + ": " + trustloop.ErrorMessage(err)
		}
		return ""
	case "partition":
		var b strings.Builder
		for _, ids := range s.g.Partition() {
			fmt.Fprintf(&b, "%d: %s\n", s.g.Owner(ids[0]), idList(ids))
		}
		if b.Len() == 0 {
			return "(empty)"
		}
		return b.String()
	case "merges":
		var b strings.Builder
		for _, m := range s.g.Merges() {
			split := ""
			if m.Split {
				split = " (split)"
			}
			fmt.Fprintf(&b, "#%d: %d into %d by %s, moved %s%s\n", m.ID, m.From, m.Into, m.EventID, idList(m.Moved), split)
		}
		if b.Len() == 0 {
			return "(none)"
		}
		return b.String()
	case "profile-of":
		return strconv.FormatInt(s.g.ProfileOf(parseID(s.t, args[1])), 10)
	}
	s.t.Fatalf("line %d: unknown command %q", c.Line, args[0])
	return ""
}

func (s *script) configure(args []string) string {
	num := func(a string) int {
		n, err := strconv.Atoi(a)
		if err != nil {
			s.t.Fatal(err)
		}
		return n
	}
	prev := s.config
	c := &s.config
	c.Blocked = append([]string(nil), c.Blocked...)
	c.CustomTypes = append([]CustomType(nil), c.CustomTypes...)
	switch args[0] {
	case "limit":
		c.Limits = cloneMap(c.Limits)
		c.Limits[args[1]] = num(args[2])
	case "default-limit":
		c.DefaultLimit = num(args[1])
	case "block":
		c.Blocked = append(c.Blocked, args[1])
	case "no-blocks":
		c.Blocked = nil
	case "priority":
		c.Priority = args[1:]
	case "custom":
		c.CustomTypes = append(c.CustomTypes, CustomType{Name: args[1], Traits: args[2:]})
	case "group-traits":
		c.GroupTraits = true
	default:
		s.t.Fatalf("unknown config %q", args[0])
	}
	if out := s.compile(); out != "" {
		s.config = prev // a refused change leaves the rules as they were
		return out
	}
	return ""
}

func cloneMap(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (s *script) apply(id string, ids []trustloop.Identifier) string {
	s.applied = true
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	before := len(s.g.Merges())
	return s.describe(s.g.Apply(Event{ID: id, At: at, Identifiers: ids}), before)
}

func (s *script) decode(id, body string) string {
	s.applied = true
	n := 0
	req, err := collect.Decode([]byte(body), collect.Batch, collect.Options{
		ReceivedAt: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC),
		NewID:      func() string { n++; return fmt.Sprintf("%s-%d", id, n) },
	})
	if err != nil {
		return "decode error: " + err.Error()
	}
	var b strings.Builder
	for i := range req.Messages {
		m := &req.Messages[i]
		ids, skipped := s.rules.FromMessage(m)
		if len(req.Messages) > 1 {
			fmt.Fprintf(&b, "message %d\n", i)
		}
		fmt.Fprintf(&b, "identifiers %s\n", idList(ids))
		if len(skipped) > 0 {
			fmt.Fprintf(&b, "not matched %s\n", skipList(skipped))
		}
		s.events[fmt.Sprintf("%s/%d", id, i)] = ids
		before := len(s.g.Merges())
		d := s.g.ApplyMessage(m)
		d.Skipped = d.Skipped[len(skipped):]
		b.WriteString(s.describe(d, before))
	}
	return b.String()
}

// describe prints a decision; merges made since before are listed with their ids.
func (s *script) describe(d Decision, before int) string {
	var b strings.Builder
	switch {
	case d.New:
		fmt.Fprintf(&b, "new profile %d\n", d.Profile)
	case d.Profile == 0:
		b.WriteString("no profile\n")
	default:
		fmt.Fprintf(&b, "profile %d\n", d.Profile)
	}
	if len(d.Attach) > 0 {
		fmt.Fprintf(&b, "attach %s\n", idList(d.Attach))
	}
	merges := s.g.Merges()
	if before > len(merges) {
		before = len(merges)
	}
	for _, m := range merges[before:] {
		fmt.Fprintf(&b, "merge #%d: %d into %d, linking %s\n", m.ID, m.From, m.Into, idList(m.Linking))
	}
	if len(d.Skipped) > 0 {
		fmt.Fprintf(&b, "skip %s\n", skipList(d.Skipped))
	}
	return b.String()
}

func skipList(skips []Skip) string {
	parts := make([]string, len(skips))
	for i, s := range skips {
		parts[i] = s.String()
	}
	return strings.Join(parts, " ")
}

// checkGraph checks the graph's invariants: every identifier has exactly one live
// profile and the two indexes agree; every identifier is normalized; no profile is
// empty, over a limit, or numbered beyond the last one created.
func checkGraph(g *Graph) error {
	seen := map[trustloop.Identifier]int64{}
	for _, p := range g.Profiles() {
		ids := g.Identifiers(p)
		if len(ids) == 0 {
			return fmt.Errorf("profile %d is empty", p)
		}
		per := map[string]int{}
		for _, id := range ids {
			if q, dup := seen[id]; dup {
				return fmt.Errorf("an identifier of type %s is on profiles %d and %d", id.Type, q, p)
			}
			seen[id] = p
			if g.Owner(id) != p {
				return fmt.Errorf("an identifier of type %s listed on %d is owned by %d", id.Type, p, g.Owner(id))
			}
			if v, err := g.rules.Normalize(id.Type, id.Value); err != nil || v != id.Value {
				return fmt.Errorf("profile %d holds an identifier of type %s that is not normalized", p, id.Type)
			}
			per[id.Type]++
		}
		for typ, n := range per {
			if n > g.rules.Limit(typ) {
				return fmt.Errorf("profile %d has %d identifiers of type %s, over the limit %d", p, n, typ, g.rules.Limit(typ))
			}
		}
		if p > g.last {
			return fmt.Errorf("profile %d was never created", p)
		}
	}
	if len(seen) != len(g.owner) {
		return fmt.Errorf("%d identifiers owned, %d on profiles", len(g.owner), len(seen))
	}
	return nil
}

func parseID(t *testing.T, a string) trustloop.Identifier {
	id, err := identitytest.ParseID(a)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func tokenize(t *testing.T, line string) []string {
	out, err := identitytest.Tokenize(line)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func idList(ids []trustloop.Identifier) string { return identitytest.IDList(ids) }
