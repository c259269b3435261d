package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/consent"
	"github.com/trustloop/trustloop/password"
	"github.com/trustloop/trustloop/postgres"
	"github.com/trustloop/trustloop/sqlite"
)

// `trustloop operators`: the admin console's staff accounts, made and changed
// in the store directly, like `trustloop stats` reads it, not over the API:
// the first operator has nobody to sign in as who could create them.

const operatorsHelp = `Usage: trustloop operators <subcommand> [flags]

Manages the admin console's staff accounts (operators) in the store.

Subcommands:
  add      --email E --name N --roles admin[,privacy,reader] [--purposes p1,p2]
           create an operator; the password (12 characters or more) is read
           from TRUSTLOOP_OPERATOR_PASSWORD, else from one line of standard input
  list     print the workspace's operators, one JSON object a line (no password hashes)
  disable  --email E
           stop an operator signing in (the account stays; changes made here, on
           the store directly, are not on the audit log: the console's are)

Flags of add:
  --email EMAIL            the operator's sign-in email
  --name NAME              the operator's name, as the console shows it
  --roles ROLES            comma-separated: admin, privacy, reader
  --purposes PURPOSES      comma-separated purposes the operator may read customer data
                           for (default: every purpose of the default catalog; "" for none)

Flags of every subcommand:
  --workspace ID           the workspace (default: the first one)
  --data-dir DIR           data directory of an embedded store (default ./trustloop-data)
  --database-url URL       postgres://… of a PostgreSQL store

Only --data-dir and --database-url are also read from the environment
(TRUSTLOOP_DATA_DIR, TRUSTLOOP_DATABASE_URL). On the embedded store, add and
disable need the server stopped (it holds the data directory); list does not.
Exit status: 0 done; 1 refused (nothing changed); 2 usage.
`

// operatorsConnFlags are the only flags also read from TRUSTLOOP_<NAME>: the
// others describe one operator, and an environment set up for `serve` must
// not fill them in.
var operatorsConnFlags = []string{"data-dir", "database-url"}

// operatorView is what the commands print of an operator: never its hash.
type operatorView struct {
	ID          int64      `json:"id"`
	WorkspaceID int64      `json:"workspace_id"`
	Email       string     `json:"email"`
	Name        string     `json:"name"`
	Roles       []string   `json:"roles"`
	Purposes    []string   `json:"purposes"`
	CreatedAt   time.Time  `json:"created_at"`
	DisabledAt  *time.Time `json:"disabled_at,omitempty"`
}

func viewOperator(o *trustloop.Operator) operatorView {
	v := operatorView{ID: o.ID, WorkspaceID: o.WorkspaceID, Email: o.Email, Name: o.Name, Roles: o.Roles,
		Purposes: o.Purposes, CreatedAt: o.CreatedAt, DisabledAt: o.DisabledAt}
	if v.Roles == nil {
		v.Roles = []string{}
	}
	if v.Purposes == nil {
		v.Purposes = []string{}
	}
	return v
}

// runOperators runs `trustloop operators <subcommand>`.
func runOperators(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, operatorsHelp)
		return &usageError{"operators: give a subcommand: add, list or disable"}
	}
	sub := args[0]
	switch sub {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, operatorsHelp)
		return nil
	case "add", "list", "disable":
	default:
		return &usageError{fmt.Sprintf("operators: unknown subcommand %q (add, list or disable)", sub)}
	}
	fs := flag.NewFlagSet("operators "+sub, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned, help is printed below
	fs.Usage = func() {}
	workspace := fs.Int64("workspace", 0, "workspace id")
	dataDir := fs.String("data-dir", "./trustloop-data", "data directory of an embedded store")
	dbURL := fs.String("database-url", "", "postgres://… of a PostgreSQL store")
	var email, name, roles, purposes *string
	if sub != "list" {
		email = fs.String("email", "", "the operator's sign-in email")
	}
	if sub == "add" {
		name = fs.String("name", "", "the operator's name")
		roles = fs.String("roles", "", "comma-separated roles")
		purposes = fs.String("purposes", "", "comma-separated purposes")
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, operatorsHelp)
			return nil
		}
		return &usageError{fmt.Sprintf("operators %s: %s (trustloop operators -h lists the flags)", sub, flagError(err))}
	}
	if fs.NArg() > 0 {
		return &usageError{fmt.Sprintf("operators %s: unexpected argument (not quoted, in case it is personal data); every value goes with a flag", sub)}
	}
	if err := envForUnset(fs, operatorsConnFlags); err != nil {
		return err
	}
	if email != nil && strings.TrimSpace(*email) == "" {
		return &usageError{fmt.Sprintf("operators %s: --email is required", sub)}
	}

	// Everything that can be checked without the store is, before it is
	// opened: bad input changes nothing.
	var op *trustloop.Operator
	if sub == "add" {
		if strings.TrimSpace(*name) == "" || strings.TrimSpace(*roles) == "" {
			return &usageError{"operators add: --email, --name and --roles are required"}
		}
		// The flags first, then the password: a mistyped email is named
		// before anyone is asked for a secret. (The workspace is not known
		// yet, and the hash is a stand-in until the password is read.)
		op = &trustloop.Operator{WorkspaceID: max(*workspace, 1), Email: trustloop.NormalizeOperatorEmail(*email),
			Name: strings.TrimSpace(*name), PasswordHash: "$pending$", Roles: splitList(*roles), Purposes: splitList(*purposes)}
		purposesSet := false
		fs.Visit(func(f *flag.Flag) { purposesSet = purposesSet || f.Name == "purposes" })
		if !purposesSet {
			op.Purposes = slices.Clone(trustloop.DefaultPurposes)
		}
		if err := op.Validate(); err != nil {
			return err
		}
		pw, err := operatorPassword(stdin, stderr)
		if err != nil {
			return err
		}
		if err := password.Check(pw); err != nil {
			return err
		}
		if op.PasswordHash, err = password.Hash(pw); err != nil {
			return err
		}
	}

	db, err := openOperatorStore(ctx, *dataDir, *dbURL, sub != "list")
	if err != nil {
		return err
	}
	defer db.Close()
	ws, err := operatorWorkspace(ctx, db, *workspace)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	switch sub {
	case "list":
		ops, err := db.ListOperators(ctx, ws)
		if err != nil {
			return err
		}
		for _, o := range ops {
			if err := enc.Encode(viewOperator(o)); err != nil {
				return err
			}
		}
		return nil
	case "disable":
		o, err := db.FindOperatorByEmail(ctx, ws, *email)
		if err != nil {
			return err
		}
		if o.DisabledAt != nil {
			fmt.Fprintln(stderr, "trustloop: the operator was already disabled; nothing changed")
			return enc.Encode(viewOperator(o))
		}
		now := time.Now().UTC().Truncate(time.Millisecond)
		o.DisabledAt = &now
		if err := db.UpdateOperator(ctx, o); err != nil {
			return err
		}
		return enc.Encode(viewOperator(o))
	}
	// add
	op.WorkspaceID = ws
	known, err := catalogPurposes(ctx, db, ws)
	if err != nil {
		return err
	}
	for _, p := range op.Purposes {
		if !slices.Contains(known, p) {
			return trustloop.Errorf(trustloop.EINVALID, "Unknown purpose %q.", p).
				WithHint("The workspace's purposes: " + strings.Join(known, ", ") + ".")
		}
	}
	if err := db.CreateOperator(ctx, op); err != nil {
		return err
	}
	return enc.Encode(viewOperator(op))
}

// operatorPassword reads the new operator's password from the environment,
// else one line of stdin (prompting on a terminal). It is never a flag: a
// flag would sit in the shell history and the process list.
func operatorPassword(stdin io.Reader, stderr io.Writer) (string, error) {
	if pw, ok := os.LookupEnv("TRUSTLOOP_OPERATOR_PASSWORD"); ok {
		return pw, nil
	}
	if f, ok := stdin.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			fmt.Fprint(stderr, "Password for the new operator (12 characters or more; shown as typed): ")
		}
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("reading the password from standard input: %w", err)
	}
	if line == "" {
		return "", &usageError{"operators add: no password: set TRUSTLOOP_OPERATOR_PASSWORD or give it as one line on standard input"}
	}
	return strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r"), nil
}

// splitList splits a comma-separated flag value, dropping blanks.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// openOperatorStore opens the store like `trustloop stats`: PostgreSQL by URL,
// else the data directory, read-only (beside a running server) unless write.
// An embedded store is never created here: a mistyped --data-dir is an error.
func openOperatorStore(ctx context.Context, dataDir, dbURL string, write bool) (trustloop.Store, error) {
	if dbURL != "" {
		db, err := postgres.Open(ctx, dbURL)
		if err != nil {
			return nil, err
		}
		return db, nil
	}
	if !write {
		db, err := sqlite.OpenReadOnly(ctx, dataDir)
		if err != nil {
			return nil, err
		}
		return db, nil
	}
	if _, err := os.Stat(filepath.Join(dataDir, sqlite.FileName)); err != nil {
		return nil, &trustloop.Error{Code: trustloop.ENOTFOUND, Message: fmt.Sprintf("No Trustloop database in %s.", dataDir),
			Hint: "Pass the --data-dir the server runs with."}
	}
	db, err := sqlite.Open(ctx, dataDir)
	if err != nil {
		return nil, err
	}
	return db, nil
}

// operatorWorkspace returns the workspace id asked for (checked), or the
// first workspace's.
func operatorWorkspace(ctx context.Context, db trustloop.Store, id int64) (int64, error) {
	if id != 0 {
		if _, err := db.FindWorkspace(ctx, id); err != nil {
			return 0, err
		}
		return id, nil
	}
	wss, err := db.ListWorkspaces(ctx)
	if err != nil {
		return 0, err
	}
	if len(wss) == 0 {
		return 0, trustloop.Errorf(trustloop.ENOTFOUND, "The store holds no workspace yet.").
			WithHint("Start trustloop serve once: it makes the first workspace.")
	}
	return wss[0].ID, nil
}

// catalogPurposes lists the ids of the workspace's purpose catalog (the
// default catalog until it was edited).
func catalogPurposes(ctx context.Context, db trustloop.Store, ws int64) ([]string, error) {
	c := consent.DefaultCatalog()
	v, _, err := db.FindSetting(ctx, ws, consent.SettingName)
	switch {
	case err == nil:
		c = &consent.Catalog{}
		if err := json.Unmarshal(v, c); err != nil {
			return nil, fmt.Errorf("the stored purpose catalog of workspace %d: %w", ws, err)
		}
	case trustloop.ErrorCode(err) != trustloop.ENOTFOUND:
		return nil, err
	}
	ids := make([]string, len(c.Purposes))
	for i, p := range c.Purposes {
		ids[i] = p.ID
	}
	return ids, nil
}
