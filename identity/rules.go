package identity

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/trustloop/trustloop"
)

// PreviousID is the type FromMessage gives an alias call's previousId. It is not a
// type of its own: Resolve matches it as a user_id when the view knows that value
// as a user_id, and as an anonymous_id otherwise (see Resolve). Segment's spec says
// previousId is "the previous userId or anonymousId"; the only way to tell which is
// to ask the graph, and when the graph knows neither, the value is most likely the
// anonymous id of the session the user is aliasing from.
const PreviousID = "previous_id"

// Reasons an identifier is not used for matching (Skip.Reason). They name a cause,
// never a value, so they may be logged and counted.
const (
	ReasonEmpty          = "empty"
	ReasonTooLong        = "too_long"
	ReasonBlocked        = "blocked"
	ReasonMalformedEmail = "malformed_email"
	ReasonMalformedPhone = "malformed_phone"
	ReasonUnknownType    = "unknown_type"
	// ReasonNotString: the member holds an object, array or boolean.
	ReasonNotString = "not_a_string"
	// ReasonLimit: matching on it would give a profile more identifiers of a type
	// than its limit.
	ReasonLimit = "limit"
	// ReasonSeparated: matching on it would join profiles a split separated.
	ReasonSeparated = "separated"
)

// Skip is an identifier of an event that was not used for matching, and why. It
// deliberately has no value: skips are reported and logged.
type Skip struct {
	Type   string
	Reason string
}

func (s Skip) String() string { return s.Type + ":" + s.Reason }

// Config is a workspace's identity resolution settings, as an administrator writes
// them. Compile checks it.
type Config struct {
	// Blocked are regular expressions (RE2 syntax); a normalized value that one of
	// them matches entirely, ignoring case, is never used for matching. They catch
	// the placeholders that broken clients send ("null", "undefined", a nil UUID),
	// which would otherwise merge every visitor who sent them into one profile.
	Blocked []string `json:"blocked"`
	// Limits is the maximum number of distinct identifiers of a type on one profile.
	Limits map[string]int `json:"limits"`
	// DefaultLimit applies to the types not in Limits.
	DefaultLimit int `json:"default_limit"`
	// Priority lists identifier types, highest first. When an event's identifiers
	// cannot all be matched, the lowest-priority ones give way. Types left out rank
	// after the listed ones, built-in types first, then custom types in their order.
	Priority []string `json:"priority"`
	// CustomTypes are the workspace's own identifier types.
	CustomTypes []CustomType `json:"custom_types,omitempty"`
	// GroupTraits makes FromMessage read the traits of group calls as identifiers
	// of the user. Off by default: in Segment's spec a group call's traits describe
	// the group (the company), so its email is typically shared by every member of
	// the account, and matching on it would merge colleagues.
	GroupTraits bool `json:"group_traits,omitempty"`
}

// CustomType is a workspace-configured identifier type, such as a loyalty card
// number.
type CustomType struct {
	// Name is the type's name: lower-case letters, digits and '_', starting with a
	// letter, at most 64 bytes.
	Name string `json:"name"`
	// Traits are the trait keys it is read from (in traits and context.traits);
	// none means the key equal to Name.
	Traits []string `json:"traits,omitempty"`
}

// DefaultConfig is the configuration of a new workspace: one user id per profile (a
// second one means two people share a device), up to five of anything else, and the
// placeholder values clients send when they have no real one. The empty value is
// never used whatever the configuration (Normalize rejects it before the blocked
// values are looked at); `^[0-]*$` also catches "0", "0000" and the nil UUID.
func DefaultConfig() Config {
	return Config{
		Blocked:      []string{`^[0-]*$`, `^-1$`, `^null$`, `^undefined$`, `^anonymous$`},
		Limits:       map[string]int{trustloop.IDUserID: 1, trustloop.IDEmail: 5},
		DefaultLimit: 5,
		Priority: []string{trustloop.IDUserID, trustloop.IDEmail, trustloop.IDPhone,
			trustloop.IDDeviceID, trustloop.IDAnonymousID},
	}
}

// builtinTypes are the built-in identifier types in their default priority.
var builtinTypes = []string{trustloop.IDUserID, trustloop.IDEmail, trustloop.IDPhone,
	trustloop.IDDeviceID, trustloop.IDAnonymousID}

// kind is how a type's values are normalized.
type kind uint8

const (
	kindPlain kind = iota // trimmed
	kindEmail
	kindPhone
)

type typeRule struct {
	name  string
	limit int
	kind  kind
}

// Rules are a compiled Config. They are immutable and safe for concurrent use.
type Rules struct {
	// types in priority order, highest first; a type's index is its rank.
	types []typeRule
	index map[string]int
	// blockedWords are the Blocked patterns that are plain words ("null"),
	// compared with strings.EqualFold; blocked is the others in one anchored,
	// case-insensitive alternation, nil when there are none. Every identifier of
	// every event is checked twice (FromMessage, Resolve), and a regexp costs
	// several times an EqualFold.
	blockedWords []string
	blocked      *regexp.Regexp
	// traitKeys are the trait keys FromMessage reads, and traitTypes the rank of
	// the type each is read as.
	traitKeys   []string
	traitTypes  []int
	groupTraits bool
}

var customName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

// Bounds of a Config saved from now on (CheckBounds): a profile's identifiers
// are read and counted at every event, so neither may be unbounded.
const (
	// MaxCustomTypes bounds the custom identifier types, and the traits one
	// of them reads.
	MaxCustomTypes = 32
	// MaxLimit bounds an identifier type's limit per profile.
	MaxLimit = 10_000
)

// CheckBounds refuses a Config past the bounds above. It is checked when
// settings are saved, not when they are loaded: settings saved before the
// bounds existed keep working (refusing them would refuse every event of the
// workspace).
func CheckBounds(c Config) error {
	if len(c.CustomTypes) > MaxCustomTypes {
		return configError("At most %d custom identifier types, not %d.", MaxCustomTypes, len(c.CustomTypes))
	}
	for i, ct := range c.CustomTypes {
		if len(ct.Traits) > MaxCustomTypes {
			return configError("CustomTypes[%d] reads at most %d traits, not %d.", i, MaxCustomTypes, len(ct.Traits))
		}
	}
	if c.DefaultLimit > MaxLimit {
		return configError("DefaultLimit must be at most %d.", MaxLimit)
	}
	for _, t := range slices.Sorted(maps.Keys(c.Limits)) {
		if c.Limits[t] > MaxLimit {
			return configError("Limits[%q] must be at most %d.", t, MaxLimit)
		}
	}
	return nil
}

// Compile checks a Config and compiles it. Errors are EINVALID and name the bad
// entry by its field and index.
func Compile(c Config) (*Rules, error) {
	r := &Rules{index: map[string]int{}, groupTraits: c.GroupTraits}
	known := map[string]kind{trustloop.IDEmail: kindEmail, trustloop.IDPhone: kindPhone,
		trustloop.IDUserID: kindPlain, trustloop.IDDeviceID: kindPlain, trustloop.IDAnonymousID: kindPlain}
	order := slices.Clone(builtinTypes)
	traitOwner := map[string]string{trustloop.IDEmail: trustloop.IDEmail, trustloop.IDPhone: trustloop.IDPhone}
	r.traitKeys = []string{trustloop.IDEmail, trustloop.IDPhone}
	var traitTypeNames = []string{trustloop.IDEmail, trustloop.IDPhone}

	for i, ct := range c.CustomTypes {
		switch _, dup := known[ct.Name]; {
		case !customName.MatchString(ct.Name):
			return nil, configError("CustomTypes[%d].Name must be lower-case letters, digits and '_', start with a letter and be at most 64 bytes.", i)
		case ct.Name == PreviousID:
			return nil, configError("CustomTypes[%d].Name %q is reserved for alias calls.", i, ct.Name)
		case slices.Contains(builtinTypes, ct.Name):
			return nil, configError("CustomTypes[%d].Name %q is a built-in type.", i, ct.Name)
		case dup:
			return nil, configError("CustomTypes[%d].Name %q is defined twice.", i, ct.Name)
		}
		known[ct.Name] = kindPlain
		order = append(order, ct.Name)
		traits := ct.Traits
		if len(traits) == 0 {
			traits = []string{ct.Name}
		}
		for j, key := range traits {
			if key == "" {
				return nil, configError("CustomTypes[%d].Traits[%d] is empty.", i, j)
			}
			if other, ok := traitOwner[key]; ok {
				return nil, configError("CustomTypes[%d].Traits[%d] %q is already read as %s.", i, j, key, other)
			}
			traitOwner[key] = ct.Name
			r.traitKeys = append(r.traitKeys, key)
			traitTypeNames = append(traitTypeNames, ct.Name)
		}
	}

	if c.DefaultLimit < 1 {
		return nil, configError("DefaultLimit must be at least 1.")
	}
	limitTypes := make([]string, 0, len(c.Limits))
	for t := range c.Limits {
		limitTypes = append(limitTypes, t)
	}
	slices.Sort(limitTypes) // the same config always reports the same error
	for _, t := range limitTypes {
		if _, ok := known[t]; !ok {
			return nil, configError("Limits has an unknown identifier type %q.", t).
				WithHint("Use a built-in type (" + strings.Join(builtinTypes, ", ") + ") or one of CustomTypes.")
		}
		if c.Limits[t] < 1 {
			return nil, configError("Limits[%q] must be at least 1.", t)
		}
	}

	seen := map[string]bool{}
	var ranked []string
	for i, t := range c.Priority {
		if _, ok := known[t]; !ok {
			return nil, configError("Priority[%d] is an unknown identifier type %q.", i, t).
				WithHint("Use a built-in type (" + strings.Join(builtinTypes, ", ") + ") or one of CustomTypes.")
		}
		if seen[t] {
			return nil, configError("Priority[%d] %q is listed twice.", i, t)
		}
		seen[t] = true
		ranked = append(ranked, t)
	}
	for _, t := range order {
		if !seen[t] {
			ranked = append(ranked, t)
		}
	}
	for i, t := range ranked {
		limit, ok := c.Limits[t]
		if !ok {
			limit = c.DefaultLimit
		}
		r.types = append(r.types, typeRule{name: t, limit: limit, kind: known[t]})
		r.index[t] = i
	}
	for _, t := range traitTypeNames {
		r.traitTypes = append(r.traitTypes, r.index[t])
	}

	var alts []string
	for i, p := range c.Blocked {
		if _, err := regexp.Compile(p); err != nil {
			// The pattern itself is not echoed: it may spell out a value.
			why := "it does not compile"
			if se := (*syntax.Error)(nil); errors.As(err, &se) {
				why = string(se.Code)
			}
			return nil, configError("Blocked[%d] is not a valid regular expression: %s.", i, why).
				WithHint("Use RE2 syntax (https://golang.org/s/re2syntax); a pattern must match the whole normalized value.")
		}
		if w, ok := blockedWord(p); ok {
			r.blockedWords = append(r.blockedWords, w)
			continue
		}
		alts = append(alts, "(?:"+p+")")
	}
	if len(alts) > 0 {
		// Each pattern compiled on its own, so none can close the group it is put
		// in. Together they can still exceed the size limits of package regexp.
		var err error
		if r.blocked, err = regexp.Compile(`(?i)^(?:` + strings.Join(alts, "|") + `)$`); err != nil {
			return nil, configError("Blocked patterns are too large together.").
				WithHint("Use fewer or simpler patterns.")
		}
	}
	return r, nil
}

// blockedWord returns the word a Blocked pattern matches when it is one literal,
// anchored or not, case-insensitive (as all patterns are): "null", "^null$". A
// pattern that turns case-insensitivity off, or is anything more, is not a word.
func blockedWord(p string) (string, bool) {
	re, err := syntax.Parse(p, syntax.Perl|syntax.FoldCase)
	if err != nil {
		return "", false
	}
	re = re.Simplify()
	subs := []*syntax.Regexp{re}
	if re.Op == syntax.OpConcat {
		subs = re.Sub
	}
	// Strip the anchors the pattern wrote itself: they are implied.
	if len(subs) > 0 && subs[0].Op == syntax.OpBeginText {
		subs = subs[1:]
	}
	if len(subs) > 0 && subs[len(subs)-1].Op == syntax.OpEndText {
		subs = subs[:len(subs)-1]
	}
	if len(subs) != 1 || subs[0].Op != syntax.OpLiteral {
		return "", false
	}
	lit := subs[0]
	for _, c := range lit.Rune {
		// Letters matched case-sensitively ((?-i)) are not EqualFold's business.
		if lit.Flags&syntax.FoldCase == 0 && unicode.SimpleFold(c) != c {
			return "", false
		}
	}
	return string(lit.Rune), true
}

func configError(format string, args ...any) *trustloop.Error {
	return trustloop.Errorf(trustloop.EINVALID, "Invalid identity configuration: "+format, args...).
		WithHint("Fix the entry named in the message.")
}

// Types returns the identifier types, highest priority first.
func (r *Rules) Types() []string {
	out := make([]string, len(r.types))
	for i, t := range r.types {
		out[i] = t.name
	}
	return out
}

// Limit returns the limit of a type, 0 for an unknown type.
func (r *Rules) Limit(typ string) int {
	if i, ok := r.index[typ]; ok {
		return r.types[i].limit
	}
	return 0
}

// Normalize returns the one form of an identifier value that is matched and
// indexed, or an EINVALID error when the value must not be used for matching. The
// error's Message names the type and the reason, never the value.
//
//   - email: trimmed and lower-cased; it must look like local@domain, with a dot
//     in the domain. Dots and "+tags" are kept: whether they matter is up to the
//     mail provider, and guessing wrong would merge two people.
//   - phone: spaces, dots, dashes and parentheses removed (and the "(0)" of
//     "+44 (0)20 …"), a leading "00" made "+"; it must then be "+" and 8 to 15
//     digits not starting with 0 (E.164). A number without its country code is
//     rejected rather than guessed.
//   - user_id, anonymous_id, device_id, custom types, previous_id: trimmed.
//
// Any type: the empty value, values longer than trustloop.MaxIdentifierLen bytes
// and blocked values are rejected.
func (r *Rules) Normalize(typ, value string) (string, error) {
	v, reason := r.normalize(typ, value)
	if reason == "" {
		return v, nil
	}
	if _, ok := r.index[typ]; !ok && typ != PreviousID {
		typ = "" // an unknown type may be anything the caller had: not echoed
	}
	return "", reasonError(typ, reason)
}

// reasonError is the error of a rejected value. Its message is chosen among fixed
// texts by the reason; only a known type name is put in.
func reasonError(typ, reason string) *trustloop.Error {
	var msg, hint string
	switch reason {
	case ReasonUnknownType:
		return trustloop.Errorf(trustloop.EINVALID, "Unknown identifier type.").
			WithHint("Use a built-in type (" + strings.Join(builtinTypes, ", ") + ") or a custom type of the workspace.")
	case ReasonEmpty:
		msg, hint = "is empty", "Send a non-empty value."
	case ReasonTooLong:
		msg, hint = fmt.Sprintf("is longer than %d bytes", trustloop.MaxIdentifierLen), "Send the identifier itself, not a document."
	case ReasonBlocked:
		msg, hint = "is a blocked placeholder value", "Placeholders such as null or anonymous are never matched; send the real identifier or none."
	case ReasonMalformedEmail:
		msg, hint = "is not a valid email address", "Send an address of the form local@domain.tld."
	case ReasonMalformedPhone:
		msg, hint = "is not a valid international phone number", "Send the number in E.164 form: + country code and number, 8 to 15 digits."
	default:
		msg, hint = "cannot be used ("+reason+")", ""
	}
	return trustloop.Errorf(trustloop.EINVALID, "The %s identifier %s.", typ, msg).WithHint(hint)
}

// normalize is Normalize without the error: reason is "" when the value is usable.
func (r *Rules) normalize(typ, value string) (v, reason string) {
	k := kindPlain
	if i, ok := r.index[typ]; ok {
		k = r.types[i].kind
	} else if typ != PreviousID {
		return "", ReasonUnknownType
	}
	return r.normalizeKind(k, value)
}

func (r *Rules) normalizeKind(k kind, value string) (v, reason string) {
	v = strings.TrimSpace(value)
	switch {
	case v == "":
		return "", ReasonEmpty
	case len(v) > trustloop.MaxIdentifierLen:
		return "", ReasonTooLong
	}
	switch k {
	case kindEmail:
		var ok bool
		if v, ok = normalizeEmail(v); !ok {
			return "", ReasonMalformedEmail
		}
	case kindPhone:
		var ok bool
		if v, ok = normalizePhone(v); !ok {
			return "", ReasonMalformedPhone
		}
	}
	if len(v) > trustloop.MaxIdentifierLen {
		// Lower-casing can lengthen a value (some letters take more bytes in
		// lower case); what is stored must pass this check again.
		return "", ReasonTooLong
	}
	if r.isBlocked(v) {
		return "", ReasonBlocked
	}
	return v, ""
}

// Placeholder reports whether a user or anonymous id, as sent, is a blocked
// placeholder ("null", "anonymous", "00000000-…"): a value that many people's
// broken integrations send, which names no one. An empty id is none (it is
// absent, not a placeholder).
func (r *Rules) Placeholder(value string) bool {
	v := strings.TrimSpace(value)
	return v != "" && r.isBlocked(v)
}

// isBlocked reports whether a normalized value matches a Blocked pattern.
func (r *Rules) isBlocked(v string) bool {
	for _, w := range r.blockedWords {
		if strings.EqualFold(v, w) {
			return true
		}
	}
	return r.blocked != nil && r.blocked.MatchString(v)
}

// normalizeEmail lower-cases a trimmed address and checks its shape. It is not an
// RFC 5322 parser: quoted local parts and address literals are rare enough in
// customer data that rejecting them (they stay traits) is safer than matching on
// something half-understood.
func normalizeEmail(v string) (string, bool) {
	if !utf8.ValidString(v) {
		return "", false
	}
	v = strings.ToLower(v)
	at := strings.IndexByte(v, '@')
	if at <= 0 || at != strings.LastIndexByte(v, '@') {
		return "", false
	}
	local, domain := v[:at], v[at+1:]
	// RFC 5321's limits (4.5.3.1; 254 in all, as a path holds 256 with its
	// brackets): no mail server takes a longer address, so it cannot be
	// anyone's and must not match anyone. An address stored before these
	// limits that breaks them no longer joins its profile.
	if len(local) > 64 || len(domain) > 253 || len(v) > 254 {
		return "", false
	}
	if strings.ContainsAny(local, `()<>[]:;,\"`) || local[0] == '.' || local[len(local)-1] == '.' {
		return "", false
	}
	if !strings.Contains(domain, ".") || domain[0] == '.' || domain[len(domain)-1] == '.' ||
		strings.Contains(domain, "..") {
		return "", false
	}
	for _, c := range domain {
		// Letters of any script (internationalized domains), digits, '-' and '.'.
		if c < utf8.RuneSelf && !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') ||
			c >= utf8.RuneSelf && !unicode.IsLetter(c) && !unicode.IsMark(c) && !unicode.IsDigit(c) {
			return "", false
		}
	}
	if strings.IndexFunc(local, func(c rune) bool { return unicode.IsSpace(c) || unicode.IsControl(c) }) >= 0 {
		return "", false
	}
	return v, true
}

// normalizePhone reduces a written phone number to E.164.
func normalizePhone(v string) (string, bool) {
	if strings.HasPrefix(v, "+") || strings.HasPrefix(v, "00") {
		// "+44 (0)20 7946 0958": the (0) is dialled only from inside the country.
		v = strings.Replace(v, "(0)", "", 1)
	}
	var buf [20]byte // '+' and up to 15 digits, with room to see it is too long
	b := buf[:0]
	for _, c := range v {
		switch {
		case c >= '0' && c <= '9':
			if len(b) == len(buf) {
				return "", false
			}
			b = append(b, byte(c))
		case c == '+' && len(b) == 0:
			b = append(b, '+')
		case c == ' ' || c == '.' || c == '-' || c == '(' || c == ')' || unicode.IsSpace(c):
		default:
			return "", false
		}
	}
	var digits []byte
	switch {
	case len(b) > 0 && b[0] == '+':
		digits = b[1:]
	case len(b) >= 2 && b[0] == '0' && b[1] == '0':
		digits = b[2:] // the international call prefix of most countries
	default:
		return "", false
	}
	if len(digits) < 8 || len(digits) > 15 || digits[0] == '0' {
		return "", false
	}
	return "+" + string(digits), true
}
