package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/maestro-platform/deploy/tasks/catalog"
)

// Route sends what arrives on one published port to one service.
type Route struct {
	// Service is the service's DNS alias on the edge network: the name
	// its containers are attached with (see Attach).
	Service string
	// Port is the port the service's containers listen on.
	Port int
	// Listen is the published host port. The proxy listens on the same
	// port inside its container.
	Listen int
}

// The reverse proxy settings of every route. They were measured for
// zero-downtime swaps (see the package documentation); the promotion code
// depends on them, so they are exported.
const (
	// Refresh is how long the proxy caches what a service alias resolves
	// to. A container attached with the alias receives requests at the
	// latest Refresh after Attach (sooner when a request fails and the
	// proxy looks the alias up again at once).
	Refresh = 500 * time.Millisecond
	// TryDuration is how long a request waits for an upstream that
	// accepts it: while a service's only container is swapped or
	// restarting, requests wait up to this long instead of failing.
	TryDuration = 10 * time.Second
	// TryInterval is the pause between two tries of a request.
	TryInterval = 50 * time.Millisecond
	// FailDuration is how long an upstream that refused a connection is
	// left out (passive health check, after one failure).
	FailDuration = time.Second
	// DialTimeout bounds a connection to an upstream. On a Docker bridge a
	// connection takes well under a millisecond, but the engine's DNS
	// names a container that joins a network before its interface
	// answers: a connection attempted then waits for the kernel's ARP
	// retry, a second. Cut short, the attempt counts as a refused one:
	// retried elsewhere, the new container left out for FailDuration.
	DialTimeout = 250 * time.Millisecond
	// GracePeriod is how long a stopping proxy lets requests in flight
	// finish.
	GracePeriod = 10 * time.Second
	// PickupTime bounds how long after Attach the proxy may take to send
	// requests (if any arrive) to the attached container: its cached
	// lookup of the alias expires after Refresh, and a first connection
	// that meets the container's interface not yet answering leaves the
	// container out for FailDuration after DialTimeout. Measured: 0.04 to
	// 1.1 s.
	PickupTime = Refresh + DialTimeout + FailDuration
)

// upstreamSource is the proxy program's own source of dynamic upstreams
// (_caddy/drain.go): Caddy's "a" source, less the drained addresses.
const upstreamSource = "maestro"

// configDir is where the configuration is copied into the container.
const (
	configDir  = "/etc/maestro-proxy"
	configFile = configDir + "/caddy.json"
)

// checkRoutes reports every problem of routes at once.
func checkRoutes(routes []Route) error {
	if len(routes) == 0 {
		return errors.New("no routes: the proxy needs at least one published port")
	}
	var errs []error
	seen := map[int]string{}
	for _, r := range routes {
		if !catalog.DNSLabel.MatchString(r.Service) {
			errs = append(errs, fmt.Errorf("service alias %q is not a DNS label (a-z, 0-9, -; at most 63)", r.Service))
		}
		if r.Port < 1 || r.Port > 65535 {
			errs = append(errs, fmt.Errorf("service %s: container port %d is not a TCP port", r.Service, r.Port))
		}
		if r.Listen < 1 || r.Listen > 65535 {
			errs = append(errs, fmt.Errorf("service %s: listen port %d is not a TCP port", r.Service, r.Listen))
			continue
		}
		if other, dup := seen[r.Listen]; dup {
			errs = append(errs, fmt.Errorf("port %d is published twice (%s and %s): give each route its own port", r.Listen, other, r.Service))
		}
		seen[r.Listen] = r.Service
	}
	return errors.Join(errs...)
}

// listenPorts returns the routes' listen ports in ascending order.
func listenPorts(routes []Route) []int {
	ports := make([]int, 0, len(routes))
	for _, r := range routes {
		ports = append(ports, r.Listen)
	}
	slices.Sort(ports)
	return ports
}

// Config renders the Caddy configuration (JSON) of a proxy with these
// routes: one HTTP server per listen port, each proxying to the
// containers its service alias resolves to on the edge network.
//
// The configuration is loaded once, when the container starts, and never
// changed: Caddy applies any change, even through its admin API, by
// reloading every server, which drops keep-alive requests on every port.
// So the admin API is disabled (nothing can reconfigure the proxy, from
// the network or from inside the container) and services are swapped
// through Docker's DNS instead: each route resolves its alias again at
// most every Refresh (dynamic_upstreams), less the containers being
// drained (see Drain), and a request that meets a stopping container is
// retried on another for up to TryDuration.
//
// Logs go to stderr at WARN, sampled: while a service has no container,
// each request waiting for one logs every TryInterval; of each message,
// the first 5 a second are kept and one in 1000 after that. No access
// log is written.
func Config(routes []Route) ([]byte, error) {
	if err := checkRoutes(routes); err != nil {
		return nil, err
	}
	servers := map[string]server{}
	for _, r := range routes {
		servers["port-"+strconv.Itoa(r.Listen)] = server{
			Listen:         []string{":" + strconv.Itoa(r.Listen)},
			AutomaticHTTPS: automaticHTTPS{Disable: true},
			Routes: []route{{Handle: []handler{{
				Handler: "reverse_proxy",
				DynamicUpstreams: upstreams{Source: upstreamSource, Name: r.Service, Port: strconv.Itoa(r.Port),
					Refresh: Refresh.String(), Versions: ipVersions{IPv4: true}},
				// One connection per proxied request: a pooled connection
				// to a container that is draining may be closed under a
				// request, which Caddy retries only for GET. A new
				// connection to a stopping container is refused instead,
				// and a refused dial is always retried.
				Transport: transport{Protocol: "http", DialTimeout: DialTimeout.String(), KeepAlive: keepAlive{Enabled: false}},
				LoadBalancing: loadBalancing{TryDuration: TryDuration.String(),
					TryInterval: TryInterval.String()},
				HealthChecks: healthChecks{Passive: passive{FailDuration: FailDuration.String(), MaxFails: 1}},
			}}}},
		}
	}
	cfg := caddyConfig{
		Admin: admin{Disabled: true, Config: adminConfig{Persist: false}},
		Logging: logging{Logs: map[string]logConfig{
			"default": {Writer: writer{Output: "stderr"}, Level: "WARN",
				Sampling: sampling{Interval: time.Second, First: 5, Thereafter: 1000}},
		}},
		Apps: apps{HTTP: httpApp{GracePeriod: GracePeriod.String(), Servers: servers}},
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("caddy configuration: %w", err)
	}
	return append(b, '\n'), nil
}

// The part of Caddy's JSON configuration the proxy uses, in the order
// Caddy's documentation gives it.
type (
	caddyConfig struct {
		Admin   admin   `json:"admin"`
		Logging logging `json:"logging"`
		Apps    apps    `json:"apps"`
	}
	admin struct {
		Disabled bool        `json:"disabled"`
		Config   adminConfig `json:"config"`
	}
	// Persist false: no autosave.json, the root filesystem is read-only.
	adminConfig struct {
		Persist bool `json:"persist"`
	}
	logging struct {
		Logs map[string]logConfig `json:"logs"`
	}
	logConfig struct {
		Writer   writer   `json:"writer"`
		Level    string   `json:"level"`
		Sampling sampling `json:"sampling"`
	}
	// Interval is a plain time.Duration in Caddy's JSON: nanoseconds.
	sampling struct {
		Interval   time.Duration `json:"interval"`
		First      int           `json:"first"`
		Thereafter int           `json:"thereafter"`
	}
	writer struct {
		Output string `json:"output"`
	}
	apps struct {
		HTTP httpApp `json:"http"`
	}
	httpApp struct {
		GracePeriod string            `json:"grace_period"`
		Servers     map[string]server `json:"servers"`
	}
	server struct {
		Listen         []string       `json:"listen"`
		AutomaticHTTPS automaticHTTPS `json:"automatic_https"`
		Routes         []route        `json:"routes"`
	}
	automaticHTTPS struct {
		Disable bool `json:"disable"`
	}
	route struct {
		Handle []handler `json:"handle"`
	}
	handler struct {
		Handler          string        `json:"handler"`
		DynamicUpstreams upstreams     `json:"dynamic_upstreams"`
		Transport        transport     `json:"transport"`
		LoadBalancing    loadBalancing `json:"load_balancing"`
		HealthChecks     healthChecks  `json:"health_checks"`
	}
	upstreams struct {
		Source   string     `json:"source"`
		Name     string     `json:"name"`
		Port     string     `json:"port"`
		Refresh  string     `json:"refresh"`
		Versions ipVersions `json:"versions"`
	}
	// IPv4 only: Docker's bridge networks always have it, and the AAAA
	// lookup each refresh would otherwise add is wasted.
	ipVersions struct {
		IPv4 bool `json:"ipv4"`
	}
	transport struct {
		Protocol    string    `json:"protocol"`
		DialTimeout string    `json:"dial_timeout"`
		KeepAlive   keepAlive `json:"keep_alive"`
	}
	keepAlive struct {
		Enabled bool `json:"enabled"`
	}
	loadBalancing struct {
		TryDuration string `json:"try_duration"`
		TryInterval string `json:"try_interval"`
	}
	healthChecks struct {
		Passive passive `json:"passive"`
	}
	passive struct {
		FailDuration string `json:"fail_duration"`
		MaxFails     int    `json:"max_fails"`
	}
)
