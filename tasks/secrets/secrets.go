// Package secrets gives every service the values of the secrets it
// declares, for one environment, from outside the catalog.
//
// services.toml is committed, so it names secrets (secrets = ["NAME"]) and
// at most gives them a dev default (secrets = { NAME = "dev value" }).
// Resolve looks each name up, in this order, and takes the first value
// found:
//
//  1. the process environment, under the name itself;
//  2. the environment's secrets file (secrets_file, by default
//     .maestro/secrets/<env>.env beside the catalog), in dotenv form; it
//     may be missing, and when it exists it must be a regular file that
//     neither group nor others may read or write;
//  3. the environment's secrets_command, an argument list run without a
//     shell, only when a secret is still missing; its standard output is
//     read in dotenv form;
//  4. for a local environment only, the catalog's dev default.
//
// An empty value counts as not given: an empty export or a placeholder line
// is a mistake far more often than a wish. A dev default is used as
// written, even empty.
//
// A value is never printed, logged or put in an error: a Resolution says
// where each value came from, a MissingError where each missing one was
// looked for, and Doctor where each would come from.
package secrets

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/maestro-platform/deploy/tasks/catalog"
)

// Source is where a secret's value came from.
type Source string

// The sources, in the order they are asked.
const (
	FromEnv     Source = "env"
	FromFile    Source = "file"
	FromCommand Source = "command"
	FromDefault Source = "default"
)

// Origin says where the value of one secret came from, never the value.
type Origin struct {
	Name string
	// Services are the services and infrastructure entries that declare
	// the secret, in catalog order.
	Services []string
	Source   Source
	// Where says it in words: "environment variable NAME", "secrets file
	// PATH", "secrets_command pass show maestro/demo", or "dev default in
	// services.toml (not used for remote environments) at FILE:LINE: KEY".
	Where string
}

func (o Origin) String() string {
	return fmt.Sprintf("%s (%s): %s", o.Name, strings.Join(o.Services, ", "), o.Where)
}

// Resolution is what Resolve did: where each value came from.
type Resolution struct {
	// Env is the environment resolved for; Remote says whether it is
	// remote (so no dev default was used).
	Env    string
	Remote bool
	// Origins holds one entry per declared secret, by name.
	Origins []Origin
	// File is the secrets file consulted, and FileFound whether it exists.
	File      string
	FileFound bool
	// Command is the environment's secrets_command (nil: none), and
	// CommandRan whether it had to run.
	Command    []string
	CommandRan bool
}

// Lines says where each secret came from, one line per secret.
func (r *Resolution) Lines() []string {
	out := make([]string, len(r.Origins))
	for i, o := range r.Origins {
		out[i] = o.String()
	}
	return out
}

// Resolve sets, for environment env, the Secrets of every service and
// infrastructure entry of cat to the values of its SecretNames, looked up
// as the package documentation says, and sets cat.SecretsEnv to env.Name.
// A secret found nowhere gives a *MissingError naming every one of them,
// a source that cannot be used (a secrets file others may read, a failing
// secrets_command) a *SourceError; cat is then left as it was. ctx bounds
// the secrets_command, which also has CommandTimeout.
//
// Resolve changes cat: call it before handing cat to anything that reads
// it concurrently, and before render.Render, which refuses secrets that
// are not the environment's.
func Resolve(ctx context.Context, cat *catalog.Catalog, env *catalog.Environment) (*Resolution, error) {
	if cat == nil || env == nil {
		return nil, errors.New("secrets: no catalog or environment")
	}
	l := newLookup(cat, env)
	if err := l.outside(); err != nil {
		return nil, err
	}
	if len(l.missingOutside()) > 0 && len(env.SecretsCommand) > 0 {
		if err := l.command(ctx); err != nil {
			return nil, err
		}
	}
	values := map[*catalog.Service]map[string]string{}
	var origins []Origin
	var missing []Missing
	for _, u := range l.uses {
		o, vals, m := l.decide(u)
		if m != nil {
			missing = append(missing, *m)
			continue
		}
		origins = append(origins, o)
		for s, v := range vals {
			if values[s] == nil {
				values[s] = map[string]string{}
			}
			values[s][u.name] = v
		}
	}
	if len(missing) > 0 {
		return nil, l.missingError(missing)
	}
	// Only now, with every value at hand, is the catalog changed: a
	// failure above leaves it as it was.
	for _, s := range cat.All() {
		s.Secrets = values[s]
	}
	cat.SecretsEnv = env.Name
	return &Resolution{Env: env.Name, Remote: env.Remote(), Origins: origins,
		File: env.SecretsFile, FileFound: l.fileFound, Command: env.SecretsCommand, CommandRan: l.cmdRan}, nil
}

// use is one declared secret name and the services that declare it.
type use struct {
	name     string
	services []*catalog.Service
}

func declared(cat *catalog.Catalog) []use {
	by := map[string][]*catalog.Service{}
	for _, s := range cat.All() {
		for _, n := range s.SecretNames {
			by[n] = append(by[n], s)
		}
	}
	out := make([]use, 0, len(by))
	for _, n := range slices.Sorted(maps.Keys(by)) {
		out = append(out, use{n, by[n]})
	}
	return out
}

func names(ss []*catalog.Service) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.Name
	}
	return out
}

// lookup holds what the sources outside the catalog gave for one
// environment. The values stay in memory only.
type lookup struct {
	cat  *catalog.Catalog
	env  *catalog.Environment
	uses []use

	vars      map[string]string // the process environment, non-empty values
	file      map[string]string // the secrets file (nil: none)
	fileFound bool
	// fileRefused: the file exists but cannot be used (Doctor only).
	fileRefused bool
	cmd         map[string]string // the command's output (nil: not run)
	cmdRan      bool
	// empty marks, per source, the names that were given empty.
	empty map[Source]map[string]bool
}

func newLookup(cat *catalog.Catalog, env *catalog.Environment) *lookup {
	return &lookup{cat: cat, env: env, uses: declared(cat), vars: map[string]string{},
		empty: map[Source]map[string]bool{FromEnv: {}, FromFile: {}, FromCommand: {}}}
}

// outside reads the process environment and the secrets file. The file
// is read, and its mode checked, whenever the catalog declares a secret,
// even when the environment gives every value: a secrets file others may
// read is to be fixed whether or not this run needs it.
func (l *lookup) outside() error {
	if len(l.uses) == 0 {
		return nil
	}
	for _, u := range l.uses {
		if v, ok := os.LookupEnv(u.name); ok {
			if v == "" {
				l.empty[FromEnv][u.name] = true
			} else {
				l.vars[u.name] = v
			}
		}
	}
	vals, found, err := readFile(l.env.Name, l.env.SecretsFile)
	if err != nil {
		return err
	}
	l.file, l.fileFound = vals, found
	return nil
}

// given returns the value a source outside the catalog gave for name.
func given(m map[string]string, name string) (string, bool) {
	v, ok := m[name]
	return v, ok && v != ""
}

// missingOutside names the secrets that neither the process environment
// nor the secrets file give.
func (l *lookup) missingOutside() []string {
	var out []string
	for _, u := range l.uses {
		if _, ok := l.vars[u.name]; ok {
			continue
		}
		if _, ok := given(l.file, u.name); ok {
			continue
		}
		out = append(out, u.name)
	}
	return out
}

// command runs the secrets_command once and keeps what it printed.
func (l *lookup) command(ctx context.Context) error {
	var known []string
	for _, m := range []map[string]string{l.vars, l.file} {
		for _, v := range m {
			known = append(known, v)
		}
	}
	vals, err := runCommand(ctx, l.env.Name, filepath.Dir(l.cat.File), l.env.SecretsCommand, known)
	if err != nil {
		return err
	}
	l.cmd, l.cmdRan = vals, true
	return nil
}

// decide picks the value of one secret for each service that declares
// it, or says it is missing.
func (l *lookup) decide(u use) (Origin, map[*catalog.Service]string, *Missing) {
	o := Origin{Name: u.name, Services: names(u.services)}
	all := func(v string) map[*catalog.Service]string {
		out := map[*catalog.Service]string{}
		for _, s := range u.services {
			out[s] = v
		}
		return out
	}
	if v, ok := l.vars[u.name]; ok {
		o.Source, o.Where = FromEnv, "environment variable "+u.name
		return o, all(v), nil
	}
	if v, ok := given(l.file, u.name); ok {
		o.Source, o.Where = FromFile, "secrets file "+l.env.SecretsFile
		return o, all(v), nil
	}
	for _, src := range []struct {
		s Source
		m map[string]string
	}{{FromFile, l.file}, {FromCommand, l.cmd}} {
		if v, ok := src.m[u.name]; ok && v == "" {
			l.empty[src.s][u.name] = true
		}
	}
	if v, ok := given(l.cmd, u.name); ok {
		o.Source, o.Where = FromCommand, "secrets_command "+commandLine(l.env.SecretsCommand)
		return o, all(v), nil
	}
	m := &Missing{Name: u.name, Services: o.Services}
	for _, s := range u.services {
		if _, ok := s.SecretDefaults[u.name]; ok {
			m.Defaults = append(m.Defaults, l.cat.SecretAt(s, u.name))
		}
	}
	if l.env.Remote() {
		return o, nil, m
	}
	out := map[*catalog.Service]string{}
	var without []string
	for _, s := range u.services {
		if v, ok := s.SecretDefaults[u.name]; ok {
			out[s] = v
		} else {
			without = append(without, s.Name)
		}
	}
	if len(without) > 0 {
		// Some declare it without a default: they have no value, and
		// the others' defaults are not theirs to borrow.
		m.Services = without
		return o, nil, m
	}
	o.Source, o.Where = FromDefault, devDefault(l.cat)+" at "+strings.Join(m.Defaults, "; ")
	return o, out, nil
}

// devDefault is how a dev default is named everywhere: where it is, and
// that a remote environment never uses it.
func devDefault(cat *catalog.Catalog) string {
	return "dev default in " + filepath.Base(cat.File) + " (not used for remote environments)"
}
