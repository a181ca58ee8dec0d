package testenv

import (
	"context"
	"os"
	"slices"
	"testing"
)

// The host's own objects are compared; what the engine or a run owns is
// not, so that packages testing side by side do not trip each other.
func TestHostStateDiff(t *testing.T) {
	before := HostState{Docker0: []string{"docker0 inet 172.17.0.1/16"}, Links: []string{"docker0", "eth0", "lo"},
		Routes: []string{"default via 192.0.2.1 dev eth0"}, Rules: []string{"-A DOCKER-USER -j RETURN", "-P FORWARD DROP"}}
	if d := before.Diff(before); len(d) != 0 {
		t.Errorf("a state differs from itself: %q", d)
	}
	after := before
	after.Docker0 = []string{"missing"}
	after.Links = []string{"eth0", "lo"}
	after.Rules = []string{"-A DOCKER-USER -j RETURN", "-P FORWARD ACCEPT"}
	want := []string{"docker0 gone: docker0 inet 172.17.0.1/16", "docker0 added: missing", "link gone: docker0",
		"iptables gone: -P FORWARD DROP", "iptables added: -P FORWARD ACCEPT"}
	if d := before.Diff(after); !slices.Equal(d, want) {
		t.Errorf("diff:\n%q\nwant\n%q", d, want)
	}
	for _, l := range []string{"-A DOCKER-ISOLATION-STAGE-1 -i br-0123abcd ! -o br-0123abcd -j DOCKER-ISOLATION-STAGE-2",
		"-A DOCKER-USER -i mt1a2b3c4d07b -o mt1a2b3c4d07b -m comment --comment maestro-test-t1a2b3c4dx -j ACCEPT",
		"-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT", "veth1a2b3c4", "mt1a2b3c4d07h"} {
		if !transient.MatchString(l) {
			t.Errorf("%q is taken for the host's own", l)
		}
	}
	for _, l := range []string{"docker0", "eth0", "-A FORWARD -o docker0 -j DOCKER", "-A DOCKER-USER -j RETURN"} {
		if transient.MatchString(l) {
			t.Errorf("%q is taken for the engine's or a run's", l)
		}
	}
}

// On this machine the state reads, and docker0 is there (the suite's
// TestMain fails a package that removed it).
func TestReadHost(t *testing.T) {
	if os.Geteuid() != 0 {
		if InCI() {
			t.Fatal("reading iptables needs root")
		}
		t.Skip("reading iptables needs root")
	}
	RequireCommand(t, "iptables")
	RequireDocker(t)
	s, err := ReadHost(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Docker0) == 0 || s.Docker0[0] == "missing" || !slices.Contains(s.Links, "lo") || len(s.Rules) == 0 {
		t.Errorf("host state: %+v", s)
	}
}

// A rule the engine deletes and inserts again (a network created beside
// this package) is missing from one reading only: it is not reported, and
// neither is a reading taken before the tests inside such a gap; a change
// that lasts is.
func TestLastingDiff(t *testing.T) {
	jump := "-A FORWARD -j DOCKER-ISOLATION-STAGE-1"
	host := HostState{Docker0: []string{"docker0 inet 172.17.0.1/16"}, Rules: []string{jump, "-P FORWARD DROP"}}
	gap := host
	gap.Rules = []string{"-P FORWARD DROP"}
	broken := host
	broken.Docker0 = []string{"missing"}
	brokenInGap := broken
	brokenInGap.Rules = gap.Rules
	sequence := func(states ...HostState) func(context.Context) (HostState, error) {
		return func(context.Context) (HostState, error) {
			s := states[0]
			if len(states) > 1 {
				states = states[1:]
			}
			return s, nil
		}
	}
	ctx := context.Background()

	before, err := readSettled(ctx, sequence(gap, host, host))
	if err != nil || !slices.Contains(before.Rules, jump) {
		t.Fatalf("a reading inside the engine's gap was taken for the host's state: %+v, %v", before, err)
	}
	if d, err := lastingDiff(ctx, host, sequence(gap, host)); err != nil || len(d) != 0 {
		t.Errorf("a rule missing from one reading is reported: %q, %v", d, err)
	}
	d, err := lastingDiff(ctx, host, sequence(broken, brokenInGap, broken))
	want := []string{"docker0 gone: docker0 inet 172.17.0.1/16", "docker0 added: missing"}
	if err != nil || !slices.Equal(d, want) {
		t.Errorf("a lasting change: %q, %v; want %q", d, err, want)
	}
}
