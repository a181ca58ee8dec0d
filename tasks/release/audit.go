package release

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/maestro-platform/deploy/internal/interrupt"
	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/hostfs"
	"github.com/maestro-platform/deploy/tasks/record"
	"github.com/maestro-platform/deploy/tasks/ui"
)

// AuditRecord is one line of an environment's audit log on its host: who
// promoted or rolled back what, vouched for by which testAll, and how it
// ended. It never holds a secret.
type AuditRecord struct {
	Time   time.Time `json:"time"`
	Action string    `json:"action"` // "promote", "rollback", ActionRelease or "down"
	Env    string    `json:"env"`
	// User is the local user and machine; GitAuthor the repository's
	// configured author ("Name <email>").
	User      string `json:"user"`
	GitAuthor string `json:"git_author,omitempty"`
	// Commit is the catalog repository's HEAD; Dirty whether its tree had
	// changes.
	Commit   string `json:"commit,omitempty"`
	Dirty    bool   `json:"dirty"`
	Release  string `json:"release,omitempty"`
	Previous string `json:"previous,omitempty"`
	// Images maps each service to the image ID shipped.
	Images map[string]string `json:"images,omitempty"`
	// TestRecord is the SHA-256 of the testAll record that vouched for
	// them ("" when there was none).
	TestRecord string `json:"test_record,omitempty"`
	Forced     bool   `json:"forced"`
	// Outcome is one of the Outcome constants. A promote the gate refuses
	// never reaches the host, so it leaves no record there.
	Outcome    string `json:"outcome"`
	Step       string `json:"step,omitempty"`
	Error      string `json:"error,omitempty"`
	DurationMS int64  `json:"duration_ms"`
	// TookOver names the holder whose lock this one took over.
	TookOver string `json:"took_over,omitempty"`
	// Session is the lock session of the run (hostfs.Holder.Session): the
	// run that takes a dead one's lock over writes the dead one's record
	// unless one with its session is in the log.
	Session string `json:"session,omitempty"`
}

// newAudit starts the record of an action on env.
func newAudit(ctx context.Context, cat *catalog.Catalog, env *catalog.Environment, action string, opts Options) *AuditRecord {
	me := hostfs.Me(action)
	dir := filepath.Dir(cat.File)
	a := &AuditRecord{Time: opts.Now().UTC(), Action: action, Env: env.Name, User: me.User, Forced: opts.Force,
		Commit: git(ctx, dir, "rev-parse", "HEAD")}
	if name := git(ctx, dir, "config", "user.name"); name != "" {
		a.GitAuthor = name
		if mail := git(ctx, dir, "config", "user.email"); mail != "" {
			a.GitAuthor += " <" + mail + ">"
		}
	}
	if a.Commit != "" {
		a.Dirty = git(ctx, dir, "status", "--porcelain", "--untracked-files=no") != ""
	}
	if b, err := os.ReadFile(filepath.Join(opts.LocalDeployDir, filepath.FromSlash(record.TestFile))); err == nil {
		sum := sha256.Sum256(b)
		a.TestRecord = hex.EncodeToString(sum[:])
	}
	return a
}

// git runs git in dir and returns its trimmed output, "" on any failure.
func git(ctx context.Context, dir string, args ...string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// finish completes the record with how the action ended, after t0; live
// says that the release became current all the same.
func (a *AuditRecord) finish(err error, t0 time.Time, redact func(string) string, live bool) {
	a.DurationMS = time.Since(t0).Milliseconds()
	var e *Error
	switch {
	case err == nil:
		a.Outcome = OutcomeLive
	case errors.As(err, &e):
		a.Outcome, a.Step = OutcomeFailed, e.Step
		if e.Restored {
			a.Outcome = OutcomeRolledBack
		}
		if e.Interrupted {
			a.Outcome = OutcomeInterrupted
		}
	case live:
		a.Outcome = OutcomeLive
	case errors.Is(err, interrupt.ErrInterrupted):
		a.Outcome = OutcomeInterrupted
	default:
		a.Outcome = OutcomeFailed
	}
	if err != nil {
		a.Error = redact(ui.Clean(firstLine(err)))
	}
}

// Outcomes of an AuditRecord.
const (
	OutcomeLive       = "live"
	OutcomeRolledBack = "rolled back"
	OutcomeFailed     = "failed"
	// OutcomeInterrupted: Ctrl-C ended it (what it changed was put back,
	// as Error says), or its session died and the next run that took its
	// lock over wrote the record (deadRecord).
	OutcomeInterrupted = "interrupted"
	// OutcomeDown: a down took the project off the host.
	OutcomeDown = "taken down"
)

// write appends the record to the host's audit log; a failure is reported,
// not fatal: the action itself is done by then.
func (t *target) audit(ctx context.Context, a *AuditRecord) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := t.fs.AuditAppend(ctx, a); err != nil {
		t.p.Line(ui.Warn, "audit", "the record of this %s could not be written on the host: %v", a.Action, err)
	}
}

// tookOver notes in a, the record of this run, the session it holds the
// lock as and the one it took over; a run that died holding the lock wrote
// no record of itself (its connection is what ended), so this one writes
// it, once: not when the log already holds one of that session.
func (t *target) tookOver(ctx context.Context, lock *hostfs.Lock, a *AuditRecord) {
	a.Session = lock.Holder.Session
	dead := lock.TookOver
	if dead == nil {
		return
	}
	a.TookOver = dead.String()
	if dead.Session != "" {
		raw, err := t.fs.AuditRead(ctx)
		if err != nil {
			t.p.Line(ui.Warn, "audit", "the log of %s could not be read: %v", t.env.Dir, err)
			return
		}
		for _, r := range raw {
			var old AuditRecord
			if json.Unmarshal(r, &old) == nil && old.Session == dead.Session {
				return
			}
		}
	}
	t.audit(ctx, &AuditRecord{Time: dead.Since, Action: dead.Command, Env: t.env.Name, User: dead.User,
		Outcome: OutcomeInterrupted, Session: dead.Session, DurationMS: time.Since(dead.Since).Milliseconds(),
		Error: fmt.Sprintf("its session ended before it finished (killed, or its connection lost); %s took its lock over", lock.Holder.User)})
}

// History returns the audit records of opts.Env, oldest first, and prints
// them as a table (or, with asJSON, one JSON record per line, for scripts).
func History(ctx context.Context, cat *catalog.Catalog, opts Options, asJSON bool) ([]AuditRecord, error) {
	opts.defaults(cat)
	t, err := look(ctx, cat, opts.Env, "history")
	if err != nil {
		return nil, err
	}
	defer t.Close()
	env := t.env
	raw, err := t.fs.AuditRead(ctx)
	if err != nil {
		return nil, fmt.Errorf("history %s: %w", env.Name, err)
	}
	var recs []AuditRecord
	for _, r := range raw {
		var a AuditRecord
		if json.Unmarshal(r, &a) == nil {
			recs = append(recs, a)
		}
	}
	p := opts.Printer
	if asJSON {
		enc := json.NewEncoder(p.Writer())
		for _, a := range recs {
			if err := enc.Encode(a); err != nil {
				return recs, err
			}
		}
		return recs, nil
	}
	p.Header("history of %s on %s (%s:%s)", cat.Project.Name, env.Name, displayHost(env), env.Dir)
	if len(recs) == 0 {
		p.Line(ui.Info, "", "nothing promoted or rolled back yet")
		return recs, nil
	}
	var rows [][]string
	for _, a := range recs {
		// Every field is the host's word (anyone who can write the log
		// wrote it): cleaned before it reaches the terminal.
		a.Action, a.User, a.GitAuthor, a.Commit = ui.Clean(a.Action), ui.Clean(a.User), ui.Clean(a.GitAuthor), ui.Clean(a.Commit)
		a.Release, a.Previous, a.Outcome = ui.Clean(a.Release), ui.Clean(a.Previous), ui.Clean(a.Outcome)
		commit := a.Commit
		if len(commit) > 7 {
			commit = commit[:7]
		}
		if a.Dirty {
			commit += "+dirty"
		}
		outcome := a.Outcome
		switch {
		case a.Outcome == "live":
			outcome = p.Colorize(ui.OK, outcome)
		case a.Outcome != "":
			outcome = p.Colorize(ui.Fail, outcome)
		}
		forced := ""
		if a.Forced {
			forced = p.Colorize(ui.Warn, "forced")
		}
		rows = append(rows, []string{a.Time.Local().Format("2006-01-02 15:04:05"), a.Action, a.User, a.GitAuthor,
			commit, a.Release, a.Previous, outcome, forced, fmt.Sprintf("%.1fs", float64(a.DurationMS)/1000)})
	}
	p.Table([]string{"TIME", "ACTION", "USER", "AUTHOR", "COMMIT", "RELEASE", "PREVIOUS", "OUTCOME", "", "TOOK"}, rows)
	return recs, nil
}
