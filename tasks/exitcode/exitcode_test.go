package exitcode_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/maestro-platform/deploy/tasks/exitcode"
)

type usage struct{}

func (usage) Error() string   { return "bad" }
func (usage) ExitStatus() int { return exitcode.Usage }

func TestOf(t *testing.T) {
	changed := exitcode.New(exitcode.Changes, "would change")
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, 0},
		{errors.New("plain"), exitcode.Failure},
		{fmt.Errorf("wrapped: %w", usage{}), exitcode.Usage},
		{fmt.Errorf("plan: %w (run render)", changed), exitcode.Changes},
		{errors.Join(errors.New("first"), usage{}), exitcode.Usage},
	} {
		if got := exitcode.Of(tc.err); got != tc.want {
			t.Errorf("Of(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
	if err := fmt.Errorf("x: %w", changed); !errors.Is(err, changed) || err.Error() != "x: would change" {
		t.Errorf("a wrapped sentinel: %v", err)
	}
}
