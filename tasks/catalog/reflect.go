package catalog

import (
	"reflect"
	"strings"
)

func reflectFields(v any) []string {
	t := reflect.TypeOf(v)
	out := make([]string, 0, t.NumField())
	for i := range t.NumField() {
		if tag := strings.Split(t.Field(i).Tag.Get("toml"), ",")[0]; tag != "" {
			out = append(out, tag)
		}
	}
	return out
}
