package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trustloop/trustloop"
)

// syncBuffer collects what a Main writes to stderr (its JSON log and its
// messages to people) while its goroutines may write too.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// openMain opens a server on dataDir as `trustloop serve` does (store, keys,
// pipeline, HTTP on a free loopback port), without serving until a signal:
// the test calls what Serve would.
func openMain(t *testing.T, dataDir string, flags ...string) (*Main, *syncBuffer) {
	t.Helper()
	out := &syncBuffer{}
	m := NewMain(out)
	args := append([]string{"--data-dir", dataDir, "--addr", "127.0.0.1:0", "--retention-every", "0", "--log-level", "debug"}, flags...)
	if err := m.ParseFlags(args); err != nil {
		t.Fatal(err)
	}
	if err := m.Open(context.Background()); err != nil {
		m.Close()
		t.Fatalf("open: %v\n%s", err, out)
	}
	return m, out
}

// A later start with --demo (the workspace exists, the demo was never
// loaded) that knows no write key of the workspace's source skips the demo:
// it logs the warning, tells the person starting it what to do, and sends
// nothing (no events, no admin key made for the load, no marker, so a
// later start with the key still loads it). The write key is only known
// from the first start, the environment or the credentials file; each case
// below leaves none that is a source's key.
func TestDemoNoWriteKey(t *testing.T) {
	// Keys from the test's own environment would decide the case.
	t.Setenv("TRUSTLOOP_MASTER_KEY", "")
	t.Setenv("TRUSTLOOP_BOOTSTRAP_ADMIN_KEY", "")
	for _, tc := range []struct {
		name string
		// given: a key was given and refused (the advice says so).
		given bool
		// later prepares the later start: env, credentials file.
		later func(t *testing.T, dataDir string)
	}{
		{"credentials deleted", false, func(t *testing.T, dataDir string) {
			// As the first start advises, once the keys are kept elsewhere.
			if err := os.Remove(filepath.Join(dataDir, "credentials")); err != nil {
				t.Fatal(err)
			}
		}},
		{"credentials key of no source", true, func(t *testing.T, dataDir string) {
			// A write key that is not (or no longer) a source's.
			creds := "workspace=default\nwrite_key=wk_not_a_source_key_0123456789\n"
			if err := os.WriteFile(filepath.Join(dataDir, "credentials"), []byte(creds), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"environment key of no source", true, func(t *testing.T, dataDir string) {
			if err := os.Remove(filepath.Join(dataDir, "credentials")); err != nil {
				t.Fatal(err)
			}
			t.Setenv("TRUSTLOOP_BOOTSTRAP_WRITE_KEY", "wk_not_a_source_key_0123456789")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("TRUSTLOOP_BOOTSTRAP_WRITE_KEY", "")
			dataDir := t.TempDir()
			// The first start, without --demo: it makes the workspace and
			// writes the credentials file.
			first, _ := openMain(t, dataDir)
			if err := first.Close(); err != nil {
				t.Fatal(err)
			}
			tc.later(t, dataDir)

			m, out := openMain(t, dataDir, "--demo")
			defer m.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			start := time.Now()
			m.loadDemo(ctx)
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("skipping the demo took %s", d)
			}

			log := out.String()
			warning := `"level":"WARN","msg":"demo not loaded: no write key"`
			advice := "Demo not loaded: it needs the source's write key, which only the first start knows.\n" +
				"Set TRUSTLOOP_BOOTSTRAP_WRITE_KEY to it, or start with --demo on an empty --data-dir."
			if tc.given {
				warning = `"level":"WARN","msg":"demo not loaded: the write key given is no source's of the first workspace"`
				advice = "Demo not loaded: the write key given (TRUSTLOOP_BOOTSTRAP_WRITE_KEY or write_key= in the credentials file)\n" +
					"is not the key of a source of the first workspace. Set TRUSTLOOP_BOOTSTRAP_WRITE_KEY to that key,\n" +
					"or start with --demo on an empty --data-dir."
			}
			if !strings.Contains(log, warning) {
				t.Errorf("no warning logged:\n%s", log)
			}
			if !strings.Contains(log, advice) {
				t.Errorf("the person starting it is not told what to do:\n%s", log)
			}
			for _, other := range []string{"Loading the demo workspace", "demo ready", "demo already loaded", `"level":"ERROR"`} {
				if strings.Contains(log, other) {
					t.Errorf("the output says %q:\n%s", other, log)
				}
			}

			// Nothing was loaded or made for a load.
			wss, err := m.Store.ListWorkspaces(ctx)
			if err != nil || len(wss) != 1 {
				t.Fatalf("workspaces: %v %v", wss, err)
			}
			ws := wss[0].ID
			if _, _, err := m.Store.FindSetting(ctx, ws, demoSetting); trustloop.ErrorCode(err) != trustloop.ENOTFOUND {
				t.Errorf("demo marker: %v, want none", err)
			}
			keys, err := m.Store.ListAPIKeys(ctx, ws)
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range keys {
				if k.Name != "bootstrap admin" {
					t.Errorf("an API key %q was made", k.Name)
				}
			}
			st, err := m.Store.Stats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.Events != 0 || st.Profiles != 0 || st.ConsentRecords != 0 {
				t.Errorf("something was sent: %+v", st)
			}
		})
	}
}
