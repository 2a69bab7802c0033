// Command sluiced runs the Sluice broker.
//
//	sluiced --data ./data --listen 127.0.0.1:7450 --metrics 127.0.0.1:7451
//
// Settings come from flags, optionally on top of a JSON config file (--config) whose keys are the
// flag names. SIGTERM or SIGINT shuts down gracefully: stop accepting, flush connections, fsync and
// close every partition, persist offsets.
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/engine/server"
	"github.com/sluicemq/sluice/wire"
)

type config struct {
	Data           string
	Listen         string
	Metrics        string
	Loops          int
	Partitions     int
	AutoCreate     bool
	SegmentBytes   int64
	RetentionBytes int64
	RetentionAge   time.Duration
	GroupRetention time.Duration // --offsets-retention
	FlushInterval  time.Duration
	FlushBytes     int64
	MaxBatchBytes  int
	MaxFrame       int
	MaxConns       int
	IdleTimeout    time.Duration
	Tokens         []string // "token=principal"
	ACL            []string // "principal:actions:topic"
	LogLevel       string
	LogJSON        bool
	Pprof          bool
	Durability     string
	TLSListen      string
	TLSCert        string
	TLSKey         string
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "sluiced:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	cfg := config{Data: "./data", Listen: "127.0.0.1:7450", Partitions: 4, AutoCreate: true, LogLevel: "info"}
	fs := flag.NewFlagSet("sluiced", flag.ContinueOnError)
	configPath := fs.String("config", "", "JSON config file; flags given on the command line override it")
	fs.StringVar(&cfg.Data, "data", cfg.Data, "data directory")
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "client listen address")
	fs.StringVar(&cfg.Metrics, "metrics", "", "Prometheus metrics listen address (empty: off)")
	fs.IntVar(&cfg.Loops, "loops", 0, "event loops (default: one per core)")
	fs.IntVar(&cfg.Partitions, "partitions", cfg.Partitions, "partitions of a topic created without a count")
	fs.BoolVar(&cfg.AutoCreate, "auto-create", cfg.AutoCreate, "create topics on first produce or subscribe")
	fs.Int64Var(&cfg.SegmentBytes, "segment-bytes", 0, "segment file size (default 64 MiB)")
	fs.Int64Var(&cfg.RetentionBytes, "retention-bytes", 0, "default retention per partition in bytes (0: keep all)")
	fs.DurationVar(&cfg.RetentionAge, "retention-age", 0, "default retention by age (0: keep all)")
	fs.DurationVar(&cfg.GroupRetention, "offsets-retention", 0, "drop a group without members this long after its last commit (default 168h; negative: never)")
	fs.DurationVar(&cfg.FlushInterval, "flush-interval", 0, "group commit interval (default: the storage default)")
	fs.Int64Var(&cfg.FlushBytes, "flush-bytes", 0, "group commit byte threshold (default: the storage default)")
	fs.IntVar(&cfg.MaxBatchBytes, "max-batch-bytes", 0, "largest record batch accepted (default 1 MiB)")
	fs.IntVar(&cfg.MaxFrame, "max-frame", 0, "largest frame accepted (default 16 MiB)")
	fs.IntVar(&cfg.MaxConns, "max-connections", 0, "connection limit (default 10000)")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", 0, "close connections silent for this long (default 2m)")
	var tokens, acl listFlag
	fs.Var(&tokens, "token", "token=principal; repeatable; any token turns authentication on")
	fs.Var(&acl, "acl", "principal:produce,consume,admin|all:topic-pattern; repeatable; any rule turns ACLs on")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
	fs.BoolVar(&cfg.LogJSON, "log-json", false, "log JSON lines instead of text")
	fs.BoolVar(&cfg.Pprof, "pprof", false, "serve /debug/pprof/ on the metrics address")
	fs.StringVar(&cfg.Durability, "durability", "none", "least durability of every produce: none (as each asks), written or fsync")
	fs.StringVar(&cfg.TLSListen, "tls-listen", "127.0.0.1:7453", "TLS listen address, used with --tls-cert and --tls-key")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "PEM certificate file: turns the TLS listener on")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "PEM private key file for --tls-cert")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *configPath != "" {
		if err := loadConfig(*configPath, fs); err != nil {
			return err
		}
	}
	cfg.Tokens = append(cfg.Tokens, tokens...)
	cfg.ACL = append(cfg.ACL, acl...)

	log, err := newLogger(cfg.LogLevel, cfg.LogJSON)
	if err != nil {
		return err
	}
	slog.SetDefault(log)

	eng, err := engine.Open(engine.Options{
		DataDir:           cfg.Data,
		DefaultPartitions: cfg.Partitions,
		AutoCreateTopics:  cfg.AutoCreate,
		SegmentBytes:      cfg.SegmentBytes,
		RetentionBytes:    cfg.RetentionBytes,
		RetentionAge:      cfg.RetentionAge,
		OffsetsRetention:  cfg.GroupRetention,
		FlushInterval:     cfg.FlushInterval,
		FlushBytes:        cfg.FlushBytes,
		MaxBatchBytes:     cfg.MaxBatchBytes,
		Logger:            log,
	})
	if err != nil {
		return err
	}
	minDurability, err := wire.ParseDurability(cfg.Durability)
	if err != nil {
		eng.Close()
		return err
	}
	sopts := server.Options{MinDurability: minDurability, Addr: cfg.Listen, Engine: eng, Loops: cfg.Loops, MaxFrame: cfg.MaxFrame,
		MaxConnections: cfg.MaxConns, IdleTimeout: cfg.IdleTimeout, Logger: log}
	if cfg.TLSCert != "" || cfg.TLSKey != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			eng.Close()
			return fmt.Errorf("tls: %w", err)
		}
		sopts.TLSAddr = cfg.TLSListen
		sopts.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if len(cfg.Tokens) > 0 {
		sopts.Tokens = map[string]string{}
		for _, t := range cfg.Tokens {
			tok, principal, ok := strings.Cut(t, "=")
			if !ok || tok == "" || principal == "" {
				eng.Close()
				return fmt.Errorf("token %q: want token=principal", t)
			}
			sopts.Tokens[tok] = principal
		}
	}
	if len(cfg.ACL) > 0 {
		var rules server.Rules
		for _, s := range cfg.ACL {
			r, err := server.ParseRule(s)
			if err != nil {
				eng.Close()
				return err
			}
			rules = append(rules, r)
		}
		sopts.ACL = rules
	}
	srv, err := server.Start(sopts)
	if err != nil {
		eng.Close()
		return err
	}
	var metrics *http.Server
	if cfg.Metrics != "" {
		metrics, err = serveMetrics(cfg.Metrics, cfg.Pprof, srv, log)
		if err != nil {
			srv.Close()
			eng.Close()
			return err
		}
	}
	log.Info("sluiced ready", "listen", srv.Addr().String(), "data", cfg.Data, "metrics", cfg.Metrics)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	s := <-sig
	log.Info("shutting down", "signal", s.String())
	if metrics != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = metrics.Shutdown(ctx)
		cancel()
	}
	err = errors.Join(srv.Close(), eng.Close())
	if err != nil {
		log.Error("shutdown", "err", err)
		return err
	}
	log.Info("stopped cleanly")
	return nil
}

// loadConfig applies a JSON config file whose keys are the flag names, each value parsed by its flag
// exactly as on the command line ("retention-age": "168h", "partitions": 8, "token": ["t=alice"]).
// Flags given on the command line win over the file.
func loadConfig(path string, fs *flag.FlagSet) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var file map[string]json.RawMessage
	if err := json.Unmarshal(raw, &file); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for key, v := range file {
		name := strings.TrimSuffix(key, "s") // "tokens" reads like "token"
		if fs.Lookup(key) != nil {
			name = key
		}
		if fs.Lookup(name) == nil || name == "config" {
			return fmt.Errorf("config %s: unknown key %q", path, key)
		}
		if given[name] {
			continue
		}
		var values []json.RawMessage
		if err := json.Unmarshal(v, &values); err != nil {
			values = []json.RawMessage{v} // a single value, not a list
		}
		for _, one := range values {
			text := string(one)
			var str string
			if json.Unmarshal(one, &str) == nil {
				text = str
			}
			if err := fs.Set(name, text); err != nil {
				return fmt.Errorf("config %s: %s: %w", path, key, err)
			}
		}
	}
	return nil
}

func newLogger(level string, asJSON bool) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	o := &slog.HandlerOptions{Level: l}
	if asJSON {
		return slog.New(slog.NewJSONHandler(os.Stderr, o)), nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, o)), nil
}

func serveMetrics(addr string, withPprof bool, srv *server.Server, log *slog.Logger) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		srv.WriteMetrics(w)
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
