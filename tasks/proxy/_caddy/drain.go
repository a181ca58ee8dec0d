package main

import (
	"bufio"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

// Draining a container takes it out of the proxy's rotation while the
// requests it is serving finish, so that it can then be stopped without
// one of them failing. Docker's DNS cannot withdraw a container's alias
// without disconnecting it (which would cut those requests), and
// reconfiguring Caddy reloads every server (which drops keep-alive
// requests on every port). So the upstreams of each route are the A
// records of the service alias minus the addresses listed in drainDir,
// a folder on the container's tmpfs that `caddy drain`, run in the
// container through the Engine API, writes. No port, no admin API: only
// who can exec in the container can drain.
const drainDir = "/tmp/maestro-drain"

func init() {
	caddy.RegisterModule(Upstreams{})
}

// Upstreams is the "maestro" source of dynamic upstreams: Caddy's "a"
// source, less the drained addresses.
type Upstreams struct {
	reverseproxy.AUpstreams
}

// CaddyModule returns the Caddy module information.
func (Upstreams) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.upstreams.maestro",
		New: func() caddy.Module { return new(Upstreams) },
	}
}

// Provision sets up the A lookup.
func (u *Upstreams) Provision(ctx caddy.Context) error { return u.AUpstreams.Provision(ctx) }

// GetUpstreams returns the alias's addresses that are not drained. The
// drain list is read again whenever its folder changed, so a drain holds
// from the next request on.
func (u Upstreams) GetUpstreams(r *http.Request) ([]*reverseproxy.Upstream, error) {
	all, err := u.AUpstreams.GetUpstreams(r)
	if err != nil {
		return nil, err
	}
	out := drained.filter(all, time.Now())
	return out, nil
}

// drainList is the drain folder as last read.
type drainList struct {
	mu    sync.Mutex
	mtime time.Time
	read  bool
	until map[string]time.Time // address -> end of the drain
}

var drained drainList

func (d *drainList) filter(ups []*reverseproxy.Upstream, now time.Time) []*reverseproxy.Upstream {
	d.mu.Lock()
	defer d.mu.Unlock()
	st, err := os.Stat(drainDir)
	switch {
	case err != nil:
		d.until, d.read = nil, false
	case !d.read || !st.ModTime().Equal(d.mtime):
		d.until, d.mtime, d.read = readDrains(), st.ModTime(), true
	}
	if len(d.until) == 0 {
		return ups
	}
	out := ups[:0]
	for _, up := range ups {
		host, _, err := net.SplitHostPort(up.Dial)
		if end, ok := d.until[host]; err == nil && ok && now.Before(end) {
			continue
		}
		out = append(out, up)
	}
	return out
}

// readDrains reads the drain folder: a file per address, holding the Unix
// time its drain ends (so that a drain a crashed run left ends by itself).
func readDrains() map[string]time.Time {
	entries, err := os.ReadDir(drainDir)
	if err != nil {
		return nil
	}
	out := map[string]time.Time{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(drainDir, e.Name()))
		if err != nil {
			continue
		}
		secs, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			continue
		}
		out[e.Name()] = time.Unix(secs, 0)
	}
	return out
}

// drain is `caddy drain [-wait D] [-hold D] [-undo] ADDRESS...`: it takes
// the addresses out of rotation for hold (or puts them back, -undo), then
// waits up to wait (0: looks once) until the proxy has no connection open
// to any of them. Exit 0 when they are idle, 1 with what is still open
// when wait ran out, 2 for bad usage.
func drain(args []string) int {
	fs := flag.NewFlagSet("drain", flag.ContinueOnError)
	wait := fs.Duration("wait", 0, "how long to wait for the requests in flight to the addresses to finish")
	hold := fs.Duration("hold", 10*time.Minute, "how long the addresses stay out of rotation")
	undo := fs.Bool("undo", false, "put the addresses back in rotation")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var addrs []netip.Addr
	for _, a := range fs.Args() {
		ip, err := netip.ParseAddr(a)
		if err != nil || !ip.Is4() {
			fmt.Fprintf(os.Stderr, "drain: %q is not an IPv4 address\n", a)
			return 2
		}
		addrs = append(addrs, ip)
	}
	if len(addrs) == 0 {
		fmt.Fprintln(os.Stderr, "usage: caddy drain [-wait D] [-hold D] [-undo] ADDRESS...")
		return 2
	}
	if err := os.MkdirAll(drainDir, 0o700); err != nil {
		fmt.Fprintln(os.Stderr, "drain:", err)
		return 1
	}
	for _, ip := range addrs {
		file := filepath.Join(drainDir, ip.String())
		var err error
		if *undo {
			err = os.Remove(file)
			if errors.Is(err, os.ErrNotExist) {
				err = nil
			}
		} else {
			err = writeAtomic(file, strconv.FormatInt(time.Now().Add(*hold).Unix(), 10))
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "drain:", err)
			return 1
		}
	}
	if *undo {
		return 0
	}
	// A request that chose an address just before the drain may not have
	// opened its connection yet: idle means no connection seen in several
	// looks in a row.
	const every, quiet = 20 * time.Millisecond, 5
	deadline := time.Now().Add(*wait)
	zero := 0
	for {
		n, err := openTo(addrs)
		if err != nil {
			fmt.Fprintln(os.Stderr, "drain:", err)
			return 1
		}
		if n == 0 {
			zero++
			if zero >= quiet {
				return 0
			}
		} else {
			zero = 0
		}
		if time.Now().After(deadline) {
			fmt.Printf("%d connection(s) still open to %v after %s\n", n, addrs, *wait)
			return 1
		}
		time.Sleep(every)
	}
}

// writeAtomic writes a file through a temporary one, so that the proxy
// never reads half of it.
func writeAtomic(file, content string) error {
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, []byte(content+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, file)
}

// openTo counts the proxy's TCP connections to the addresses that are
// being opened or open, from /proc/net/tcp of the container's network
// namespace: with one connection per proxied request (no keep-alive to
// upstreams), that is the requests in flight to them.
func openTo(addrs []netip.Addr) (int, error) {
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	want := map[string]bool{}
	for _, a := range addrs {
		b := a.As4()
		// /proc/net/tcp prints the address in the host's byte order as
		// one hex word; every engine this runs on is little-endian.
		want[strings.ToUpper(hex.EncodeToString([]byte{b[3], b[2], b[1], b[0]}))] = true
	}
	n := 0
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 {
			continue
		}
		remote, state := fields[2], fields[3]
		host, _, ok := strings.Cut(remote, ":")
		// 01 ESTABLISHED, 02 SYN_SENT.
		if ok && want[host] && (state == "01" || state == "02") {
			n++
		}
	}
	return n, sc.Err()
}
