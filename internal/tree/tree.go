// Package tree rebuilds the trees that the YAML and TOML decoders give
// (tables of string keys, arrays, values), value by value, naming each
// value's place: the catalog's compose values, mage import's variable
// substitution and its TOML values are each one function of a value.
package tree

import "fmt"

// Map rebuilds v, with every value that is neither a table nor an array
// replaced by what leaf returns for it and its path: "key.sub", "key[2]"
// under path. The first error of leaf is Map's.
func Map(v any, path string, leaf func(v any, path string) (any, error)) (any, error) {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			c, err := Map(e, Join(path, k), leaf)
			if err != nil {
				return nil, err
			}
			out[k] = c
		}
		return out, nil
	case []any:
		return mapArray(v, path, leaf)
	case []map[string]any:
		// BurntSushi/toml's array of tables.
		a := make([]any, len(v))
		for i, m := range v {
			a[i] = m
		}
		return mapArray(a, path, leaf)
	}
	return leaf(v, path)
}

func mapArray(v []any, path string, leaf func(any, string) (any, error)) (any, error) {
	out := make([]any, len(v))
	for i, e := range v {
		c, err := Map(e, fmt.Sprintf("%s[%d]", path, i), leaf)
		if err != nil {
			return nil, err
		}
		out[i] = c
	}
	return out, nil
}

// Join is the path of key under path ("" is the top).
func Join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
