package stack

import (
	"sync"
	"time"

	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/runtime"
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

func (s *sessionState) times(service string) (build, healthy time.Duration, cached, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, okb := s.builds[service]
	okw := false
	if s.up != nil {
		for _, c := range s.up.Changes {
			if c.Service == service {
				healthy, okw = c.Healthy, true
			}
		}
	}
	return b.Duration, healthy, b.Cached, okb || okw
}
