package importer

import (
	"fmt"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v4"

	"github.com/maestro-platform/deploy/tasks/catalog"
)

// positions maps the paths of a compose file's keys and list items
// ("services.web.ports[0]") to the line they are written on, so that
// every message points at its line.
type positions map[string]int

// yamlPositions walks the document with its aliases expanded, as the
// decoder will expand them, and stops with an error past maxNodes nodes:
// a few hundred bytes of aliases of aliases (a "billion laughs") expand
// into billions of nodes, which neither this walk nor the decoder may
// reach. A file that passes here decodes within the same bound.
func yamlPositions(root *yaml.Node, shown string) (positions, *catalog.Error) {
	p := positions{}
	visited := 0
	var tooBig *catalog.Error
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		if tooBig != nil {
			return
		}
		if visited++; visited > maxNodes {
			// Named by the top-level key being expanded: deeper paths
			// run through aliases and point at their anchors' lines.
			top, _, _ := strings.Cut(path, ".")
			top, _, _ = strings.Cut(top, "[")
			tooBig = &catalog.Error{File: shown, Line: p[top], Key: top,
				Msg:  fmt.Sprintf("the file expands to more than %d YAML nodes (its aliases are expanded where they are used)", maxNodes),
				Hint: "a compose file is far smaller: write the repeated parts out, or use fewer aliases of aliases"}
			return
		}
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				kp := k.Value
				if path != "" {
					kp = path + "." + k.Value
				}
				if _, ok := p[kp]; !ok {
					p[kp] = k.Line
				}
				walk(v, kp)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				ip := path + "[" + strconv.Itoa(i) + "]"
				if _, ok := p[ip]; !ok {
					p[ip] = c.Line
				}
				walk(c, ip)
			}
		case yaml.AliasNode:
			if n.Alias != nil {
				walk(n.Alias, path)
			}
		}
	}
	walk(root, "")
	if tooBig != nil {
		return nil, tooBig
	}
	return p, nil
}

// line returns the line of the most specific written prefix of path.
func (p positions) line(path string) int { return catalog.NearestLine(p, path) }
