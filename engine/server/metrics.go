package server

import (
	"io"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/internal/atomicutil"
)

// WriteMetrics writes the server's and the engine's metrics in the Prometheus text format (version
// 0.0.4, client_golang's encoder and escaping).
func (s *Server) WriteMetrics(w io.Writer) {
	engine.WriteCollected(w, s.Collector(), s.e.Collector())
}

// Collector reports the server's metrics (connections, protocol errors by kind, authentication
// failures, produce latency) to Prometheus; the engine's come from Engine.Collector. Scrapes read the
// server's atomic counters; the event loops never touch a Prometheus type. Unchecked (Describe sends
// nothing), like the engine's.
func (s *Server) Collector() prometheus.Collector { return serverCollector{s} }

type serverCollector struct{ s *Server }

func (serverCollector) Describe(chan<- *prometheus.Desc) {}

var (
	descConnections    = prometheus.NewDesc("sluice_connections", "Open client connections.", nil, nil)
	descAccepted       = prometheus.NewDesc("sluice_connections_accepted_total", "Connections accepted.", nil, nil)
	descUnauth         = prometheus.NewDesc("sluice_connections_unauthenticated", "Open connections that have not completed their handshake.", nil, nil)
	descRefused        = prometheus.NewDesc("sluice_connections_refused_total", "Connections refused or evicted by a connection limit.", nil, nil)
	descProtocolErrors = prometheus.NewDesc("sluice_protocol_errors_total", "Connections closed for protocol errors, by kind: malformed Sluice frames, or another protocol (http, tls, kafka) on the Sluice port.", []string{"kind"}, nil)
	descAuthFailures   = prometheus.NewDesc("sluice_auth_failures_total", "Authentications refused (unknown token or mechanism), and requests refused because the connection had not authenticated.", nil, nil)
	descProduceLatency = prometheus.NewDesc("sluice_produce_latency_seconds", "Produce latency on the broker, from reading the request to queueing its answer (after the fsync for fsync durability); one produce in 64 of each connection is sampled.", nil, nil)
)

func (c serverCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(descConnections, float64(s.stats.Connections.Load()))
	counter(descAccepted, s.stats.Accepted.Load())
	gauge(descUnauth, float64(s.stats.Unauthenticated.Load()))
	counter(descRefused, s.stats.Refused.Load())
	other := s.stats.ProtocolErrors.Load()
	for k := kindHTTP; k < numProtocolKinds; k++ {
		n := s.protoErrs[k].Load()
		other -= min(n, other)
		counter(descProtocolErrors, n, protocolKindNames[k])
	}
	counter(descProtocolErrors, other, protocolKindNames[kindMalformed])
	counter(descAuthFailures, s.stats.AuthFailures.Load())
	ch <- s.produceLatency.metric(descProduceLatency)
}

// paddedCounter is an atomic counter alone on its cache-line pair: event loops on different cores
// bump the histogram's counters, and unpadded neighbours would bounce one line between the cores.
type paddedCounter = atomicutil.Uint64

// latencyBuckets are the produce latency histogram's upper bounds, in seconds: from an append to
// the page cache (microseconds) to an fsync on a stalled disk.
var latencyBuckets = [...]float64{10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 1}

// produceSampleMask selects the sampled produces: those whose per-connection sequence number has
// these bits clear, one in 64. Sampling keeps the cost off the produce path: an unsampled produce pays
// a loop-owned increment and a branch; a sampled one a clock read and two atomic adds on padded
// counters. The request's arrival time is the clock reading readFrames already takes for the idle
// timeout (session.lastActive), so no extra read happens when a produce arrives.
const produceSampleMask = 63

// latencyHistogram is a fixed-bucket histogram of padded counters, written by event loops and read
// by scrapes. A scrape may see a count without its sum or the reverse (they are separate atomics):
// off by the produces in flight at that instant.
type latencyHistogram struct {
	counts [len(latencyBuckets) + 1]paddedCounter // per bucket, not cumulative; the last is +Inf
	sumNs  paddedCounter
}

// observe records one latency. Allocation-free and lock-free.
func (h *latencyHistogram) observe(d time.Duration) {
	sec := d.Seconds()
	i := 0
	for i < len(latencyBuckets) && sec > latencyBuckets[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumNs.Add(uint64(max(d, 0)))
}

// sampleProduce records the latency of a sampled produce that arrived at start (unix nanos; 0: not
// sampled, nothing to do) and is answered now.
func (s *Server) sampleProduce(start int64) {
	if start != 0 {
		s.produceLatency.observe(time.Duration(time.Now().UnixNano() - start))
	}
}

func (h *latencyHistogram) metric(d *prometheus.Desc) prometheus.Metric {
	buckets := make(map[float64]uint64, len(latencyBuckets))
	var cum uint64
	for i, le := range latencyBuckets {
		cum += h.counts[i].Load()
		buckets[le] = cum
	}
	cum += h.counts[len(latencyBuckets)].Load()
	return prometheus.MustNewConstHistogram(d, cum, float64(h.sumNs.Load())/1e9, buckets)
}
