package render

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/check/probe"
	"github.com/maestro-platform/deploy/tasks/labels"
)

// What deploy-all.sh and test-all.sh get. The scripts run on hosts
// without Go, so everything they need of the catalog is computed here and
// written into them, each value through sh (single-quoting).

type scriptSvc struct {
	Name, Mode, Path string
	Port             int
}

type prebuildView struct {
	Dir, Program string
	Env, Args    []string
}

// scriptBuild is a service deploy-all.sh may build: Image is the
// reference its compose file runs, which mage's build tags too.
type scriptBuild struct {
	Service, Image string
	Prebuild       *prebuildView
}

// scriptCheck is one check of test-all.sh, in the order of testAll's
// report (check's plan): per service the container check, the implicit
// health check, then the catalog's checks.
type scriptCheck struct {
	Service, Name string
	// Kind is check.KindContainer ("container"), catalog.CheckHTTP or
	// catalog.CheckNetwork.
	Kind string
	// An http check as curl makes it when no probe is there: Port,
	// Path, expected Status, Contains, Retries and the per-attempt
	// Timeout in seconds.
	Port            int
	Path, Contains  string
	Status, Retries int
	Timeout         string
	// JSON says what the check asserts of a JSON field, which curl
	// cannot judge (`json field status = "ok"`); "" when nothing.
	JSON string
	// Fail, when set, fails the check without running it, with this
	// detail: testAll's verdict on an http check of a service the
	// environment does not publish.
	Fail string
	// Once marks the container check of a one-shot job: it passes once
	// the job exited 0.
	Once bool
}

// scriptLabels are the Docker labels the scripts find things by.
type scriptLabels struct {
	ComposeProject, ComposeService, ComposeNetwork, ComposeOneOff string
	ContextHash, Probe, StackNamespace                            string
}

type scriptView struct {
	Header []string
	// DollarVar is DollarVar: deploy-all.sh unsets it, so that compose
	// takes its value from .env.
	DollarVar   string
	Project     string
	Environment string
	Host        string
	Timeout     int
	Build       bool
	// Swarm: the environment runs as a swarm stack, whose services
	// test-all.sh checks instead of compose containers.
	Swarm    bool
	Services []scriptSvc
	// Groups are the indexes in Services of each start group
	// (catalog.StartGroups): deploy-all.sh starts a group once the ones
	// before it are healthy.
	Groups [][]int
	Builds []scriptBuild
	Checks []scriptCheck
	// Network is the catalog's network name: the stack network is the
	// one compose labels with it, else "<project>_<Network>".
	Network string
	// HTTPSpecs and NetworkSpecs are the probe's specs (a JSON array of
	// probe.Spec, each ID the check's index in Checks) of the http and
	// the network checks; "" when there are none. An http URL holds
	// HostPlaceholder where test-all.sh puts DEPLOY_HOST once it has
	// checked it.
	HTTPSpecs, NetworkSpecs string
	HostPlaceholder         string
	// HTTPBound and NetworkBound are how long, in seconds, a probe run
	// of those specs may take in all: its slowest check with every
	// attempt timing out, plus a minute for the container.
	HTTPBound, NetworkBound int
	ProbeRepo               string
	Labels                  scriptLabels
}

// hostPlaceholder stands for the host in the URLs of test-all.sh's http
// specs. It cannot occur anywhere else in them: json.Marshal writes '<'
// as \u003c in every string it encodes, so no catalog value puts one there.
const hostPlaceholder = "<host>"

func (r *renderer) scriptView(all []*svcView) (scriptView, error) {
	host := r.env.Bind
	switch host {
	case "", "0.0.0.0", "::":
		host = "127.0.0.1"
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	sv := scriptView{Header: r.header, DollarVar: DollarVar, Project: r.cat.Project.Name, Environment: r.env.Name, Host: host, Build: r.opts.Build,
		Timeout: max(int(r.env.HealthDeadline().Seconds()), 1), Network: r.cat.Project.Network,
		HostPlaceholder: hostPlaceholder, ProbeRepo: probe.ImageRepo,
		Labels: scriptLabels{ComposeProject: labels.ComposeProject, ComposeService: labels.ComposeService,
			ComposeNetwork: labels.ComposeNetwork, ComposeOneOff: labels.ComposeOneOff,
			ContextHash: labels.ContextHash, Probe: labels.Probe, StackNamespace: labels.StackNamespace},
		Swarm: r.env.Kind().Stack}
	var httpSpecs, netSpecs []probe.Spec
	for _, v := range all {
		s := v.svc
		mode := "running"
		switch {
		case len(s.Healthcheck) > 0:
			mode = "container"
		case v.hostPort != 0:
			mode = "http"
		}
		health := s.Health
		if health == "" {
			health = "/health"
		}
		sv.Services = append(sv.Services, scriptSvc{Name: s.Name, Mode: mode, Port: v.hostPort, Path: health})
		if v.Build != nil {
			b := scriptBuild{Service: s.Name, Image: v.Image}
			if len(s.Prebuild) > 0 {
				pv := &prebuildView{Dir: s.Source, Program: s.Prebuild[0], Args: s.Prebuild}
				for _, k := range slices.Sorted(maps.Keys(s.PrebuildEnv)) {
					pv.Env = append(pv.Env, k+"="+s.PrebuildEnv[k])
				}
				b.Prebuild = pv
			}
			sv.Builds = append(sv.Builds, b)
		}

		// The checks of testAll (check.plan and check.checkJob), the same
		// specs for the same probe.
		oneShot := r.cat.OneShot(s.Name)
		sv.Checks = append(sv.Checks, scriptCheck{Service: s.Name, Name: "container", Kind: "container", Once: oneShot})
		checks := s.Checks
		hasHTTP := slices.ContainsFunc(s.Checks, func(c *catalog.Check) bool { return c.Kind == catalog.CheckHTTP })
		if !s.Infra && !hasHTTP && !oneShot {
			checks = append([]*catalog.Check{s.ImplicitHealthCheck(v.hostPort != 0)}, checks...)
		}
		for _, c := range checks {
			id := strconv.Itoa(len(sv.Checks))
			spec := probe.Spec{ID: id, Status: c.Status, Contains: c.Contains,
				JSONField: c.JSONField, JSONEquals: c.JSONEquals,
				TimeoutMS: c.Timeout.Milliseconds(), Retries: c.Retries}
			sc := scriptCheck{Service: s.Name, Name: c.Name, Kind: c.Kind}
			switch {
			case c.Kind == catalog.CheckNetwork:
				spec.URL = "http://" + net.JoinHostPort(s.Name, strconv.Itoa(s.Port)) + c.Path
				netSpecs = append(netSpecs, spec)
			case v.hostPort == 0:
				sc.Fail = fmt.Sprintf("not published in environment %s (no %s port): use kind = \"network\"", r.env.Name, r.env.Ports)
			default:
				// The host goes in by test-all.sh: see hostPlaceholder.
				spec.URL = "http://:" + strconv.Itoa(v.hostPort) + c.Path
				httpSpecs = append(httpSpecs, spec)
				sc.Port, sc.Path, sc.Contains = v.hostPort, c.Path, c.Contains
				sc.Status, sc.Retries, sc.Timeout = c.Status, max(c.Retries, 0), seconds(c.Timeout)
				if sc.Status == 0 {
					sc.Status = 200
				}
				if c.JSONField != "" {
					sc.JSON = fmt.Sprintf("json field %s = %q", c.JSONField, c.JSONEquals)
				}
			}
			sv.Checks = append(sv.Checks, sc)
		}
	}
	var err error
	if sv.HTTPSpecs, err = specsJSON(httpSpecs, true); err != nil {
		return sv, err
	}
	if sv.NetworkSpecs, err = specsJSON(netSpecs, false); err != nil {
		return sv, err
	}
	sv.HTTPBound, sv.NetworkBound = probeBound(httpSpecs), probeBound(netSpecs)
	index := map[string]int{}
	names := make([]string, len(sv.Services))
	for i, s := range sv.Services {
		index[s.Name], names[i] = i, s.Name
	}
	for _, g := range catalog.StartGroups(names, func(name string) []string {
		s, _ := r.cat.Service(name)
		return s.DependsOn
	}) {
		var ids []int
		for _, n := range g {
			ids = append(ids, index[n])
		}
		sv.Groups = append(sv.Groups, ids)
	}
	return sv, nil
}

// specsJSON writes specs as the probe reads them, "" when there are none.
// With host, each URL, "http://:<port><path>", gets hostPlaceholder as
// its host.
func specsJSON(specs []probe.Spec, host bool) (string, error) {
	if len(specs) == 0 {
		return "", nil
	}
	var b strings.Builder
	b.WriteByte('[')
	for i, s := range specs {
		j, err := json.Marshal(s)
		if err != nil {
			return "", fmt.Errorf("probe spec of check %s: %w", s.ID, err)
		}
		if host {
			// ID and URL are the first fields; the ID is digits.
			prefix := `{"id":"` + s.ID + `","url":"http://`
			if !strings.HasPrefix(string(j), prefix) {
				return "", fmt.Errorf("probe spec of check %s: unexpected JSON %s", s.ID, j)
			}
			j = []byte(prefix + hostPlaceholder + string(j[len(prefix):]))
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(j)
	}
	b.WriteByte(']')
	return b.String(), nil
}

// probeBound is how long a probe run of specs may take, in whole seconds:
// the checks run all at once, so the slowest with every attempt timing
// out and every backoff waited (as check bounds its own probe runs), and a
// minute for starting and removing the container.
func probeBound(specs []probe.Spec) int {
	var longest time.Duration
	for _, s := range specs {
		longest = max(longest, s.WorstCase())
	}
	return int(math.Ceil((longest + time.Minute).Seconds()))
}

// seconds is a check's timeout as curl takes it: the probe's default when
// the catalog sets none.
func seconds(d interface{ Seconds() float64 }) string {
	s := d.Seconds()
	if s <= 0 {
		s = probe.DefaultTimeout.Seconds()
	}
	return strconv.FormatFloat(s, 'f', -1, 64)
}
