package catalog

import (
	"reflect"
	"strings"
	"testing"
)

// The scanner runs on whatever a user writes: text it does not understand
// must not hang it, and what it can still read it places on the right line.
func TestScanPositionsOnOddInput(t *testing.T) {
	for src, want := range map[string]positions{
		"":                                {},
		"=":                               {},
		"]":                               {},
		`"`:                               {},
		"a = [":                           {"a": 1},
		"a = {":                           {"a": 1},
		`a = "`:                           {"a": 1},
		"a = '''":                         {"a": 1},
		`a = """`:                         {"a": 1},
		"a = [{":                          {"a": 1, "a[0]": 1},
		"a.":                              {"a": 1},
		"=\n=\n[x":                        {"x": 3},
		"a = 1\n[b\nc = 2":                {"a": 1, "b": 2, "b.c": 3},
		"x = [\n1,\n":                     {"x": 1, "x[0]": 2},
		strings.Repeat("[", 1000):         {"[0]": 1},
		"[[s]]\nname = 'a'\n[[s]]\nn = 1": {"s[0]": 1, "s[0].name": 2, "s[1]": 3, "s[1].n": 4},
	} {
		if got := scanPositions(src); !reflect.DeepEqual(got, want) {
			t.Errorf("scanPositions(%.30q) = %v, want %v", src, got, want)
		}
	}
}
