package trustloop_test

import (
	"strings"
	"testing"

	"github.com/trustloop/trustloop"
)

// A body is one JSON value of the expected shape; each way of not being one
// is said in the API's terms, never with Go's type names or a value of the
// body.
func TestDecodeJSON(t *testing.T) {
	type body struct {
		Name  string   `json:"name"`
		Count int      `json:"count"`
		Tags  []string `json:"tags"`
		On    bool     `json:"on"`
	}
	for _, c := range []struct{ in, want string }{
		{`{"name":"jane@example.com","count":2}`, ""},
		{"{\"name\":\"a\"}\n  \t", ""},
		{`{"name":"jane@example.com"} garbage`, "there is more after the first JSON value"},
		{`{"name":"a"}{"name":"b"}`, "there is more after the first JSON value"},
		{`{"name":"a"}}`, "there is more after the first JSON value"},
		{`{"name":"a"}]`, "there is more after the first JSON value"},
		{``, "the body is empty"},
		{"  \n", "the body is empty"},
		{`{"name":"jane@exa`, "the body ends in the middle of a value"},
		{`{"name" "jane@example.com"}`, "it is not valid JSON (at byte 9)"},
		{`{"name":5}`, "field name must be a JSON string, not a number"},
		{`{"count":"jane@example.com"}`, "field count must be a JSON number, not a string"},
		{`{"count":1.5}`, "field count cannot hold that number"},
		{`{"tags":{}}`, "field tags must be a JSON array, not an object"},
		{`{"on":[]}`, "field on must be a JSON boolean, not an array"},
		{`{"name":true}`, "field name must be a JSON string, not a boolean"},
		{`[]`, "it must be a JSON object, not an array"},
		{`{"email":"jane@example.com"}`, `unknown field "email"`},
	} {
		var b body
		err := trustloop.DecodeJSON([]byte(c.in), &b)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%q: %v", c.in, err)
		case c.want != "" && (err == nil || err.Error() != c.want):
			t.Errorf("%q: %v, want %q", c.in, err, c.want)
		case err != nil && (strings.Contains(err.Error(), "jane") || strings.Contains(err.Error(), "1.5") || strings.Contains(err.Error(), "Go ")):
			t.Errorf("%q: the error %q echoes the body or names Go types", c.in, err)
		}
	}
}
