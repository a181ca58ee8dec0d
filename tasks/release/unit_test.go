package release

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/record"
)

func testCatalog() *catalog.Catalog {
	return &catalog.Catalog{File: "/x/services.toml", Project: catalog.Project{Name: "p", Network: "platform", DeployDir: "/x/d"},
		Services: []*catalog.Service{{Name: "a", Port: 80, DevPort: 9000, ProdPort: 8000, Written: catalog.Written{Env: map[string]string{"K": "v"}},
			Secrets: map[string]string{"T": "secret"}, Checks: []*catalog.Check{{Name: "h", Kind: "http", Line: 3}}, Line: 1}}}
}

// The gate reads the test record from the folder it is given and says
// what differs: the folder, the service and key, the image (named as build
// names it), what testAll did not check, and how to fix it: never by only
// testing again.
func TestCheckGate(t *testing.T) {
	cat := testCatalog()
	dir := t.TempDir()
	key, err := record.Key(dir)
	if err != nil {
		t.Fatal(err)
	}
	name := func(id string) string { return "tag-of-" + strings.TrimPrefix(id, "sha256:") }
	images := map[string]string{"a": "sha256:aaa"}
	ge := checkGate(cat, "demo", dir, key, images, name)
	if ge == nil || !ge.Untested() || !strings.Contains(ge.Error(), "no testAll has been recorded in "+dir) ||
		!strings.Contains(ge.Error(), "-force") {
		t.Fatalf("missing record: %v", ge)
	}
	views := record.Views(cat, key)
	rec := record.Test{Env: "dev", Project: "p", Images: images, Hashes: map[string]string{"a": "h1"}, Config: views, Passed: true}
	if err := record.WriteTest(dir, rec); err != nil {
		t.Fatal(err)
	}
	if err := checkGate(cat, "demo", dir, key, images, name); err != nil {
		t.Fatalf("matching record refused: %v", err)
	}
	err = checkGate(cat, "demo", dir, key, map[string]string{"a": "sha256:bbb"}, name)
	if ge, ok := err.(*GateError); !ok || ge == nil || ge.Untested() || !strings.Contains(err.Error(), "a: image tag-of-bbb (p/a:latest now) is not tag-of-aaa, which its container ran") {
		t.Fatalf("other image: %v", err)
	}
	for _, bad := range []string{"run `mage testAll`", "run `mage testAll` (or"} {
		if strings.Contains(err.Error(), bad) {
			t.Errorf("the hint only tests again (%q), which rewrites the record: %v", bad, err)
		}
	}
	if !strings.Contains(err.Error(), "fix: run `mage deployAll` on dev (or `mage up`, then `mage testAll`)") {
		t.Errorf("the hint is not the command that fixes it: %v", err)
	}
	changed := testCatalog()
	changed.Services[0].Env["K"] = "w"
	changed.Services[0].Secrets["T"] = "other-secret"
	err = checkGate(changed, "demo", dir, key, images, name)
	if err == nil || !strings.Contains(err.Error(), `a: env.K "v" -> "w"`) {
		t.Fatalf("changed config: %v", err)
	}
	// A secret's value differs between dev and the promoted environment by
	// design: not a reason to refuse. Its name is.
	if strings.Contains(err.Error(), "secrets.T") {
		t.Errorf("the gate refuses over a secret's value: %v", err)
	}
	if strings.Contains(err.Error(), "other-secret") || strings.Contains(err.Error(), "hmac") {
		t.Errorf("the gate's error shows a secret or its digest: %v", err)
	}
	renamed := testCatalog()
	renamed.Services[0].Secrets = map[string]string{"U": "secret"}
	if err := checkGate(renamed, "demo", dir, key, images, name); err == nil || !strings.Contains(err.Error(), "secrets.U added") {
		t.Errorf("a secret added since testAll: %v", err)
	}
	// What testAll did not check, and a container whose configuration
	// nothing describes, are refused by name.
	rec.Images, rec.Config = map[string]string{}, map[string]record.View{record.ProjectKey: views[record.ProjectKey]}
	if err := record.WriteTest(dir, rec); err != nil {
		t.Fatal(err)
	}
	if err := checkGate(cat, "demo", dir, key, images, name); err == nil || !strings.Contains(err.Error(), "a: the last testAll checked no container of it") {
		t.Errorf("unchecked service: %v", err)
	}
	rec.Images = images
	if err := record.WriteTest(dir, rec); err != nil {
		t.Fatal(err)
	}
	if err := checkGate(cat, "demo", dir, key, images, name); err == nil || !strings.Contains(err.Error(), "a: the container testAll checked ran a configuration that is neither") {
		t.Errorf("unknown configuration: %v", err)
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
