// Package exitcode holds the targets' exit statuses, so that scripts can
// tell a bad catalog from a failed deployment. An error says its own
// status with an ExitStatus method (the interface mage's mg.ExitStatus
// reads too); Of asks it.
package exitcode

import "errors"

// The exit statuses; the README's table says when each is given.
const (
	// Failure: a step failed (a build, a health wait, a check, a
	// promotion...).
	Failure = 1
	// Usage: bad input to fix (a catalog, an argument, a secret found
	// nowhere, hand-edited files in render's way).
	Usage = 2
	// Changes: plan found changes; an answer, not a failure.
	Changes = 3
)

// Of is the exit status err asks for: 0 for nil, the ExitStatus of the
// first error in its chain that has one, Failure otherwise.
func Of(err error) int {
	if err == nil {
		return 0
	}
	var es interface{ ExitStatus() int }
	if errors.As(err, &es) {
		return es.ExitStatus()
	}
	return Failure
}

// New is an error with a fixed message and exit status: a sentinel that
// errors.Is finds, and that says its status wherever it is wrapped.
func New(status int, msg string) error { return &sentinel{msg: msg, status: status} }

type sentinel struct {
	msg    string
	status int
}

func (e *sentinel) Error() string { return e.msg }

// ExitStatus is the status New was given.
func (e *sentinel) ExitStatus() int { return e.status }
