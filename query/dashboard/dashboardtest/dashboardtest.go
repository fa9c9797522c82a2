// Package dashboardtest drives the dashboard in headless Chromium over the
// Chrome DevTools Protocol (github.com/chromedp/chromedp) and checks what it
// drew against the query API's JSON. It is for tests only: the dashboard's
// own unit test (against a fake API) and the integration test (against the
// real query service) share it.
//
// The browser is Debian's chromium package (deploy/install-chromium.sh
// installs it); VITALS_CHROMIUM names another binary.
package dashboardtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/chromedp/chromedp"
)

// Charts are the ids of the dashboard's chart sections.
var Charts = []string{"trends", "distribution", "percentiles", "compare"}

// ErrNoBrowser is returned by ChromiumPath when no browser is installed.
var ErrNoBrowser = errors.New("no Chromium found: run deploy/install-chromium.sh (Debian's chromium package) or set VITALS_CHROMIUM")

// ChromiumPath returns the browser binary: $VITALS_CHROMIUM, else the first
// of chromium, chromium-browser, google-chrome on PATH.
func ChromiumPath() (string, error) {
	if p := os.Getenv("VITALS_CHROMIUM"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("VITALS_CHROMIUM: %w", err)
		}
		return p, nil
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", ErrNoBrowser
}

// Browser is one headless Chromium with one tab.
type Browser struct {
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	console []string // console errors, exceptions and browser log errors
}

// Start launches the browser at path (headless, no sandbox: tests run as
// root in CI) with a 1280x1000 window and waits until its tab answers. The
// browser lives until Close or until parent ends.
func Start(parent context.Context, path string) (*Browser, error) {
	ctx, cancel := chromedp.NewContext(parent, chromedp.WithAllocatorOptions(
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 1000),
	))
	b := &Browser{ctx: ctx, cancel: cancel}
	// The first run starts the browser; it must not carry a timeout of its
	// own (that would end the browser), so a watchdog bounds it instead.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err := <-started:
		if err != nil {
			cancel()
			return nil, fmt.Errorf("start %s: %w", path, err)
		}
	case <-time.After(30 * time.Second):
		cancel()
		return nil, fmt.Errorf("start %s: no answer within 30 s", path)
	}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.IsException() || m.Type == "error" {
				b.mu.Lock()
				b.console = append(b.console, fmt.Sprintf("%s %s:%d: %s", m.Type, m.URL, m.Line+1, m.Text))
				b.mu.Unlock()
			}
		}
	}()
	return b, nil
}

// Close ends the browser and removes its profile.
func (b *Browser) Close() { b.cancel() }

// ConsoleErrors returns the page's console errors and uncaught exceptions so
// far (failed requests, Content-Security-Policy violations, script errors).
func (b *Browser) ConsoleErrors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.console...)
}

// Open loads the dashboard at pageURL with the analyst token in the URL
// fragment (#token=...), the way a link from another tool would pass it.
// It loads the page afresh (a new document) even if it is open already.
func (b *Browser) Open(ctx context.Context, pageURL, token string) error {
	ctx, cancel := b.with(ctx, 20*time.Second)
	defer cancel()
	u := pageURL + "#" + url.Values{"token": {token}}.Encode()
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank"), chromedp.Navigate(u), chromedp.WaitReady(chromedp.ID("show"))); err != nil {
		return fmt.Errorf("open dashboard: %w", err)
	}
	return nil
}

// Form is what a person chooses on the page before pressing Show. Empty
// fields keep the page's value.
type Form struct {
	Scope    string // user, cohort or tenant
	User     string
	Metric   string
	From, To string // YYYY-MM-DD
	P        string // e.g. "10,50,90"
	Bins     string // a number or "auto"
	By       string // age_band, sex, region, device_model
	// The cohort filters, for Scope "cohort".
	AgeBand, Sex, Region, DeviceModel string
}

// Show fills the form, presses Show and waits until every chart finished
// (body[data-state=done] with a new generation), then reads what the page
// shows.
func (b *Browser) Show(ctx context.Context, f Form) (*Snapshot, error) {
	ctx, cancel := b.with(ctx, 45*time.Second)
	defer cancel()
	gen, err := chromedp.Run(ctx, chromedp.Evaluate[int](`window.vitalsDashboard.generation`))
	if err != nil {
		return nil, fmt.Errorf("read generation: %w", err)
	}
	var steps []chromedp.Action[chromedp.Void]
	if f.Scope != "" {
		steps = append(steps, chromedp.Click(chromedp.CSS(`input[name=scope][value="`+f.Scope+`"]`)))
	}
	for id, v := range map[string]string{"user": f.User, "metric": f.Metric, "from": f.From, "to": f.To, "p": f.P,
		"bins": f.Bins, "by": f.By, "sex": f.Sex, "age_band": f.AgeBand, "region": f.Region, "device_model": f.DeviceModel} {
		if v != "" {
			steps = append(steps, chromedp.SetValue(chromedp.ID(id), v))
		}
	}
	steps = append(steps,
		chromedp.Click(chromedp.ID("show")),
		chromedp.Poll[chromedp.Void](fmt.Sprintf(`document.body.dataset.state === "done" && window.vitalsDashboard.generation > %d`, gen),
			chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(40*time.Second)),
	)
	if err := chromedp.Do(ctx, steps...); err != nil {
		return nil, fmt.Errorf("show: %w", err)
	}
	return b.read(ctx)
}

// Opened waits until the page has shown something by itself after Open
// (it asks the API where the data is and shows the newest), without
// anyone pressing Show, and reads what it shows.
func (b *Browser) Opened(ctx context.Context) (*Snapshot, error) {
	ctx, cancel := b.with(ctx, 45*time.Second)
	defer cancel()
	err := chromedp.Do(ctx, chromedp.Poll[chromedp.Void](`document.body.dataset.state === "done" && window.vitalsDashboard.generation > 0`,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(40*time.Second)))
	if err != nil {
		return nil, fmt.Errorf("wait for the page to show the newest data: %w", err)
	}
	return b.read(ctx)
}

func (b *Browser) read(ctx context.Context) (*Snapshot, error) {
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](snapshotJS))
	if err != nil {
		return nil, fmt.Errorf("read the page: %w", err)
	}
	var s Snapshot
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("decode the page's state: %w", err)
	}
	return &s, nil
}

// Screenshot returns a PNG of the whole page (for a person to look at when
// a test fails).
func (b *Browser) Screenshot(ctx context.Context) ([]byte, error) {
	ctx, cancel := b.with(ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		return nil, fmt.Errorf("screenshot: %w", err)
	}
	return png, nil
}

// with derives a context of the browser's tab that also ends with ctx and
// after d.
func (b *Browser) with(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	tctx, cancel := context.WithTimeout(b.ctx, d)
	stop := context.AfterFunc(ctx, cancel)
	return tctx, func() { stop(); cancel() }
}

// Snapshot is what the page shows after Show.
type Snapshot struct {
	Status string           `json:"status"` // the form's status line
	Charts map[string]Chart `json:"charts"`
	// Form holds the form's fields by name (token left out).
	Form map[string]string `json:"form"`
}

// Chart is one chart section: its state, what uPlot holds and draws, and
// its tables.
type Chart struct {
	// Status is the section's data-status: ok, empty, error, suppressed,
	// skipped.
	Status  string `json:"status"`
	Message string `json:"message"`
	// Plotted says whether a uPlot instance exists.
	Plotted bool `json:"plotted"`
	// SeriesLengths are the lengths of uPlot's data arrays (x first).
	SeriesLengths []int    `json:"seriesLengths"`
	SeriesLabels  []string `json:"seriesLabels"`
	CanvasWidth   int      `json:"canvasWidth"`
	CanvasHeight  int      `json:"canvasHeight"`
	// ColorPixels counts canvas pixels of the colour of the series the page
	// drew on top (window.vitalsDashboard.colors):
	// non-zero means the data, not only the axes, was drawn.
	ColorPixels int              `json:"colorPixels"`
	Tables      map[string]Table `json:"tables"`
	// XMin and XMax are the x scale's range as drawn (seconds on day axes).
	XMin float64 `json:"xMin"`
	XMax float64 `json:"xMax"`
}

// Table is an HTML table of a chart.
type Table struct {
	Header []string `json:"header"`
	Rows   [][]Cell `json:"rows"`
	Foot   [][]Cell `json:"foot"`
}

// Cell is one table cell: the text a person reads and the raw API value
// (data-value).
type Cell struct {
	Text  string `json:"text"`
	Value string `json:"value"`
}

// snapshotJS reads the page's state in one evaluation. Pixel counting is
// done here, independently of the page's code: it looks for opaque pixels
// within 8 of the series colour in each channel.
const snapshotJS = `(() => {
  const dash = window.vitalsDashboard;
  const rgb = (c) => (c || "").match(/\d+/g).slice(0, 3).map(Number);
  const cells = (tr) => [...tr.cells].map((c) => ({text: c.textContent.trim(), value: c.dataset.value ?? ""}));
  const out = {status: document.getElementById("status").textContent, charts: {}, form: {}};
  for (const el of document.getElementById("controls").elements) {
    if (el.name && el.name !== "token" && (el.type !== "radio" || el.checked)) out.form[el.name] = el.value;
  }
  for (const sec of document.querySelectorAll("section.chart")) {
    const u = dash.charts[sec.id];
    const c = {status: sec.dataset.status, message: sec.querySelector(".message").textContent,
      plotted: !!u, seriesLengths: [], seriesLabels: [], canvasWidth: 0, canvasHeight: 0, colorPixels: 0, tables: {}};
    if (u) {
      c.seriesLengths = u.data.map((d) => d.length);
      c.seriesLabels = u.series.map((s) => String(s.label));
      const cv = u.ctx.canvas;
      c.canvasWidth = cv.width; c.canvasHeight = cv.height;
      c.xMin = u.scales.x.min; c.xMax = u.scales.x.max;
      const [r, g, b] = rgb(dash.colors[sec.id]);
      const px = u.ctx.getImageData(0, 0, cv.width, cv.height).data;
      for (let i = 0; i < px.length; i += 4) {
        if (px[i + 3] === 255 && Math.abs(px[i] - r) <= 8 && Math.abs(px[i + 1] - g) <= 8 && Math.abs(px[i + 2] - b) <= 8) c.colorPixels++;
      }
    }
    for (const t of sec.querySelectorAll("table[id]")) {
      c.tables[t.id] = {
        header: [...t.tHead.rows[0].cells].map((h) => h.textContent.trim()),
        rows: [...t.tBodies[0].rows].map(cells),
        foot: t.tFoot ? [...t.tFoot.rows].map(cells) : [],
      };
    }
    out.charts[sec.id] = c;
  }
  return out;
})()`

// Describe summarises a snapshot for a test log (no values, only shapes).
func (s *Snapshot) Describe() string {
	var b strings.Builder
	for _, name := range Charts {
		c := s.Charts[name]
		fmt.Fprintf(&b, "%s: status=%s series=%v pixels=%d rows=", name, c.Status, c.SeriesLengths, c.ColorPixels)
		for id, t := range c.Tables {
			fmt.Fprintf(&b, "%s:%d ", id, len(t.Rows))
		}
		b.WriteString("\n")
	}
	return b.String()
}
