package trustloop

import (
	"errors"
	"fmt"
)

// Error codes. The http package alone maps them to statuses.
const (
	EINVALID          = "invalid"
	EUNAUTHORIZED     = "unauthorized"
	EFORBIDDEN        = "forbidden"
	ENOTFOUND         = "not_found"
	ECONFLICT         = "conflict"
	ETOOLARGE         = "too_large"
	ERATELIMITED      = "rate_limited"
	EINTERNAL         = "internal"
	EUNAVAILABLE      = "unavailable"
	EMETHOD           = "method_not_allowed"
	EUNSUPPORTEDMEDIA = "unsupported_media_type"
)

// Error is the one application error. Its Message and Hint are shown to the caller,
// so they must never carry personal data (identifiers, traits, payloads).
type Error struct {
	Code    string
	Message string
	// Hint tells the caller what to do about it.
	Hint string
	// Details point at the offending items of a batch, by index.
	Details []ErrorDetail
	// RetryAfter, when set with ERATELIMITED or EUNAVAILABLE, is how long to wait.
	RetryAfterSeconds int
}

// ErrorDetail names one offending item of a request.
type ErrorDetail struct {
	Index  int    `json:"index"`
	Reason string `json:"reason"`
}

func (e *Error) Error() string {
	return fmt.Sprintf("trustloop error: code=%s message=%s", e.Code, e.Message)
}

// Errorf returns an application error with the given code.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// WithHint returns e with its hint set; it lets call sites stay on one line.
func (e *Error) WithHint(hint string) *Error {
	e.Hint = hint
	return e
}

// ErrorCode returns the code of an application error, EINTERNAL for any other
// error and "" for nil.
func ErrorCode(err error) string {
	var e *Error
	if err == nil {
		return ""
	} else if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the message of an application error and "Internal error." for
// any other, so internal detail never reaches a caller.
func ErrorMessage(err error) string {
	var e *Error
	if err == nil {
		return ""
	} else if errors.As(err, &e) {
		return e.Message
	}
	return "Internal error."
}
