// Package record holds what the runner remembers between commands about
// what it tested and shipped: testAll's verdict (the images and the
// configuration it passed with), which promote's gate reads, and the
// services' configuration as flat keys, which the gate and `plan` compare
// to say which service and which key differ.
//
// Secret values never enter a record: a secret is recorded as a keyed
// digest (HMAC-SHA256 with a random key kept 0600 beside the records), so
// a change of value is seen while the value cannot be guessed back from a
// record, not even by brute force over short tokens.
package record

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/maestro-platform/deploy/internal/atomicfile"
	"github.com/maestro-platform/deploy/tasks/catalog"
)

// StateDir is the folder, inside a deployment folder, that holds records
// and state. It is private (0700): records hold digests of secrets.
const StateDir = ".state"

// KeyFile holds the key of the secret digests, relative to a deployment
// folder.
const KeyFile = StateDir + "/digest-key"

// View is a service's configuration as flat keys and values, e.g.
// "image", "env.LOG_LEVEL", "secrets.API_TOKEN" (a digest),
// "checks.health.path". Keys are the catalog's (see the view tags of
// catalog.Service).
type View map[string]string

// Views returns the view of every service and infrastructure entry of the
// catalog, by name, plus the project's settings under ProjectKey. key is
// the digest key of Key.
func Views(cat *catalog.Catalog, key []byte) map[string]View {
	out := map[string]View{ProjectKey: {"name": cat.Project.Name, "network": cat.Project.Network}}
	for _, s := range cat.All() {
		v := View{}
		flatten(v, "", reflect.ValueOf(s).Elem(), false, key)
		out[s.Name] = v
	}
	return out
}

// ProjectKey is the entry of Views holding the project's own settings.
const ProjectKey = "[project]"

// flatten adds the fields of a struct value to v, each under prefix plus
// its view name; secret marks values that must be digested.
func flatten(v View, prefix string, rv reflect.Value, secret bool, key []byte) {
	switch rv.Kind() {
	case reflect.Pointer, reflect.Interface:
		// Interfaces hold the compose passthrough's values: tables are
		// flattened key by key like any map, arrays written as JSON.
		if !rv.IsNil() {
			flatten(v, prefix, rv.Elem(), secret, key)
		}
	case reflect.Struct:
		t := rv.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			name, opts, _ := strings.Cut(f.Tag.Get("view"), ",")
			if name == "-" || !f.IsExported() {
				continue
			}
			if f.Anonymous && name == "" {
				flatten(v, prefix, rv.Field(i), secret, key) // Settings: the entry's own keys
				continue
			}
			if name == "" {
				name = snake(f.Name)
			}
			flatten(v, join(prefix, name), rv.Field(i), secret || opts == "secret", key)
		}
	case reflect.Map:
		for _, k := range rv.MapKeys() {
			flatten(v, join(prefix, fmt.Sprint(k.Interface())), rv.MapIndex(k), secret, key)
		}
	case reflect.Slice:
		if rv.Len() == 0 {
			return
		}
		// Slices of structs (checks) are keyed by their name, so that an
		// inserted check does not shift every later one.
		if el := rv.Type().Elem(); el.Kind() == reflect.Pointer && el.Elem().Kind() == reflect.Struct {
			for i := range rv.Len() {
				item := rv.Index(i).Elem()
				id := strconv.Itoa(i)
				if n := item.FieldByName("Name"); n.IsValid() && n.String() != "" {
					id = n.String()
				}
				flatten(v, join(prefix, id), item, secret, key)
			}
			return
		}
		b, _ := json.Marshal(rv.Interface())
		v[prefix] = value(string(b), secret, key)
	default:
		if rv.IsZero() {
			return // unset and zero read the same: neither is a change
		}
		s := fmt.Sprint(rv.Interface())
		if d, ok := rv.Interface().(time.Duration); ok {
			s = d.String()
		}
		v[prefix] = value(s, secret, key)
	}
}

func value(s string, secret bool, key []byte) string {
	if !secret {
		return s
	}
	return Digest(key, s)
}

// Digest is the keyed digest a record keeps of a secret value: "hmac:" and
// 16 hex digits, enough to see a change, useless to recover the value.
func Digest(key []byte, secret string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(secret))
	return "hmac:" + hex.EncodeToString(m.Sum(nil))[:16]
}

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// snake turns a Go field name into a catalog key: JSONField -> json_field.
func snake(s string) string {
	r := []rune(s)
	var b strings.Builder
	for i, c := range r {
		if unicode.IsUpper(c) && i > 0 && (unicode.IsLower(r[i-1]) || i+1 < len(r) && unicode.IsLower(r[i+1])) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToLower(c))
	}
	return b.String()
}

// Change is one difference between two sets of views.
type Change struct {
	// Service is the service name, or ProjectKey.
	Service string
	// Key is the changed key ("" when the whole service was added or
	// removed).
	Key string
	// Was and Now are the values; a secret's are digests.
	Was, Now string
}

// Secret reports whether the change is of a secret's value.
func (c Change) Secret() bool { return strings.HasPrefix(c.Key, "secrets.") }

// String says the change in words, never with a secret's value or digest.
func (c Change) String() string {
	switch {
	case c.Key == "" && c.Was == "":
		return c.Service + ": added"
	case c.Key == "" && c.Now == "":
		return c.Service + ": removed"
	case c.Secret() && c.Was == "":
		return fmt.Sprintf("%s: %s added", c.Service, c.Key)
	case c.Secret() && c.Now == "":
		return fmt.Sprintf("%s: %s removed", c.Service, c.Key)
	case c.Secret():
		return fmt.Sprintf("%s: %s changed (value not shown)", c.Service, c.Key)
	case c.Was == "":
		return fmt.Sprintf("%s: %s added (%s)", c.Service, c.Key, quote(c.Now))
	case c.Now == "":
		return fmt.Sprintf("%s: %s removed (was %s)", c.Service, c.Key, quote(c.Was))
	}
	return fmt.Sprintf("%s: %s %s -> %s", c.Service, c.Key, quote(c.Was), quote(c.Now))
}

func quote(s string) string {
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return strconv.Quote(s)
}

// Compare lists what differs from old to now, by service then key.
func Compare(old, now map[string]View) []Change {
	var out []Change
	names := slices.Sorted(maps.Keys(merge(old, now)))
	for _, n := range names {
		o, had := old[n]
		w, has := now[n]
		switch {
		case !had:
			out = append(out, Change{Service: n, Now: "present"})
			continue
		case !has:
			out = append(out, Change{Service: n, Was: "present"})
			continue
		}
		for _, k := range slices.Sorted(maps.Keys(merge(o, w))) {
			if o[k] != w[k] {
				out = append(out, Change{Service: n, Key: k, Was: o[k], Now: w[k]})
			}
		}
	}
	return out
}

func merge[V any](a, b map[string]V) map[string]V {
	out := make(map[string]V, len(a)+len(b))
	maps.Copy(out, a)
	maps.Copy(out, b)
	return out
}

// ReadKey returns the digest key of deployDir, nil when it has none yet:
// for what must write nothing (plan).
func ReadKey(deployDir string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(deployDir, filepath.FromSlash(KeyFile)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("digest key: %w", err)
	}
	return b, nil
}

// Key returns the digest key of the deployment folder deployDir, making
// it (random, 0600, in a 0700 folder) the first time.
func Key(deployDir string) ([]byte, error) {
	p := filepath.Join(deployDir, filepath.FromSlash(KeyFile))
	b, err := os.ReadFile(p)
	if err == nil && len(b) >= 32 {
		return b, nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("digest key: %w", err)
	}
	b = make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("digest key: %w", err)
	}
	// Written beside, then linked into place: a key is never replaced, and
	// when another run made one at the same moment, both use that one.
	tmp := p + ".new-" + strconv.Itoa(os.Getpid())
	if err := atomicfile.Write(tmp, b, 0o600); err != nil {
		return nil, fmt.Errorf("digest key: %w", err)
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, p); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("digest key: %w", err)
	}
	return os.ReadFile(p)
}
