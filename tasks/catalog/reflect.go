package catalog

import "reflect"

// fieldNames are the keys of a struct decoded from the file, in the order
// declared, those of an embedded struct (Written, Settings) in its place.
func fieldNames(v any) []string {
	return keysOf(reflect.TypeOf(v))
}

func keysOf(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		switch tag := tomlName(f); {
		case f.Anonymous && tag == "":
			out = append(out, keysOf(f.Type)...)
		case tag != "":
			out = append(out, tag)
		}
	}
	return out
}
