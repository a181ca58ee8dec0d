package proxy

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./tasks/proxy -run %s -update to create it)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Errorf("configuration differs from %s (review, then -update):\n%s", path, got)
	}
}

// demoRoutes are the demo environment's published ports, out of order:
// the configuration must not depend on the order of the routes.
var demoRoutes = []Route{
	{Service: "maestro-gateway", Port: 8080, Listen: 8080},
	{Service: "quality-fabric", Port: 8000, Listen: 8000},
	{Service: "template-service", Port: 8005, Listen: 8005},
	{Service: "automation-service", Port: 8003, Listen: 80},
}

func TestConfigGolden(t *testing.T) {
	got, err := Config(demoRoutes)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "demo.json", got)

	reordered := []Route{demoRoutes[3], demoRoutes[1], demoRoutes[0], demoRoutes[2]}
	again, err := Config(reordered)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, again) {
		t.Errorf("the order of the routes changes the configuration")
	}
}

// The settings the zero-downtime swaps depend on, read back from the JSON
// rather than from the golden file, so that a regenerated golden file
// cannot silently lose one.
func TestConfigSettings(t *testing.T) {
	b, err := Config(demoRoutes[:2])
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Admin struct {
			Disabled bool `json:"disabled"`
			Listen   string
		} `json:"admin"`
		Logging struct {
			Logs map[string]struct {
				Level  string `json:"level"`
				Writer struct {
					Output string `json:"output"`
				} `json:"writer"`
				Sampling map[string]int64 `json:"sampling"`
			} `json:"logs"`
		} `json:"logging"`
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Listen         []string `json:"listen"`
					Logs           any      `json:"logs"`
					AutomaticHTTPS struct {
						Disable bool `json:"disable"`
					} `json:"automatic_https"`
					Routes []struct {
						Handle []struct {
							Handler          string            `json:"handler"`
							DynamicUpstreams map[string]any    `json:"dynamic_upstreams"`
							Upstreams        any               `json:"upstreams"`
							LoadBalancing    map[string]string `json:"load_balancing"`
							Transport        map[string]any    `json:"transport"`
							HealthChecks     struct {
								Passive struct {
									FailDuration string `json:"fail_duration"`
									MaxFails     int    `json:"max_fails"`
								} `json:"passive"`
							} `json:"health_checks"`
						} `json:"handle"`
					} `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	if !cfg.Admin.Disabled || cfg.Admin.Listen != "" {
		t.Errorf("admin API %+v: it must be disabled, so that nothing reconfigures the proxy", cfg.Admin)
	}
	if l := cfg.Logging.Logs["default"]; l.Level != "WARN" || l.Writer.Output != "stderr" ||
		l.Sampling["interval"] != int64(time.Second) || l.Sampling["first"] == 0 || l.Sampling["thereafter"] == 0 {
		t.Errorf("default log %+v, want WARN to stderr, sampled per second", l)
	}
	if len(cfg.Apps.HTTP.Servers) != 2 {
		t.Fatalf("%d servers, want one per route", len(cfg.Apps.HTTP.Servers))
	}
	for _, r := range demoRoutes[:2] {
		name := "port-" + itoa(r.Listen)
		s, ok := cfg.Apps.HTTP.Servers[name]
		if !ok {
			t.Fatalf("no server %s", name)
		}
		if len(s.Listen) != 1 || s.Listen[0] != ":"+itoa(r.Listen) || !s.AutomaticHTTPS.Disable || s.Logs != nil {
			t.Errorf("server %s listens on %v, automatic HTTPS off %v, access logs %v", name, s.Listen, s.AutomaticHTTPS.Disable, s.Logs)
		}
		if len(s.Routes) != 1 || len(s.Routes[0].Handle) != 1 {
			t.Fatalf("server %s: routes %+v, want one reverse_proxy", name, s.Routes)
		}
		h := s.Routes[0].Handle[0]
		du := h.DynamicUpstreams
		if h.Handler != "reverse_proxy" || h.Upstreams != nil || du["source"] != upstreamSource || du["name"] != r.Service ||
			du["port"] != itoa(r.Port) || du["refresh"] != Refresh.String() {
			t.Errorf("server %s proxies with %+v, want dynamic A upstreams %s:%d refreshed every %s", name, h, r.Service, r.Port, Refresh)
		}
		if h.LoadBalancing["try_duration"] != "10s" || h.LoadBalancing["try_interval"] != "50ms" {
			t.Errorf("server %s: load balancing %v, want try_duration 10s, try_interval 50ms", name, h.LoadBalancing)
		}
		if tr := h.Transport; tr["dial_timeout"] != "250ms" || tr["keep_alive"].(map[string]any)["enabled"] != false {
			t.Errorf("server %s: transport %v, want dial_timeout 250ms and no upstream keep-alive", name, tr)
		}
		if p := h.HealthChecks.Passive; p.FailDuration != "1s" || p.MaxFails != 1 {
			t.Errorf("server %s: passive health %+v, want fail_duration 1s, max_fails 1", name, p)
		}
	}
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}

func TestConfigRefusesBadRoutes(t *testing.T) {
	for name, tc := range map[string]struct {
		routes []Route
		want   []string
	}{
		"none":           {nil, []string{"no routes"}},
		"alias":          {[]Route{{Service: "Gateway_1", Port: 80, Listen: 80}}, []string{`alias "Gateway_1" is not a DNS label`}},
		"container port": {[]Route{{Service: "gw", Port: 0, Listen: 80}}, []string{"container port 0 is not a TCP port"}},
		"listen port":    {[]Route{{Service: "gw", Port: 80, Listen: 70000}}, []string{"listen port 70000 is not a TCP port"}},
		"twice": {[]Route{{Service: "a", Port: 80, Listen: 8000}, {Service: "b", Port: 80, Listen: 8000}},
			[]string{"port 8000 is published twice (a and b)"}},
		// Every problem at once.
		"several": {[]Route{{Service: "A", Port: 80, Listen: 1}, {Service: "b", Port: -1, Listen: 2}},
			[]string{`alias "A"`, "container port -1"}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Config(tc.routes)
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("got %v, want an error with %q", err, w)
				}
			}
		})
	}
}

func TestSpecCheck(t *testing.T) {
	ok := Spec{Project: "maestro", Routes: demoRoutes, Bind: "127.0.0.1"}
	if err := ok.check(); err != nil {
		t.Fatalf("good spec refused: %v", err)
	}
	for name, tc := range map[string]struct {
		change func(*Spec)
		want   string
	}{
		"project":  {func(s *Spec) { s.Project = "Maestro Demo" }, `project name "Maestro Demo"`},
		"no ports": {func(s *Spec) { s.Routes = nil }, "proxy of project maestro: no routes"},
		"bind":     {func(s *Spec) { s.Bind = "localhost" }, `bind address "localhost" is not an IP address`},
	} {
		t.Run(name, func(t *testing.T) {
			s := ok
			tc.change(&s)
			if err := s.check(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// The hash decides whether Ensure leaves a running proxy alone: it must
// change with everything the container runs with, and only then.
func TestSpecHash(t *testing.T) {
	s := Spec{Project: "maestro", Routes: demoRoutes, Bind: "127.0.0.1"}
	cfg, _ := Config(s.Routes)
	h0 := s.hash("maestro-deploy/proxy:aaaa", cfg)
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(h0) {
		t.Fatalf("hash %q", h0)
	}
	if s.hash("maestro-deploy/proxy:aaaa", cfg) != h0 {
		t.Fatal("hash is not stable")
	}
	other := s
	other.Bind = ""
	cfg2, _ := Config(demoRoutes[:3])
	fewer := s
	fewer.Routes = demoRoutes[:3]
	for name, h := range map[string]string{
		"image":  s.hash("maestro-deploy/proxy:bbbb", cfg),
		"bind":   other.hash("maestro-deploy/proxy:aaaa", cfg),
		"ports":  fewer.hash("maestro-deploy/proxy:aaaa", cfg2),
		"config": s.hash("maestro-deploy/proxy:aaaa", append(cfg, ' ')),
	} {
		if h == h0 {
			t.Errorf("another %s keeps the hash", name)
		}
	}
}
