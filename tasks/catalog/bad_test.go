package catalog_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/maestro-platform/deploy/tasks/catalog"
)

// The bad-input corpus: each testdata/bad/*.toml states in its leading
// comments what Load must report about it:
//
//	# want: LINE KEY "message substring" hint "hint substring"
//	# count: N
//
// LINE 0 means the problem has no line (the file says nothing at all about
// it); KEY "-" means an empty key. Every want must be matched by one error
// with exactly that line and key; count, when given, is the exact number of
// errors. Sources the catalogs refer to live under testdata/bad/src.

const quoted = `"(?:[^"\\]|\\.)*"`

var (
	wantRE  = regexp.MustCompile(`^# want: (\d+) (\S+) (` + quoted + `)(?: hint (` + quoted + `))?\s*$`)
	countRE = regexp.MustCompile(`^# count: (\d+)\s*$`)
)

// neverPrinted is the value of every secret in the corpus.
const neverPrinted = "s3cret-value-never-printed"

type want struct {
	line            int
	key, msg, hint  string
	matchedBy       *catalog.Error
	source, display string
}

func parseWants(t *testing.T, file string, src []byte) (wants []*want, count int) {
	t.Helper()
	count = -1
	for _, l := range strings.Split(string(src), "\n") {
		if !strings.HasPrefix(l, "# want:") && !strings.HasPrefix(l, "# count:") {
			continue
		}
		if m := countRE.FindStringSubmatch(l); m != nil {
			count, _ = strconv.Atoi(m[1])
			continue
		}
		m := wantRE.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("%s: malformed expectation %q", file, l)
		}
		w := &want{key: m[2], display: l}
		w.line, _ = strconv.Atoi(m[1])
		if w.key == "-" {
			w.key = ""
		}
		var err error
		if w.msg, err = strconv.Unquote(m[3]); err != nil {
			t.Fatalf("%s: %q: %v", file, l, err)
		}
		if m[4] != "" {
			if w.hint, err = strconv.Unquote(m[4]); err != nil {
				t.Fatalf("%s: %q: %v", file, l, err)
			}
		}
		wants = append(wants, w)
	}
	return wants, count
}

// loadErrors loads a catalog that must not load and returns its problems.
func loadErrors(t *testing.T, file string) catalog.Errors {
	t.Helper()
	cat, err := catalog.Load(file)
	if err == nil {
		t.Fatalf("Load(%s) succeeded, want errors", file)
	}
	if cat != nil {
		t.Errorf("Load(%s) returned a catalog along with errors", file)
	}
	var errs catalog.Errors
	if !errors.As(err, &errs) || len(errs) == 0 {
		t.Fatalf("Load(%s) error %T %v, want a non-empty catalog.Errors", file, err, err)
	}
	return errs
}

// checkShape asserts what holds for every reported problem: it names the
// file it was loaded as, tells what to do, prints file:line and key, and
// the list is in file order.
func checkShape(t *testing.T, file string, errs catalog.Errors) {
	t.Helper()
	for i, e := range errs {
		if e.File != file {
			t.Errorf("error %q: File = %q, want %q", e, e.File, file)
		}
		if strings.TrimSpace(e.Hint) == "" {
			t.Errorf("error %q has no hint: the user is not told what to do", e)
		}
		if strings.TrimSpace(e.Msg) == "" {
			t.Errorf("error %q has no message", e)
		}
		s := e.Error()
		place := file
		if e.Line > 0 {
			place = fmt.Sprintf("%s:%d", file, e.Line)
		}
		if !strings.HasPrefix(s, place+": ") {
			t.Errorf("Error() = %q, want it to start with %q", s, place+": ")
		}
		if !strings.Contains(s, e.Key) || !strings.Contains(s, e.Msg) || !strings.Contains(s, e.Hint) {
			t.Errorf("Error() = %q lacks key %q, message or hint", s, e.Key)
		}
		if strings.Contains(s, neverPrinted) {
			t.Errorf("Error() = %q prints a secret value", s)
		}
		// What follows from a misspelling comes right after it.
		if i > 0 && errs[i-1].Line > e.Line && !strings.Contains(e.Hint, fmt.Sprintf("misspelled %q on line %d", leafOf(errs[i-1].Key), errs[i-1].Line)) {
			t.Errorf("errors not sorted by line: %d before %d", errs[i-1].Line, e.Line)
		}
	}
	if all := errs.Error(); len(errs) > 1 && !strings.HasPrefix(all, fmt.Sprintf("%d problems in the catalog:", len(errs))) {
		t.Errorf("Errors.Error() = %q, want it to count the problems", all)
	}
}

func TestBadCatalogs(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "bad", "*.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 35 {
		t.Fatalf("only %d bad catalogs in testdata/bad, want at least 35", len(files))
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".toml"), func(t *testing.T) {
			src, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			wants, count := parseWants(t, file, src)
			if len(src) == 0 {
				// A file with nothing in it can carry no comments.
				wants = []*want{
					{line: 0, key: "project.name", msg: "the project needs a name"},
					{line: 0, key: "services", msg: "declares no services"},
				}
				count = 2
			}
			if len(wants) == 0 {
				t.Fatalf("%s states no '# want:' expectation", file)
			}
			errs := loadErrors(t, file)
			checkShape(t, file, errs)
			for _, w := range wants {
				for _, e := range errs {
					if e.Line == w.line && e.Key == w.key && strings.Contains(e.Msg, w.msg) && strings.Contains(e.Hint, w.hint) {
						w.matchedBy = e
						break
					}
				}
				if w.matchedBy == nil {
					t.Errorf("no error matches %s\ngot:\n%s", w.display, list(errs))
				}
			}
			if count >= 0 && len(errs) != count {
				t.Errorf("got %d errors, want %d:\n%s", len(errs), count, list(errs))
			}
			if testing.Verbose() {
				t.Logf("\n%s", list(errs))
			}
		})
	}
}

func list(errs catalog.Errors) string {
	var b strings.Builder
	for _, e := range errs {
		fmt.Fprintf(&b, "  line %d key %q: %s (hint: %s)\n", e.Line, e.Key, e.Msg, e.Hint)
	}
	return b.String()
}

// TestSeveralProblemsAllReported checks that one pass reports every problem
// of a file, top to bottom, not just the first.
func TestSeveralProblemsAllReported(t *testing.T) {
	file := filepath.Join("testdata", "bad", "many-problems.toml")
	errs := loadErrors(t, file)
	if len(errs) != 6 {
		t.Fatalf("got %d errors, want 6:\n%s", len(errs), list(errs))
	}
	lines := make([]int, len(errs))
	for i, e := range errs {
		lines[i] = e.Line
	}
	if !sort.IntsAreSorted(lines) {
		t.Errorf("lines %v not sorted", lines)
	}
	// Each problem sits on its own line of the file.
	if want := []int{9, 15, 16, 20, 23, 26}; fmt.Sprint(lines) != fmt.Sprint(want) {
		t.Errorf("lines %v, want %v", lines, want)
	}
	if !strings.HasPrefix(errs.Error(), "6 problems in the catalog:\n  "+file+":9: project.name: ") {
		t.Errorf("Errors.Error() = %q", errs.Error())
	}
}

func leafOf(key string) string { return key[strings.LastIndex(key, ".")+1:] }
