package projection

import "context"

// CachedProfiles is how many profile states the service holds in memory (for
// the scenario tests' cold mode).
func (s *Service) CachedProfiles() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.cache)
}

// FlushStep runs one step of Flush: one transaction of the current sweep (the
// tests' way to see the watermark mid-sweep).
func (s *Service) FlushStep(ctx context.Context, all bool) (int, bool, error) {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	return s.flushOnce(ctx, all)
}

// HeldEvents is how many events a profile's state in memory holds unapplied
// (see "Held events"); 0 when it is not in memory.
func (s *Service) HeldEvents(id int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.cache[id]; st != nil {
		return st.npend
	}
	return 0
}
