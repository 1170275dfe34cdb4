package pipeline

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/persiv/codex/edge"
)

// Metrics are the request path's Prometheus metrics. Labels carry only
// bounded, non-secret values: never an org, a key or content.
type Metrics struct {
	requests       *prometheus.CounterVec
	addedLatency   *prometheus.HistogramVec
	upstreamLat    *prometheus.HistogramVec
	upstreamErrors *prometheus.CounterVec
	coalesced      prometheus.Counter
	chunkForward   prometheus.Histogram
	bodyBytes      prometheus.Gauge
	bodyRefusals   *prometheus.CounterVec
	authLimited    prometheus.Counter
	limitRefusals  *prometheus.CounterVec
	limitFallbacks *prometheus.CounterVec
	knownModel     func(p edge.Provider, model string) bool
}

// NewMetrics registers the metrics with reg (nil: not registered, for
// tests). knownModel bounds the model label: models it does not know are
// counted as "other", so a client cannot blow up label cardinality.
func NewMetrics(reg prometheus.Registerer, knownModel func(edge.Provider, string) bool) *Metrics {
	if knownModel == nil {
		knownModel = func(edge.Provider, string) bool { return false }
	}
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "codex_edge_requests_total",
			Help: "Requests served, by provider, endpoint, model (priced models only), status and cache status.",
		}, []string{"provider", "endpoint", "model", "status", "cache"}),
		addedLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "codex_edge_added_latency_seconds",
			Help:    "Time the edge adds to a request: total time minus the provider's.",
			Buckets: []float64{25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 50e-3, 0.25, 1},
		}, []string{"provider", "endpoint"}),
		upstreamLat: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "codex_edge_upstream_latency_seconds",
			Help:    "Time from sending a request to the provider until its answer ended.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 12),
		}, []string{"provider"}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "codex_edge_upstream_errors_total",
			Help: "Provider calls that failed, by kind (timeout, idle_timeout, unreachable, broken_response, client_closed).",
		}, []string{"provider", "kind"}),
		coalesced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "codex_edge_coalesced_total",
			Help: "Requests answered from an identical request's provider call in flight (counted as cache hits too).",
		}),
		chunkForward: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "codex_edge_stream_chunk_forward_seconds",
			Help:    "Time from a stream event's last byte arriving from the provider until the event was flushed to the client.",
			Buckets: []float64{5e-6, 10e-6, 20e-6, 35e-6, 50e-6, 75e-6, 100e-6, 250e-6, 500e-6, 1e-3, 5e-3, 25e-3},
		}),
		bodyBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "codex_edge_request_body_bytes_in_flight",
			Help: "Request-body bytes held by requests in progress (bounded by CODEX_MAX_INFLIGHT_BODY_BYTES).",
		}),
		bodyRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "codex_edge_request_body_refusals_total",
			Help: "Requests refused while their body was read, by reason (timeout: CODEX_BODY_TIMEOUT; budget: CODEX_MAX_INFLIGHT_BODY_BYTES).",
		}, []string{"reason"}),
		authLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "codex_edge_auth_limited_total",
			Help: "Requests answered 429 because their client address made too many failed gateway-key checks (CODEX_AUTH_FAILURE_LIMIT).",
		}),
		limitRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "codex_edge_limit_refusals_total",
			Help: "Requests refused by a rate limit or a budget, by reason (rpm, tpm, budget, model_not_priced).",
		}, []string{"reason"}),
		limitFallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "codex_edge_limit_fallbacks_total",
			Help: "Rate-limit and budget operations served by the instance's own counters because Redis could not be reached, by what (ratelimit, budget).",
		}, []string{"what"}),
		knownModel: knownModel,
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.addedLatency, m.upstreamLat, m.upstreamErrors, m.coalesced, m.chunkForward, m.bodyBytes, m.bodyRefusals, m.authLimited, m.limitRefusals, m.limitFallbacks)
	}
	return m
}

// Observe counts a request once it is answered; noUpstream: no provider
// call was made, so no added latency is observed.
func (m *Metrics) Observe(rec *edge.RequestRecord, noUpstream bool) {
	model := "other"
	if rec.Model != "" && m.knownModel(rec.Provider, rec.Model) {
		model = rec.Model
	}
	m.requests.WithLabelValues(string(rec.Provider), rec.Endpoint, model, strconv.Itoa(rec.Status), string(rec.Cache)).Inc()
	if noUpstream {
		return
	}
	added := rec.Latency - rec.UpstreamLatency
	m.addedLatency.WithLabelValues(string(rec.Provider), rec.Endpoint).Observe(added.Seconds())
	m.upstreamLat.WithLabelValues(string(rec.Provider)).Observe(rec.UpstreamLatency.Seconds())
}

// UpstreamError counts a failed provider call, by kind.
func (m *Metrics) UpstreamError(p edge.Provider, kind string) {
	m.upstreamErrors.WithLabelValues(string(p), kind).Inc()
}

// BodyRefused counts a request body refused, by reason.
func (m *Metrics) BodyRefused(reason string) {
	m.bodyRefusals.WithLabelValues(reason).Inc()
}

// Coalesced counts a request answered from an identical one's call.
func (m *Metrics) Coalesced() { m.coalesced.Inc() }

// ChunkForwarded observes the time from an event's arrival until it was
// flushed to the client.
func (m *Metrics) ChunkForwarded(d time.Duration) { m.chunkForward.Observe(d.Seconds()) }

// AuthLimited counts a request refused by the failed-key-check limit.
func (m *Metrics) AuthLimited() { m.authLimited.Inc() }

// BodyBytes adds n (negative: releases) to the request-body bytes held.
func (m *Metrics) BodyBytes(n int64) { m.bodyBytes.Add(float64(n)) }

// LimitRefused counts a request refused by a rate limit or a budget, by
// reason.
func (m *Metrics) LimitRefused(reason string) { m.limitRefusals.WithLabelValues(reason).Inc() }

// LimitFallback counts an operation served by the instance's own counters
// because Redis could not be reached.
func (m *Metrics) LimitFallback(what string) { m.limitFallbacks.WithLabelValues(what).Inc() }
