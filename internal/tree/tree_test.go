package tree

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestMap(t *testing.T) {
	in := map[string]any{
		"a": "x",
		"b": []any{"y", map[string]any{"c": "z", "n": 1}},
		"t": []map[string]any{{"d": "w"}},
	}
	var paths []string
	out, err := Map(in, "top", func(v any, path string) (any, error) {
		paths = append(paths, path)
		if s, ok := v.(string); ok {
			return strings.ToUpper(s), nil
		}
		return v, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"a": "X",
		"b": []any{"Y", map[string]any{"c": "Z", "n": 1}},
		"t": []any{map[string]any{"d": "W"}},
	}
	if !reflect.DeepEqual(out, want) {
		t.Errorf("Map = %#v\nwant %#v", out, want)
	}
	for _, p := range []string{"top.a", "top.b[0]", "top.b[1].c", "top.b[1].n", "top.t[0].d"} {
		if !strings.Contains(strings.Join(paths, " "), p) {
			t.Errorf("leaf never saw %s (saw %v)", p, paths)
		}
	}
	if in["a"] != "x" {
		t.Error("Map changed its input")
	}
	boom := errors.New("boom")
	if _, err := Map(in, "", func(v any, path string) (any, error) {
		if path == "b[1].c" {
			return nil, boom
		}
		return v, nil
	}); !errors.Is(err, boom) {
		t.Errorf("Map's error = %v, want leaf's", err)
	}
	if got := Join("", "k"); got != "k" {
		t.Errorf(`Join("", "k") = %q`, got)
	}
}
