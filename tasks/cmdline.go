package tasks

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/maestro-platform/deploy/tasks/exitcode"
)

// usage is what one target takes on the command line: its positional
// arguments, then its -options (lower case, as mage matches them).
type usage struct {
	positional int
	options    []string
}

// commandLine is what each target of this package takes, by its name in
// lower case. Mage reads the targets' signatures; this copy exists so that
// the whole command line is checked before the first target runs (mage
// checks a target's arguments only when it reaches it, so `mage testAll
// -env=demo` would run the dev testAll first). TestCommandLineMatchesTargets
// holds it to the signatures.
var commandLine = map[string]usage{
	"render":    {},
	"plan":      {options: []string{"env"}},
	"import":    {positional: 1, options: []string{"dryrun", "lossy", "prebuild"}},
	"build":     {},
	"buildone":  {positional: 1},
	"up":        {},
	"testall":   {options: []string{"env"}},
	"deployall": {},
	"status":    {options: []string{"env"}},
	"logs":      {positional: 1, options: []string{"env", "f", "since", "tail"}},
	"down":      {options: []string{"volumes", "env", "yes", "wait"}},
	"doctor":    {options: []string{"env"}},
	"promote":   {options: []string{"env", "force", "wait", "release"}},
	"rollback":  {options: []string{"env", "wait"}},
	"releases":  {options: []string{"env"}},
	"history":   {options: []string{"env", "json"}},
	"prune":     {options: []string{"env", "wait"}},
}

// ArgsError is a command line that gives a target an option it does not
// take; nothing has run.
type ArgsError struct {
	Target, Arg string
	Options     []string
}

func (e *ArgsError) Error() string {
	takes := "takes no option"
	if len(e.Options) > 0 {
		takes = "takes -" + strings.Join(e.Options, ", -")
	}
	return fmt.Sprintf("%s does not take %s (it %s; `mage -h %s` describes it); nothing was run", e.Target, e.Arg, takes, e.Target)
}

// ExitStatus is that of a bad argument.
func (e *ArgsError) ExitStatus() int { return exitcode.Usage }

// checkArgs checks, in a mage command line's arguments, what follows each
// target of this package: its positional arguments, then only options it
// takes. Arguments of targets from elsewhere (a magefile's own) are left
// to mage.
func checkArgs(args []string) error {
	for i := 0; i < len(args); i++ {
		u, ok := commandLine[strings.ToLower(args[i])]
		if !ok {
			continue
		}
		target := args[i]
		i += u.positional
		for i+1 < len(args) && strings.HasPrefix(args[i+1], "-") {
			i++
			name, _, _ := strings.Cut(strings.TrimPrefix(args[i], "-"), "=")
			if !slices.Contains(u.options, strings.ToLower(name)) {
				return &ArgsError{Target: target, Arg: args[i], Options: u.options}
			}
		}
	}
	return nil
}

// argsChecked checks the process's command line once, at the first
// target.
var argsChecked = sync.OnceValue(func() error { return checkArgs(os.Args[1:]) })
