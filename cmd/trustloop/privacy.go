package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/trustloop/trustloop"
)

// `trustloop privacy`: the operator's commands for privacy requests (issue 5).
// They talk to a running server over its API and never open the store: the
// server does the work (an erasure runs on the store's single writer), this
// files requests, moves them along and downloads their packages.

// privacyCmd is one subcommand. flags defines its own flags on fs and returns
// the function that runs it with the request id given (for those taking one).
type privacyCmd struct {
	name, args, summary string
	takesID             bool
	flags               func(fs *flag.FlagSet) func(ctx context.Context, c *privacyClient, id string) error
}

var privacyCmds = []privacyCmd{
	{"create", "--type TYPE --identifier TYPE:VALUE [flags]", "file a request for a customer and print it", false, privacyCreate},
	{"list", "[--status S] [--limit N] [--json]", "list requests, oldest deadline first", false, privacyList},
	{"show", "ID", "print a request", true, privacyShow},
	{"verify", "ID", "record that the requester's identity is verified; the server then works on it", true, privacyVerify},
	{"reject", "ID --reason R", "reject an open request, with the reason the requester is told", true, privacyReason("reject")},
	{"extend", "ID --reason R", "extend a request's deadline once (GDPR: two months, CCPA: 45 days)", true, privacyReason("extend")},
	{"export", "ID [--format json|html] [--out FILE]", "download a completed access or portability request's package", true, privacyExport},
}

// privacyConnFlags are the flags of every subcommand, the only ones also read
// from TRUSTLOOP_<NAME>: the others describe one request, and an environment
// set up for `serve` (TRUSTLOOP_REGIME=opt_out, …) must not change it.
var privacyConnFlags = []string{"server", "api-key", "data-dir", "timeout"}

const privacyIntro = `Usage: trustloop privacy <subcommand> [flags]

Files and follows privacy requests (the GDPR's and the CCPA's rights) through
the API of a running server, which does the work: an erasure runs inside it.

Subcommands:
`

const privacyOutro = `
Only --server, --api-key, --data-dir and --timeout are also read from the
environment (TRUSTLOOP_SERVER, …). Exit status: 0 done; 1 the server refused
or could not be reached, or the request waited for was rejected; 2 usage.
`

// privacyHelp is `trustloop help privacy`: the subcommands and their flags,
// listed from the flag definitions themselves.
func privacyHelp(w io.Writer) {
	fmt.Fprint(w, privacyIntro)
	for _, c := range privacyCmds {
		fmt.Fprintf(w, "  %-7s %s\n          %s\n", c.name, c.args, c.summary)
	}
	for _, c := range privacyCmds {
		fs := privacyFlagSet(c)
		c.flags(fs)
		own := false
		fs.VisitAll(func(f *flag.Flag) { own = own || !slices.Contains(privacyConnFlags, f.Name) })
		if own {
			fmt.Fprintf(w, "\n%s flags:\n", c.name)
			printFlags(w, fs, func(name string) bool { return !slices.Contains(privacyConnFlags, name) })
		}
	}
	fmt.Fprint(w, "\nFlags of every subcommand:\n")
	printFlags(w, privacyFlagSet(privacyCmd{}), func(string) bool { return true })
	fmt.Fprint(w, privacyOutro)
}

func printFlags(w io.Writer, fs *flag.FlagSet, show func(name string) bool) {
	fs.VisitAll(func(f *flag.Flag) {
		if !show(f.Name) {
			return
		}
		arg, use := flag.UnquoteUsage(f)
		left := "--" + f.Name
		if arg != "" {
			left += " " + arg
		}
		if f.DefValue != "" && f.DefValue != "false" {
			use += " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(w, "  %-24s %s\n", left, use)
	})
}

// privacyFlagSet makes a subcommand's flag set with the connection flags.
func privacyFlagSet(c privacyCmd) *flag.FlagSet {
	fs := flag.NewFlagSet("privacy "+c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned, help is printed by runPrivacy
	fs.Usage = func() {}
	fs.String("server", "http://localhost:8080", "base `URL` of the running server")
	fs.String("api-key", "", "an admin or privacy API `KEY` (default: admin_api_key in <data-dir>/credentials)")
	fs.String("data-dir", "./trustloop-data", "the server's data `DIR`, for its credentials file when no --api-key is given")
	fs.Duration("timeout", 30*time.Second, "how long the server may take to answer each call, a `DURATION` like 30s or 2m")
	return fs
}

// runPrivacy runs `trustloop privacy <subcommand>`.
func runPrivacy(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		privacyHelp(stderr)
		return &usageError{"privacy: give a subcommand: " + privacyNames()}
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		if len(args) > 1 {
			return runPrivacy(ctx, []string{args[1], "-h"}, stdout, stderr)
		}
		privacyHelp(stdout)
		return nil
	}
	i := slices.IndexFunc(privacyCmds, func(c privacyCmd) bool { return c.name == args[0] })
	if i < 0 {
		return &usageError{fmt.Sprintf("privacy: unknown subcommand %q (%s)", args[0], privacyNames())}
	}
	cmd := privacyCmds[i]
	fs := privacyFlagSet(cmd)
	run := cmd.flags(fs)
	flagArgs, pos := splitArgs(fs, args[1:])
	if err := fs.Parse(flagArgs); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stdout, "Usage: trustloop privacy %s %s\n  %s\n\nFlags:\n", cmd.name, cmd.args, cmd.summary)
			printFlags(stdout, fs, func(string) bool { return true })
			return nil
		}
		return &usageError{fmt.Sprintf("privacy %s: %s (trustloop privacy %s -h lists the flags)", cmd.name, flagError(err), cmd.name)}
	}
	if err := envForUnset(fs, privacyConnFlags); err != nil {
		return err
	}
	id := ""
	switch {
	case cmd.takesID && len(pos) != 1:
		return &usageError{fmt.Sprintf("privacy %s: give one request id (prq_…)", cmd.name)}
	case cmd.takesID:
		if id = pos[0]; !trustloop.ValidRequestID(id) {
			return &usageError{fmt.Sprintf("privacy %s: the argument is not a request id (prq_ and 26 letters and digits; it is not quoted here, in case it was personal data)", cmd.name)}
		}
	case len(pos) > 0:
		return &usageError{fmt.Sprintf("privacy %s: unexpected argument (not quoted, in case it is personal data): %s takes %s", cmd.name, cmd.name, cmd.args)}
	}
	c, err := newPrivacyClient(fs, stdout, stderr)
	if err != nil {
		return err
	}
	err = run(ctx, c, id)
	var ue *usageError
	var ec *exitCode
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ue), errors.As(err, &ec):
		return err
	}
	msg := err.Error()
	if te := (*trustloop.Error)(nil); errors.As(err, &te) {
		// The server's own words, which never hold personal data.
		if msg = te.Message; te.Hint != "" {
			msg += " (" + te.Hint + ")"
		}
	}
	fmt.Fprintln(stderr, "trustloop privacy:", msg)
	return &exitCode{1}
}

func privacyNames() string {
	names := make([]string, len(privacyCmds))
	for i, c := range privacyCmds {
		names[i] = c.name
	}
	return strings.Join(names, ", ")
}

// splitArgs separates flags (with their values) from positional arguments, so
// that the request id may come before or after the flags.
func splitArgs(fs *flag.FlagSet, args []string) (flags, pos []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return flags, append(pos, args[i+1:]...)
		}
		if len(a) < 2 || a[0] != '-' {
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		f := fs.Lookup(name)
		if f == nil {
			continue // fs.Parse reports it
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			continue
		}
		if i+1 < len(args) {
			i++
			flags = append(flags, args[i])
		}
	}
	return flags, pos
}

// privacyClient calls a server's privacy API.
type privacyClient struct {
	base    string // the server's URL without a trailing slash
	shown   string // the same without a password, for messages
	key     string
	keyFrom string // the data directory to read the key from, if none was given
	timeout time.Duration
	http    *http.Client
	stdout  io.Writer
	stderr  io.Writer
}

func newPrivacyClient(fs *flag.FlagSet, stdout, stderr io.Writer) (*privacyClient, error) {
	get := func(name string) string { return fs.Lookup(name).Value.String() }
	u, err := url.Parse(strings.TrimSpace(get("server")))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, &usageError{"privacy: --server must be the server's base URL, like http://localhost:8080"}
	}
	timeout := fs.Lookup("timeout").Value.(flag.Getter).Get().(time.Duration)
	if timeout <= 0 {
		return nil, &usageError{"privacy: --timeout must be positive"}
	}
	c := &privacyClient{base: strings.TrimSuffix(u.String(), "/"), shown: strings.TrimSuffix(u.Redacted(), "/"),
		key: strings.TrimSpace(get("api-key")), keyFrom: get("data-dir"), timeout: timeout, http: &http.Client{},
		stdout: stdout, stderr: stderr}
	return c, nil
}

// apiKey returns the key given, or else the bootstrap admin key of the
// credentials file in --data-dir; it is read only when a call is made, after
// the subcommand's own flags were checked.
func (c *privacyClient) apiKey() (string, error) {
	if c.key != "" {
		return c.key, nil
	}
	path := filepath.Join(c.keyFrom, "credentials")
	b, err := os.ReadFile(path)
	if err != nil {
		return "", &usageError{fmt.Sprintf("privacy: no API key: give --api-key (or TRUSTLOOP_API_KEY), or the --data-dir "+
			"of the server, whose credentials file holds its admin key (cannot read %s: %v)", path, unwrapPath(err))}
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "admin_api_key="); ok && v != "" {
			c.key = v
			return v, nil
		}
	}
	return "", &usageError{fmt.Sprintf("privacy: no API key: give --api-key (or TRUSTLOOP_API_KEY); %s holds no admin_api_key", path)}
}

// send makes one call. The answer must begin within --timeout, and a JSON
// answer be read within it too (stopClock lifts it for a download). A 2xx
// answer's body is the caller's to read and close; any other status is
// returned as the server's error.
func (c *privacyClient) send(ctx context.Context, method, path string, q url.Values, body any) (resp *http.Response, stopClock func() bool, err error) {
	key, err := c.apiKey()
	if err != nil {
		return nil, nil, err
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, nil, err
		}
		rd = bytes.NewReader(b)
	}
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	callCtx, cancel := context.WithCancel(ctx)
	var late atomic.Bool
	timer := time.AfterFunc(c.timeout, func() { late.Store(true); cancel() })
	req, err := http.NewRequestWithContext(callCtx, method, u, rd)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("User-Agent", "trustloop-cli/"+trustloop.Version)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err = c.http.Do(req)
	if err != nil {
		cancel()
		return nil, nil, c.netError(ctx, &late, err)
	}
	if resp.StatusCode/100 != 2 {
		defer cancel()
		defer resp.Body.Close()
		return nil, nil, c.serverError(resp)
	}
	resp.Body = &releasingBody{ReadCloser: resp.Body, release: func() { timer.Stop(); cancel() }}
	return resp, timer.Stop, nil
}

// releasingBody ends its call's context when closed.
type releasingBody struct {
	io.ReadCloser
	release func()
}

func (b *releasingBody) Close() error {
	err := b.ReadCloser.Close()
	b.release()
	return err
}

// netError says which server could not be reached, and why.
func (c *privacyClient) netError(ctx context.Context, late *atomic.Bool, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // its text repeats the URL
	}
	switch {
	case late.Load():
		return fmt.Errorf("the server at %s did not answer within %s (--timeout)", c.shown, c.timeout)
	case ctx.Err() != nil:
		return fmt.Errorf("interrupted while talking to the server at %s", c.shown)
	}
	return fmt.Errorf("cannot reach the server at %s: %v", c.shown, err)
}

// serverError turns an error answer into the server's message and hint.
func (c *privacyClient) serverError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var e struct {
		Error struct{ Code, Message, Hint string }
	}
	if json.Unmarshal(b, &e) == nil && e.Error.Message != "" {
		return &trustloop.Error{Code: e.Error.Code, Message: e.Error.Message, Hint: e.Error.Hint}
	}
	return fmt.Errorf("the server at %s answered %s, not with an error of the Trustloop API: is --server right?", c.shown, resp.Status)
}

// call makes a call whose answer is JSON and returns it.
func (c *privacyClient) call(ctx context.Context, method, path string, body any) ([]byte, error) {
	return c.callQuery(ctx, method, path, nil, body)
}

func (c *privacyClient) callQuery(ctx context.Context, method, path string, q url.Values, body any) ([]byte, error) {
	resp, _, err := c.send(ctx, method, path, q, body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return nil, fmt.Errorf("reading the answer of the server at %s: %v", c.shown, err)
	}
	if b = bytes.TrimSpace(b); !json.Valid(b) {
		return nil, fmt.Errorf("the server at %s answered %s %s with something other than JSON: is --server right?", c.shown, method, path)
	}
	return b, nil
}

// print writes an answer as indented JSON.
func (c *privacyClient) print(b []byte) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, b, "", "  "); err != nil {
		return err
	}
	buf.WriteByte('\n')
	_, err := c.stdout.Write(buf.Bytes())
	return err
}

// requestState is what the CLI itself reads of a request (the API's
// PrivacyRequest; it prints the rest as the server sent it).
type requestState struct {
	RequestID    string    `json:"request_id"`
	Type         string    `json:"type"`
	Status       string    `json:"status"`
	DueAt        time.Time `json:"due_at"`
	Overdue      bool      `json:"overdue"`
	Progress     string    `json:"progress"`
	RejectReason string    `json:"reject_reason"`
	Joined       bool      `json:"joined_existing"`
}

func requestPath(id string) string { return "/v1/privacy-requests/" + url.PathEscape(id) }

// traitFlag collects --trait NAME=VALUE (a string) and NAME:=JSON (a number,
// boolean or null).
type traitFlag map[string]any

func (t traitFlag) String() string { return "" }

func (t traitFlag) Set(s string) error {
	name, value, ok := strings.Cut(s, "=")
	if !ok {
		return errors.New("want NAME=VALUE, or NAME:=JSON for a number, boolean or null")
	}
	var v any = value
	if n, isJSON := strings.CutSuffix(name, ":"); isJSON {
		name = n
		dec := json.NewDecoder(strings.NewReader(value))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			return fmt.Errorf("%s:= wants a JSON value, like 42, true or null", name)
		}
		if _, err := dec.Token(); err != io.EOF { // one value, nothing after it
			return fmt.Errorf("%s:= wants a JSON value, like 42, true or null", name)
		}
		switch v.(type) {
		case nil, bool, json.Number, string:
		default:
			return errors.New("a trait is a string, number, boolean or null")
		}
	}
	if name == "" {
		return errors.New("the trait has no name")
	}
	if _, dup := t[name]; dup {
		return fmt.Errorf("trait %q is given twice", name)
	}
	t[name] = v
	return nil
}

func privacyCreate(fs *flag.FlagSet) func(context.Context, *privacyClient, string) error {
	typ := fs.String("type", "", "the request's `TYPE`: "+strings.Join(trustloop.RequestTypes, ", ")+" (required)")
	ident := fs.String("identifier", "", "the customer's identifier as `TYPE:VALUE`, e.g. email:jane@example.com (required)")
	regime := fs.String("regime", "", "the deadlines' `REGIME`: gdpr or ccpa (default: from the customer's jurisdiction and the workspace)")
	suppress := fs.Bool("suppress", false, "erasure: keep a suppression entry so the customer's future events are refused")
	traits := traitFlag{}
	fs.Var(traits, "trait", "rectification: a corrected trait, `NAME=VALUE` (a string) or NAME:=JSON (a number, boolean, or null to remove it); repeatable")
	unverified := fs.Bool("unverified", false, "the requester's identity is not verified yet: the request waits for 'privacy verify'")
	wait := fs.Bool("wait", false, "wait until the request is completed or rejected, and print it then")
	return func(ctx context.Context, c *privacyClient, _ string) error {
		switch {
		case *typ == "":
			return &usageError{"privacy create: --type is required (" + strings.Join(trustloop.RequestTypes, ", ") + ")"}
		case !slices.Contains(trustloop.RequestTypes, *typ):
			return &usageError{fmt.Sprintf("privacy create: --type %q: want one of %s", *typ, strings.Join(trustloop.RequestTypes, ", "))}
		case *ident == "":
			return &usageError{"privacy create: --identifier is required (TYPE:VALUE, e.g. email:jane@example.com)"}
		case !strings.Contains(strings.Trim(*ident, ":"), ":"):
			return &usageError{"privacy create: --identifier must be TYPE:VALUE, e.g. email:jane@example.com or user_id:42"}
		case *regime != "" && *regime != trustloop.RegimeGDPR && *regime != trustloop.RegimeCCPA:
			return &usageError{fmt.Sprintf("privacy create: --regime %q: want gdpr or ccpa", *regime)}
		}
		body := map[string]any{"type": *typ, "identifier": *ident}
		if *regime != "" {
			body["regime"] = *regime
		}
		if *suppress {
			body["suppress"] = true
		}
		if len(traits) > 0 {
			body["traits"] = map[string]any(traits)
		}
		if *unverified {
			body["verified"] = false
		}
		b, err := c.call(ctx, http.MethodPost, "/v1/privacy-requests", body)
		if err != nil {
			return err
		}
		if !*wait {
			return c.print(b)
		}
		var r requestState
		if err := json.Unmarshal(b, &r); err != nil || !trustloop.ValidRequestID(r.RequestID) {
			return fmt.Errorf("the server at %s answered without a request id", c.shown)
		}
		if r.Joined {
			fmt.Fprintf(c.stderr, "%s: an open %s request for this customer, filed earlier, which this one joined\n", r.RequestID, r.Type)
		}
		return c.wait(ctx, r.RequestID)
	}
}

// wait polls a request until it is completed or rejected and prints it.
func (c *privacyClient) wait(ctx context.Context, id string) error {
	delay, last := 100*time.Millisecond, ""
	for {
		b, err := c.call(ctx, http.MethodGet, requestPath(id), nil)
		var r requestState
		if err == nil {
			err = json.Unmarshal(b, &r)
		}
		switch code := trustloop.ErrorCode(err); {
		case ctx.Err() != nil:
			return fmt.Errorf("stopped waiting; request %s goes on (trustloop privacy show %s)", id, id)
		case code == trustloop.EUNAVAILABLE || code == trustloop.ERATELIMITED:
			// Passing: ask again.
		case err != nil:
			return err
		case r.Status == trustloop.RequestCompleted:
			return c.print(b)
		case r.Status == trustloop.RequestRejected:
			if err := c.print(b); err != nil {
				return err
			}
			fmt.Fprintf(c.stderr, "trustloop privacy: request %s was rejected: %s\n", id, r.RejectReason)
			return &exitCode{1}
		default:
			if state := strings.TrimSpace(r.Status + " " + r.Progress); state != last {
				last = state
				hint := ""
				if r.Status == trustloop.RequestReceived {
					hint = " (until someone runs trustloop privacy verify " + id + ")"
				}
				fmt.Fprintf(c.stderr, "waiting for %s: %s%s\n", id, state, hint)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stopped waiting; request %s goes on (trustloop privacy show %s)", id, id)
		case <-time.After(delay):
		}
		delay = min(2*delay, 2*time.Second)
	}
}

var requestStatuses = []string{trustloop.RequestReceived, trustloop.RequestVerified, trustloop.RequestInProgress,
	trustloop.RequestCompleted, trustloop.RequestRejected}

func privacyList(fs *flag.FlagSet) func(context.Context, *privacyClient, string) error {
	status := fs.String("status", "", "only the requests in this `STATUS`: "+strings.Join(requestStatuses, ", "))
	limit := fs.Int("limit", 50, "at most `N` requests, 1 to 500")
	cursor := fs.String("cursor", "", "the next page: the `CURSOR` the previous list printed")
	asJSON := fs.Bool("json", false, "print the API's page as JSON")
	return func(ctx context.Context, c *privacyClient, _ string) error {
		if *status != "" && !slices.Contains(requestStatuses, *status) {
			return &usageError{fmt.Sprintf("privacy list: --status %q: want one of %s", *status, strings.Join(requestStatuses, ", "))}
		}
		if *limit < 1 || *limit > 500 {
			return &usageError{fmt.Sprintf("privacy list: --limit %d: want 1 to 500", *limit)}
		}
		q := url.Values{"limit": {strconv.Itoa(*limit)}}
		if *status != "" {
			q.Set("status", *status)
		}
		if *cursor != "" {
			q.Set("cursor", *cursor)
		}
		b, err := c.callQuery(ctx, http.MethodGet, "/v1/privacy-requests", q, nil)
		if err != nil {
			return err
		}
		if *asJSON {
			return c.print(b)
		}
		var page struct {
			Data       []requestState `json:"data"`
			NextCursor string         `json:"next_cursor"`
		}
		if err := json.Unmarshal(b, &page); err != nil {
			return fmt.Errorf("the server at %s answered a list that is not the API's: %v", c.shown, err)
		}
		if len(page.Data) == 0 {
			fmt.Fprintln(c.stderr, "no privacy requests")
		}
		// The server's order: oldest deadline first.
		var out bytes.Buffer
		for _, r := range page.Data {
			mark := ""
			if r.Overdue {
				mark = "  OVERDUE"
			}
			fmt.Fprintf(&out, "%-30s  %-13s  %-11s  due %s%s\n", r.RequestID, r.Type, r.Status, r.DueAt.UTC().Format(time.DateOnly), mark)
		}
		if _, err := c.stdout.Write(out.Bytes()); err != nil {
			return err
		}
		if page.NextCursor != "" {
			more := "trustloop privacy list --cursor " + page.NextCursor
			if *status != "" {
				more += " --status " + *status
			}
			fmt.Fprintf(c.stderr, "more requests: %s\n", more)
		}
		return nil
	}
}

func privacyShow(*flag.FlagSet) func(context.Context, *privacyClient, string) error {
	return func(ctx context.Context, c *privacyClient, id string) error {
		b, err := c.call(ctx, http.MethodGet, requestPath(id), nil)
		if err != nil {
			return err
		}
		return c.print(b)
	}
}

func privacyVerify(*flag.FlagSet) func(context.Context, *privacyClient, string) error {
	return func(ctx context.Context, c *privacyClient, id string) error {
		b, err := c.call(ctx, http.MethodPost, requestPath(id)+"/verify", nil)
		if err != nil {
			return err
		}
		return c.print(b)
	}
}

// privacyReason is reject and extend: a POST with the reason.
func privacyReason(action string) func(*flag.FlagSet) func(context.Context, *privacyClient, string) error {
	return func(fs *flag.FlagSet) func(context.Context, *privacyClient, string) error {
		use := "the `REASON` for extending the deadline (required; recorded)"
		if action == "reject" {
			use = "the `REASON` for rejecting the request (required; the requester is told it)"
		}
		reason := fs.String("reason", "", use)
		return func(ctx context.Context, c *privacyClient, id string) error {
			if strings.TrimSpace(*reason) == "" {
				return &usageError{fmt.Sprintf("privacy %s: --reason is required", action)}
			}
			b, err := c.call(ctx, http.MethodPost, requestPath(id)+"/"+action, map[string]string{"reason": *reason})
			if err != nil {
				return err
			}
			return c.print(b)
		}
	}
}

func privacyExport(fs *flag.FlagSet) func(context.Context, *privacyClient, string) error {
	format := fs.String("format", "json", "the package's `FORMAT`: json (for machines, and to move the data) or html (for the customer to read)")
	out := fs.String("out", "", "write the package to `FILE` (created 0600: it holds personal data) instead of standard output")
	return func(ctx context.Context, c *privacyClient, id string) error {
		if *format != "json" && *format != "html" {
			return &usageError{fmt.Sprintf("privacy export: --format %q: want json or html", *format)}
		}
		// The file is made first: every download is recorded as a use of the
		// customer's data, and one that cannot be saved should not be made.
		var dst io.Writer = c.stdout
		var tmp *os.File
		if *out != "" && *out != "-" {
			var err error
			if tmp, err = os.CreateTemp(filepath.Dir(*out), "."+filepath.Base(*out)+".*.partial"); err != nil {
				return fmt.Errorf("cannot write the package: %v", err)
			}
			defer func() {
				if tmp != nil {
					tmp.Close()
					os.Remove(tmp.Name())
				}
			}()
			dst = tmp
		}
		resp, stopClock, err := c.send(ctx, http.MethodGet, requestPath(id)+"/export", url.Values{"format": {*format}}, nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		stopClock() // --timeout is for the answer to begin; the package streams as long as it takes
		// Streamed through, never held whole; what streams by is checked to end
		// as the document does, since a server failing mid-stream ends the
		// response without an error status.
		end := &docEnd{html: *format == "html"}
		src := &readErr{r: resp.Body}
		n, err := io.Copy(dst, io.TeeReader(src, end))
		switch {
		case src.err != nil:
			return fmt.Errorf("the download from the server at %s broke off after %d bytes: %v", c.shown, n, src.err)
		case err != nil:
			return fmt.Errorf("cannot write the package: %v", err)
		case !end.complete():
			what := "the output above is incomplete"
			if tmp != nil {
				what = "nothing was written to " + *out
			}
			return fmt.Errorf("the server cut the package short after %d bytes (its log says why); %s", n, what)
		}
		if tmp == nil {
			return nil
		}
		if err := tmp.Sync(); err != nil {
			return fmt.Errorf("cannot write the package: %v", err)
		}
		if err := tmp.Close(); err != nil {
			return fmt.Errorf("cannot write the package: %v", err)
		}
		if err := os.Rename(tmp.Name(), *out); err != nil {
			os.Remove(tmp.Name())
			tmp = nil
			return fmt.Errorf("cannot write the package: %v", err)
		}
		tmp = nil
		fmt.Fprintf(c.stderr, "wrote %s (%d bytes)\n", *out, n)
		return nil
	}
}

// readErr remembers a read's error, to tell a broken download from a failed write.
type readErr struct {
	r   io.Reader
	err error
}

func (r *readErr) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}

// docEnd follows a package as it streams by to tell whether it is whole: a
// JSON document whose brackets all closed, or a page that ends with </html>.
type docEnd struct {
	html                   bool
	tail                   []byte
	depth                  int
	began, inString, escap bool
}

func (d *docEnd) Write(p []byte) (int, error) {
	if d.html {
		d.tail = append(d.tail, p...)
		if len(d.tail) > 64 {
			d.tail = append(d.tail[:0], d.tail[len(d.tail)-64:]...)
		}
		return len(p), nil
	}
	for _, b := range p {
		switch {
		case d.inString && d.escap:
			d.escap = false
		case d.inString && b == '\\':
			d.escap = true
		case d.inString && b == '"':
			d.inString = false
		case d.inString:
		case b == '"':
			d.inString = true
		case b == '{' || b == '[':
			d.depth++
			d.began = true
		case b == '}' || b == ']':
			d.depth--
		}
	}
	return len(p), nil
}

func (d *docEnd) complete() bool {
	if d.html {
		return bytes.HasSuffix(bytes.TrimSpace(d.tail), []byte("</html>"))
	}
	return d.began && d.depth == 0 && !d.inString
}

// envForUnset fills the named flags a command line left unset from the
// environment (TRUSTLOOP_<NAME>), as serve does for all of its flags: the
// connection flags of a command that works on the store or a server.
func envForUnset(fs *flag.FlagSet, names []string) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	env := flag.NewFlagSet(fs.Name(), flag.ContinueOnError)
	for _, name := range names {
		if f := fs.Lookup(name); !set[name] {
			env.Var(f.Value, f.Name, f.Usage)
		}
	}
	return parseFlags(env, nil)
}
