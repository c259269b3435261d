package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/demo"
)

// `serve --demo`: once the server listens, load the demo workspace through
// its own public API, once per workspace, and say where to look.
//
// Keys. The demo is a client: it needs a source's write key and an admin API
// key. On the first start bootstrap has just made both (demoKeys). On a later
// start the store holds only their hashes, so:
//   - the write key is TRUSTLOOP_BOOTSTRAP_WRITE_KEY or write_key= of
//     <data-dir>/credentials, if it is still a source's key; without one the
//     demo is skipped with a message (there is no API to add a source);
//   - the admin key is a new one ("demo loader") created through the store
//     for the load and revoked right after, both in the audit log. Its secret
//     lives only in this process's memory meanwhile.
//
// The marker is the workspace setting "demo" ({"loaded_at", counts}), written
// once the load finished: a later --demo start loads nothing. Events would be
// stored once anyway (fixed messageIds); the consent changes and privacy
// requests would not, so a load cut short is redone whole on the next start.

// demoSetting names the marker setting.
const demoSetting = "demo"

// demoKeys are the secrets bootstrap created on this start (empty otherwise).
type demoKeys struct{ writeKey, adminKey string }

// demoMarker is the marker's value. It holds no identifier: the settings are
// stored in the clear.
type demoMarker struct {
	Version        int       `json:"version"`
	LoadedAt       time.Time `json:"loaded_at"`
	Seed           uint64    `json:"seed"`
	Customers      int       `json:"customers"`
	EventsSent     int       `json:"events_sent"`
	ConsentChanges int       `json:"consent_changes"`
	Requests       int       `json:"privacy_requests"`
}

// loadDemo loads the demo if the workspace has none yet. A failure is logged
// and the server keeps serving: the demo is a convenience, never a reason to
// stop.
func (m *Main) loadDemo(ctx context.Context) {
	base, shown := demoURLs(m.HTTP.Addr())
	console := fmt.Sprintf("  Admin console:     %s/admin  (sign in with admin_api_key from %s)\n", shown,
		filepath.Join(m.DataDir, "credentials"))

	// The marker first: a loaded demo needs no key (and a later start, whose
	// credentials file was deleted as advised, must not be told otherwise).
	wss, err := m.Store.ListWorkspaces(ctx)
	if err != nil || len(wss) == 0 {
		m.Log.Error("demo not loaded: no workspace", "err", err)
		return
	}
	if raw, _, err := m.Store.FindSetting(ctx, wss[0].ID, demoSetting); err == nil {
		var mk demoMarker
		json.Unmarshal(raw, &mk)
		m.Log.Info("demo already loaded", "workspace", wss[0].ID, "loaded_at", mk.LoadedAt)
		fmt.Fprintf(m.stderr, "\nDemo workspace already loaded (%s); nothing sent again.\n%s\n", mk.LoadedAt.Format(time.RFC3339), console)
		return
	} else if trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
		m.Log.Error("demo not loaded: reading its marker", "err", err)
		return
	}
	writeKey, src, tried, err := m.demoWriteKey(ctx)
	if err != nil {
		m.Log.Error("demo not loaded", "err", err)
		return
	}
	if src == nil || src.WorkspaceID != wss[0].ID {
		if tried > 0 {
			// A key was given, and refused: say so, not "set one".
			fmt.Fprintf(m.stderr, "\nDemo not loaded: the write key given (TRUSTLOOP_BOOTSTRAP_WRITE_KEY or write_key= in the credentials file)\n"+
				"is not the key of a source of the first workspace. Set TRUSTLOOP_BOOTSTRAP_WRITE_KEY to that key,\n"+
				"or start with --demo on an empty --data-dir.\n\n")
			m.Log.Warn("demo not loaded: the write key given is no source's of the first workspace")
			return
		}
		fmt.Fprintf(m.stderr, "\nDemo not loaded: it needs the source's write key, which only the first start knows.\n"+
			"Set TRUSTLOOP_BOOTSTRAP_WRITE_KEY to it, or start with --demo on an empty --data-dir.\n\n")
		m.Log.Warn("demo not loaded: no write key")
		return
	}
	ws := src.WorkspaceID

	adminKey, done, err := m.demoAdminKey(ctx, ws)
	if err != nil {
		m.Log.Error("demo not loaded: admin key", "err", err)
		return
	}
	defer done()
	cfg := demo.Config{BaseURL: base, WriteKey: writeKey, AdminKey: adminKey, Now: time.Now, Log: m.Log,
		HTTP: &http.Client{Timeout: 60 * time.Second}}
	fmt.Fprintf(m.stderr, "\nLoading the demo workspace…\n")
	sum, err := demo.Load(ctx, cfg)
	if err != nil {
		m.Log.Error("demo not loaded", "err", err)
		fmt.Fprintf(m.stderr, "Demo not loaded: %s (see the log; the next start with --demo tries again).\n\n", describe(err))
		return
	}
	mk, _ := json.Marshal(demoMarker{Version: 1, LoadedAt: time.Now().UTC(), Seed: demo.Seed, Customers: sum.Customers,
		EventsSent: sum.EventsSent, ConsentChanges: sum.ConsentChanges, Requests: sum.PrivacyRequests})
	if _, err := m.Store.PutSetting(ctx, ws, demoSetting, mk, 0); err != nil && trustloop.ErrorCode(err) != trustloop.ECONFLICT {
		// ECONFLICT: another node finished a load first; nothing to keep.
		m.Log.Error("demo loaded but its marker was not stored: the next --demo start loads it again", "err", err)
	}

	portal := ""
	if u, exp, err := demo.PortalLink(ctx, cfg, sum.PortalIdentifier); err != nil {
		m.Log.Warn("demo: no preference-center link", "err", err)
	} else if u != "" {
		if !strings.HasPrefix(u, "http") {
			u = shown + u
		}
		until := ""
		if !exp.IsZero() {
			until = "; the link works until " + exp.Local().Format("15:04")
		}
		portal = fmt.Sprintf("  Preference center: %s\n                     (of %s, %s, a made-up customer%s)\n",
			u, sum.PortalName, sum.PortalIdentifier, until)
	}
	// Printed, not logged: the made-up customer's email is still an email, and
	// log lines get shipped.
	fmt.Fprintf(m.stderr, "Demo loaded: %d customers on %d devices (%d signed in, %d anonymous; %d never answer the consent banner,"+
		" %d send Global Privacy Control), %d events from %s to %s, %d consent changes, %d privacy requests.\n%s%s\n",
		sum.Customers, sum.Devices, sum.Identified, sum.Anonymous, sum.NoConsent, sum.GPC, sum.EventsSent,
		sum.From.Local().Format("2 Jan"), sum.To.Local().Format("2 Jan"), sum.ConsentChanges, sum.PrivacyRequests, console, portal)
	// Revoked before "demo ready" is logged, not only by the defer after it:
	// whoever waits for that line may rely on the key being gone.
	done()
	m.Log.Info("demo ready", "workspace", ws, "portal_link", portal != "")
}

// demoURLs returns the URL the demo sends to (loopback when the server
// listens on every interface) and the one to show people.
func demoURLs(addr string) (base, shown string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr, "http://" + addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return "http://" + net.JoinHostPort("127.0.0.1", port), "http://" + net.JoinHostPort("localhost", port)
	}
	return "http://" + addr, "http://" + addr
}

// demoWriteKey finds a write key of an existing source: the one bootstrap
// just made, else one given in the environment or still in the credentials
// file. A nil source means none is known; tried counts the keys given.
func (m *Main) demoWriteKey(ctx context.Context) (key string, src *trustloop.Source, tried int, err error) {
	candidates := []string{m.demoKeys.writeKey, os.Getenv("TRUSTLOOP_BOOTSTRAP_WRITE_KEY")}
	if b, err := os.ReadFile(filepath.Join(m.DataDir, "credentials")); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "write_key="); ok {
				candidates = append(candidates, v)
			}
		}
	}
	for _, k := range candidates {
		if k == "" {
			continue
		}
		tried++
		h := sha256.Sum256([]byte(k))
		src, err := m.Store.FindSourceByWriteKeyHash(ctx, h[:])
		if err == nil {
			return k, src, tried, nil
		} else if trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
			return "", nil, tried, err
		}
	}
	return "", nil, tried, nil
}

// demoAdminKey returns an admin key of the workspace for the load, and what
// to do when it is over: nothing for bootstrap's key; for a key made here,
// revoke it (a secret nobody was shown should not stay valid).
func (m *Main) demoAdminKey(ctx context.Context, ws int64) (string, func(), error) {
	if m.demoKeys.adminKey != "" {
		return m.demoKeys.adminKey, func() {}, nil
	}
	secret := "tl_demo_" + randomToken(40)
	h := sha256.Sum256([]byte(secret))
	k := &trustloop.APIKey{WorkspaceID: ws, Name: "demo loader", SecretHash: h[:], Roles: []string{trustloop.RoleAdmin},
		Purposes: []string{trustloop.PurposeEssential, trustloop.PurposeAnalytics, trustloop.PurposePersonalization,
			trustloop.PurposeMarketing, trustloop.PurposeSharing}}
	if err := m.Store.CreateAPIKey(ctx, k); err != nil {
		return "", nil, err
	}
	m.auditDemoKey(ctx, ws, trustloop.AuditKeyCreated, k.ID)
	revoke := func() {
		// Also when the load was cut short by a shutdown: the store is still
		// open here.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := m.Store.RevokeAPIKey(ctx, ws, k.ID, time.Now()); err != nil {
			m.Log.Error("demo: revoking its admin key failed; revoke it with DELETE /v1/api-keys/{id}", "key_id", k.ID, "err", err)
			return
		}
		// The HTTP server may accept it for up to 2 s more (its key cache).
		m.auditDemoKey(ctx, ws, trustloop.AuditKeyRevoked, k.ID)
	}
	// Called once the load is over and again by the caller's defer.
	var once sync.Once
	return secret, func() { once.Do(revoke) }, nil
}

// auditDemoKey records the demo key's creation or revocation, as the API
// records every key's: made by the serve process itself.
func (m *Main) auditDemoKey(ctx context.Context, ws int64, kind string, id int64) {
	e := trustloop.AuditEntry{WorkspaceID: ws, Time: time.Now(), Kind: kind,
		Actor:  trustloop.AuditActor{Kind: trustloop.ActorComponent, ID: "component:demo"},
		Action: "serve --demo", Detail: fmt.Sprintf("key:%d", id)}
	if err := m.Audit.Append(ctx, e); err != nil {
		m.Log.Error("recording the demo key in the audit log failed", "kind", kind, "err", err)
	}
}
