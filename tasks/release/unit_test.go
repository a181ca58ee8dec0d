package release

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/maestro-platform/deploy/tasks/catalog"
)

func testCatalog() *catalog.Catalog {
	return &catalog.Catalog{File: "/x/services.toml", Project: catalog.Project{Name: "p", Network: "platform", DeployDir: "/x/d"},
		Services: []*catalog.Service{{Name: "a", Port: 80, DevPort: 9000, ProdPort: 8000, Env: map[string]string{"K": "v"},
			Secrets: map[string]string{"T": "secret"}, Checks: []*catalog.Check{{Name: "h", Kind: "http", Line: 3}}, Line: 1}}}
}

func TestConfigHash(t *testing.T) {
	base := ConfigHash(testCatalog())
	same := testCatalog()
	same.Services[0].DevPort, same.Services[0].ProdPort, same.Services[0].Line = 1, 2, 99
	same.Services[0].ExtraPorts = map[string]int{"e2e": 5}
	same.Environments = map[string]*catalog.Environment{"demo": {Name: "demo"}}
	same.Services[0].Prebuild = []string{"go", "build"}
	if ConfigHash(same) != base {
		t.Error("ports, environments, lines or build recipe changed the hash")
	}
	for name, change := range map[string]func(c *catalog.Catalog){
		"env":      func(c *catalog.Catalog) { c.Services[0].Env["K"] = "w" },
		"secret":   func(c *catalog.Catalog) { c.Services[0].Secrets["T"] = "other" },
		"port":     func(c *catalog.Catalog) { c.Services[0].Port = 81 },
		"replicas": func(c *catalog.Catalog) { c.Services[0].Replicas = 3 },
		"check":    func(c *catalog.Catalog) { c.Services[0].Checks[0].Path = "/x" },
		"network":  func(c *catalog.Catalog) { c.Project.Network = "n" },
	} {
		c := testCatalog()
		change(c)
		if ConfigHash(c) == base {
			t.Errorf("%s change left the hash as it was", name)
		}
	}
}

func TestCheckGate(t *testing.T) {
	cat := testCatalog()
	rec := TestRecord{Env: "dev", Project: "p", Images: map[string]string{"a": "sha256:aaa"}, ConfigHash: ConfigHash(cat), Passed: true}
	if err := checkGate(cat, "demo", rec, nil, map[string]string{"a": "sha256:aaa"}); err != nil {
		t.Fatalf("matching record refused: %v", err)
	}
	err := checkGate(cat, "demo", rec, nil, map[string]string{"a": "sha256:bbbbbbbbbbbbbbbbbbbb"})
	if err == nil || !strings.Contains(err.Error(), "a: image bbbbbbbbbbbb is not the tested aaa") {
		t.Fatalf("other image: %v", err)
	}
	rec.ConfigHash = "x"
	if err := checkGate(cat, "demo", rec, nil, map[string]string{"a": "sha256:aaa"}); err == nil || !strings.Contains(err.Error(), "catalog's services or infrastructure changed") {
		t.Fatalf("changed config: %v", err)
	}
	if err := checkGate(cat, "demo", TestRecord{}, os.ErrNotExist, nil); err == nil || !strings.Contains(err.Error(), "no testAll has been recorded") {
		t.Fatalf("missing record: %v", err)
	}
}

func TestTestRecordRoundTrip(t *testing.T) {
	dir := t.TempDir()
	rec := TestRecord{Env: "dev", Project: "p", Images: map[string]string{"a": "sha256:1"}, ConfigHash: "h", Passed: true,
		At: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	if err := WriteTestRecord(dir, rec); err != nil {
		t.Fatal(err)
	}
	got, err := ReadTestRecord(dir)
	if err != nil || !reflect.DeepEqual(got, rec) {
		t.Fatalf("read %+v, %v; want %+v", got, err, rec)
	}
	if _, err := os.Stat(filepath.Join(dir, ".state", "last-testall.json")); err != nil {
		t.Fatal(err)
	}
}

func TestClassifyHostKey(t *testing.T) {
	changed := "@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\nHost key verification failed.\n"
	if e := classifyHostKey(changed, "h:2222", "/k"); e == nil || !e.Changed ||
		!strings.Contains(e.Error(), "host key for h:2222 does not match /k") || !strings.Contains(e.Error(), "[h]:2222") {
		t.Fatalf("changed: %v", e)
	}
	unknown := "No ED25519 host key is known for [h]:2222 and you have requested strict checking.\nHost key verification failed.\n"
	if e := classifyHostKey(unknown, "h:2222", "/k"); e == nil || e.Changed || !strings.Contains(e.Error(), "is not in /k") {
		t.Fatalf("unknown: %v", e)
	}
	if e := classifyHostKey("Permission denied (publickey).", "h", "/k"); e != nil {
		t.Fatalf("a refused login is not a host key problem: %v", e)
	}
}

func TestSSHArgs(t *testing.T) {
	args, display, err := sshTarget("ssh://deploy@demo.example:2200")
	if err != nil || display != "demo.example:2200" || !reflect.DeepEqual(args, []string{"-p", "2200", "-l", "deploy", "--", "demo.example"}) {
		t.Fatalf("%v %q %v", args, display, err)
	}
	cat := testCatalog()
	flags := SSHFlags(cat, &catalog.Environment{KnownHosts: "keys/known", Identity: "~/id"})
	joined := strings.Join(flags, " ")
	for _, want := range []string{"StrictHostKeyChecking=yes", "UserKnownHostsFile=/x/keys/known", "GlobalKnownHostsFile=/dev/null", "BatchMode=yes", "-i"} {
		if !strings.Contains(joined, want) {
			t.Errorf("flags %q lack %q", joined, want)
		}
	}
}

func TestStackArgs(t *testing.T) {
	want := []string{"docker", "stack", "deploy", "--prune", "--resolve-image", "never", "-c", "docker-stack.yml", "p"}
	if got := StackDeployArgs("p", "docker-stack.yml"); !reflect.DeepEqual(got, want) {
		t.Fatalf("%q", got)
	}
	if got := StackRemoveArgs("p"); !reflect.DeepEqual(got, []string{"docker", "stack", "rm", "p"}) {
		t.Fatalf("%q", got)
	}
}

func TestIDs(t *testing.T) {
	if got := uniqueID("20261127T181500Z-abc1234", []string{"20261127T181500Z-abc1234"}); got != "20261127T181500Z-abc1234.2" {
		t.Fatalf("unique id %q", got)
	}
	r := parseRelease("20261127T181500Z-abc1234")
	if r.Commit != "abc1234" || !r.At.Equal(time.Date(2026, 11, 27, 18, 15, 0, 0, time.UTC)) {
		t.Fatalf("%+v", r)
	}
	if got := hostAddr(&catalog.Environment{Host: "ssh://u@10.1.2.3:22"}); got != "10.1.2.3" {
		t.Fatalf("hostAddr %q", got)
	}
	if got := hostAddr(&catalog.Environment{}); got != "127.0.0.1" {
		t.Fatalf("hostAddr local %q", got)
	}
}
