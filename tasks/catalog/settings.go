package catalog

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"
)

// Written are the keys of a [[services]] or [[infrastructure]] entry that
// the model holds as the file writes them (Load may fill in a default),
// each declared once: its toml tag is the key, its view tag how the gate
// and plan name it ("-": not configuration), and Service, the file's
// decoding and mage import's entries all embed it. Checks of a value stay
// in validate.go.
type Written struct {
	// Title is a human name for tables ("Quality Fabric"); defaults to Name.
	Title string `toml:"title" view:"-"`
	// Dockerfile is relative to Source (default "Dockerfile").
	Dockerfile string `toml:"dockerfile" view:"-"`
	// Image is a prebuilt image reference used instead of building Source.
	Image string `toml:"image" view:"image"`
	// BuildArgs are the build's arguments and BuildTarget the Dockerfile
	// stage it builds ("" = the last): part of the build recipe, which the
	// image ID covers.
	BuildArgs   map[string]string `toml:"build_args" view:"-"`
	BuildTarget string            `toml:"build_target" view:"-"`
	// Health is the HTTP health path (default "/health").
	Health string `toml:"health" view:"health"`
	// Env is the plain environment of the container.
	Env map[string]string `toml:"env" view:"env"`
	// Labels are the container's own labels; the tool adds its io.maestro.*
	// labels beside them.
	Labels map[string]string `toml:"labels" view:"labels"`
	// Prebuild is a command (argument list, never a shell string) run in
	// Source before the image build, e.g. a static go build.
	Prebuild []string `toml:"prebuild" view:"-"`
	// PrebuildEnv is added to the environment of Prebuild.
	PrebuildEnv map[string]string `toml:"prebuild_env" view:"-"`
	// PrebuildOutputs are paths relative to Source that Prebuild writes;
	// they are left out of the input hash.
	PrebuildOutputs []string `toml:"prebuild_outputs" view:"-"`
}

// Settings are the keys of a [[services]] or [[infrastructure]] entry that
// compose has too, under the same name and with the same meaning. Each is
// one field here, and that field is the whole of its schema: its toml tag
// is the key, its type decodes and checks the value (a type with
// UnmarshalText refuses a bad value at its line), Service carries it as
// written, the gate and plan compare it (view tag), it enters the config
// hash when set, compose = {...} refuses it (the key is the catalog's),
// and mage import lifts it from a compose service and writes it back. What
// is left to write for a new one is its line in templates/compose.yml.tmpl
// and its row in the README's key table.
type Settings struct {
	// StopGracePeriod is how long the container has to exit after its stop
	// signal before it is killed (0 = the engine's 10 s).
	StopGracePeriod Duration `toml:"stop_grace_period" view:"stop_grace_period"`
	// StopSignal is the signal that asks the container to stop ("" = its
	// image's, else SIGTERM), e.g. "SIGINT" for a process that drains on it.
	StopSignal string `toml:"stop_signal" view:"stop_signal"`
}

// Duration is a positive Go duration written as a string: "30s", "1m30s".
type Duration time.Duration

// UnmarshalText parses a Go duration and refuses zero and negative ones.
func (d *Duration) UnmarshalText(b []byte) error {
	p, err := time.ParseDuration(string(b))
	if err != nil || p <= 0 {
		return &ValueError{Msg: fmt.Sprintf("invalid duration %q", b), Hint: `write a positive Go duration such as "30s" or "1m30s"`}
	}
	*d = Duration(p)
	return nil
}

// MarshalText writes the duration as UnmarshalText reads it, and as compose
// does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// String is the duration in Go's form ("1m30s").
func (d Duration) String() string { return time.Duration(d).String() }

// ValueError is a value its type refuses, with what to write instead.
type ValueError struct{ Msg, Hint string }

func (e *ValueError) Error() string { return e.Msg + ": " + e.Hint }

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// settingFields are Settings' fields by key.
var settingFields = func() map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	t := reflect.TypeFor[Settings]()
	for i := range t.NumField() {
		f := t.Field(i)
		out[tomlName(f)] = f
	}
	return out
}()

func tomlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	return name
}

// IsSetting reports whether key is one of Settings' keys.
func IsSetting(key string) bool {
	_, ok := settingFields[key]
	return ok
}

// Set gives the setting key a value as decoded from a file (TOML or YAML):
// a string for a type that reads text, else a value of the field's kind.
func (s *Settings) Set(key string, value any) error {
	f, ok := settingFields[key]
	if !ok {
		return fmt.Errorf("%s is no catalog setting", key)
	}
	fv := reflect.ValueOf(s).Elem().FieldByIndex(f.Index)
	if reflect.PointerTo(f.Type).Implements(textUnmarshaler) {
		str, ok := value.(string)
		if !ok {
			return fmt.Errorf("%s must be a string, not %s", key, typeName(value))
		}
		return fv.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(str))
	}
	v := reflect.ValueOf(value)
	// TOML gives whole numbers as int64, YAML as int.
	if !v.IsValid() || !v.CanConvert(f.Type) || v.Kind() != f.Type.Kind() && !(v.CanInt() && fv.CanInt()) {
		return fmt.Errorf("%s must be %s, not %s", key, f.Type.Kind(), typeName(value))
	}
	fv.Set(v.Convert(f.Type))
	return nil
}

// Values are the settings that are set, by key, each as the catalog
// writes it: text for a type that reads text (MarshalText).
func (s Settings) Values() map[string]any {
	out := map[string]any{}
	v := reflect.ValueOf(s)
	for key, f := range settingFields {
		fv := v.FieldByIndex(f.Index)
		if fv.IsZero() {
			continue
		}
		if m, ok := fv.Interface().(encoding.TextMarshaler); ok {
			b, _ := m.MarshalText() // Settings' types write whatever they read
			out[key] = string(b)
			continue
		}
		out[key] = fv.Interface()
	}
	return out
}

// checkText runs val through t's UnmarshalText when t reads text, and
// reports whether it did (handled).
func (v *validator) checkText(val any, t reflect.Type, path string) bool {
	if !reflect.PointerTo(t).Implements(textUnmarshaler) {
		return false
	}
	s, ok := val.(string)
	if !ok {
		v.wrongType(path, val, "a string", fmt.Sprintf(`put the value in double quotes: %s = "..."`, leafName(path)))
		return true
	}
	err := reflect.New(t).Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s))
	var ve *ValueError
	switch {
	case errors.As(err, &ve):
		v.add(path, ve.Hint, "%s: %s", leafName(path), ve.Msg)
	case err != nil:
		v.add(path, "see the README's catalog reference", "%s: %v", leafName(path), err)
	}
	return true
}
