package http

import (
	"encoding/json"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/trustloop/trustloop/recommend"
)

// appendJSON appends v as encoding/json would marshal it, byte for byte, a
// few times faster: a recommendation is the hottest answer the server gives,
// and reflection was most of its encoding's cost. ok is false when v holds
// something this fast path does not spell the way encoding/json does (a
// float it would write in exponent form, or one it refuses); the caller then
// uses encoding/json.
func (v recommendationsView) appendJSON(b []byte) (_ []byte, ok bool) {
	b = append(b, `{"profile_id":`...)
	b = appendJSONString(b, v.ProfileID)
	b = append(b, `,"personalized":`...)
	b = strconv.AppendBool(b, v.Personalized)
	if v.Reason != "" {
		b = append(b, `,"reason":`...)
		b = appendJSONString(b, v.Reason)
	}
	b = append(b, `,"items":`...)
	if v.Items == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, r := range v.Items {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"item_id":`...)
			b = appendJSONString(b, r.ItemID)
			b = append(b, `,"score":`...)
			if b, ok = appendJSONFloat(b, r.Score); !ok {
				return b, false
			}
			b = append(b, `,"because":`...)
			if b, ok = appendBecause(b, r.Because); !ok {
				return b, false
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	return append(b, '}'), true
}

func appendBecause(b []byte, bs []recommend.Because) (_ []byte, ok bool) {
	if bs == nil {
		return append(b, "null"...), true
	}
	b = append(b, '[')
	for i, c := range bs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"item_id":`...)
		b = appendJSONString(b, c.ItemID)
		b = append(b, `,"weight":`...)
		if b, ok = appendJSONFloat(b, c.Weight); !ok {
			return b, false
		}
		b = append(b, '}')
	}
	return append(b, ']'), true
}

// appendJSONFloat writes f as encoding/json does for the numbers it writes
// without an exponent (0, and magnitudes from 1e-6 up to 1e21).
func appendJSONFloat(b []byte, f float64) ([]byte, bool) {
	if a := math.Abs(f); math.IsNaN(f) || (a != 0 && (a < 1e-6 || a >= 1e21)) {
		return b, false
	}
	return strconv.AppendFloat(b, f, 'f', -1, 64), true
}

// appendJSONString writes s quoted as encoding/json does (HTML-safe): a
// string of plain printable ASCII as it is, anything else through
// encoding/json itself.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
