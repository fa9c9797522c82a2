// Package dashboard serves the analysts' web page: static HTML, JavaScript
// and a vendored charting library (uPlot, see static/vendor/README.md),
// embedded in the binary so nothing is fetched from elsewhere at run time.
//
// The page itself needs no authentication: it holds no data. It asks for an
// analyst token and sends it as a bearer token to the query API on the same
// origin (/v1/...), which checks it on every request.
package dashboard

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

// Prefix is the path the dashboard is mounted at.
const Prefix = "/dashboard/"

//go:embed static
var static embed.FS

// contentSecurityPolicy allows only the page's own scripts, styles and API
// calls: no inline script, no third-party origin.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Files is the embedded file tree as served (index.html at its root).
func Files() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the directory is embedded at build time
	}
	return sub
}

// Handler serves the dashboard's files for requests under Prefix (mount it
// with mux.Handle("GET "+dashboard.Prefix, dashboard.Handler())). Responses
// carry a strict Content-Security-Policy, and are revalidated on every load
// so a new release is picked up at once.
func Handler() http.Handler {
	files := http.StripPrefix(Prefix, http.FileServerFS(Files()))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		if r.URL.Path != Prefix && strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r) // no directory listings
			return
		}
		files.ServeHTTP(w, r)
	})
}
