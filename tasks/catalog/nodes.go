package catalog

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// A swarm of several machines: the environment's host is the manager that
// promote deploys through, nodes are the others. Swarm has no registry
// here, so promote loads every image into each node's engine itself, over
// SSH with the environment's known_hosts and identity; a node it cannot
// reach is refused before anything changes (package release, nodes.go).

// nodes checks an environment's nodes. host is its parsed host (nil when
// local or refused) and tls whether it has TLS files.
func (v *validator) nodes(key string, r *rawEnv, e *Environment, host *url.URL, tls bool) {
	if r.Nodes == nil {
		return
	}
	k := key + ".nodes"
	if e.Engine != EngineSwarm {
		if e.Engine == EngineCompose { // else the unknown engine is reported already
			v.add(k, `add engine = "swarm" to this environment, or remove nodes: compose runs the stack on one host`,
				"nodes applies to swarm environments only, and %q deploys with compose", e.Name)
		}
		return
	}
	manager := ""
	if host != nil && host.Scheme != "unix" {
		manager = machine(host)
	}
	seen := map[string]int{}
	for i, n := range r.Nodes {
		ek := fmt.Sprintf("%s[%d]", k, i)
		u := v.hostURL(ek, n, false)
		if u == nil {
			continue
		}
		if u.Scheme != "ssh" {
			v.add(ek, "write ssh://user@host[:port]: promote loads the images into each node's engine over SSH, with this environment's known_hosts and identity",
				"node %q is not an ssh:// host", n)
			continue
		}
		m := machine(u)
		switch first, dup := seen[m]; {
		case m == manager:
			v.add(ek, "remove it: host is the manager promote deploys through, and nodes lists the swarm's other machines",
				"node %q is this environment's host", n)
		case dup:
			v.add(ek, fmt.Sprintf("nodes[%d] names the same machine and port; list each node once", first),
				"node %q is listed twice", n)
		default:
			seen[m] = i
		}
	}
	e.Nodes = slices.Clone(r.Nodes)
}

// machine is an ssh:// or tcp:// URL's machine and port, lower case, with
// the default port filled in: one machine under two user names is one node.
func machine(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = map[string]string{"ssh": "22", "tcp": "2375"}[u.Scheme]
	}
	return strings.ToLower(strings.Trim(u.Hostname(), "[]")) + ":" + port
}

// maxPerNode checks a service's max_replicas_per_node.
func (v *validator) maxPerNode(key string, r *rawService, s *Service) {
	if r.MaxPerNode == nil {
		return
	}
	k := key + ".max_replicas_per_node"
	n := *r.MaxPerNode
	switch {
	case n < 1 || n > 100:
		v.add(k, "between 1 and 100 (1 puts each replica on a node of its own); remove the key for no limit",
			"max_replicas_per_node %d out of range 1-100", n)
	case n >= s.Replicas:
		// It would spread nothing, and it makes updates stop-first (a
		// node's slot must free before the new task can take it): with
		// one replica, every release would stop the service.
		v.add(k, fmt.Sprintf("raise replicas above %d, or lower max_replicas_per_node (1 puts each replica on a node of its own), or remove it", n),
			"max_replicas_per_node = %d lets one node run all %d replica(s): it spreads nothing", n, s.Replicas)
	}
	s.MaxReplicasPerNode = n
}
