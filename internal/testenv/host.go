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
	before, err := readSettled(ctx, ReadHost)
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
	d, err := lastingDiff(ctx, before, ReadHost)
	if err != nil {
		fmt.Fprintf(os.Stderr, "testenv: reading the host's network state after the tests: %v\n", err)
		return 1
	}
	if len(d) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: the tests changed this machine's own network, which they must never touch:\n  %s\n",
			strings.Join(d, "\n  "))
		return 1
	}
	return code
}

// The engine rewrites some of the host's rules by deleting and inserting
// them again (libnetwork's EnsureJumpRule, for `-A FORWARD -j
// DOCKER-ISOLATION-STAGE-1` and the like, whenever a network is created), so
// one reading taken while a package beside this one creates a network can
// miss a rule that is back a moment later. A change is the tests' only when
// every reading shows it.
const (
	readings   = 5
	readingGap = 300 * time.Millisecond
)

// readSettled reads the host until two readings in a row agree.
func readSettled(ctx context.Context, read func(context.Context) (HostState, error)) (HostState, error) {
	s, err := read(ctx)
	for i := 1; i < readings && err == nil; i++ {
		if err = pause(ctx); err != nil {
			break
		}
		var next HostState
		if next, err = read(ctx); err == nil && len(s.Diff(next)) == 0 {
			return s, nil
		}
		s = next
	}
	return s, err
}

// lastingDiff is before.Diff(now), keeping only the lines that every one of
// several readings shows.
func lastingDiff(ctx context.Context, before HostState, read func(context.Context) (HostState, error)) ([]string, error) {
	var lasting []string
	for i := range readings {
		if i > 0 {
			if err := pause(ctx); err != nil {
				return nil, err
			}
		}
		now, err := read(ctx)
		if err != nil {
			return nil, err
		}
		d := before.Diff(now)
		if i > 0 {
			d = slices.DeleteFunc(d, func(l string) bool { return !slices.Contains(lasting, l) })
		}
		if lasting = d; len(lasting) == 0 {
			return nil, nil
		}
	}
	return lasting, nil
}

func pause(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(readingGap):
		return nil
	}
}
