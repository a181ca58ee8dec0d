package render

import (
	"fmt"
	"maps"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// The compose keys the catalog carries as they are written (the compose
// passthrough, the table form of healthcheck, long-syntax volumes) are
// written here in block style, every string double-quoted with '$'
// doubled (composeQuote): what the catalog says is what the container
// gets, read alike by PyYAML (compose v1) and go-yaml (compose v2).

// yamlKey writes a mapping key: bare when no YAML reader could take it
// for anything but that string, else double-quoted.
func yamlKey(k string) (string, error) {
	if bareKey.MatchString(k) && !yaml11Words[strings.ToLower(k)] {
		return k, nil
	}
	return yamlQuote(k)
}

var (
	bareKey = regexp.MustCompile(`^[a-z][a-z0-9_-]*$`)
	// yaml11Words are read by PyYAML (YAML 1.1) as booleans or null.
	yaml11Words = map[string]bool{"y": true, "n": true, "yes": true, "no": true, "on": true, "off": true,
		"true": true, "false": true, "null": true}
)

// yamlScalar writes a string, number or boolean.
func yamlScalar(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return composeQuote(v)
	case bool:
		return strconv.FormatBool(v), nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	case int:
		return strconv.Itoa(v), nil
	case float64:
		if math.IsInf(v, 0) || math.IsNaN(v) {
			return "", fmt.Errorf("%v has no compose meaning", v)
		}
		s := strconv.FormatFloat(v, 'f', -1, 64)
		if !strings.Contains(s, ".") {
			s += ".0" // PyYAML reads a float only with its point
		}
		return s, nil
	}
	return "", fmt.Errorf("a %T cannot be written in a compose file", v)
}

// normalize turns the slices and maps of a catalog built in code
// ([]string, map[string]string...) into the []any and map[string]any
// that Load gives.
func normalize(v any) any {
	switch v.(type) {
	case nil, string, bool, int, int64, float64, map[string]any, []any:
		return v
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Slice, reflect.Array:
		out := make([]any, rv.Len())
		for i := range out {
			out[i] = normalize(rv.Index(i).Interface())
		}
		return out
	case reflect.Map:
		if rv.Type().Key().Kind() != reflect.String {
			return v
		}
		out := make(map[string]any, rv.Len())
		for it := rv.MapRange(); it.Next(); {
			out[it.Key().String()] = normalize(it.Value().Interface())
		}
		return out
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32:
		return rv.Int()
	case reflect.Float32:
		return rv.Float()
	}
	return v
}

// writeYAMLKey writes key: v at indent spaces, v in block style.
func writeYAMLKey(b *strings.Builder, indent int, key string, v any) error {
	v = normalize(v)
	k, err := yamlKey(key)
	if err != nil {
		return err
	}
	pad := strings.Repeat(" ", indent)
	switch v := v.(type) {
	case map[string]any:
		if len(v) == 0 {
			fmt.Fprintf(b, "%s%s: {}\n", pad, k)
			return nil
		}
		fmt.Fprintf(b, "%s%s:\n", pad, k)
		return writeYAMLMap(b, indent+2, v)
	case []any:
		if len(v) == 0 {
			fmt.Fprintf(b, "%s%s: []\n", pad, k)
			return nil
		}
		fmt.Fprintf(b, "%s%s:\n", pad, k)
		return writeYAMLList(b, indent+2, v)
	}
	s, err := yamlScalar(v)
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	fmt.Fprintf(b, "%s%s: %s\n", pad, k, s)
	return nil
}

func writeYAMLMap(b *strings.Builder, indent int, m map[string]any) error {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if err := writeYAMLKey(b, indent, k, m[k]); err != nil {
			return err
		}
	}
	return nil
}

func writeYAMLList(b *strings.Builder, indent int, l []any) error {
	pad := strings.Repeat(" ", indent)
	for _, e := range l {
		switch e := normalize(e).(type) {
		case map[string]any:
			if len(e) == 0 {
				fmt.Fprintf(b, "%s- {}\n", pad)
				continue
			}
			// The item's first key goes on the dash's line.
			var item strings.Builder
			if err := writeYAMLMap(&item, indent+2, e); err != nil {
				return err
			}
			b.WriteString(pad + "- " + strings.TrimPrefix(item.String(), pad+"  "))
		case []any:
			if len(e) == 0 {
				fmt.Fprintf(b, "%s- []\n", pad)
				continue
			}
			fmt.Fprintf(b, "%s-\n", pad)
			if err := writeYAMLList(b, indent+2, e); err != nil {
				return err
			}
		default:
			s, err := yamlScalar(e)
			if err != nil {
				return err
			}
			fmt.Fprintf(b, "%s- %s\n", pad, s)
		}
	}
	return nil
}
