package profile

import (
	"fmt"
	"math/big"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

func TestParseMicros(t *testing.T) {
	tests := []struct {
		in     string
		want   int64
		reason Reason
	}{
		{"0", 0, ""},
		{"1", 1_000_000, ""},
		{"-1", -1_000_000, ""},
		{"19.99", 19_990_000, ""},
		{"0.1", 100_000, ""},
		{"007.50", 7_500_000, ""},
		{"1e2", 100_000_000, ""},
		{"1E+2", 100_000_000, ""},
		{"12.5e-1", 1_250_000, ""},
		{"0.0000005", 1, ""},   // half rounds away from zero
		{"-0.0000005", -1, ""}, // on both sides
		{"0.00000049999999999", 0, ""},
		{"0.0000015", 2, ""},
		{"1e-7", 0, ""},
		{"1e-999999999", 0, ""},
		{"0e999999999", 0, ""},
		{"-0", 0, ""},
		{"123456789.123456789", 123_456_789_123_457, ""},
		{"1000000000000", maxAmountMicros, ""},
		{"-1000000000000", -maxAmountMicros, ""},
		{"1000000000000.0000001", maxAmountMicros, ""},
		{"1000000000000.000001", 0, ReasonRevenueOutOfRange},
		{"1e13", 0, ReasonRevenueOutOfRange},
		{"1e999999999", 0, ReasonRevenueOutOfRange},
		{"99999999999999999999999", 0, ReasonRevenueOutOfRange},
		{"0." + strings.Repeat("0", 40) + "1", 0, ""},
		{"1." + strings.Repeat("9", 40), 2_000_000, ""},
		{"", 0, ReasonRevenueNotNumeric},
		{"-", 0, ReasonRevenueNotNumeric},
		{".5", 0, ReasonRevenueNotNumeric},
		{"5.", 0, ReasonRevenueNotNumeric},
		{"+5", 0, ReasonRevenueNotNumeric},
		{" 5", 0, ReasonRevenueNotNumeric},
		{"5 ", 0, ReasonRevenueNotNumeric},
		{"1e", 0, ReasonRevenueNotNumeric},
		{"1e+", 0, ReasonRevenueNotNumeric},
		{"$5", 0, ReasonRevenueNotNumeric},
		{"5,00", 0, ReasonRevenueNotNumeric},
		{"NaN", 0, ReasonRevenueNotNumeric},
		{"Infinity", 0, ReasonRevenueNotNumeric},
		{"0x10", 0, ReasonRevenueNotNumeric},
		{"1_000", 0, ReasonRevenueNotNumeric},
	}
	for _, tt := range tests {
		got, reason := parseMicros([]byte(tt.in))
		if got != tt.want || reason != tt.reason {
			t.Errorf("parseMicros(%q) = %d %q, want %d %q", tt.in, got, reason, tt.want, tt.reason)
		}
	}
}

func TestAmountValue(t *testing.T) {
	tests := []struct {
		in     string
		want   int64
		reason Reason
	}{
		{`19.99`, 19_990_000, ""},
		{`"19.99"`, 19_990_000, ""},
		{`"\u0031"`, 1_000_000, ""},
		{`"abc"`, 0, ReasonRevenueNotNumeric},
		{`true`, 0, ReasonRevenueNotNumeric},
		{`{"a":1}`, 0, ReasonRevenueNotNumeric},
		{`"1"x"`, 0, ReasonRevenueNotNumeric},
		{``, 0, ReasonRevenueNotNumeric},
	}
	for _, tt := range tests {
		got, reason := amountValue([]byte(tt.in))
		if got != tt.want || reason != tt.reason {
			t.Errorf("amountValue(%s) = %d %q, want %d %q", tt.in, got, reason, tt.want, tt.reason)
		}
	}
}

// TestParseMicrosExact compares with exact rational arithmetic on random decimals.
func TestParseMicrosExact(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		neg := rapid.Bool().Draw(t, "neg")
		intPart := rapid.StringMatching(`[0-9]{1,16}`).Draw(t, "int")
		frac := rapid.StringMatching(`[0-9]{0,12}`).Draw(t, "frac")
		exp := rapid.IntRange(-12, 12).Draw(t, "exp")
		s := intPart
		if frac != "" {
			s += "." + frac
		}
		if exp != 0 {
			s += fmt.Sprintf("e%d", exp)
		}
		if neg {
			s = "-" + s
		}
		r, ok := new(big.Rat).SetString(s)
		if !ok {
			t.Fatalf("big.Rat refuses %q", s)
		}
		// Round half away from zero to micros.
		r.Mul(r, big.NewRat(microsPerUnit, 1))
		abs := new(big.Rat).Abs(r)
		abs.Add(abs, big.NewRat(1, 2))
		q := new(big.Int).Quo(abs.Num(), abs.Denom())
		if r.Sign() < 0 {
			q.Neg(q)
		}
		got, reason := parseMicros([]byte(s))
		inRange := q.CmpAbs(big.NewInt(maxAmountMicros)) <= 0
		switch {
		case !inRange && reason != ReasonRevenueOutOfRange:
			t.Fatalf("parseMicros(%q) = %d %q, want out of range", s, got, reason)
		case inRange && (reason != "" || got != q.Int64()):
			t.Fatalf("parseMicros(%q) = %d %q, want %s", s, got, reason, q)
		}
	})
}
