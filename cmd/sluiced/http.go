package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/sluicemq/sluice/engine/server"
	"github.com/sluicemq/sluice/internal/buildinfo"
)

// healthState is what /healthz and /readyz answer from. The HTTP face starts before the engine
// opens, so it can say "not ready" during recovery.
type healthState struct {
	srv      atomic.Pointer[server.Server] // set once the engine has recovered and the listeners accept
	stopping atomic.Bool                   // set when shutdown begins
}

func (h *healthState) setServer(s *server.Server) { h.srv.Store(s) }

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

// serveMetrics serves, on addr: /metrics (Prometheus text format), /healthz (200 while the process
// runs), /readyz (200 once ready, else 503 with the reason) and, withPprof, /debug/pprof/.
func serveMetrics(addr string, withPprof bool, h *healthState, log *slog.Logger) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		fmt.Fprintf(w, "# HELP sluice_build_info The running build: version, VCS revision and Go version (value 1).\n"+
			"# TYPE sluice_build_info gauge\nsluice_build_info{goversion=%q,revision=%q,version=%q} 1\n",
			runtime.Version(), buildinfo.Revision(), buildinfo.Version())
		if srv := h.srv.Load(); srv != nil {
			srv.WriteMetrics(w)
		}
	})
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
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "err", err)
		}
	}()
	return hs, nil
}
