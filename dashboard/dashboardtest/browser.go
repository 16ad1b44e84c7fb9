// Package dashboardtest drives the dashboard in headless Chromium for
// tests: open it, log in with a token, wait for what it should show.
package dashboardtest

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Browser is one headless Chromium tab.
type Browser struct {
	t   testing.TB
	ctx context.Context
}

// Missing says why no browser can run here ("" when one can).
func Missing() string {
	if _, err := exec.LookPath("chromium"); err != nil {
		return "chromium is not installed (make deps installs it)"
	}
	return ""
}

// Open starts Chromium on url, or skips t when Chromium is not installed.
// The browser ends with the test.
func Open(t testing.TB, url string) *Browser {
	t.Helper()
	if why := Missing(); why != "" {
		t.Skip(why)
	}
	chrome, _ := exec.LookPath("chromium")
	actx, acancel := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome),
		chromedp.NoSandbox,                               // tests run as root, where Chromium's sandbox cannot start
		chromedp.Flag("ignore-certificate-errors", true), // the test's CA is not the browser's
		chromedp.WindowSize(1280, 1000),
		chromedp.UserDataDir(t.TempDir()))...)
	t.Cleanup(acancel)
	bctx, bcancel := chromedp.NewContext(actx)
	t.Cleanup(bcancel)
	b := &Browser{t: t, ctx: bctx}
	b.Do("open "+url, chromedp.Navigate(url))
	return b
}

// In is the same tab, failing and logging through t (a subtest).
func (b *Browser) In(t testing.TB) *Browser { return &Browser{t: t, ctx: b.ctx} }

// Do runs steps, failing the test on an error.
func (b *Browser) Do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// Eval evaluates a JavaScript expression.
func (b *Browser) Eval(js string) {
	b.t.Helper()
	if _, err := chromedp.Run(b.ctx, chromedp.Evaluate[any](js)); err != nil {
		b.t.Fatalf("%s: %v", js, err)
	}
}

// WaitFor waits until each selector matches a shown element, for up to a
// minute each, polling the page, so that a failure shows what the page
// shows instead of a cancelled context.
func (b *Browser) WaitFor(what string, sels ...string) {
	b.t.Helper()
	for _, sel := range sels {
		q, _ := json.Marshal(sel)
		js := fmt.Sprintf(`(() => { const e = document.querySelector(%s); return !!e && e.offsetParent !== null })()`, q)
		deadline := time.Now().Add(time.Minute)
		for {
			ok, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](js))
			if err != nil {
				b.t.Fatalf("%s: %v", what, err)
			}
			if ok {
				break
			}
			if time.Now().After(deadline) {
				page, _ := chromedp.Run(b.ctx, chromedp.OuterHTML("body"))
				b.t.Fatalf("%s: %s is not shown after a minute; the page shows:\n%s", what, sel, page)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// Text is the text of the first element sel matches.
func (b *Browser) Text(sel string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Text(sel))
	if err != nil {
		b.t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// Submit submits the form sel matches as its submit button would, with
// the form's validation, without a click: a click lands where the button
// was, which a page that re-renders as events arrive may have moved.
func (b *Browser) Submit(sel string) {
	b.t.Helper()
	q, _ := json.Marshal(sel)
	b.Eval(fmt.Sprintf(`document.querySelector(%s).requestSubmit()`, q))
}

// LogIn logs in with token and waits until the dashboard is live.
func (b *Browser) LogIn(token string) {
	b.t.Helper()
	b.WaitFor("login page", "#login")
	b.Eval(`document.getElementById("token").value = ""`)
	b.Do("log in", chromedp.SendKeys("#token", token), chromedp.Click(`#login-form button`))
}

// Screenshot is a PNG of the whole page.
func (b *Browser) Screenshot() []byte {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot: %v", err)
	}
	return png
}
