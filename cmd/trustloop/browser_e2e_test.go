package main_test

// Browser tests of the two faces: the real binary, driven by Debian's headless
// Chromium through chromedp, once with JavaScript and once without (the pages
// use none; the run without proves nothing depends on it). Where no Chromium
// is installed they say SKIPPING, unless TRUSTLOOP_TEST_BROWSER=1 (set by
// .ci/run after installing it), which makes that a failure.
//
// Screenshots go to the test's temporary directory, or to docs/screenshots
// with TRUSTLOOP_SCREENSHOTS=1 (how the README's pictures are made).

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/trustloop/trustloop/postgres/pgtest"
)

// chromium finds the browser, or skips (fails under TRUSTLOOP_TEST_BROWSER=1).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("TRUSTLOOP_TEST_BROWSER") == "1" {
		t.Fatal("TRUSTLOOP_TEST_BROWSER=1 but no Chromium is installed (apt-get install chromium)")
	}
	t.Skip("SKIPPING browser tests: no Chromium installed (apt-get install chromium; TRUSTLOOP_TEST_BROWSER=1 makes this a failure)")
	return ""
}

// tab is one browser tab with its own profile (cookies).
type tab struct {
	t      *testing.T
	ctx    context.Context
	shots  string
	noJS   bool
	prefix string
}

func newTab(t *testing.T, exe string, noJS bool) *tab {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("headless", true), chromedp.Flag("disable-background-networking", true), chromedp.WindowSize(1200, 900))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() { cancelT(); cancelC(); cancelA() })
	tb := &tab{t: t, ctx: ctx, noJS: noJS, shots: t.TempDir(), prefix: "js-"}
	// The README's pictures come from the SQLite run with scripts on.
	if os.Getenv("TRUSTLOOP_SCREENSHOTS") == "1" && !noJS && !strings.Contains(t.Name(), "Postgres") {
		tb.shots, tb.prefix = filepath.Join("..", "..", "docs", "screenshots"), ""
		os.MkdirAll(tb.shots, 0o755)
	}
	if noJS {
		tb.prefix = "nojs-"
		tb.do(chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Call(ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true})
			return err
		}))
	}
	return tb
}

func (b *tab) do(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	start := time.Now()
	defer func() {
		if d := time.Since(start); d > 10*time.Second {
			b.t.Logf("a browser step took %v", d)
		}
	}()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		b.t.Fatalf("browser: %v\npage: %.2000s", err, b.html())
	}
}

func (b *tab) html() string {
	h, _ := chromedp.Run(b.ctx, chromedp.OuterHTML(chromedp.CSS("html")))
	return h
}

func (b *tab) location() string {
	l, _ := chromedp.Run(b.ctx, chromedp.Location())
	return l
}

// axeSource is axe-core (e2e/a11y, installed by npm), or nil.
var axeSource = func() []byte {
	b, _ := os.ReadFile(filepath.Join("..", "..", "e2e", "a11y", "node_modules", "axe-core", "axe.min.js"))
	return b
}()

// accessible runs axe-core's WCAG 2 A and AA rules on the page and fails on
// any violation. It needs scripts (axe is JavaScript, run through DevTools,
// which the pages' CSP does not govern), so the run without scripts skips it;
// without axe-core installed it says SKIPPING, and fails under
// TRUSTLOOP_TEST_BROWSER=1 (.ci/run installs it).
func (b *tab) accessible(page string) {
	b.t.Helper()
	if b.noJS {
		return
	}
	if axeSource == nil {
		if os.Getenv("TRUSTLOOP_TEST_BROWSER") == "1" {
			b.t.Fatal("axe-core is not installed: npm install in e2e/a11y")
		}
		b.t.Logf("SKIPPING the accessibility check of %s: axe-core not installed (npm install in e2e/a11y)", page)
		return
	}
	if _, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](string(axeSource)+";true")); err != nil {
		b.t.Fatalf("loading axe-core: %v", err)
	}
	out, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`axe.run(document, {runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}})
		.then(r => JSON.stringify(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
			nodes: v.nodes.slice(0, 3).map(n => n.target.join(" "))}))))`, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("axe on %s: %v", page, err)
	}
	if out != "[]" {
		b.t.Errorf("accessibility violations (WCAG 2.1 A/AA, axe-core) on %s: %s", page, out)
	}
}

func (b *tab) shot(name string) {
	b.t.Helper()
	b.accessible(name)
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(filepath.Join(b.shots, b.prefix+name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// waitFor reloads the page until sel is there (pages that update themselves
// with a refresh do so without JavaScript too; this just does not wait 2 s).
func (b *tab) waitFor(sel string, within time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(within)
	for {
		if strings.Contains(b.html(), sel) {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("%q did not appear; page: %.3000s", sel, b.html())
		}
		time.Sleep(300 * time.Millisecond)
		b.do(chromedp.Navigate(b.location()))
	}
}

// browserShopper sends a customer's consent, identify and a few views.
func browserShopper(t *testing.T, s *server, user, email, name string) {
	t.Helper()
	ctx := `"context":{"consent":{"categoryPreferences":{"analytics":true,"personalization":true,"marketing":true}}}`
	now := time.Now().UTC().Format(time.RFC3339Nano)
	msgs := []string{
		fmt.Sprintf(`{"type":"track","userId":%q,"event":"Segment Consent Preference Updated",%s}`, user, ctx),
		fmt.Sprintf(`{"type":"identify","userId":%q,"traits":{"email":%q,"name":%q},%s}`, user, email, name, ctx),
	}
	for i, p := range []string{"Reading lamp", "Oak desk", "Linen curtain"} {
		msgs = append(msgs, fmt.Sprintf(`{"type":"track","userId":%q,"event":"Product Viewed","properties":{"product_id":"p-%d","name":%q,"price":49.9},"timestamp":%q,%s}`,
			user, i, p, now, ctx))
	}
	if code := postBatch(s.url, msgs); code != 200 {
		t.Fatalf("batch: %d", code)
	}
}

func portalLinkFor(t *testing.T, s *server, identifier string) string {
	t.Helper()
	code, v := api(t, s, "POST", "/v1/portal/sessions", map[string]any{"identifier": identifier})
	if code != 201 {
		t.Fatalf("portal session: %d %v", code, v)
	}
	return s.url + v["url"].(string)
}

func TestBrowserFaces(t *testing.T) {
	exe := chromium(t)
	for _, noJS := range []bool{false, true} {
		name := "javascript"
		if noJS {
			name = "no-javascript"
		}
		t.Run(name, func(t *testing.T) { browserFlows(t, exe, noJS) })
	}
}

// TestBrowserFacesPostgres runs the same flows on PostgreSQL (scripts on).
func TestBrowserFacesPostgres(t *testing.T) {
	exe := chromium(t)
	browserFlows(t, exe, false, "--database-url", pgtest.Schema(t, "PostgreSQL browser test"))
}

func browserFlows(t *testing.T, exe string, noJS bool, extra ...string) {
	// The demo workspace makes the pictures a living system's.
	s := start(t, t.TempDir(), append([]string{"--demo", "--regime", "opt_in"}, extra...)...)
	waitLog(t, s, "demo ready")
	browserShopper(t, s, "u-ann", "ann@example.com", "Ann Example")
	browserShopper(t, s, "u-bob", "bob@example.com", "Bob Example")
	code, v := api(t, s, "GET", "/v1/profiles/lookup?purpose=essential&identifier="+url.QueryEscape("email:ann@example.com"), nil)
	if code != 200 {
		t.Fatalf("lookup: %d", code)
	}
	ann := v["profile_id"].(string)
	marketing := func() map[string]any {
		_, c := api(t, s, "GET", "/v1/profiles/"+ann+"/consent", nil)
		return c["purposes"].(map[string]any)["marketing"].(map[string]any)
	}

	// A demo customer's preference center, for the README.
	b := newTab(t, exe, noJS)
	b.do(chromedp.Navigate(portalLinkFor(t, s, "email:mara.schulz@example.com")), chromedp.WaitVisible(chromedp.CSS("#choices")))
	b.shot("portal")
	if !noJS {
		// On a phone's width nothing runs off the side.
		b.do(chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
		wide, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth`))
		if err != nil || wide {
			t.Errorf("the preference center is wider than a phone's screen (%v)", err)
		}
		b.shot("portal-phone")
		b.do(chromedp.EmulateViewport(1200, 900))
	}

	// The customer opens their link and switches marketing off.
	b.do(chromedp.Navigate(portalLinkFor(t, s, "email:ann@example.com")), chromedp.WaitVisible(chromedp.CSS("#choices")))
	if !strings.HasSuffix(b.location(), "/portal") {
		t.Fatalf("the link should land on /portal, is at %s", b.location())
	}
	if m := marketing(); m["allowed"] != true {
		t.Fatalf("marketing before: %v", m)
	}
	b.do(chromedp.Click(chromedp.CSS(`button[data-purpose="marketing"]`)))
	b.do(chromedp.WaitVisible(chromedp.CSS(".flash")))
	b.shot("portal-saved")
	if m := marketing(); m["allowed"] != false || m["state"] != "withdrawn" || m["method"] != "preference_center" {
		t.Fatalf("marketing after the switch: %v", m)
	}
	_, hist := apiRaw(t, s, "GET", "/v1/profiles/"+ann+"/consent/history", nil)
	var h struct {
		Data []struct {
			Purpose   string `json:"purpose"`
			Method    string `json:"method"`
			ReceiptID string `json:"receipt_id"`
		} `json:"data"`
	}
	json.Unmarshal(hist, &h)
	if n := len(h.Data); n == 0 || h.Data[n-1].Purpose != "marketing" || h.Data[n-1].Method != "preference_center" || h.Data[n-1].ReceiptID == "" {
		t.Fatalf("no consent record of the switch: %s", hist)
	}

	// Download the export.
	dl := t.TempDir()
	b.do(chromedp.Click(chromedp.CSS("#download")))
	b.waitFor(`id="download-json"`, 20*time.Second)
	b.shot("portal-download")
	b.do(chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
			Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: dl})
		return err
	}), chromedp.Click(chromedp.CSS("#download-json")))
	var export []byte
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && export == nil; time.Sleep(200 * time.Millisecond) {
		files, _ := filepath.Glob(filepath.Join(dl, "*.json"))
		for _, f := range files {
			export, _ = os.ReadFile(f)
		}
	}
	if !strings.Contains(string(export), "ann@example.com") || strings.Contains(string(export), "bob@example.com") {
		t.Fatalf("downloaded export: %.500s", export)
	}
	reqURL := b.location()

	// A second customer's link cannot see the first's data.
	bob := newTab(t, exe, noJS)
	bob.do(chromedp.Navigate(portalLinkFor(t, s, "email:bob@example.com")), chromedp.WaitVisible(chromedp.CSS("#choices")))
	if page := bob.html(); strings.Contains(page, "ann@example.com") || !strings.Contains(page, "bob@example.com") {
		t.Fatal("bob's preference center shows ann's data, or not his own")
	}
	bob.do(chromedp.Navigate(reqURL + "/export?format=json"))
	if page := bob.html(); strings.Contains(page, "ann@example.com") || !strings.Contains(page, "No such request") {
		t.Fatalf("bob opened ann's export: %.500s", page)
	}

	// Erasure: confirm, then watch it complete.
	b.do(chromedp.Navigate(s.url + "/portal"))
	b.do(chromedp.Click(chromedp.CSS("#erase")))
	b.do(chromedp.WaitVisible(chromedp.CSS("#confirm")))
	b.shot("portal-erase")
	b.do(chromedp.Click(chromedp.CSS("#confirm")), chromedp.Click(chromedp.CSS("#erase-confirm")))
	b.waitFor(`id="erased"`, 30*time.Second)
	b.shot("portal-erased")
	if code, _ := api(t, s, "GET", "/v1/profiles/lookup?purpose=essential&identifier="+url.QueryEscape("email:ann@example.com"), nil); code != 404 {
		t.Fatalf("ann still found after the erasure: %d", code)
	}

	// Staff sign in to the console, find a customer, see the dashboard.
	a := newTab(t, exe, noJS)
	a.do(chromedp.Navigate(s.url + "/admin"))
	a.do(chromedp.WaitVisible(chromedp.CSS("#key")))
	a.shot("admin-signin")
	if !strings.HasSuffix(a.location(), "/admin/signin") {
		t.Fatalf("not sent to sign in: %s", a.location())
	}
	a.do(chromedp.SendKeys(chromedp.CSS("#key"), "e2e-admin-key-0123456789"), chromedp.Click(chromedp.CSS("#signin-key")))
	a.do(chromedp.WaitVisible(chromedp.CSS("figure.chart svg")))
	charts, err := chromedp.Run(a.ctx, chromedp.Evaluate[float64](`document.querySelectorAll("figure.chart svg").length`))
	if noJS {
		// Evaluate runs in the page, which has scripts off: count in Go.
		charts, err = float64(strings.Count(a.html(), "<svg")), nil
	}
	if err != nil || charts < 4 {
		t.Fatalf("dashboard charts: %v %v", charts, err)
	}
	a.shot("admin-dashboard")
	a.do(chromedp.Navigate(s.url + "/admin/customers"))
	a.do(chromedp.WaitVisible(chromedp.CSS("form")))
	a.do(chromedp.SendKeys(chromedp.CSS(`input[name="identifier"]`), "bob@example.com"),
		chromedp.Submit(chromedp.CSS(`input[name="identifier"]`)))
	a.waitFor("bob@example.com", 10*time.Second)
	if !strings.Contains(a.location(), "/admin/customers/") {
		t.Fatalf("customer search landed at %s", a.location())
	}
	a.shot("admin-customer")
	a.do(chromedp.Navigate(s.url + "/admin/requests"))
	a.waitFor("erasure", 10*time.Second)
	a.shot("admin-requests")
}
