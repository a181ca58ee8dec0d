// Package health decides whether the services of a stack are healthy and
// waits until they are: one judgement for every place that asks (up on
// dev, promotion's start and swap of each service, swarm stacks, and
// testAll's container checks), whatever runs the containers.
//
// A Source says what runs: for each service its units (a compose
// container, a swarm task) with their state and health. Judge turns one
// observation into a verdict; Wait observes until every target is healthy,
// one fails for good, or the deadline passes, and then names each failing
// service with its state, its last health output and the end of its log.
package health

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"strconv"
	"strings"
	"time"

	"github.com/maestro-platform/deploy/tasks/catalog"
	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/ui"
)

// Unit is one container or task of a service, as a Source sees it.
type Unit struct {
	// ID is the container (or task) ID.
	ID string
	// Running is true once the unit runs (for a swarm task with a
	// healthcheck: once swarm counts it running).
	Running bool
	// Health is "", "starting", "healthy" or "unhealthy".
	Health string
	// Fatal, when set, says why the unit will not become healthy without a
	// new deployment: "exited (exit code 2)", "restarting (...)",
	// "unhealthy (healthcheck: ...)", "update rolled back: ...".
	Fatal string
	// State describes the unit now, for messages ("running", "created",
	// "health starting", "pending: no suitable node ...").
	State string
	// HealthOutput is the last output of its healthcheck, if any.
	HealthOutput string
	// Completed is true for a unit that exited with status 0: the success
	// of a one-shot service (Observation.OneShot), a failure otherwise.
	Completed bool
	// ImageID and ConfigHash are what the engine says the container runs:
	// its image ID (empty for a swarm task) and its config-hash label.
	// testAll records them, so that promote ships what was checked.
	ImageID, ConfigHash string
	// Image is the reference it runs, Node the swarm node it runs on ("" for
	// a container of one engine), Since when it started running (zero when
	// it does not run): for status tables.
	Image, Node string
	Since       time.Time
}

// Observation is what a Source saw of one service.
type Observation struct {
	Units []Unit
	// Want is how many healthy units make the service healthy (1 unless
	// the source knows better, e.g. a swarm service's replicas).
	Want int
	// Problem is a fact about the service itself that keeps it from being
	// healthy ("no such service yet", "update paused: ...").
	Problem string
	// Fatal, when set, fails the service at once (a swarm update that
	// rolled back).
	Fatal string
	// OneShot is true for a service that runs once (a dependant waits for
	// it to complete): healthy once its units exited with status 0.
	OneShot bool
}

// Source observes the services of one stack.
type Source interface {
	// Observe returns an observation per service name; a service without
	// any unit may be missing from the map.
	Observe(ctx context.Context) (map[string]Observation, error)
	// Logs writes the last n lines of a unit's output to w.
	Logs(ctx context.Context, unitID string, n int, w io.Writer) error
	// Where names the engine or stack in messages.
	Where() string
}

// Target is a service to wait for.
type Target struct {
	Service string
	// DependsOn names the services it waits for: one that never started
	// because of a failing dependency is reported as waiting for it.
	DependsOn []string
	// URL, when set, must answer a GET with a 2xx status once the units
	// run: the health of a service without a healthcheck of its own,
	// probed on its published port.
	URL string
	// OneShot: the service runs once; healthy once it completed.
	OneShot bool
}

// Targets are the catalog's services to wait for in env: a service
// without a healthcheck of its own is probed over HTTP on its published
// port at host, when it has one.
func Targets(cat *catalog.Catalog, env *catalog.Environment, host string) []Target {
	var out []Target
	for _, s := range cat.All() {
		t := Target{Service: s.Name, OneShot: cat.OneShot(s.Name)}
		if port, ok := s.HostPort(env.Ports); ok && len(s.Healthcheck) == 0 && !t.OneShot {
			path := s.Health
			if !strings.HasPrefix(path, "/") {
				path = "/" + path
			}
			t.URL = "http://" + net.JoinHostPort(host, strconv.Itoa(port)) + path
		}
		out = append(out, t)
	}
	return out
}

// Verdict is the judgement of one observation of a service.
type Verdict struct {
	Healthy bool
	// Fatal is set when the service failed for good.
	Fatal string
	// State says where the service stands, for messages.
	State string
	// Unit is the unit the verdict is about (the failing one, or the
	// last), for its log.
	Unit string
	// HealthOutput is that unit's last healthcheck output.
	HealthOutput string
	// NeedsURL is true when the units run without a healthcheck, so that
	// a URL probe decides.
	NeedsURL bool
	// Started is true once a unit ran (it may have exited since): a
	// service that never started may be waiting for a dependency.
	Started bool
}

// Judge is the one judgement of a service: every unit must run and, with a
// healthcheck, be healthy, and there must be Want of them; a unit that
// exited, restarts or is unhealthy fails the service at once.
func Judge(o Observation) Verdict {
	want := max(o.Want, 1)
	if o.Fatal != "" {
		return Verdict{Fatal: o.Fatal, State: o.Fatal}
	}
	if len(o.Units) == 0 {
		st := "no container"
		if o.Problem != "" {
			st = o.Problem
		}
		return Verdict{State: st}
	}
	started := false
	for _, u := range o.Units {
		started = started || u.Running || u.Fatal != ""
	}
	if o.OneShot {
		return judgeOneShot(o)
	}
	v := judgeUnits(o, want)
	v.Started = started
	return v
}

// judgeOneShot: every unit exited with status 0; one that runs is not
// done yet; any other end is fatal.
func judgeOneShot(o Observation) Verdict {
	for _, u := range o.Units {
		switch {
		case u.Completed:
		case u.Running:
			return Verdict{State: "running (runs once: waiting for it to complete)", Unit: u.ID, Started: true}
		case u.Fatal != "":
			return Verdict{Fatal: u.Fatal, State: u.Fatal, Unit: u.ID, HealthOutput: u.HealthOutput, Started: true}
		default:
			return Verdict{State: u.State, Unit: u.ID}
		}
	}
	last := o.Units[len(o.Units)-1]
	return Verdict{Healthy: true, State: "completed (exit code 0)", Unit: last.ID, Started: true}
}

func judgeUnits(o Observation, want int) Verdict {
	healthy, ownHealth := 0, false
	var waiting *Unit
	for i := range o.Units {
		u := &o.Units[i]
		if u.Fatal != "" {
			return Verdict{Fatal: u.Fatal, State: u.Fatal, Unit: u.ID, HealthOutput: u.HealthOutput}
		}
		switch {
		case !u.Running:
		case u.Health == "healthy":
			healthy++
			ownHealth = true
		case u.Health == "":
			healthy++
		}
		if (!u.Running || u.Health != "" && u.Health != "healthy") && waiting == nil {
			waiting = u
		}
	}
	last := o.Units[len(o.Units)-1]
	switch {
	case waiting != nil:
		st := waiting.State
		if o.Problem != "" {
			st += "; " + o.Problem
		}
		return Verdict{State: st, Unit: waiting.ID, HealthOutput: waiting.HealthOutput}
	case healthy < want:
		st := fmt.Sprintf("%d/%d running", healthy, want)
		if o.Problem != "" {
			st += "; " + o.Problem
		}
		return Verdict{State: st, Unit: last.ID}
	case o.Problem != "":
		return Verdict{State: o.Problem, Unit: last.ID}
	}
	st := "running"
	if ownHealth {
		st = "healthy"
	}
	if want > 1 {
		st = fmt.Sprintf("%d/%d running and healthy", healthy, want)
	}
	return Verdict{Healthy: true, State: st, Unit: last.ID, NeedsURL: !ownHealth}
}

// Options tune Wait.
type Options struct {
	// Deadline bounds the wait; it must be positive.
	Deadline time.Duration
	// Printer gets a line per service as it becomes healthy or fails
	// (nil: silent).
	Printer *ui.Printer
	// Redact removes secret values from what Wait prints or returns of the
	// services' own output (log tails, health output).
	Redact func(string) string
	// Poll is the interval between observations (default 250ms).
	Poll time.Duration
	// Quiet leaves out the "waiting for" lines (and, on a terminal, the
	// live lines): the result lines only.
	Quiet bool
	// Live are live lines already shown for targets, by service (e.g.
	// "starting" during compose up): Wait carries them on, with the time
	// they already show, instead of starting new ones, and ends them.
	Live map[string]*ui.Activity
	// Settled, when set, receives the result of what starts the
	// containers (compose up) once it returns. Until then a container
	// that exited may be one compose is replacing, and a healthy one may
	// be about to be replaced, so no verdict is final. After an error,
	// nothing else will start: whatever is not healthy has failed, and a
	// service that never started is reported as waiting for its failed
	// dependencies (Target.DependsOn).
	Settled <-chan error
	// Since is when the work being waited for began (default: the start
	// of Wait): the times Wait prints and returns count from it, so that
	// they agree with what a caller reports of the whole step.
	Since time.Time
	// Seen, when set, gets each verdict on a target as it is made, final
	// or not, with when the observation it judges began (a verdict made
	// after something changed may be about what ran before): what starts
	// the containers in the order of their dependencies learns from it
	// when a dependency is ready, or failed.
	Seen func(service string, v Verdict, observed time.Time)
}

// settlement follows Options.Settled.
type settlement struct {
	c       <-chan error
	settled bool
	err     error
}

// poll takes in the result if it has come; nil means settled from the
// start.
func (s *settlement) poll() {
	if s.c == nil {
		s.settled = true
	}
	if s.settled {
		return
	}
	select {
	case s.err = <-s.c:
		s.settled = true
	default:
	}
}

// LogTail is how many log lines Wait's error carries per failing service.
const LogTail = 50

// Result is how a service ended up.
type Result struct {
	Service string
	// Unit is the container (or task) the result is about.
	Unit    string
	State   string
	Healthy bool
	// After is the time from the start of the wait (Options.Since) to
	// healthy (or failure).
	After time.Duration
	// Started is false for a service none of whose units ever ran.
	Started bool
}

// Wait observes src until every target is healthy, one fails for good, or
// the deadline passes. The error names each failing service, its state,
// its last health output and the last LogTail lines of its log.
func Wait(ctx context.Context, src Source, targets []Target, opts Options) ([]Result, error) {
	if opts.Deadline <= 0 {
		return nil, errors.New("wait healthy: no deadline given")
	}
	p := opts.Printer
	if p == nil {
		p = ui.Plain(io.Discard)
	}
	redact := opts.Redact
	if redact == nil {
		redact = func(s string) string { return s }
	}
	poll := opts.Poll
	if poll <= 0 {
		poll = 250 * time.Millisecond
	}
	t0 := opts.Since
	if t0.IsZero() {
		t0 = time.Now()
	}
	dctx, cancel := context.WithDeadline(ctx, t0.Add(opts.Deadline))
	defer cancel()
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}

	results := make([]Result, len(targets))
	verdicts := make([]Verdict, len(targets))
	done := make([]bool, len(targets))
	var failed []int
	// One live line per target: the state it is in as progress, its
	// result line at the end. Whatever ends the wait, none stays live.
	live := make([]*ui.Activity, len(targets))
	why := ""
	defer func() {
		for i, a := range live {
			if !done[i] && a != nil {
				a.Done(ui.Skip, "stopped waiting after %s%s; it was %s", ui.Seconds(time.Since(t0)), why, redact(ui.Clean(results[i].State)))
			}
		}
	}()
	for i, t := range targets {
		results[i] = Result{Service: t.Service, State: "no container"}
		if live[i] = opts.Live[t.Service]; live[i] == nil {
			live[i] = p.Activity(t.Service)
		}
		if !opts.Quiet {
			how := "it to be healthy"
			if t.URL != "" {
				how = "it to be healthy, then GET " + t.URL
			}
			live[i].Update("waiting for "+how, "")
		}
	}
	st := settlement{c: opts.Settled}
	// early holds, for a target seen healthy before the containers
	// settled, that unit and when: if the same unit is still healthy
	// afterwards, that was when it became so.
	early := make([]*Result, len(targets))
	for {
		st.poll()
		observed := time.Now()
		obs, err := src.Observe(dctx)
		if err != nil && dctx.Err() == nil {
			return results, fmt.Errorf("wait healthy on %s: %w", src.Where(), err)
		}
		pending := 0
		for i, t := range targets {
			if done[i] || dctx.Err() != nil {
				continue
			}
			o := obs[t.Service]
			o.OneShot = t.OneShot
			v := Judge(o)
			if v.Healthy && v.NeedsURL && t.URL != "" {
				if st, ok := probeURL(dctx, hc, t.URL); !ok {
					v = Verdict{State: st, Unit: v.Unit}
				}
			}
			verdicts[i] = v
			if opts.Seen != nil {
				opts.Seen(t.Service, v, observed)
			}
			results[i].State, results[i].Unit, results[i].After, results[i].Started = v.State, v.Unit, time.Since(t0), v.Started
			if v.Healthy && !st.settled && early[i] == nil {
				r := results[i]
				early[i] = &r
			}
			if v.Healthy && early[i] != nil && early[i].Unit == v.Unit {
				results[i].After = early[i].After
			}
			switch {
			case !st.settled && (v.Healthy || v.Fatal != ""):
				pending++
				live[i].Progress(redact(ui.Clean(v.State)))
			case v.Healthy:
				done[i], results[i].Healthy = true, true
				what := "healthy"
				if strings.Contains(v.State, "/") {
					what = v.State // replicas: "2/2 running and healthy"
				}
				live[i].Done(ui.OK, "%s after %s", what, ui.Seconds(results[i].After))
			case v.Fatal != "":
				done[i] = true
				failed = append(failed, i)
				live[i].Done(ui.Fail, "%s after %s", redact(ui.Clean(v.Fatal)), ui.Seconds(results[i].After))
			case st.err != nil:
				// Nothing else will start it: its state now is final.
				done[i] = true
				failed = append(failed, i)
				if !v.Started {
					verdicts[i].Fatal = "not started"
					live[i].Done(ui.Fail, "not started: %s", redact(ui.Clean(v.State)))
				} else {
					verdicts[i].Fatal = v.State
					live[i].Done(ui.Fail, "%s after %s", redact(ui.Clean(v.State)), ui.Seconds(results[i].After))
				}
			default:
				pending++
				live[i].Progress(redact(ui.Clean(v.State)))
			}
		}
		if ctx.Err() != nil {
			why = " (cancelled)"
			return results, fmt.Errorf("wait healthy: %w", ctx.Err())
		}
		if len(failed) > 0 || pending == 0 && dctx.Err() == nil {
			why = " because another service failed"
			break
		}
		if dctx.Err() != nil {
			for i := range targets {
				if !done[i] && verdicts[i].Healthy {
					// Seen healthy while compose still ran (waiting for
					// the one that is not): that stands.
					done[i], results[i].Healthy = true, true
					live[i].Done(ui.OK, "healthy after %s", ui.Seconds(results[i].After))
				}
				if !done[i] {
					done[i] = true
					failed = append(failed, i)
					live[i].Done(ui.Fail, "not healthy after %s: %s", opts.Deadline, redact(ui.Clean(results[i].State)))
				}
			}
			break
		}
		select {
		case <-dctx.Done():
		case <-time.After(poll):
		}
	}
	if len(failed) == 0 {
		return results, nil
	}
	return results, failure(ctx, src, targets, results, verdicts, failed, opts.Deadline, redact)
}

// probeURL GETs a health URL: ok on a 2xx answer, else what happened.
func probeURL(ctx context.Context, hc *http.Client, url string) (string, bool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err.Error(), false
	}
	resp, err := hc.Do(req)
	if err != nil {
		var ue *neturl.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		var oe *net.OpError
		if errors.As(err, &oe) {
			err = oe.Err
		}
		return "running, GET " + url + ": " + err.Error(), false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Sprintf("running, GET %s: %s", url, resp.Status), false
	}
	return "running", true
}

// failure names each failing service with its state, health output and
// log tail.
func failure(ctx context.Context, src Source, targets []Target, results []Result, verdicts []Verdict, failed []int, deadline time.Duration, redact func(string) string) error {
	var b strings.Builder
	failing := map[string]bool{}
	for _, f := range failed {
		failing[targets[f].Service] = true
	}
	// A service that never started because a dependency failed is a
	// consequence: the causes come first, the dependants after, saying
	// what they wait for.
	waitsFor := map[int][]string{}
	var causes, consequences []int
	for _, f := range failed {
		if !verdicts[f].Started {
			for _, d := range targets[f].DependsOn {
				if failing[d] {
					waitsFor[f] = append(waitsFor[f], d)
				}
			}
		}
		if len(waitsFor[f]) > 0 {
			consequences = append(consequences, f)
		} else {
			causes = append(causes, f)
		}
	}
	failed = append(causes, consequences...)
	names := make([]string, len(causes))
	for i, f := range causes {
		names[i] = targets[f].Service
	}
	fmt.Fprintf(&b, "not healthy: %s", strings.Join(names, ", "))
	for _, f := range failed {
		r, v := results[f], verdicts[f]
		if deps := waitsFor[f]; len(deps) > 0 {
			fmt.Fprintf(&b, "\n  %s: not started: it waits for %s", r.Service, strings.Join(deps, ", "))
			continue
		}
		fmt.Fprintf(&b, "\n  %s: %s", r.Service, redact(ui.Clean(r.State)))
		if v.Fatal == "" {
			fmt.Fprintf(&b, " (still not healthy when the %s deadline passed)", deadline)
		}
		if out := strings.TrimSpace(v.HealthOutput); out != "" && !strings.Contains(r.State, out) {
			fmt.Fprintf(&b, "\n    last healthcheck output: %s", strings.ReplaceAll(redact(ui.Clean(out)), "\n", "\n      "))
		}
		if r.Unit == "" {
			continue
		}
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		var logs bytes.Buffer
		err := src.Logs(lctx, r.Unit, LogTail, &limitWriter{w: &logs, n: 256 << 10})
		cancel()
		switch lines := ui.TailLines(redact(ui.Clean(logs.String())), LogTail); {
		case err != nil:
			fmt.Fprintf(&b, "\n    (no logs: %v)", err)
		case len(lines) == 0:
			b.WriteString("\n    (its log is empty)")
		default:
			fmt.Fprintf(&b, "\n    last %d log lines of %s:\n      %s", len(lines), engine.ShortID(r.Unit), strings.Join(lines, "\n      "))
		}
	}
	return errors.New(b.String())
}

// limitWriter keeps at most n bytes: a container's log can be huge, and a
// hostile one must not fill memory.
type limitWriter struct {
	w io.Writer
	n int
}

func (l *limitWriter) Write(b []byte) (int, error) {
	if l.n <= 0 {
		return len(b), nil
	}
	keep := b
	if len(keep) > l.n {
		keep = keep[:l.n]
	}
	l.n -= len(keep)
	if _, err := l.w.Write(keep); err != nil {
		return 0, err
	}
	return len(b), nil
}
