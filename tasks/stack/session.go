package stack

import (
	"strings"
	"sync"

	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/runtime"
	"github.com/maestro-platform/deploy/tasks/ui"
)

// session collects what the steps of one mage run learned, so that
// deployAll's closing table can show build and start times: each step is a
// separate target that opens its own Stack.
var session = &sessionState{builds: map[string]engine.BuildResult{}}

type sessionState struct {
	mu     sync.Mutex
	builds map[string]engine.BuildResult
	up     *runtime.Plan
	noop   bool
}

func (s *sessionState) recordBuild(r engine.BuildResult) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.builds[r.Service] = r
}

func (s *sessionState) recordUp(p *runtime.Plan, noop bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.up, s.noop = p, noop
}

// happened says what this run did to a service: its build, and what up
// changed and when it was healthy.
func (s *sessionState) happened(service string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var parts []string
	if b, ok := s.builds[service]; ok && !b.Cached {
		parts = append(parts, "built in "+ui.Seconds(b.Duration))
	}
	switch {
	case s.noop:
		parts = append(parts, "unchanged")
	case s.up != nil:
		for _, c := range s.up.Changes {
			if c.Service != service {
				continue
			}
			parts = append(parts, c.Describe())
			if c.Action != runtime.Keep && c.Healthy > 0 {
				parts = append(parts, "healthy after "+ui.Seconds(c.Healthy))
			}
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}
