package catalog

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
)

// typeCheck walks the generic decode of the file along the raw catalog
// types and reports every value of the wrong type, each at its own line:
// port = "80", depends_on = "db", [services] written for [[services]].
// Keys the types do not know are left to the unknown-key check.
func (v *validator) typeCheck(val any, t reflect.Type, path string) {
	switch t {
	case reflect.TypeFor[rawSecrets]():
		v.typeCheckSecrets(val, path)
		return
	case reflect.TypeFor[rawHealthcheck]():
		v.typeCheckHealthcheck(val, path)
		return
	case reflect.TypeFor[rawDepends]():
		v.typeCheckDepends(val, path)
		return
	case reflect.TypeFor[rawVolume]():
		v.typeCheckVolume(val, path)
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if v.checkText(val, t, path) {
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := val.(map[string]any)
		if !ok {
			v.wrongType(path, val, "a table", fmt.Sprintf("write [%s] on a line of its own, followed by its keys", path))
			return
		}
		for i := range t.NumField() {
			f := t.Field(i)
			tag := tomlName(f)
			if f.Anonymous && tag == "" {
				v.typeCheck(val, f.Type, path) // its keys are the entry's own
				continue
			}
			if sub, ok := m[tag]; ok && tag != "" {
				v.typeCheck(sub, f.Type, joinPath(path, tag))
			}
		}
	case reflect.Map:
		m, ok := val.(map[string]any)
		if !ok {
			v.wrongType(path, val, "a table", fmt.Sprintf(`write it as a table: %s = { KEY = "value" }`, leafName(path)))
			return
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			v.typeCheck(m[k], t.Elem(), path+"."+k)
		}
	case reflect.Slice:
		elems, ok := asSlice(val)
		if !ok {
			if t.Elem().Kind() == reflect.Struct {
				v.wrongType(path, val, "an array of tables",
					fmt.Sprintf("write [[%s]] (double brackets) before each entry", stripIndices(path)))
			} else if leafName(path) == "secrets_command" {
				v.wrongType(path, val, "an array of strings", secretsCommandHint)
			} else {
				v.wrongType(path, val, "an array of strings", fmt.Sprintf(`write it as a list: %s = ["..."]`, leafName(path)))
			}
			return
		}
		for i, e := range elems {
			v.typeCheck(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	case reflect.String:
		if _, ok := val.(string); !ok {
			v.wrongType(path, val, "a string", fmt.Sprintf(`put the value in double quotes: %s = "..."`, leafName(path)))
		}
	case reflect.Int:
		if _, ok := val.(int64); !ok {
			hint := fmt.Sprintf("write a whole number without quotes: %s = 8080", leafName(path))
			if s, isStr := val.(string); isStr {
				if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil {
					hint = fmt.Sprintf("write it without quotes: %s = %d", leafName(path), n)
				}
			}
			v.wrongType(path, val, "a whole number", hint)
		}
	}
}

func asSlice(val any) ([]any, bool) {
	switch s := val.(type) {
	case []any:
		return s, true
	case []map[string]any:
		out := make([]any, len(s))
		for i, m := range s {
			out[i] = m
		}
		return out, true
	}
	return nil, false
}

// wrongType reports a value of the wrong type. The value itself is never
// quoted: it may be a secret.
func (v *validator) wrongType(path string, val any, want, hint string) {
	v.add(path, hint, "%s must be %s, not %s", leafName(path), want, typeName(val))
}

// leafName is the last key of a path, as the user wrote it: "port",
// "depends_on[1]".
func leafName(path string) string {
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[i+1:]
	}
	return path
}

func typeName(val any) string {
	switch val.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a fractional number"
	case bool:
		return "a boolean"
	case time.Time:
		return "a date"
	case map[string]any:
		return "a table"
	case []any, []map[string]any:
		return "an array"
	}
	return fmt.Sprintf("a %T", val)
}
