// Package composeschema checks a compose document against the three
// schemas a rendered file must satisfy: the compose specification that
// compose v2 reads (compose-go's schema), the schema docker-compose 1.29
// (compose v1) validates files with, and the legacy 3.8 schema that
// `docker stack deploy` reads (docker/cli's). Each check returns the most
// specific problem with its place in the document, so that a caller can
// point at the key that holds it.
//
// compose-v1.29.2.json is docker-compose 1.29.2's compose/config/compose_spec.json
// (Apache License 2.0, Copyright Docker, Inc.), unchanged: docker-compose
// validates every file of the compose-spec format with it (with JSON
// Schema draft 4 rules). A test compares it with the installed
// docker-compose's copy when there is one.
package composeschema

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/compose-spec/compose-go/v2/schema"
	dockerschema "github.com/docker/cli/cli/compose/schema"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

//go:embed compose-v1.29.2.json
var v1Schema []byte

// V1SchemaFile is where docker-compose 1.29 keeps the schema embedded
// here, on Debian and Ubuntu; tests compare the two.
const V1SchemaFile = "/usr/lib/python3/dist-packages/compose/config/compose_spec.json"

// Problem is what a schema refuses, and where.
type Problem struct {
	// Path is the place in the document: keys and list indices, e.g.
	// services, web, ulimits, nofile, soft. For an unknown key it ends
	// with that key.
	Path []string
	Msg  string
}

func (p *Problem) Error() string {
	if len(p.Path) == 0 {
		return p.Msg
	}
	return strings.Join(p.Path, ".") + ": " + p.Msg
}

type compiled struct {
	once   sync.Once
	schema *jsonschema.Schema
	err    error
}

var spec, v1 compiled

func compile(c *compiled, name string, doc []byte) (*jsonschema.Schema, error) {
	c.once.Do(func() {
		d, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
		if err != nil {
			c.err = err
			return
		}
		comp := jsonschema.NewCompiler()
		// Formats are not asserted (jsonschema's default), as neither
		// compose asserts them through the schema: the loaders check
		// ports and durations themselves.
		if c.err = comp.AddResource(name, d); c.err != nil {
			return
		}
		c.schema, c.err = comp.Compile(name)
	})
	return c.schema, c.err
}

// Spec checks doc against the compose specification compose v2 reads.
func Spec(doc map[string]any) (*Problem, error) {
	s, err := compile(&spec, "compose-spec.json", []byte(schema.Schema))
	if err != nil {
		return nil, fmt.Errorf("compose-spec schema: %w", err)
	}
	return check(s, doc)
}

// V1 checks doc against docker-compose 1.29.2's schema.
func V1(doc map[string]any) (*Problem, error) {
	s, err := compile(&v1, "compose_spec.json", v1Schema)
	if err != nil {
		return nil, fmt.Errorf("docker-compose 1.29 schema: %w", err)
	}
	return check(s, doc)
}

// StackVersion is the version of the legacy schema stack files are
// written in and checked against.
const StackVersion = "3.8"

// Stack checks doc against the legacy schema (StackVersion) that docker
// stack deploy reads, through docker/cli's own check.
func Stack(doc map[string]any) (*Problem, error) {
	plain, err := jsonValue(doc)
	if err != nil {
		return nil, err
	}
	m, _ := plain.(map[string]any)
	err = dockerschema.Validate(m, StackVersion)
	if err == nil {
		return nil, nil
	}
	// docker/cli says "services.web.gpus: additional property ..." or
	// "services.web: additional property 'gpus' is not allowed".
	msg := err.Error()
	where, what, ok := strings.Cut(msg, ": ")
	if !ok || strings.Contains(where, " ") {
		return &Problem{Msg: msg}, nil
	}
	p := &Problem{Path: strings.Split(where, "."), Msg: what}
	if where == "(root)" {
		p.Path = nil
	}
	if prop, ok := quotedProperty(what); ok {
		p.Path = append(p.Path, prop)
	}
	return p, nil
}

func quotedProperty(msg string) (string, bool) {
	const pre = "additional property '"
	if !strings.HasPrefix(msg, pre) {
		return "", false
	}
	rest := strings.TrimPrefix(msg, pre)
	prop, _, ok := strings.Cut(rest, "'")
	return prop, ok
}

var printer = message.NewPrinter(language.English)

func check(s *jsonschema.Schema, doc map[string]any) (*Problem, error) {
	v, err := jsonValue(doc)
	if err != nil {
		return nil, err
	}
	err = s.Validate(v)
	if err == nil {
		return nil, nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return nil, err
	}
	best := mostSpecific(ve)
	p := &Problem{Path: slices.Clone(best.InstanceLocation)}
	switch k := best.ErrorKind.(type) {
	case *kind.AdditionalProperties:
		if len(k.Properties) > 0 {
			p.Path = append(p.Path, k.Properties[0])
			p.Msg = "unknown key"
		} else {
			p.Msg = k.LocalizedString(printer)
		}
	case *kind.Type:
		p.Msg = fmt.Sprintf("must be %s, not %s", strings.Join(k.Want, " or "), k.Got)
	case *kind.FalseSchema:
		p.Msg = "unknown key"
	default:
		p.Msg = best.ErrorKind.LocalizedString(printer)
	}
	return p, nil
}

// mostSpecific is the deepest of the errors that caused err: the one
// closest to the offending value. Among equally deep ones, a wrong value
// beats a wrong type, which is what the other branches of a oneOf say,
// and both beat a "false schema": the compose specification marks every
// key of a service it could not evaluate so, the valid ones beside the
// wrong one included.
func mostSpecific(err *jsonschema.ValidationError) *jsonschema.ValidationError {
	var leaves []*jsonschema.ValidationError
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) == 0 {
			leaves = append(leaves, e)
			return
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(err)
	rank := func(e *jsonschema.ValidationError) int {
		switch e.ErrorKind.(type) {
		case *kind.FalseSchema:
			return 0
		case *kind.Type:
			return 1
		}
		return 2
	}
	best := leaves[0]
	for _, l := range leaves[1:] {
		lr, br := rank(l), rank(best)
		switch {
		case br == 0 && lr > 0:
			best = l
		case lr == 0 && br > 0:
		case len(l.InstanceLocation) > len(best.InstanceLocation):
			best = l
		case len(l.InstanceLocation) == len(best.InstanceLocation) && lr > br:
			best = l
		}
	}
	return best
}

// jsonValue turns doc into the values JSON decoding gives (numbers as
// json.Number), which is what the validators take.
func jsonValue(doc map[string]any) (any, error) {
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	return jsonschema.UnmarshalJSON(bytes.NewReader(b))
}
