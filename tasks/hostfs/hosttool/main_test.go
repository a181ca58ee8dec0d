package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
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
	// keep 1: the newest stays, the current stays, a protected one stays.
	removed, err := prune(1, []string{ids[0]})
	if err != nil || !slices.Equal(removed, []string{ids[2]}) {
		t.Fatalf("prune removed %v, %v", removed, err)
	}
	if err := activate("20990101T000000Z"); err == nil {
		t.Fatal("activated a release that is not there")
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
