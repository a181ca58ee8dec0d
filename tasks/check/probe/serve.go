package probe

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// RunAll performs every spec at once with one client and returns the
// outcomes in spec order. Both modes of the network probe use it, so a
// check judged by a one-shot probe and by a probe server is judged alike.
func RunAll(ctx context.Context, specs []Spec) []Outcome {
	// A client per batch: a long-running server must not keep connections
	// to a container that compose has since replaced (new address, same
	// name).
	c := Client()
	defer c.CloseIdleConnections()
	out := make([]Outcome, len(specs))
	var wg sync.WaitGroup
	for i, s := range specs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = Do(ctx, c, s)
		}()
	}
	wg.Wait()
	return out
}

// Paths of the probe server.
const (
	// PathRun takes a POST of a JSON array of Spec and answers a JSON
	// array of Outcome, in the same order.
	PathRun = "/run"
	// PathPing answers 200 once the server accepts checks.
	PathPing = "/ping"
)

// maxSpecsBody bounds the body of a PathRun request.
const maxSpecsBody = 8 << 20

// maxRun bounds one batch on the server side, in case the caller is gone
// without closing its connection.
const maxRun = 5 * time.Minute

// Server answers check batches over HTTP: the long-running mode of the
// network probe. Every request but PathPing must carry
// "Authorization: Bearer <Token>".
type Server struct {
	// Token is the shared secret callers present. It must not be empty:
	// the server can reach everything on the stack's network, and its port
	// may be reachable by other users of the host.
	Token string
	// Idle, when positive, ends Serve after that long without a request,
	// so a forgotten probe does not hold the stack's network forever.
	Idle time.Duration

	last     atomic.Int64 // unix nanoseconds of the last request
	inflight atomic.Int64
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.inflight.Add(1)
	defer func() {
		s.last.Store(time.Now().UnixNano())
		s.inflight.Add(-1)
	}()
	s.last.Store(time.Now().UnixNano())
	switch r.URL.Path {
	case PathPing:
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
		return
	case PathRun:
	default:
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	const prefix = "Bearer "
	auth := r.Header.Get("Authorization")
	if s.Token == "" || len(auth) <= len(prefix) || auth[:len(prefix)] != prefix ||
		subtle.ConstantTimeCompare([]byte(auth[len(prefix):]), []byte(s.Token)) != 1 {
		http.Error(w, "bad or missing token", http.StatusUnauthorized)
		return
	}
	var specs []Spec
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxSpecsBody))
	if err := dec.Decode(&specs); err != nil {
		http.Error(w, "bad spec: "+err.Error(), http.StatusBadRequest)
		return
	}
	// The request context ends when the caller hangs up: its checks stop.
	ctx, cancel := context.WithTimeout(r.Context(), maxRun)
	defer cancel()
	out := RunAll(ctx, specs)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// Serve answers on l until ctx ends or the server has been idle for
// s.Idle; either way it returns nil after a graceful shutdown.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	if s.Token == "" {
		return errors.New("probe server: no token")
	}
	s.last.Store(time.Now().UnixNano())
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	tick := time.Hour
	if s.Idle > 0 {
		tick = max(s.Idle/10, 10*time.Millisecond)
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-ctx.Done():
			return s.shutdown(srv, done)
		case <-t.C:
			idle := time.Since(time.Unix(0, s.last.Load()))
			if s.Idle > 0 && idle >= s.Idle && s.inflight.Load() == 0 {
				return s.shutdown(srv, done)
			}
		}
	}
}

func (s *Server) shutdown(srv *http.Server, done chan error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := srv.Shutdown(ctx)
	if serr := <-done; !errors.Is(serr, http.ErrServerClosed) && serr != nil {
		return serr
	}
	return err
}
