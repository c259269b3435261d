// Package identitytest reads the identity scenario scripts of testdata/identity/
// (a command line, its input lines, "----", the expected output up to a blank line),
// so that the pure identity rules and the real projection over each store run the
// same scripts. It is for tests only; it must never be imported by production code.
package identitytest

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/trustloop/trustloop"
)

// Case is one command of a script. Head is the text from the end of the previous
// case's output up to and including "----", kept verbatim so that a test can write
// the script back with new outputs (-rewrite).
type Case struct {
	Line   int // of the command
	Head   string
	Cmd    string
	Input  []string
	Expect string
}

// ParseScript reads a script; tail is the text after the last case.
func ParseScript(file string) (cases []Case, tail string, err error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, "", err
	}
	lines := strings.SplitAfter(string(data), "\n")
	var head strings.Builder
	for i := 0; i < len(lines); {
		l := strings.TrimRight(lines[i], "\n")
		if strings.TrimSpace(l) == "" || strings.HasPrefix(l, "#") {
			head.WriteString(lines[i])
			i++
			continue
		}
		c := Case{Line: i + 1, Cmd: strings.TrimSpace(l)}
		head.WriteString(lines[i])
		i++
		for ; i < len(lines) && strings.TrimRight(lines[i], "\n") != "----"; i++ {
			c.Input = append(c.Input, strings.TrimRight(lines[i], "\n"))
			head.WriteString(lines[i])
		}
		if i == len(lines) {
			return nil, "", fmt.Errorf("%s:%d: no ---- after the command", file, c.Line)
		}
		head.WriteString(lines[i])
		i++
		var expect []string
		for ; i < len(lines) && strings.TrimSpace(lines[i]) != ""; i++ {
			expect = append(expect, strings.TrimRight(lines[i], "\n"))
		}
		c.Head, c.Expect = head.String(), strings.Join(expect, "\n")
		head.Reset()
		cases = append(cases, c)
	}
	return cases, head.String(), nil
}

// Tokenize splits a command line at spaces outside double quotes.
func Tokenize(line string) ([]string, error) {
	var out []string
	var cur strings.Builder
	inQuote, esc, started := false, false, false
	for _, c := range line {
		switch {
		case esc:
			esc = false
		case inQuote && c == '\\':
			esc = true
		case c == '"':
			inQuote = !inQuote
		case !inQuote && (c == ' ' || c == '\t'):
			if started {
				out = append(out, cur.String())
				cur.Reset()
				started = false
			}
			continue
		}
		cur.WriteRune(c)
		started = true
	}
	if inQuote {
		return nil, fmt.Errorf("unterminated quote in %q", line)
	}
	if started {
		out = append(out, cur.String())
	}
	return out, nil
}

// ParseID reads "type:value", the value possibly a Go-quoted string.
func ParseID(a string) (trustloop.Identifier, error) {
	typ, v, ok := strings.Cut(a, ":")
	if !ok {
		return trustloop.Identifier{}, fmt.Errorf("identifier %q is not type:value", a)
	}
	if strings.HasPrefix(v, `"`) {
		u, err := strconv.Unquote(v)
		if err != nil {
			return trustloop.Identifier{}, fmt.Errorf("identifier %q: %v", a, err)
		}
		v = u
	}
	return trustloop.Identifier{Type: typ, Value: v}, nil
}

// IDList prints identifiers as scripts write them.
func IDList(ids []trustloop.Identifier) string {
	if len(ids) == 0 {
		return "(none)"
	}
	parts := make([]string, len(ids))
	for i, id := range ids {
		v := id.Value
		if v == "" || strings.ContainsAny(v, " \t\"") {
			v = strconv.Quote(v)
		}
		parts[i] = id.Type + ":" + v
	}
	return strings.Join(parts, " ")
}
