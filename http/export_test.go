package http

// Seams for the external tests of package http_test (compiled with them
// only, never into the server).

// HoldVerification marks workspace ws's audit log as being verified, as a
// "Verify now" still running on this node does, until release is called. A
// real verification is too quick to catch in flight, so the console's "one
// at a time" answer can only be reached this way.
func (s *Server) HoldVerification(ws int64) (release func()) {
	s.verifying.Store(ws, true)
	return func() { s.verifying.Delete(ws) }
}

// Verifying reports whether workspace ws is marked as being verified.
func (s *Server) Verifying(ws int64) bool {
	_, ok := s.verifying.Load(ws)
	return ok
}
