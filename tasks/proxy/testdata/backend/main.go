// Command backend is the service the proxy's integration test swaps: it
// answers every request with its VERSION (body and X-Version header), holds
// requests to /hold until /release, and
// on SIGTERM stops accepting connections and finishes the requests in
// flight before it exits, as a well-behaved service does.
//
// `backend healthcheck` is its Docker healthcheck (the image is FROM
// scratch: no curl).
package main

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const addr = ":8080"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "healthcheck" {
		c := http.Client{Timeout: 2 * time.Second}
		r, err := c.Get("http://127.0.0.1" + addr + "/health")
		if err != nil || r.StatusCode != http.StatusOK {
			os.Exit(1)
		}
		os.Exit(0)
	}
	version := os.Getenv("VERSION")
	var served, held atomic.Int64
	release := make(chan struct{})
	var once sync.Once
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		w.Header().Set("X-Version", version)
		fmt.Fprintln(w, version)
	})
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {})
	// /hold answers only once /release was asked: a request in flight for
	// as long as a test needs. /held and /served say, on this container
	// alone, how many are held and how many requests it served.
	mux.HandleFunc("/hold", func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		held.Add(1)
		defer held.Add(-1)
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		w.Header().Set("X-Version", version)
		fmt.Fprintln(w, version)
	})
	mux.HandleFunc("/release", func(w http.ResponseWriter, r *http.Request) { once.Do(func() { close(release) }) })
	mux.HandleFunc("/held", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, held.Load()) })
	mux.HandleFunc("/served", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, served.Load()) })
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
			log.Fatal(err)
		}
	}()
	log.Printf("%s listening on %s", version, addr)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Printf("%s: shutdown: %v", version, err)
	}
	log.Printf("%s: drained", version)
}
