// Package targets plugs the Sluice broker into the latency harness (package bench).
//
// Three targets, registered by [Register]:
//
//   - "embedded" ([EmbeddedName]): the engine in-process on a temporary data directory. Each producer
//     builds record batches with one reused wire.BatchBuilder per partition and publishes them with an
//     engine.Publisher per partition; each consumer reads its partitions with Engine.SubscribeLocalWith
//     and takes the records, straight out of the segment mapping, with Local.NextRecord. With
//     Options.SpinConsumer the consumers busy-poll (the target then reports as "embedded-spin").
//   - "tcp" ([TCPName]): engine and gnet server in-process on 127.0.0.1:0, driven through the Go client
//     over loopback TCP: one client connection per producer and per consumer.
//   - "addr" ([AddrName]): the Go client against a broker started elsewhere (Options.Addr), for
//     example by `make run`. It creates a topic of its own, named bench-<random>, and deletes it on Close.
//
// # What the targets honour
//
// Partitions: the topic is created with Config.Partitions. Keyed messages go to the partition their key
// hashes to; keyless ones stick to one partition per batch and move on round-robin. Consumer i reads every
// partition when there is one consumer, partition i when Consumers >= Partitions (consumers beyond the
// partition count idle); other splits are refused at Open.
//
// Durability: none, written or fsync, passed to every produce. At fsync a consumer hands a record to the
// harness only once it is acknowledged durable (embedded: the partition's sync watcher reported an
// fdatasync covering it; TCP: the producer's client received its fsync acknowledgement). Without that
// gate the latency would stop at the consumer, which sees a record as soon as it is in the mapping,
// before any fdatasync: the fsync figures would be the written figures. With it, an fsync-durable
// latency is intended send → acknowledged durable and delivered, comparable with the raw fdatasync
// latency of the disk. Producers never wait for the fsync themselves: the embedded one appends at
// written and lets the watcher acknowledge, the TCP one keeps up to the client's in-flight limit.
//
// Batching: Config.BatchBytes caps a batch. Config.Linger == 0: a batch leaves on Flush (the harness
// calls it after every burst) or when full; TCP producers run the client with no linger, so a batch
// leaves as soon as the client's sender takes it, and records that queue meanwhile share the next one.
// Linger > 0: a batch also leaves once its first record is Linger old (embedded: checked on every Send and
// by a ticker; TCP: the client's own linger timer).
//
// # Allocations
//
// The targets' own per-message code allocates nothing: builders, iterators and records are reused, the
// client's result callback is one method value made at Open, and the fsync gate is a few atomics with a
// condition variable for the slow path. BenchmarkEmbeddedSend and BenchmarkTCPSend report the per-message
// cost including the engine and client below (b.ReportAllocs).
package targets

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicemq/sluice/bench"
	"github.com/sluicemq/sluice/client"
	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/internal/atomicutil"
	"github.com/sluicemq/sluice/internal/maxprocs"
	"github.com/sluicemq/sluice/wire"
)

// Registry names of the broker targets.
const (
	EmbeddedName = "embedded"
	TCPName      = "tcp"
	AddrName     = "addr"
)

// DefaultBatchBytes is the producer batch cap a run of the named target with payloads of payload
// bytes uses when it is not given one (the sluice bench CLI and the suite). Targets that drive the Go
// client (tcp, addr) and the relay run beside them use the client's own default,
// client.DefaultProducerOptions's MaxBatchBytes (1 MiB), so that they measure the client as an
// application gets it. The embedded target builds its batches itself and keeps bench's default,
// 64 KiB: measured (docs/benchmarks.md, "Producer batches as the client makes them"), 1 MiB batches
// moved 4-37% more over TCP and 15-24% less for 16 KiB records embedded, where a batch read back
// while still in the caches is the gain. Either is raised to payload when that is larger, so that
// a batch holds one record.
func DefaultBatchBytes(target string, payload int) int {
	limit := bench.Config{}.WithDefaults().BatchBytes
	switch target {
	case TCPName, AddrName, bench.RelayName:
		limit = client.DefaultProducerOptions().MaxBatchBytes
	}
	return max(limit, payload)
}

// ErrConfig is returned by Open for a configuration a target cannot run.
var ErrConfig = errors.New("targets: unsupported config")

// Options configure the broker targets. The zero value runs everything under os.TempDir().
type Options struct {
	// Dir is where the in-process targets make their temporary data directories (removed on Close).
	// Put it on the disk under test: not a tmpfs. Default os.TempDir().
	Dir string
	// Addr is the broker the addr target dials (host:port). Required by that target only.
	Addr string
	// AuthToken authenticates the addr target's connections to a broker that requires a token.
	AuthToken string
	// Timeout bounds the tcp and addr targets' connects and each of their requests (the client's
	// WithDialTimeout and WithRequestTimeout). 0 keeps the client's defaults.
	Timeout time.Duration
	// FlushInterval and FlushBytes set the in-process engine's group commit; 0 keeps the engine's default.
	FlushInterval time.Duration
	FlushBytes    int64
	// SyncSpacing spaces the in-process engine's fdatasyncs (engine.Options.SyncSpacing); 0: none.
	SyncSpacing time.Duration
	// Loops is the tcp target's number of gnet event loops. Default one per CPU.
	Loops int
	// Logger receives the engine's, server's and client's logs. Default: warnings and errors to stderr.
	Logger *slog.Logger
	// SpinConsumer makes the embedded target's consumers busy-poll (engine.LocalOptions.Spin): they
	// never park, and appends wake nobody. Each consumer takes a core while it runs. Its floor is
	// the busy-poll ring hand-off (bench.SPSCFloorTarget). Other targets ignore it.
	SpinConsumer bool
}

func (o Options) withDefaults() Options {
	if o.Dir == "" {
		o.Dir = os.TempDir()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return o
}

// Register adds the embedded, tcp and addr targets to reg.
func Register(reg *bench.Registry, opts Options) {
	reg.Register(EmbeddedName, func() bench.Target { return NewEmbedded(opts) })
	reg.Register(TCPName, func() bench.Target { return NewTCP(opts) })
	reg.Register(AddrName, func() bench.Target { return NewAddr(opts) })
}

// parseDurability maps the harness's durability names to the wire's levels.
func parseDurability(s string) (wire.Durability, error) {
	d, err := wire.ParseDurability(s)
	if err != nil {
		return 0, fmt.Errorf("%w: durability %q", ErrConfig, s)
	}
	return d, nil
}

// consumerPartition says which partitions consumer i reads: all (-1) when there is one consumer,
// partition i when there are at least as many consumers as partitions; ok is false for a consumer
// with nothing to read.
func consumerPartition(i int, cfg bench.Config) (part int32, ok bool) {
	if cfg.Consumers == 1 {
		return -1, true
	}
	return int32(i), i < cfg.Partitions
}

// checkSplit refuses consumer/partition splits the targets do not implement.
func checkSplit(cfg bench.Config) error {
	if cfg.Consumers > 1 && cfg.Consumers < cfg.Partitions {
		return fmt.Errorf("%w: %d consumers over %d partitions: use 1 consumer (it reads every partition) "+
			"or at least as many consumers as partitions (one each)", ErrConfig, cfg.Consumers, cfg.Partitions)
	}
	return nil
}

// topicName returns a fresh topic name, so a run never reads records an earlier one left behind.
func topicName() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "bench-" + hex.EncodeToString(b[:])
}

// fnv1a hashes a key to pick a partition in the embedded target, allocation-free.
func fnv1a(b []byte) uint32 {
	h := uint32(2166136261)
	for _, c := range b {
		h ^= uint32(c)
		h *= 16777619
	}
	return h
}

// paddedInt64 keeps one partition's watermark on its own cache-line pair: producers (or the client's
// reader goroutine) store it on every acknowledgement while consumers of other partitions load theirs.
type paddedInt64 = atomicutil.Int64

// durableGate holds consumers back until records are acknowledged durable on the producer side.
//
// Producers call advance(p, next) with the offset after the last record acknowledged at fsync; a
// consumer calls wait(p, off) before it hands record off of partition p to the harness. The fast path is
// one atomic load. The slow path sleeps on cond; advance broadcasts only when a waiter announced itself,
// so an acknowledgement with nobody waiting costs a load and a compare-and-swap.
//
// No wake-up is lost: a waiter increments waiters before it checks the watermark under mu, and advance
// stores the watermark before it reads waiters. Go's atomics are sequentially consistent, so either the
// waiter sees the new watermark or advance sees the waiter and broadcasts under mu.
type durableGate struct {
	next    []paddedInt64 // per partition: every offset below is acknowledged durable
	waiters atomic.Int32
	mu      sync.Mutex
	cond    *sync.Cond // on mu
	closed  bool       // guarded by mu: wait returns false from now on
}

func newDurableGate(partitions int) *durableGate {
	g := &durableGate{next: make([]paddedInt64, partitions)}
	g.cond = sync.NewCond(&g.mu)
	return g
}

// advance raises partition p's watermark to next (never lowers it). Any goroutine.
func (g *durableGate) advance(p int32, next int64) {
	w := &g.next[p]
	for {
		cur := w.Load()
		if next <= cur {
			return
		}
		if w.CompareAndSwap(cur, next) {
			break
		}
	}
	if g.waiters.Load() > 0 {
		g.mu.Lock()
		g.cond.Broadcast()
		g.mu.Unlock()
	}
}

// wait blocks until offset off of partition p is acknowledged durable, or the gate closes (false).
func (g *durableGate) wait(p int32, off int64) bool {
	w := &g.next[p]
	if w.Load() > off {
		return true
	}
	g.waiters.Add(1)
	g.mu.Lock()
	for w.Load() <= off && !g.closed {
		g.cond.Wait()
	}
	closed := g.closed
	g.mu.Unlock()
	g.waiters.Add(-1)
	return !closed
}

// close releases every waiter for good.
func (g *durableGate) close() {
	g.mu.Lock()
	g.closed = true
	g.cond.Broadcast()
	g.mu.Unlock()
}

// errList collects errors from producer and consumer goroutines for Close to return.
type errList struct {
	mu   sync.Mutex
	errs []error // guarded by mu
}

func (e *errList) add(err error) {
	e.mu.Lock()
	if len(e.errs) < 16 { // the first few say what went wrong; a flood says nothing more
		e.errs = append(e.errs, err)
	}
	e.mu.Unlock()
}

func (e *errList) join() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return errors.Join(e.errs...)
}

// openEngine opens an engine for a target on a fresh temporary directory under opts.Dir, sized for
// cfg's batches, and removes the directory again if the engine does not open. loops is the number of
// event loops the target will serve it with (0 for none), for GOMAXPROCS (holdProcs).
func openEngine(opts Options, cfg bench.Config, kind string, loops int) (string, *engine.Engine, error) {
	dir, err := os.MkdirTemp(opts.Dir, "sluice-bench-"+kind+"-*")
	if err != nil {
		return "", nil, fmt.Errorf("targets: data dir: %w", err)
	}
	eng, err := engine.Open(engine.Options{
		DataDir:       dir,
		FlushInterval: opts.FlushInterval,
		FlushBytes:    opts.FlushBytes,
		SyncSpacing:   opts.SyncSpacing,
		MaxBatchBytes: max(1<<20, cfg.BatchBytes+cfg.PayloadSize+64),
		Logger:        opts.Logger,
	})
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("targets: open engine: %w", err)
	}
	holdProcs(loops)
	return dir, eng, nil
}

// closeEngine closes an engine openEngine opened.
func closeEngine(eng *engine.Engine) error {
	defer releaseProcs()
	return eng.Close()
}

// procs runs the process at the broker's GOMAXPROCS (internal/maxprocs: the CPUs plus a P per event
// loop plus spare Ps, as sluiced does) while an in-process engine is open, and at the default
// otherwise, so that a target and the floor each run as they would be deployed. Set by the first
// engine opened, restored when the last one closes.
var procs struct {
	mu      sync.Mutex
	open    int    // engines open; guarded by mu
	restore func() // maxprocs.Set's, while open > 0; guarded by mu
}

func holdProcs(loops int) {
	procs.mu.Lock()
	defer procs.mu.Unlock()
	if procs.open++; procs.open == 1 {
		procs.restore = maxprocs.Set(loops)
	}
}

func releaseProcs() {
	procs.mu.Lock()
	defer procs.mu.Unlock()
	if procs.open--; procs.open == 0 {
		procs.restore()
		procs.restore = nil
	}
}
