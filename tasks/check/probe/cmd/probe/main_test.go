package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/maestro-platform/deploy/tasks/check/probe"
)

// TestMain lets the tests run the command itself: the test binary is the
// probe when PROBE_TEST_MAIN is set.
func TestMain(m *testing.M) {
	if os.Getenv("PROBE_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestWriteText(t *testing.T) {
	var b bytes.Buffer
	err := writeText(&b, []probe.Outcome{
		{ID: "0", OK: true, Status: 200},
		{ID: "1", Status: 500, Detail: "status 500 (want 200): line one\nline\ttwo\x1b[31m"},
		{ID: "2\t3", Detail: "connection refused"},
		{ID: "4"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "0\tPASS\tHTTP 200\n" +
		"1\tFAIL\tstatus 500 (want 200): line one line two [31m\n" +
		"2 3\tFAIL\tconnection refused\n" +
		"4\tFAIL\tfailed without a reason\n"
	if b.String() != want {
		t.Errorf("got:\n%q\nwant:\n%q", b.String(), want)
	}
}

// run runs the probe command with args and returns its stdout and exit
// code.
func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "PROBE_TEST_MAIN=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

// The command judges like testAll (status, body, JSON field) and prints
// one line per spec, in order, with -text, and JSON without it.
func TestTextMode(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/down" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_, _ = w.Write([]byte(`{"status":"ok","deps":{"db":"degraded"}}`))
	}))
	defer srv.Close()
	specs, _ := json.Marshal([]probe.Spec{
		{ID: "a", URL: srv.URL + "/health", JSONField: "status", JSONEquals: "ok"},
		{ID: "b", URL: srv.URL + "/health", JSONField: "deps.db", JSONEquals: "ok"},
		{ID: "c", URL: srv.URL + "/down"},
		{ID: "d", URL: srv.URL + "/health", Contains: "nope"},
	})
	out, stderr, code := run(t, "-text", string(specs))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	want := []string{
		"a\tPASS\tHTTP 200",
		"b\tFAIL\tjson field deps.db = \"degraded\" (want \"ok\")",
		"c\tFAIL\tstatus 503 (want 200): {\"status\":\"ok\",\"deps\":{\"db\":\"degraded\"}}",
		"d\tFAIL\tbody does not contain \"nope\": {\"status\":\"ok\",\"deps\":{\"db\":\"degraded\"}}",
	}
	if got := strings.Split(strings.TrimSuffix(out, "\n"), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", out, strings.Join(want, "\n"))
	}

	out, _, code = run(t, string(specs))
	var outcomes []probe.Outcome
	if code != 0 || json.Unmarshal([]byte(out), &outcomes) != nil || len(outcomes) != 4 || !outcomes[0].OK || outcomes[1].OK {
		t.Errorf("JSON mode: exit %d, %s", code, out)
	}
}

// An empty list prints nothing and succeeds: test-all.sh tells a probe
// that knows -text from an older one this way.
func TestTextModeEmpty(t *testing.T) {
	out, stderr, code := run(t, "-text", "[]")
	if code != 0 || out != "" {
		t.Errorf("-text '[]': exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	if _, stderr, code := run(t, "-text", "not json"); code != 2 || !strings.Contains(stderr, "bad spec") {
		t.Errorf("-text with bad specs: exit %d, stderr %q", code, stderr)
	}
}
