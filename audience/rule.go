package audience

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/ext"
	"github.com/google/cel-go/interpreter"

	"github.com/trustloop/trustloop"
)

// Limits on a rule.
const (
	// MaxRuleBytes bounds the text of a rule: a rule is a segment definition written by
	// a person, and a bound keeps parsing and storage cheap whatever is sent.
	MaxRuleBytes = 4096

	// MaxEstimatedCost bounds CEL's static estimate of a rule's worst-case cost, made
	// under the size assumptions of sizeHints. It admits a loop (exists, all, filter,
	// map) over any one list or map, and refuses loops nested over two of them, which is
	// where a rule evaluated for every profile becomes quadratic.
	MaxEstimatedCost = 100_000

	// RuntimeCostLimit stops an evaluation that goes past it, in CEL's cost units (the
	// ones of the estimate, counted as evaluation goes). It is ten times the static
	// bound because the size hints are assumptions, not guarantees: a profile with a
	// longer list than assumed still evaluates, a pathological one is cut off.
	RuntimeCostLimit = 10 * MaxEstimatedCost

	// MaxIterations stops an evaluation after that many loop iterations (all
	// comprehensions of the rule together). It exists because CEL's runtime cost
	// tracking in cel-go v0.31 takes time quadratic in the iterations of one loop (its
	// bookkeeping stack grows by an entry per iteration and is searched linearly):
	// measured here, loops over 5,000 and 20,000 items took 33 and 490 ms tracked,
	// against 1 and 4 ms untracked, and a 500,000-item trait list ran 136 s before
	// the cost limit stopped it. At 2,000 iterations the worst case is about 6 ms, and
	// the bound stays deterministic: it counts iterations, it does not read the clock.
	// It is eight times the assumed size of a trait's list, twice that of
	// events_by_name.
	MaxIterations = 2000
)

// computedKeys are the keys of the computed variable, with the number of items or
// characters the cost estimate assumes each holds at most (0: not a sized value, or the
// default bound). A rule naming another key is refused at compile time, because a typo
// there would otherwise make the audience silently empty.
var computedKeys = map[string]uint64{
	"first_seen":           0,    // timestamp
	"last_seen":            0,    // timestamp
	"events":               0,    // int
	"events_by_name":       1000, // map(string, int): distinct event names
	"channels":             16,   // list(int)
	"order_count":          0,    // int
	"lifetime_value":       0,    // double
	"last_viewed_products": 50,   // list(string)
	"favourite_category":   0,    // string
}

// computedTypes are the CEL types of the computed keys' values (profile.Config.Map
// makes them so). Rules are compiled with computed as a map of dyn, so that they
// keep compiling whatever a profile holds; these types only serve the check on
// save (CheckTypes).
var computedTypes = map[string]struct {
	t    *cel.Type
	name string // as rules write it (CEL names a timestamp google.protobuf.Timestamp)
}{
	"first_seen":           {cel.TimestampType, "timestamp"},
	"last_seen":            {cel.TimestampType, "timestamp"},
	"events":               {cel.IntType, "int"},
	"events_by_name":       {cel.MapType(cel.StringType, cel.IntType), "map(string, int)"},
	"channels":             {cel.ListType(cel.IntType), "list(int): source ids"},
	"order_count":          {cel.IntType, "int"},
	"lifetime_value":       {cel.DoubleType, "double"},
	"last_viewed_products": {cel.ListType(cel.StringType), "list(string)"},
	"favourite_category":   {cel.StringType, "string"},
}

// defaultSizeHint is the number of items or characters assumed, for the cost estimate
// only, of any value whose size CEL cannot know: the traits map, a trait's list or
// string, an event name.
const defaultSizeHint = 256

// ComputedKeys returns the keys a rule may read from computed, sorted.
func ComputedKeys() []string {
	keys := make([]string, 0, len(computedKeys))
	for k := range computedKeys {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ruleHint is the hint of every rule error: it says what a rule can use.
var ruleHint = "A rule is a CEL expression that evaluates to true or false. It can read " +
	"traits.<name> (the profile's traits; has(traits.<name>) tests presence), " +
	"computed.<key> with key one of " + strings.Join(ComputedKeys(), ", ") +
	", and now (the evaluation time). Example: traits.plan == \"pro\" && " +
	"computed.last_seen > now - duration(\"720h\")."

// celEnv is built once: building a CEL environment costs about a millisecond, and a
// built one is safe for concurrent use.
var celEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable("traits", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("computed", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("now", cel.TimestampType),
		// lowerAscii, trim, split, …: traits come from many sources with
		// inconsistent case and spacing.
		ext.Strings(),
		// Traits that came through JSON are doubles: traits.age > 30 must work.
		cel.CrossTypeNumericComparisons(true),
		// getHours(), getDayOfWeek(), … without a time zone mean UTC, not the
		// server's zone.
		cel.DefaultUTCTimeZone(true),
		cel.ParserExpressionSizeLimit(MaxRuleBytes),
		// Literals that can never be valid (duration("1x"), a broken regular
		// expression) are compile errors, not rules that silently never match.
		cel.ASTValidators(
			cel.ValidateDurationLiterals(),
			cel.ValidateTimestampLiterals(),
			cel.ValidateRegexLiterals(),
			computedKeyValidator{},
		),
	)
})

// typedEnv is celEnv with each computed.<key> also declared with its type, as a
// qualified name: CEL resolves computed.order_count to it (typed), while
// has(computed.x) and computed["x"] still go through the map of dyn.
var typedEnv = sync.OnceValues(func() (*cel.Env, error) {
	env, err := celEnv()
	if err != nil {
		return nil, err
	}
	opts := make([]cel.EnvOption, 0, len(computedTypes))
	for _, k := range ComputedKeys() {
		opts = append(opts, cel.Variable("computed."+k, computedTypes[k].t))
	}
	return env.Extend(opts...)
})

// CheckTypes refuses a rule that compiles but has a part that can never hold
// because it uses a computed value as another kind of value: a comparison or
// equality across kinds (computed.last_seen > 30, a time against a number;
// computed.order_count == "3"; "web" in computed.channels, a list of ints),
// arithmetic across types (computed.lifetime_value / computed.order_count,
// a double by an int, which CEL does not do), a field of a number. Such a
// part is false or an error for every profile, so the rule does not say what
// its author meant, and an audience made of it would stay empty (unless a ||
// around it decides without it). It compiles the rule with the computed keys
// typed and keeps from what CEL finds only those cases: numbers compare
// across int, uint and double when the rule runs (computed.lifetime_value ==
// 100 holds), != across kinds always holds, and a ternary or an index with
// mixed numbers works. Traits are whatever the events sent, so nothing about
// them is checked here. The API calls it when a rule is saved new or changed
// (stored rules keep loading, and an audience keeps its rule through a
// rename).
func CheckTypes(rule string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = trustloop.Errorf(trustloop.EINTERNAL, "the rule's types could not be checked")
		}
	}()
	env, err := typedEnv()
	if err != nil {
		return trustloop.Errorf(trustloop.EINTERNAL, "the rule environment could not be built")
	}
	_, iss := env.Compile(rule)
	if iss.Err() == nil {
		return nil
	}
	var parts []string
	for _, e := range iss.Errors() {
		if !neverHolds(e.Message) {
			continue
		}
		msg := e.Message
		if loc := e.Location; loc != nil && loc.Line() > 0 {
			msg = fmt.Sprintf("%d:%d: %s", loc.Line(), loc.Column()+1, msg)
		}
		parts = append(parts, msg)
		if len(parts) == maxIssues {
			break
		}
	}
	if len(parts) == 0 {
		return nil
	}
	types := make([]string, 0, len(computedTypes))
	for _, k := range ComputedKeys() {
		types = append(types, k+" "+computedTypes[k].name)
	}
	return trustloop.Errorf(trustloop.EINVALID, "part of the rule can never hold: %s", strings.Join(parts, "; ")).
		WithHint("It uses a computed value as another kind of value. The computed keys' types: " +
			strings.Join(types, ", ") + ". Compare times with now or timestamp(\"…\"), numbers with numbers, text with \"…\"; convert with double() or int() before arithmetic.")
}

// neverHolds reports whether a CEL check error (with the computed keys typed)
// is one CheckTypes refuses: see there.
func neverHolds(msg string) bool {
	if strings.Contains(msg, "does not support field selection") {
		return true
	}
	rest, ok := strings.CutPrefix(msg, "found no matching overload for '")
	if !ok {
		return false
	}
	op, args, ok := strings.Cut(rest, "' applied to '(")
	if !ok {
		return false
	}
	ts := splitTypes(strings.TrimSuffix(args, ")'"))
	switch op {
	case "_+_", "_-_", "_*_", "_/_", "_%_":
		return true
	case "_==_", "_<_", "_<=_", "_>_", "_>=_":
		return len(ts) == 2 && !sameKind(ts[0], ts[1])
	case "@in":
		return len(ts) == 2 && !sameKind(ts[0], elemType(ts[1]))
	}
	return false
}

// splitTypes splits CEL's list of argument types at its top-level commas.
func splitTypes(s string) []string {
	var out []string
	depth, from := 0, 0
	for i, r := range s {
		switch r {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, strings.TrimSpace(s[from:i]))
				from = i + 1
			}
		}
	}
	return append(out, strings.TrimSpace(s[from:]))
}

// elemType is what @in looks for in a container type: a list's elements, a
// map's keys (dyn for anything else).
func elemType(t string) string {
	if inner, ok := strings.CutPrefix(t, "list("); ok {
		return strings.TrimSuffix(inner, ")")
	}
	if inner, ok := strings.CutPrefix(t, "map("); ok {
		return splitTypes(strings.TrimSuffix(inner, ")"))[0]
	}
	return "dyn"
}

// sameKind reports whether values of the two CEL types can be equal when the
// rule runs: dyn is anything, numbers are one kind, containers compare by
// their element types.
func sameKind(a, b string) bool {
	number := func(t string) bool { return t == "int" || t == "uint" || t == "double" }
	switch {
	case a == "dyn" || b == "dyn", number(a) && number(b):
		return true
	case strings.HasPrefix(a, "list(") && strings.HasPrefix(b, "list("):
		return sameKind(elemType(a), elemType(b))
	case strings.HasPrefix(a, "map(") && strings.HasPrefix(b, "map("):
		ka := splitTypes(strings.TrimSuffix(strings.TrimPrefix(a, "map("), ")"))
		kb := splitTypes(strings.TrimSuffix(strings.TrimPrefix(b, "map("), ")"))
		return len(ka) == 2 && len(kb) == 2 && sameKind(ka[0], kb[0]) && sameKind(ka[1], kb[1])
	}
	return a == b
}

// Program is a compiled rule. It is safe for concurrent use.
type Program struct {
	prg     cel.Program
	adapter types.Adapter
	limited bool // evaluated under RuntimeCostLimit and MaxIterations
}

// Compile checks a rule and compiles it. Every error is EINVALID and says what is
// wrong (syntax errors with line:column), except EINTERNAL if CEL itself fails.
func Compile(rule string) (p *Program, err error) {
	// A panic in the parser or checker on some input must not take down the request
	// that sent the rule; the fuzz test treats EINTERNAL as a failure, so a bug is
	// still found.
	defer func() {
		if r := recover(); r != nil {
			p, err = nil, trustloop.Errorf(trustloop.EINTERNAL, "the rule could not be compiled")
		}
	}()
	switch {
	case strings.TrimSpace(rule) == "":
		return nil, invalidRule("the rule is empty")
	case len(rule) > MaxRuleBytes:
		return nil, invalidRule("the rule is %d bytes long; the limit is %d", len(rule), MaxRuleBytes)
	case !utf8.ValidString(rule):
		return nil, invalidRule("the rule is not valid UTF-8")
	}
	env, err := celEnv()
	if err != nil {
		return nil, trustloop.Errorf(trustloop.EINTERNAL, "the rule environment could not be built")
	}
	checked, iss := env.Compile(rule)
	if iss.Err() != nil {
		return nil, issuesError(iss)
	}
	// dyn is admitted: traits.vip is a fine rule when the trait is a boolean, and a
	// non-boolean result at run time is simply no match.
	if out := checked.OutputType(); !out.IsExactType(cel.BoolType) && !out.IsExactType(cel.DynType) {
		return nil, invalidRule("the rule must evaluate to true or false, but it evaluates to %s", out)
	}
	est, err := env.EstimateCost(checked, sizeHints{})
	if err != nil {
		return nil, invalidRule("the cost of the rule cannot be estimated")
	}
	if est.Max > MaxEstimatedCost {
		return nil, trustloop.Errorf(trustloop.EINVALID,
			"the rule is too expensive: its estimated worst-case cost is %s, the limit is %d",
			costString(est.Max), MaxEstimatedCost).
			WithHint("Avoid loops (exists, all, filter, map) nested inside one another, and regular expressions applied inside loops. " + ruleHint)
	}
	opts := []cel.ProgramOption{
		// Constant parts (duration("720h"), regular expressions) are prepared once
		// here, not at every evaluation.
		cel.EvalOptions(cel.OptOptimize),
	}
	// A rule whose cost CEL bounds under the limit with no assumption about the
	// profile's sizes (no loop over the profile's data, no string operation whose cost
	// grows with a trait's length) cannot go past the limits, so it runs without
	// them: tracking cost makes an evaluation three to four times slower, and most
	// rules are of that kind.
	unbounded, err := env.EstimateCost(checked, noSizeHints{})
	limited := err != nil || unbounded.Max > MaxEstimatedCost
	if limited {
		opts = append(opts,
			cel.CostLimit(RuntimeCostLimit),
			// With stopAtCheck, CEL's check for interruption becomes the iteration
			// bound: it looks at the context every that many iterations, and finds it
			// done.
			cel.InterruptCheckFrequency(MaxIterations+1),
		)
	}
	prg, err := env.Program(checked, opts...)
	if err != nil {
		return nil, invalidRule("the rule cannot be prepared: %s", err)
	}
	return &Program{prg: prg, adapter: env.CELTypeAdapter(), limited: limited}, nil
}

// Match reports whether a profile is in the audience. traits and computed are the
// profile's (times as time.Time, counts as int64, JSON numbers as float64, lists as
// []any or typed slices, maps as map[string]any); now is the time the rule's "now"
// stands for, passed in so that evaluation is deterministic.
//
// A rule that cannot be evaluated for this profile does not match it, and that is not
// an error: a missing trait (no such key), a value of the wrong type (traits.age > 30
// with age a string), an overflow or a division by zero all yield false. This holds
// for the whole rule: !(traits.plan == "pro") is false, not true, for a profile
// without a plan; write !has(traits.plan) || traits.plan != "pro" to include it. A
// result that is not a boolean is false too. Within the rule, || and && absorb an
// error when the other side decides: traits.a == 1 || traits.b == 2 matches a profile
// with only b == 2.
//
// The only error is ETOOLARGE, when evaluation goes past RuntimeCostLimit or
// MaxIterations (the profile is far larger than the rule was estimated for); it never
// carries a value.
func (p *Program) Match(traits, computed map[string]any, now time.Time) (bool, error) {
	if p == nil {
		return false, trustloop.Errorf(trustloop.EINTERNAL, "no compiled rule")
	}
	return p.match(newActivation(p.adapter, traits, computed, now))
}

func (p *Program) match(act *activation) (matched bool, err error) {
	var val ref.Val
	if p.limited {
		val, _, err = p.prg.ContextEval(stopAtCheck, act)
	} else {
		val, _, err = p.prg.Eval(act)
	}
	if err != nil {
		var cancelled interpreter.EvalCancelledError
		if errors.As(err, &cancelled) && cancelled.Cause == interpreter.CostLimitExceeded {
			return false, trustloop.Errorf(trustloop.ETOOLARGE,
				"evaluating the rule on this profile went past the cost limit (%d)", RuntimeCostLimit).
				WithHint(tooLargeHint)
		}
		if errors.Is(err, interpreter.InterruptError{}) {
			return false, trustloop.Errorf(trustloop.ETOOLARGE,
				"evaluating the rule on this profile went past %d loop iterations", MaxIterations).
				WithHint(tooLargeHint)
		}
		// err is never returned: CEL's messages may quote the value they failed on.
		return false, nil
	}
	b, ok := val.(types.Bool)
	return ok && bool(b), nil
}

const tooLargeHint = "The profile holds more data than the rule was estimated for; loop over smaller lists or simplify the rule."

// stopAtCheck is a context that is already done, so that the first check for
// interruption stops the evaluation; see MaxIterations.
var stopAtCheck = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// activation presents one profile to programs. Its values are converted to CEL values
// once, so a Set evaluating many rules on one profile does it once, not per rule.
type activation struct {
	traits, computed, now ref.Val
}

func newActivation(adapter types.Adapter, traits, computed map[string]any, now time.Time) *activation {
	return &activation{
		traits:   types.NewStringInterfaceMap(adapter, traits),
		computed: types.NewStringInterfaceMap(adapter, computed),
		now:      types.Timestamp{Time: now},
	}
}

func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case "traits":
		return a.traits, true
	case "computed":
		return a.computed, true
	case "now":
		return a.now, true
	}
	return nil, false
}

func (a *activation) Parent() interpreter.Activation { return nil }

// invalidRule is a rule error with the rule hint.
func invalidRule(format string, args ...any) *trustloop.Error {
	return trustloop.Errorf(trustloop.EINVALID, format, args...).WithHint(ruleHint)
}

// maxIssues bounds how many compile errors one message lists: after a syntax error
// the parser's recovery produces more that say little.
const maxIssues = 3

// issuesError turns CEL's compile errors into one EINVALID with line:column
// positions. It quotes only the rule, which staff wrote.
func issuesError(iss *cel.Issues) *trustloop.Error {
	errs := iss.Errors()
	parts := make([]string, 0, maxIssues+1)
	for i, e := range errs {
		if i == maxIssues {
			parts = append(parts, fmt.Sprintf("and %d more", len(errs)-maxIssues))
			break
		}
		// CEL names the (empty) container in every unknown-name error; it means
		// nothing to a rule's author.
		msg := strings.ReplaceAll(e.Message, " (in container '')", "")
		msg = redactToken(msg)
		msg += literalAdvice[msg]
		if loc := e.Location; loc != nil && loc.Line() > 0 {
			msg = fmt.Sprintf("%d:%d: %s", loc.Line(), loc.Column()+1, msg)
		}
		parts = append(parts, msg)
	}
	return invalidRule("the rule is not valid: %s", strings.Join(parts, "; "))
}

// redactToken keeps the rule's own text out of a syntax error: CEL quotes
// the token it stopped at, and that can be part of a value the rule compared
// with (an email, a name), in a broken string or not. The position still
// says where; only the end of the input and operators are kept.
func redactToken(msg string) string {
	if !strings.HasPrefix(msg, "Syntax error: ") {
		return msg
	}
	for _, lead := range []string{"at: '", "input '"} {
		i := strings.Index(msg, lead)
		if i < 0 {
			continue
		}
		start := i + len(lead)
		// A token recognition error ends with its token; the others list
		// what was expected after it. The last such end is the token's (the
		// token itself may hold either text).
		end := strings.LastIndex(msg[start:], "' expecting")
		if lead == "at: '" || end < 0 {
			end = strings.LastIndex(msg[start:], "'")
		}
		if end < 0 {
			continue
		}
		tok := msg[start : start+end]
		if tok == "<EOF>" || strings.IndexFunc(tok, func(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) || r == '"' || r == '\'' }) < 0 {
			continue
		}
		what := "text"
		if strings.HasPrefix(tok, `"`) || strings.HasPrefix(tok, "'") {
			what = "a string"
		}
		msg = msg[:i] + strings.TrimSuffix(lead, " '") + " " + what + msg[start+end+1:]
	}
	return msg
}

// literalAdvice completes CEL's terse messages about literals with their syntax.
var literalAdvice = map[string]string{
	"invalid duration argument":  ` (durations are written like "720h", "90m" or "1h30m"; the largest unit is h)`,
	"invalid timestamp argument": ` (timestamps are RFC 3339, like "2024-01-31T00:00:00Z")`,
	"invalid matches argument":   " (regular expressions use RE2 syntax)",
}

// costString prints an estimate, which saturates at the largest uint64 when CEL
// cannot bound it.
func costString(c uint64) string {
	if c > 1<<62 {
		return "unbounded"
	}
	return fmt.Sprint(c)
}

// sizeHints gives CEL's cost estimate the sizes it cannot know from a rule: those of
// the computed keys, and defaultSizeHint for everything else.
type sizeHints struct{}

func (sizeHints) EstimateSize(n checker.AstNode) *checker.SizeEstimate {
	size := uint64(defaultSizeHint)
	if path := n.Path(); len(path) == 2 && path[0] == "computed" && computedKeys[path[1]] > 0 {
		size = computedKeys[path[1]]
	}
	return &checker.SizeEstimate{Min: 0, Max: size}
}

func (sizeHints) EstimateCallCost(function, overloadID string, target *checker.AstNode, args []checker.AstNode) *checker.CallEstimate {
	return nil
}

// noSizeHints assumes nothing about sizes: an estimate made with it holds for any
// profile.
type noSizeHints struct{}

func (noSizeHints) EstimateSize(checker.AstNode) *checker.SizeEstimate { return nil }

func (noSizeHints) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}

// computedKeyValidator refuses computed.<key> and computed["<key>"] for keys that do
// not exist, at the key's position.
type computedKeyValidator struct{}

func (computedKeyValidator) Name() string { return "trustloop.audience.computed_keys" }

func (computedKeyValidator) Validate(_ *cel.Env, _ cel.ValidatorConfig, a *ast.AST, iss *cel.Issues) {
	ast.PreOrderVisit(a.Expr(), ast.NewExprVisitor(func(e ast.Expr) {
		var key string
		var id int64
		switch e.Kind() {
		case ast.SelectKind:
			sel := e.AsSelect()
			if !isComputed(sel.Operand()) {
				return
			}
			key, id = sel.FieldName(), e.ID()
		case ast.CallKind:
			call := e.AsCall()
			if call.FunctionName() != "_[_]" || len(call.Args()) != 2 || !isComputed(call.Args()[0]) {
				return
			}
			k, ok := call.Args()[1].AsLiteral().(types.String)
			if call.Args()[1].Kind() != ast.LiteralKind || !ok {
				return
			}
			key, id = string(k), call.Args()[1].ID()
		default:
			return
		}
		if _, ok := computedKeys[key]; !ok {
			iss.ReportErrorAtID(id, "computed has no key %q; its keys are %s", key, strings.Join(ComputedKeys(), ", "))
		}
	}))
}

func isComputed(e ast.Expr) bool {
	return e.Kind() == ast.IdentKind && e.AsIdent() == "computed"
}
