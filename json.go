package trustloop

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
)

// DecodeJSON decodes b into v as a request body or an editor's document must
// be: one JSON value and nothing after it (a body with more, two objects or
// an object and garbage, is refused, not half taken), unknown fields
// refused. Its error says what is wrong in the API's terms, without Go's
// type names and without echoing any value of b.
func DecodeJSON(b []byte, v any) error {
	// null decodes into anything as nothing at all: the request would then
	// fail later, for a reason it did not have (a version of 0, a missing
	// setting).
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		if t := reflect.TypeOf(v); t != nil && t.Kind() == reflect.Pointer {
			return fmt.Errorf("it must be a JSON %s, not null", jsonKind(t.Elem()))
		}
		return errors.New("it must not be null")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			return errors.New("there is more after the first JSON value")
		}
		return nil
	}
	return errors.New(jsonProblem(err))
}

func jsonProblem(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return "the body is empty"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "the body ends in the middle of a value"
	case errors.As(err, &syn):
		return fmt.Sprintf("it is not valid JSON (at byte %d)", syn.Offset)
	case errors.As(err, &typ) && strings.HasPrefix(typ.Value, "number "):
		// A number its field cannot hold (a fraction, out of range).
		return fmt.Sprintf("field %s cannot hold that number", typ.Field)
	case errors.As(err, &typ) && typ.Field == "":
		return fmt.Sprintf("it must be a JSON %s, not %s", jsonKind(typ.Type), article(typ.Value))
	case errors.As(err, &typ):
		return fmt.Sprintf("field %s must be a JSON %s, not %s", typ.Field, jsonKind(typ.Type), article(typ.Value))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		// The field's name, which the caller's own document holds.
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	}
	return "it could not be decoded"
}

// jsonKind names the JSON type a Go type is decoded from.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return "string"
		}
		return "array"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	}
	return "object"
}

// article is a JSON value kind as encoding/json reports it, with its article.
func article(value string) string {
	switch value {
	case "array", "object":
		return "an " + value
	case "bool":
		return "a boolean"
	}
	return "a " + value
}

// HasLoneSurrogate reports whether JSON text b holds a \u escape of a UTF-16
// surrogate that is not half of a pair (\udc00 alone): valid UTF-8 on the
// wire, it decodes to U+FFFD, so an identifier sent so would be stored as
// one value and read as another. b is scanned for escapes only (a
// backslash outside a string is a syntax error the decoder reports).
func HasLoneSurrogate(b []byte) bool {
	hex4 := func(i int) (rune, bool) {
		if i+4 > len(b) {
			return 0, false
		}
		var r rune
		for _, c := range b[i : i+4] {
			switch {
			case c >= '0' && c <= '9':
				r = r<<4 | rune(c-'0')
			case c >= 'a' && c <= 'f':
				r = r<<4 | rune(c-'a'+10)
			case c >= 'A' && c <= 'F':
				r = r<<4 | rune(c-'A'+10)
			default:
				return 0, false
			}
		}
		return r, true
	}
	for i := bytes.IndexByte(b, '\\'); i >= 0 && i+1 < len(b); {
		if b[i+1] != 'u' {
			i += 2 // \\ \" \n …: the next byte is not an escape's start
		} else if r, ok := hex4(i + 2); !ok {
			i += 2 // malformed: the decoder says so
		} else if r >= 0xDC00 && r <= 0xDFFF {
			return true // a low half first
		} else if r >= 0xD800 && r <= 0xDBFF {
			if i+7 >= len(b) || b[i+6] != '\\' || b[i+7] != 'u' {
				return true
			}
			if lo, ok := hex4(i + 8); !ok || lo < 0xDC00 || lo > 0xDFFF {
				return true
			}
			i += 12
		} else {
			i += 6
		}
		j := bytes.IndexByte(b[min(i, len(b)):], '\\')
		if j < 0 {
			break
		}
		i += j
	}
	return false
}
