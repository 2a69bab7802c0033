// Command sluiced runs the Sluice broker.
//
//	sluiced --data ./data --listen 127.0.0.1:7450 --metrics 127.0.0.1:7451
//
// Settings come from flags, optionally on top of a JSON config file (--config) whose keys are the
// flag names. SIGTERM or SIGINT shuts down gracefully: stop accepting, flush connections, fsync and
// close every partition, persist offsets.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/peterbourgon/ff/v3"

	"github.com/sluicemq/sluice/disk"
	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/engine/auth"
	"github.com/sluicemq/sluice/engine/httpapi"
	"github.com/sluicemq/sluice/engine/kafka"
	"github.com/sluicemq/sluice/engine/mqtt"
	"github.com/sluicemq/sluice/engine/server"
	"github.com/sluicemq/sluice/internal/buildinfo"
	"github.com/sluicemq/sluice/internal/maxprocs"
	"github.com/sluicemq/sluice/internal/units"
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
	TxnTimeout     time.Duration // --txn-timeout
	QueueTracked   int           // --queue-max-tracked
	QueueAckLimit  int           // --queue-max-ack-pending
	FlushInterval  time.Duration
	FlushBytes     int64
	SyncSpacing    time.Duration // --sync-spacing
	MaxBatchBytes  int
	MaxFrame       int
	MaxConns       int
	IdleTimeout    time.Duration
	Tokens         []string // "token=principal"
	TokenFile      string   // --token-file: more "token=principal" lines, reread on SIGHUP
	Users          string   // --users: the users file (SCRAM and PLAIN), empty for none
	ACL            []string // "principal:actions:[topic:|group:]pattern"
	ACLFile        string   // --acl-file: more rules, one a line, reread on SIGHUP
	LogLevel       string
	LogFile        string // --log-file: empty for stderr; reopened on SIGHUP
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
	// MQTTListen and MQTTTLSListen are the MQTT listeners' addresses (engine/mqtt); an empty
	// MQTTListen turns the MQTT face off.
	MQTTListen    string
	MQTTTLSListen string
	// The MQTT listener's limits (mqtt.Options); 0 takes its default (MQTTMaxConns: --max-connections).
	MQTTMaxConns         int
	MQTTMaxPacket        int
	MQTTReceiveMaximum   int
	MQTTMaxInflight      int
	MQTTMaxKeepAlive     time.Duration
	MQTTMaxSessions      int
	MQTTMaxSessionExpiry time.Duration

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

// parseConfig reads the settings: flags in args first, then environment variables named SLUICE_ and
// the flag's name in upper case with '_' for '-' (SLUICE_RETENTION_AGE=7d), then the JSON config
// file --config names, whose keys are the flag names (github.com/peterbourgon/ff/v3 layers them).
// Every size and duration is range-checked as it is parsed, wherever it comes from (rangeFlag,
// sizeFlag, durationFlag). help is true when --help or --version was asked for (and printed on
// stdout).
func parseConfig(args []string) (cfg config, help bool, err error) {
	return parseConfigTo(args, os.Stdout)
}

func parseConfigTo(args []string, stdout io.Writer) (cfg config, help bool, err error) {
	cfg = config{Data: "./data", Listen: "127.0.0.1:7450", Partitions: 4, LogLevel: "info", KafkaListen: "127.0.0.1:9092",
		MQTTListen: "127.0.0.1:1883"}
	fs := flag.NewFlagSet("sluiced", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned; --help prints the usage itself
	configPath := fs.String("config", "", "JSON config `file` whose keys are the flag names; flags and SLUICE_* environment variables override it")
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.StringVar(&cfg.Data, "data", cfg.Data, "data `directory`")
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "client listen `address`")
	fs.StringVar(&cfg.Metrics, "metrics", "", "HTTP `address` for /metrics, /healthz and /readyz (empty: off)")
	fs.StringVar(&cfg.HTTPListen, "http-listen", "", "HTTP API and web console listen `address` (empty: off; docs/http.md)")
	const unbounded = math.MaxInt64
	fs.Var(rangeFlag[int]{&cfg.Loops, 0, 1024}, "loops", "`N` event loops, 0..1024 (default: one per core)")
	fs.Var(rangeFlag[int]{&cfg.Partitions, 1, maxPartitions}, "partitions", "`N` partitions of a topic created without a count, 1..4096")
	fs.BoolVar(&cfg.AutoCreate, "auto-create", cfg.AutoCreate, "create a topic on its first produce (off by default; under ACLs it needs admin on the name)")
	fs.Var(sizeFlag[int64]{&cfg.SegmentBytes, 0, disk.MaxSegmentBytes}, "segment-bytes", "segment file `size` (64MiB, 1GiB), at most 1 GiB (default 64 MiB)")
	fs.Var(sizeFlag[int64]{&cfg.RetentionBytes, 0, unbounded}, "retention-bytes", "default retention per partition, a `size` (0: keep all)")
	fs.Var(durationFlag{&cfg.RetentionAge, time.Millisecond, disk.MaxRetentionAge}, "retention-age", "default retention by age `D` (7d, 36h), 1ms..about 292 years (0: keep all)")
	fs.Var(durationFlag{&cfg.GroupRetention, math.MinInt64, math.MaxInt64}, "offsets-retention", "drop a group without members `D` after its last commit (default 168h; negative: never)")
	fs.Var(durationFlag{&cfg.GroupRevoke, -time.Hour, time.Hour}, "group-revoke-timeout", "how long (`D`) a rebalanced partition waits for its old member to hand it back, -1h..1h (default 5s; negative: at once)")
	fs.Var(durationFlag{&cfg.TxnTimeout, time.Second, 24 * time.Hour}, "txn-timeout", "abort a transaction open longer than `D` since its first batch, 1s..24h (default 60s)")
	fs.Var(rangeFlag[int]{&cfg.QueueTracked, 0, math.MaxInt32}, "queue-max-tracked", "`N` unsettled records one work-queue partition tracks (default 100000)")
	fs.Var(rangeFlag[int]{&cfg.QueueAckLimit, 0, math.MaxInt32}, "queue-max-ack-pending", "`N`: the most unsettled records a work-queue member may hold, whatever it asks (default 10000)")
	fs.Var(durationFlag{&cfg.FlushInterval, 0, time.Hour}, "flush-interval", "group commit interval `D`, at most 1h (default: the storage default)")
	fs.Var(sizeFlag[int64]{&cfg.FlushBytes, 0, unbounded}, "flush-bytes", "group commit threshold, a `size` (default: the storage default)")
	fs.Var(durationFlag{&cfg.SyncSpacing, 0, time.Second}, "sync-spacing", "start a partition's fdatasyncs at least `D` apart, at most 1s: fewer syncs under a stream of fsync-level produces, at up to D of latency (default 0: as soon as asked; docs/tuning.md)")
	fs.Var(sizeFlag[int]{&cfg.MaxBatchBytes, 0, disk.MaxSegmentBytes}, "max-batch-bytes", "largest record batch accepted, a `size` of at most 1 GiB (default 1 MiB)")
	fs.Var(sizeFlag[int]{&cfg.MaxFrame, 0, math.MaxInt32}, "max-frame", "largest frame accepted, a `size` (default 16 MiB)")
	fs.Var(rangeFlag[int]{&cfg.MaxConns, 0, math.MaxInt32}, "max-connections", "connection limit `N` (default 10000)")
	fs.Var(durationFlag{&cfg.IdleTimeout, 0, disk.MaxRetentionAge}, "idle-timeout", "close connections silent for `D` (default 2m)")
	fs.Var(durationFlag{&cfg.HandshakeTimeout, 0, time.Hour}, "handshake-timeout", "close connections that have not completed hello (and auth) within `D`, at most 1h (default 10s)")
	fs.Var(rangeFlag[int]{&cfg.MaxUnauth, 0, math.MaxInt32}, "max-unauthenticated", "limit `N` on connections that have not completed their handshake; the oldest is closed for a newcomer (default max-connections/2, at most 1024)")
	fs.Var(rangeFlag[int]{&cfg.MaxUnauthPerAddr, 0, math.MaxInt32}, "max-unauthenticated-per-addr", "limit `N` on unauthenticated connections from one IP address (default 64)")
	fs.Var(sizeFlag[int]{&cfg.MaxPreAuthFrame, 0, math.MaxInt32}, "max-preauth-frame", "largest frame accepted before the handshake completes, a `size` (default 64 KiB)")
	fs.Var(rangeFlag[int]{&cfg.MaxSubsPerConn, 0, math.MaxInt32}, "max-subscriptions-per-connection", "`N` subscriptions one connection may hold (default 1000)")
	fs.Var(rangeFlag[int]{&cfg.MaxSubsPerPrincipal, 0, math.MaxInt32}, "max-subscriptions-per-principal", "`N` subscriptions one authenticated principal may hold (default 10000)")
	fs.Var(sizeFlag[int]{&cfg.MaxOutboundTotal, 0, math.MaxInt32}, "max-outbound-total", "bytes held unsent for all connections together, a `size` (default 32 MiB)")
	fs.Var(durationFlag{&cfg.InboxGrace, 0, time.Hour}, "inbox-grace", "how long (`D`) a reply inbox outlives its owner's connection, at most 1h (default 10s)")
	var tokens, acl listFlag
	fs.Var(&tokens, "token", "`token=principal`; repeatable; any token turns authentication on")
	fs.StringVar(&cfg.TokenFile, "token-file", "", "read token=principal lines from `file` (# comments; reread on SIGHUP); any token turns authentication on")
	fs.Var(&acl, "acl", "`rule` principal:produce,consume,admin|all:topic-pattern or principal:consume:group:group-pattern; repeatable; any rule turns ACLs on (docs/security.md)")
	fs.StringVar(&cfg.Users, "users", "", "users `file` of SCRAM verifiers, managed with 'sluice user'; any user turns authentication on (docs/security.md)")
	fs.StringVar(&cfg.ACLFile, "acl-file", "", "read ACL rules from `file`, one a line (# comments; reread on SIGHUP)")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "log `level`: debug, info, warn or error")
	fs.BoolVar(&cfg.LogJSON, "log-json", false, "log JSON lines instead of text")
	fs.StringVar(&cfg.LogFile, "log-file", "", "append logs to `file` instead of stderr (reopened on SIGHUP, for log rotation)")
	fs.BoolVar(&cfg.Pprof, "pprof", false, "serve /debug/pprof/ on the metrics address")
	cfg.Durability = "none"
	fs.Func("durability", "least `durability` of every produce: none (as each asks), written or fsync (default none)", func(s string) error {
		if _, err := wire.ParseDurability(s); err != nil {
			return errors.New("want none, written or fsync")
		}
		cfg.Durability = s
		return nil
	})
	fs.StringVar(&cfg.TLSListen, "tls-listen", "127.0.0.1:7453", "TLS listen `address`, used with --tls-cert and --tls-key")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "PEM certificate `file`: turns the TLS listener on")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "PEM private key `file` for --tls-cert")
	fs.StringVar(&cfg.KafkaListen, "kafka-listen", cfg.KafkaListen, "Kafka-protocol listen `address` (empty: off; docs/kafka.md)")
	fs.StringVar(&cfg.KafkaTLSListen, "kafka-tls-listen", "127.0.0.1:9093", "Kafka-protocol TLS listen `address`, used with --tls-cert and --tls-key")
	fs.StringVar(&cfg.MQTTListen, "mqtt-listen", cfg.MQTTListen, "MQTT listen `address` (empty: off; docs/mqtt.md)")
	fs.StringVar(&cfg.MQTTTLSListen, "mqtt-tls-listen", "127.0.0.1:8883", "MQTT TLS listen `address`, used with --tls-cert and --tls-key")
	fs.Var(rangeFlag[int]{&cfg.MQTTMaxConns, 0, math.MaxInt32}, "mqtt-max-connections", "MQTT connection limit `N` (default: --max-connections)")
	fs.Var(sizeFlag[int]{&cfg.MQTTMaxPacket, 0, 268_435_460}, "mqtt-max-packet", "largest MQTT packet accepted, a `size` of 64 B..256 MiB (default 1 MiB)")
	fs.Var(rangeFlag[int]{&cfg.MQTTReceiveMaximum, 0, 65535}, "mqtt-receive-maximum", "`N` inbound QoS 1/2 PUBLISHes of one MQTT connection awaiting acknowledgement, at most 65535 (default 256)")
	fs.Var(rangeFlag[int]{&cfg.MQTTMaxInflight, 0, 65535}, "mqtt-max-inflight", "`N` outbound QoS 1/2 MQTT deliveries awaiting acknowledgement per connection, at most 65535 (default 64)")
	fs.Var(durationFlag{&cfg.MQTTMaxKeepAlive, 0, 65535 * time.Second}, "mqtt-max-keepalive", "cap `D` on the keep-alive an MQTT client may ask, at most 65535s (default 0: as the client asks)")
	fs.Var(rangeFlag[int]{&cfg.MQTTMaxSessions, 0, math.MaxInt32}, "mqtt-max-sessions", "`N` stored MQTT persistent sessions (default 100000)")
	fs.Var(durationFlag{&cfg.MQTTMaxSessionExpiry, 0, disk.MaxRetentionAge}, "mqtt-max-session-expiry", "cap `D` on an MQTT session's expiry interval; 3.1.1 persistent sessions expire after it (default 7d)")
	err = ff.Parse(fs, args,
		ff.WithEnvVarPrefix("SLUICE"),
		ff.WithConfigFileFlag("config"),
		ff.WithConfigFileParser(configFileParser(fs, configPath)))
	switch {
	case errors.Is(err, flag.ErrHelp):
		printUsage(stdout, fs)
		return cfg, true, nil
	case err != nil:
		return cfg, false, errors.New(strings.TrimPrefix(err.Error(), "error parsing commandline arguments: "))
	case *showVersion:
		fmt.Fprintf(stdout, "sluiced %s (protocol %d, %s %s/%s)\n", buildinfo.Version(), wire.ProtocolVersion, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return cfg, true, nil
	case fs.NArg() > 0:
		return cfg, false, fmt.Errorf("unexpected argument %q (settings are flags: sluiced --help)", fs.Arg(0))
	}
	cfg.Tokens = append(cfg.Tokens, tokens...)
	cfg.ACL = append(cfg.ACL, acl...)
	return cfg, false, nil
}

// configFileParser reads the JSON config file with ff's parser, refusing a key that names no flag
// (and "config" itself) with the file's name, and reading a plural key as its flag ("tokens" as
// "token").
func configFileParser(fs *flag.FlagSet, path *string) ff.ConfigFileParser {
	return func(r io.Reader, set func(name, value string) error) error {
		err := ff.JSONParser(r, func(name, value string) error {
			key := name
			if fs.Lookup(name) == nil && fs.Lookup(strings.TrimSuffix(name, "s")) != nil {
				name = strings.TrimSuffix(name, "s")
			}
			if fs.Lookup(name) == nil || name == "config" {
				return fmt.Errorf("unknown key %q", key)
			}
			if err := set(name, value); err != nil {
				return fmt.Errorf("%s: %w", key, errors.Unwrap(err))
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("config %s: %w", *path, errors.Unwrap(err))
		}
		return nil
	}
}

// printUsage writes --help in the style of sluice's: a synopsis, then each flag with its value name,
// its text and its default.
func printUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprint(w, "Usage: sluiced [FLAGS]\n\n"+
		"The Sluice broker. Every flag can also be set by an environment variable, SLUICE_ and its\n"+
		"name in upper case with _ for - (SLUICE_RETENTION_AGE=7d), or by a key of the JSON --config\n"+
		"file; the command line wins over the environment, which wins over the file. Sizes take\n"+
		"units (64MiB, 1GiB, 500KB) and durations days (7d). SIGHUP rereads --token-file and\n"+
		"--acl-file and reopens --log-file; SIGTERM and SIGINT shut down gracefully.\n\nFlags:\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fs.VisitAll(func(fl *flag.Flag) {
		arg, usage := flag.UnquoteUsage(fl)
		if arg != "" {
			arg = " " + arg
		}
		if d := fl.DefValue; d != "" && d != "false" && d != "0" && d != "0s" && !strings.Contains(usage, "(default") {
			usage += fmt.Sprintf(" (default %s)", d)
		}
		fmt.Fprintf(tw, "  --%s%s\t%s\n", fl.Name, arg, usage)
	})
	tw.Flush()
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

// sizeFlag is a size flag in bytes that accepts only lo..hi: an integer (decimal, or 0x hex) or a
// number with a unit, as sluice takes them (64MiB, 1GiB, 500KB; internal/units).
type sizeFlag[T int | int64] rangeFlag[T]

func (f sizeFlag[T]) String() string { return rangeFlag[T](f).String() }

func (f sizeFlag[T]) Set(s string) error {
	if _, err := strconv.ParseInt(s, 0, 64); err == nil {
		return rangeFlag[T](f).Set(s)
	}
	n, err := units.ParseBytes(s)
	if err != nil {
		return err
	}
	if n < f.lo || n > f.hi {
		return fmt.Errorf("%s (%d bytes) outside %d..%d", s, n, f.lo, f.hi)
	}
	*f.p = T(n)
	return nil
}

// durationFlag is a duration flag that accepts 0 or lo..hi, also in days ("7d").
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
	d, err := units.ParseDuration(s)
	if err != nil {
		return err // time: invalid duration, out of range included
	}
	if d != 0 && (d < f.lo || d > f.hi) {
		if f.lo > 0 {
			return fmt.Errorf("%v is outside %v..%v (0 keeps the default)", d, f.lo, f.hi)
		}
		return fmt.Errorf("%v is outside %v..%v", d, f.lo, f.hi)
	}
	*f.p = d
	return nil
}

func run(args []string) error {
	cfg, help, err := parseConfig(args)
	if err != nil || help {
		return err
	}

	logOut := &logFile{path: cfg.LogFile}
	if err := logOut.reopen(); err != nil {
		return err
	}
	defer logOut.close()
	log, err := newLogger(logOut, cfg.LogLevel, cfg.LogJSON)
	if err != nil {
		return err
	}
	slog.SetDefault(log)
	// A P for each event loop and spare ones, so that a goroutine woken while others hold Ps in
	// blocking system calls finds one (internal/maxprocs; docs/architecture.md, "Threads"). A
	// GOMAXPROCS variable overrides it.
	loops := cfg.Loops
	if loops == 0 {
		loops = runtime.NumCPU() // server.Options' default
	}
	defer maxprocs.Set(loops)()
	log.Info("sluiced starting", "version", buildinfo.Version(), "go", runtime.Version(), "data", cfg.Data,
		"gomaxprocs", runtime.GOMAXPROCS(0))

	// The HTTP face comes up first, so /healthz answers and /readyz says "not ready" while the
	// engine recovers its partitions.
	health := &healthState{}
	var metrics *http.Server
	if cfg.Metrics != "" {
		metrics, err = serveMetrics(cfg.Metrics, cfg.Pprof, health, log)
		if err != nil {
			return err
		}
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = metrics.Shutdown(ctx)
			cancel()
		}()
	}
	tokens, rules, err := authSettings(cfg)
	if err != nil {
		return err
	}

	eng, err := engine.Open(engine.Options{
		DataDir:                 cfg.Data,
		DefaultPartitions:       cfg.Partitions,
		AutoCreateTopics:        cfg.AutoCreate,
		SegmentBytes:            cfg.SegmentBytes,
		RetentionBytes:          cfg.RetentionBytes,
		RetentionAge:            cfg.RetentionAge,
		OffsetsRetention:        cfg.GroupRetention,
		GroupRevokeTimeout:      cfg.GroupRevoke,
		TxnTimeout:              cfg.TxnTimeout,
		QueueMaxTracked:         cfg.QueueTracked,
		QueueMaxAckPendingLimit: cfg.QueueAckLimit,
		FlushInterval:           cfg.FlushInterval,
		FlushBytes:              cfg.FlushBytes,
		SyncSpacing:             cfg.SyncSpacing,
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
	sopts.Tokens = tokens
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
	if len(rules) > 0 { // a nil Rules in the interface would turn ACLs on with no rule
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
	// The MQTT face shares them too.
	var msrv *mqtt.Server
	if cfg.MQTTListen != "" {
		authn := &auth.Authenticator{Tokens: sopts.Tokens}
		if sopts.Authenticator != nil {
			authn.Users = sopts.Authenticator.Users
		}
		mopts := mqtt.Options{Addr: cfg.MQTTListen, Engine: eng, Loops: cfg.Loops, MinDurability: minDurability,
			MaxConnections: cfg.MaxConns, ACL: sopts.ACL, Logger: log, Authenticator: authn,
			MaxPacketSize: cfg.MQTTMaxPacket, ReceiveMaximum: cfg.MQTTReceiveMaximum, MaxInflight: cfg.MQTTMaxInflight,
			MaxKeepAlive: cfg.MQTTMaxKeepAlive, MaxSessions: cfg.MQTTMaxSessions, MaxSessionExpiry: cfg.MQTTMaxSessionExpiry}
		if cfg.MQTTMaxConns > 0 {
			mopts.MaxConnections = cfg.MQTTMaxConns
		}
		if sopts.TLSConfig != nil {
			mopts.TLSAddr, mopts.TLSConfig = cfg.MQTTTLSListen, sopts.TLSConfig
		}
		if msrv, err = mqtt.Start(mopts); err != nil {
			srv.Close()
			if ksrv != nil {
				ksrv.Close()
			}
			eng.Close()
			return err
		}
	}
	closeListeners := func() error {
		err := srv.Close()
		if ksrv != nil {
			err = errors.Join(ksrv.Close(), err)
		}
		if msrv != nil {
			err = errors.Join(msrv.Close(), err)
		}
		return err
	}
	var httpAPI *httpAPIServer
	if cfg.HTTPListen != "" {
		httpAPI, err = serveHTTPAPI(cfg.HTTPListen, eng, sopts, srv, log)
		if err != nil {
			closeListeners()
			eng.Close()
			return err
		}
	}
	if ksrv != nil {
		health.kafka.Store(ksrv)
	}
	if msrv != nil {
		health.mqtt.Store(msrv)
	}
	health.setServer(srv, eng)
	log.Info("sluiced ready", "version", buildinfo.Version(), "listen", srv.Addr().String(), "kafka", cfg.KafkaListen, "mqtt", cfg.MQTTListen, "data", cfg.Data, "metrics", cfg.Metrics, "http", cfg.HTTPListen)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	for s := range sig {
		if s != syscall.SIGHUP {
			log.Info("shutting down", "signal", s.String())
			break
		}
		reload(cfg, logOut, srv, ksrv, msrv, httpAPI, log)
	}
	health.stopping.Store(true) // /readyz: not ready while draining
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

func newLogger(w io.Writer, level string, asJSON bool) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	o := &slog.HandlerOptions{Level: l}
	if asJSON {
		return slog.New(slog.NewJSONHandler(w, o)), nil
	}
	return slog.New(slog.NewTextHandler(w, o)), nil
}

// logFile is the log's destination: stderr, or --log-file, which reopen opens again (after a log
// rotation moved it away) without losing a line: writers hold mu, so a line goes whole to the old
// file or to the new one.
type logFile struct {
	path string // empty: stderr

	mu sync.Mutex // guards f
	f  *os.File   // the open --log-file; nil for stderr
}

func (l *logFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return os.Stderr.Write(p)
	}
	return l.f.Write(p)
}

// reopen opens path for appending (creating it, mode 0640) and closes the file it replaces. On an
// error the old file stays in use.
func (l *logFile) reopen() error {
	if l.path == "" {
		return nil
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("log file: %w", err)
	}
	l.mu.Lock()
	old := l.f
	l.f = f
	l.mu.Unlock()
	if old != nil {
		return old.Close()
	}
	return nil
}

func (l *logFile) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		_ = l.f.Close()
		l.f = nil
	}
}

// authSettings are the tokens (token -> principal) and ACL rules of --token, --token-file, --acl and
// --acl-file; nil when none is given (authentication or ACLs off). A bad line is an error naming its
// file and line, never the token itself.
func authSettings(cfg config) (map[string]string, server.Rules, error) {
	tokenLines := cfg.Tokens
	if cfg.TokenFile != "" {
		lines, err := readLines(cfg.TokenFile)
		if err != nil {
			return nil, nil, fmt.Errorf("--token-file: %w", err)
		}
		tokenLines = append(append([]string(nil), tokenLines...), lines...)
	}
	var tokens map[string]string
	for i, t := range tokenLines {
		tok, principal, ok := strings.Cut(t, "=")
		if !ok || tok == "" || principal == "" {
			return nil, nil, fmt.Errorf("token %d of --token and --token-file: want token=principal", i+1)
		}
		if tokens == nil {
			tokens = map[string]string{}
		}
		tokens[tok] = principal
	}
	aclLines := cfg.ACL
	if cfg.ACLFile != "" {
		lines, err := readLines(cfg.ACLFile)
		if err != nil {
			return nil, nil, fmt.Errorf("--acl-file: %w", err)
		}
		aclLines = append(append([]string(nil), aclLines...), lines...)
	}
	var rules server.Rules
	for _, s := range aclLines {
		r, err := server.ParseRule(s)
		if err != nil {
			return nil, nil, err
		}
		rules = append(rules, r)
	}
	return tokens, rules, nil
}

// readLines reads the non-blank lines of path that do not start with '#', trimmed.
func readLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return out, sc.Err()
}

// reload is SIGHUP: reopen the log file, then reread the token and ACL files and swap them into the
// server, the Kafka listener (ksrv) and the HTTP face (httpAPI; each nil when off; connections
// authenticate and are authorized with the new settings from their next request on). A failure is
// logged and changes nothing: SIGHUP never stops the broker.
func reload(cfg config, logOut *logFile, srv *server.Server, ksrv *kafka.Server, msrv *mqtt.Server, httpAPI *httpAPIServer, log *slog.Logger) {
	if err := logOut.reopen(); err != nil {
		log.Error("SIGHUP: log file not reopened", "err", err)
	}
	tokens, rules, err := authSettings(cfg)
	if err != nil {
		log.Error("SIGHUP: tokens and ACLs not reloaded, the previous ones stay", "err", err)
		return
	}
	var acl server.ACL
	if len(rules) > 0 {
		acl = rules
	}
	if err := srv.SetAuth(tokens, acl); err != nil {
		log.Error("SIGHUP: tokens and ACLs not reloaded, the previous ones stay", "err", err)
		return
	}
	if ksrv != nil {
		// The same mode check as the server's, against the same start-up settings: it passes too.
		if err := ksrv.SetAuth(tokens, acl); err != nil {
			log.Error("SIGHUP: tokens and ACLs not reloaded for the Kafka listener", "err", err)
		}
	}
	if msrv != nil {
		// The same mode check as the server's, against the same start-up settings: it passes too.
		if err := msrv.SetAuth(tokens, acl); err != nil {
			log.Error("SIGHUP: tokens and ACLs not reloaded for the MQTT listener", "err", err)
		}
	}
	if httpAPI != nil {
		// The same mode check as the server's, against the same start-up settings: it passes too.
		if err := httpAPI.h.SetAuth(tokens, acl); err != nil {
			log.Error("SIGHUP: tokens and ACLs not reloaded for the HTTP face", "err", err)
		}
	}
	log.Info("SIGHUP: reloaded", "log_file", cfg.LogFile, "tokens", len(tokens), "acl_rules", len(rules))
}

// httpAPIServer is the HTTP API and console listener (--http-listen).
type httpAPIServer struct {
	hs *http.Server
	h  *httpapi.Handler
}

// serveHTTPAPI serves engine/httpapi on addr with the native listener's tokens and users, ACL and
// durability floor, and its connection counters for the console.
func serveHTTPAPI(addr string, eng *engine.Engine, sopts server.Options, srv *server.Server, log *slog.Logger) (*httpAPIServer, error) {
	// The tokens and the users: server.Start folds the tokens into a copy of sopts.Authenticator,
	// not into it.
	a := &auth.Authenticator{Tokens: sopts.Tokens}
	if sopts.Authenticator != nil {
		a.Users = sopts.Authenticator.Users
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
	log.Info("http listening", "addr", ln.Addr().String())
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
