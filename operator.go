package trustloop

import (
	"context"
	"net/mail"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Operator is a member of staff who signs in to the admin console. Operators
// hold roles and purposes exactly like API keys, so the console and the API
// apply one set of rules; unlike an API key, an operator signs in with an
// email and a password.
type Operator struct {
	ID          int64
	WorkspaceID int64
	// Email is the staff sign-in name, normalized (NormalizeOperatorEmail):
	// unique across workspaces, matched case-insensitively.
	Email string
	Name  string
	// PasswordHash is the PHC string of package password (argon2id); the
	// password itself is never stored.
	PasswordHash string
	// Roles are RoleAdmin, RolePrivacy, RoleReader, as for APIKey.Roles.
	Roles []string
	// Purposes are those the operator may read customer data for, as for
	// APIKey.Purposes.
	Purposes  []string
	CreatedAt time.Time
	// DisabledAt, when set, is when the operator lost access; the account is
	// kept (the audit log names operators by id).
	DisabledAt *time.Time
}

// Roles lists the roles an API key or an operator may hold.
var Roles = []string{RoleAdmin, RolePrivacy, RoleReader}

// NormalizeOperatorEmail puts a sign-in email in the one form it is stored and
// looked up in: trimmed and lower-cased, so that "Ann@Shop.example " signs in as
// the operator made as "ann@shop.example".
func NormalizeOperatorEmail(email string) string {
	return strings.ToLower(strings.TrimSpace(email))
}

// Validate checks an operator before it is stored: the email's shape (an
// addr-spec, normalized, without a display name), a short printable name,
// known roles (at least one), purpose ids, and a password hash that is a PHC
// string. Returns EINVALID; the messages name the field, never its value,
// since the email is personal data.
func (o *Operator) Validate() error {
	bad := func(field, hint string) error {
		return Errorf(EINVALID, "Operator: %s is not valid.", field).WithHint(hint)
	}
	if o.WorkspaceID <= 0 {
		return bad("workspace", "Set the operator's workspace.")
	}
	if !validEmail(o.Email) {
		return bad("email", "An email address such as ann@shop.example, lower-case, without a display name.")
	}
	if strings.TrimSpace(o.Name) == "" || len(o.Name) > 200 || !utf8.ValidString(o.Name) || strings.IndexFunc(o.Name, unicode.IsControl) >= 0 {
		return bad("name", "A name of 1 to 200 printable characters, in UTF-8.")
	}
	if len(o.Roles) == 0 {
		return bad("roles", "Give at least one role: admin, privacy or reader.")
	}
	for i, r := range o.Roles {
		if !slices.Contains(Roles, r) || slices.Contains(o.Roles[:i], r) {
			return bad("roles", "Roles are admin, privacy and reader, each at most once.")
		}
	}
	for i, p := range o.Purposes {
		if !word(p, 32) || slices.Contains(o.Purposes[:i], p) {
			return bad("purposes", "Purpose ids of the workspace's catalog, such as analytics, each at most once.")
		}
	}
	// A PHC string starts with "$<algorithm>$": anything else is most likely
	// a password handed over by mistake, which must not reach the store.
	if len(o.PasswordHash) < 2 || o.PasswordHash[0] != '$' || strings.ContainsAny(o.PasswordHash, " \t\r\n") {
		return bad("password_hash", "Store the PHC string password.Hash returns, never the password.")
	}
	return nil
}

// validEmail reports whether s is a normalized addr-spec of at most 254 bytes.
func validEmail(s string) bool {
	if s == "" || len(s) > 254 || s != NormalizeOperatorEmail(s) || strings.Count(s, "@") != 1 {
		return false
	}
	a, err := mail.ParseAddress(s)
	return err == nil && a.Name == "" && a.Address == s
}

// OperatorStore keeps the admin console's operator accounts.
type OperatorStore interface {
	// CreateOperator stores a new operator (its email normalized), filling in
	// ID and CreatedAt. Returns EINVALID if it is not valid (Operator.Validate),
	// ENOTFOUND if the workspace does not exist, ECONFLICT if the email is taken
	// (in any workspace).
	CreateOperator(ctx context.Context, o *Operator) error

	// FindOperatorByEmail returns the workspace's operator with this email,
	// matched after normalization (so case-insensitively), disabled ones too
	// (the caller refuses them); workspaceID 0 looks in every workspace (an
	// email is one operator's across them: sign-in names no workspace).
	// Returns ENOTFOUND if there is none.
	FindOperatorByEmail(ctx context.Context, workspaceID int64, email string) (*Operator, error)

	// FindOperator returns the workspace's operator with this id. Returns
	// ENOTFOUND if there is none, also when the id is another workspace's.
	FindOperator(ctx context.Context, workspaceID, id int64) (*Operator, error)

	// ListOperators returns the workspace's operators, disabled ones too, by id.
	ListOperators(ctx context.Context, workspaceID int64) ([]*Operator, error)

	// UpdateOperator stores o's name, roles, purposes, password hash and
	// DisabledAt (nil enables it again) over the operator (o.WorkspaceID,
	// o.ID); the email and creation time are not changed. Returns EINVALID if
	// o is not valid, ENOTFOUND if the workspace has no such operator.
	UpdateOperator(ctx context.Context, o *Operator) error
}
