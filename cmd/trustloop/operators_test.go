package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/password"
	"github.com/trustloop/trustloop/postgres"
	"github.com/trustloop/trustloop/postgres/pgtest"
	"github.com/trustloop/trustloop/sqlite"
	"github.com/trustloop/trustloop/storetest"
)

// runOperatorsCLI runs `trustloop operators …` with the given extra
// environment (the test's TRUSTLOOP_* variables left out) and standard input.
func runOperatorsCLI(t *testing.T, env []string, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return runWith(t, env, stdin, append([]string{"operators"}, args...)...)
}

// runWith runs the binary with env added to the test's environment less its
// TRUSTLOOP_ variables, and stdin, returning the exit code and output.
func runWith(t *testing.T, env []string, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TRUSTLOOP_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdin = strings.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), o.String(), e.String()
}

type operatorLine struct {
	ID         int64    `json:"id"`
	Email      string   `json:"email"`
	Name       string   `json:"name"`
	Roles      []string `json:"roles"`
	Purposes   []string `json:"purposes"`
	DisabledAt *string  `json:"disabled_at"`
}

func operatorLines(t *testing.T, out string) []operatorLine {
	t.Helper()
	var ops []operatorLine
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var o operatorLine
		if err := json.Unmarshal([]byte(line), &o); err != nil {
			t.Fatalf("not a JSON line: %q (%v)", line, err)
		}
		ops = append(ops, o)
	}
	return ops
}

// TestOperatorsCLI: `trustloop operators add/list/disable` on an embedded
// store: the password from the environment or stdin, normalized emails, the
// default purposes, bad input refused with nothing changed, lists without
// hashes, and a stored hash that verifies.
func TestOperatorsCLI(t *testing.T) {
	ctx := context.Background()
	dataDir := t.TempDir()
	db, err := sqlite.Open(ctx, dataDir)
	if err != nil {
		t.Fatal(err)
	}
	storetest.MustBootstrap(t, db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	conn := []string{"--data-dir", dataDir}
	pw := []string{"TRUSTLOOP_OPERATOR_PASSWORD=correct horse battery staple"}

	code, out, errOut := runOperatorsCLI(t, pw, "", append([]string{"add", "--email", " Ann@Shop.Example ", "--name", "Ann Admin",
		"--roles", "admin,privacy"}, conn...)...)
	if code != 0 {
		t.Fatalf("add exited %d: %s", code, errOut)
	}
	ann := operatorLines(t, out)
	if len(ann) != 1 || ann[0].Email != "ann@shop.example" || ann[0].Name != "Ann Admin" ||
		!slices.Equal(ann[0].Roles, []string{trustloop.RoleAdmin, trustloop.RolePrivacy}) ||
		!slices.Equal(ann[0].Purposes, trustloop.DefaultPurposes) || ann[0].DisabledAt != nil {
		t.Fatalf("add printed %s", out)
	}
	// The password from one line of stdin; the data directory from the
	// environment, like serve's.
	code, out, errOut = runOperatorsCLI(t, []string{"TRUSTLOOP_DATA_DIR=" + dataDir}, "a reader's long passphrase\r\n",
		"add", "--email", "rita@shop.example", "--name", "Rita", "--roles", "reader", "--purposes", "analytics")
	if code != 0 {
		t.Fatalf("add with the password on stdin exited %d: %s", code, errOut)
	}
	if rita := operatorLines(t, out); len(rita) != 1 || !slices.Equal(rita[0].Purposes, []string{"analytics"}) {
		t.Fatalf("add printed %s", out)
	}

	for _, c := range []struct {
		name  string
		env   []string
		stdin string
		args  []string
		code  int
		says  string
	}{
		{"short password", []string{"TRUSTLOOP_OPERATOR_PASSWORD=short"}, "", []string{"add", "--email", "bob@shop.example", "--name", "Bob", "--roles", "reader"}, 1, "too short"},
		{"no password", nil, "", []string{"add", "--email", "bob@shop.example", "--name", "Bob", "--roles", "reader"}, 2, "TRUSTLOOP_OPERATOR_PASSWORD"},
		{"unknown role", pw, "", []string{"add", "--email", "bob@shop.example", "--name", "Bob", "--roles", "reader,root"}, 1, "roles"},
		{"bad email", pw, "", []string{"add", "--email", "bob at shop", "--name", "Bob", "--roles", "reader"}, 1, "email"},
		{"taken email", pw, "", []string{"add", "--email", "ANN@shop.example", "--name", "Ann again", "--roles", "reader"}, 1, "exists"},
		{"unknown purpose", pw, "", []string{"add", "--email", "bob@shop.example", "--name", "Bob", "--roles", "reader", "--purposes", "analytics,telepathy"}, 1, "telepathy"},
		{"no name", pw, "", []string{"add", "--email", "bob@shop.example", "--roles", "reader"}, 2, "--name"},
		{"no email", pw, "", []string{"disable"}, 2, "--email"},
		{"unknown workspace", pw, "", []string{"add", "--email", "bob@shop.example", "--name", "Bob", "--roles", "reader", "--workspace", "99"}, 1, "Workspace not found"},
		{"unknown flag", pw, "", []string{"list", "--emial", "x"}, 2, "emial"},
		{"unknown subcommand", nil, "", []string{"remove"}, 2, "remove"},
		{"disable an unknown operator", nil, "", []string{"disable", "--email", "bob@shop.example"}, 1, "No such operator"},
	} {
		code, out, errOut := runOperatorsCLI(t, c.env, c.stdin, append(c.args, conn...)...)
		if code != c.code || out != "" || !strings.Contains(errOut, c.says) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit %d saying %q", c.name, code, out, errOut, c.code, c.says)
		}
	}
	missing := filepath.Join(t.TempDir(), "nowhere")
	if code, _, errOut := runOperatorsCLI(t, pw, "", "add", "--email", "bob@shop.example", "--name", "Bob", "--roles", "reader",
		"--data-dir", missing); code != 1 || !strings.Contains(errOut, "No Trustloop database") {
		t.Fatalf("add on a missing data directory: exit %d, %s", code, errOut)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Fatal("add made a data directory where there was none")
	}

	code, out, errOut = runOperatorsCLI(t, nil, "", append([]string{"list"}, conn...)...)
	ops := operatorLines(t, out)
	if code != 0 || len(ops) != 2 || ops[0].Email != "ann@shop.example" || ops[1].Email != "rita@shop.example" {
		t.Fatalf("list: exit %d, %s\n%s", code, out, errOut)
	}
	if strings.Contains(out, "argon2") || strings.Contains(out, "hash") {
		t.Fatalf("list shows password hashes: %s", out)
	}

	code, out, errOut = runOperatorsCLI(t, nil, "", append([]string{"disable", "--email", "RITA@shop.example"}, conn...)...)
	if d := operatorLines(t, out); code != 0 || len(d) != 1 || d[0].DisabledAt == nil {
		t.Fatalf("disable: exit %d, %s\n%s", code, out, errOut)
	}
	code, out, errOut = runOperatorsCLI(t, nil, "", append([]string{"disable", "--email", "rita@shop.example"}, conn...)...)
	if code != 0 || !strings.Contains(errOut, "already disabled") {
		t.Fatalf("disable twice: exit %d, %s\n%s", code, out, errOut)
	}
	_, out, _ = runOperatorsCLI(t, nil, "", append([]string{"list"}, conn...)...)
	if ops := operatorLines(t, out); len(ops) != 2 || ops[0].DisabledAt != nil || ops[1].DisabledAt == nil {
		t.Fatalf("list after disable: %s", out)
	}

	// What the store holds: hashes that verify, nothing of the failed adds.
	db, err = sqlite.Open(ctx, dataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for email, want := range map[string]string{"ann@shop.example": "correct horse battery staple", "rita@shop.example": "a reader's long passphrase"} {
		o, err := db.FindOperatorByEmail(ctx, 1, email)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := password.Verify(o.PasswordHash, want); !ok || err != nil {
			t.Fatalf("%s: the stored hash does not verify the password given (%v)", email, err)
		}
	}
	if _, err := db.FindOperatorByEmail(ctx, 1, "bob@shop.example"); trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
		t.Fatalf("a refused add stored bob: %v", err)
	}

	if code, out, _ := runOperatorsCLI(t, nil, "", "-h"); code != 0 || !strings.Contains(out, "Usage: trustloop operators") {
		t.Fatalf("operators -h: exit %d, %s", code, out)
	}
}

// TestOperatorsCLIPostgres: add, list and disable with --database-url.
func TestOperatorsCLIPostgres(t *testing.T) {
	url := pgtest.Schema(t, "PostgreSQL operators CLI test")
	ctx := context.Background()
	db, err := postgres.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	storetest.MustBootstrap(t, db)
	pw := []string{"TRUSTLOOP_OPERATOR_PASSWORD=correct horse battery staple"}
	if code, _, errOut := runOperatorsCLI(t, pw, "", "add", "--email", "ann@shop.example", "--name", "Ann", "--roles", "admin",
		"--purposes", "", "--database-url", url); code != 0 {
		t.Fatalf("add exited %d: %s", code, errOut)
	}
	if code, _, errOut := runOperatorsCLI(t, nil, "", "disable", "--email", "Ann@Shop.example", "--database-url", url); code != 0 {
		t.Fatalf("disable exited %d: %s", code, errOut)
	}
	code, out, errOut := runOperatorsCLI(t, []string{"TRUSTLOOP_DATABASE_URL=" + url}, "", "list")
	if ops := operatorLines(t, out); code != 0 || len(ops) != 1 || len(ops[0].Purposes) != 0 || ops[0].DisabledAt == nil {
		t.Fatalf("list: exit %d, %s\n%s", code, out, errOut)
	}
}
