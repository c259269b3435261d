package storetest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
)

// testOperators checks operator accounts: creation with a normalized email,
// one email per workspace (case-insensitively) but the same email in two
// workspaces, lookups that never cross workspaces, validation, updates,
// disabling and listing.
func testOperators(t *testing.T, s trustloop.Store) {
	ctx := context.Background()
	b := MustBootstrap(t, s)
	ws := b.Workspace.ID
	const hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"
	ann := &trustloop.Operator{WorkspaceID: ws, Email: "  Ann@Shop.Example ", Name: "Ann Admin", PasswordHash: hash,
		Roles: []string{trustloop.RoleAdmin, trustloop.RolePrivacy}, Purposes: []string{"essential", "analytics"}}
	if err := s.CreateOperator(ctx, ann); err != nil {
		t.Fatal(err)
	}
	if ann.ID == 0 || ann.CreatedAt.IsZero() || ann.Email != "ann@shop.example" {
		t.Fatalf("CreateOperator did not fill in ID, CreatedAt and the normalized email: %+v", ann)
	}
	same := func(got, want *trustloop.Operator) bool {
		return got.ID == want.ID && got.WorkspaceID == want.WorkspaceID && got.Email == want.Email && got.Name == want.Name &&
			got.PasswordHash == want.PasswordHash && slices.Equal(got.Roles, want.Roles) && slices.Equal(got.Purposes, want.Purposes) &&
			got.CreatedAt.Equal(want.CreatedAt) && (got.DisabledAt == nil) == (want.DisabledAt == nil) &&
			(got.DisabledAt == nil || got.DisabledAt.Equal(*want.DisabledAt))
	}
	for _, email := range []string{"ann@shop.example", "ANN@shop.EXAMPLE", " ann@shop.example\t"} {
		got, err := s.FindOperatorByEmail(ctx, ws, email)
		if err != nil || !same(got, ann) {
			t.Fatalf("FindOperatorByEmail(%q) = %+v, %v; want %+v", email, got, err, ann)
		}
	}
	if got, err := s.FindOperator(ctx, ws, ann.ID); err != nil || !same(got, ann) {
		t.Fatalf("FindOperator = %+v, %v; want %+v", got, err, ann)
	}

	dup := &trustloop.Operator{WorkspaceID: ws, Email: "ANN@shop.example", Name: "Another Ann", PasswordHash: hash, Roles: []string{trustloop.RoleReader}}
	if err := s.CreateOperator(ctx, dup); trustloop.ErrorCode(err) != trustloop.ECONFLICT {
		t.Fatalf("a taken email (other case): %v, want conflict", err)
	}

	// Lookups never cross workspaces; the same email may sign in to another.
	second := Bootstrap("second")
	if err := s.CreateWorkspace(ctx, second); err != nil {
		t.Fatal(err)
	}
	if _, err := s.FindOperator(ctx, second.Workspace.ID, ann.ID); trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
		t.Fatalf("FindOperator through another workspace: %v, want not_found", err)
	}
	if _, err := s.FindOperatorByEmail(ctx, second.Workspace.ID, "ann@shop.example"); trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
		t.Fatalf("FindOperatorByEmail in another workspace: %v, want not_found", err)
	}
	if _, err := s.FindOperatorByEmail(ctx, ws, "bob@shop.example"); trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
		t.Fatalf("FindOperatorByEmail of an unknown email: %v, want not_found", err)
	}
	// An email is one operator's across workspaces (sign-in names none).
	annThere := &trustloop.Operator{WorkspaceID: second.Workspace.ID, Email: "Ann@Shop.example", Name: "Ann", PasswordHash: hash,
		Roles: []string{trustloop.RoleReader}}
	if err := s.CreateOperator(ctx, annThere); trustloop.ErrorCode(err) != trustloop.ECONFLICT {
		t.Fatalf("the same email in another workspace: %v, want conflict", err)
	}
	if got, err := s.FindOperatorByEmail(ctx, 0, "ANN@shop.example"); err != nil || got.ID != ann.ID || got.WorkspaceID != ws {
		t.Fatalf("FindOperatorByEmail in any workspace: %+v, %v", got, err)
	}
	annThere.Email = "zoe@shop.example"
	if err := s.CreateOperator(ctx, annThere); err != nil {
		t.Fatalf("an operator of the second workspace: %v", err)
	}

	// Invalid operators and unknown workspaces write nothing.
	for name, o := range map[string]*trustloop.Operator{
		"no at":             {WorkspaceID: ws, Email: "bob.shop.example", Name: "Bob", PasswordHash: hash, Roles: []string{trustloop.RoleReader}},
		"display name":      {WorkspaceID: ws, Email: "Bob <bob@shop.example>", Name: "Bob", PasswordHash: hash, Roles: []string{trustloop.RoleReader}},
		"unknown role":      {WorkspaceID: ws, Email: "bob@shop.example", Name: "Bob", PasswordHash: hash, Roles: []string{"root"}},
		"no role":           {WorkspaceID: ws, Email: "bob@shop.example", Name: "Bob", PasswordHash: hash},
		"plain password":    {WorkspaceID: ws, Email: "bob@shop.example", Name: "Bob", PasswordHash: "hunter2hunter2", Roles: []string{trustloop.RoleReader}},
		"no hash":           {WorkspaceID: ws, Email: "bob@shop.example", Name: "Bob", Roles: []string{trustloop.RoleReader}},
		"no name":           {WorkspaceID: ws, Email: "bob@shop.example", PasswordHash: hash, Roles: []string{trustloop.RoleReader}},
		"bad purpose":       {WorkspaceID: ws, Email: "bob@shop.example", Name: "Bob", PasswordHash: hash, Roles: []string{trustloop.RoleReader}, Purposes: []string{"Analytics!"}},
		"no workspace":      {Email: "bob@shop.example", Name: "Bob", PasswordHash: hash, Roles: []string{trustloop.RoleReader}},
		"unknown workspace": {WorkspaceID: other(b), Email: "bob@shop.example", Name: "Bob", PasswordHash: hash, Roles: []string{trustloop.RoleReader}},
	} {
		want := trustloop.EINVALID
		if name == "unknown workspace" {
			want = trustloop.ENOTFOUND
		}
		if err := s.CreateOperator(ctx, o); trustloop.ErrorCode(err) != want {
			t.Fatalf("%s: CreateOperator = %v, want %s", name, err, want)
		}
	}
	if _, err := s.FindOperatorByEmail(ctx, ws, "bob@shop.example"); trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
		t.Fatalf("a refused operator was stored: %v", err)
	}

	// Updates change name, roles, purposes, hash and DisabledAt, never the email.
	reader := &trustloop.Operator{WorkspaceID: ws, Email: "rita@shop.example", Name: "Rita", PasswordHash: hash, Roles: []string{trustloop.RoleReader}}
	if err := s.CreateOperator(ctx, reader); err != nil {
		t.Fatal(err)
	}
	upd := *ann
	upd.Name, upd.Roles, upd.Purposes = "Ann Privacy", []string{trustloop.RolePrivacy}, []string{"marketing"}
	upd.PasswordHash = "$argon2id$v=19$m=19456,t=2,p=1$bmV3c2FsdG5ld3NhbHQ$bmV3aGFzaG5ld2hhc2huZXdoYXNobmV3aGFzaG5ld2g"
	if err := s.UpdateOperator(ctx, &upd); err != nil {
		t.Fatal(err)
	}
	if got, err := s.FindOperator(ctx, ws, ann.ID); err != nil || !same(got, &upd) {
		t.Fatalf("after UpdateOperator: %+v, %v; want %+v", got, err, upd)
	}
	disabled := upd
	at := time.UnixMilli(1_750_000_000_000).UTC()
	disabled.DisabledAt = &at
	if err := s.UpdateOperator(ctx, &disabled); err != nil {
		t.Fatal(err)
	}
	got, err := s.FindOperatorByEmail(ctx, ws, "ann@shop.example")
	if err != nil || got.DisabledAt == nil || !got.DisabledAt.Equal(at) {
		t.Fatalf("disabled operator reads back as %+v, %v; want DisabledAt %v", got, err, at)
	}
	if r, _ := s.FindOperator(ctx, ws, reader.ID); r == nil || r.DisabledAt != nil || r.Name != "Rita" {
		t.Fatalf("disabling one operator changed another: %+v", r)
	}
	enabled := disabled
	enabled.DisabledAt = nil
	if err := s.UpdateOperator(ctx, &enabled); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.FindOperator(ctx, ws, ann.ID); got == nil || got.DisabledAt != nil {
		t.Fatalf("enabled again reads back as %+v", got)
	}
	elsewhere := enabled
	elsewhere.WorkspaceID = second.Workspace.ID
	if err := s.UpdateOperator(ctx, &elsewhere); trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
		t.Fatalf("UpdateOperator through another workspace: %v, want not_found", err)
	}
	unknown := enabled
	unknown.ID = 1 << 40
	if err := s.UpdateOperator(ctx, &unknown); trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
		t.Fatalf("UpdateOperator of an unknown id: %v, want not_found", err)
	}
	bad := enabled
	bad.Roles = []string{"root"}
	if err := s.UpdateOperator(ctx, &bad); trustloop.ErrorCode(err) != trustloop.EINVALID {
		t.Fatalf("UpdateOperator with an unknown role: %v, want invalid", err)
	}
	if got, _ := s.FindOperator(ctx, ws, ann.ID); got == nil || !slices.Equal(got.Roles, enabled.Roles) {
		t.Fatalf("a refused update changed the operator: %+v", got)
	}

	list, err := s.ListOperators(ctx, ws)
	if err != nil || len(list) != 2 || list[0].ID != ann.ID || list[1].ID != reader.ID || !same(list[1], reader) {
		t.Fatalf("ListOperators = %v, %v; want ann and rita by id", list, err)
	}
	if list, err := s.ListOperators(ctx, second.Workspace.ID); err != nil || len(list) != 1 || list[0].ID != annThere.ID {
		t.Fatalf("ListOperators of the second workspace = %v, %v", list, err)
	}
	if list, err := s.ListOperators(ctx, other(b)+1000); err != nil || len(list) != 0 {
		t.Fatalf("ListOperators of an unknown workspace = %v, %v", list, err)
	}
}
