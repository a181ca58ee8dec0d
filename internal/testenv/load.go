package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// LoadMode is how a load generator's client reaches a target.
type LoadMode string

// The two modes every target is loaded in at once.
const (
	// NewConn opens a new TCP connection for every request: what a
	// client sees when a listener stops accepting.
	NewConn LoadMode = "new-conn"
	// KeepAlive sends the requests over reused connections: what a
	// client sees when a server closes a connection under it.
	KeepAlive LoadMode = "keep-alive"
)

// loadModes is the order of the modes in LoadStats.Streams.
var loadModes = []LoadMode{NewConn, KeepAlive}

// Bounds of a load: a test cannot turn the generator into anything
// bigger by mistake, and a load a test forgot to stop still ends.
//
// A load has no duration of its own: a test runs it until what it watches
// is over and then stops it, however long that takes on a slow or busy
// machine. SafetyCap and MaxLoadRequests only end a load that nobody
// stopped; During fails a test whose load ended by one of them, saying so.
const (
	// SafetyCap ends a load that was never stopped.
	SafetyCap       = 10 * time.Minute
	MaxLoadRequests = 250_000
	MaxLoadRate     = 1000
	// MaxKeptErrors is how many failure texts a stream keeps.
	MaxKeptErrors = 5
)

// The reasons a load ends (LoadStats.Reason).
const (
	EndedStopped     = "stopped"
	EndedCanceled    = "canceled"
	EndedSafetyCap   = "safety cap"
	EndedMaxRequests = "max requests"
)

// LoadSpec describes a bounded HTTP load on test servers.
type LoadSpec struct {
	// Targets are http:// URLs. Each must resolve to 127.0.0.1 or to an
	// address in Hosts; anything else is refused, before and at every
	// connection.
	Targets []string
	// Hosts are further addresses targets may resolve to: a test host's,
	// such as a second engine's network namespace.
	Hosts []string
	// Rate is the requests per second of each mode at each target
	// (default 50): a target receives 2 × Rate.
	Rate int
	// MaxRequests ends the load once that many requests were sent, over
	// every target and mode (default and at most MaxLoadRequests): a load
	// that is meant to send a given number of requests and end by itself.
	MaxRequests int
	// Method is the request method (default GET). Go's client retries a
	// GET on a keep-alive connection the server closed; it does not
	// retry a POST, which shows such races.
	Method string
	// Body is sent with every request.
	Body string
	// Header names a response header whose values are counted per stream,
	// e.g. the version of the backend that answered.
	Header string
	// Timeout bounds each request (default 15 s).
	Timeout time.Duration
	// Concurrency bounds the requests in flight per target and mode
	// (default 16); when all are busy, the rate drops.
	Concurrency int
}

// StreamStats is what one target received in one mode.
type StreamStats struct {
	Target string
	Mode   LoadMode
	// Total counts the requests sent, Failed those that got a non-2xx
	// status or no complete response.
	Total, Failed int
	// Errors holds the first MaxKeptErrors failures.
	Errors []string
	// P50 and P99 are latency percentiles over every request (nearest
	// rank).
	P50, P99 time.Duration
	// Header counts the values of LoadSpec.Header in the responses.
	Header map[string]int
}

// LoadStats is the outcome of a load.
type LoadStats struct {
	// Streams has one entry per target and mode, in Targets order, the
	// NewConn one first.
	Streams       []StreamStats
	Total, Failed int
	// Reason says why the load ended: EndedStopped (Stop),
	// EndedCanceled (Start's context), EndedMaxRequests or
	// EndedSafetyCap.
	Reason string
}

// Stream returns the stats of target in mode (zero if there is none).
func (s LoadStats) Stream(target string, mode LoadMode) StreamStats {
	for _, st := range s.Streams {
		if st.Target == target && st.Mode == mode {
			return st
		}
	}
	return StreamStats{}
}

// String is a summary for test logs, one line per stream.
func (s LoadStats) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "load ended by %s: %d requests, %d failed", s.Reason, s.Total, s.Failed)
	for _, st := range s.Streams {
		fmt.Fprintf(&b, "\n  %s %-10s total %d failed %d p50 %s p99 %s", st.Target, st.Mode, st.Total, st.Failed,
			st.P50.Round(10*time.Microsecond), st.P99.Round(10*time.Microsecond))
		if len(st.Header) > 0 {
			fmt.Fprintf(&b, " %v", st.Header)
		}
		if len(st.Errors) > 0 {
			fmt.Fprintf(&b, " errors %q", st.Errors)
		}
	}
	return b.String()
}

// Load is a running (or finished) load generator.
type Load struct {
	spec    LoadSpec
	allowed []netip.Addr
	streams []*stream

	// safetyCap is SafetyCap but in this package's own tests of it.
	safetyCap time.Duration

	sent     atomic.Int64
	started  atomic.Bool
	cancel   context.CancelFunc
	reason   string
	reasonMu sync.Mutex
	done     chan struct{}
}

type stream struct {
	target string
	mode   LoadMode
	client *http.Client

	mu      sync.Mutex
	total   int
	failed  int
	errors  []string
	latency []time.Duration
	header  map[string]int
}

// NewLoad checks spec and prepares a load; nothing is sent before Start.
func NewLoad(spec LoadSpec) (*Load, error) {
	if spec.Rate == 0 {
		spec.Rate = 50
	}
	if spec.Method == "" {
		spec.Method = http.MethodGet
	}
	if spec.Timeout == 0 {
		spec.Timeout = 15 * time.Second
	}
	if spec.Concurrency == 0 {
		spec.Concurrency = 16
	}
	if spec.MaxRequests == 0 {
		spec.MaxRequests = MaxLoadRequests
	}
	switch {
	case len(spec.Targets) == 0:
		return nil, errors.New("load: no targets")
	case spec.Rate < 1 || spec.Rate > MaxLoadRate:
		return nil, fmt.Errorf("load: rate %d per second is outside 1..%d", spec.Rate, MaxLoadRate)
	case spec.MaxRequests < 0 || spec.MaxRequests > MaxLoadRequests:
		return nil, fmt.Errorf("load: max requests %d is outside 1..%d: a load must end by itself", spec.MaxRequests, MaxLoadRequests)
	case spec.Concurrency < 1 || spec.Timeout < 0:
		return nil, fmt.Errorf("load: concurrency %d, timeout %s", spec.Concurrency, spec.Timeout)
	}
	l := &Load{spec: spec, safetyCap: SafetyCap, allowed: []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1})}, done: make(chan struct{})}
	for _, h := range spec.Hosts {
		a, err := netip.ParseAddr(h)
		if err != nil {
			return nil, fmt.Errorf("load: test host %q is not an IP address", h)
		}
		l.allowed = append(l.allowed, a.Unmap())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, target := range spec.Targets {
		u, err := url.Parse(target)
		if err != nil {
			return nil, fmt.Errorf("load: target %q: %w", target, err)
		}
		if u.Scheme != "http" || u.User != nil || u.Hostname() == "" {
			return nil, fmt.Errorf("load: target %q: only http://host:port/path URLs, without user information", target)
		}
		if _, err := l.resolve(ctx, u.Hostname()); err != nil {
			return nil, fmt.Errorf("load: target %s: %w", target, err)
		}
		for _, mode := range loadModes {
			l.streams = append(l.streams, &stream{target: target, mode: mode, client: l.client(mode), header: map[string]int{}})
		}
	}
	return l, nil
}

// resolve returns host's addresses when every one of them may be loaded.
func (l *Load) resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else if addrs, err = net.DefaultResolver.LookupNetIP(ctx, "ip", host); err != nil {
		return nil, err
	}
	for i, a := range addrs {
		addrs[i] = a.Unmap()
		if !slices.Contains(l.allowed, addrs[i]) {
			return nil, fmt.Errorf("%s resolves to %s, which is neither 127.0.0.1 nor a test host %v: refusing to load it", host, a, l.spec.Hosts)
		}
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("%s resolves to no address", host)
	}
	return addrs, nil
}

// client returns the HTTP client of one stream. It dials only allowed
// addresses, uses no proxy from the environment and follows no redirect
// (a 3xx is a failure like any other non-2xx status).
func (l *Load) client(mode LoadMode) *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			addrs, err := l.resolve(ctx, host)
			if err != nil {
				return nil, err
			}
			return dialer.DialContext(ctx, network, net.JoinHostPort(addrs[0].String(), port))
		},
		DisableKeepAlives:   mode == NewConn,
		MaxIdleConnsPerHost: l.spec.Concurrency,
		IdleConnTimeout:     90 * time.Second,
	}
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// Start sends the load in the background until Stop is called, ctx
// ends, MaxRequests are sent or the safety cap is reached.
func (l *Load) Start(ctx context.Context) error {
	run, cancel := context.WithTimeout(ctx, l.safetyCap)
	l.reasonMu.Lock()
	if l.started.Load() {
		l.reasonMu.Unlock()
		cancel()
		return errors.New("load: started twice")
	}
	l.cancel = cancel
	l.started.Store(true)
	l.reasonMu.Unlock()
	var dispatchers, inflight sync.WaitGroup
	for _, s := range l.streams {
		dispatchers.Go(func() { l.dispatch(run, s, &inflight) })
	}
	go func() {
		dispatchers.Wait()
		switch {
		case errors.Is(run.Err(), context.DeadlineExceeded):
			l.end(EndedSafetyCap)
		default:
			l.end(EndedCanceled)
		}
		inflight.Wait()
		cancel()
		for _, s := range l.streams {
			s.client.CloseIdleConnections()
		}
		close(l.done)
	}()
	return nil
}

// end records why the load ended (the first reason wins) and stops it.
func (l *Load) end(reason string) {
	l.reasonMu.Lock()
	defer l.reasonMu.Unlock()
	if l.reason == "" {
		l.reason = reason
	}
	if l.cancel != nil {
		l.cancel()
	}
}

// dispatch sends one stream's requests at the spec's rate.
func (l *Load) dispatch(ctx context.Context, s *stream, inflight *sync.WaitGroup) {
	tick := time.NewTicker(time.Second / time.Duration(l.spec.Rate))
	defer tick.Stop()
	slots := make(chan struct{}, l.spec.Concurrency)
	for {
		select {
		case <-ctx.Done():
			return
		case slots <- struct{}{}:
		}
		if ctx.Err() != nil {
			<-slots
			return
		}
		if l.sent.Add(1) > int64(l.spec.MaxRequests) {
			l.end(EndedMaxRequests)
			return
		}
		inflight.Go(func() {
			defer func() { <-slots }()
			// Not ctx: the end of the load must not fail the requests
			// in flight; each has its own timeout.
			l.send(context.WithoutCancel(ctx), s)
		})
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// send makes one request and records its outcome.
func (l *Load) send(ctx context.Context, s *stream) {
	ctx, cancel := context.WithTimeout(ctx, l.spec.Timeout)
	defer cancel()
	var body io.Reader
	if l.spec.Body != "" {
		body = strings.NewReader(l.spec.Body)
	}
	start := time.Now()
	var fail, value string
	req, err := http.NewRequestWithContext(ctx, l.spec.Method, s.target, body)
	if err == nil {
		req.Header.Set("X-Load-Mode", string(s.mode))
		var resp *http.Response
		if resp, err = s.client.Do(req); err == nil {
			var b []byte
			b, err = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			if l.spec.Header != "" {
				value = resp.Header.Get(l.spec.Header)
			}
			if err == nil && (resp.StatusCode < 200 || resp.StatusCode > 299) {
				fail = fmt.Sprintf("status %d: %s", resp.StatusCode, strings.TrimSpace(string(b[:min(len(b), 200)])))
			}
		}
	}
	if err != nil {
		fail = err.Error()
	}
	lat := time.Since(start)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total++
	s.latency = append(s.latency, lat)
	if fail != "" {
		s.failed++
		if len(s.errors) < MaxKeptErrors {
			s.errors = append(s.errors, fmt.Sprintf("%s: %s", start.Format("15:04:05.000"), fail))
		}
		return
	}
	if l.spec.Header != "" {
		s.header[value]++
	}
}

// Done is closed when the load has ended by itself (MaxRequests or the
// safety cap) or by ctx, and every request in flight has finished.
func (l *Load) Done() <-chan struct{} { return l.done }

// Stop ends the load if it still runs, waits for the requests in flight
// and returns the stats. It may be called more than once, and before
// Start (then nothing was sent).
func (l *Load) Stop() LoadStats {
	if l.started.Load() {
		l.end(EndedStopped)
		<-l.done
	}
	var out LoadStats
	l.reasonMu.Lock()
	out.Reason = l.reason
	l.reasonMu.Unlock()
	for _, s := range l.streams {
		s.mu.Lock()
		st := StreamStats{Target: s.target, Mode: s.mode, Total: s.total, Failed: s.failed,
			Errors: slices.Clone(s.errors), Header: map[string]int{}}
		for k, v := range s.header {
			st.Header[k] = v
		}
		lat := slices.Clone(s.latency)
		s.mu.Unlock()
		slices.Sort(lat)
		st.P50, st.P99 = percentile(lat, 0.50), percentile(lat, 0.99)
		out.Streams = append(out.Streams, st)
		out.Total += st.Total
		out.Failed += st.Failed
	}
	return out
}

// percentile is the nearest-rank percentile of sorted durations.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(i, 0)]
}

// answered returns how many requests each stream has completed.
func (l *Load) answered() []int {
	n := make([]int, len(l.streams))
	for i, s := range l.streams {
		s.mu.Lock()
		n[i] = s.total
		s.mu.Unlock()
	}
	return n
}

// awaitEach waits until every stream has completed n more requests than
// it had when called, or the load has ended: a mark in the order of
// events ("the load ran on every port and mode across this point"), not a
// span of time.
func (l *Load) awaitEach(n int) {
	base := l.answered()
	for {
		now, ok := l.answered(), true
		for i := range now {
			if now[i] < base[i]+n {
				ok = false
			}
		}
		if ok {
			return
		}
		select {
		case <-l.done:
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// During runs fn under the load spec describes and returns what the load
// saw, logged in the test's output. Every stream has completed requests
// before fn starts and again after it returns, so that a change breaking
// the ports at its edges shows too, however slow the machine. The load
// runs as long as fn does; one that ended before fn did (a safety bound
// reached) fails the test.
func During(t testing.TB, spec LoadSpec, fn func()) LoadStats {
	t.Helper()
	return DuringAll(t, []LoadSpec{spec}, fn)
}

// DuringAll is During with several loads at once (say, GET on some paths
// and POST on others), their stats merged: streams in specs order, totals
// summed, and the reason of the first load that did not end by Stop.
func DuringAll(t testing.TB, specs []LoadSpec, fn func()) LoadStats {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var loads []*Load
	for _, spec := range specs {
		l, err := NewLoad(spec)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Start(ctx); err != nil {
			t.Fatal(err)
		}
		defer l.Stop()
		loads = append(loads, l)
	}
	for _, l := range loads {
		l.awaitEach(3)
	}
	fn()
	for _, l := range loads {
		l.awaitEach(3)
	}
	all := LoadStats{Reason: EndedStopped}
	for _, l := range loads {
		st := l.Stop()
		all.Streams = append(all.Streams, st.Streams...)
		all.Total += st.Total
		all.Failed += st.Failed
		if st.Reason != EndedStopped && all.Reason == EndedStopped {
			all.Reason = st.Reason
		}
		if st.Reason != EndedStopped {
			t.Errorf("the load ended by its %s before the change did: that is a safety bound (%s, %d requests), not a window to finish in; "+
				"the change ran for longer than a change should", st.Reason, SafetyCap, l.spec.MaxRequests)
		}
	}
	t.Logf("%s", all)
	return all
}

// NoFailures fails the test when a load saw a failed request, or none at
// all, naming what ran under it.
func NoFailures(t testing.TB, what string, st LoadStats) {
	t.Helper()
	if st.Failed != 0 || st.Total == 0 {
		t.Errorf("%s: %d of %d requests failed:\n%s", what, st.Failed, st.Total, st)
	}
}
