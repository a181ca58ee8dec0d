package release_test

import (
	"strings"
	"syscall"
	"testing"

	"github.com/maestro-platform/deploy/internal/testenv"
	"github.com/maestro-platform/deploy/tasks/release"
)

// Every promotion writes exactly one audit record, whatever ends it: Ctrl-C
// during a promote (as the target receives it) puts the previous release
// back, ends with a clear line, and leaves one record saying it was
// interrupted; a promote whose connection is cut and which is killed
// writes none, and the next promote, taking its lock over, writes it.
func TestInterruptedPromoteIsAudited(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := testenv.Context(t)
	defer cancel()
	f.build(ctx, nil)
	f.passTestAll(ctx)
	res, err := release.Promote(ctx, f.cat, f.opts("e2e"))
	if err != nil {
		t.Fatalf("first promote: %v\n%s", err, f.out.String())
	}
	history := func() []release.AuditRecord {
		t.Helper()
		recs, err := release.History(ctx, f.cat, f.opts("e2e"), true)
		if err != nil {
			t.Fatal(err)
		}
		return recs
	}
	before := len(history())

	t.Setenv("MAESTRO_TEST_SIGNALS", "1")
	out := f.interruptRelease(t, "promote", "promote:uploaded", "ctrl-c", false, syscall.SIGINT)
	if !strings.Contains(out, "interrupted (Ctrl-C) at upload") || !strings.Contains(out, "is running and healthy again") ||
		strings.Contains(out, "timeout") {
		t.Errorf("the interrupted promote does not end with a clear line:\n%s", out)
	}
	if got, want := f.current(), "releases/"+res.Release; got != want {
		t.Errorf("current -> %s after Ctrl-C, want %s", got, want)
	}
	recs := history()
	if len(recs) != before+1 {
		t.Fatalf("%d audit records after a Ctrl-C, want exactly one more than %d: %+v", len(recs), before, recs)
	}
	last := recs[len(recs)-1]
	if last.Action != "promote" || last.Outcome != release.OutcomeInterrupted || last.Step != "upload" ||
		!strings.Contains(last.Error, "interrupted (Ctrl-C)") || last.Previous != res.Release {
		t.Errorf("the record of the interrupted promote: %+v", last)
	}

	t.Setenv("MAESTRO_TEST_SIGNALS", "")
	f.interruptRelease(t, "promote", "promote:uploaded", "cut", true, syscall.SIGKILL)
	if n := len(history()); n != len(recs) {
		t.Fatalf("a promote killed with its connection cut wrote a record (%d, want %d)", n, len(recs))
	}
	if _, err := release.Promote(ctx, f.cat, f.opts("e2e")); err != nil {
		t.Fatalf("promote after the killed one: %v\n%s", err, f.out.String())
	}
	after := history()
	if len(after) != len(recs)+2 {
		t.Fatalf("%d audit records, want the dead promote's and this one's: %+v", len(after), after[len(recs):])
	}
	dead, next := after[len(after)-2], after[len(after)-1]
	if dead.Action != "promote" || dead.Outcome != release.OutcomeInterrupted || !strings.Contains(dead.Error, "took its lock over") ||
		dead.Session == "" || dead.Session == next.Session {
		t.Errorf("the dead promote's record: %+v", dead)
	}
	if next.Outcome != release.OutcomeLive || next.TookOver == "" {
		t.Errorf("the promote that took the lock over: %+v", next)
	}
}
