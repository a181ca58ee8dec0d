package secrets

import (
	"fmt"
	"strings"

	"github.com/maestro-platform/deploy/tasks/catalog"
)

// Check is one line of Doctor: where a secret's value would come from, or
// what is wrong with a source. It never holds a value.
type Check struct {
	// Subject is "secret NAME", or "secrets file" for a file that cannot
	// be used.
	Subject string
	// Text says where the value would come from, or what is wrong.
	Text string
	// Source is where the value would come from (FromCommand: only if the
	// command prints it); "" when nowhere.
	Source Source
	// Problem is set when the value would be found nowhere or a source
	// cannot be used: Resolve would fail.
	Problem bool
	// DevDefault is set when the value would be the catalog's dev default,
	// worth a warning: it is no secret, and not used remotely.
	DevDefault bool
}

func (c Check) String() string { return c.Subject + ": " + c.Text }

// Doctor says, one line per declared secret, where Resolve would take its
// value from for env, without running the secrets_command (it may ask for
// a passphrase, and doctor must stay quick and harmless): a secret no
// other source gives is then said to depend on the command. A secrets
// file that cannot be used gives a line of its own, and is then treated
// as missing. Doctor changes nothing, and returns nil when the catalog
// declares no secret.
func Doctor(cat *catalog.Catalog, env *catalog.Environment) []Check {
	l := newLookup(cat, env)
	var out []Check
	if err := l.outside(); err != nil {
		out = append(out, Check{Subject: "secrets file", Text: err.Error(), Problem: true})
		l.file, l.fileFound, l.fileRefused = nil, false, true
	}
	for _, u := range l.uses {
		c := Check{Subject: "secret " + u.name}
		o, _, m := l.decide(u)
		used := " (" + strings.Join(o.Services, ", ") + ")"
		switch {
		case m == nil && o.Source != FromDefault:
			c.Source, c.Text = o.Source, o.Where+used
		case len(env.SecretsCommand) > 0:
			// Resolve would run the command before falling back on a
			// dev default.
			c.Source = FromCommand
			c.Text = "secrets_command " + commandLine(env.SecretsCommand) + ", if it prints it (doctor does not run it)"
			if m == nil {
				c.Text += "; else the " + o.Where
				c.DevDefault = true
			}
			c.Text += used
		case m == nil:
			c.Source, c.Text, c.DevDefault = FromDefault, o.Where+used, true
		default:
			e := l.missingError([]Missing{*m})
			c.Problem = true
			c.Text = fmt.Sprintf("found nowhere, needed by %s: %s", strings.Join(m.Services, ", "), strings.Join(e.looked(*m), "; "))
		}
		out = append(out, c)
	}
	return out
}
