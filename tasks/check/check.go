// Package check runs testAll: every service's container state, its HTTP
// health and the catalog's declared checks, all at once, and reports the
// results as a coloured table, JUnit XML and JSON.
//
// Three kinds of check run:
//
//   - "container": the service's containers exist, run and, when the image
//     or compose file declares a healthcheck, are healthy (implicit, every
//     service).
//   - "http": a GET from here to the service's published port on
//     Target.HostAddr (declared, and implicit on the health path for an
//     application service that declares no http check).
//   - "network": a GET from inside the stack's network to the service by
//     its DNS name and container port, made by a probe container (see
//     EnsureProbe; kept running between runs with Target.ReuseProbe):
//     what another service sees. An application service
//     whose health would be an http check but that is not published in
//     the environment gets its implicit health check this way.
package check

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/check/probe"
	"github.com/maestro-platform/deploy/tasks/health"
	"github.com/maestro-platform/deploy/tasks/ui"
	"github.com/moby/moby/client"
)

// KindContainer is the kind of the implicit container-state check.
const KindContainer = "container"

// Target says where the stack under test runs.
type Target struct {
	// Env is the catalog environment: its port column decides the host
	// ports of http checks, its name goes into the report.
	Env *catalog.Environment
	// Project is the compose project (or swarm stack) name; containers are
	// found by the com.docker.compose.project label, or for a stack by
	// com.docker.stack.namespace.
	Project string
	// Network is the Docker network the probe joins. Empty: found with
	// ProjectNetwork (compose v1 and v2 name it "<project>_<network>").
	Network string
	// HostAddr is where published ports are reached from here
	// (default "127.0.0.1").
	HostAddr string
	// API is the engine the stack runs on (local, or remote over ssh). It
	// may be nil only with Options.DeclaredOnly and no network checks.
	API *client.Client
	// Health observes the services as their runtime runs them
	// (runtime.Runtime.Health): the tasks of a swarm stack on every node.
	// Nil: the compose containers of Project on API.
	Health health.Source
	// ReuseProbe keeps the network probe running between runs, a probe
	// container of the project (see RemoveProbe) instead of the second a
	// one-shot probe container costs. On a local engine (see LocalEngine)
	// it is a server published on 127.0.0.1 of this machine on a port the
	// engine picks, answering in a few milliseconds; on a remote one
	// nothing is published: the checks are exec'd in an idle probe
	// container. Either exits after ProbeIdle without use.
	ReuseProbe bool
}

// Result is the outcome of one check.
type Result struct {
	Service string
	Check   string
	// Kind is "container", "http" or "network".
	Kind string
	OK   bool
	// Status is the HTTP status of the last attempt (0 for container
	// checks and when nothing answered).
	Status int
	// Latency of the last attempt.
	Latency time.Duration
	// Attempts made (1 + retries used).
	Attempts int
	// Detail says what failed ("status 500 (want 200)", "timeout after
	// 2s", "connection refused") or, for a container, its state. Secrets
	// are redacted.
	Detail string
	// Units are the containers (or tasks) a container check looked at
	// last, as the engine described them: testAll records what it checked
	// from them (not in the reports).
	Units []health.Unit
}

// Report is the outcome of a Run.
type Report struct {
	Project, Environment string
	Started              time.Time
	Duration             time.Duration
	// Results in catalog order: per service, container first, then the
	// implicit health check, then declared checks in file order.
	Results        []Result
	Passed, Failed int
}

// Options tune a Run; the zero value works.
type Options struct {
	// Printer, when set, gets a header as the run starts and the results
	// table (Report.Print) when it ends.
	Printer *ui.Printer
	// Secrets are values redacted from every Detail and from the error, on
	// top of the catalog's own secrets (see Secrets).
	Secrets []string
	// Parallel bounds the http checks made at once from here (default 64;
	// the network probe runs its checks all at once, container checks are
	// a handful of API calls).
	Parallel int
	// DeclaredOnly runs only the catalog's declared checks: no container
	// checks and no implicit health checks.
	DeclaredOnly bool
}

// job is one planned check.
type job struct {
	idx     int
	service *catalog.Service
	name    string
	kind    string
	spec    probe.Spec // http and network
	skip    string     // non-empty: fails without running, with this detail
	oneShot bool       // container: the service runs once (catalog.Catalog.OneShot)
}

// Run performs every check of cat against the stack described by t, all
// concurrently, and returns the report. The error is non-nil when a check
// failed (it names every failed check) or when the checks could not run at
// all (then the report is nil).
func Run(ctx context.Context, cat *catalog.Catalog, t Target, opts Options) (*Report, error) {
	if cat == nil || t.Env == nil {
		return nil, errors.New("testAll: no catalog or environment given")
	}
	if t.Project == "" {
		t.Project = cat.Project.Name
	}
	if t.HostAddr == "" {
		t.HostAddr = "127.0.0.1"
	}
	if opts.Parallel <= 0 {
		opts.Parallel = 64
	}
	red := newRedactor(append(Secrets(cat), opts.Secrets...))
	jobs := plan(cat, t, opts)
	rep := &Report{Project: t.Project, Environment: t.Env.Name, Started: time.Now()}
	if opts.Printer != nil {
		opts.Printer.Header("testAll: %d checks on %s (%s)", len(jobs), t.Project, t.Env.Name)
	}
	results := make([]Result, len(jobs))
	for i, j := range jobs {
		results[i] = Result{Service: j.service.Name, Check: j.name, Kind: j.kind}
	}

	var byKind = map[string][]*job{}
	for _, j := range jobs {
		if j.skip != "" {
			results[j.idx].Detail = j.skip
			continue
		}
		byKind[j.kind] = append(byKind[j.kind], j)
	}
	if t.API == nil && (len(byKind[KindContainer]) > 0 || len(byKind[catalog.CheckNetwork]) > 0) {
		return nil, errors.New("testAll: container and network checks need a Docker engine (Target.API is nil)")
	}

	var wg sync.WaitGroup
	if js := byKind[catalog.CheckHTTP]; len(js) > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runHTTP(ctx, js, results, opts.Parallel)
		}()
	}
	if js := byKind[catalog.CheckNetwork]; len(js) > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runNetwork(ctx, cat, t, js, results, opts.Printer)
		}()
	}
	if js := byKind[KindContainer]; len(js) > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runContainers(ctx, t, js, results)
		}()
	}
	wg.Wait()

	var failed []string
	for i := range results {
		// Details quote what services and hosts answered: no escape sequence of
		// theirs reaches the terminal, no secret the output.
		results[i].Detail = ui.Shorten(red.redact(ui.Clean(results[i].Detail)), 240)
		if results[i].OK {
			rep.Passed++
			continue
		}
		rep.Failed++
		failed = append(failed, results[i].Service+"/"+results[i].Check)
	}
	rep.Results = results
	rep.Duration = time.Since(rep.Started)
	if opts.Printer != nil {
		rep.Print(opts.Printer)
	}
	if len(failed) > 0 {
		// The table above has the details; the error only names them.
		return rep, fmt.Errorf("testAll: %d of %d checks failed: %s (details in the table above and in the reports)", rep.Failed, len(results), strings.Join(failed, ", "))
	}
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("testAll: %w", err)
	}
	return rep, nil
}

// plan lists the checks of every service in report order.
func plan(cat *catalog.Catalog, t Target, opts Options) []*job {
	var jobs []*job
	add := func(j *job) {
		j.idx = len(jobs)
		jobs = append(jobs, j)
	}
	for _, s := range cat.All() {
		if !opts.DeclaredOnly {
			oneShot := cat.OneShot(s.Name)
			add(&job{service: s, name: "container", kind: KindContainer, oneShot: oneShot})
			hasHTTP := false
			for _, c := range s.Checks {
				hasHTTP = hasHTTP || c.Kind == catalog.CheckHTTP
			}
			// Infrastructure may be a database with no HTTP at all: its
			// container state (and healthcheck) is its health.
			// A one-shot has exited: its container check says it completed.
			if !s.Infra && !hasHTTP && !oneShot {
				_, published := s.HostPort(t.Env.Ports)
				add(checkJob(s, s.ImplicitHealthCheck(published), t))
			}
		}
		for _, c := range s.Checks {
			add(checkJob(s, c, t))
		}
	}
	return jobs
}

func checkJob(s *catalog.Service, c *catalog.Check, t Target) *job {
	j := &job{service: s, name: c.Name, kind: c.Kind}
	j.spec = probe.Spec{Status: c.Status, Contains: c.Contains,
		JSONField: c.JSONField, JSONEquals: c.JSONEquals,
		TimeoutMS: c.Timeout.Milliseconds(), Retries: c.Retries}
	switch c.Kind {
	case catalog.CheckNetwork:
		j.spec.URL = "http://" + net.JoinHostPort(s.Name, strconv.Itoa(s.Port)) + c.Path
	default:
		port, ok := s.HostPort(t.Env.Ports)
		if !ok {
			j.skip = fmt.Sprintf("not published in environment %s (no %s port): use kind = \"network\"", t.Env.Name, t.Env.Ports)
			return j
		}
		j.spec.URL = "http://" + net.JoinHostPort(t.HostAddr, strconv.Itoa(port)) + c.Path
	}
	return j
}

// runHTTP performs the host-side checks, at most parallel at once.
func runHTTP(ctx context.Context, jobs []*job, results []Result, parallel int) {
	c := probe.Client()
	defer c.CloseIdleConnections()
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				results[j.idx].Detail = "cancelled: " + ctx.Err().Error()
				return
			}
			defer func() { <-sem }()
			setOutcome(&results[j.idx], probe.Do(ctx, c, j.spec))
		}()
	}
	wg.Wait()
}

func setOutcome(r *Result, o probe.Outcome) {
	r.OK, r.Status, r.Latency, r.Attempts, r.Detail = o.OK, o.Status, o.Latency(), o.Attempts, o.Detail
}

// Secrets returns every secret value of the catalog, longest first, for
// redaction: the values Secrets holds (resolved for an environment by
// package secrets) and the catalog's dev defaults, which a remote
// environment does not use but which are no more to be printed than the
// values they stand in for.
func Secrets(cat *catalog.Catalog) []string {
	var out []string
	for _, s := range cat.All() {
		for _, m := range []map[string]string{s.Secrets, s.SecretDefaults} {
			for _, v := range m {
				if v != "" {
					out = append(out, v)
				}
			}
		}
	}
	sortLongestFirst(out)
	return out
}

func sortLongestFirst(v []string) {
	sort.SliceStable(v, func(i, j int) bool { return len(v[i]) > len(v[j]) })
}

// redactor replaces secret values with "***".
type redactor struct{ r *strings.Replacer }

func newRedactor(secrets []string) redactor {
	seen := map[string]bool{}
	var vals []string
	for _, s := range secrets {
		// Details show bodies with runs of white space folded and JSON
		// strings still escaped: hide those spellings too.
		quoted, _ := json.Marshal(s)
		for _, v := range []string{s, strings.Join(strings.Fields(s), " "), strings.Trim(string(quoted), `"`)} {
			if v != "" && !seen[v] {
				seen[v] = true
				vals = append(vals, v)
			}
		}
	}
	// Longest first, so a secret that contains another is hidden whole.
	sortLongestFirst(vals)
	var pairs []string
	for _, s := range vals {
		pairs = append(pairs, s, "***")
	}
	return redactor{strings.NewReplacer(pairs...)}
}

func (r redactor) redact(s string) string { return r.r.Replace(s) }

// Redactor returns what hides every secret value of the catalog, and the
// extra ones, from a text: "***" in their place, however the text spells
// them (folded white space, JSON escapes).
func Redactor(cat *catalog.Catalog, extra ...string) func(string) string {
	return newRedactor(append(Secrets(cat), extra...)).redact
}
