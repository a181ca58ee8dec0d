// Package svc is the whole of each sample Maestro service: a small HTTP
// server with a health endpoint and calls to its upstreams by service name,
// so that a deployed stack can prove its services talk to each other.
//
// Configuration comes from the environment:
//
//	SERVICE_NAME  the name reported by /health
//	PORT          the port to listen on
//	UPSTREAMS     name=url pairs, comma separated, that /call/{name} reaches
//	DATA_DIR      (state store) where /kv values are kept
//	FAIL_HEALTH   when set, /health answers 503 (used by tests of bad releases)
//
// A secret NAME comes from the environment variable NAME or, the
// convention of official images that swarm's Docker secrets follow, from
// the file NAME_FILE names. POST /secret/NAME with a candidate value
// answers 204 when it is the secret's value and 403 when not, so that a
// test can prove a value arrived without the service ever showing it.
package svc

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Main runs the service until SIGTERM, or with -healthcheck probes a
// running one and exits 0 when it is healthy: scratch images have no curl,
// so the binary is its own compose healthcheck.
func Main() {
	healthcheck := flag.Bool("healthcheck", false, "probe the running service's /health and exit")
	flag.Parse()
	port := getenv("PORT", "8080")
	if *healthcheck {
		os.Exit(probe("http://127.0.0.1:" + port + "/health"))
	}
	name := getenv("SERVICE_NAME", "service")
	s := &server{name: name, upstreams: parseUpstreams(os.Getenv("UPSTREAMS")),
		dataDir: os.Getenv("DATA_DIR"), failHealth: os.Getenv("FAIL_HEALTH") != "",
		client: &http.Client{Timeout: 3 * time.Second}, kv: map[string]string{}}
	srv := &http.Server{Addr: ":" + port, Handler: s.routes(), ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	log.Printf("%s listening on :%s", name, port)
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
}

func getenv(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func probe(url string) int {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(os.Stderr, "status", resp.StatusCode)
		return 1
	}
	return 0
}

func parseUpstreams(s string) map[string]string {
	out := map[string]string{}
	for _, pair := range strings.Split(s, ",") {
		if name, url, ok := strings.Cut(strings.TrimSpace(pair), "="); ok {
			out[name] = strings.TrimRight(url, "/")
		}
	}
	return out
}

type server struct {
	name       string
	upstreams  map[string]string
	dataDir    string
	failHealth bool
	client     *http.Client
	mu         sync.Mutex
	kv         map[string]string
}

func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", s.health)
	mux.HandleFunc("GET /call/{name}", s.call)
	mux.HandleFunc("GET /api/status", s.status)
	mux.HandleFunc("GET /env/{key}", s.env)
	mux.HandleFunc("POST /secret/{name}", s.secret)
	mux.HandleFunc("GET /kv/{key}", s.get)
	mux.HandleFunc("PUT /kv/{key}", s.put)
	mux.HandleFunc("POST /log", s.log)
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *server) health(w http.ResponseWriter, _ *http.Request) {
	if s.failHealth {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "failing", "service": s.name})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "service": s.name})
}

// call reaches one upstream's /health by its name on the stack network.
func (s *server) call(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	base, ok := s.upstreams[name]
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]any{"ok": false, "from": s.name, "to": name, "error": "unknown upstream"})
		return
	}
	res := s.reach(r.Context(), name, base)
	code := http.StatusOK
	if !res["ok"].(bool) {
		code = http.StatusBadGateway
	}
	writeJSON(w, code, res)
}

func (s *server) reach(ctx context.Context, name, base string) map[string]any {
	start := time.Now()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/health", nil)
	resp, err := s.client.Do(req)
	res := map[string]any{"from": s.name, "to": name, "url": base + "/health"}
	if err != nil {
		res["ok"], res["error"] = false, err.Error()
		return res
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	res["ok"] = resp.StatusCode == http.StatusOK
	res["status"] = resp.StatusCode
	res["latency_ms"] = time.Since(start).Milliseconds()
	res["body"] = strings.TrimSpace(string(body))
	return res
}

// status reaches every upstream: the gateway's view of the platform.
func (s *server) status(w http.ResponseWriter, r *http.Request) {
	out := map[string]any{}
	code := http.StatusOK
	for name, base := range s.upstreams {
		res := s.reach(r.Context(), name, base)
		if !res["ok"].(bool) {
			code = http.StatusBadGateway
		}
		out[name] = res
	}
	writeJSON(w, code, map[string]any{"service": s.name, "upstreams": out})
}

// env echoes one environment variable, so tests can prove that values from
// the catalog reach the container byte-exact. Secrets are not echoed.
func (s *server) env(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if strings.Contains(key, "TOKEN") || strings.Contains(key, "SECRET") {
		http.Error(w, "not echoed", http.StatusForbidden)
		return
	}
	v, ok := os.LookupEnv(key)
	if !ok {
		http.NotFound(w, r)
		return
	}
	_, _ = io.WriteString(w, v)
}

// secretValue is secret name's value: $NAME, or the content of the file
// $NAME_FILE names.
func secretValue(name string) (string, bool) {
	if f := os.Getenv(name + "_FILE"); f != "" {
		b, err := os.ReadFile(f)
		return string(b), err == nil
	}
	return os.LookupEnv(name)
}

func (s *server) secret(w http.ResponseWriter, r *http.Request) {
	want, ok := secretValue(r.PathValue("name"))
	if !ok {
		http.NotFound(w, r)
		return
	}
	got, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil || subtle.ConstantTimeCompare(got, []byte(want)) != 1 {
		w.WriteHeader(http.StatusForbidden)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// log prints the request's body as one line of the service's output, so
// that an operator (or a test) can mark its logs.
func (s *server) log(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<10))
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	log.Printf("note: %s", strings.Join(strings.Fields(string(b)), " "))
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) get(w http.ResponseWriter, r *http.Request) {
	key := filepath.Base(r.PathValue("key"))
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.kv[key]
	if !ok && s.dataDir != "" {
		if b, err := os.ReadFile(filepath.Join(s.dataDir, key)); err == nil {
			v, ok = string(b), true
		}
	}
	if !ok {
		http.NotFound(w, r)
		return
	}
	_, _ = io.WriteString(w, v)
}

func (s *server) put(w http.ResponseWriter, r *http.Request) {
	key := filepath.Base(r.PathValue("key"))
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.kv[key] = string(b)
	if s.dataDir != "" {
		if err := os.WriteFile(filepath.Join(s.dataDir, key), b, 0o644); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}
