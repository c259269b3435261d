package profile

// Amounts are kept in millionths of the currency unit (micros) in an int64, not in a
// float64: floating-point addition is not associative, so a float sum would depend
// on the order events arrive in and Merge could not equal a combined Apply. Integer
// addition is, even when it wraps (Go defines signed overflow as wrapping), so the
// sum is exact and order-independent whenever the true total fits in ±9.2e12 units.
const (
	microsPerUnit = 1_000_000
	// maxAmountMicros is the largest single amount accepted (10^12 units): anything
	// larger is a tracking bug, and the bound keeps one event's amount in range.
	maxAmountMicros = 1_000_000_000_000 * microsPerUnit
)

// parseMicros reads a decimal amount, the text of a JSON number or of a numeric
// string (-?digits[.digits][e[+-]digits], leading zeros allowed), and rounds it to
// micros, half away from zero. The arithmetic is on the digits, not through a
// float, so every spelling of one amount gives the same micros.
func parseMicros(b []byte) (int64, Reason) {
	const keep = 24 // more significant digits than an in-range amount can use
	var sig [keep]byte
	i, n := 0, len(b)
	neg := false
	if i < n && b[i] == '-' {
		neg = true
		i++
	}
	ns := 0   // significant digits kept in sig
	seen := 0 // significant digits seen (leading zeros are not significant)
	point := 0
	// value = 0.d1d2d3… × 10^point
	intDigits := 0
	for ; i < n && isDigit(b[i]); i++ {
		intDigits++
		if seen == 0 && b[i] == '0' {
			continue
		}
		if ns < keep {
			sig[ns] = b[i]
			ns++
		}
		seen++
		point++
	}
	if intDigits == 0 {
		return 0, ReasonRevenueNotNumeric
	}
	if i < n && b[i] == '.' {
		i++
		frac := 0
		for ; i < n && isDigit(b[i]); i++ {
			frac++
			if seen == 0 && b[i] == '0' {
				point--
				continue
			}
			if ns < keep {
				sig[ns] = b[i]
				ns++
			}
			seen++
		}
		if frac == 0 {
			return 0, ReasonRevenueNotNumeric
		}
	}
	if i < n && (b[i] == 'e' || b[i] == 'E') {
		i++
		eneg := false
		if i < n && (b[i] == '+' || b[i] == '-') {
			eneg = b[i] == '-'
			i++
		}
		exp, digits := 0, 0
		for ; i < n && isDigit(b[i]); i++ {
			digits++
			if exp < 1_000_000 { // beyond, the amount is 0 or out of range anyway
				exp = exp*10 + int(b[i]-'0')
			}
		}
		if digits == 0 {
			return 0, ReasonRevenueNotNumeric
		}
		if eneg {
			exp = -exp
		}
		point += exp
	}
	if i != n {
		return 0, ReasonRevenueNotNumeric
	}
	if seen == 0 {
		return 0, ""
	}
	shift := point + 6 // digits of the amount in micros before its decimal point
	if shift > 19 {
		return 0, ReasonRevenueOutOfRange
	}
	if shift < 0 {
		return 0, "" // rounds to zero
	}
	var u uint64
	for k := 0; k < shift; k++ {
		d := uint64(0)
		if k < ns {
			d = uint64(sig[k] - '0')
		}
		u = u*10 + d
	}
	if shift < ns && sig[shift] >= '5' {
		u++
	}
	if u > maxAmountMicros {
		return 0, ReasonRevenueOutOfRange
	}
	if neg {
		return -int64(u), ""
	}
	return int64(u), ""
}

// amountValue reads an amount from a raw JSON value: a number or a numeric string.
func amountValue(v []byte) (int64, Reason) {
	if len(v) > 0 && v[0] == '"' {
		s, _ := stringValue(v)
		return parseMicros([]byte(s))
	}
	if len(v) == 0 || (v[0] != '-' && !isDigit(v[0])) {
		return 0, ReasonRevenueNotNumeric
	}
	return parseMicros(v)
}
