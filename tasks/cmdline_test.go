package tasks

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/magefile/mage/parse"

	"github.com/maestro-platform/deploy/tasks/exitcode"
)

// The command line's table is the targets' signatures as mage reads them:
// every target, its positional arguments and its options, nothing more.
func TestCommandLineMatchesTargets(t *testing.T) {
	var files []string
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if !strings.HasSuffix(n, "_test.go") {
			files = append(files, n)
		}
	}
	info, err := parse.Package(".", files, false)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range info.Funcs {
		name := strings.ToLower(f.TargetName())
		seen[name] = true
		got, ok := commandLine[name]
		if !ok {
			t.Errorf("target %s is not in commandLine", f.TargetName())
			continue
		}
		want := usage{positional: f.NumRequiredArgs()}
		for _, a := range f.Args {
			if a.Optional {
				want.options = append(want.options, strings.ToLower(a.Name))
			}
		}
		if got.positional != want.positional || !slices.Equal(got.options, want.options) {
			t.Errorf("commandLine[%q] = %+v, the signature says %+v", name, got, want)
		}
	}
	for name := range commandLine {
		if !seen[name] {
			t.Errorf("commandLine has %q, which is no target", name)
		}
	}
	if len(seen) < 10 {
		t.Fatalf("parsed only %d targets: %v", len(seen), seen)
	}
}

func TestCheckArgs(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		bad     string // the argument named, "" = accepted
		options string
	}{
		{args: []string{"testAll"}},
		{args: []string{"-v", "render", "testall", "status"}},
		{args: []string{"promote", "-env=demo", "-force", "-WAIT=true", "history", "-json"}},
		{args: []string{"logs", "-gateway"}}, // a positional argument, whatever it looks like
		{args: []string{"import", "a.yml,b", "-dryRun", "-lossy"}},
		{args: []string{"inventory", "-x", "render"}}, // a magefile's own target: mage's business
		{args: []string{"render", "testAll", "-env=demo", "up", "-env=demo"}, bad: "-env=demo", options: "takes no option"},
		{args: []string{"down", "-env=demo", "-yes"}},
		{args: []string{"down", "-env=demo", "-force"}, bad: "-force", options: "takes -volumes, -env, -yes, -wait"},
		{args: []string{"logs", "gateway", "-f", "-since=5m", "-env=demo"}},
		{args: []string{"logs", "gateway", "-follow"}, bad: "-follow", options: "takes -env, -f, -since, -tail"},
		{args: []string{"promote", "-release=x"}},
		{args: []string{"promote", "-id=x"}, bad: "-id=x", options: "takes -env, -force, -wait, -release"},
	} {
		err := checkArgs(tc.args)
		var ae *ArgsError
		switch {
		case tc.bad == "" && err != nil:
			t.Errorf("%q: %v", tc.args, err)
		case tc.bad != "" && (!errors.As(err, &ae) || ae.Arg != tc.bad || !strings.Contains(err.Error(), tc.options)):
			t.Errorf("%q: got %v, want %s named and %q", tc.args, err, tc.bad, tc.options)
		case tc.bad != "" && exitcode.Of(err) != exitcode.Usage:
			t.Errorf("%q: exit %d, want %d", tc.args, exitcode.Of(err), exitcode.Usage)
		}
	}
}
