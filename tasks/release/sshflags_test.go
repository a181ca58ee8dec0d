package release

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/maestro-platform/deploy/internal/testenv"
	"github.com/maestro-platform/deploy/tasks/catalog"
)

// options returns the values of SSHFlags' -o pairs, and fails on any
// argument that is not part of one (a stray -i, a value without -o).
func options(t *testing.T, flags []string) []string {
	t.Helper()
	if len(flags)%2 != 0 {
		t.Fatalf("flags %q: not -o pairs", flags)
	}
	var out []string
	for i := 0; i < len(flags); i += 2 {
		if flags[i] != "-o" {
			t.Fatalf("flags %q: %q at %d, want -o", flags, flags[i], i)
		}
		out = append(out, flags[i+1])
	}
	return out
}

func TestSSHFlags(t *testing.T) {
	cat := testCatalog()
	env := &catalog.Environment{KnownHosts: "keys/known hosts %h", Identity: `/home/u/my keys/id 100%\x`}
	got := options(t, SSHFlags(cat, env))
	for _, want := range []string{
		"StrictHostKeyChecking=yes",
		`UserKnownHostsFile="/x/keys/known hosts %%h"`, // relative to the catalog, % escaped, quoted
		"GlobalKnownHostsFile=/dev/null",
		"BatchMode=yes",
		"ConnectTimeout=15",
		"ForwardAgent=no",
		"ClearAllForwardings=yes",
		"PermitLocalCommand=no",
		"ServerAliveInterval=5",
		"ServerAliveCountMax=3",
		"IdentitiesOnly=yes",
		`IdentityFile="/home/u/my keys/id 100%%\\x"`,
	} {
		if !slices.Contains(got, want) {
			t.Errorf("SSHFlags lack -o %s:\n%q", want, got)
		}
	}

	none := options(t, SSHFlags(cat, &catalog.Environment{}))
	for _, o := range none {
		if strings.HasPrefix(o, "Identit") {
			t.Errorf("no identity, yet %q", o)
		}
	}
	home, _ := os.UserHomeDir()
	if want := `UserKnownHostsFile="` + filepath.Join(home, ".ssh", "known_hosts") + `"`; !slices.Contains(none, want) {
		t.Errorf("default known_hosts: want %s in %q", want, none)
	}

	for path, want := range map[string]string{
		"/plain/path":        `X="/plain/path"`,
		"/a b/%d%%":          `X="/a b/%%d%%%%"`,
		`/back\slash`:        `X="/back\\slash"`,
		`/quo"te`:            `X="/quo\"te"`,
		"/tab\there ~/tilde": `X="/tab` + "\t" + `here ~/tilde"`,
	} {
		if got := sshPathOption("X", path); got != want {
			t.Errorf("sshPathOption(%q) = %s, want %s", path, got, want)
		}
	}
}

// The real ssh reads the flags back as meant: `ssh -G` prints the
// configuration it resolved, without connecting. Paths with two spaces in
// a row (which ssh would split into two files unquoted), % tokens and a
// backslash come out whole.
func TestSSHFlagsResolve(t *testing.T) {
	ssh := testenv.RequireCommand(t, "ssh")
	odd := filepath.Join(t.TempDir(), `keys  and %h 100%\x`)
	if err := os.MkdirAll(odd, 0o700); err != nil {
		t.Fatal(err)
	}
	cat := testCatalog()
	env := &catalog.Environment{Host: "ssh://deploy@demo.example.internal:2222",
		KnownHosts: filepath.Join(odd, "known_hosts"), Identity: filepath.Join(odd, "id")}
	// The session's control socket lives in a temporary folder: make that
	// one odd too.
	t.Setenv("TMPDIR", odd)
	s, err := newSSHSession(cat, env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(s.dir) })
	target, _, err := sshTarget(env.Host)
	if err != nil {
		t.Fatal(err)
	}
	// -F /dev/null: the user's own ~/.ssh/config must not decide the result.
	args := append(append([]string{"-F", "/dev/null", "-G"}, s.flags...), target...)
	out, err := exec.Command(ssh, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh -G: %v\n%s", err, out)
	}
	conf := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(l, " "); ok {
			if _, dup := conf[k]; !dup {
				conf[k] = v
			}
		}
	}
	for k, want := range map[string]string{
		"userknownhostsfile":   env.KnownHosts,
		"controlpath":          filepath.Join(s.dir, "cm"),
		"globalknownhostsfile": "/dev/null",
		"forwardagent":         "no",
		"clearallforwardings":  "yes",
		"permitlocalcommand":   "no",
		"serveraliveinterval":  "5",
		"serveralivecountmax":  "3",
		"batchmode":            "yes",
		"identitiesonly":       "yes",
		"port":                 "2222",
		"user":                 "deploy",
		"hostname":             "demo.example.internal",
	} {
		if conf[k] != want {
			t.Errorf("ssh -G: %s = %q, want %q", k, conf[k], want)
		}
	}
	// ssh -G prints IdentityFile before %-expansion (done when the key is
	// loaded) in the versions tested; either way the path is one piece.
	if id := conf["identityfile"]; id != env.Identity && id != strings.ReplaceAll(env.Identity, "%", "%%") {
		t.Errorf("ssh -G: identityfile = %q, want %q", id, env.Identity)
	}
	if !strings.Contains(conf["stricthostkeychecking"], "true") && conf["stricthostkeychecking"] != "yes" {
		t.Errorf("ssh -G: stricthostkeychecking = %q", conf["stricthostkeychecking"])
	}
}

// An ssh configuration of the operator's that forwards the agent, forwards
// ports, runs a local command or keeps no host key checking (a common
// ~/.ssh/config for jump hosts) does not reach a promote's connection: the
// command line's options come first, and ssh keeps the first value.
func TestSSHFlagsBeatAUserConfig(t *testing.T) {
	ssh := testenv.RequireCommand(t, "ssh")
	cfg := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(cfg, []byte("Host *\n  ForwardAgent yes\n  ForwardX11 yes\n  LocalForward 5432 db:5432\n"+
		"  RemoteForward 9000 localhost:9000\n  PermitLocalCommand yes\n  LocalCommand touch /tmp/pwned\n"+
		"  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  ServerAliveInterval 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cat := testCatalog()
	env := &catalog.Environment{Host: "ssh://deploy@demo.example.internal", KnownHosts: "/x/known_hosts"}
	target, _, err := sshTarget(env.Host)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(ssh, append(append([]string{"-F", cfg, "-G"}, SSHFlags(cat, env)...), target...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh -G: %v\n%s", err, out)
	}
	conf := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(l, " "); ok {
			if _, dup := conf[k]; !dup {
				conf[k] = v
			}
		}
	}
	for k, want := range map[string]string{"forwardagent": "no", "clearallforwardings": "yes", "permitlocalcommand": "no",
		"userknownhostsfile": "/x/known_hosts", "serveraliveinterval": "5"} {
		if conf[k] != want {
			t.Errorf("with a user config forwarding everything: %s = %q, want %q", k, conf[k], want)
		}
	}
	if s := conf["stricthostkeychecking"]; s != "true" && s != "yes" {
		t.Errorf("stricthostkeychecking = %q", s)
	}
}
