package secrets

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/maestro-platform/deploy/tasks/exitcode"
)

// Missing is one secret found nowhere.
type Missing struct {
	Name string
	// Services are those that declare it and have no value.
	Services []string
	// Defaults are the places (file:line: key) of the catalog's dev
	// defaults for it: not used, as the environment is remote or some
	// services have none.
	Defaults []string
}

// MissingError is a Resolve that found some secrets nowhere. It names
// each, the services that need it, the environment and every place it was
// looked for; no value appears in it.
type MissingError struct {
	Env    string
	Remote bool
	// Secrets are the missing ones, by name.
	Secrets []Missing
	// File is the secrets file looked in, FileFound whether it exists.
	File      string
	FileFound bool
	// Command is the secrets_command (nil: none); CommandRan whether it
	// ran (it runs only when something is missing after the file).
	Command    []string
	CommandRan bool
	// empty marks, per source, the names given with an empty value.
	empty map[Source]map[string]bool
	// fileRefused is set by Doctor, which goes on past a secrets file it
	// cannot use (Resolve stops there).
	fileRefused bool
}

// ExitStatus is exitcode.Usage (a secret found nowhere is a setting to
// fix before anything can run): the same interface mage's mg.ExitStatus reads,
// so that a caller mapping errors to exit statuses can test for
// interface{ ExitStatus() int } with errors.As.
func (e *MissingError) ExitStatus() int { return exitcode.Usage }

// Names lists the missing secrets' names.
func (e *MissingError) Names() []string {
	out := make([]string, len(e.Secrets))
	for i, m := range e.Secrets {
		out[i] = m.Name
	}
	return out
}

func (e *MissingError) Error() string {
	var b strings.Builder
	n := len(e.Secrets)
	fmt.Fprintf(&b, "environment %q: %d secret%s found nowhere: %s", e.Env, n, plural(n), strings.Join(e.Names(), ", "))
	for _, m := range e.Secrets {
		fmt.Fprintf(&b, "\n  %s, needed by %s; looked for in:", m.Name, strings.Join(m.Services, ", "))
		for _, l := range e.looked(m) {
			b.WriteString("\n    - " + l)
		}
	}
	fmt.Fprintf(&b, "\n  give each a value outside the catalog: export it, or put NAME=value in %s (chmod 600 it)", e.File)
	if e.Command == nil {
		fmt.Fprintf(&b, ", or set secrets_command under [environments.%s]", e.Env)
	}
	return b.String()
}

// looked says, in order, what each source had to say about m.
func (e *MissingError) looked(m Missing) []string {
	state := func(src Source, none string) string {
		if e.empty[src][m.Name] {
			return "given, but empty"
		}
		return none
	}
	out := []string{"environment variable " + m.Name + ": " + state(FromEnv, "not set")}
	if e.fileRefused {
		out = append(out, "secrets file "+e.File+": cannot be used (see above)")
	} else if e.FileFound {
		out = append(out, "secrets file "+e.File+": "+state(FromFile, "exists, does not define it"))
	} else {
		out = append(out, "secrets file "+e.File+": does not exist")
	}
	switch {
	case e.Command == nil:
		out = append(out, fmt.Sprintf("no secrets_command for environment %q", e.Env))
	case e.CommandRan:
		out = append(out, "secrets_command "+commandLine(e.Command)+": "+state(FromCommand, "ran, did not print it"))
	default:
		out = append(out, "secrets_command "+commandLine(e.Command)+": not run")
	}
	switch {
	case e.Remote && len(m.Defaults) > 0:
		out = append(out, "the catalog's dev default is not used for remote environments ("+strings.Join(m.Defaults, "; ")+")")
	case e.Remote:
		out = append(out, "the catalog gives no dev default (and would not use one for a remote environment)")
	case len(m.Defaults) > 0:
		out = append(out, "the catalog's dev default belongs to other services ("+strings.Join(m.Defaults, "; ")+"); "+strings.Join(m.Services, ", ")+" declare"+verbS(len(m.Services))+" it without one")
	default:
		out = append(out, "the catalog gives no dev default")
	}
	return out
}

func (l *lookup) missingError(missing []Missing) *MissingError {
	return &MissingError{Env: l.env.Name, Remote: l.env.Remote(), Secrets: missing,
		File: l.env.SecretsFile, FileFound: l.fileFound, Command: l.env.SecretsCommand, CommandRan: l.cmdRan,
		empty: l.empty, fileRefused: l.fileRefused}
}

// SourceError is a source of secrets that cannot be used: a secrets file
// that is not private, not a regular file or not dotenv, or a
// secrets_command that fails, hangs or prints too much. It never holds a
// value: of a command's standard error it keeps the last line, with every
// value known by then hidden.
type SourceError struct {
	Env string
	// Source is FromFile or FromCommand.
	Source Source
	// Where is the file's path, or the command line.
	Where string
	Msg   string
	Hint  string
}

// ExitStatus is exitcode.Usage for a secrets file (a setting to fix) and
// exitcode.Failure for a secrets_command (a step that failed, which may
// work when run again: an agent unlocked, a network back).
func (e *SourceError) ExitStatus() int {
	if e.Source == FromFile {
		return exitcode.Usage
	}
	return exitcode.Failure
}

func (e *SourceError) Error() string {
	what := "secrets file " + e.Where
	if e.Source == FromCommand {
		what = "secrets_command " + e.Where
	}
	s := fmt.Sprintf("environment %q: %s: %s", e.Env, what, e.Msg)
	if e.Hint != "" {
		s += " (" + e.Hint + ")"
	}
	return s
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func verbS(n int) string {
	if n == 1 {
		return "s"
	}
	return ""
}

// commandLine writes an argument list for reading: words with spaces or
// quotes are quoted, so that it reads back as the list it is.
func commandLine(argv []string) string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if a == "" || strings.ContainsAny(a, " \t\n\"'\\$`") {
			a = strconv.Quote(a)
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}
