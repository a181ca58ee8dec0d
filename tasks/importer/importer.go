// Package importer brings existing compose projects into the catalog: it
// reads compose files (the compose specification, the version 2 and 3
// formats and the version 1 format without a services key), with the
// .env and .env.example beside them and the env files they name, and
// proposes a catalog entry for each service. The entries are appended to
// the catalog, whose existing text is never changed; the change is shown
// as a diff first. What the catalog cannot carry is listed with its
// file:line and why, and nothing is written then unless Options.Lossy
// says so.
//
// The rules, without a prompt:
//
//   - Ports: the first published port gives port (the container's) and
//     prod_port (the host's); dev_port is prod_port + 1000 (8005 gives
//     9005, the catalog's own convention), or the next port above it that
//     no other service has in the dev column. A service that publishes no
//     port becomes an [[infrastructure]] entry, its port taken from
//     expose.
//   - Secrets: see secrets.go; a secret's value is never written.
//   - Paths: relative paths (build contexts, bind mounts, x-maestro's
//     prebuild_inputs) are rebased to the catalog's folder; absolute ones
//     and ~ stay as written.
//   - restart: a file without one says compose's "no", which is written
//     (the tool's own default is unless-stopped).
//   - x-maestro: a service's x-maestro extension gives the catalog keys a
//     compose file cannot hold (title, health, checks, prebuild...); its
//     prebuild and prebuild_env, host commands, only with Options.Prebuild.
//   - Untrusted input: variables come from .env and .env.example beside
//     the file, never the process environment; no file outside the
//     file's folder is read into the catalog; no value the secret
//     detector flags is written; files and YAML aliases are bounded (see
//     bounds.go and guard.go).
package importer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/BurntSushi/toml"
	"github.com/aymanbagabas/go-udiff"
	"github.com/sirupsen/logrus"

	"github.com/maestro-platform/deploy/internal/atomicfile"
	"github.com/maestro-platform/deploy/tasks/catalog"

	"github.com/maestro-platform/deploy/tasks/exitcode"
)

// Options say what to import, and where.
type Options struct {
	// Catalog is the catalog file; it is created when missing.
	Catalog string
	// Paths are compose files, or folders holding one (compose.yaml,
	// compose.yml, docker-compose.yaml or docker-compose.yml).
	Paths []string
	// DryRun shows the change and writes nothing.
	DryRun bool
	// Lossy writes the entries even though the files say things the
	// catalog cannot carry (each one listed).
	Lossy bool
	// Prebuild takes the files' x-maestro prebuild and prebuild_env:
	// host commands, which import otherwise refuses (a loss).
	Prebuild bool
	// Out receives the diff, then what was mapped and what was lost
	// (default os.Stdout).
	Out io.Writer
}

// Result is what Import did.
type Result struct {
	// Diff is the change to the catalog, a unified diff ("" = none).
	Diff string
	// Added are the names of the new entries; Kept those already in the
	// catalog, left as they are.
	Added, Kept []string
	// Losses are what the catalog cannot carry; Notes what import mapped
	// on purpose (the shared network, secrets, env files...); Warnings
	// what it took only because Options said so (host commands).
	Losses, Notes, Warnings []Finding
	// Written is true when the catalog was written.
	Written bool
}

// LossError is Import's answer when the files say what the catalog cannot
// carry and Options.Lossy is not set: nothing is written.
type LossError struct{ Losses []Finding }

func (e *LossError) Error() string {
	lines := make([]string, len(e.Losses))
	for i, l := range e.Losses {
		lines[i] = "  " + l.String()
	}
	what := "things"
	if len(e.Losses) == 1 {
		what = "thing"
	}
	return fmt.Sprintf("import: %d %s the catalog cannot carry (nothing written; rerun with -lossy to import without them):\n%s",
		len(e.Losses), what, strings.Join(lines, "\n"))
}

// ExitStatus is exitcode.Usage: the input needs a decision, like a bad
// catalog.
func (e *LossError) ExitStatus() int { return exitcode.Usage }

// existing is what import needs of the catalog it adds to.
type existing struct {
	Project struct {
		Name string `toml:"name"`
	} `toml:"project"`
	Services       []existingEntry `toml:"services"`
	Infrastructure []existingEntry `toml:"infrastructure"`
}

type existingEntry struct {
	Name        string `toml:"name"`
	DevPort     int    `toml:"dev_port"`
	Healthcheck any    `toml:"healthcheck"`
}

// hasHealthcheck says whether a catalog healthcheck gives the container a
// test of its own.
func (e existingEntry) hasHealthcheck() bool {
	switch h := e.Healthcheck.(type) {
	case []any:
		return len(h) > 0
	case map[string]any:
		if off, _ := h["disable"].(bool); off {
			return false
		}
		switch t := h["test"].(type) {
		case string:
			return t != ""
		case []any:
			return len(t) > 1 && t[0] != "NONE"
		}
	}
	return false
}

// Import reads the compose files, proposes their services as catalog
// entries and, unless told otherwise, appends them to the catalog. Bad
// input (a compose file compose cannot read, a catalog that does not
// load) is a catalog.Errors, each with file:line: key: message (hint).
func Import(ctx context.Context, o Options) (*Result, error) {
	defer quietLoader()()
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if len(o.Paths) == 0 {
		return nil, catalog.Errors{{File: o.Catalog, Msg: "no compose file named", Hint: "name compose files or folders: mage import path/to/docker-compose.yml,other/folder"}}
	}
	catAbs, err := filepath.Abs(o.Catalog)
	if err != nil {
		return nil, err
	}
	oldText, mode, err := readCatalog(catAbs)
	if err != nil {
		return nil, err
	}
	var have existing
	if _, err := toml.Decode(oldText, &have); err != nil {
		if _, perr := catalog.Parse(o.Catalog, catAbs, []byte(oldText)); perr != nil {
			return nil, perr
		}
		return nil, fmt.Errorf("catalog %s: %w", o.Catalog, err)
	}
	haveNames := map[string]bool{}
	health := map[string]bool{}
	devUsed := map[int]bool{}
	for _, e := range slices.Concat(have.Services, have.Infrastructure) {
		haveNames[e.Name] = true
		health[e.Name] = e.hasHealthcheck()
		if e.DevPort != 0 {
			devUsed[e.DevPort] = true
		}
	}

	res := &Result{}
	var entries []*entry
	var errs catalog.Errors
	firstProject := ""
	from := map[string]*entry{}
	for _, p := range o.Paths {
		path, err := resolveFile(p)
		if err != nil {
			errs = append(errs, &catalog.Error{File: p, Msg: err.Error(), Hint: "name a compose file or a folder holding one"})
			continue
		}
		f, err := readCompose(ctx, path, shownPath(path))
		if err != nil {
			var ce catalog.Errors
			if errors.As(err, &ce) {
				errs = append(errs, ce...)
				continue
			}
			return nil, err
		}
		if firstProject == "" {
			firstProject = f.name
		}
		m := &mapper{f: f, catDir: filepath.Dir(catAbs), prebuild: o.Prebuild}
		for _, name := range f.order {
			nl, nn, nw := len(m.losses), len(m.notes), len(m.warnings)
			e, err := m.service(name)
			if err != nil {
				var ce catalog.Errors
				if errors.As(err, &ce) {
					errs = append(errs, ce...)
					continue
				}
				return nil, err
			}
			losses, notes, warnings := m.losses[nl:], m.notes[nn:], m.warnings[nw:]
			switch {
			case haveNames[e.Name]:
				res.Kept = append(res.Kept, e.Name)
				continue // left as it is: what it says does not matter here
			case from[e.Name] != nil:
				first := from[e.Name]
				errs = append(errs, f.errorAt("services."+name, fmt.Sprintf("%s:%d has it already; rename one of them", first.File, first.Line),
					"service %q is imported twice", e.Name))
				continue
			}
			from[e.Name] = e
			entries = append(entries, e)
			res.Losses = append(res.Losses, losses...)
			res.Notes = append(res.Notes, notes...)
			res.Warnings = append(res.Warnings, warnings...)
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}

	// Dev ports and dependency conditions need every entry.
	for _, e := range entries {
		if e.DevPort != 0 {
			devUsed[e.DevPort] = true
		}
		health[e.Name] = e.hasHealth
	}
	for _, e := range entries {
		if e.published != 0 && e.DevPort == 0 {
			e.DevPort = devPort(e.published, devUsed)
			devUsed[e.DevPort] = true
		}
		settleDepends(e, health)
		res.Added = append(res.Added, e.Name)
	}

	newText, spans := appendEntries(oldText, entries, firstProject)
	if _, err := catalog.Parse(o.Catalog, catAbs, []byte(newText)); err != nil {
		return nil, proposedErrors(err, spans)
	}
	if newText != oldText {
		res.Diff = udiff.Unified("a/"+filepath.Base(o.Catalog), "b/"+filepath.Base(o.Catalog), oldText, newText)
	}
	report(o.Out, res, o.Lossy)
	if len(res.Losses) > 0 && !o.Lossy {
		return res, &LossError{Losses: res.Losses}
	}
	if o.DryRun || newText == oldText {
		return res, nil
	}
	if err := atomicfile.Write(catAbs, []byte(newText), mode); err != nil {
		return res, fmt.Errorf("write %s: %w", o.Catalog, err)
	}
	res.Written = true
	return res, nil
}

// loaderLog serialises imports around compose-go's logger, which is
// the process's logrus standard logger.
var loaderLog sync.Mutex

// quietLoader keeps compose-go's log lines (logrus: "the attribute
// version is obsolete", "the X variable is not set") off the output
// until the returned function is called: import reports what matters of
// them itself, with file:line (an unset variable is a loss or a secret),
// and the rest says nothing about the catalog.
func quietLoader() (restore func()) {
	loaderLog.Lock()
	l := logrus.StandardLogger()
	out := l.Out
	l.SetOutput(io.Discard)
	hooks := l.ReplaceHooks(logrus.LevelHooks{})
	return func() {
		l.SetOutput(out)
		l.ReplaceHooks(hooks)
		loaderLog.Unlock()
	}
}

func readCatalog(abs string) (string, fs.FileMode, error) {
	fi, err := os.Stat(abs)
	if errors.Is(err, os.ErrNotExist) {
		return "", 0o644, nil
	}
	if err != nil {
		return "", 0, err
	}
	b, err := os.ReadFile(abs)
	if err != nil {
		return "", 0, err
	}
	return string(b), fi.Mode().Perm(), nil
}

// shownPath names a file relative to the working folder when it is below
// it, as a user would type it.
func shownPath(abs string) string {
	if wd, err := os.Getwd(); err == nil {
		if rel, err := filepath.Rel(wd, abs); err == nil && filepath.IsLocal(rel) {
			return rel
		}
	}
	return abs
}

// devPort is the dev column's port for a published host port: 1000
// above it, or the next free one (wrapping to 10000 past 65535).
func devPort(published int, used map[int]bool) int {
	p := published + 1000
	for tries := 0; tries < 65536; tries++ {
		if p > 65535 {
			p = 10000
		}
		if !used[p] {
			return p
		}
		p++
	}
	return published
}

// settleDepends writes e's dependencies in the array form when each
// condition is what the catalog would choose (healthy when the dependency
// has a healthcheck, else started), else in the table form with every
// condition.
func settleDepends(e *entry, health map[string]bool) {
	names := slices.Sorted(maps.Keys(e.conditions))
	plain := true
	conds := map[string]string{}
	for _, d := range names {
		def := catalog.ConditionStarted
		if health[d] {
			def = catalog.ConditionHealthy
		}
		c := e.conditions[d]
		if c == "" {
			c = def
		}
		conds[d] = c
		plain = plain && c == def
	}
	if plain {
		e.DependsOn = names
		return
	}
	e.DependsOnConditions = conds
}

// span is where an entry is written in the new catalog text.
type span struct {
	first, last int
	e           *entry
}

const importedHeader = "# ---------------------------------------------------------------- imported by `mage import`\n"

func appendEntries(old string, entries []*entry, project string) (string, []span) {
	if len(entries) == 0 {
		return old, nil
	}
	var b strings.Builder
	if strings.TrimSpace(old) == "" {
		fmt.Fprintf(&b, "# services.toml: the catalog (see the README's \"The catalog\"), begun by `mage import`.\n\n[project]\nname = %s\n", tomlString(project))
	} else {
		b.WriteString(old)
		if !strings.HasSuffix(old, "\n") {
			b.WriteByte('\n')
		}
	}
	if !strings.Contains(old, importedHeader) {
		b.WriteString("\n" + importedHeader)
	}
	var spans []span
	for _, e := range entries {
		first := strings.Count(b.String(), "\n") + 2 // the blank line, then the header
		writeEntry(&b, e)
		spans = append(spans, span{first: first, last: strings.Count(b.String(), "\n"), e: e})
	}
	return b.String(), spans
}

// proposedErrors points the catalog's complaints about a proposed entry
// at the service in its compose file.
func proposedErrors(err error, spans []span) error {
	var ce catalog.Errors
	if !errors.As(err, &ce) {
		return err
	}
	out := make(catalog.Errors, 0, len(ce))
	for _, e := range ce {
		c := *e
		for _, s := range spans {
			if e.Line >= s.first && e.Line <= s.last {
				c.File, c.Line = s.e.File, s.e.Line
				c.Key = "services." + s.e.Name + " (proposed " + e.Key + ")"
			}
		}
		out = append(out, &c)
	}
	return out
}

// report prints the diff, then the notes and, when they are imported
// without (lossy), the losses; otherwise the LossError lists them.
func report(w io.Writer, res *Result, lossy bool) {
	if res.Diff != "" {
		fmt.Fprint(w, res.Diff)
	} else {
		fmt.Fprintln(w, "import: nothing to add: every service is in the catalog already")
	}
	for _, k := range res.Kept {
		fmt.Fprintf(w, "kept: %s is in the catalog already, left as it is\n", k)
	}
	for _, n := range res.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	for _, n := range res.Warnings {
		fmt.Fprintf(w, "WARNING: %s\n", n)
	}
	if lossy {
		for _, l := range res.Losses {
			fmt.Fprintf(w, "lost: %s\n", l)
		}
	}
}
