package projection

// CachedProfiles is how many profile states the service holds in memory (for
// the scenario tests' cold mode).
func (s *Service) CachedProfiles() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.cache)
}
