package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// HostState is what of this machine's own network the tests must leave as
// they found it: the default bridge docker0 and its addresses, the other
// interfaces, the routes and the filter table's rules. Objects that come
// and go with the engine's work or with test runs are left out, so that
// packages testing side by side do not see each other: user-defined
// network bridges (br-…), container veths, a run's namespaces, links and
// rules (mt…, the run's iptables comment), and the engine's per-container
// rules in its DOCKER chain.
type HostState struct {
	Docker0 []string // `ip -o addr show dev docker0`, or "missing"
	Links   []string // interface names
	Routes  []string // `ip route show`
	Rules   []string // `iptables -S`
}

// transient matches what the engine or a test run owns, not the host.
var transient = regexp.MustCompile(`\bbr-[0-9a-f]+|\bveth[0-9a-f]+|\bmt[0-9a-f]{8}|maestro-test-|^-A DOCKER -d `)

// ReadHost reads the host's state.
func ReadHost(ctx context.Context) (HostState, error) {
	var s HostState
	lines := func(name string, args ...string) ([]string, error) {
		out, err := exec.CommandContext(ctx, name, args...).Output()
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
		}
		var keep []string
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if l = strings.TrimSpace(l); l != "" && !transient.MatchString(l) {
				keep = append(keep, l)
			}
		}
		slices.Sort(keep)
		return keep, nil
	}
	var err error
	if s.Docker0, err = lines("ip", "-o", "addr", "show", "dev", "docker0"); err != nil {
		s.Docker0 = []string{"missing"}
	}
	for i, l := range s.Docker0 {
		// The index and flags are the kernel's; the addresses are the point.
		if f := strings.Fields(l); len(f) > 3 {
			s.Docker0[i] = strings.Join(f[1:4], " ")
		}
	}
	links, err := lines("ip", "-o", "link", "show")
	if err != nil {
		return s, err
	}
	for _, l := range links {
		if f := strings.Fields(l); len(f) > 1 {
			name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
			if !transient.MatchString(name) {
				s.Links = append(s.Links, name)
			}
		}
	}
	slices.Sort(s.Links)
	if s.Routes, err = lines("ip", "route", "show"); err != nil {
		return s, err
	}
	for i, l := range s.Routes {
		// Whether a bridge has a port up is the engine's doing.
		s.Routes[i] = strings.Replace(l, " linkdown", "", 1)
	}
	if s.Rules, err = lines("iptables", "-S"); err != nil {
		return s, err
	}
	return s, nil
}

// Diff lists what differs from before to after, one line per object.
func (before HostState) Diff(after HostState) []string {
	var d []string
	for _, part := range []struct {
		what string
		a, b []string
	}{
		{"docker0", before.Docker0, after.Docker0},
		{"link", before.Links, after.Links},
		{"route", before.Routes, after.Routes},
		{"iptables", before.Rules, after.Rules},
	} {
		for _, l := range part.a {
			if !slices.Contains(part.b, l) {
				d = append(d, fmt.Sprintf("%s gone: %s", part.what, l))
			}
		}
		for _, l := range part.b {
			if !slices.Contains(part.a, l) {
				d = append(d, fmt.Sprintf("%s added: %s", part.what, l))
			}
		}
	}
	return d
}

// Main runs a package's tests (from its TestMain) and fails the run when
// they changed the host's own network (HostState): a test owns only what
// it creates, and a second engine belongs in a namespace of its own. It
// needs root and ip and iptables; elsewhere, outside CI, it only runs the
// tests.
func Main(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	before, err := ReadHost(ctx)
	cancel()
	if err != nil || os.Geteuid() != 0 {
		if InCI() {
			fmt.Fprintf(os.Stderr, "testenv: cannot read the host's network state (root: %v): %v\n", os.Geteuid() == 0, err)
			return 1
		}
		return m.Run()
	}
	code := m.Run()
	ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	after, err := ReadHost(ctx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "testenv: reading the host's network state after the tests: %v\n", err)
		return 1
	}
	if d := before.Diff(after); len(d) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: the tests changed this machine's own network, which they must never touch:\n  %s\n",
			strings.Join(d, "\n  "))
		return 1
	}
	return code
}
