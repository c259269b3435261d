package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds every collector. The zero value is not usable; call New.
type Metrics struct {
	Registry *prometheus.Registry

	EventsReceived   prometheus.Counter
	EventsStored     prometheus.Counter
	EventsDuplicate  prometheus.Counter
	EventsDropped    *prometheus.CounterVec
	RequestsRejected *prometheus.CounterVec
	RequestBatchSize prometheus.Histogram
	CommitGroupSize  prometheus.Histogram
	CommitDuration   prometheus.Histogram
	RequestDuration  *prometheus.HistogramVec
	// Skipped counts data the profile projection did not use, by kind
	// (identifier, profile_input) and a fixed reason (malformed_email, limit, …).
	Skipped *prometheus.CounterVec
	// PrivacyRequests counts finished privacy requests by type and outcome;
	// PrivacyDuration times them (erasure in seconds is T6's promise).
	PrivacyRequests *prometheus.CounterVec
	PrivacyDuration *prometheus.HistogramVec
	// RetentionDeleted and ConsentExpired count what retention sweeps did.
	RetentionDeleted prometheus.Counter
	ConsentExpired   prometheus.Counter
	// RecommendIgnored counts weighted events the recommender could not use, by
	// a fixed reason (no_product_id, …).
	RecommendIgnored *prometheus.CounterVec
}

// New makes the collectors and registers them, with the Go runtime and process
// collectors (process_resident_memory_bytes is what `trustloop bench` samples).
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		EventsReceived: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "trustloop_events_received_total", Help: "Events in requests that passed validation."}),
		EventsStored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "trustloop_events_stored_total", Help: "Events committed to the log."}),
		EventsDuplicate: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "trustloop_events_duplicate_total", Help: "Committed events skipped as repeats of a stored messageId."}),
		EventsDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trustloop_events_dropped_total", Help: "Valid events not stored as personal data, by reason."}, []string{"reason"}),
		RequestsRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trustloop_requests_rejected_total", Help: "Collector requests refused, by error code."}, []string{"reason"}),
		RequestBatchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "trustloop_request_events", Help: "Events per accepted collector request.",
			Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2500}}),
		CommitGroupSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "trustloop_commit_group_events", Help: "Events per group commit.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14)}),
		CommitDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "trustloop_commit_duration_seconds", Help: "Time to seal and durably commit one group.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		RequestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "trustloop_http_request_duration_seconds", Help: "HTTP request latency by route and status class.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}, []string{"route", "status"}),
		Skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trustloop_profile_skipped_total", Help: "Identifiers and profile inputs the projection did not use, by kind and reason."},
			[]string{"kind", "reason"}),
		PrivacyRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trustloop_privacy_requests_total", Help: "Privacy request jobs finished, by job kind and state."}, []string{"kind", "state"}),
		PrivacyDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "trustloop_privacy_request_duration_seconds", Help: "Time to work on a privacy request job.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14)}, []string{"kind"}),
		RetentionDeleted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "trustloop_retention_events_deleted_total", Help: "Events the retention sweep deleted past their purposes' retention."}),
		ConsentExpired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "trustloop_consent_expired_total", Help: "Given consents the retention sweep marked expired."}),
		RecommendIgnored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trustloop_recommend_ignored_total", Help: "Weighted events the recommender did not use, by reason."}, []string{"reason"}),
	}
	m.Registry.MustRegister(m.EventsReceived, m.EventsStored, m.EventsDuplicate, m.EventsDropped, m.RequestsRejected,
		m.RequestBatchSize, m.CommitGroupSize, m.CommitDuration, m.RequestDuration, m.Skipped,
		m.PrivacyRequests, m.PrivacyDuration, m.RetentionDeleted, m.ConsentExpired, m.RecommendIgnored,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Committed implements ingest.Observer.
func (m *Metrics) Committed(_, events, stored int, d time.Duration) {
	m.EventsStored.Add(float64(stored))
	m.EventsDuplicate.Add(float64(events - stored))
	m.CommitGroupSize.Observe(float64(events))
	m.CommitDuration.Observe(d.Seconds())
}

// Dropped implements ingest.Observer.
func (m *Metrics) Dropped(reason string, n int) {
	m.EventsDropped.WithLabelValues(reason).Add(float64(n))
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
}

// Skip implements projection's skip counter: kind and reason are fixed strings
// of the identity and profile packages, never values.
func (m *Metrics) Skip(kind, reason string) { m.Skipped.WithLabelValues(kind, reason).Inc() }

// PrivacyDone observes a finished privacy request job.
func (m *Metrics) PrivacyDone(kind, state string, d time.Duration) {
	m.PrivacyRequests.WithLabelValues(kind, state).Inc()
	m.PrivacyDuration.WithLabelValues(kind).Observe(d.Seconds())
}

// RetentionDone observes a retention sweep.
func (m *Metrics) RetentionDone(eventsDeleted int64, consentExpired int) {
	m.RetentionDeleted.Add(float64(eventsDeleted))
	m.ConsentExpired.Add(float64(consentExpired))
}

// RecommendIgnore counts an event the recommender did not use; reason is a
// fixed word of the recommend package.
func (m *Metrics) RecommendIgnore(reason string) { m.RecommendIgnored.WithLabelValues(reason).Inc() }
