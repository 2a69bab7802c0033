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
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sluicemq/sluice/disk"
	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/engine/auth"
	"github.com/sluicemq/sluice/engine/httpapi"
	"github.com/sluicemq/sluice/engine/kafka"
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
	GroupRevoke    time.Duration // --group-revoke-timeout
	QueueTracked   int           // --queue-max-tracked
	QueueAckLimit  int           // --queue-max-ack-pending
	FlushInterval  time.Duration
	FlushBytes     int64
	MaxBatchBytes  int
	MaxFrame       int
	MaxConns       int
	IdleTimeout    time.Duration
	Tokens         []string // "token=principal"
	Users          string   // --users: the users file (SCRAM and PLAIN), empty for none
	ACL            []string // "principal:actions:[topic:|group:]pattern"
	LogLevel       string
	LogJSON        bool
	Pprof          bool
	Durability     string
	TLSListen      string
	TLSCert        string
	TLSKey         string
	// KafkaListen and KafkaTLSListen are the Kafka-protocol listeners' addresses (engine/kafka);
	// an empty KafkaListen turns the Kafka face off.
	KafkaListen    string
	KafkaTLSListen string

	// Limits on connections that have not completed their handshake.
	HandshakeTimeout time.Duration
	MaxUnauth        int
	MaxUnauthPerAddr int
	MaxPreAuthFrame  int
	// MaxSubsPerConn, MaxSubsPerPrincipal, MaxOutboundTotal and InboxGrace: 0 takes the server's default.
	MaxSubsPerConn      int
	MaxSubsPerPrincipal int
	MaxOutboundTotal    int
	InboxGrace          time.Duration

	// HTTPListen is the HTTP API and web console's address (engine/httpapi); empty: off.
	HTTPListen string
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

// parseConfig reads the flags in args and the JSON config file they name. Every size and duration
// is range-checked as it is parsed, from the command line or the file alike (rangeFlag,
// durationFlag). help is true when --help was asked for (the usage is printed).
func parseConfig(args []string) (cfg config, help bool, err error) {
	cfg = config{Data: "./data", Listen: "127.0.0.1:7450", Partitions: 4, LogLevel: "info", KafkaListen: "127.0.0.1:9092"}
	fs := flag.NewFlagSet("sluiced", flag.ContinueOnError)
	configPath := fs.String("config", "", "JSON config file; flags given on the command line override it")
	fs.StringVar(&cfg.Data, "data", cfg.Data, "data directory")
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "client listen address")
	fs.StringVar(&cfg.Metrics, "metrics", "", "Prometheus metrics listen address (empty: off)")
	fs.StringVar(&cfg.HTTPListen, "http-listen", "", "HTTP API and web console listen address (empty: off; docs/http.md)")
	const unbounded = math.MaxInt64
	fs.Var(rangeFlag[int]{&cfg.Loops, 0, 1024}, "loops", "event loops, 0..1024 (default: one per core)")
	fs.Var(rangeFlag[int]{&cfg.Partitions, 1, maxPartitions}, "partitions", "partitions of a topic created without a count, 1..4096")
	fs.BoolVar(&cfg.AutoCreate, "auto-create", cfg.AutoCreate, "create a topic on its first produce (off by default; under ACLs it needs admin on the name)")
	fs.Var(rangeFlag[int64]{&cfg.SegmentBytes, 0, disk.MaxSegmentBytes}, "segment-bytes", "segment file size, at most 1 GiB (default 64 MiB)")
	fs.Var(rangeFlag[int64]{&cfg.RetentionBytes, 0, unbounded}, "retention-bytes", "default retention per partition in bytes (0: keep all)")
	fs.Var(durationFlag{&cfg.RetentionAge, time.Millisecond, disk.MaxRetentionAge}, "retention-age", "default retention by age, 1ms..about 292 years (0: keep all)")
	fs.DurationVar(&cfg.GroupRetention, "offsets-retention", 0, "drop a group without members this long after its last commit (default 168h; negative: never)")
	fs.Var(durationFlag{&cfg.GroupRevoke, -time.Hour, time.Hour}, "group-revoke-timeout", "how long a rebalanced partition waits for its old member to hand it back, -1h..1h (default 5s; negative: at once)")
	fs.Var(rangeFlag[int]{&cfg.QueueTracked, 0, math.MaxInt32}, "queue-max-tracked", "unsettled records one work-queue partition tracks (default 100000)")
	fs.Var(rangeFlag[int]{&cfg.QueueAckLimit, 0, math.MaxInt32}, "queue-max-ack-pending", "the most unsettled records a work-queue member may hold, whatever it asks (default 10000)")
	fs.Var(durationFlag{&cfg.FlushInterval, 0, time.Hour}, "flush-interval", "group commit interval, at most 1h (default: the storage default)")
	fs.Var(rangeFlag[int64]{&cfg.FlushBytes, 0, unbounded}, "flush-bytes", "group commit byte threshold (default: the storage default)")
	fs.Var(rangeFlag[int]{&cfg.MaxBatchBytes, 0, disk.MaxSegmentBytes}, "max-batch-bytes", "largest record batch accepted, at most 1 GiB (default 1 MiB)")
	fs.Var(rangeFlag[int]{&cfg.MaxFrame, 0, math.MaxInt32}, "max-frame", "largest frame accepted (default 16 MiB)")
	fs.Var(rangeFlag[int]{&cfg.MaxConns, 0, math.MaxInt32}, "max-connections", "connection limit (default 10000)")
	fs.Var(durationFlag{&cfg.IdleTimeout, 0, disk.MaxRetentionAge}, "idle-timeout", "close connections silent for this long (default 2m)")
	fs.Var(durationFlag{&cfg.HandshakeTimeout, 0, time.Hour}, "handshake-timeout", "close connections that have not completed hello (and auth) within this long, at most 1h (default 10s)")
	fs.Var(rangeFlag[int]{&cfg.MaxUnauth, 0, math.MaxInt32}, "max-unauthenticated", "limit on connections that have not completed their handshake; the oldest is closed for a newcomer (default max-connections/2, at most 1024)")
	fs.Var(rangeFlag[int]{&cfg.MaxUnauthPerAddr, 0, math.MaxInt32}, "max-unauthenticated-per-addr", "limit on unauthenticated connections from one IP address (default 64)")
	fs.Var(rangeFlag[int]{&cfg.MaxPreAuthFrame, 0, math.MaxInt32}, "max-preauth-frame", "largest frame accepted before the handshake completes (default 64 KiB)")
	fs.Var(rangeFlag[int]{&cfg.MaxSubsPerConn, 0, math.MaxInt32}, "max-subscriptions-per-connection", "subscriptions one connection may hold (default 1000)")
	fs.Var(rangeFlag[int]{&cfg.MaxSubsPerPrincipal, 0, math.MaxInt32}, "max-subscriptions-per-principal", "subscriptions one authenticated principal may hold (default 10000)")
	fs.Var(rangeFlag[int]{&cfg.MaxOutboundTotal, 0, math.MaxInt32}, "max-outbound-total", "bytes held unsent for all connections together (default 32 MiB)")
	fs.Var(durationFlag{&cfg.InboxGrace, 0, time.Hour}, "inbox-grace", "how long a reply inbox outlives its owner's connection, at most 1h (default 10s)")
	var tokens, acl listFlag
	fs.Var(&tokens, "token", "token=principal; repeatable; any token turns authentication on")
	fs.StringVar(&cfg.Users, "users", "", "users `file` of SCRAM verifiers, managed with 'sluice user'; any user turns authentication on (docs/security.md)")
	fs.Var(&acl, "acl", "principal:produce,consume,admin|all:topic-pattern or principal:consume:group:group-pattern; repeatable; any rule turns ACLs on (docs/security.md)")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
	fs.BoolVar(&cfg.LogJSON, "log-json", false, "log JSON lines instead of text")
	fs.BoolVar(&cfg.Pprof, "pprof", false, "serve /debug/pprof/ on the metrics address")
	fs.StringVar(&cfg.Durability, "durability", "none", "least durability of every produce: none (as each asks), written or fsync")
	fs.StringVar(&cfg.TLSListen, "tls-listen", "127.0.0.1:7453", "TLS listen address, used with --tls-cert and --tls-key")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "PEM certificate file: turns the TLS listener on")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "PEM private key file for --tls-cert")
	fs.StringVar(&cfg.KafkaListen, "kafka-listen", cfg.KafkaListen, "Kafka-protocol listen address (empty: off; docs/kafka.md)")
	fs.StringVar(&cfg.KafkaTLSListen, "kafka-tls-listen", "127.0.0.1:9093", "Kafka-protocol TLS listen address, used with --tls-cert and --tls-key")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, true, nil
		}
		return cfg, false, err
	}
	if *configPath != "" {
		if err := loadConfig(*configPath, fs); err != nil {
			return cfg, false, err
		}
	}
	cfg.Tokens = append(cfg.Tokens, tokens...)
	cfg.ACL = append(cfg.ACL, acl...)
	return cfg, false, nil
}

// maxPartitions is the engine's limit on a topic's partitions.
const maxPartitions = 4096

// rangeFlag is an integer flag that accepts only lo..hi (decimal, or 0x hex).
type rangeFlag[T int | int64] struct {
	p      *T
	lo, hi int64
}

func (f rangeFlag[T]) String() string {
	if f.p == nil {
		return "0"
	}
	return strconv.FormatInt(int64(*f.p), 10)
}

func (f rangeFlag[T]) Set(s string) error {
	n, err := strconv.ParseInt(s, 0, 64)
	if err != nil {
		return fmt.Errorf("%q is not an integer", s)
	}
	if n < f.lo || n > f.hi {
		return fmt.Errorf("%d outside %d..%d", n, f.lo, f.hi)
	}
	*f.p = T(n)
	return nil
}

// durationFlag is a duration flag that accepts 0 or lo..hi.
type durationFlag struct {
	p      *time.Duration
	lo, hi time.Duration
}

func (f durationFlag) String() string {
	if f.p == nil {
		return "0s"
	}
	return f.p.String()
}

func (f durationFlag) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return err // time: invalid duration, out of range included
	}
	if d != 0 && (d < f.lo || d > f.hi) {
		return fmt.Errorf("%v outside %v..%v (0: the default)", d, f.lo, f.hi)
	}
	*f.p = d
	return nil
}

func run(args []string) error {
	cfg, help, err := parseConfig(args)
	if err != nil || help {
		return err
	}

	log, err := newLogger(cfg.LogLevel, cfg.LogJSON)
	if err != nil {
		return err
	}
	slog.SetDefault(log)

	eng, err := engine.Open(engine.Options{
		DataDir:                 cfg.Data,
		DefaultPartitions:       cfg.Partitions,
		AutoCreateTopics:        cfg.AutoCreate,
		SegmentBytes:            cfg.SegmentBytes,
		RetentionBytes:          cfg.RetentionBytes,
		RetentionAge:            cfg.RetentionAge,
		OffsetsRetention:        cfg.GroupRetention,
		GroupRevokeTimeout:      cfg.GroupRevoke,
		QueueMaxTracked:         cfg.QueueTracked,
		QueueMaxAckPendingLimit: cfg.QueueAckLimit,
		FlushInterval:           cfg.FlushInterval,
		FlushBytes:              cfg.FlushBytes,
		MaxBatchBytes:           cfg.MaxBatchBytes,
		Logger:                  log,
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
		MaxConnections: cfg.MaxConns, IdleTimeout: cfg.IdleTimeout, Logger: log,
		HandshakeTimeout: cfg.HandshakeTimeout, MaxUnauthenticated: cfg.MaxUnauth, MaxUnauthenticatedPerAddr: cfg.MaxUnauthPerAddr,
		MaxPreAuthFrame:         cfg.MaxPreAuthFrame,
		MaxSubscriptionsPerConn: cfg.MaxSubsPerConn, MaxSubscriptionsPerPrincipal: cfg.MaxSubsPerPrincipal,
		MaxOutboundTotal: cfg.MaxOutboundTotal, InboxGrace: cfg.InboxGrace}
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
	if cfg.Users != "" {
		users, err := auth.LoadUsers(cfg.Users)
		if err != nil {
			eng.Close()
			return err
		}
		if auth.ReadableByOthers(cfg.Users) {
			log.Warn("the users file is readable by group or others: chmod 600 it", "path", cfg.Users)
		}
		log.Info("users loaded", "path", cfg.Users, "users", users.Len())
		sopts.Authenticator = &auth.Authenticator{Users: users} // --token fills its Tokens
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
	// The Kafka face shares the native listener's tokens, users, ACL, TLS certificate and durability
	// floor.
	var ksrv *kafka.Server
	if cfg.KafkaListen != "" {
		authn := &auth.Authenticator{Tokens: sopts.Tokens}
		if sopts.Authenticator != nil {
			authn.Users = sopts.Authenticator.Users
		}
		kopts := kafka.Options{Addr: cfg.KafkaListen, Engine: eng, Loops: cfg.Loops, MaxFrame: cfg.MaxFrame,
			MinDurability: minDurability, MaxConnections: cfg.MaxConns, ACL: sopts.ACL, Logger: log,
			Authenticator: authn}
		if sopts.TLSConfig != nil {
			kopts.TLSAddr, kopts.TLSConfig = cfg.KafkaTLSListen, sopts.TLSConfig
		}
		if ksrv, err = kafka.Start(kopts); err != nil {
			srv.Close()
			eng.Close()
			return err
		}
	}
	closeListeners := func() error {
		err := srv.Close()
		if ksrv != nil {
			err = errors.Join(ksrv.Close(), err)
		}
		return err
	}
	var metrics *http.Server
	if cfg.Metrics != "" {
		metrics, err = serveMetrics(cfg.Metrics, cfg.Pprof, srv, ksrv, log)
		if err != nil {
			closeListeners()
			eng.Close()
			return err
		}
	}
	var httpAPI *httpAPIServer
	if cfg.HTTPListen != "" {
		httpAPI, err = serveHTTPAPI(cfg.HTTPListen, eng, sopts, srv, log)
		if err != nil {
			if metrics != nil {
				_ = metrics.Close()
			}
			closeListeners()
			eng.Close()
			return err
		}
	}
	log.Info("sluiced ready", "listen", srv.Addr().String(), "kafka", cfg.KafkaListen, "data", cfg.Data, "metrics", cfg.Metrics, "http", cfg.HTTPListen)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	s := <-sig
	log.Info("shutting down", "signal", s.String())
	if metrics != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = metrics.Shutdown(ctx)
		cancel()
	}
	if httpAPI != nil {
		httpAPI.shutdown()
	}
	err = errors.Join(closeListeners(), eng.Close())
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

// serveMetrics serves the native server's and the engine's metrics, and the Kafka listener's
// beside them when ksrv is not nil.
func serveMetrics(addr string, withPprof bool, srv *server.Server, ksrv *kafka.Server, log *slog.Logger) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		srv.WriteMetrics(w)
		if ksrv != nil {
			ksrv.WriteMetrics(w)
		}
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

// httpAPIServer is the HTTP API and console listener (--http-listen).
type httpAPIServer struct {
	hs *http.Server
	h  *httpapi.Handler
}

// serveHTTPAPI serves engine/httpapi on addr with the native listener's tokens and users, ACL and
// durability floor, and its connection counters for the console.
func serveHTTPAPI(addr string, eng *engine.Engine, sopts server.Options, srv *server.Server, log *slog.Logger) (*httpAPIServer, error) {
	a := sopts.Authenticator // with --users; server.Start has folded the tokens into it
	if a == nil {
		a = &auth.Authenticator{Tokens: sopts.Tokens}
	}
	opts := httpapi.Options{Engine: eng, Auth: a, MinDurability: sopts.MinDurability, Logger: log,
		Connections: func() map[string]int64 {
			st := srv.Stats()
			return map[string]int64{"open": st.Connections.Load(), "accepted": int64(st.Accepted.Load()),
				"unauthenticated": st.Unauthenticated.Load(), "refused": int64(st.Refused.Load()), "protocol_errors": int64(st.ProtocolErrors.Load())}
		}}
	if sopts.ACL != nil {
		opts.ACL = sopts.ACL
	}
	h, err := httpapi.New(opts)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("http: %w", err)
	}
	// No ReadTimeout or WriteTimeout: either would end SSE streams (a read deadline passing cancels the
	// request's context); the handler bounds each request body's read and each wait itself.
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute,
		MaxHeaderBytes: 64 << 10, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server", "err", err)
		}
	}()
	return &httpAPIServer{hs: hs, h: h}, nil
}

// shutdown ends the handler's streams and sessions, then the server, within 2 s.
func (s *httpAPIServer) shutdown() {
	_ = s.h.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = s.hs.Shutdown(ctx)
}
