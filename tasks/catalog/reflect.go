package catalog

import "reflect"

// reflectFields are the keys of a struct decoded from the file, those of
// an embedded struct (Settings) among them.
func reflectFields(v any) []string {
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
