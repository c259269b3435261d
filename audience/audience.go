package audience

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/trustloop/trustloop"
)

// Audience is a named rule of a workspace. The store enforces that Name is unique per
// workspace.
type Audience struct {
	ID          int64
	WorkspaceID int64
	Name        string
	Rule        string // a CEL expression over traits, computed and now; see Compile
	Description string
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// Limits on an audience's texts, in characters (runes).
const (
	MaxNameChars        = 100
	MaxDescriptionChars = 1000
)

// Validate checks what the API's create and update accept: a name of 1 to
// MaxNameChars characters, not blank, without control characters or spaces at either
// end; a description of at most MaxDescriptionChars; a rule that compiles. It returns
// one EINVALID listing every problem found. It does not check uniqueness, which only
// the store can, nor CheckTypes, which applies to new and changed rules only.
func Validate(a *Audience) error {
	if a == nil {
		return trustloop.Errorf(trustloop.EINVALID, "the audience is missing").
			WithHint(`Send {"name": "…", "rule": "…"}.`)
	}
	var problems []string
	hint := ""
	switch n := utf8.RuneCountInString(a.Name); {
	case !utf8.ValidString(a.Name):
		problems = append(problems, "the name is not valid UTF-8")
	case strings.TrimSpace(a.Name) == "":
		problems = append(problems, "the name is empty")
	case n > MaxNameChars:
		problems = append(problems, fmt.Sprintf("the name is longer than %d characters", MaxNameChars))
	case strings.TrimSpace(a.Name) != a.Name:
		// "Pro" and "Pro " would be two audiences to the store and one to a reader.
		problems = append(problems, "the name starts or ends with spaces")
	case strings.IndexFunc(a.Name, unicode.IsControl) >= 0:
		// A tab or newline in a name breaks every list and log that shows it.
		problems = append(problems, "the name contains control characters")
	}
	if !utf8.ValidString(a.Description) {
		problems = append(problems, "the description is not valid UTF-8")
	} else if utf8.RuneCountInString(a.Description) > MaxDescriptionChars {
		problems = append(problems, fmt.Sprintf("the description is longer than %d characters", MaxDescriptionChars))
	}
	if len(problems) > 0 {
		hint = fmt.Sprintf("Give the audience a name of 1 to %d characters and a description of at most %d.", MaxNameChars, MaxDescriptionChars)
	}
	if _, err := Compile(a.Rule); err != nil {
		e, ok := err.(*trustloop.Error)
		if !ok || e.Code != trustloop.EINVALID {
			return err
		}
		problems = append(problems, e.Message)
		// The rule's hint says what a rule can use, which is what a caller needs
		// most; a name's problem speaks for itself.
		hint = e.Hint
	}
	if len(problems) == 0 {
		return nil
	}
	return trustloop.Errorf(trustloop.EINVALID, "invalid audience: %s", strings.Join(problems, "; ")).WithHint(hint)
}
