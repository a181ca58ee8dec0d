package stack

import (
	"sync"
	"time"

	"github.com/maestro-platform/deploy/tasks/engine"
	"github.com/maestro-platform/deploy/tasks/health"
)

// session collects what the steps of one mage run learned, so that
// deployAll's closing table can show build and start times: each step is a
// separate target that opens its own Stack.
var session = &sessionState{builds: map[string]engine.BuildResult{}, waits: map[string]health.Result{}}

type sessionState struct {
	mu     sync.Mutex
	builds map[string]engine.BuildResult
	waits  map[string]health.Result
	noop   bool
}

func (s *sessionState) recordBuild(r engine.BuildResult) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.builds[r.Service] = r
}

func (s *sessionState) recordWaits(rs []health.Result, noop bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range rs {
		s.waits[r.Service] = r
	}
	s.noop = noop
}

func (s *sessionState) times(service string) (build, healthy time.Duration, cached, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, okb := s.builds[service]
	w, okw := s.waits[service]
	return b.Duration, w.After, b.Cached, okb || okw
}
