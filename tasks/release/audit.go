package release

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

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
	Action string    `json:"action"` // "promote" or "rollback"
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
	// Outcome is "live", "rolled back" or "failed". A promote the gate
	// refuses never reaches the host, so it leaves no record there.
	Outcome    string `json:"outcome"`
	Step       string `json:"step,omitempty"`
	Error      string `json:"error,omitempty"`
	DurationMS int64  `json:"duration_ms"`
	// TookOver names the holder whose lock this one took over.
	TookOver string `json:"took_over,omitempty"`
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

// finish completes the record with how the action ended, after t0.
func (a *AuditRecord) finish(err error, t0 time.Time, redact func(string) string) {
	a.DurationMS = time.Since(t0).Milliseconds()
	switch e := err.(type) {
	case nil:
		a.Outcome = "live"
	case *Error:
		a.Outcome, a.Step = "failed", e.Step
		if e.Restored {
			a.Outcome = "rolled back"
		}
	default:
		a.Outcome = "failed"
	}
	if err != nil {
		a.Error = redact(ui.Clean(firstLine(err)))
	}
}

// write appends the record to the host's audit log; a failure is reported,
// not fatal: the action itself is done by then.
func (t *target) audit(ctx context.Context, a *AuditRecord) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := t.fs.AuditAppend(ctx, a); err != nil {
		t.p.Line(ui.Warn, "audit", "the record of this %s could not be written on the host: %v", a.Action, err)
	}
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
