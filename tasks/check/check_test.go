package check

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/ui"
)

// svcSpec is one service of a test catalog.
type svcSpec struct {
	name, extra string // extra: TOML lines added to the [[services]] table
	infra       bool   // an [[infrastructure]] entry
	port, dev   int
	checks      []string // each the body of one [[services.checks]] table
}

// testCatalog writes a catalog of the given services into a temp folder
// (with a dummy build context) and parses it.
func testCatalog(t testing.TB, project string, svcs []svcSpec) *catalog.Catalog {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "src"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "src", "Dockerfile"), []byte("FROM scratch\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "[project]\nname = %q\nnetwork = \"platform\"\n\n[environments.dev]\nports = \"dev\"\n\n", project)
	for _, s := range svcs {
		port := s.port
		if port == 0 {
			port = 8080
		}
		table, sub := "services", "services.checks"
		if s.infra {
			table, sub = "infrastructure", "infrastructure.checks"
		}
		fmt.Fprintf(&b, "[[%s]]\nname = %q\nsource = \"src\"\nport = %d\n", table, s.name, port)
		if s.dev != 0 {
			fmt.Fprintf(&b, "dev_port = %d\n", s.dev)
		}
		b.WriteString(s.extra + "\n")
		for _, c := range s.checks {
			b.WriteString("  [[" + sub + "]]\n" + c + "\n")
		}
	}
	path := filepath.Join(dir, "services.toml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cat, err := catalog.Load(path)
	if err != nil {
		t.Fatalf("test catalog: %v\n%s", err, b.String())
	}
	return cat
}

func serverPort(t testing.TB, h http.HandlerFunc) int {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	_, p, _ := net.SplitHostPort(srv.Listener.Addr().String())
	n, _ := strconv.Atoi(p)
	return n
}

func closedPort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return p
}

const testSecret = "hunter2-Sup3r-Secret-Value"

func byName(r *Report) map[string]Result {
	m := map[string]Result{}
	for _, res := range r.Results {
		m[res.Service+"/"+res.Check] = res
	}
	return m
}

// TestHTTPVerdicts runs host-side checks against servers that misbehave
// in one way each, and expects each to be reported as what it is.
func TestHTTPVerdicts(t *testing.T) {
	okJSON := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"status":"ok","service":"x","ok":true}`)
	}
	var flakyCalls atomic.Int32
	ports := map[string]int{
		"good":  serverPort(t, okJSON),
		"error": serverPort(t, func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "boom", 500) }),
		"slow": serverPort(t, func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-time.After(2 * time.Second):
			case <-r.Context().Done():
			}
			okJSON(w, r)
		}),
		"wrongbody": serverPort(t, func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "hello there") }),
		"degraded":  serverPort(t, func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, `{"status":"degraded","db":{"up":false}}`) }),
		"refused":   closedPort(t),
		"flaky": serverPort(t, func(w http.ResponseWriter, r *http.Request) {
			if flakyCalls.Add(1) <= 2 {
				http.Error(w, "warming up", 503)
				return
			}
			okJSON(w, r)
		}),
		"leaky": serverPort(t, func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, `{"error":"bad token `+testSecret+`"}`, 401)
		}),
	}
	svcs := []svcSpec{
		{name: "good", checks: []string{`name = "health"` + "\n" + `json_field = "status"` + "\n" + `json_equals = "ok"`}},
		{name: "error", checks: []string{`name = "health"`}},
		{name: "slow", checks: []string{`name = "health"` + "\n" + `timeout = "200ms"` + "\n" + `retries = 0`}},
		{name: "wrongbody", checks: []string{`name = "call"` + "\n" + `contains = "\"ok\":true"`}},
		{name: "degraded", checks: []string{`name = "health"` + "\n" + `json_field = "status"` + "\n" + `json_equals = "ok"`,
			`name = "db"` + "\n" + `json_field = "db.up"` + "\n" + `json_equals = "true"`}},
		{name: "refused", checks: []string{`name = "health"` + "\n" + `retries = 1`}},
		{name: "flaky", checks: []string{`name = "health"`}},
		{name: "leaky", extra: `secrets = { API_TOKEN = "` + testSecret + `" }`, checks: []string{`name = "health"`}},
	}
	for i := range svcs {
		svcs[i].dev = ports[svcs[i].name]
	}
	cat := testCatalog(t, "verdicts", svcs)
	var out bytes.Buffer
	env, _ := cat.Env("dev")
	rep, err := Run(context.Background(), cat, Target{Env: env}, Options{DeclaredOnly: true, Printer: ui.Plain(&out)})
	if err == nil {
		t.Fatal("Run: want an error for the failing checks")
	}
	got := byName(rep)
	want := map[string]struct {
		ok       bool
		detail   string // prefix
		attempts int
	}{
		"good/health":     {true, "", 1},
		"error/health":    {false, "status 500 (want 200): boom", 3},
		"slow/health":     {false, "timeout after 200ms", 1},
		"wrongbody/call":  {false, `body does not contain "\"ok\":true": hello there`, 3},
		"degraded/health": {false, `json field status = "degraded" (want "ok")`, 3},
		"degraded/db":     {false, `json field db.up = "false" (want "true")`, 3},
		"refused/health":  {false, "connection refused", 2},
		"flaky/health":    {true, "", 3},
		"leaky/health":    {false, `status 401 (want 200): {"error":"bad token ***"}`, 3},
	}
	if len(rep.Results) != len(want) {
		t.Fatalf("got %d results, want %d: %+v", len(rep.Results), len(want), rep.Results)
	}
	for name, w := range want {
		r, ok := got[name]
		if !ok {
			t.Errorf("%s: no result", name)
			continue
		}
		if r.OK != w.ok || !strings.HasPrefix(r.Detail, w.detail) || (w.detail == "" && r.Detail != "") || r.Attempts != w.attempts {
			t.Errorf("%s: got ok=%v detail=%q attempts=%d, want ok=%v detail=%q… attempts=%d",
				name, r.OK, r.Detail, r.Attempts, w.ok, w.detail, w.attempts)
		}
		if r.Kind != catalog.CheckHTTP {
			t.Errorf("%s: kind %q", name, r.Kind)
		}
		// The error names the failed checks, without their details:
		// those are in the table and the reports.
		if regexp.MustCompile(`\b`+regexp.QuoteMeta(name)+`\b`).MatchString(err.Error()) == r.OK {
			t.Errorf("error names %s = %v, want %v: %v", name, !r.OK, !r.OK, err)
		}
		if !r.OK && strings.Contains(err.Error(), r.Detail) {
			t.Errorf("error repeats the detail of %s: %v", name, err)
		}
	}
	if rep.Passed != 2 || rep.Failed != 7 {
		t.Errorf("passed %d failed %d, want 2 and 7", rep.Passed, rep.Failed)
	}
	var junit, js bytes.Buffer
	if err := rep.WriteJUnit(&junit); err != nil {
		t.Fatal(err)
	}
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	for what, s := range map[string]string{"printed output": out.String(), "JUnit": junit.String(),
		"JSON": js.String(), "error": err.Error()} {
		if strings.Contains(s, testSecret) {
			t.Errorf("the secret appears in the %s:\n%s", what, s)
		}
	}
	if os.Getenv("CHECK_SHOW") != "" {
		t.Log("\n" + out.String() + junit.String() + js.String())
	}
	if !strings.Contains(out.String(), "7 of 9 checks failed") || !strings.Contains(out.String(), "degraded") {
		t.Errorf("printed table lacks the summary or a row:\n%s", out.String())
	}
	checkJUnit(t, junit.Bytes(), rep)
	checkJSON(t, js.Bytes(), rep)

	dir := t.TempDir()
	if err := WriteReports(dir, rep); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "reports"))
	if len(entries) != 2 {
		t.Errorf("reports folder holds %d files, want testall.xml and testall.json only", len(entries))
	}
	for _, f := range []string{"testall.xml", "testall.json"} {
		fi, err := os.Stat(filepath.Join(dir, "reports", f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o644 {
			t.Errorf("%s mode %v, want 0644", f, fi.Mode().Perm())
		}
	}
	b, _ := os.ReadFile(filepath.Join(dir, "reports", "testall.xml"))
	checkJUnit(t, b, rep)
}

// checkJUnit parses JUnit XML back and compares it with the report.
func checkJUnit(t *testing.T, data []byte, rep *Report) {
	t.Helper()
	var doc struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Suites   []struct {
			Name     string `xml:"name,attr"`
			Tests    int    `xml:"tests,attr"`
			Failures int    `xml:"failures,attr"`
			Cases    []struct {
				Name      string `xml:"name,attr"`
				Classname string `xml:"classname,attr"`
				Failure   *struct {
					Message string `xml:"message,attr"`
				} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("JUnit does not parse: %v\n%s", err, data)
	}
	if doc.Tests != len(rep.Results) || doc.Failures != rep.Failed {
		t.Errorf("JUnit tests=%d failures=%d, want %d and %d", doc.Tests, doc.Failures, len(rep.Results), rep.Failed)
	}
	want := byName(rep)
	seen, failures := 0, 0
	services := map[string]bool{}
	for _, s := range doc.Suites {
		services[s.Name] = true
		sf := 0
		for _, c := range s.Cases {
			r, ok := want[s.Name+"/"+c.Name]
			if !ok {
				t.Errorf("JUnit case %s/%s is not in the report", s.Name, c.Name)
				continue
			}
			seen++
			if c.Classname != rep.Project+"."+s.Name {
				t.Errorf("JUnit classname %q", c.Classname)
			}
			if (c.Failure != nil) == r.OK {
				t.Errorf("JUnit %s/%s: failure element present=%v, but ok=%v", s.Name, c.Name, c.Failure != nil, r.OK)
			}
			if c.Failure != nil {
				sf++
				if c.Failure.Message != r.Detail {
					t.Errorf("JUnit failure message %q, want %q", c.Failure.Message, r.Detail)
				}
			}
		}
		if s.Tests != len(s.Cases) || s.Failures != sf {
			t.Errorf("JUnit suite %s: tests=%d failures=%d, counted %d and %d", s.Name, s.Tests, s.Failures, len(s.Cases), sf)
		}
		failures += sf
	}
	if seen != len(rep.Results) || failures != rep.Failed {
		t.Errorf("JUnit holds %d cases with %d failures, want %d and %d", seen, failures, len(rep.Results), rep.Failed)
	}
	for _, r := range rep.Results {
		if !services[r.Service] {
			t.Errorf("JUnit has no suite for %s", r.Service)
		}
	}
}

func checkJSON(t *testing.T, data []byte, rep *Report) {
	t.Helper()
	var doc struct {
		Schema                int
		Project, Environment  string
		Started               time.Time
		DurationMS            *int64 `json:"duration_ms"`
		OK                    bool
		Total, Passed, Failed int
		Results               []struct {
			Service, Check, Kind, Detail string
			OK                           bool
			Status, Attempts             int
			LatencyMS                    *float64 `json:"latency_ms"`
		}
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("JSON report does not parse: %v", err)
	}
	if doc.Schema != SchemaVersion || doc.Project != rep.Project || doc.Environment != rep.Environment ||
		doc.Started.IsZero() || doc.DurationMS == nil || doc.OK != (rep.Failed == 0) ||
		doc.Total != len(rep.Results) || doc.Passed != rep.Passed || doc.Failed != rep.Failed {
		t.Errorf("JSON header does not match the report: %s", data)
	}
	if len(doc.Results) != len(rep.Results) {
		t.Fatalf("JSON holds %d results, want %d", len(doc.Results), len(rep.Results))
	}
	for i, r := range doc.Results {
		w := rep.Results[i]
		if r.Service != w.Service || r.Check != w.Check || r.Kind != w.Kind || r.OK != w.OK ||
			r.Status != w.Status || r.Attempts != w.Attempts || r.Detail != w.Detail || r.LatencyMS == nil {
			t.Errorf("JSON result %d = %+v, want %+v", i, r, w)
		}
	}
}

// TestRedactSpellings hides a secret however a detail spells it.
func TestRedactSpellings(t *testing.T) {
	r := newRedactor([]string{"a\"b  c", "", "tok"})
	for _, in := range []string{`x a"b  c y`, `x a\"b  c y`, `x a"b c y`, "tok tok"} {
		out := r.redact(in)
		if strings.Contains(out, "a\"b") || strings.Contains(out, `a\"b`) || strings.Contains(out, "tok") {
			t.Errorf("redact(%q) = %q", in, out)
		}
	}
	if got := r.redact("nothing here"); got != "nothing here" {
		t.Errorf("redact changed a clean string: %q", got)
	}
}

// TestUnpublishedHTTPCheck: an http check of a service with no host port
// in the environment fails with advice instead of probing a random port.
func TestUnpublishedHTTPCheck(t *testing.T) {
	cat := testCatalog(t, "unpub", []svcSpec{{name: "hidden", infra: true, checks: []string{`name = "health"`}},
		{name: "shown", dev: closedPort(t)}})
	env, _ := cat.Env("dev")
	rep, err := Run(context.Background(), cat, Target{Env: env}, Options{DeclaredOnly: true})
	if err == nil || rep.Failed != 1 || len(rep.Results) != 1 || !strings.Contains(rep.Results[0].Detail, `use kind = "network"`) {
		t.Fatalf("got %v, %+v", err, rep)
	}
	if _, err := Run(context.Background(), cat, Target{Env: env}, Options{}); err == nil || !strings.Contains(err.Error(), "need a Docker engine") {
		t.Fatalf("container checks without an engine: got %v", err)
	}
}

// BenchmarkRun50 runs 50 http checks against a server that takes 100 ms
// to answer: one Run must take about as long as one check, not 50.
func BenchmarkRun50(b *testing.B) {
	port := serverPort(b, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(100 * time.Millisecond)
		fmt.Fprint(w, `{"status":"ok"}`)
	})
	checks := make([]string, 50)
	for i := range checks {
		checks[i] = fmt.Sprintf("name = \"c%02d\"\njson_field = \"status\"\njson_equals = \"ok\"", i)
	}
	cat := testCatalog(b, "bench", []svcSpec{{name: "svc", dev: port, checks: checks}})
	env, _ := cat.Env("dev")
	var slowest time.Duration
	for b.Loop() {
		start := time.Now()
		rep, err := Run(context.Background(), cat, Target{Env: env}, Options{DeclaredOnly: true})
		if err != nil || rep.Passed != 50 {
			b.Fatalf("Run: %v", err)
		}
		slowest = max(slowest, time.Since(start))
	}
	if slowest > 400*time.Millisecond {
		b.Fatalf("slowest Run took %s, want <= 400ms", slowest)
	}
	b.ReportMetric(slowest.Seconds(), "max-s/op")
}
