package proxy

import (
	be "encoding/binary"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/maestro-platform/deploy/internal/testenv"
)

// outsideDNS is a name server outside the host's engine, as the host's
// resolvers (or its search domains' servers) are: it answers every A
// query for a name holding "ghost" with addr, and records what it was
// asked.
type outsideDNS struct {
	conn net.PacketConn
	addr net.IP
	mu   sync.Mutex
	// asked are the names it was asked for.
	asked []string
}

func (d *outsideDNS) serve() {
	buf := make([]byte, 512)
	for {
		n, from, err := d.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		q := buf[:n]
		if n < 12 {
			continue
		}
		// The question: labels up to a zero, then type and class.
		var labels []string
		i := 12
		for i < n && q[i] != 0 && i+1+int(q[i]) <= n {
			labels = append(labels, string(q[i+1:i+1+int(q[i])]))
			i += 1 + int(q[i])
		}
		if i+5 > n {
			continue
		}
		name, qtype := strings.Join(labels, "."), be.BigEndian.Uint16(q[i+1:])
		d.mu.Lock()
		d.asked = append(d.asked, name)
		d.mu.Unlock()
		resp := append([]byte(nil), q[:i+5]...)
		be.BigEndian.PutUint16(resp[2:], 0x8180) // a response, recursion available
		be.BigEndian.PutUint16(resp[6:], 0)      // no answer yet
		be.BigEndian.PutUint16(resp[8:], 0)
		be.BigEndian.PutUint16(resp[10:], 0)
		if qtype == 1 && strings.Contains(name, "ghost") {
			be.BigEndian.PutUint16(resp[6:], 1)
			resp = append(resp, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4)
			resp = append(resp, d.addr.To4()...)
		} else if qtype == 1 {
			resp[3] |= 3 // NXDOMAIN
		}
		_, _ = d.conn.WriteTo(resp, from)
	}
}

func (d *outsideDNS) ghostQueries() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, n := range d.asked {
		if strings.Contains(n, "ghost") {
			out = append(out, n)
		}
	}
	return out
}

// A route whose service has no container (as during a stop-first swap)
// never reaches outside the engine: Docker's DNS forwards a name it does
// not know to the container's resolvers, and the host's resolvers here
// answer every "ghost" name with a server of theirs. The proxy's DNS is
// pinned, so they are never asked and their server gets no request. On a
// second host whose engine gives containers those resolvers.
func TestUnknownServiceNeverResolvesOutside(t *testing.T) {
	testenv.RequireDocker(t)
	testenv.RequireCommand(t, "go")
	dns := &outsideDNS{}
	var outside net.Listener
	r := testenv.StartRemoteWith(t, testenv.RemoteOptions{DNS: func(gw string) ([]string, error) {
		var err error
		if dns.conn, err = net.ListenPacket("udp4", net.JoinHostPort(gw, "53")); err != nil {
			return nil, err
		}
		if outside, err = net.Listen("tcp4", net.JoinHostPort(gw, "0")); err != nil {
			return nil, err
		}
		dns.addr = net.ParseIP(gw)
		return []string{gw}, nil
	}})
	t.Cleanup(func() { dns.conn.Close(); outside.Close() })
	go dns.serve()
	served := make(chan string, 16)
	go func() {
		_ = http.Serve(outside, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			served <- req.Host
			io.WriteString(w, "outside")
		}))
	}()
	_, port, _ := net.SplitHostPort(outside.Addr().String())
	upstream, _ := strconv.Atoi(port)

	ctx, cancel := testenv.Context(t)
	defer cancel()
	api, err := client.New(client.WithHost(r.Socket))
	if err != nil {
		t.Fatal(err)
	}
	defer api.Close()
	project := testenv.ProjectName(t, "prxdns")
	listen := testenv.FreePorts(t, 1)[0]
	p, err := Ensure(ctx, api, Spec{Project: project, Routes: []Route{{Service: "ghost", Port: upstream, Listen: listen}}})
	if err != nil {
		t.Fatal(err)
	}
	in, err := api.ContainerInspect(ctx, p.ID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("proxy DNS %v, search %v, options %v", in.Container.HostConfig.DNS, in.Container.HostConfig.DNSSearch, in.Container.HostConfig.DNSOptions)

	// A request to the route: the proxy looks "ghost" up again and again
	// while it waits for an upstream, then gives up.
	resp, err := (&http.Client{Timeout: TryDuration + time.Minute}).Get("http://" + net.JoinHostPort(r.Addr, strconv.Itoa(listen)) + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode < 500 || string(body) == "outside" {
		t.Errorf("a route with no container answered %d %q: the proxy reached a server outside the engine", resp.StatusCode, body)
	}
	if q := dns.ghostQueries(); len(q) > 0 {
		t.Errorf("the host's resolvers were asked for %v", q)
	}
	select {
	case h := <-served:
		t.Errorf("the outside server got a request (for %s)", h)
	default:
	}
	if err := Remove(ctx, api, project); err != nil {
		t.Error(err)
	}
}
