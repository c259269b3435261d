package http

import "net/http"

// consoleRoutes mounts the console's pages: the trust dashboard and customer
// pages (console_dashboard.go, console_customers.go) and the management pages
// (console_manage.go).
func (s *Server) consoleRoutes(mux *http.ServeMux, csrf *http.CrossOriginProtection) {
	s.dashboardRoutes(mux, csrf)
	s.customerRoutes(mux, csrf)
	s.manageRoutes(mux, csrf)
}
