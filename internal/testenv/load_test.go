package testenv

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// counter is a test server that fails every third request and records
// what it saw per mode, so that the load's counts can be held to it.
type counter struct {
	mu      sync.Mutex
	n       int
	total   map[string]int
	failed  map[string]int
	remotes map[string]map[string]bool // mode -> client addresses
	bad     []string                   // requests that were not what the spec says
}

func newCounter() *counter {
	return &counter{total: map[string]int{}, failed: map[string]int{}, remotes: map[string]map[string]bool{}}
}

func (c *counter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	mode := r.Header.Get("X-Load-Mode")
	c.mu.Lock()
	c.n++
	fail := c.n%3 == 0
	c.total[mode]++
	if fail {
		c.failed[mode]++
	}
	if c.remotes[mode] == nil {
		c.remotes[mode] = map[string]bool{}
	}
	c.remotes[mode][r.RemoteAddr] = true
	if r.Method != http.MethodPost || string(body) != "ping" {
		c.bad = append(c.bad, fmt.Sprintf("%s %q", r.Method, body))
	}
	version := "v1"
	if c.n%2 == 0 {
		version = "v2"
	}
	c.mu.Unlock()
	w.Header().Set("X-Version", version)
	if fail {
		http.Error(w, "every third request fails", http.StatusInternalServerError)
		return
	}
	fmt.Fprintln(w, "ok")
}

func waitDone(t *testing.T, l *Load) LoadStats {
	t.Helper()
	select {
	case <-l.Done():
	case <-time.After(time.Minute):
		t.Fatal("the load did not end by itself")
	}
	return l.Stop()
}

// The counts are exact: every request the server answered is counted
// once, in its mode, and the failures are the ones the server made.
func TestLoadCountsExactly(t *testing.T) {
	c := newCounter()
	srv := httptest.NewServer(c)
	defer srv.Close()
	l, err := NewLoad(LoadSpec{Targets: []string{srv.URL + "/x"}, Rate: 200,
		MaxRequests: 90, Method: http.MethodPost, Body: "ping", Header: "X-Version", Concurrency: 4})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := waitDone(t, l)
	t.Log(st)
	c.mu.Lock()
	defer c.mu.Unlock()
	if st.Reason != EndedMaxRequests || st.Total != 90 || c.n != 90 {
		t.Fatalf("ended by %s after %d requests (server saw %d), want max requests after 90", st.Reason, st.Total, c.n)
	}
	if len(c.bad) > 0 {
		t.Errorf("the server got %v, want POST %q", c.bad, "ping")
	}
	failed := 0
	for _, mode := range []LoadMode{NewConn, KeepAlive} {
		s := st.Stream(srv.URL+"/x", mode)
		if s.Total != c.total[string(mode)] || s.Failed != c.failed[string(mode)] {
			t.Errorf("%s: %d requests, %d failed; the server saw %d and failed %d", mode, s.Total, s.Failed,
				c.total[string(mode)], c.failed[string(mode)])
		}
		if s.Total == 0 || s.P50 <= 0 || s.P99 < s.P50 {
			t.Errorf("%s: %d requests, p50 %s, p99 %s", mode, s.Total, s.P50, s.P99)
		}
		if want := min(s.Failed, MaxKeptErrors); len(s.Errors) != want || want > 0 && !strings.Contains(s.Errors[0], "status 500: every third request fails") {
			t.Errorf("%s: kept errors %q, want the first %d", mode, s.Errors, want)
		}
		if s.Header["v1"]+s.Header["v2"] != s.Total-s.Failed {
			t.Errorf("%s: header counts %v for %d successes", mode, s.Header, s.Total-s.Failed)
		}
		failed += s.Failed
	}
	if st.Failed != failed || failed != 30 {
		t.Errorf("%d failed in all (streams: %d), want 30: every third of 90", st.Failed, failed)
	}
	// NewConn opens a connection per request, KeepAlive reuses them.
	if n, want := len(c.remotes[string(NewConn)]), c.total[string(NewConn)]; n != want {
		t.Errorf("new-conn: %d client connections for %d requests", n, want)
	}
	// (Go's client returns a connection to its pool just after the body is
	// read, so a request may now and then open another: not 4 at most.)
	if n := len(c.remotes[string(KeepAlive)]); n > c.total[string(KeepAlive)]/2 {
		t.Errorf("keep-alive: %d client connections for %d requests, want them reused", n, c.total[string(KeepAlive)])
	}
}

// A load nobody stops ends by itself at its safety cap, says so, and
// never sends faster than its rate.
func TestLoadSafetyCap(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { n.Add(1) }))
	defer srv.Close()
	l, err := NewLoad(LoadSpec{Targets: []string{srv.URL}, Rate: 50})
	if err != nil {
		t.Fatal(err)
	}
	if l.safetyCap != SafetyCap || l.spec.MaxRequests != MaxLoadRequests {
		t.Fatalf("bounds %s and %d requests, want %s and %d", l.safetyCap, l.spec.MaxRequests, SafetyCap, MaxLoadRequests)
	}
	l.safetyCap = 200 * time.Millisecond // the cap itself, shortened to be seen
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := waitDone(t, l)
	if st.Reason != EndedSafetyCap || st.Failed != 0 || int64(st.Total) != n.Load() {
		t.Fatalf("%s; the server saw %d", st, n.Load())
	}
	// 50/s for at most 0.2 s: the first request at once, then one per
	// 20 ms at the most (fewer on a slow machine).
	for _, s := range st.Streams {
		if s.Total < 1 || s.Total > 11 {
			t.Errorf("%s sent %d requests in 200 ms at 50/s", s.Mode, s.Total)
		}
	}
	if again := l.Stop(); again.Total != st.Total || again.Reason != EndedSafetyCap {
		t.Errorf("a second Stop gives %s", again)
	}
}

// During brackets the change with requests: every stream has completed
// some before fn starts and more after it returns, whatever the time
// either takes, and the load runs as long as fn does.
func TestDuringBracketsTheChange(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { n.Add(1) }))
	defer srv.Close()
	var atStart int64
	release := make(chan struct{})
	go func() {
		// fn returns only once the load has gone on beyond its start.
		for n.Load() < 40 {
			time.Sleep(5 * time.Millisecond)
		}
		close(release)
	}()
	st := During(t, LoadSpec{Targets: []string{srv.URL}, Rate: 200}, func() {
		atStart = n.Load()
		<-release
	})
	if st.Reason != EndedStopped || st.Failed != 0 {
		t.Fatalf("%s", st)
	}
	for _, s := range st.Streams {
		if s.Total < 3 {
			t.Errorf("%s: %d requests", s.Mode, s.Total)
		}
	}
	if atStart < 6 || int64(st.Total) < 40+6 || int64(st.Total) != n.Load() {
		t.Errorf("%d requests answered when the change started, %d in all (server: %d): want 3 per stream before it and after it",
			atStart, st.Total, n.Load())
	}
}

// Stop ends a running load at once; a context ends it too.
func TestLoadStop(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	spec := LoadSpec{Targets: []string{srv.URL}}
	l, err := NewLoad(spec)
	if err != nil {
		t.Fatal(err)
	}
	if st := l.Stop(); st.Total != 0 {
		t.Errorf("Stop before Start: %s", st)
	}
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := l.Start(context.Background()); err == nil {
		t.Error("a second Start is accepted")
	}
	if st := l.Stop(); st.Reason != EndedStopped || st.Failed != 0 {
		t.Errorf("Stop: %s", st)
	}

	ctx, cancel := context.WithCancel(context.Background())
	l, _ = NewLoad(spec)
	if err := l.Start(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	if st := waitDone(t, l); st.Reason != EndedCanceled {
		t.Errorf("canceled context: %s", st)
	}
}

// Connection errors and redirects are failures, with their text kept.
func TestLoadFailures(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String() + "/"
	ln.Close()
	redirect := httptest.NewServer(http.RedirectHandler("http://127.0.0.1:1/elsewhere", http.StatusFound))
	defer redirect.Close()

	l, err := NewLoad(LoadSpec{Targets: []string{closed, redirect.URL}, Rate: 100, MaxRequests: 40})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := waitDone(t, l)
	if st.Total != 40 || st.Failed != 40 {
		t.Fatalf("%s\nwant all 40 requests failed", st)
	}
	for _, s := range st.Streams {
		want := "connection refused"
		if s.Target == redirect.URL {
			want = "status 302"
		}
		if len(s.Errors) != min(s.Total, MaxKeptErrors) || !strings.Contains(s.Errors[0], want) {
			t.Errorf("%s %s: errors %q, want %q", s.Target, s.Mode, s.Errors, want)
		}
	}
}

// Only 127.0.0.1 and the test hosts may be loaded, within bounds.
func TestLoadRefuses(t *testing.T) {
	ok := LoadSpec{Targets: []string{"http://127.0.0.1:9/"}, MaxRequests: 10}
	if _, err := NewLoad(ok); err != nil {
		t.Fatalf("good spec refused: %v", err)
	}
	for name, tc := range map[string]struct {
		change func(*LoadSpec)
		want   string
	}{
		"other address":  {func(s *LoadSpec) { s.Targets = []string{"http://10.1.2.3:80/"} }, "neither 127.0.0.1 nor a test host"},
		"ipv6 loopback":  {func(s *LoadSpec) { s.Targets = []string{"http://[::1]:80/"} }, "neither 127.0.0.1 nor a test host"},
		"https":          {func(s *LoadSpec) { s.Targets = []string{"https://127.0.0.1/"} }, "only http://"},
		"user":           {func(s *LoadSpec) { s.Targets = []string{"http://u:p@127.0.0.1/"} }, "only http://"},
		"no targets":     {func(s *LoadSpec) { s.Targets = nil }, "no targets"},
		"negative max":   {func(s *LoadSpec) { s.MaxRequests = -1 }, "must end by itself"},
		"too many":       {func(s *LoadSpec) { s.MaxRequests = MaxLoadRequests + 1 }, "must end by itself"},
		"rate":           {func(s *LoadSpec) { s.Rate = MaxLoadRate + 1 }, "rate"},
		"host not an ip": {func(s *LoadSpec) { s.Hosts = []string{"example.com"} }, "not an IP address"},
	} {
		t.Run(name, func(t *testing.T) {
			s := ok
			tc.change(&s)
			if _, err := NewLoad(s); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
	host := ok
	host.Targets = []string{"http://10.1.2.3:80/"}
	host.Hosts = []string{"10.1.2.3"}
	if _, err := NewLoad(host); err != nil {
		t.Errorf("a test host's address is refused: %v", err)
	}
}
