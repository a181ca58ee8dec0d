package release

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/record"
)

func testCatalog() *catalog.Catalog {
	return &catalog.Catalog{File: "/x/services.toml", Project: catalog.Project{Name: "p", Network: "platform", DeployDir: "/x/d"},
		Services: []*catalog.Service{{Name: "a", Port: 80, DevPort: 9000, ProdPort: 8000, Env: map[string]string{"K": "v"},
			Secrets: map[string]string{"T": "secret"}, Checks: []*catalog.Check{{Name: "h", Kind: "http", Line: 3}}, Line: 1}}}
}

// The gate reads the test record from the folder it is given and says
// what differs: the folder, the service and key, the image, and -force.
func TestCheckGate(t *testing.T) {
	cat := testCatalog()
	dir := t.TempDir()
	key, err := record.Key(dir)
	if err != nil {
		t.Fatal(err)
	}
	images := map[string]string{"a": "sha256:aaa"}
	err = checkGate(cat, "demo", dir, key, images)
	var ge *GateError
	if !errors.As(err, &ge) || !ge.Untested() || !strings.Contains(err.Error(), "no testAll has been recorded in "+dir) ||
		!strings.Contains(err.Error(), "-force") {
		t.Fatalf("missing record: %v", err)
	}
	rec := record.Test{Env: "dev", Project: "p", Images: images, Config: record.Views(cat, key), Passed: true}
	if err := record.WriteTest(dir, rec); err != nil {
		t.Fatal(err)
	}
	if err := checkGate(cat, "demo", dir, key, images); err != nil {
		t.Fatalf("matching record refused: %v", err)
	}
	err = checkGate(cat, "demo", dir, key, map[string]string{"a": "sha256:bbbbbbbbbbbbbbbbbbbb"})
	if !errors.As(err, &ge) || ge.Untested() || !strings.Contains(err.Error(), "a: image bbbbbbbbbbbb is not the tested aaa") {
		t.Fatalf("other image: %v", err)
	}
	changed := testCatalog()
	changed.Services[0].Env["K"] = "w"
	changed.Services[0].Secrets["T"] = "other-secret"
	err = checkGate(changed, "demo", dir, key, images)
	if err == nil || !strings.Contains(err.Error(), `a: env.K "v" -> "w"`) {
		t.Fatalf("changed config: %v", err)
	}
	// A secret's value differs between dev and the promoted environment by
	// design: not a reason to refuse.
	if strings.Contains(err.Error(), "secrets.T") {
		t.Errorf("the gate refuses over a secret's value: %v", err)
	}
	if strings.Contains(err.Error(), "other-secret") || strings.Contains(err.Error(), "hmac") {
		t.Errorf("the gate's error shows a secret or its digest: %v", err)
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
	for _, want := range []string{"StrictHostKeyChecking=yes", `UserKnownHostsFile="/x/keys/known"`, "GlobalKnownHostsFile=/dev/null", "BatchMode=yes", "IdentityFile="} {
		if !strings.Contains(joined, want) {
			t.Errorf("flags %q lack %q", joined, want)
		}
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
