package ui

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

func TestPlainHasNoEscapes(t *testing.T) {
	var b bytes.Buffer
	p := Plain(&b)
	p.Line(Fail, "svc", "broke after %s", "1s")
	p.Table([]string{"A", "B"}, [][]string{{"x", p.Colorize(OK, "green")}})
	if strings.Contains(b.String(), "\x1b[") {
		t.Errorf("plain output holds colour codes: %q", b.String())
	}
	if !strings.Contains(b.String(), "✘ svc") || !strings.Contains(b.String(), "broke after 1s") {
		t.Errorf("line lost its content: %q", b.String())
	}
}

func TestColourOnlyForTerminals(t *testing.T) {
	var b bytes.Buffer
	newPrinter(&b, false).Line(OK, "svc", "up")
	if !strings.Contains(b.String(), "\x1b[32m") {
		t.Errorf("coloured printer wrote no green: %q", b.String())
	}
	// A buffer is not a terminal, and NO_COLOR wins even for a file.
	b.Reset()
	New(&b).Line(OK, "svc", "up")
	if strings.Contains(b.String(), "\x1b[") {
		t.Errorf("non-terminal output is coloured: %q", b.String())
	}
	t.Setenv("NO_COLOR", "1")
	if p := New(os.Stdout); !p.plain {
		t.Error("NO_COLOR did not turn colour off")
	}
}

func TestTableAlignsOnVisibleWidth(t *testing.T) {
	var b bytes.Buffer
	p := newPrinter(&b, false)
	p.Table([]string{"SERVICE", "STATE"}, [][]string{
		{"a", p.Colorize(OK, "running")},
		{"longer-name", p.Colorize(Fail, "exited")},
	})
	lines := strings.Split(strings.TrimSpace(stripANSI(b.String())), "\n")
	col := strings.Index(lines[0], "STATE")
	for i, word := range []string{"running", "exited"} {
		if got := strings.Index(lines[i+1], word); got != col {
			t.Errorf("row %d: %q starts at %d, header at %d:\n%s", i+1, word, got, col, strings.Join(lines, "\n"))
		}
	}
}

func stripANSI(s string) string {
	var out strings.Builder
	esc := false
	for _, r := range s {
		switch {
		case esc:
			esc = r != 'm'
		case r == '\x1b':
			esc = true
		default:
			out.WriteRune(r)
		}
	}
	return out.String()
}

func TestBytes(t *testing.T) {
	for n, want := range map[int64]string{999: "999 B", 1500: "1.5 kB", 12_300_000: "12.3 MB"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestClean(t *testing.T) {
	for in, want := range map[string]string{
		"plain text\n\tindented":                   "plain text\n\tindented",
		"\x1b[31mred\x1b[0m":                       "red",
		"\x1b]0;pwned title\x07after":              "after",
		"\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\": "link",
		"a\rb\x08c\x00d":                           "abcd",
		"\x1b[2J\x1b[Hclear":                       "clear",
		"ends with esc\x1b":                        "ends with esc",
		"\u009b31mcsi8":                            "csi8",
		"unicode ✔ stays":                          "unicode ✔ stays",
		"\x1bcreset":                               "reset",
	} {
		if got := Clean(in); got != want {
			t.Errorf("Clean(%q) = %q, want %q", in, got, want)
		}
	}
}
