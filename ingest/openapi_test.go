package ingest

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/vitalshq/vitals/internal/metric"
)

// The tests below keep openapi.yaml honest without a YAML library: the
// document is written in block style with two-space indentation, and a
// few lines of indentation-aware scanning are enough to find its paths,
// methods and enums.

// openAPIRoutes is every route newServer registers. TestOpenAPIRoutes checks
// this table against the source of newServer, against the mux itself, and
// against the document.
var openAPIRoutes = []struct{ method, path string }{
	{http.MethodPost, "/v1/readings"},
	{http.MethodPost, "/v1/device-events"},
	{http.MethodPost, "/v1/profile-events"},
	{http.MethodPost, "/fhir/r4/Observation"},
	{http.MethodGet, "/v1/catalogue"},
	{http.MethodGet, "/openapi.yaml"},
	{http.MethodGet, "/metrics"},
	{http.MethodGet, "/healthz"},
	{http.MethodGet, "/readyz"},
}

// openAPIErrorCodes is every request-level error code (APIError.code)
// ingest answers with. invalid_identifier reaches the client through
// checkID's rejection of a bad gateway id, not as a literal.
var openAPIErrorCodes = []string{
	"malformed_body", "unreadable_body", "empty_batch", "batch_too_large", "body_too_large",
	"overloaded", "body_too_slow", "rate_limited", "unauthenticated", "key_revoked", "keys_unavailable", "key_store_unavailable", "tenant_mismatch",
	"log_unavailable", ReasonInvalidIdentifier,
}

func TestOpenAPIRoutes(t *testing.T) {
	table := make([]string, 0, len(openAPIRoutes))
	for _, r := range openAPIRoutes {
		table = append(table, r.method+" "+r.path)
	}

	// The table is what newServer's source registers.
	if src := muxPatterns(t); !sameSet(src, table) {
		t.Errorf("newServer registers %q; the test table lists %q", src, table)
	}

	// The table is what the mux serves: no route answers 404 or 405. The
	// batch routes answer 401 without a key, before touching the (nil)
	// producer and key store, which proves the route exists.
	s := mustServer(DefaultConfig(), nil, nil)
	for _, r := range openAPIRoutes {
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest(r.method, r.path, strings.NewReader("{}")))
		want := http.StatusOK
		if r.method == http.MethodPost {
			want = http.StatusUnauthorized
		}
		if rec.Code != want {
			t.Errorf("%s %s: status %d, want %d: %s", r.method, r.path, rec.Code, want, rec.Body)
		}
	}

	// The document describes exactly these routes.
	doc := openAPIDoc(t)
	paths := yamlChild(doc, "paths")
	if paths == nil {
		t.Fatal("openapi.yaml has no paths")
	}
	var documented []string
	for _, p := range yamlKeys(paths) {
		for _, m := range yamlKeys(yamlChild(paths, p)) {
			documented = append(documented, strings.ToUpper(m)+" "+p)
		}
	}
	if !sameSet(documented, table) {
		t.Errorf("openapi.yaml documents %q; the server has %q", documented, table)
	}

	// Every batch route documents its key and every status it can answer.
	for _, r := range openAPIRoutes {
		if r.method != http.MethodPost {
			continue
		}
		op := yamlChild(yamlChild(paths, r.path), "post")
		if yamlChild(op, "security") == nil || yamlChild(op, "requestBody") == nil {
			t.Errorf("POST %s: no security or requestBody", r.path)
		}
		codes := yamlKeys(yamlChild(op, "responses"))
		for _, c := range []string{"200", "400", "401", "403", "413", "503"} {
			if !slices.Contains(codes, c) {
				t.Errorf("POST %s: response %s is not documented (got %q)", r.path, c, codes)
			}
		}
	}
	body := yamlChild(yamlChild(yamlChild(paths, "/v1/readings"), "post"), "requestBody")
	if ct := yamlKeys(yamlChild(body, "content")); !sameSet(ct, []string{"application/json", contentTypeAvroBatch}) {
		t.Errorf("POST /v1/readings documents content types %q", ct)
	}
	body = yamlChild(yamlChild(yamlChild(paths, "/fhir/r4/Observation"), "post"), "requestBody")
	if ct := yamlKeys(yamlChild(body, "content")); !sameSet(ct, []string{"application/fhir+json"}) {
		t.Errorf("POST /fhir/r4/Observation documents content types %q", ct)
	}
}

func TestOpenAPIReasonCodes(t *testing.T) {
	doc := openAPIDoc(t)
	schemas := yamlChild(yamlChild(doc, "components"), "schemas")

	// Item rejection reasons: every Reason* constant of validate.go, plus
	// any literal passed to reject() anywhere in the package (such as
	// "internal"), found in the source so that a new one fails here until
	// it is documented.
	reasons := reasonCodes(t)
	for _, known := range []string{ReasonMalformedItem, ReasonMissingField, ReasonTooOld, "internal"} {
		if !slices.Contains(reasons, known) { // the source scan itself works
			t.Fatalf("source scan found reasons %q, missing %q", reasons, known)
		}
	}
	checkEnum(t, schemas, "RejectionReason", reasons)
	checkExplained(t, schemas, "RejectionReason", reasons)

	// Request-level error codes: the table must cover every literal code
	// ingest.go answers with, and the document must list the table.
	used := errorCodeLiterals(t)
	for _, c := range used {
		if !slices.Contains(openAPIErrorCodes, c) {
			t.Errorf("ingest.go answers with error code %q, which the test table (and so maybe openapi.yaml) lacks", c)
		}
	}
	for _, c := range openAPIErrorCodes {
		if c != ReasonInvalidIdentifier && !slices.Contains(used, c) {
			t.Errorf("error code %q is in the test table but no longer used in ingest.go", c)
		}
	}
	checkEnum(t, schemas, "ErrorCode", openAPIErrorCodes)
	checkExplained(t, schemas, "ErrorCode", openAPIErrorCodes)

	checkEnum(t, schemas, "ItemStatus", []string{StatusAccepted, StatusRejected, StatusNotSaved, StatusUnconfirmed})

	// The metric catalogue.
	names := metric.Names()
	checkEnum(t, schemas, "MetricName", names)
	checkEnum(t, schemas, "SleepStage", metric.SleepStages)
	var units []string
	for _, n := range names {
		m := metric.MustLookup(n)
		for _, u := range m.Units() {
			if !slices.Contains(units, u) {
				units = append(units, u)
			}
		}
		row := "| " + m.Name + " | " + m.LOINC
		if !bytes.Contains(openapiYAML, []byte(row)) {
			t.Errorf("the metric table has no row starting %q", row)
		}
	}
	checkEnum(t, schemas, "Unit", units)
}

func TestOpenAPIServed(t *testing.T) {
	s := mustServer(DefaultConfig(), nil, nil)
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/openapi.yaml", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /openapi.yaml: status %d", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/yaml" {
		t.Errorf("Content-Type = %q, want application/yaml", ct)
	}
	onDisk, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rec.Body.Bytes(), onDisk) {
		t.Error("GET /openapi.yaml does not serve openapi.yaml")
	}
	if !bytes.HasPrefix(onDisk, []byte("openapi: 3.0.3\n")) {
		t.Error("openapi.yaml does not start with openapi: 3.0.3")
	}
	if i := bytes.IndexByte(onDisk, '\t'); i >= 0 {
		t.Errorf("openapi.yaml has a tab at byte %d; YAML indentation must be spaces", i)
	}
	doc := openAPIDoc(t)
	info := yamlChild(doc, "info")
	if v := yamlScalar(info, "version"); v != "1" {
		t.Errorf("info.version = %q, want 1", v)
	}
	if v := yamlScalar(info, "title"); v == "" {
		t.Error("info.title is empty")
	}
	server := yamlChild(doc, "servers")
	if len(server) == 0 || !strings.Contains(server[0], "http://127.0.0.1:8080") {
		t.Errorf("servers = %q", server)
	}
	bearer := yamlChild(yamlChild(yamlChild(doc, "components"), "securitySchemes"), "bearerAuth")
	if yamlScalar(bearer, "scheme") != "bearer" || !strings.HasPrefix(yamlScalar(bearer, "bearerFormat"), "vk_") {
		t.Errorf("securitySchemes.bearerAuth = %q", bearer)
	}
	// Every local $ref points at a component that exists.
	comps := yamlChild(doc, "components")
	for _, line := range doc {
		_, ref, ok := strings.Cut(line, "$ref: ")
		if !ok {
			continue
		}
		ref = unquote(strings.TrimSpace(ref))
		parts := strings.Split(strings.TrimPrefix(ref, "#/components/"), "/")
		if !strings.HasPrefix(ref, "#/components/") || len(parts) != 2 ||
			!slices.Contains(yamlKeys(yamlChild(comps, parts[0])), parts[1]) {
			t.Errorf("dangling $ref %q", ref)
		}
	}
}

// checkEnum requires components.schemas.<name>.enum to hold exactly want.
func checkEnum(t *testing.T, schemas []string, name string, want []string) {
	t.Helper()
	got := yamlEnum(yamlChild(schemas, name))
	if !sameSet(got, want) {
		t.Errorf("components.schemas.%s.enum = %q; want %q", name, got, want)
	}
}

// checkExplained requires the description of components.schemas.<name>
// to explain every code, as a list item "- `code`".
func checkExplained(t *testing.T, schemas []string, name string, codes []string) {
	t.Helper()
	desc := strings.Join(yamlChild(yamlChild(schemas, name), "description"), "\n")
	for _, c := range codes {
		if !strings.Contains(desc, "- `"+c+"`") {
			t.Errorf("components.schemas.%s.description does not explain %q", name, c)
		}
	}
}

// reasonCodes lists the values of the Reason* constants of validate.go and
// every string literal passed as reject's first argument in the package.
func reasonCodes(t *testing.T) []string {
	t.Helper()
	var out []string
	add := func(s string) {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	f := parseFile(t, "validate.go")
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, spec := range g.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, n := range vs.Names {
				if !strings.HasPrefix(n.Name, "Reason") || i >= len(vs.Values) {
					continue
				}
				if s, ok := stringLit(vs.Values[i]); ok {
					add(s)
				} else {
					t.Errorf("constant %s is not a string literal", n.Name)
				}
			}
		}
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		ast.Inspect(parseFile(t, name), func(n ast.Node) bool {
			if c, ok := n.(*ast.CallExpr); ok && isCall(c, "reject") && len(c.Args) > 0 {
				if s, ok := stringLit(c.Args[0]); ok {
					add(s)
				}
			}
			return true
		})
	}
	return out
}

// errorCodeLiterals lists the literal codes ingest.go passes to writeError
// and badRequest or puts in an APIError.
func errorCodeLiterals(t *testing.T) []string {
	t.Helper()
	var out []string
	add := func(e ast.Expr) {
		if s, ok := stringLit(e); ok && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	inspect := func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.CallExpr:
			switch {
			case isCall(n, "writeError") && len(n.Args) > 2:
				add(n.Args[2])
			case isCall(n, "badRequest") && len(n.Args) > 0:
				add(n.Args[0])
			}
		case *ast.CompositeLit:
			// APIError{Code: ...} answered, apiError{code: ...} returned.
			if id, ok := n.Type.(*ast.Ident); ok && (id.Name == "APIError" || id.Name == "apiError") {
				for _, e := range n.Elts {
					if kv, ok := e.(*ast.KeyValueExpr); ok {
						if k, ok := kv.Key.(*ast.Ident); ok && (k.Name == "Code" || k.Name == "code") {
							add(kv.Value)
						}
					}
				}
			}
		}
		return true
	}
	for _, f := range []string{"ingest.go", "batch.go"} {
		ast.Inspect(parseFile(t, f), inspect)
	}
	if len(out) == 0 {
		t.Fatal("found no error codes in ingest.go")
	}
	return out
}

// muxPatterns lists the patterns newServer registers with mux.Handle and
// mux.HandleFunc.
func muxPatterns(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, d := range parseFile(t, "ingest.go").Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok || fn.Name.Name != "newServer" {
			continue
		}
		ast.Inspect(fn.Body, func(n ast.Node) bool {
			c, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := c.Fun.(*ast.SelectorExpr)
			if !ok || (sel.Sel.Name != "Handle" && sel.Sel.Name != "HandleFunc") || len(c.Args) == 0 {
				return true
			}
			if s, ok := stringLit(c.Args[0]); ok {
				out = append(out, s)
			} else {
				t.Errorf("newServer registers a pattern that is not a literal at %v", c.Pos())
			}
			return true
		})
	}
	if len(out) == 0 {
		t.Fatal("found no routes in newServer")
	}
	return out
}

func parseFile(t *testing.T, name string) *ast.File {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), name, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func isCall(c *ast.CallExpr, name string) bool {
	id, ok := c.Fun.(*ast.Ident)
	return ok && id.Name == name
}

func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	sort.Strings(a)
	sort.Strings(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b)) && len(a) == len(b)
}

// openAPIDoc is the embedded document as lines.
func openAPIDoc(t *testing.T) []string {
	t.Helper()
	if len(openapiYAML) == 0 {
		t.Fatal("openapi.yaml is empty")
	}
	return strings.Split(string(openapiYAML), "\n")
}

// The block-style YAML scanning: a block is a slice of lines whose least
// indented content lines are its keys. Block scalars (|) are always
// indented deeper than their key, so they never look like keys.

func indentOf(line string) int { return len(line) - len(strings.TrimLeft(line, " ")) }

func isContent(line string) bool {
	s := strings.TrimSpace(line)
	return s != "" && !strings.HasPrefix(s, "#")
}

func baseIndent(lines []string) int {
	base := -1
	for _, l := range lines {
		if isContent(l) && (base < 0 || indentOf(l) < base) {
			base = indentOf(l)
		}
	}
	return base
}

// keyOf returns the mapping key of a line at the block's base level.
func keyOf(line string) (key, rest string, ok bool) {
	s := strings.TrimSpace(line)
	if strings.HasPrefix(s, "- ") || s == "-" {
		return "", "", false
	}
	if s[0] == '\'' || s[0] == '"' {
		end := strings.IndexByte(s[1:], s[0])
		if end < 0 || !strings.HasPrefix(s[end+2:], ":") {
			return "", "", false
		}
		return s[1 : end+1], strings.TrimSpace(s[end+3:]), true
	}
	k, r, ok := strings.Cut(s, ":")
	if !ok || (r != "" && r[0] != ' ') {
		return "", "", false
	}
	return k, strings.TrimSpace(r), true
}

// yamlKeys lists a block's keys, in order.
func yamlKeys(lines []string) []string {
	base := baseIndent(lines)
	var out []string
	for _, l := range lines {
		if isContent(l) && indentOf(l) == base {
			if k, _, ok := keyOf(l); ok {
				out = append(out, k)
			}
		}
	}
	return out
}

// yamlChild returns the lines nested under key, or nil.
func yamlChild(lines []string, key string) []string {
	base := baseIndent(lines)
	for i, l := range lines {
		if !isContent(l) || indentOf(l) != base {
			continue
		}
		if k, _, ok := keyOf(l); !ok || k != key {
			continue
		}
		var out []string
		for _, c := range lines[i+1:] {
			if isContent(c) && indentOf(c) <= base {
				break
			}
			out = append(out, c)
		}
		if baseIndent(out) < 0 {
			return nil
		}
		return out
	}
	return nil
}

// yamlScalar returns the inline value of key.
func yamlScalar(lines []string, key string) string {
	base := baseIndent(lines)
	for _, l := range lines {
		if isContent(l) && indentOf(l) == base {
			if k, v, ok := keyOf(l); ok && k == key {
				return unquote(v)
			}
		}
	}
	return ""
}

// yamlEnum returns the enum of a schema block, flow ([a, b]) or block
// (- a) style.
func yamlEnum(schema []string) []string {
	var out []string
	if flow := yamlScalar(schema, "enum"); flow != "" {
		for _, v := range strings.Split(strings.Trim(flow, "[]"), ",") {
			out = append(out, unquote(strings.TrimSpace(v)))
		}
		return out
	}
	for _, l := range yamlChild(schema, "enum") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "- "); ok {
			out = append(out, unquote(strings.TrimSpace(v)))
		}
	}
	return out
}

func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '\'' || s[0] == '"') && s[len(s)-1] == s[0] {
		return s[1 : len(s)-1]
	}
	return s
}
