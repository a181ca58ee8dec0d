package render

import (
	"bytes"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	udiff "github.com/aymanbagabas/go-udiff"
)

// Plan returns, as a unified diff, what Write(dir, tree) would change, and
// whether it would change anything. It writes nothing. Secret values in
// .env files are never shown: their lines read <redacted>. Files edited by
// hand since the last render are named first, as Write would refuse them.
// Like Write, it runs the deferred checks of the compose files it would
// change, and fails as Write would.
func Plan(dir string, tree Tree) (diff string, changed bool, err error) {
	if err := checkTree(tree); err != nil {
		return "", false, fmt.Errorf("plan %s: %w", dir, err)
	}
	st, err := inspect(dir, tree, false)
	if err != nil {
		return "", false, fmt.Errorf("plan %s: %w", dir, err)
	}
	if err := validateChanged(tree, st); err != nil {
		return "", false, fmt.Errorf("plan %s: %w", dir, err)
	}
	var b strings.Builder
	if len(st.drift) > 0 {
		fmt.Fprintf(&b, "# edited by hand since the last render (render stops unless told to overwrite): %s\n",
			strings.Join(st.drift, ", "))
	}
	var manifestDiff string
	shown := 0
	for _, f := range tree {
		cur, mode, err := readExisting(dir, f.Path, st.dirExists)
		if err != nil {
			return "", false, fmt.Errorf("plan %s: %w", dir, err)
		}
		if cur != nil && bytes.Equal(cur, f.Data) && mode == f.Mode.Perm() {
			continue
		}
		var d strings.Builder
		if cur != nil && mode != f.Mode.Perm() {
			fmt.Fprintf(&d, "# %s: mode %04o -> %04o\n", f.Path, mode, f.Mode.Perm())
		}
		d.WriteString(fileDiff(f.Path, cur, f.Data, cur == nil, false))
		if f.Path == ManifestFile {
			manifestDiff = d.String()
			continue
		}
		b.WriteString(d.String())
		shown++
	}
	for _, p := range st.removed {
		cur, _, err := readExisting(dir, p, st.dirExists)
		if err != nil {
			return "", false, fmt.Errorf("plan %s: %w", dir, err)
		}
		b.WriteString(fileDiff(p, cur, nil, false, true))
		shown++
	}
	// The manifest changes with every other file: show it only when it is
	// the sole change, so that the plan never says "changed" with no diff.
	if shown == 0 {
		b.WriteString(manifestDiff)
	}
	changed = len(st.written)+len(st.removed) > 0 || len(st.drift) > 0
	return b.String(), changed, nil
}

// Drifted names the files of tree that were edited by hand in dir since
// the last render: Write stops at them unless told to overwrite.
func Drifted(dir string, tree Tree) ([]string, error) {
	st, err := inspect(dir, tree, false)
	if err != nil {
		return nil, fmt.Errorf("inspect %s: %w", dir, err)
	}
	return st.drift, nil
}

var secretLine = regexp.MustCompile(`(?m)^(SECRET__[A-Za-z0-9_]*)=.*$`)

func fileDiff(p string, old, new []byte, created, removed bool) string {
	oldLabel, newLabel := "a/"+p, "b/"+p
	if created {
		oldLabel = "/dev/null"
	}
	if removed {
		newLabel = "/dev/null"
	}
	o, n := string(old), string(new)
	if filepath.Base(p) == EnvFile {
		ro, rn := redact(o), redact(n)
		if ro == rn && o != n {
			return fmt.Sprintf("# %s: secret values change (not shown)\n", p)
		}
		o, n = ro, rn
	}
	d := udiff.Unified(oldLabel, newLabel, o, n)
	if d == "" && !bytes.Equal(old, new) {
		return fmt.Sprintf("# %s: content changes\n", p)
	}
	return d
}

// redact hides the values of secrets in a .env file. A single-quoted
// secret may span lines (envQuote keeps line breaks raw there), so its
// continuation lines are dropped up to the closing quote.
func redact(s string) string {
	lines := strings.SplitAfter(s, "\n")
	var b strings.Builder
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		m := secretLine.FindStringSubmatch(strings.TrimSuffix(l, "\n"))
		if m == nil {
			b.WriteString(l)
			continue
		}
		val := strings.TrimPrefix(strings.TrimSuffix(l, "\n"), m[1]+"=")
		if strings.HasPrefix(val, "'") && (len(val) == 1 || !strings.HasSuffix(val, "'")) {
			for i+1 < len(lines) && !strings.HasSuffix(strings.TrimSuffix(lines[i+1], "\n"), "'") {
				i++
			}
			i++
		}
		b.WriteString(m[1] + "=<redacted>\n")
	}
	return b.String()
}
