// Package server is the broker's network face: gnet event loops (one per core) that decode the
// protocol's frames straight out of gnet's read buffer and hand them to the engine.
//
// The data path on a loop: OnTraffic peeks each whole frame (a slice of gnet's buffer, copied by gnet
// only when the frame straddles its ring buffer), decodes the header and body in place, and a produce
// appends the batches into the partition's mapped segment — the one copy between socket and disk.
// Deliveries are written with writev: a 26-byte header from the connection's scratch and a slice of
// the segment mapping, so record bytes are never copied in user space on the way out.
//
// Work for a connection that arises on other goroutines (a cursor woken by a producer on the other
// loop, the group-commit flusher releasing fsync-level acks, a group rebalance) is handed to the
// connection's loop through a lock-free MPSC ring whose waker is gnet's Conn.Wake.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/wire"
)

// Options configure a Server.
type Options struct {
	// Addr is the TCP listen address. Default 127.0.0.1:7450; port 0 picks a free port (see Addr()).
	Addr string
	// Engine is the broker core the server fronts. Required.
	Engine *engine.Engine
	// Loops is the number of gnet event loops. Default runtime.NumCPU().
	Loops int
	// MaxFrame is the largest frame accepted (and announced in the handshake). Default 16 MiB.
	MaxFrame int
	// MinDurability is the least durability every produce gets: one that asks for less is stored as if
	// it had asked for this (a produce at none still gets no reply). Default none: as each produce asks.
	MinDurability wire.Durability
	// MaxPendingAcks caps a connection's produce requests waiting for an fsync; past it the
	// connection is refused further produces with CodeThrottled until acks drain. Default 4096.
	MaxPendingAcks int
	// MaxConnections caps concurrent connections; extra ones get CodeThrottled and are closed.
	// Default 10000.
	MaxConnections int
	// MaxOutboundBytes caps what gnet may hold unsent for one connection. Deliveries pause while a
	// consumer's socket leaves more than this queued (it granted credit but stopped reading) and
	// resume on the next tick once it drains. Default 4 MiB.
	MaxOutboundBytes int
	// MaxOutboundTotal caps what gnet holds unsent for all connections together: past it, a connection
	// with anything unsent pauses its deliveries, and one with nothing unsent delivers at most 64 KiB
	// at a time, so consumers that stop reading cannot hold more than this between them whatever their
	// number (docs/architecture.md, "Memory bounds"). Default 32 MiB.
	MaxOutboundTotal int
	// MaxSubscriptionsPerConn caps the subscriptions open on one connection; a subscribe past it is
	// refused with CodeThrottled (the connection stays open). Default 1000.
	MaxSubscriptionsPerConn int
	// MaxSubscriptionsPerPrincipal caps the subscriptions one authenticated principal holds across all
	// its connections; a subscribe past it is refused with CodeThrottled. It does not apply without
	// authentication, where MaxSubscriptionsPerConn × MaxConnections bounds the total. Default 10000.
	MaxSubscriptionsPerPrincipal int
	// InboxGrace is how long a reply inbox (a memory-only topic named InboxPrefix+...) outlives the
	// connection that created it before it is deleted, unless a connection claims it by subscribing
	// to it meanwhile. Default 10 s.
	InboxGrace time.Duration
	// IdleTimeout closes a connection that sent nothing (not even a ping) for this long. Default 2 min.
	IdleTimeout time.Duration
	// TLSAddr and TLSConfig, when TLSConfig is set, open a second listener that serves the same
	// protocol over crypto/tls (gnet has no TLS). Default TLSAddr 127.0.0.1:7453.
	TLSAddr   string
	TLSConfig *tls.Config
	// Tokens, when non-empty, requires authentication: a client sends OpAuth with mechanism "token"
	// and one of these tokens; the value is the principal's name.
	Tokens map[string]string
	// ACL, when set, decides whether a principal may perform an operation on a topic.
	ACL ACL
	// Logger receives connection-level logs. Default slog.Default().
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	if o.Addr == "" {
		o.Addr = "127.0.0.1:7450"
	}
	if o.TLSAddr == "" {
		o.TLSAddr = "127.0.0.1:7453"
	}
	if o.Loops == 0 {
		o.Loops = runtime.NumCPU()
	}
	if o.MaxFrame == 0 {
		o.MaxFrame = wire.DefaultMaxFrame
	}
	if o.MaxPendingAcks == 0 {
		o.MaxPendingAcks = 4096
	}
	if o.MaxConnections == 0 {
		o.MaxConnections = 10000
	}
	if o.MaxOutboundBytes == 0 {
		o.MaxOutboundBytes = 4 << 20
	}
	if o.MaxOutboundTotal == 0 {
		o.MaxOutboundTotal = 32 << 20
	}
	if o.MaxSubscriptionsPerConn == 0 {
		o.MaxSubscriptionsPerConn = 1000
	}
	if o.MaxSubscriptionsPerPrincipal == 0 {
		o.MaxSubscriptionsPerPrincipal = 10000
	}
	if o.InboxGrace == 0 {
		o.InboxGrace = 10 * time.Second
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 2 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Validate reports the first invalid option.
func (o *Options) Validate() error {
	switch {
	case o.Engine == nil:
		return errors.New("server: Engine is required")
	case o.Loops < 1:
		return fmt.Errorf("server: Loops %d", o.Loops)
	case o.MaxFrame < wire.MinMaxFrame:
		return fmt.Errorf("server: MaxFrame %d below %d", o.MaxFrame, wire.MinMaxFrame)
	case o.MinDurability > wire.DurabilityFsync:
		return fmt.Errorf("server: MinDurability %d", o.MinDurability)
	case o.MaxSubscriptionsPerConn < 1 || o.MaxSubscriptionsPerPrincipal < 1 || o.MaxOutboundTotal < 1 || o.InboxGrace < 0:
		return errors.New("server: MaxSubscriptionsPerConn, MaxSubscriptionsPerPrincipal, MaxOutboundTotal must be positive, InboxGrace not negative")
	case o.MaxPendingAcks < 1 || o.MaxConnections < 1 || o.IdleTimeout < 0:
		return errors.New("server: MaxPendingAcks, MaxConnections must be positive, IdleTimeout not negative")
	}
	return nil
}

// Server is a running broker listener.
type Server struct {
	gnet.BuiltinEventEngine

	opts Options
	e    *engine.Engine
	log  *slog.Logger
	addr net.Addr
	ge   gnet.Engine

	booted chan struct{}
	done   chan error

	connMu   sync.Mutex // guards conns and tlsConns
	conns    map[*session]struct{}
	tlsConns map[*tlsConn]struct{}
	tlsLn    net.Listener
	tlsDone  chan struct{}

	subMu sync.Mutex // guards principalSubs
	// principalSubs counts the open subscriptions of each authenticated principal; an entry is
	// removed when its count reaches 0. Guarded by subMu.
	principalSubs map[string]int

	inboxMu sync.Mutex        // guards inboxes
	inboxes map[string]*inbox // reply inboxes by topic name; see inbox.go

	// outbound is the sum of every connection's outCounted: bytes gnet holds unsent, as last measured
	// on each connection's loop.
	outbound atomic.Int64

	stats Stats
}

// Stats are the server's counters.
type Stats struct {
	Connections    atomic.Int64
	Accepted       atomic.Uint64
	ProtocolErrors atomic.Uint64
}

// Start listens and serves until Close. It returns once the listener is up.
func Start(opts Options) (*Server, error) {
	opts.setDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	s := &Server{opts: opts, e: opts.Engine, log: opts.Logger, booted: make(chan struct{}), done: make(chan error, 1),
		conns: map[*session]struct{}{}, tlsConns: map[*tlsConn]struct{}{}, principalSubs: map[string]int{}, inboxes: map[string]*inbox{}}
	go func() {
		s.done <- gnet.Run(s, "tcp://"+opts.Addr,
			gnet.WithMulticore(true),
			gnet.WithNumEventLoop(opts.Loops),
			gnet.WithTicker(true),
			gnet.WithReuseAddr(true),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			gnet.WithReadBufferCap(256<<10),
			gnet.WithWriteBufferCap(256<<10),
			gnet.WithLogger(gnetLogger{s.log}),
		)
	}()
	select {
	case <-s.booted:
	case err := <-s.done:
		return nil, fmt.Errorf("server: listen %s: %w", opts.Addr, err)
	}
	if opts.TLSConfig != nil {
		ln, err := tls.Listen("tcp", opts.TLSAddr, opts.TLSConfig)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("server: listen tls %s: %w", opts.TLSAddr, err)
		}
		s.tlsLn, s.tlsDone = ln, make(chan struct{})
		s.log.Info("listening for TLS", "addr", ln.Addr().String())
		go s.serveTLS(ln)
	}
	return s, nil
}

// TLSAddr is the TLS listener's address, or nil without TLS.
func (s *Server) TLSAddr() net.Addr {
	if s.tlsLn == nil {
		return nil
	}
	return s.tlsLn.Addr()
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.addr }

// Stats returns the server's counters.
func (s *Server) Stats() *Stats { return &s.stats }

// Close stops accepting, closes every connection after flushing what it has buffered, and waits
// for the event loops to exit. It does not close the engine.
func (s *Server) Close() error {
	if s.tlsLn != nil {
		s.tlsLn.Close()
		<-s.tlsDone
		s.connMu.Lock()
		for tc := range s.tlsConns {
			tc.Close()
		}
		s.connMu.Unlock()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.ge.Stop(ctx)
	if rerr := <-s.done; err == nil {
		err = rerr
	}
	return err
}

// OnBoot records the engine handle and the bound address.
func (s *Server) OnBoot(ge gnet.Engine) gnet.Action {
	s.ge = ge
	s.addr = resolveAddr(ge, s.opts.Addr)
	s.log.Info("listening", "addr", s.addr.String(), "loops", s.opts.Loops)
	close(s.booted)
	return gnet.None
}

// resolveAddr asks the listener socket for its address, so that port 0 reports the real port.
func resolveAddr(ge gnet.Engine, fallback string) net.Addr {
	if fd, err := ge.Dup(); err == nil {
		defer unix.Close(fd)
		if sa, err := unix.Getsockname(fd); err == nil {
			switch a := sa.(type) {
			case *unix.SockaddrInet4:
				return &net.TCPAddr{IP: net.IP(a.Addr[:]).To16(), Port: a.Port}
			case *unix.SockaddrInet6:
				return &net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}
			}
		}
	}
	host, port, _ := net.SplitHostPort(fallback)
	p, _ := strconv.Atoi(port)
	return &net.TCPAddr{IP: net.ParseIP(host), Port: p}
}

// OnOpen sets up the connection's session.
func (s *Server) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	s.stats.Accepted.Add(1)
	if s.stats.Connections.Add(1) > int64(s.opts.MaxConnections) {
		s.stats.Connections.Add(-1)
		return wire.AppendError(nil, 0, wire.CodeThrottled, "too many connections"), gnet.Close
	}
	ss, err := newSession(s, c)
	if err != nil {
		s.stats.Connections.Add(-1)
		return wire.AppendError(nil, 0, wire.CodeInternal, err.Error()), gnet.Close
	}
	c.SetContext(ss)
	s.connMu.Lock()
	s.conns[ss] = struct{}{}
	s.connMu.Unlock()
	return nil, gnet.None
}

// OnClose tears the session down: subscriptions leave their partitions and groups.
func (s *Server) OnClose(c gnet.Conn, err error) gnet.Action {
	ss, ok := c.Context().(*session)
	if !ok {
		return gnet.None
	}
	s.stats.Connections.Add(-1)
	s.connMu.Lock()
	delete(s.conns, ss)
	s.connMu.Unlock()
	ss.close()
	return gnet.None
}

// OnTraffic decodes and serves every whole frame buffered, then does the session's pending work.
func (s *Server) OnTraffic(c gnet.Conn) gnet.Action {
	ss, ok := c.Context().(*session)
	if !ok {
		return gnet.Close
	}
	return ss.onTraffic()
}

// tickInterval paces idle checks and the resumption of deliveries paused by a full outbound buffer.
const tickInterval = 50 * time.Millisecond

// OnTick closes idle connections and wakes sessions whose deliveries paused on a full outbound
// buffer, so they look again once gnet has drained it.
func (s *Server) OnTick() (time.Duration, gnet.Action) {
	now := time.Now().UnixNano()
	limit := s.opts.IdleTimeout.Nanoseconds()
	s.connMu.Lock()
	for ss := range s.conns {
		if limit > 0 && now-ss.lastActive.Load() > limit {
			ss.closeWith(wire.CodeTimeout, "idle timeout")
		} else if ss.blocked.CompareAndSwap(true, false) {
			ss.wakeLoop()
		}
	}
	s.connMu.Unlock()
	return tickInterval, gnet.None
}

// WriteMetrics writes the server's and the engine's metrics in Prometheus text format.
func (s *Server) WriteMetrics(w interface{ Write([]byte) (int, error) }) {
	fmt.Fprintf(w, "# HELP sluice_connections Open client connections.\n# TYPE sluice_connections gauge\nsluice_connections %d\n", s.stats.Connections.Load())
	fmt.Fprintf(w, "# HELP sluice_connections_accepted_total Connections accepted.\n# TYPE sluice_connections_accepted_total counter\nsluice_connections_accepted_total %d\n", s.stats.Accepted.Load())
	fmt.Fprintf(w, "# HELP sluice_protocol_errors_total Connections closed for protocol errors.\n# TYPE sluice_protocol_errors_total counter\nsluice_protocol_errors_total %d\n", s.stats.ProtocolErrors.Load())
	s.e.WriteMetrics(w)
}

// gnetLogger routes gnet's own logs through slog.
type gnetLogger struct{ l *slog.Logger }

func (g gnetLogger) Debugf(f string, a ...any) { g.l.Debug(fmt.Sprintf(f, a...), "src", "gnet") }
func (g gnetLogger) Infof(f string, a ...any)  { g.l.Debug(fmt.Sprintf(f, a...), "src", "gnet") }
func (g gnetLogger) Warnf(f string, a ...any)  { g.l.Warn(fmt.Sprintf(f, a...), "src", "gnet") }
func (g gnetLogger) Errorf(f string, a ...any) { g.l.Error(fmt.Sprintf(f, a...), "src", "gnet") }
func (g gnetLogger) Fatalf(f string, a ...any) { g.l.Error(fmt.Sprintf(f, a...), "src", "gnet") }
