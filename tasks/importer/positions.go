package importer

import (
	"strconv"

	"go.yaml.in/yaml/v4"

	"github.com/maestro-platform/deploy/tasks/catalog"
)

// positions maps the paths of a compose file's keys and list items
// ("services.web.ports[0]") to the line they are written on, so that
// every message points at its line.
type positions map[string]int

func yamlPositions(root *yaml.Node) positions {
	p := positions{}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
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
	return p
}

// line returns the line of the most specific written prefix of path.
func (p positions) line(path string) int { return catalog.NearestLine(p, path) }
