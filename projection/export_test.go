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
