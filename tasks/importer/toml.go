package importer

import (
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/maestro-platform/deploy/tasks/catalog"
)

// The proposed entries are written as TOML in the catalog's own style:
// one key a line, small tables inline, the compose passthrough and long
// environments as sub-tables after the entry's keys (inline tables must
// fit on one line in TOML 1.0).

var bareKey = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func tomlKey(k string) string {
	if bareKey.MatchString(k) {
		return k
	}
	return tomlString(k)
}

// tomlString writes a TOML basic string.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if r < 0x20 || r == 0x7f {
				fmt.Fprintf(&b, `\u%04X`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

// tomlInline writes v on one line.
func tomlInline(v any) string {
	switch v := v.(type) {
	case string:
		return tomlString(v)
	case bool:
		return strconv.FormatBool(v)
	case int64:
		return strconv.FormatInt(v, 10)
	case int:
		return strconv.Itoa(v)
	case float64:
		switch {
		case math.IsInf(v, 1):
			return "inf"
		case math.IsInf(v, -1):
			return "-inf"
		case math.IsNaN(v):
			return "nan"
		}
		s := strconv.FormatFloat(v, 'f', -1, 64)
		if !strings.Contains(s, ".") {
			s += ".0"
		}
		return s
	case []string:
		items := make([]string, len(v))
		for i, x := range v {
			items[i] = tomlString(x)
		}
		return "[" + strings.Join(items, ", ") + "]"
	case []any:
		items := make([]string, len(v))
		for i, x := range v {
			items[i] = tomlInline(x)
		}
		return "[" + strings.Join(items, ", ") + "]"
	case map[string]string:
		if len(v) == 0 {
			return "{}"
		}
		items := make([]string, 0, len(v))
		for _, k := range slices.Sorted(maps.Keys(v)) {
			items = append(items, tomlKey(k)+" = "+tomlString(v[k]))
		}
		return "{ " + strings.Join(items, ", ") + " }"
	case map[string]any:
		if len(v) == 0 {
			return "{}"
		}
		items := make([]string, 0, len(v))
		for _, k := range slices.Sorted(maps.Keys(v)) {
			items = append(items, tomlKey(k)+" = "+tomlInline(v[k]))
		}
		return "{ " + strings.Join(items, ", ") + " }"
	case map[string]int:
		items := make([]string, 0, len(v))
		for _, k := range slices.Sorted(maps.Keys(v)) {
			items = append(items, tomlKey(k)+" = "+strconv.Itoa(v[k]))
		}
		return "{ " + strings.Join(items, ", ") + " }"
	}
	panic(fmt.Sprintf("importer: no TOML form for %T", v))
}

// inlineWidth is how long a line with an inline table may grow before
// the table is written as a sub-table instead.
const inlineWidth = 100

// writeEntry writes e as a [[services]] or [[infrastructure]] table.
func writeEntry(b *strings.Builder, e *entry) {
	table := "services"
	if e.Infra {
		table = "infrastructure"
	}
	fmt.Fprintf(b, "\n[[%s]]%s# imported from %s:%d\n", table, strings.Repeat(" ", max(1, 31-len(table)-4)), e.File, e.Line)
	kv := func(k string, v any) { fmt.Fprintf(b, "%s = %s\n", k, tomlInline(v)) }
	kv("name", e.Name)
	if e.Title != "" {
		kv("title", e.Title)
	}
	if e.Source != "" {
		kv("source", e.Source)
	}
	if e.Dockerfile != "" {
		kv("dockerfile", e.Dockerfile)
	}
	if len(e.BuildArgs) > 0 {
		kv("build_args", e.BuildArgs)
	}
	if e.BuildTarget != "" {
		kv("build_target", e.BuildTarget)
	}
	if e.Image != "" {
		kv("image", e.Image)
	}
	if e.Port != 0 {
		kv("port", e.Port)
	}
	if e.DevPort != 0 {
		kv("dev_port", e.DevPort)
	}
	if e.ProdPort != 0 {
		kv("prod_port", e.ProdPort)
	}
	if len(e.ExtraPorts) > 0 {
		kv("ports", e.ExtraPorts)
	}
	if e.Health != "" {
		kv("health", e.Health)
	}
	switch {
	case len(e.Healthcheck) > 0:
		kv("healthcheck", e.Healthcheck)
	case e.HealthcheckTable != nil:
		kv("healthcheck", e.HealthcheckTable)
	}
	switch {
	case len(e.DependsOnConditions) > 0:
		kv("depends_on", e.DependsOnConditions)
	case len(e.DependsOn) > 0:
		kv("depends_on", e.DependsOn)
	}
	// Sub-tables go last: after a [table] header, keys belong to it.
	var subs []func()
	sub := func(k string, v map[string]string) {
		if line := k + " = " + tomlInline(v); len(line) <= inlineWidth {
			b.WriteString(line + "\n")
			return
		}
		subs = append(subs, func() {
			fmt.Fprintf(b, "\n  [%s.%s]\n", table, k)
			for _, name := range slices.Sorted(maps.Keys(v)) {
				fmt.Fprintf(b, "  %s = %s\n", tomlKey(name), tomlString(v[name]))
			}
		})
	}
	if len(e.Env) > 0 {
		sub("env", e.Env)
	}
	if len(e.Secrets) > 0 {
		kv("secrets", slices.Sorted(slices.Values(e.Secrets)))
	}
	if len(e.Labels) > 0 {
		sub("labels", e.Labels)
	}
	switch len(e.Volumes) {
	case 0:
	case 1:
		kv("volumes", e.Volumes)
	default:
		b.WriteString("volumes = [\n")
		for _, v := range e.Volumes {
			fmt.Fprintf(b, "  %s,\n", tomlInline(v))
		}
		b.WriteString("]\n")
	}
	if len(e.Prebuild) > 0 {
		kv("prebuild", e.Prebuild)
	}
	if len(e.PrebuildEnv) > 0 {
		kv("prebuild_env", e.PrebuildEnv)
	}
	if len(e.PrebuildInputs) > 0 {
		kv("prebuild_inputs", e.PrebuildInputs)
	}
	if len(e.PrebuildOutputs) > 0 {
		kv("prebuild_outputs", e.PrebuildOutputs)
	}
	if e.Replicas > 1 {
		kv("replicas", e.Replicas)
	}
	settings := e.Settings.Values()
	for _, k := range slices.Sorted(maps.Keys(settings)) {
		kv(k, settings[k])
	}
	for _, f := range subs {
		f()
	}
	if len(e.Compose) > 0 {
		fmt.Fprintf(b, "\n  [%s.compose]\n", table)
		for _, k := range slices.Sorted(maps.Keys(e.Compose)) {
			fmt.Fprintf(b, "  %s = %s\n", tomlKey(k), tomlInline(e.Compose[k]))
		}
	}
	for _, c := range e.Checks {
		fmt.Fprintf(b, "\n  [[%s.checks]]\n", table)
		for _, k := range checkOrder(c) {
			fmt.Fprintf(b, "  %s = %s\n", tomlKey(k), tomlInline(c[k]))
		}
	}
}

// checkOrder lists a check's keys as the catalog's type declares them
// (name first), then any others.
func checkOrder(c map[string]any) []string {
	var out []string
	for _, k := range catalog.CheckKeys {
		if _, ok := c[k]; ok {
			out = append(out, k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(c)) {
		if !slices.Contains(catalog.CheckKeys, k) {
			out = append(out, k)
		}
	}
	return out
}
