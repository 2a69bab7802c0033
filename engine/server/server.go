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
	"maps"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/engine/auth"
	"github.com/sluicemq/sluice/internal/gnetaddr"
	"github.com/sluicemq/sluice/internal/gnetrun"
	"github.com/sluicemq/sluice/wire"
)

// Buffer sizes of the event loops, chosen for 1 MiB batches and deliveries (the engine's default
// MaxBatchBytes and MaxDeliverBytes).
//
// loopReadBuffer is gnet's read buffer, one per event loop: one read(2) takes up to this much, and
// OnTraffic decodes the frames lying whole in it in place. The part of a frame a read did not complete
// is copied into the connection's inbound buffer and Peek assembles the frame from there (a second
// copy). At 2 MiB per loop a 1 MiB produce frame fits whole, with room for the frames around it, so
// one the kernel hands over in one read costs no copy in user space.
//
// connWriteBuffer is the fixed ring of a connection's outbound buffer, used only for what the socket
// did not take (a writev's remainder); beyond it gnet chains blocks. Memory is taken as it is used.
//
// Socket buffers (SO_RCVBUF, SO_SNDBUF) are left to the kernel: setting either turns off its
// autotuning, which on loopback grows a busy connection's buffers to net.ipv4.tcp_rmem's and
// tcp_wmem's maximum (32 MiB and 4 MiB on Debian's defaults), past what a fixed setting may reach
// without raising net.core.rmem_max.
const (
	loopReadBuffer  = 2 << 20
	connWriteBuffer = 2 << 20
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
	// MaxPreAuthFrame is the largest frame (bytes, header included) accepted from a connection that
	// has not completed its handshake (Hello, then Auth when authentication is on): room for Hello, an Auth
	// carrying a token or a SCRAM step, and Ping. It is checked from the frame header, so such a
	// connection never makes the broker buffer more than this for it. Default 64 KiB
	// (wire.MinMaxFrame); at most MaxFrame.
	MaxPreAuthFrame int
	// HandshakeTimeout closes a connection that has not completed its handshake this long after it
	// opened, whatever it sends meanwhile (pings do not extend it). Default 10 s.
	HandshakeTimeout time.Duration
	// MaxUnauthenticated caps the connections, TCP and TLS together, that have not completed their
	// handshake. It is at most MaxConnections, and below it by default, so that connections which
	// never authenticate cannot take the slots of clients that do. When it is reached, a new
	// connection is taken and the oldest unauthenticated one is closed with CodeThrottled. Default
	// MaxConnections/2, at most 1024.
	MaxUnauthenticated int
	// MaxUnauthenticatedPerAddr caps the unauthenticated connections from one source IP address;
	// past it a new connection from that address is refused with CodeThrottled. Default 64, at most
	// MaxUnauthenticated.
	MaxUnauthenticatedPerAddr int
	// TLSAddr and TLSConfig, when TLSConfig is set, open a second listener that serves the same
	// protocol over crypto/tls (gnet has no TLS). Default TLSAddr 127.0.0.1:7453.
	TLSAddr   string
	TLSConfig *tls.Config
	// Tokens, when non-empty, requires authentication: a client sends OpAuth with mechanism "token"
	// (or "PLAIN" with the principal as user name) and one of these tokens; the value is the
	// principal's name. A shorthand for Authenticator.Tokens: it fills them when the Authenticator
	// has none, and Validate refuses two different sets.
	Tokens map[string]string
	// Authenticator, when it holds any token or user (auth.Authenticator.Enabled), requires every
	// connection to authenticate with OpAuth before anything but Ping: mechanism "token", "PLAIN",
	// "SCRAM-SHA-256" or "SCRAM-SHA-512", one SASL step per Auth frame each way (docs/protocol.md,
	// Auth). Shared with the other faces, read-only. Default: one built from Tokens.
	Authenticator *auth.Authenticator
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
	if o.MaxPreAuthFrame == 0 {
		o.MaxPreAuthFrame = min(wire.MinMaxFrame, o.MaxFrame)
	}
	if o.HandshakeTimeout == 0 {
		o.HandshakeTimeout = 10 * time.Second
	}
	if o.MaxUnauthenticated == 0 {
		o.MaxUnauthenticated = max(1, min(1024, o.MaxConnections/2))
	}
	if o.MaxUnauthenticatedPerAddr == 0 {
		o.MaxUnauthenticatedPerAddr = min(64, o.MaxUnauthenticated)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	switch {
	case o.Authenticator == nil:
		o.Authenticator = &auth.Authenticator{Tokens: o.Tokens}
	case len(o.Tokens) > 0 && len(o.Authenticator.Tokens) == 0:
		a := *o.Authenticator // the caller's stays as it was
		a.Tokens = o.Tokens
		o.Authenticator = &a
	}
}

// ErrOptions marks an invalid option: Options.Validate and Start wrap it.
var ErrOptions = errors.New("server: invalid options")

// Validate reports the first invalid option, wrapping ErrOptions.
func (o *Options) Validate() error {
	switch {
	case o.Engine == nil:
		return fmt.Errorf("%w: Engine is required", ErrOptions)
	case o.Loops < 1:
		return fmt.Errorf("%w: Loops %d", ErrOptions, o.Loops)
	case o.MaxFrame < wire.MinMaxFrame:
		return fmt.Errorf("%w: MaxFrame %d below %d", ErrOptions, o.MaxFrame, wire.MinMaxFrame)
	case o.MinDurability > wire.DurabilityFsync:
		return fmt.Errorf("%w: MinDurability %d", ErrOptions, o.MinDurability)
	case o.MaxSubscriptionsPerConn < 1 || o.MaxSubscriptionsPerPrincipal < 1 || o.MaxOutboundTotal < 1 || o.InboxGrace < 0:
		return fmt.Errorf("%w: MaxSubscriptionsPerConn, MaxSubscriptionsPerPrincipal, MaxOutboundTotal must be positive, InboxGrace not negative", ErrOptions)
	case o.MaxPendingAcks < 1 || o.MaxConnections < 1 || o.IdleTimeout < 0:
		return fmt.Errorf("%w: MaxPendingAcks, MaxConnections must be positive, IdleTimeout not negative", ErrOptions)
	case o.MaxPreAuthFrame < 1<<10 || o.MaxPreAuthFrame > o.MaxFrame:
		return fmt.Errorf("%w: MaxPreAuthFrame %d outside [1 KiB, MaxFrame %d]", ErrOptions, o.MaxPreAuthFrame, o.MaxFrame)
	case o.HandshakeTimeout <= 0:
		return fmt.Errorf("%w: HandshakeTimeout %v", ErrOptions, o.HandshakeTimeout)
	case o.MaxUnauthenticated < 1 || o.MaxUnauthenticated > o.MaxConnections:
		return fmt.Errorf("%w: MaxUnauthenticated %d outside [1, MaxConnections %d]", ErrOptions, o.MaxUnauthenticated, o.MaxConnections)
	case o.MaxUnauthenticatedPerAddr < 1 || o.MaxUnauthenticatedPerAddr > o.MaxUnauthenticated:
		return fmt.Errorf("%w: MaxUnauthenticatedPerAddr %d outside [1, MaxUnauthenticated %d]", ErrOptions, o.MaxUnauthenticatedPerAddr, o.MaxUnauthenticated)
	case len(o.Tokens) > 0 && o.Authenticator != nil && !maps.Equal(o.Tokens, o.Authenticator.Tokens):
		return fmt.Errorf("%w: Tokens and Authenticator.Tokens differ: set one of them", ErrOptions)
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

	connMu   sync.Mutex // guards conns, tlsConns, unauth and unauthPerAddr
	conns    map[*session]struct{}
	tlsConns map[*tlsConn]struct{}
	// unauth holds the open sessions that have not completed their handshake, TCP and TLS; a session
	// leaves it once, on completing the handshake, on eviction or on close. At most
	// opts.MaxUnauthenticated entries.
	unauth map[*session]struct{}
	// unauthPerAddr counts unauth by source address; an address leaves the map at zero.
	unauthPerAddr map[netip.Addr]int

	tlsLn   net.Listener
	tlsDone chan struct{}

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
	// protoErrs counts the protocol errors that were another protocol on the Sluice port, by kind
	// (mismatch); the rest of stats.ProtocolErrors is malformed Sluice.
	protoErrs protocolErrors
	// produceLatency is the sampled produce latency histogram (metrics.go).
	produceLatency latencyHistogram
	// auth is the authenticator and ACL rules in force: opts.Authenticator and opts.ACL at Start,
	// replaced whole by SetAuth. Event loops load it per request; nothing writes through the pointer.
	auth atomic.Pointer[authState]

	// stopping is set once, by Close, before anything is torn down: from then on new connections
	// and new produces are refused with CodeShuttingDown. Loops read it.
	stopping  atomic.Bool
	closeOnce sync.Once
	closeErr  error // set inside closeOnce
}

// drainTimeout bounds how long Close waits for fsync-level acknowledgements to be released and
// written before it closes connections anyway (a failed log never releases them); lingerTimeout
// how long it then waits for clients to close the connections whose write side it shut.
const (
	drainTimeout  = 5 * time.Second
	lingerTimeout = 2 * time.Second
)

// Stats are the server's counters.
type Stats struct {
	Connections    atomic.Int64
	Accepted       atomic.Uint64
	ProtocolErrors atomic.Uint64
	// Unauthenticated is the number of open connections that have not completed their handshake.
	Unauthenticated atomic.Int64
	// Refused counts connections turned away or evicted by a connection limit.
	Refused atomic.Uint64
	// AuthFailures counts authentications refused (unknown token or mechanism) and requests refused
	// for want of one.
	AuthFailures atomic.Uint64
}

// Start listens and serves until Close. It returns once the listener is up.
func Start(opts Options) (*Server, error) {
	opts.setDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	s := &Server{opts: opts, e: opts.Engine, log: opts.Logger, booted: make(chan struct{}), done: make(chan error, 1),
		conns: map[*session]struct{}{}, tlsConns: map[*tlsConn]struct{}{}, unauth: map[*session]struct{}{},
		unauthPerAddr: map[netip.Addr]int{}, principalSubs: map[string]int{}, inboxes: map[string]*inbox{}}
	s.auth.Store(&authState{authn: opts.Authenticator, acl: opts.ACL})
	loops := gnetrun.Config{Addr: opts.Addr, Loops: opts.Loops, ReadBuffer: loopReadBuffer, WriteBuffer: connWriteBuffer, Log: s.log}
	if err := gnetrun.Start(s, loops, s.booted, s.done); err != nil {
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

// Close stops the server gracefully and waits for the event loops to exit; it does not close the
// engine. In order: new connections and new produce requests are refused with CodeShuttingDown
// (nothing of such a produce is stored, so the client may send it again elsewhere or later); every
// connection's produces awaiting an fdatasync get a sync requested, and Close waits (at most
// drainTimeout) until each connection has released and written all of them; only then are the
// connections closed, after flushing what they have buffered. A second call waits for the first.
func (s *Server) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.shutdown() })
	return s.closeErr
}

func (s *Server) shutdown() error {
	s.stopping.Store(true)
	if s.tlsLn != nil {
		s.tlsLn.Close()
		<-s.tlsDone
	}
	s.drain()
	if s.tlsLn != nil {
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

// drain waits until every connection has answered the fsync-level produces it holds and shut its
// write side, or drainTimeout passes; then until the clients have closed those connections, or
// lingerTimeout passes. Each connection's loop notes the first (session.drained) at the end of a
// turn run after stopping was set: produces are refused from then on, so a drained connection stays
// drained. Connections are woken each round so that an idle one takes its turn; acks waiting for
// the sync get theirs when the flusher reports it.
func (s *Server) drain() {
	deadline := time.Now().Add(drainTimeout)
	for {
		left := 0
		s.connMu.Lock()
		for ss := range s.conns {
			if !ss.drained.Load() {
				left++
				ss.wakeLoop()
			}
		}
		s.connMu.Unlock()
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			s.log.Warn("closing connections with produces still awaiting fsync", "connections", left, "waited", drainTimeout)
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	deadline = time.Now().Add(lingerTimeout)
	for {
		s.connMu.Lock()
		left := len(s.conns)
		s.connMu.Unlock()
		if left == 0 || time.Now().After(deadline) {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// OnBoot records the engine handle and the bound address.
func (s *Server) OnBoot(ge gnet.Engine) gnet.Action {
	s.ge = ge
	s.addr = gnetaddr.Resolve(ge, s.opts.Addr)
	s.log.Info("listening", "addr", s.addr.String(), "loops", s.opts.Loops)
	close(s.booted)
	return gnet.None
}

// OnOpen sets up the connection's session.
func (s *Server) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	s.stats.Accepted.Add(1)
	if s.stopping.Load() {
		return wire.AppendError(nil, 0, wire.CodeShuttingDown, "the broker is stopping"), gnet.Close
	}
	if s.stats.Connections.Add(1) > int64(s.opts.MaxConnections) {
		s.stats.Connections.Add(-1)
		s.stats.Refused.Add(1)
		return wire.AppendError(nil, 0, wire.CodeThrottled, "too many connections"), gnet.Close
	}
	ss, err := newSession(s, c)
	if err != nil {
		s.stats.Connections.Add(-1)
		return wire.AppendError(nil, 0, wire.CodeInternal, err.Error()), gnet.Close
	}
	if err := s.admit(ss); err != nil {
		s.stats.Connections.Add(-1)
		return wire.AppendError(nil, 0, wire.CodeThrottled, err.Error()), gnet.Close
	}
	c.SetContext(ss)
	return nil, gnet.None
}

// errTooManyUnauthenticated refuses a connection whose source address holds its share of
// unauthenticated connections.
var errTooManyUnauthenticated = errors.New("server: too many unauthenticated connections from this address")

// admit registers a new session as open and unauthenticated. When the source address already holds
// MaxUnauthenticatedPerAddr unauthenticated connections it refuses it. When MaxUnauthenticated is
// reached it closes the oldest unauthenticated connection to make room: a client that is about to
// authenticate always gets its chance, and one that never does is held for at most
// HandshakeTimeout, or less under a flood. Any goroutine (gnet loops, the TLS acceptor).
func (s *Server) admit(ss *session) error {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if s.unauthPerAddr[ss.addr] >= s.opts.MaxUnauthenticatedPerAddr {
		s.stats.Refused.Add(1)
		return errTooManyUnauthenticated
	}
	if len(s.unauth) >= s.opts.MaxUnauthenticated {
		var oldest *session
		for u := range s.unauth {
			if oldest == nil || u.opened < oldest.opened {
				oldest = u
			}
		}
		s.authenticatedLocked(oldest) // its slot is free now, not once its close has run
		s.stats.Refused.Add(1)
		oldest.closeWith(wire.CodeThrottled, "too many unauthenticated connections: the oldest is closed")
	}
	s.unauth[ss] = struct{}{}
	s.unauthPerAddr[ss.addr]++
	s.stats.Unauthenticated.Add(1)
	s.conns[ss] = struct{}{}
	return nil
}

// authenticated takes ss out of the unauthenticated connections, once: on completing the
// handshake, on eviction or on close. Any goroutine.
func (s *Server) authenticated(ss *session) {
	s.connMu.Lock()
	s.authenticatedLocked(ss)
	s.connMu.Unlock()
}

func (s *Server) authenticatedLocked(ss *session) {
	if _, ok := s.unauth[ss]; !ok {
		return
	}
	delete(s.unauth, ss)
	if n := s.unauthPerAddr[ss.addr] - 1; n > 0 {
		s.unauthPerAddr[ss.addr] = n
	} else {
		delete(s.unauthPerAddr, ss.addr)
	}
	s.stats.Unauthenticated.Add(-1)
}

// forget removes a closed session from the server's accounting.
func (s *Server) forget(ss *session) {
	s.stats.Connections.Add(-1)
	s.connMu.Lock()
	delete(s.conns, ss)
	s.authenticatedLocked(ss)
	s.connMu.Unlock()
}

// addrOf is the IP address of a connection's remote end (IPv4-mapped IPv6 unmapped), or the zero
// Addr for a connection that is not IP.
func addrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// OnClose tears the session down: subscriptions leave their partitions and groups.
func (s *Server) OnClose(c gnet.Conn, err error) gnet.Action {
	ss, ok := c.Context().(*session)
	if !ok {
		return gnet.None
	}
	s.forget(ss)
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

// OnTick closes idle connections and those whose handshake is overdue, and wakes sessions whose
// deliveries paused on a full outbound buffer, so they look again once gnet has drained it.
func (s *Server) OnTick() (time.Duration, gnet.Action) {
	now := time.Now().UnixNano()
	limit := s.opts.IdleTimeout.Nanoseconds()
	handshake := s.opts.HandshakeTimeout.Nanoseconds()
	s.connMu.Lock()
	for ss := range s.unauth {
		if now-ss.opened > handshake {
			s.authenticatedLocked(ss) // its slot is free now, not once its close has run
			ss.closeWith(wire.CodeTimeout, "handshake not completed within "+s.opts.HandshakeTimeout.String())
		}
	}
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
