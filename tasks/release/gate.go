package release

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/record"
)

// GateError is a refused promotion: what differs from the last passing
// testAll, and how to fix it.
type GateError struct {
	Env     string
	Reasons []string
	// untested: no passing testAll at all (else one that differs).
	untested bool
}

func (e *GateError) Error() string {
	return fmt.Sprintf("promote %s refused: the release is not what the last testAll passed:\n  - %s\n"+
		"fix: run `mage testAll` (or `mage deployAll`) on dev and promote when it passes; "+
		"to ship it untested anyway, add -force (it says so loudly)",
		e.Env, strings.Join(e.Reasons, "\n  - "))
}

// Untested reports whether no passing testAll was recorded at all, as
// opposed to one that differs from the release.
func (e *GateError) Untested() bool { return e.untested }

// checkGate compares the test record in deployDir with the images and
// configuration about to be shipped. images maps service to the local
// image ID now; key is deployDir's digest key.
func checkGate(cat *catalog.Catalog, env, deployDir string, key []byte, images map[string]string) error {
	rec, err := record.ReadTest(deployDir)
	if err != nil {
		where := filepath.Join(deployDir, filepath.FromSlash(record.TestFile))
		if errors.Is(err, os.ErrNotExist) {
			return &GateError{Env: env, untested: true, Reasons: []string{"no testAll has been recorded in " + deployDir + " (no " + where + ")"}}
		}
		return &GateError{Env: env, untested: true, Reasons: []string{err.Error()}}
	}
	var reasons []string
	if !rec.Passed {
		reasons = append(reasons, fmt.Sprintf("the last testAll (%s, %s) failed", rec.Env, rec.At.Local().Format(time.RFC3339)))
	}
	if rec.Env != "dev" {
		reasons = append(reasons, fmt.Sprintf("the last testAll ran on %q, not on dev", rec.Env))
	}
	if rec.Project != "" && rec.Project != cat.Project.Name {
		reasons = append(reasons, fmt.Sprintf("the last testAll tested project %q, not %q", rec.Project, cat.Project.Name))
	}
	if rec.Config == nil {
		reasons = append(reasons, "the test record in "+deployDir+" is from an older version of this tool and holds no configuration")
	} else {
		for _, c := range record.Compare(rec.Config, record.Views(cat, key)) {
			// Secret values differ between dev and the promoted
			// environment by design; their names are compared.
			if c.Secret() {
				continue
			}
			reasons = append(reasons, "since the last testAll, "+c.String())
		}
	}
	for _, n := range slices.Sorted(maps.Keys(images)) {
		tested, ok := rec.Images[n]
		switch {
		case !ok:
			reasons = append(reasons, fmt.Sprintf("%s: not in the last testAll", n))
		case tested != images[n]:
			reasons = append(reasons, fmt.Sprintf("%s: image %s is not the tested %s (rebuilt since the last testAll)", n, engine.ShortID(images[n]), engine.ShortID(tested)))
		}
	}
	if len(reasons) > 0 {
		return &GateError{Env: env, Reasons: reasons, untested: !rec.Passed}
	}
	return nil
}
