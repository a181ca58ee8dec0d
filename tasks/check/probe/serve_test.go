package probe

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestServer(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/bad" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprint(w, `{"status":"ok"}`)
	}))
	defer backend.Close()
	srv := httptest.NewServer(&Server{Token: "sesame"})
	defer srv.Close()

	post := func(method, path, token, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	specs := `[{"id":"a","url":"` + backend.URL + `/health","json_field":"status","json_equals":"ok"},` +
		`{"id":"b","url":"` + backend.URL + `/bad"},{"id":"c","url":"` + backend.URL + `/health","contains":"nope"}]`
	code, body := post(http.MethodPost, PathRun, "sesame", specs)
	if code != http.StatusOK {
		t.Fatalf("run: %d %s", code, body)
	}
	var out []Outcome
	if err := json.Unmarshal([]byte(body), &out); err != nil || len(out) != 3 {
		t.Fatalf("run answered %s (%v)", body, err)
	}
	if o := out[0]; o.ID != "a" || !o.OK || o.Status != 200 || o.Attempts != 1 {
		t.Errorf("a: %+v", o)
	}
	if o := out[1]; o.ID != "b" || o.OK || o.Status != 503 || !strings.HasPrefix(o.Detail, "status 503 (want 200)") {
		t.Errorf("b: %+v", o)
	}
	if o := out[2]; o.ID != "c" || o.OK || !strings.HasPrefix(o.Detail, `body does not contain "nope"`) {
		t.Errorf("c: %+v", o)
	}

	for _, tc := range []struct {
		name, method, path, token, body string
		want                            int
	}{
		{"no token", http.MethodPost, PathRun, "", specs, http.StatusUnauthorized},
		{"wrong token", http.MethodPost, PathRun, "sesamE", specs, http.StatusUnauthorized},
		{"token prefix", http.MethodPost, PathRun, "sesam", specs, http.StatusUnauthorized},
		{"GET", http.MethodGet, PathRun, "sesame", "", http.StatusMethodNotAllowed},
		{"bad JSON", http.MethodPost, PathRun, "sesame", `[{"id":`, http.StatusBadRequest},
		{"unknown path", http.MethodPost, "/exec", "sesame", specs, http.StatusNotFound},
		{"ping", http.MethodGet, PathPing, "", "", http.StatusOK},
	} {
		if code, body := post(tc.method, tc.path, tc.token, tc.body); code != tc.want {
			t.Errorf("%s: status %d (%s), want %d", tc.name, code, strings.TrimSpace(body), tc.want)
		}
	}
}

func TestServerEmptyTokenRefusesAll(t *testing.T) {
	srv := httptest.NewServer(&Server{})
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodPost, srv.URL+PathRun, strings.NewReader("[]"))
	req.Header.Set("Authorization", "Bearer ")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("status %d, want 401", resp.StatusCode)
	}
	if err := (&Server{}).Serve(context.Background(), nil); err == nil {
		t.Error("Serve without a token: want an error")
	}
}

// An idle server shuts down by itself; one that is asked again keeps going.
func TestServeIdle(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Pings come every 50ms; an idle time twenty times that keeps a
	// starved scheduler on a busy machine from ending the server early.
	s := &Server{Token: "x", Idle: time.Second}
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- s.Serve(context.Background(), l) }()
	url := "http://" + l.Addr().String() + PathPing
	// Pings keep it alive past its idle time.
	for time.Since(start) < 2*time.Second {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatalf("ping while in use: %v", err)
		}
		resp.Body.Close()
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("an idle server did not stop")
	}
	if _, err := http.Get(url); err == nil {
		t.Error("the server still answers after it stopped")
	}
}

func TestServeCancel(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&Server{Token: "x"}).Serve(ctx, l) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("Serve did not return after its context ended")
	}
}
