package http

import (
	"context"
	"errors"
	"html/template"
	"math"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/trustloop/trustloop"
	"github.com/trustloop/trustloop/auditlog"
	"github.com/trustloop/trustloop/http/html"
)

// The trust dashboard (GET /admin): whether the business keeps its promise,
// in numbers. Opt-in rates per purpose, withdrawals, events collected and
// events dropped for lack of consent, privacy requests against their legal
// deadlines, and the audit log's latest signed checkpoint with a button that
// verifies the whole log. Every number is an aggregate over all customers:
// nothing on the page names anyone, so any signed-in role may see it and no
// read is recorded.

// dashDays is how many UTC days the charts cover, today included.
const dashDays = 30

func (s *Server) dashboardRoutes(mux *http.ServeMux, csrf *http.CrossOriginProtection) {
	mux.Handle("GET /admin", s.web("/admin", s.admin(s.dashboard)))
	mux.Handle("POST /admin/audit/verify", csrf.Handler(s.web("/admin/audit/verify", s.admin(s.dashboardVerify))))
}

type dashView struct {
	Days int
	// Counts is false when the server keeps no daily counts (Server.Counts
	// nil): the consent and event sections say so instead of charting.
	Counts      bool
	Rates       []dashRate
	Withdrawals int64
	Collected   int64
	Dropped     int64
	// The charts, rendered (inline SVG with their data tables).
	ConsentChart, WithdrawalChart, EventsChart template.HTML
	// Requests is nil when the server handles no privacy requests.
	Requests *dashRequests
	// Audit is nil when the server keeps no audit log.
	Audit *dashAudit
	// Verify is the result of "Verify now", on the page its post answers;
	// CanVerify offers the button (admins and privacy staff).
	Verify    *dashVerify
	CanVerify bool
	// ProfilesOff: the server keeps no profiles, so there is no customer to
	// look up and no preference center (said at the top).
	ProfilesOff bool
}

// dashRate is one optional purpose's opt-in rate over the whole window.
type dashRate struct {
	ID, Title      string
	Given, Choices int
}

// dayTally is one purpose's choices of one day.
type dayTally struct{ given, choices int64 }

type dashRequests struct {
	Total, Open, Overdue, DueSoon, Later, Closed int
	StatusChart, DeadlineChart                   template.HTML
}

type dashAudit struct {
	// Size is the tree size the checkpoint signs; SizeLine the note's own
	// line for it.
	Size        int64
	SizeLine    string
	Note        string
	VerifierKey string
	// Error, when the checkpoint could not be had, says why (the section
	// still offers Verify now, which names a damaged entry).
	Error string
}

type dashVerify struct {
	OK bool
	// Checked is how many entries were checked against the signed tree
	// (on failure: how many before the first bad one are proven good).
	Checked int64
	Tree    int64
	Hash    string
	// Uncovered counts entries appended after the checkpoint.
	Uncovered int64
	// BadEntry is the first bad entry's index; -1 when the checkpoint
	// itself is what is wrong.
	BadEntry int64
	Problem  string
}

func (s *Server) dashboard(w http.ResponseWriter, r *http.Request, a *adminSession) error {
	return s.dashboardPage(w, r, a, nil)
}

// dashboardVerify runs a real verification of the workspace's audit log and
// answers with the dashboard showing its result (rendered directly: the
// result is no resource to redirect to, and a reload only verifies again).
func (s *Server) dashboardVerify(w http.ResponseWriter, r *http.Request, a *adminSession) error {
	if err := parseForm(w, r); err != nil {
		return err
	}
	// It reads and hashes the whole log: for admins and privacy staff, one
	// at a time per workspace on this node.
	if err := a.require(trustloop.RoleAdmin, trustloop.RolePrivacy); err != nil {
		return err
	}
	if s.Audit == nil {
		return trustloop.Errorf(trustloop.EUNAVAILABLE, "This server keeps no audit log to verify.").
			WithHint("This server was started without its audit log; verify the log with trustloop audit verify --data-dir.")
	}
	if _, busy := s.verifying.LoadOrStore(a.key.WorkspaceID, true); busy {
		return &trustloop.Error{Code: trustloop.ERATELIMITED, Message: "The audit log is being verified already.",
			Hint: "Wait for that verification to finish, then try again.", RetryAfterSeconds: 10}
	}
	defer s.verifying.Delete(a.key.WorkspaceID)
	res, err := s.verifyAuditLog(r.Context(), a.key.WorkspaceID)
	if err != nil {
		return err
	}
	return s.dashboardPage(w, r, a, res)
}

func (s *Server) dashboardPage(w http.ResponseWriter, r *http.Request, a *adminSession, verified *dashVerify) error {
	ctx, ws := r.Context(), a.key.WorkspaceID
	now := s.now()
	since := trustloop.UTCDay(now).AddDate(0, 0, -(dashDays - 1))
	labels := make([]string, dashDays)
	for i := range labels {
		labels[i] = since.AddDate(0, 0, i).Format("2 Jan")
	}
	v := &dashView{Days: dashDays, Verify: verified, Counts: s.Counts != nil, CanVerify: a.has(trustloop.RoleAdmin, trustloop.RolePrivacy),
		ProfilesOff: s.Profiles == nil}
	if s.Counts != nil {
		if err := s.dashConsent(ctx, ws, since, labels, v); err != nil {
			return err
		}
		if err := s.dashEvents(ctx, ws, since, labels, v); err != nil {
			return err
		}
	}
	if s.Privacy != nil {
		req, err := s.dashRequests(ctx, ws)
		if err != nil {
			return err
		}
		v.Requests = req
	}
	if s.Audit != nil {
		v.Audit = s.dashAuditCheckpoint(ctx, ws)
	}
	return s.render(w, "admin_dashboard.html", a.page("admin.nav.dashboard", "dashboard", v))
}

// dashDay is the position of a UTC day in the window starting at since
// (negative before it). Both are UTC midnights, so the division is exact.
func dashDay(day, since time.Time) int {
	return int(trustloop.UTCDay(day).Sub(since) / (24 * time.Hour))
}

// dashConsent charts the consent rate of each optional purpose and the
// withdrawals, from the store's counts of consent records per day.
func (s *Server) dashConsent(ctx context.Context, ws int64, since time.Time, labels []string, v *dashView) error {
	// A year before the window too: a purpose without choices in the window's
	// first days carries the rate of its last earlier day with choices.
	rows, err := s.Counts.ConsentDaily(ctx, ws, since.AddDate(-1, 0, 0))
	if err != nil {
		return err
	}
	per := map[string]map[int]*dayTally{}
	withdrawals := make([]float64, dashDays)
	for _, d := range rows {
		i := dashDay(d.Day, since)
		if i >= dashDays {
			continue // a record dated after today (a clock ahead): not charted
		}
		t := per[d.Purpose][i]
		if t == nil {
			if per[d.Purpose] == nil {
				per[d.Purpose] = map[int]*dayTally{}
			}
			t = &dayTally{}
			per[d.Purpose][i] = t
		}
		switch d.State {
		case trustloop.ConsentGiven:
			t.given += d.N
			t.choices += d.N
		case trustloop.ConsentRefused, trustloop.ConsentWithdrawn:
			t.choices += d.N
		}
		if d.State == trustloop.ConsentWithdrawn && i >= 0 {
			withdrawals[i] += float64(d.N)
			v.Withdrawals += d.N
		}
	}
	purposes, err := s.dashPurposes(ctx, ws, per)
	if err != nil {
		return err
	}
	var series []html.Series
	for n, p := range purposes {
		days := per[p.ID]
		// The carried rate starts from the last earlier day with choices.
		// NaN draws no line: before a purpose's first choice there is no rate.
		carried, last := math.NaN(), -1<<31
		for i, t := range days {
			if i < 0 && i > last && t.choices > 0 {
				carried, last = 100*float64(t.given)/float64(t.choices), i
			}
		}
		vals := make([]float64, dashDays)
		for i := range vals {
			if t := days[i]; t != nil && t.choices > 0 {
				carried = 100 * float64(t.given) / float64(t.choices)
				p.Given += int(t.given)
				p.Choices += int(t.choices)
			}
			vals[i] = carried
		}
		v.Rates = append(v.Rates, p)
		series = append(series, html.Series{Name: p.Title, Values: vals, Class: dashSeriesClass(n)})
	}
	v.ConsentChart = (&html.Chart{ID: "chart-consent", Title: s.Pages.T("dash.chart.consent"), Labels: labels,
		Series: series, Max: 100, Unit: " %"}).SVG()
	v.WithdrawalChart = (&html.Chart{ID: "chart-withdrawals", Title: s.Pages.T("dash.chart.withdrawals"), Labels: labels,
		Series: []html.Series{{Name: s.Pages.T("dash.series.withdrawals"), Values: withdrawals, Class: "s3"}}, Bars: true}).SVG()
	return nil
}

// dashPurposes are the purposes a customer chooses: the catalog's optional
// ones in its order (without a catalog, those the counts name, essential
// left out).
func (s *Server) dashPurposes(ctx context.Context, ws int64, seen map[string]map[int]*dayTally) ([]dashRate, error) {
	var out []dashRate
	if s.Consent != nil {
		c, err := s.Consent.Catalog(ctx, ws)
		if err != nil {
			return nil, err
		}
		for i := range c.Len() {
			if !c.Contract().Has(i) {
				out = append(out, dashRate{ID: c.ID(i), Title: c.Catalog.Purposes[i].Title})
			}
		}
		return out, nil
	}
	for id := range seen {
		if id != trustloop.PurposeEssential {
			out = append(out, dashRate{ID: id, Title: id})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func dashSeriesClass(i int) string { return "s" + string(rune('1'+i%6)) }

// dashEvents charts the events collected and those dropped for lack of
// consent, per day.
func (s *Server) dashEvents(ctx context.Context, ws int64, since time.Time, labels []string, v *dashView) error {
	counts, err := s.Counts.DailyCounts(ctx, ws, since)
	if err != nil {
		return err
	}
	// This node's counts not flushed yet (the collector writes them every
	// 10 s): with them the dashboard is current here.
	if pc, ok := s.Ingester.(interface {
		PendingCounts(ws int64) []trustloop.DailyCount
	}); ok {
		counts = append(counts, pc.PendingCounts(ws)...)
	}
	collected, dropped := make([]float64, dashDays), make([]float64, dashDays)
	for _, c := range counts {
		i := dashDay(c.Day, since)
		if i < 0 || i >= dashDays {
			continue
		}
		switch c.Name {
		case trustloop.CountEventsCollected:
			collected[i] += float64(c.N)
			v.Collected += c.N
		case trustloop.CountEventsDropped:
			dropped[i] += float64(c.N)
			v.Dropped += c.N
		}
	}
	v.EventsChart = (&html.Chart{ID: "chart-events", Title: s.Pages.T("dash.chart.events"), Labels: labels, Series: []html.Series{
		{Name: s.Pages.T("dash.series.collected"), Values: collected, Class: "s2"},
		{Name: s.Pages.T("dash.series.dropped"), Values: dropped, Class: "s3"},
	}}).SVG()
	return nil
}

// dashRequests counts the workspace's privacy requests by status and by
// deadline health, over all of them (every page).
func (s *Server) dashRequests(ctx context.Context, ws int64) (*dashRequests, error) {
	out := &dashRequests{}
	byStatus := map[string]int{}
	// Every request, by the queue's own reading of its deadline.
	reqs, _, err := s.requestsByDue(ctx, ws, "", math.MaxInt)
	if err != nil {
		return nil, err
	}
	for _, q := range reqs {
		out.Total++
		byStatus[q.Status]++
		row := s.queueRowOf(q)
		switch {
		case !q.Open():
			out.Closed++
		case row.Overdue:
			out.Open++
			out.Overdue++
		case row.NearDue:
			out.Open++
			out.DueSoon++
		default:
			out.Open++
			out.Later++
		}
	}
	statuses := []string{trustloop.RequestReceived, trustloop.RequestVerified, trustloop.RequestInProgress,
		trustloop.RequestCompleted, trustloop.RequestRejected}
	// A status this list does not know yet is still counted.
	var extra []string
	for st := range byStatus {
		if !slices.Contains(statuses, st) {
			extra = append(extra, st)
		}
	}
	sort.Strings(extra)
	statuses = append(statuses, extra...)
	var labels []string
	var counts []float64
	for i, st := range statuses {
		label := st
		if i < len(statuses)-len(extra) {
			label = s.Pages.T("request.status." + st)
		}
		labels = append(labels, label)
		counts = append(counts, float64(byStatus[st]))
	}
	name := s.Pages.T("dash.series.requests")
	out.StatusChart = (&html.Chart{ID: "chart-requests", Title: s.Pages.T("dash.chart.status"), Labels: labels,
		Series: []html.Series{{Name: name, Values: counts, Class: "s1"}}, Bars: true}).SVG()
	out.DeadlineChart = (&html.Chart{ID: "chart-deadlines", Title: s.Pages.T("dash.chart.deadlines"),
		Labels: []string{s.Pages.T("dash.deadline.overdue"), s.Pages.T("dash.deadline.soon"), s.Pages.T("dash.deadline.later"), s.Pages.T("dash.deadline.closed")},
		Series: []html.Series{{Name: name, Values: []float64{float64(out.Overdue), float64(out.DueSoon), float64(out.Later), float64(out.Closed)}, Class: "s4"}},
		Bars:   true}).SVG()
	return out, nil
}

// dashAuditCheckpoint shows the latest signed checkpoint (signing one now if
// the log grew, as GET /v1/audit/checkpoint does). A failure is shown in the
// section, not as an error page: a damaged log is when the rest of the
// dashboard, and Verify now, matter most.
func (s *Server) dashAuditCheckpoint(ctx context.Context, ws int64) *dashAudit {
	out := &dashAudit{}
	msg, vkey, tree, err := s.Audit.CheckpointNow(ctx, ws)
	if err != nil {
		out.Error = s.sectionError(err)
		return out
	}
	out.Size, out.Note, out.VerifierKey = tree.N, string(msg), vkey
	// The note's text is the tree (tlog.FormatTree): its origin line, then
	// the size, then the hash.
	if lines := strings.SplitN(string(msg), "\n", 3); len(lines) >= 2 {
		out.SizeLine = lines[1]
	}
	return out
}

// sectionError is an error for a page section: its message and hint, or, for
// an internal error, a generic line (the detail goes to the log only).
func (s *Server) sectionError(err error) string {
	var e *trustloop.Error
	if errors.As(err, &e) && e.Code != trustloop.EINTERNAL {
		if e.Hint != "" {
			return e.Message + " " + e.Hint
		}
		return e.Message
	}
	var te *auditlog.TamperError
	if errors.As(err, &te) {
		return te.Error()
	}
	s.Log.Error("dashboard: the audit checkpoint could not be read", "err", err)
	return "It could not be read; the server log has the detail."
}

// verifyAuditLog verifies the workspace's log as `trustloop audit verify`
// does against a store: the latest checkpoint's signature under the
// workspace's verifier key, every entry's leaf hash against the one stored
// at append, the recomputed tree against the signed one, and consistency
// proofs to name the first bad entry.
func (s *Server) verifyAuditLog(ctx context.Context, ws int64) (*dashVerify, error) {
	out := &dashVerify{BadEntry: -1}
	tree, res, err := s.Audit.VerifyNow(ctx, ws)
	var te *auditlog.TamperError
	if errors.As(err, &te) {
		out.Problem = te.Problem
		if tree.N > 0 {
			out.Tree, out.Hash, out.BadEntry = tree.N, tree.Hash.String(), te.Index
			if te.Index > 0 {
				out.Checked = te.Index
			}
		}
		return out, nil
	} else if err != nil {
		return nil, err
	}
	out.OK, out.Checked, out.Tree, out.Hash, out.Uncovered = true, res.Tree.N, res.Tree.N, res.Tree.Hash.String(), res.Uncovered
	return out, nil
}
