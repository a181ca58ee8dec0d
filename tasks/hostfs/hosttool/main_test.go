package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/maestro-platform/deploy/tasks/ui/uitest"
)

func TestStageActivatePrune(t *testing.T) {
	root = t.TempDir()
	ids := []string{"20260101T000000Z-aaaa", "20260102T000000Z-bbbb", "20260103T000000Z-cccc", "20260104T000000Z"}
	for _, id := range ids {
		if err := os.MkdirAll(filepath.Join(root, ".incoming", id), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, ".incoming", id, "docker-compose.yml"), []byte(id), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := stage(id); err != nil {
			t.Fatal(err)
		}
	}
	if err := stage(ids[0]); err == nil {
		t.Fatal("staging over an existing release succeeded")
	}
	if err := activate(ids[1]); err != nil {
		t.Fatal(err)
	}
	got, cur, err := list()
	if err != nil || cur != ids[1] || !slices.Equal(got, ids) {
		t.Fatalf("list %v %q %v", got, cur, err)
	}
	if err := remove(ids[1]); err == nil {
		t.Fatal("removed the current release")
	}
	// keep 1: the newest live one (current) stays, a protected one stays;
	// the two that never went live go.
	removed, err := prune(1, []string{ids[0]})
	if err != nil || !slices.Equal(removed, []string{ids[2], ids[3]}) {
		t.Fatalf("prune removed %v, %v", removed, err)
	}
	if err := activate("20990101T000000Z"); err == nil {
		t.Fatal("activated a release that is not there")
	}
	if err := run([]string{"stage", "../../etc"}); err == nil {
		t.Fatal("a path was accepted as a release id")
	}
}

// A release a killed promote left (uploaded, never activated) is not live:
// rollback must not take it, and prune removes it. Releases from before
// the marks count as live once the first release is marked.
func TestLiveMarks(t *testing.T) {
	root = t.TempDir()
	ids := []string{"20260101T000000Z-aaaa", "20260102T000000Z-bbbb", "20260103T000000Z-cccc", "20260104T000000Z-dddd"}
	for _, id := range ids {
		if err := os.MkdirAll(filepath.Join(root, ".incoming", id), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := stage(id); err != nil {
			t.Fatal(err)
		}
	}
	// An older host: aaaa went live before the marks existed.
	if err := os.Symlink(filepath.Join("releases", ids[0]), filepath.Join(root, "current")); err != nil {
		t.Fatal(err)
	}
	if got, err := live(); err != nil || len(got) != 0 {
		t.Fatalf("live before any mark: %v %v", got, err)
	}
	// bbbb goes live: aaaa, older, is marked with it. cccc is uploaded by a
	// promote that is killed; dddd goes live.
	for _, id := range []string{ids[1], ids[3]} {
		if err := activate(id); err != nil {
			t.Fatal(err)
		}
	}
	got, err := live()
	if err != nil || !slices.Equal(got, []string{ids[0], ids[1], ids[3]}) {
		t.Fatalf("live %v %v, want all but the never activated %s", got, err, ids[2])
	}
	removed, err := prune(2, nil)
	if err != nil || !slices.Equal(removed, []string{ids[0], ids[2]}) {
		t.Fatalf("prune(2) removed %v %v, want the oldest live one and the never live one", removed, err)
	}
	if got, _ := live(); !slices.Equal(got, []string{ids[1], ids[3]}) {
		t.Errorf("live after prune: %v", got)
	}
	if err := run([]string{"stage", "../../etc"}); err == nil {
		t.Fatal("a path was accepted as a release id")
	}
}

// A folder belongs to one environment: the first claim takes it, the same
// environment may claim it again, another one is refused.
func TestClaim(t *testing.T) {
	root = t.TempDir()
	if err := claim("maestro", "demo"); err != nil {
		t.Fatal(err)
	}
	if err := claim("maestro", "demo"); err != nil {
		t.Fatalf("the owner's second claim: %v", err)
	}
	err := claim("maestro", "staging")
	if err == nil || !strings.Contains(err.Error(), "belongs to environment maestro/demo") {
		t.Fatalf("another environment's claim: %v", err)
	}
	if err := claim("../x", "demo"); err == nil {
		t.Fatal("a path was accepted as a project name")
	}
}

// The lock is held while the holder's input is open; a second holder is
// told who holds it; a holder whose input ended without a release leaves
// its description, which the next holder reports as taken over.
func TestHold(t *testing.T) {
	root = t.TempDir()
	in, inw := io.Pipe()
	out := &uitest.Buffer{}
	done := make(chan error, 1)
	go func() { done <- hold(`{"who":"a"}`, in, out) }()
	for !strings.Contains(out.String(), `"held":true`) {
		time.Sleep(time.Millisecond)
	}
	if strings.Contains(out.String(), "took_over") {
		t.Fatalf("first holder took over from nobody: %s", out)
	}
	var busy bytes.Buffer
	if err := hold(`{"who":"b"}`, strings.NewReader(""), &busy); !errors.Is(err, errBusy) ||
		!strings.Contains(busy.String(), `"holder":{"who":"a"}`) {
		t.Fatalf("second holder: %v %s", err, busy.String())
	}
	io.WriteString(inw, "release\n") // the first holder releases
	inw.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, holderFile)); !os.IsNotExist(err) {
		t.Fatalf("a released lock left its holder's description (%v)", err)
	}
	// A holder whose input just ends (killed): its description stays.
	in2, inw2 := io.Pipe()
	out2 := &uitest.Buffer{}
	done2 := make(chan error, 1)
	go func() { done2 <- hold(`{"who":"gone"}`, in2, out2) }()
	for !strings.Contains(out2.String(), `"held":true`) {
		time.Sleep(time.Millisecond)
	}
	inw2.Close()
	if err := <-done2; err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, holderFile)); string(b) != `{"who":"gone"}` {
		t.Fatalf("a holder gone without a release left %q", b)
	}
	// A holder whose session ended without a release: its description
	// stays, the flock does not.
	if err := os.WriteFile(filepath.Join(root, holderFile), []byte(`{"who":"dead"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	var next bytes.Buffer
	if err := hold(`{"who":"c"}`, strings.NewReader(""), &next); err != nil || !strings.Contains(next.String(), `"took_over":{"who":"dead"}`) {
		t.Fatalf("take over: %v %s", err, next.String())
	}
	if err := hold(`not json`, strings.NewReader(""), io.Discard); err == nil {
		t.Fatal("a holder that is not JSON was accepted")
	}
}

func TestAudit(t *testing.T) {
	root = t.TempDir()
	for _, r := range []string{`{"n":1}`, "{\n \"n\": 2\n}"} {
		if err := auditAppend(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := auditAppend(`[1]`); err == nil {
		t.Fatal("a record that is no object was appended")
	}
	var out bytes.Buffer
	if err := auditRead(&out, 1<<20); err != nil || strings.TrimSpace(out.String()) != `[{"n":1},{"n":2}]` {
		t.Fatalf("audit-read: %v %q", err, out.String())
	}
	// Within the bound: the newest whole records that fit, the first line
	// of the tail read (cut) left out.
	out.Reset()
	if err := auditRead(&out, 12); err != nil || strings.TrimSpace(out.String()) != `[{"n":2}]` {
		t.Fatalf("audit-read within 12 bytes: %v %q", err, out.String())
	}
	// A record with what escapes to more bytes is printed as the log holds
	// it, so the bound holds.
	root = t.TempDir()
	if err := os.WriteFile(filepath.Join(root, auditFile), []byte(`{"a":"<&>"}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := auditRead(&out, 1<<10); err != nil || strings.TrimSpace(out.String()) != `[{"a":"<&>"}]` {
		t.Fatalf("audit-read: %v %q", err, out.String())
	}
}

// df answers the folder's filesystem's space, as statfs(2) gives it; a
// folder that is not there is an error.
func TestDF(t *testing.T) {
	root = t.TempDir()
	var out bytes.Buffer
	if err := df(&out); err != nil {
		t.Fatal(err)
	}
	var d disk
	if err := json.Unmarshal(out.Bytes(), &d); err != nil || d.Total == 0 || d.Free > d.Total {
		t.Fatalf("df = %q (%+v, %v): want a total, and free within it", out.String(), d, err)
	}
	root = filepath.Join(t.TempDir(), "gone")
	if err := df(io.Discard); err == nil || !strings.Contains(err.Error(), "gone") {
		t.Fatalf("df of a missing folder: %v", err)
	}
}
