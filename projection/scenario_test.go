package projection_test

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/trustloop/trustloop/identity/identitytest"
	"github.com/trustloop/trustloop/postgres/pgtest"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/collect"
	"github.com/trustloop/trustloop/identity"
	"github.com/trustloop/trustloop/keyring"
	"github.com/trustloop/trustloop/postgres"
	"github.com/trustloop/trustloop/profile"
	"github.com/trustloop/trustloop/projection"
	"github.com/trustloop/trustloop/sqlite"
)

// The identity scenario scripts of testdata/identity (see identity/scenario_test.go
// for their format), run through the real projection over each store instead of
// the in-memory identity.Graph: every event is a group commit as ingest makes it
// (subject key resolved by the keyring, envelope sealed, AppendEvents with the
// group's Project, then Done), a split is Service.Split, and every check reads
// the store back through the service.
//
// How the commands map:
//   - config: the identity.Rules given to projection.New (the service is made at
//     the first other command; config after that is refused, as in the Graph test).
//   - event <id> <type:value>...: a Segment message carrying the identifiers,
//     decoded by collect.Decode and identified by Service.Identify as ingest does,
//     when one message can carry them (at most one of each type); otherwise (two
//     emails, two anonymous ids…, which no Segment message holds) the item is given
//     the script's identifiers verbatim, as Graph.Apply is, with a message whose
//     userId/anonymousId is the first of the script's.
//   - replay <id>: the same message (or identifiers) again under a new messageId
//     (the same messageId would be deduplicated by the store and never projected).
//   - message / batch: the script's JSON through collect.Decode, then Identify.
//   - split <n>: the n-th merge record the store holds, by creation (merge ids
//     grow with creation), split with Service.Split(ws, merge.Into, merge.ID); an
//     unknown n is split by a merge id that does not exist.
//   - partition: after Service.Flush(all), every live profile of ListProfiles,
//     opened with Service.Profile; its decrypted identities.
//   - merges: every merge record of the store, by creation.
//   - profile-of: Service.Lookup of the normalized identifier.
//
// Profile numbers: the Graph numbers profiles 1, 2, 3… in creation order; store
// profile ids grow with creation within a process, so the n-th smallest store id
// ever made (live, or merged away and found through the merge records) is
// profile n. Outputs are compared verbatim except:
//   - event, replay, message and batch outputs: the "skip" lines are left out of
//     the comparison (the projection does not expose Resolve's skips);
//   - split errors: compared by error code (the API's texts differ from the
//     Graph's).
//
// Two modes: "per-event" commits each event as its own group and checks every
// event's outcome (profile, attached identifiers, merges); "grouped" commits all
// the events between two other commands as one group (as a busy collector does)
// and checks only the other commands' outputs: a group's outcome must equal its
// events applied one by one. "cold" is per-event with no profile kept in memory
// between events (each is written and dropped after its event), so every rule
// reads its profiles from the store, as after a restart or an eviction.
func TestIdentityScenariosThroughStores(t *testing.T) {
	files, err := filepath.Glob("../testdata/identity/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenario files: %v", err)
	}
	backends := []struct {
		name string
		open func(t *testing.T) scnStore
	}{
		{"sqlite", scnOpenSQLite},
		{"postgres", scnOpenPostgres},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			if b.name == "postgres" && os.Getenv("TRUSTLOOP_TEST_DATABASE_URL") == "" {
				t.Skip("SKIPPING PostgreSQL identity scenarios: TRUSTLOOP_TEST_DATABASE_URL is not set (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable)")
			}
			for _, mode := range []string{"per-event", "grouped", "cold"} {
				t.Run(mode, func(t *testing.T) {
					for _, file := range files {
						t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
							scnRunScript(t, file, b.open, mode)
						})
					}
				})
			}
		})
	}
}

// scnStore is what a scenario needs of a backend.
type scnStore interface {
	trustloop.Store
	projection.Store
}

func scnOpenSQLite(t *testing.T) scnStore {
	t.Helper()
	db, err := sqlite.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatalf("open sqlite: %v", err)
	}
	return db
}

// scnOpenPostgres opens a store in a fresh schema of the test database.
func scnOpenPostgres(t *testing.T) scnStore {
	t.Helper()
	db, err := postgres.Open(context.Background(), pgtest.Schema(t, "PostgreSQL identity scenarios"))
	if err != nil {
		t.Fatalf("open postgres: %v", err)
	}
	return db
}

type scnCase = identitytest.Case

func scnParse(t *testing.T, file string) []scnCase {
	cases, _, err := identitytest.ParseScript(file)
	if err != nil {
		t.Fatal(err)
	}
	return cases
}

func scnCompareIDs(a, b trustloop.Identifier) int {
	return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(a.Value, b.Value))
}

// scnMsg is one event to commit: the message, the identifiers given to the
// projection (nil: Service.Identify's, as ingest does) and the name the script
// knows it by (merge records print it).
type scnMsg struct {
	m    trustloop.Message
	ids  []trustloop.Identifier
	name string
}

// scnRunner runs one script against one fresh store.
type scnRunner struct {
	t       *testing.T
	file    string
	grouped bool
	cold    bool // no profile stays in memory between events
	open    func(t *testing.T) scnStore
	ctx     context.Context

	config identity.Config
	rules  *identity.Rules

	// Made at the first command that is not config.
	db  scnStore
	kr  *keyring.Keyring
	svc *projection.Service
	ws  int64
	src int64
	at  time.Time

	events  map[string]scnMsg               // by script event id, for replay
	pending []scnMsg                        // grouped mode: not committed yet
	names   map[string]string               // message hash -> script name
	blinds  map[string]trustloop.Identifier // blind index -> identifier
	known   map[int64]bool                  // every profile id seen
	msgN    int
}

func scnRunScript(t *testing.T, file string, open func(t *testing.T) scnStore, mode string) {
	cases := scnParse(t, file)
	r := &scnRunner{t: t, file: file, grouped: mode == "grouped", cold: mode == "cold", open: open, ctx: context.Background(),
		config: identity.DefaultConfig(), events: map[string]scnMsg{}, names: map[string]string{},
		blinds: map[string]trustloop.Identifier{}, known: map[int64]bool{}}
	if out := r.compile(); out != "" {
		t.Fatalf("default config: %s", out)
	}
	for _, c := range cases {
		args := scnTokenize(t, c.Cmd)
		got, compared := r.run(c, args)
		if !compared {
			continue
		}
		got = strings.TrimRight(got, "\n")
		if got == "" {
			got = "ok"
		}
		want := c.Expect
		switch args[0] {
		case "event", "replay", "message", "batch":
			want = scnWithoutSkips(want)
		case "split":
			want, got = scnErrorCode(want), scnErrorCode(got)
		}
		if got != want {
			t.Errorf("%s:%d: %s\n--- want\n%s\n--- got\n%s", file, c.Line, c.Cmd, want, got)
		}
		if r.svc != nil && !(r.grouped && len(r.pending) > 0) {
			if err := r.check(); err != nil {
				t.Errorf("%s:%d: %s: store invariant broken: %v", file, c.Line, c.Cmd, err)
			}
		}
	}
}

// scnWithoutSkips drops the "skip" lines of an event's expected output.
func scnWithoutSkips(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(l, "skip ") {
			keep = append(keep, l)
		}
	}
	out := strings.Join(keep, "\n")
	if out == "" {
		out = "ok"
	}
	return out
}

// scnErrorCode reduces "error: <code>: <message>" to its code.
func scnErrorCode(s string) string {
	if rest, ok := strings.CutPrefix(s, "error: "); ok {
		code, _, _ := strings.Cut(rest, ":")
		return "error: " + code
	}
	return s
}

func (r *scnRunner) compile() string {
	rules, err := identity.Compile(r.config)
	if err != nil {
		return "error: " + trustloop.ErrorCode(err) + ": " + trustloop.ErrorMessage(err)
	}
	r.rules = rules
	return ""
}

func (r *scnRunner) configure(args []string) string {
	t := r.t
	num := func(a string) int {
		n, err := strconv.Atoi(a)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	prev := r.config
	c := &r.config
	c.Blocked = slices.Clone(c.Blocked)
	c.CustomTypes = slices.Clone(c.CustomTypes)
	switch args[0] {
	case "limit":
		m := make(map[string]int, len(c.Limits)+1)
		for k, v := range c.Limits {
			m[k] = v
		}
		m[args[1]] = num(args[2])
		c.Limits = m
	case "default-limit":
		c.DefaultLimit = num(args[1])
	case "block":
		c.Blocked = append(c.Blocked, args[1])
	case "no-blocks":
		c.Blocked = nil
	case "priority":
		c.Priority = args[1:]
	case "custom":
		c.CustomTypes = append(c.CustomTypes, identity.CustomType{Name: args[1], Traits: args[2:]})
	case "group-traits":
		c.GroupTraits = true
	default:
		t.Fatalf("unknown config %q", args[0])
	}
	if out := r.compile(); out != "" {
		r.config = prev
		return out
	}
	return ""
}

// start opens the store and makes the service under the configured rules.
func (r *scnRunner) start() {
	if r.svc != nil {
		return
	}
	t := r.t
	r.db = r.open(t)
	t.Cleanup(func() {
		if err := r.db.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	r.kr = keyring.New(testMaster, 1000)
	r.kr.Load = r.db.FindWorkspace
	wh := sha256.Sum256([]byte("tl_write_scn"))
	ah := sha256.Sum256([]byte("tl_admin_scn"))
	b := &trustloop.Bootstrap{
		Workspace: trustloop.Workspace{Name: "default", IndexKey: r.kr.NewIndexKey()},
		Source:    trustloop.Source{Name: "web", WriteKeyHash: wh[:]},
		AdminKey: trustloop.APIKey{Name: "admin", SecretHash: ah[:], Roles: []string{trustloop.RoleAdmin},
			Purposes: []string{"essential", "analytics"}},
	}
	created, err := r.db.Bootstrap(r.ctx, b)
	if err != nil || !created {
		t.Fatalf("bootstrap: created=%v err=%v", created, err)
	}
	r.ws, r.src = b.Workspace.ID, b.Source.ID
	r.svc = projection.New(r.db, r.kr, r.rules, profile.Config{})
	if r.cold {
		r.svc.MaxCached = 0 // a flush drops every profile it wrote
	}
	r.at = time.Now().UTC().Truncate(time.Millisecond)
}

// run runs one command; compared is false when its output is not checked (an
// event in grouped mode).
func (r *scnRunner) run(c scnCase, args []string) (out string, compared bool) {
	t := r.t
	if args[0] == "config" {
		if r.svc != nil {
			t.Fatalf("%s:%d: config after the first event", r.file, c.Line)
		}
		return r.configure(args[1:]), true
	}
	r.start()
	switch args[0] {
	case "event":
		ids := make([]trustloop.Identifier, 0, len(args)-2)
		for _, a := range args[2:] {
			ids = append(ids, scnParseID(t, a))
		}
		m := r.eventMessage(c, args[1], ids)
		r.events[args[1]] = m
		return r.apply([]scnMsg{m}, nil)
	case "replay":
		m, ok := r.events[args[1]]
		if !ok {
			t.Fatalf("%s:%d: no event %s", r.file, c.Line, args[1])
		}
		r.msgN++
		m.m.MessageID = fmt.Sprintf("%s~replay%d", m.m.MessageID, r.msgN)
		return r.apply([]scnMsg{m}, nil)
	case "message":
		return r.decode(c, args[1], `{"batch":[`+strings.Join(c.Input, "\n")+`]}`)
	case "batch":
		return r.decode(c, args[1], strings.Join(c.Input, "\n"))
	}
	// Every other command reads the store: commit what is pending first.
	r.flushPending()
	switch args[0] {
	case "split":
		n, err := strconv.ParseInt(args[1], 10, 64)
		if err != nil {
			t.Fatalf("%s:%d: %v", r.file, c.Line, err)
		}
		return r.split(n), true
	case "partition":
		return r.partition(), true
	case "merges":
		return r.mergesOut(), true
	case "profile-of":
		return r.profileOf(scnParseID(t, args[1])), true
	}
	t.Fatalf("%s:%d: unknown command %q", r.file, c.Line, args[0])
	return "", false
}

// eventMessage makes the message of an event line (see the file comment).
func (r *scnRunner) eventMessage(c scnCase, name string, ids []trustloop.Identifier) scnMsg {
	r.msgN++
	msgID := fmt.Sprintf("%s-%d", name, r.msgN)
	traitKey := map[string]string{trustloop.IDEmail: "email", trustloop.IDPhone: "phone"}
	for _, ct := range r.config.CustomTypes {
		traitKey[ct.Name] = ct.Name
		if len(ct.Traits) > 0 {
			traitKey[ct.Name] = ct.Traits[0]
		}
	}
	seen := map[string]bool{}
	expressible := true
	obj := map[string]any{"type": "identify", "messageId": msgID}
	ctxTraits := map[string]any{}
	for _, id := range ids {
		if seen[id.Type] {
			expressible = false
		}
		seen[id.Type] = true
		switch {
		case id.Type == trustloop.IDUserID:
			obj["userId"] = id.Value
		case id.Type == trustloop.IDAnonymousID:
			obj["anonymousId"] = id.Value
		case id.Type == trustloop.IDDeviceID:
			obj["context"] = map[string]any{"device": map[string]any{"id": id.Value}}
		case id.Type == identity.PreviousID:
			obj["type"], obj["previousId"] = "alias", id.Value
		case traitKey[id.Type] != "":
			ctxTraits[traitKey[id.Type]] = id.Value
		default:
			expressible = false
		}
	}
	if len(ctxTraits) > 0 {
		cx, _ := obj["context"].(map[string]any)
		if cx == nil {
			cx = map[string]any{}
			obj["context"] = cx
		}
		cx["traits"] = ctxTraits
	}
	if expressible {
		if m, err := r.decodeOne(obj); err == nil {
			return scnMsg{m: m, name: name}
		}
		// The collector would refuse this message (an alias without userId, a
		// blank id…): give the identifiers verbatim instead.
	}
	first := func(typ string) string {
		for _, id := range ids {
			if id.Type == typ && strings.TrimSpace(id.Value) != "" {
				return id.Value
			}
		}
		return ""
	}
	obj = map[string]any{"type": "identify", "messageId": msgID}
	if u := first(trustloop.IDUserID); u != "" {
		obj["userId"] = u
	}
	if a := first(trustloop.IDAnonymousID); a != "" {
		obj["anonymousId"] = a
	}
	m, err := r.decodeOne(obj)
	if err != nil {
		r.t.Skipf("%s:%d: event %s cannot be ingested (%v): a message needs a userId or an anonymousId", r.file, c.Line, name, err)
	}
	return scnMsg{m: m, ids: slices.Clone(ids), name: name}
}

func (r *scnRunner) decodeOne(obj map[string]any) (trustloop.Message, error) {
	raw, err := json.Marshal(map[string]any{"batch": []any{obj}})
	if err != nil {
		r.t.Fatal(err)
	}
	req, err := collect.Decode(raw, collect.Batch, collect.Options{ReceivedAt: r.at,
		NewID: func() string { r.t.Fatal("message without messageId"); return "" }})
	if err != nil {
		return trustloop.Message{}, err
	}
	return req.Messages[0], nil
}

// decode applies the messages of a request body, as the collector decodes it.
func (r *scnRunner) decode(c scnCase, name, body string) (string, bool) {
	n := 0
	req, err := collect.Decode([]byte(body), collect.Batch, collect.Options{ReceivedAt: r.at,
		NewID: func() string { n++; return fmt.Sprintf("%s-%d", name, n) }})
	if err != nil {
		r.t.Skipf("%s:%d: %s does not decode (%v); the Graph test prints the error, the collector refuses the request", r.file, c.Line, name, err)
	}
	msgs := make([]scnMsg, len(req.Messages))
	heads := make([]string, len(req.Messages))
	for i := range req.Messages {
		m := req.Messages[i]
		msgs[i] = scnMsg{m: m, name: m.MessageID}
		r.events[fmt.Sprintf("%s/%d", name, i)] = msgs[i]
		ids, skipped := r.rules.FromMessage(&msgs[i].m)
		var b strings.Builder
		if len(req.Messages) > 1 {
			fmt.Fprintf(&b, "message %d\n", i)
		}
		fmt.Fprintf(&b, "identifiers %s\n", scnIDList(ids))
		if len(skipped) > 0 {
			parts := make([]string, len(skipped))
			for j, s := range skipped {
				parts[j] = s.String()
			}
			fmt.Fprintf(&b, "not matched %s\n", strings.Join(parts, " "))
		}
		heads[i] = b.String()
	}
	return r.apply(msgs, heads)
}

// apply commits msgs (one group each) and describes what each did; in grouped
// mode it only queues them.
func (r *scnRunner) apply(msgs []scnMsg, heads []string) (string, bool) {
	if r.grouped {
		r.pending = append(r.pending, msgs...)
		return "", false
	}
	var b strings.Builder
	for i, m := range msgs {
		if heads != nil {
			b.WriteString(heads[i])
		}
		b.WriteString(r.applyOne(m))
		if r.cold {
			if _, err := r.svc.Flush(r.ctx, true); err != nil {
				r.t.Fatalf("%s: flush: %v", r.file, err)
			}
			if n := r.svc.CachedProfiles(); n != 0 {
				r.t.Fatalf("%s: cold mode: %d profiles still in memory after a flush", r.file, n)
			}
		}
	}
	return b.String(), true
}

func (r *scnRunner) flushPending() {
	if len(r.pending) == 0 {
		return
	}
	msgs := r.pending
	r.pending = nil
	if err := r.commit(msgs); err != nil {
		r.t.Fatalf("%s: group commit of %d events: %v", r.file, len(msgs), err)
	}
	if err := r.discover(); err != nil {
		r.t.Fatal(err)
	}
}

// commit writes msgs as one group commit, as ingest's commitOnce does.
func (r *scnRunner) commit(msgs []scnMsg) error {
	ctx, ws, src := r.ctx, r.ws, r.src
	blinds := make([][]byte, len(msgs))
	for i := range msgs {
		typ, id := msgs[i].m.Subject()
		b, err := r.kr.Blind(ws, typ, id)
		if err != nil {
			return err
		}
		blinds[i] = b
	}
	res, err := r.kr.Resolve(ctx, r.db, ws, blinds)
	if err != nil {
		return err
	}
	batch := &trustloop.CommitBatch{NewKeys: res.NewKeys, Events: make([]trustloop.StoredEvent, len(msgs))}
	items := make([]projection.Item, len(msgs))
	for i := range msgs {
		m := &msgs[i].m
		hash, err := r.kr.MessageHash(ws, m.MessageID)
		if err != nil {
			return err
		}
		r.names[string(hash)] = msgs[i].name
		key := res.Keys[string(blinds[i])]
		plain := collect.AppendEnvelope(make([]byte, 0, len(m.Raw)+len(m.BatchContext)+256), m)
		batch.Events[i] = trustloop.StoredEvent{WorkspaceID: ws, SourceID: src, MessageHash: hash, KeyID: key.ID,
			Type: m.Type, ReceivedAt: m.ReceivedAt, Timestamp: m.Timestamp,
			Payload: keyring.SealEvent(nil, key, plain, keyring.EventAAD(nil, ws, src, hash))}
		ids := msgs[i].ids
		if ids == nil {
			ids = r.svc.Identify(ws, m)
		}
		if err := r.learn(ids); err != nil {
			return err
		}
		items[i] = projection.Item{WorkspaceID: ws, SourceID: src, Message: m, MessageHash: hash,
			KeyID: key.ID, Key: key, IDs: ids}
	}
	g := r.svc.Group(items)
	batch.Project = g.Project
	committed := false
	defer func() { g.Done(committed) }()
	stored, err := r.db.AppendEvents(ctx, batch)
	if err != nil {
		return err
	}
	committed = true
	r.kr.Remember(res)
	if stored != len(msgs) {
		return fmt.Errorf("stored %d of %d events", stored, len(msgs))
	}
	return nil
}

// learn records the blind index of every form an event's identifiers may be
// stored in, to name the identifiers of merge records.
func (r *scnRunner) learn(ids []trustloop.Identifier) error {
	for _, id := range ids {
		v, err := r.rules.Normalize(id.Type, id.Value)
		if err != nil {
			continue
		}
		types := []string{id.Type}
		if id.Type == identity.PreviousID {
			types = []string{trustloop.IDUserID, trustloop.IDAnonymousID}
		}
		for _, typ := range types {
			b, err := r.kr.Blind(r.ws, typ, v)
			if err != nil {
				return err
			}
			r.blinds[string(b)] = trustloop.Identifier{Type: typ, Value: v}
		}
	}
	return nil
}

// owner returns the stored profile of an identifier, 0 if none.
func (r *scnRunner) owner(id trustloop.Identifier) int64 {
	b, err := r.kr.Blind(r.ws, id.Type, id.Value)
	if err != nil {
		r.t.Fatal(err)
	}
	found, err := r.db.FindIdentities(r.ctx, r.ws, [][]byte{b})
	if err != nil {
		r.t.Fatal(err)
	}
	return found[string(b)].ProfileID
}

// candidates are an event's usable identifiers as Resolve ranks them: normalized,
// a previous id read as a user id when the store knows it as one, once each, in
// priority order.
func (r *scnRunner) candidates(ids []trustloop.Identifier) []trustloop.Identifier {
	rank := map[string]int{}
	for i, typ := range r.rules.Types() {
		rank[typ] = i
	}
	var out []trustloop.Identifier
	for _, id := range ids {
		v, err := r.rules.Normalize(id.Type, id.Value)
		if err != nil {
			continue
		}
		typ := id.Type
		if typ == identity.PreviousID {
			typ = trustloop.IDAnonymousID
			if r.owner(trustloop.Identifier{Type: trustloop.IDUserID, Value: v}) != 0 {
				typ = trustloop.IDUserID
			}
		}
		c := trustloop.Identifier{Type: typ, Value: v}
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	slices.SortStableFunc(out, func(a, b trustloop.Identifier) int { return cmp.Compare(rank[a.Type], rank[b.Type]) })
	return out
}

// applyOne commits one event as its own group and describes its outcome as the
// Graph test does (without the skips): the profile it went to, the identifiers it
// attached, the merges it made.
func (r *scnRunner) applyOne(m scnMsg) string {
	ids := m.ids
	if ids == nil {
		ids = r.svc.Identify(r.ws, &m.m)
	}
	cands := r.candidates(ids)
	before := make([]int64, len(cands))
	for i, c := range cands {
		before[i] = r.owner(c)
	}
	live := r.live()
	oldMerges := r.merges()
	if err := r.commit([]scnMsg{m}); err != nil {
		r.t.Fatalf("%s: commit %s: %v", r.file, m.name, err)
	}
	if err := r.discover(); err != nil {
		r.t.Fatal(err)
	}
	var created []int64
	for _, p := range r.live() {
		if !slices.Contains(live, p) {
			created = append(created, p)
		}
	}
	var b strings.Builder
	var target int64
	if len(cands) > 0 {
		target = r.owner(cands[0])
	}
	switch {
	case len(created) > 1:
		fmt.Fprintf(&b, "%d new profiles\n", len(created))
	case len(created) == 1:
		fmt.Fprintf(&b, "new profile %d\n", r.number(created[0]))
		if target != created[0] {
			fmt.Fprintf(&b, "(its first identifier went to %d)\n", r.number(target))
		}
	case target == 0:
		b.WriteString("no profile\n")
	default:
		fmt.Fprintf(&b, "profile %d\n", r.number(target))
	}
	var attach []trustloop.Identifier
	for i, c := range cands {
		if before[i] == 0 {
			if p := r.owner(c); p != 0 {
				attach = append(attach, c)
				if p != target {
					fmt.Fprintf(&b, "(%s attached to %d)\n", c.Type, r.number(p))
				}
			}
		}
	}
	if len(attach) > 0 {
		fmt.Fprintf(&b, "attach %s\n", scnIDList(attach))
	}
	all := r.merges()
	for k, mr := range all {
		if slices.ContainsFunc(oldMerges, func(o trustloop.MergeRecord) bool { return o.ID == mr.ID }) {
			continue
		}
		fmt.Fprintf(&b, "merge #%d: %d into %d, linking %s\n", k+1, r.number(mr.From), r.number(mr.Into), scnIDList(r.named(mr.Linking, false)))
	}
	return b.String()
}

// live returns the live profiles of the store, by id.
func (r *scnRunner) live() []int64 {
	var out []int64
	for after := int64(0); ; {
		page, err := r.db.ListProfiles(r.ctx, r.ws, 0, after, 500)
		if err != nil {
			r.t.Fatal(err)
		}
		if len(page) == 0 {
			return out
		}
		for _, p := range page {
			out = append(out, p.ID)
		}
		after = page[len(page)-1].ID
	}
}

// merges returns every merge record of the store, oldest first: those into or
// out of every profile ever seen.
func (r *scnRunner) merges() []trustloop.MergeRecord {
	byID := map[int64]trustloop.MergeRecord{}
	for p := range r.known {
		ms, err := r.db.ProfileMerges(r.ctx, r.ws, p)
		if err != nil {
			r.t.Fatal(err)
		}
		for _, m := range ms {
			byID[m.ID] = m
		}
	}
	out := make([]trustloop.MergeRecord, 0, len(byID))
	for _, m := range byID {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b trustloop.MergeRecord) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// discover adds the profiles now live, and those the merge records name (made
// and merged away within one group), to the profiles ever seen.
func (r *scnRunner) discover() error {
	for _, p := range r.live() {
		r.known[p] = true
	}
	for {
		n := len(r.known)
		for _, m := range r.merges() {
			r.known[m.Into], r.known[m.From] = true, true
		}
		if len(r.known) == n {
			return nil
		}
	}
}

// number is the Graph's number of a store profile: its rank by id among every
// profile ever made (ids grow with creation).
func (r *scnRunner) number(p int64) int64 {
	if p == 0 {
		return 0
	}
	if !r.known[p] {
		if err := r.discover(); err != nil {
			r.t.Fatal(err)
		}
	}
	n := int64(1)
	for q := range r.known {
		if q < p {
			n++
		}
	}
	if !r.known[p] {
		return -p // unknown: shown as is, negative, so that it cannot match
	}
	return n
}

// named returns the identifiers of blind indexes, sorted if asked.
func (r *scnRunner) named(blinds [][]byte, sorted bool) []trustloop.Identifier {
	out := make([]trustloop.Identifier, 0, len(blinds))
	for _, b := range blinds {
		id, ok := r.blinds[string(b)]
		if !ok {
			id = trustloop.Identifier{Type: "unknown", Value: hex.EncodeToString(b)}
		}
		out = append(out, id)
	}
	if sorted {
		slices.SortFunc(out, scnCompareIDs)
	}
	return out
}

func (r *scnRunner) split(n int64) string {
	ms := r.merges()
	var into, mergeID int64
	if n >= 1 && n <= int64(len(ms)) {
		into, mergeID = ms[n-1].Into, ms[n-1].ID
	} else {
		// No such merge: a merge id no record has (store ids are far larger),
		// asked of any live profile.
		mergeID = n
		if live := r.live(); len(live) > 0 {
			into = live[0]
		}
	}
	_, _, err := r.svc.Split(r.ctx, r.ws, into, mergeID)
	if err != nil {
		return "error: " + trustloop.ErrorCode(err) + ": " + trustloop.ErrorMessage(err)
	}
	if err := r.discover(); err != nil {
		r.t.Fatal(err)
	}
	return ""
}

// scnProfile is a live profile read back through the service.
type scnProfile struct {
	id  int64
	ids []trustloop.Identifier
}

// profiles reads every live profile back through the service, its identities
// decrypted and sorted.
func (r *scnRunner) profiles() []scnProfile {
	var out []scnProfile
	for _, id := range r.live() {
		p, err := r.svc.Profile(r.ctx, r.ws, id)
		if err != nil {
			r.t.Fatalf("profile %d: %v", r.number(id), err)
		}
		if p.ProfileID != projection.FormatID(id) {
			r.t.Errorf("%s: live profile %d opens as %s (merged from %q)", r.file, r.number(id), p.ProfileID, p.MergedFrom)
		}
		ids := slices.Clone(p.Identities)
		slices.SortFunc(ids, scnCompareIDs)
		out = append(out, scnProfile{id: id, ids: ids})
	}
	return out
}

func (r *scnRunner) partition() string {
	if _, err := r.svc.Flush(r.ctx, true); err != nil {
		r.t.Fatalf("flush: %v", err)
	}
	ps := r.profiles()
	slices.SortFunc(ps, func(a, b scnProfile) int { return slices.CompareFunc(a.ids, b.ids, scnCompareIDs) })
	var b strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&b, "%d: %s\n", r.number(p.id), scnIDList(p.ids))
	}
	if b.Len() == 0 {
		return "(empty)"
	}
	return b.String()
}

func (r *scnRunner) mergesOut() string {
	var b strings.Builder
	for k, m := range r.merges() {
		split := ""
		if m.SplitAt != nil {
			split = " (split)"
		}
		name, ok := r.names[string(m.MessageHash)]
		if !ok {
			name = "unknown-event"
		}
		fmt.Fprintf(&b, "#%d: %d into %d by %s, moved %s%s\n", k+1, r.number(m.From), r.number(m.Into), name,
			scnIDList(r.named(m.Moved, true)), split)
	}
	if b.Len() == 0 {
		return "(none)"
	}
	return b.String()
}

func (r *scnRunner) profileOf(id trustloop.Identifier) string {
	if id.Type == identity.PreviousID {
		return "0"
	}
	v, err := r.rules.Normalize(id.Type, id.Value)
	if err != nil {
		return "0"
	}
	p, err := r.svc.Lookup(r.ctx, r.ws, trustloop.Identifier{Type: id.Type, Value: v})
	if trustloop.ErrorCode(err) == trustloop.ENOTFOUND {
		return "0"
	}
	if err != nil {
		r.t.Fatalf("lookup: %v", err)
	}
	pid, err := projection.ParseID(p.ProfileID)
	if err != nil {
		r.t.Fatal(err)
	}
	return strconv.FormatInt(r.number(pid), 10)
}

// check is the store's side of the Graph test's checkGraph: no live profile is
// empty or over a limit, and every identifier the events named that the store
// holds belongs to a live profile, which lists it.
func (r *scnRunner) check() error {
	ps := r.profiles()
	listed := map[trustloop.Identifier]int64{}
	for _, p := range ps {
		if len(p.ids) == 0 {
			return fmt.Errorf("live profile %d has no identifiers", r.number(p.id))
		}
		per := map[string]int{}
		for _, id := range p.ids {
			if q, dup := listed[id]; dup {
				return fmt.Errorf("an identifier of type %s is on profiles %d and %d", id.Type, r.number(q), r.number(p.id))
			}
			listed[id] = p.id
			per[id.Type]++
		}
		for typ, n := range per {
			if n > r.rules.Limit(typ) {
				return fmt.Errorf("profile %d has %d identifiers of type %s, over the limit %d", r.number(p.id), n, typ, r.rules.Limit(typ))
			}
		}
	}
	blinds := make([][]byte, 0, len(r.blinds))
	for b := range r.blinds {
		blinds = append(blinds, []byte(b))
	}
	found, err := r.db.FindIdentities(r.ctx, r.ws, blinds)
	if err != nil {
		return err
	}
	for b, ir := range found {
		id := r.blinds[b]
		if listed[id] != ir.ProfileID {
			return fmt.Errorf("an identifier of type %s is stored on profile %d but listed on %d", id.Type, r.number(ir.ProfileID), r.number(listed[id]))
		}
	}
	if len(found) != len(listed) {
		return fmt.Errorf("%d identifiers stored, %d on live profiles", len(found), len(listed))
	}
	return nil
}

func scnTokenize(t *testing.T, line string) []string {
	out, err := identitytest.Tokenize(line)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func scnParseID(t *testing.T, a string) trustloop.Identifier {
	id, err := identitytest.ParseID(a)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func scnIDList(ids []trustloop.Identifier) string { return identitytest.IDList(ids) }
