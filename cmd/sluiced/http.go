package main

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/engine/kafka"
	"github.com/sluicemq/sluice/engine/mqtt"
	"github.com/sluicemq/sluice/engine/server"
	"github.com/sluicemq/sluice/internal/buildinfo"
)

// healthState is what /healthz and /readyz answer from. The HTTP face starts before the engine
// opens, so it can say "not ready" during recovery.
type healthState struct {
	srv      atomic.Pointer[server.Server] // set once the engine has recovered and the listeners accept
	eng      atomic.Pointer[engine.Engine] // set with srv
	kafka    atomic.Pointer[kafka.Server]  // the Kafka listener, when it runs; set before srv
	mqtt     atomic.Pointer[mqtt.Server]   // the MQTT listener, when it runs; set before srv
	stopping atomic.Bool                   // set when shutdown begins
}

func (h *healthState) setServer(s *server.Server, e *engine.Engine) {
	h.eng.Store(e)
	h.srv.Store(s)
}

// ready reports whether the broker serves clients: the engine is open (its recovery done), the
// listeners accept, and shutdown has not begun. why says what is missing.
func (h *healthState) ready() (ok bool, why string) {
	switch {
	case h.stopping.Load():
		return false, "shutting down"
	case h.srv.Load() == nil:
		return false, "starting: the engine is recovering or the listeners are not up yet"
	}
	return true, "ready"
}

// newRegistry holds what /metrics serves: the Go runtime (go_*), the process (process_*), the build
// (sluice_build_info) and, once the broker runs, the server's and the engine's collectors (their
// counters are read at each scrape; see engine.Engine.Collector).
func newRegistry(h *healthState) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sluice_build_info",
			Help: "The running build: version, VCS revision and Go version (value 1).",
			ConstLabels: prometheus.Labels{
				"version": buildinfo.Version(), "revision": buildinfo.Revision(), "goversion": runtime.Version(),
			},
		}, func() float64 { return 1 }),
		brokerCollector{h},
	)
	return reg
}

// brokerCollector reports the running server's and engine's metrics, nothing before the engine has
// recovered. Unchecked: Describe sends nothing.
type brokerCollector struct{ h *healthState }

func (brokerCollector) Describe(chan<- *prometheus.Desc) {}

func (c brokerCollector) Collect(ch chan<- prometheus.Metric) {
	if srv := c.h.srv.Load(); srv != nil {
		srv.Collector().Collect(ch)
		c.h.eng.Load().Collector().Collect(ch)
	}
}

// kafkaGatherer gathers the Kafka listener's counters, which it writes in the text exposition format
// (engine/kafka's Server.WriteMetrics), parsed here into metric families so that every format /metrics
// negotiates carries them.
type kafkaGatherer struct{ h *healthState }

func (g kafkaGatherer) Gather() ([]*dto.MetricFamily, error) {
	k := g.h.kafka.Load()
	if k == nil || g.h.srv.Load() == nil {
		return nil, nil
	}
	var b bytes.Buffer
	k.WriteMetrics(&b)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(&b)
	if err != nil {
		return nil, fmt.Errorf("kafka metrics: %w", err)
	}
	out := make([]*dto.MetricFamily, 0, len(fams))
	for _, f := range fams {
		out = append(out, f)
	}
	return out, nil
}

// mqttGatherer gathers the MQTT listener's counters (engine/mqtt's Server.WriteMetrics), as
// kafkaGatherer does the Kafka listener's.
type mqttGatherer struct{ h *healthState }

func (g mqttGatherer) Gather() ([]*dto.MetricFamily, error) {
	m := g.h.mqtt.Load()
	if m == nil || g.h.srv.Load() == nil {
		return nil, nil
	}
	var b bytes.Buffer
	m.WriteMetrics(&b)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(&b)
	if err != nil {
		return nil, fmt.Errorf("mqtt metrics: %w", err)
	}
	out := make([]*dto.MetricFamily, 0, len(fams))
	for _, f := range fams {
		out = append(out, f)
	}
	return out, nil
}

// serveMetrics serves, on addr: /metrics (Prometheus text format), /healthz (200 while the process
// runs), /readyz (200 once ready, else 503 with the reason) and, withPprof, /debug/pprof/.
func serveMetrics(addr string, withPprof bool, h *healthState, log *slog.Logger) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(prometheus.Gatherers{newRegistry(h), kafkaGatherer{h}, mqttGatherer{h}}, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelError), ErrorHandling: promhttp.ContinueOnError}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		ok, why := h.ready()
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprintln(w, why)
	})
	if withPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	log.Info("metrics listening", "addr", ln.Addr().String())
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "err", err)
		}
	}()
	return hs, nil
}
