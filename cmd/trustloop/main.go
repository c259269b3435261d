package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/big"
	"net"
	"net/http"
	_ "net/http/pprof" // served only on --debug-addr
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/auditlog"
	"github.com/trustloop/trustloop/bench"
	"github.com/trustloop/trustloop/consent"
	tlhttp "github.com/trustloop/trustloop/http"
	"github.com/trustloop/trustloop/http/html"
	"github.com/trustloop/trustloop/identity"
	"github.com/trustloop/trustloop/ingest"
	"github.com/trustloop/trustloop/keyring"
	"github.com/trustloop/trustloop/metrics"
	"github.com/trustloop/trustloop/postgres"
	"github.com/trustloop/trustloop/privacy"
	"github.com/trustloop/trustloop/profile"
	"github.com/trustloop/trustloop/projection"
	"github.com/trustloop/trustloop/recommend"
	"github.com/trustloop/trustloop/sqlite"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	var ue *usageError
	var ec *exitCode
	switch {
	case err == nil:
	case errors.As(err, &ec):
		os.Exit(ec.code) // the command printed its verdict
	case errors.As(err, &ue):
		fmt.Fprintln(os.Stderr, "trustloop:", ue.msg)
		fmt.Fprintln(os.Stderr, "Run 'trustloop help' for usage.")
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "trustloop:", describe(err))
		os.Exit(1)
	}
}

// describe turns an error into what an operator should read: the message and
// hint of an application error, the error itself otherwise.
func describe(err error) string {
	var e *trustloop.Error
	if errors.As(err, &e) {
		if e.Hint != "" {
			return e.Message + " " + e.Hint
		}
		return e.Message
	}
	return err.Error()
}

type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

const usage = `trustloop — a consent-first customer data platform

Usage:
  trustloop serve    [flags]   run the server (collector, API, web)
  trustloop stats    [flags]   print what a store holds, as JSON
  trustloop bench    [flags]   drive a running server with realistic events
  trustloop eval     [flags]   measure recommendation quality on a ratings or events file
  trustloop audit    verify    check the audit log against its signed checkpoints
  trustloop receipt  verify    check a consent receipt offline with the workspace's public key
  trustloop privacy  <command> file and follow privacy requests (access, erasure, …) on a running server
  trustloop operators <command> add, list and disable the admin console's staff accounts in the store
  trustloop version            print the version
  trustloop help [command]     show help

Every flag NAME can also be set as TRUSTLOOP_NAME in the environment (dashes
become underscores); a flag on the command line wins over the environment.
Run 'trustloop help serve' (or stats, bench) for a command's flags.
`

// Run runs one command line.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return &usageError{"no command given"}
	}
	switch args[0] {
	case "serve":
		m := NewMain(stderr)
		if err := m.ParseFlags(args[1:]); err != nil {
			if err == errHelp {
				return nil
			}
			return err
		}
		return m.Serve(ctx)
	case "stats":
		return runStats(ctx, args[1:], stdout)
	case "audit":
		return auditExit(runAudit(ctx, args[1:], stdout, stderr))
	case "receipt":
		return runReceipt(ctx, args[1:], os.Stdin, stdout)
	case "privacy":
		return runPrivacy(ctx, args[1:], stdout, stderr)
	case "operators":
		return runOperators(ctx, args[1:], os.Stdin, stdout, stderr)
	case "bench":
		return runBench(ctx, args[1:], stdout)
	case "eval":
		return runEval(ctx, args[1:], stdout)
	case "version", "-version", "--version":
		if len(args) == 2 && slices.Contains([]string{"-h", "-help", "--help"}, args[1]) {
			fmt.Fprintln(stdout, "Usage: trustloop version\n  prints the version")
			return nil
		}
		if len(args) > 1 {
			return &usageError{"version takes no arguments"}
		}
		fmt.Fprintln(stdout, "trustloop", trustloop.Version)
		return nil
	case "help", "-h", "-help", "--help":
		if len(args) > 2 {
			return &usageError{"help takes one command name"}
		}
		if len(args) == 2 {
			switch args[1] {
			case "help", "-h", "-help", "--help":
				// Asking for help on help: the usage (not a loop).
			default:
				return Run(ctx, []string{args[1], "-h"}, stdout, stdout)
			}
		}
		fmt.Fprint(stdout, usage)
		return nil
	default:
		return &usageError{fmt.Sprintf("unknown command %q", args[0])}
	}
}

// parseFlags parses args and then fills every flag not given on the command line
// from TRUSTLOOP_<NAME>: flag > environment > default.
func parseFlags(fs *flag.FlagSet, args []string) error {
	// The flag package's own message quotes the value it refused, which can
	// be personal data (a trait, an identifier): it is printed without it.
	out := fs.Output()
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.SetOutput(out)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.Usage()
			return errHelp
		}
		msg := flagError(err)
		fmt.Fprintln(out, msg)
		fs.Usage()
		return &usageError{msg}
	}
	if fs.NArg() > 0 {
		return &usageError{fmt.Sprintf("this command takes no arguments, and %d came after its flags (a flag's value with a space needs quotes)", fs.NArg())}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		env := "TRUSTLOOP_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			if e := f.Value.Set(v); e != nil {
				err = &usageError{fmt.Sprintf("%s (from the environment): %v", env, e)}
			}
		}
	})
	return err
}

// flagValueQuoted matches the flag package's "invalid value "V" for " and
// "invalid boolean value "V" for ", whose V parseFlags leaves out.
var flagValueQuoted = regexp.MustCompile(`invalid (boolean )?value "(?:[^"\\]|\\.)*" for `)

// flagError is a flag parse error without the value it refused.
func flagError(err error) string {
	msg := err.Error()
	if strings.HasPrefix(msg, "bad flag syntax: ") {
		return "bad flag syntax: an argument starts with - but is not a flag (not quoted, in case it is personal data)"
	}
	return flagValueQuoted.ReplaceAllString(msg, "invalid ${1}value for ")
}

// errHelp ends a command after -h printed its flags.
var errHelp = errors.New("help shown")

// Main is the server process: its configuration and the services it wires.
type Main struct {
	Addr          string
	DataDir       string
	DatabaseURL   string
	MasterKeyFile string
	RateLimit     float64
	RateBurst     int
	Profiles      bool
	// ProfilesCached and ProfilesFlushAfter tune the projection (see its flags).
	ProfilesCached     int
	ProfilesFlushAfter time.Duration
	// DataUseFsync is "deferred" (records of data uses are written before the
	// answer, fsynced just after) or "each" (every answer waits for its
	// record's fsync).
	DataUseFsync string
	// Regime is the consent regime of the workspace made on first start.
	Regime string
	// Recommend turns the recommender on (with Profiles); RecConfig tunes it.
	Recommend     bool
	RecConfig     recommend.Config
	Recommender   *recommend.Service
	stopRecommend func()

	stopProfiles func()
	stopPrivacy  func()
	// RetentionEvery is the retention sweep's period (0: never).
	RetentionEvery time.Duration
	Privacy        *privacy.Service
	LogLevel       string
	ShutdownWait   time.Duration
	DebugAddr      string
	// Demo loads the demo workspace once the server listens (demo.go).
	Demo     bool
	demoKeys demoKeys

	stderr   io.Writer
	Log      *slog.Logger
	Store    trustloop.Store
	Keyring  *keyring.Keyring
	Pipeline *ingest.Pipeline
	Metrics  *metrics.Metrics
	HTTP     *tlhttp.Server
	Consent  *consent.Service
	Audit    *auditlog.Log
}

// NewMain returns a Main with defaults.
func NewMain(stderr io.Writer) *Main {
	return &Main{stderr: stderr}
}

// ParseFlags reads the serve flags and environment.
func (m *Main) ParseFlags(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(m.stderr)
	fs.StringVar(&m.Addr, "addr", ":8080", "address to listen on")
	fs.StringVar(&m.DataDir, "data-dir", "./trustloop-data", "data directory (embedded database, key file, credentials)")
	fs.StringVar(&m.DatabaseURL, "database-url", "", "postgres://… to use PostgreSQL; empty for the embedded SQLite store")
	fs.StringVar(&m.MasterKeyFile, "master-key-file", "", "master key file (default <data-dir>/master.key; TRUSTLOOP_MASTER_KEY, base64, wins)")
	fs.Float64Var(&m.RateLimit, "rate-limit", 0, "events per second each write key may send (0: unlimited)")
	fs.IntVar(&m.RateBurst, "rate-burst", 5000, "events a write key may send at once above its rate")
	fs.BoolVar(&m.Profiles, "profiles", true, "resolve identities and keep unified profiles at ingest, and serve the profile, consent-by-profile, recommendation and preference-center APIs; --profiles=false runs the collector alone (faster batch ingest; see docs/performance.md)")
	fs.IntVar(&m.ProfilesCached, "profiles-cached", 200_000, "with --profiles: profiles kept in memory (~1.5 KB each; the active ones should fit)")
	fs.StringVar(&m.DataUseFsync, "data-use-fsync", "deferred", "when the audit record of a data use (a read, a recommendation) is fsynced: deferred (written before the answer leaves, so a crash of the process loses none; on disk within 5 ms; on PostgreSQL within three wal_writer_delay) or each (every answer waits for its record's fsync)")
	fs.DurationVar(&m.ProfilesFlushAfter, "profiles-flush-after", 10*time.Second, "with --profiles: how long a changed profile may stay only in memory before it is written (the log replays it after a crash; longer writes less under load)")
	fs.StringVar(&m.Regime, "regime", consent.RegimeOptIn, "consent regime of the workspace created on first start: opt_in (GDPR-style: nothing but essential without consent) or opt_out (CCPA-style); later changes go through PUT /v1/purposes")
	fs.DurationVar(&m.RetentionEvery, "retention-every", 24*time.Hour, "how often the retention sweep deletes events past their purposes' retention and marks expired consent (0: never)")
	fs.BoolVar(&m.Recommend, "recommend", true, "with --profiles: learn recommendations from consented events and serve /v1/profiles/{id}/recommendations and /v1/items/{id}/similar")
	def := recommend.Defaults()
	weights := fs.String("rec-weights", recommend.FormatWeights(def.Weights), "interaction weights of the recommender, \"Event Name=weight,…\"")
	fs.DurationVar(&m.RecConfig.HalfLife, "rec-half-life", def.HalfLife, "time decay of the recommender's affinity: an interaction counts half as much this much later (0: no decay)")
	similarity := fs.String("rec-similarity", string(def.Similarity), "item similarity of the recommender: jaccard, lift or count")
	fs.IntVar(&m.RecConfig.MaxItems, "rec-max-items", def.MaxItems, "distinct items per customer counted in the recommender's co-occurrence (the first ones met; bounds the cost of learning and forgetting one customer)")
	exclude := fs.String("rec-exclude", string(def.Exclude), "which of a customer's own items recommendations leave out: purchased, seen or none")
	fs.IntVar(&m.RecConfig.MinSupport, "rec-min-support", def.MinSupport, "fewest customers behind an item pair served as similar items, or an item served as popular")
	fs.IntVar(&m.RecConfig.ItemSupport, "rec-item-support", def.ItemSupport, "fewest customers who must count an item before the recommender keeps its co-occurrences (1: all; more bounds its memory on long-tail catalogs)")
	fs.StringVar(&m.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&m.DebugAddr, "debug-addr", "", "address for Go's /debug/pprof profiles (empty: off; never expose it publicly)")
	fs.DurationVar(&m.ShutdownWait, "shutdown-timeout", 30*time.Second, "how long to wait for in-flight requests on SIGTERM")
	fs.BoolVar(&m.Demo, "demo", false, "load a demo workspace (20 customers from real OTTO shopping sessions, varied consent, privacy requests) once, through the API; turns on --profiles")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	m.Profiles = m.Profiles || m.Demo // the demo joins devices and changes consent through the profile API
	if m.MasterKeyFile == "" {
		m.MasterKeyFile = filepath.Join(m.DataDir, "master.key")
	}
	w, err := recommend.ParseWeights(*weights)
	if err != nil {
		return &usageError{"--rec-weights: " + describe(err)}
	}
	m.RecConfig.Weights, m.RecConfig.Similarity, m.RecConfig.Exclude = w, recommend.Similarity(*similarity), recommend.Exclude(*exclude)
	if _, err := recommend.NewModel(m.RecConfig); err != nil {
		return &usageError{"recommender flags: " + describe(err)}
	}
	if m.Addr == "" {
		return &usageError{"--addr is empty: give host:port, such as :8080 or 127.0.0.1:8080 (or unset TRUSTLOOP_ADDR)"}
	}
	if m.DataDir == "" {
		return &usageError{"--data-dir is empty: give a directory (or unset TRUSTLOOP_DATA_DIR for ./trustloop-data)"}
	}
	if m.RateLimit < 0 || math.IsNaN(m.RateLimit) || math.IsInf(m.RateLimit, 0) {
		return &usageError{fmt.Sprintf("--rate-limit %v: want 0 (unlimited) or a positive number of events per second", m.RateLimit)}
	}
	if m.RateBurst < 1 {
		return &usageError{fmt.Sprintf("--rate-burst %d: want at least 1 event", m.RateBurst)}
	}
	if m.ShutdownWait < 0 {
		return &usageError{fmt.Sprintf("--shutdown-timeout %s: want 0 (stop at once) or a positive duration", m.ShutdownWait)}
	}
	// The recommender's zero values mean "the default" inside its Config;
	// on the command line a 0 is a mistake, as eval says too.
	if m.RecConfig.MaxItems < 1 {
		return &usageError{fmt.Sprintf("--rec-max-items %d: want 1 to 10000 items", m.RecConfig.MaxItems)}
	}
	if m.RecConfig.MinSupport < 1 {
		return &usageError{fmt.Sprintf("--rec-min-support %d: want 1 to 1000 customers", m.RecConfig.MinSupport)}
	}
	if m.RecConfig.ItemSupport < 1 {
		return &usageError{fmt.Sprintf("--rec-item-support %d: want 1 to 1000 customers (1 keeps every pair)", m.RecConfig.ItemSupport)}
	}
	if m.ProfilesCached < 1000 {
		return &usageError{fmt.Sprintf("--profiles-cached %d: want at least 1000 profiles", m.ProfilesCached)}
	}
	if m.DataUseFsync != "deferred" && m.DataUseFsync != "each" {
		return &usageError{fmt.Sprintf("--data-use-fsync %q: want deferred or each", m.DataUseFsync)}
	}
	if m.ProfilesFlushAfter < 10*time.Millisecond || m.ProfilesFlushAfter > 10*time.Minute {
		return &usageError{fmt.Sprintf("--profiles-flush-after %s: want 10ms to 10m", m.ProfilesFlushAfter)}
	}
	if m.RetentionEvery < 0 || (m.RetentionEvery > 0 && m.RetentionEvery < time.Second) {
		return &usageError{fmt.Sprintf("--retention-every %s: want 0 (never) or at least 1s", m.RetentionEvery)}
	}
	if m.Regime != consent.RegimeOptIn && m.Regime != consent.RegimeOptOut {
		return &usageError{fmt.Sprintf("--regime %q: want opt_in or opt_out", m.Regime)}
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(m.LogLevel)); err != nil {
		return &usageError{fmt.Sprintf("--log-level %q: want debug, info, warn or error", m.LogLevel)}
	}
	m.Log = slog.New(slog.NewJSONHandler(m.stderr, &slog.HandlerOptions{Level: lvl}))
	return nil
}

// redactURL hides a database URL's password for the log.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparseable)"
	}
	return u.Redacted()
}

// Open opens storage, keys, the pipeline and the HTTP server.
func (m *Main) Open(ctx context.Context) error {
	m.Log.Info("starting trustloop", "version", trustloop.Version, "addr", m.Addr, "data_dir", m.DataDir,
		"database_url", redactURL(m.DatabaseURL), "master_key_file", m.MasterKeyFile,
		"master_key_from_env", os.Getenv("TRUSTLOOP_MASTER_KEY") != "", "rate_limit", m.RateLimit, "rate_burst", m.RateBurst, "profiles", m.Profiles)
	if m.DebugAddr != "" {
		// First, so the start itself (log replay, model rebuild) can be
		// profiled. pprof registers on http.DefaultServeMux, which nothing
		// else uses.
		go func() { m.Log.Warn("debug server stopped", "err", http.ListenAndServe(m.DebugAddr, nil)) }()
	}
	// Everything that can be refused is checked before anything is written:
	// a start that fails on its address, its database URL, its master key or
	// its bootstrap keys leaves no data directory, key or credentials behind.
	// The address is tried and let go: taken for good only once the server
	// can answer, so nothing connects to a node still replaying its log.
	ln, err := listen(m.Addr)
	if err != nil {
		return err
	}
	ln.Close()
	pg := strings.HasPrefix(m.DatabaseURL, "postgres://") || strings.HasPrefix(m.DatabaseURL, "postgresql://")
	if m.DatabaseURL != "" && !pg {
		return &usageError{"--database-url must start with postgres:// (or be empty for the embedded store)"}
	}
	master, err := keyring.ReadMasterKey(os.Getenv("TRUSTLOOP_MASTER_KEY"), m.MasterKeyFile)
	if err != nil {
		return err
	}
	// Assigned only on success: a typed nil in the interface would make Close
	// call a method on a nil store.
	if pg {
		db, err := postgres.Open(ctx, m.DatabaseURL)
		var te *trustloop.Error
		if errors.As(err, &te) {
			return err // Open said what is wrong (a URL it cannot parse)
		} else if err != nil {
			return trustloop.Errorf(trustloop.EUNAVAILABLE, "Could not open the PostgreSQL store (%v).", err).
				WithHint("Check --database-url (host, port, user, database) and that the server is up and reachable.")
		}
		m.Store = db
	} else {
		if _, err := os.Stat(filepath.Join(m.DataDir, sqlite.FileName)); errors.Is(err, os.ErrNotExist) {
			// A new store: the bootstrap keys will be used, so they are
			// checked before the directory is made.
			if err := checkBootstrapKeys(); err != nil {
				return err
			}
		}
		if err := os.MkdirAll(m.DataDir, 0o700); err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
		db, err := sqlite.Open(ctx, m.DataDir) // takes the directory's lock
		if err != nil {
			return err
		}
		m.Store = db
	}
	wss, err := m.Store.ListWorkspaces(ctx)
	if err != nil {
		return err
	}
	if len(wss) == 0 {
		// Again for PostgreSQL, and for a SQLite file made but never set up:
		// reading the environment costs nothing.
		if err := checkBootstrapKeys(); err != nil {
			return err
		}
		// The credentials go into the data directory (also beside PostgreSQL).
		if err := os.MkdirAll(m.DataDir, 0o700); err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
	}
	if master == nil {
		if len(wss) > 0 {
			// A key made now would match none of the workspaces' wrapped keys.
			return trustloop.Errorf(trustloop.EINVALID, "No master key: the store holds workspaces, and neither TRUSTLOOP_MASTER_KEY nor %s gives their key.", m.MasterKeyFile).
				WithHint("Give the key the store was made with (TRUSTLOOP_MASTER_KEY or --master-key-file); a new key is made only for a new store.")
		}
		// No key given and none stored yet: a first start makes one.
		var generated bool
		if master, generated, err = keyring.LoadMasterKey("", m.MasterKeyFile); err != nil {
			return err
		}
		if generated {
			keyring.WarnGenerated(m.Log, m.MasterKeyFile)
		}
	}
	m.Keyring = keyring.New(master, 200_000)
	m.Keyring.Load = m.Store.FindWorkspace
	// Up to 2 × 400,000 subjects' stored consent (~80 bytes each): a miss is a
	// store read on the collector's path, so the active subjects should fit.
	m.Consent = consent.New(m.Store, m.Keyring, m.Log, 400_000)
	m.Consent.KeysUsing = func(ctx context.Context, ws int64, purpose string) (bool, error) {
		keys, err := m.Store.ListAPIKeys(ctx, ws)
		if err != nil {
			return false, err
		}
		for _, k := range keys {
			if k.RevokedAt == nil && slices.Contains(k.Purposes, purpose) {
				return true, nil
			}
		}
		return false, nil
	}
	if _, shared := m.Store.(*postgres.DB); shared {
		// Other nodes change consent too: what this node cached is re-read
		// after a second (reads of personal data always decide afresh).
		m.Consent.StaleAfter, m.Consent.Shared = time.Second, true
	}
	if err := m.bootstrap(ctx); err != nil {
		return err
	}
	// Unwrap every workspace's index key now: a wrong master key must stop the
	// start, not surface later as events that can never be read.
	if wss, err = m.Store.ListWorkspaces(ctx); err != nil {
		return err
	}
	for _, ws := range wss {
		if err := m.Keyring.AddWorkspace(ws); err != nil {
			return err
		}
	}
	m.Metrics = metrics.New()
	rules, err := identity.Compile(identity.DefaultConfig())
	if err != nil {
		return err
	}
	// Without profiles the default blocked values are the placeholders.
	icfg := ingest.Config{Placeholders: func(_ int64, user, anon string) (bool, bool) {
		return rules.Placeholder(user), rules.Placeholder(anon)
	}}
	var profiles *projection.Service
	if ps, ok := m.Store.(projection.Store); ok && m.Profiles {
		profiles = projection.New(ps, m.Keyring, rules, profile.Config{})
		profiles.OnSkip = m.Metrics.Skip
		profiles.MaxCached, profiles.FlushAfter = m.ProfilesCached, m.ProfilesFlushAfter
		icfg.Projection, icfg.Placeholders = profiles, profiles.Placeholders
		// What the last run held only in memory is rebuilt from the log before
		// the collector takes events.
		ids := make([]int64, len(wss))
		for i, ws := range wss {
			ids[i] = ws.ID
		}
		start := time.Now()
		n, err := profiles.Recover(ctx, ids)
		if err != nil {
			return fmt.Errorf("profiles: replay the log: %w", err)
		}
		m.Log.Info("profiles caught up with the log", "events_replayed", n, "seconds", time.Since(start).Seconds())
		flushCtx, stop := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { profiles.Run(flushCtx, m.Log); close(done) }()
		m.stopProfiles = func() { stop(); <-done }
	} else if m.Profiles {
		m.Log.Warn("this storage backend does not keep profiles yet; the profile API is off")
	}
	if profiles != nil && m.Recommend {
		if err := m.openRecommender(ctx, profiles, wss); err != nil {
			return err
		}
		icfg.Recommender = m.Recommender
	}
	admit := func(ctx context.Context, src *trustloop.Source, msg *trustloop.Message, hash, user, anon []byte) ([]string, error) {
		a, err := m.Consent.Admit(ctx, src, msg, hash, user, anon)
		return a.Purposes, err
	}
	m.Pipeline = ingest.New(m.Store, m.Keyring, m.Metrics, m.Log, admit, icfg)
	m.Audit = auditlog.New(m.Store, m.Keyring, auditlog.Config{Logger: m.Log, LazyDataUses: m.DataUseFsync == "deferred"})
	// Consent changes go to the audit log once committed. A failure leaves the
	// change standing (it is the customer's) and is logged for the operator.
	m.Consent.OnChange = func(ctx context.Context, recs []trustloop.ConsentRecord) {
		if m.Recommender != nil {
			// The recommender takes the subjects out at once and reads back
			// what their consent now allows.
			bySubject := map[int64][][]byte{}
			for _, r := range recs {
				if r.Purpose == recommend.Personalization || r.Purpose == recommend.Analytics {
					bySubject[r.WorkspaceID] = append(bySubject[r.WorkspaceID], r.Subject)
				}
			}
			for ws, subjects := range bySubject {
				m.Recommender.ConsentChanged(ws, subjects)
			}
		}
		if err := m.Audit.Append(ctx, consent.AuditEntries(recs)...); err != nil {
			m.Log.Error("recording consent changes in the audit log failed", "records", len(recs), "err", err)
		}
	}
	// Suppression entries earlier erasures left are refused at the door.
	loadSuppressions := func(ctx context.Context, wss []*trustloop.Workspace) error {
		for _, ws := range wss {
			hashes, err := m.Store.Suppressions(ctx, ws.ID)
			if err != nil {
				return err
			}
			m.Pipeline.Suppress(ws.ID, hashes)
		}
		return nil
	}
	if err := loadSuppressions(ctx, wss); err != nil {
		return err
	}
	host, _ := os.Hostname()
	m.Privacy = &privacy.Service{Store: m.Store, Keys: m.Keyring, Consent: m.Consent, Profiles: profiles, Audit: m.Audit,
		Ingest: m.Pipeline, Log: m.Log, Worker: fmt.Sprintf("%s:%d", host, os.Getpid()), OnDone: m.Metrics.PrivacyDone,
		OnRetention: m.Metrics.RetentionDone, RetentionEvery: m.RetentionEvery}
	if m.RetentionEvery == 0 {
		m.Privacy.RetentionEvery = -1
	}
	if rec := m.Recommender; rec != nil {
		// Derived model: the erased subjects leave it before the erasure's
		// transaction (on the collector's writer, so nothing of theirs is
		// learnt meanwhile).
		m.Privacy.OnErase = append(m.Privacy.OnErase, func(_ context.Context, e privacy.Erased) error {
			rec.Forget(e.WorkspaceID, e.Blinds, e.Shared)
			return nil
		})
		// What the catalog says, and what the log holds, decide the model:
		// when either changes under it, it is rebuilt from the log.
		m.Consent.OnCatalog = func(_ context.Context, ws int64) { rec.Reload(ws) }
		m.Privacy.OnEventsDeleted = rec.Reload
		rec.Exclusive = func(ctx context.Context, fn func(ctx context.Context) error) error {
			return m.Pipeline.Exclusive(ctx, func(ctx context.Context) (ingest.Outcome, error) { return ingest.Outcome{}, fn(ctx) })
		}
		recCtx, stop := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { rec.Run(recCtx); close(done) }()
		m.stopRecommend = func() { stop(); <-done }
	}
	m.Privacy.Workspaces = func(ctx context.Context) ([]int64, error) {
		wss, err := m.Store.ListWorkspaces(ctx)
		ids := make([]int64, len(wss))
		for i, ws := range wss {
			ids[i] = ws.ID
		}
		return ids, err
	}
	workCtx, stopWork := context.WithCancel(context.Background())
	workDone := make(chan struct{})
	go func() { m.Privacy.Run(workCtx); close(workDone) }()
	if m.DatabaseURL != "" {
		// Several nodes may share a PostgreSQL store: an erasure with
		// suppression on another node reaches this one's door within
		// suppressionReload (this node's in-flight events of the subject are
		// not covered; see docs/privacy.md).
		go func() {
			t := time.NewTicker(suppressionReload)
			defer t.Stop()
			for {
				select {
				case <-workCtx.Done():
					return
				case <-t.C:
				}
				wss, err := m.Store.ListWorkspaces(workCtx)
				if err == nil {
					err = loadSuppressions(workCtx, wss)
				}
				if err != nil && workCtx.Err() == nil {
					m.Log.Error("reloading suppressions failed", "err", err)
				}
			}
		}()
	}
	m.stopPrivacy = func() { stopWork(); <-workDone }
	pages, err := html.New(html.English(), html.German())
	if err != nil {
		return err
	}
	m.HTTP = &tlhttp.Server{Store: m.Store, Ingester: m.Pipeline, Profiles: profiles, Consent: m.Consent, Audit: m.Audit,
		Privacy: m.Privacy, Recommender: m.Recommender, Metrics: m.Metrics, Log: m.Log,
		Pages: pages, WebKeys: m.Keyring, Operators: m.Store, Counts: m.Store,
		Config: tlhttp.Config{RateLimit: m.RateLimit, RateBurst: m.RateBurst},
		Ready:  m.Store.Ping, NewID: newMessageID}
	if ln, err = listen(m.Addr); err != nil {
		return err
	}
	m.HTTP.Serve(ln)
	m.Log.Info("listening", "addr", m.HTTP.Addr())
	return nil
}

// openRecommender builds the recommender's models from the log before the
// collector takes events.
func (m *Main) openRecommender(ctx context.Context, profiles *projection.Service, wss []*trustloop.Workspace) error {
	rec, err := recommend.NewService(m.RecConfig)
	if err != nil {
		return err
	}
	rec.Consent, rec.Log, rec.Blind, rec.Logger = m.Consent, recLog{profiles}, m.Keyring.Blind, m.Log
	rec.OnIgnore = m.Metrics.RecommendIgnore
	rec.Placeholder = func(ws int64, v string) bool { u, _ := profiles.Placeholders(ws, v, ""); return u }
	ids := make([]int64, len(wss))
	for i, ws := range wss {
		ids[i] = ws.ID
	}
	start := time.Now()
	n, err := rec.Rebuild(ctx, ids)
	if err != nil {
		return fmt.Errorf("recommender: rebuild from the log: %w", err)
	}
	m.Log.Info("recommender built from the log", "events_read", n, "seconds", time.Since(start).Seconds())
	m.Recommender = rec
	return nil
}

// recLog reads the log for the recommender through the projection.
type recLog struct{ p *projection.Service }

func (l recLog) Each(ctx context.Context, ws int64, fn func(recommend.LogEvent) error) error {
	return l.p.EachLogEvent(ctx, ws, 0, func(e projection.LogEvent) error {
		return fn(recommend.LogEvent{Message: e.Message, Subject: e.Subject})
	})
}

func (l recLog) Subject(ctx context.Context, ws int64, subject []byte, fn func(recommend.LogEvent) error) error {
	return l.p.EachSubjectEvent(ctx, ws, subject, func(e projection.LogEvent) error {
		return fn(recommend.LogEvent{Message: e.Message, Subject: e.Subject})
	})
}

// listen takes the server's address. A malformed address is a usage error;
// one another process holds says so.
func listen(addr string) (net.Listener, error) {
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
		return nil, &usageError{fmt.Sprintf("--addr %q is not host:port; give one such as :8080 or 127.0.0.1:8080", addr)}
	}
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		return ln, nil
	}
	var ae *net.AddrError
	var dns *net.DNSError
	switch {
	case errors.As(err, &ae), errors.As(err, &dns):
		return nil, &usageError{fmt.Sprintf("--addr %q: %v; give a host of this machine and a port from 0 to 65535, such as :8080 or 127.0.0.1:8080", addr, err)}
	case errors.Is(err, syscall.EADDRINUSE):
		return nil, trustloop.Errorf(trustloop.ECONFLICT, "Another process already listens on %s.", addr).
			WithHint("Stop it, or give another --addr.")
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return nil, trustloop.Errorf(trustloop.EINVALID, "%s is not an address of this machine.", addr).
			WithHint("Give one of its addresses, or :PORT for all of them.")
	case errors.Is(err, syscall.EACCES):
		return nil, trustloop.Errorf(trustloop.EFORBIDDEN, "Not allowed to listen on %s.", addr).
			WithHint("Ports below 1024 need privileges: give a port from 1024 up.")
	}
	return nil, fmt.Errorf("listen on %s: %w", addr, err)
}

// checkBootstrapKeys refuses chosen bootstrap keys that are easy to guess or to
// mix up, before anything is created (the generated ones are 32 and 49
// characters).
func checkBootstrapKeys() error {
	wk, ak := os.Getenv("TRUSTLOOP_BOOTSTRAP_WRITE_KEY"), os.Getenv("TRUSTLOOP_BOOTSTRAP_ADMIN_KEY")
	for _, k := range []struct{ name, v string }{{"TRUSTLOOP_BOOTSTRAP_WRITE_KEY", wk}, {"TRUSTLOOP_BOOTSTRAP_ADMIN_KEY", ak}} {
		if k.v == "" {
			continue
		}
		if len(k.v) < 16 || len(k.v) > 200 || strings.ContainsFunc(k.v, func(r rune) bool { return r <= ' ' || r > '~' }) {
			return &usageError{k.name + " must be 16 to 200 printable ASCII characters without spaces; generate one with `openssl rand -base64 24`, or unset it to have one generated"}
		}
	}
	if wk != "" && wk == ak {
		// The write key is public (it ships in web pages); the admin key is not.
		return &usageError{"TRUSTLOOP_BOOTSTRAP_WRITE_KEY and TRUSTLOOP_BOOTSTRAP_ADMIN_KEY must differ: the write key is public, the admin key reads everything"}
	}
	return nil
}

// bootstrap creates the default workspace, source and admin key on an empty store
// and hands their secrets over once.
func (m *Main) bootstrap(ctx context.Context) error {
	writeKey := os.Getenv("TRUSTLOOP_BOOTSTRAP_WRITE_KEY")
	if writeKey == "" {
		writeKey = randomToken(32)
	}
	adminKey := os.Getenv("TRUSTLOOP_BOOTSTRAP_ADMIN_KEY")
	if adminKey == "" {
		adminKey = "tl_admin_" + randomToken(40)
	}
	wh, ah := sha256.Sum256([]byte(writeKey)), sha256.Sum256([]byte(adminKey))
	b := &trustloop.Bootstrap{
		Workspace: trustloop.Workspace{Name: "default", IndexKey: m.Keyring.NewIndexKey()},
		Source:    trustloop.Source{Name: "default", WriteKeyHash: wh[:]},
		AdminKey: trustloop.APIKey{Name: "bootstrap admin", SecretHash: ah[:], Roles: []string{trustloop.RoleAdmin},
			Purposes: []string{"essential", "analytics", "personalization", "marketing", "sharing"}},
	}
	created, err := m.Store.Bootstrap(ctx, b)
	if err != nil {
		return err
	}
	if !created {
		return nil
	}
	if m.Demo {
		m.demoKeys = demoKeys{writeKey: writeKey, adminKey: adminKey}
	}
	if m.Regime == consent.RegimeOptOut {
		if err := m.Keyring.AddWorkspace(&b.Workspace); err != nil {
			return err
		}
		c := consent.DefaultCatalog()
		c.Regime = consent.RegimeOptOut
		if _, err := m.Consent.PutCatalog(ctx, b.Workspace.ID, c, 0); err != nil {
			return fmt.Errorf("bootstrap: purpose catalog: %w", err)
		}
	}
	creds := fmt.Sprintf("# Trustloop bootstrap credentials, shown once. Keep them safe, then delete this file.\n"+
		"workspace=default\nwrite_key=%s\nadmin_api_key=%s\n", writeKey, adminKey)
	path := filepath.Join(m.DataDir, "credentials")
	if err := os.WriteFile(path, []byte(creds), 0o600); err != nil {
		return fmt.Errorf("write credentials: %w", err)
	}
	// Printed to stderr, not logged: these are secrets, and log lines get shipped.
	fmt.Fprintf(m.stderr, "\nCreated workspace \"default\".\n  write key:     %s\n  admin API key: %s\n(also written to %s)\n\n",
		writeKey, adminKey, path)
	return nil
}

// suppressionReload is how often a node on a shared PostgreSQL store reads
// the suppression entries other nodes' erasures stored.
const suppressionReload = 10 * time.Second

const tokenAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

func randomToken(n int) string {
	b := make([]byte, n)
	max := big.NewInt(int64(len(tokenAlphabet)))
	for i := range b {
		v, _ := rand.Int(rand.Reader, max)
		b[i] = tokenAlphabet[v.Int64()]
	}
	return string(b)
}

// newMessageID makes a random UUID v4 for messages sent without a messageId.
func newMessageID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	const hx = "0123456789abcdef"
	out := make([]byte, 36)
	j := 0
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out[j] = '-'
			j++
		}
		out[j], out[j+1] = hx[c>>4], hx[c&0xf]
		j += 2
	}
	return string(out)
}

// Close shuts down in order: stop taking requests and wait for those in flight
// (their events get committed), then drain the writer, then close storage.
func (m *Main) Close() error {
	var errs []error
	if m.HTTP != nil {
		ctx, cancel := context.WithTimeout(context.Background(), m.ShutdownWait)
		errs = append(errs, m.HTTP.Shutdown(ctx))
		cancel()
	}
	if m.stopPrivacy != nil {
		// Before the pipeline: an erasure in progress runs on its writer.
		m.stopPrivacy()
	}
	if m.stopRecommend != nil {
		// Before the pipeline too: reading subjects back runs on its writer.
		m.stopRecommend()
	}
	if m.Pipeline != nil {
		errs = append(errs, m.Pipeline.Close())
	}
	if m.stopProfiles != nil {
		// After the pipeline: every committed event is in memory by then; the
		// final flush writes it all, so the next start replays nothing.
		m.stopProfiles()
	}
	if m.Audit != nil {
		// After the HTTP server (no reads left to record), before the store:
		// commits what is queued and writes a last checkpoint.
		errs = append(errs, m.Audit.Close())
	}
	if m.Store != nil {
		errs = append(errs, m.Store.Close())
	}
	return errors.Join(errs...)
}

// Serve runs the server until ctx ends (SIGINT/SIGTERM), then shuts down cleanly.
func (m *Main) Serve(ctx context.Context) error {
	if err := m.Open(ctx); err != nil {
		m.Close()
		return err
	}
	if m.Demo {
		m.loadDemo(ctx)
	}
	<-ctx.Done()
	m.Log.Info("shutting down")
	err := m.Close()
	if err != nil {
		m.Log.Error("shutdown", "err", err)
	} else {
		m.Log.Info("stopped")
	}
	return err
}

func runStats(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("stats", flag.ContinueOnError)
	dataDir := fs.String("data-dir", "./trustloop-data", "data directory of an embedded store")
	dbURL := fs.String("database-url", "", "postgres://… of a PostgreSQL store")
	if err := parseFlags(fs, args); err != nil {
		if err == errHelp {
			return nil
		}
		return err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if given["data-dir"] && *dbURL != "" {
		return &usageError{"stats: give one of --data-dir (an embedded store) or --database-url (PostgreSQL), not both"}
	}
	var (
		st  trustloop.Stats
		err error
	)
	if *dbURL != "" {
		var db *postgres.DB
		if db, err = postgres.Open(ctx, *dbURL); err != nil {
			return err
		}
		defer db.Close()
		st, err = db.Stats(ctx)
	} else {
		var db *sqlite.DB
		if db, err = sqlite.OpenReadOnly(ctx, *dataDir); err != nil {
			return err
		}
		defer db.Close()
		st, err = db.Stats(ctx)
	}
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	return enc.Encode(st)
}

func runBench(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var cfg bench.Config
	fs.StringVar(&cfg.URL, "url", "http://127.0.0.1:8080", "server base URL")
	fs.StringVar(&cfg.WriteKey, "write-key", "", "source write key (default: read from <data-dir>/credentials)")
	fs.StringVar(&cfg.APIKey, "api-key", "", "admin API key for shape recommend (default: admin_api_key= read from <data-dir>/credentials)")
	dataDir := fs.String("data-dir", "./trustloop-data", "where to find the credentials file when --write-key or --api-key is not given")
	fs.StringVar(&cfg.Shape, "shape", "batch", "track (one event per request to /v1/track), batch (N events per request to /v1/batch), "+
		"load-interactions (post a shopping history of --users shopper-<i> users over --items items to /v1/batch once) or "+
		"recommend (read /v1/profiles/{id}/recommendations of those users' profiles)")
	fs.IntVar(&cfg.BatchSize, "batch", 100, "events per request for shapes batch and load-interactions")
	fs.IntVar(&cfg.Concurrency, "concurrency", 16, "concurrent requests in flight (with --rate: at most)")
	fs.Float64Var(&cfg.Rate, "rate", 0, "requests per second to send open loop, each timed from when it was due (0: closed loop, each worker sends when its last request is answered)")
	fs.DurationVar(&cfg.Duration, "duration", 30*time.Second, "how long to send")
	fs.DurationVar(&cfg.Warmup, "warmup", 3*time.Second, "sending time before measuring starts")
	fs.IntVar(&cfg.Users, "users", 0, "distinct users (subjects) the events are spread over (0: 100000 for track and batch, 10000 for load-interactions and recommend)")
	fs.IntVar(&cfg.Items, "items", 5_000, "load-interactions: distinct products (Zipf-like popularity)")
	fs.IntVar(&cfg.Interactions, "interactions", 100_000, "load-interactions: Product Viewed, Product Added and Order Completed events in all")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "load-interactions: the history's seed (the same seed posts the same events)")
	fs.BoolVar(&cfg.JSON, "json", false, "print the result as JSON")
	if err := parseFlags(fs, args); err != nil {
		if err == errHelp {
			return nil
		}
		return err
	}
	if err := cfg.Check(); err != nil {
		return &usageError{err.Error()}
	}
	needAPIKey := cfg.Shape == bench.ShapeRecommend
	if cfg.WriteKey == "" || (needAPIKey && cfg.APIKey == "") {
		b, err := os.ReadFile(filepath.Join(*dataDir, "credentials"))
		if err != nil {
			if needAPIKey && cfg.APIKey == "" {
				return &usageError{"no --api-key given and no credentials file in --data-dir"}
			}
			if !needAPIKey {
				return &usageError{"no --write-key given and no credentials file in --data-dir"}
			}
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "write_key="); ok && cfg.WriteKey == "" {
				cfg.WriteKey = v
			}
			if v, ok := strings.CutPrefix(line, "admin_api_key="); ok && cfg.APIKey == "" {
				cfg.APIKey = v
			}
		}
	}
	res, err := bench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	return res.Print(stdout, cfg.JSON)
}
