package kafka

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/engine/auth"
	"github.com/sluicemq/sluice/internal/connset"
	"github.com/sluicemq/sluice/internal/gnetaddr"
	"github.com/sluicemq/sluice/internal/gnetrun"
	"github.com/sluicemq/sluice/wire"
)

// Options configure a Server. The zero value of each field takes the default named at it.
type Options struct {
	// Addr is the TCP listen address. Default 127.0.0.1:9092; port 0 picks a free port (see Addr()).
	Addr string
	// Engine is the broker core the listener fronts. Required.
	Engine *engine.Engine
	// Loops is the number of gnet event loops. Default runtime.NumCPU().
	Loops int
	// MaxFrame is the largest request accepted, in bytes, size prefix excluded; a larger one closes
	// the connection. Default 16 MiB (wire.DefaultMaxFrame).
	MaxFrame int
	// MinDurability is the least durability every produce gets (acks 0 is none, 1 written, -1
	// fsync): a produce asking for less is stored as if it had asked for this, and still answered
	// as it asked (acks 0 gets no answer). Default none: as each produce asks.
	MinDurability wire.Durability
	// MaxInflightProduceBytes caps the produce bytes of one connection whose answers wait for an
	// fsync; past it the connection's requests are not read (TCP pushes back) until acks drain.
	// Default 64 MiB.
	MaxInflightProduceBytes int
	// MaxInflightRequests caps the requests of one connection read and not yet answered; past it
	// nothing more is read until answers leave. Default 1024.
	MaxInflightRequests int
	// MaxConnections caps concurrent connections; extra ones are closed at once. Default 10000.
	MaxConnections int
	// MaxOutboundBytes caps what gnet may hold unsent for one connection: a Fetch answer waits
	// while more than this is queued (the ticker looks again). Default 4 MiB.
	MaxOutboundBytes int
	// MaxOutboundTotal caps what gnet holds unsent for all the listener's connections together:
	// past it, a Fetch answer waits on a connection with anything unsent, and one with nothing
	// unsent carries at most 64 KiB of records (beyond its first batch), so consumers that stop
	// reading cannot hold more than this between them. Default 32 MiB.
	MaxOutboundTotal int
	// MaxFetchBytes caps one Fetch answer's record bytes whatever the client asks (a single batch
	// larger than it is still sent whole, as Kafka does). Default 8 MiB.
	MaxFetchBytes int
	// AdvertisedAddr is the host:port Metadata names as the broker. Default: the address each
	// connection reached (its local address).
	AdvertisedAddr string
	// TLSAddr and TLSConfig, when TLSConfig is set, open a second listener that serves the same
	// protocol over crypto/tls. Default TLSAddr 127.0.0.1:9093.
	TLSAddr   string
	TLSConfig *tls.Config
	// IdleTimeout closes a connection that sent nothing for this long (Kafka's
	// connections.max.idle.ms; clients reconnect when they need to). Default 10 min.
	IdleTimeout time.Duration
	// HandshakeTimeout closes a connection that has not authenticated this long after it opened,
	// when authentication is required. Default 10 s.
	HandshakeTimeout time.Duration
	// Authenticator, when Enabled, requires SASL (PLAIN, and SCRAM when it holds users) before any
	// request but ApiVersions and the SASL ones.
	Authenticator *auth.Authenticator
	// ACL, when set, decides what a principal may do; nil allows everything.
	ACL auth.ACL
	// Logger receives connection-level logs. Default slog.Default().
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	if o.Addr == "" {
		o.Addr = "127.0.0.1:9092"
	}
	if o.TLSAddr == "" {
		o.TLSAddr = "127.0.0.1:9093"
	}
	if o.Loops == 0 {
		o.Loops = runtime.NumCPU()
	}
	if o.MaxFrame == 0 {
		o.MaxFrame = wire.DefaultMaxFrame
	}
	if o.MaxInflightProduceBytes == 0 {
		o.MaxInflightProduceBytes = 64 << 20
	}
	if o.MaxInflightRequests == 0 {
		o.MaxInflightRequests = 1024
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
	if o.MaxFetchBytes == 0 {
		o.MaxFetchBytes = 8 << 20
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 10 * time.Minute
	}
	if o.HandshakeTimeout == 0 {
		o.HandshakeTimeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Validate reports the first invalid option.
func (o *Options) Validate() error {
	switch {
	case o.Engine == nil:
		return errors.New("kafka: Engine is required")
	case o.Loops < 1:
		return fmt.Errorf("kafka: Loops %d", o.Loops)
	case o.MaxFrame < preAuthMaxFrame:
		return fmt.Errorf("kafka: MaxFrame %d below %d", o.MaxFrame, preAuthMaxFrame)
	case o.MinDurability > wire.DurabilityFsync:
		return fmt.Errorf("kafka: MinDurability %d", o.MinDurability)
	case o.MaxInflightProduceBytes < 1 || o.MaxInflightRequests < 1 || o.MaxConnections < 1 ||
		o.MaxOutboundBytes < 1 || o.MaxOutboundTotal < 1 || o.MaxFetchBytes < 1 || o.HandshakeTimeout < 0 || o.IdleTimeout < 0:
		return errors.New("kafka: MaxInflightProduceBytes, MaxInflightRequests, MaxConnections, MaxOutboundBytes, MaxOutboundTotal, MaxFetchBytes must be positive, HandshakeTimeout and IdleTimeout not negative")
	}
	return nil
}

// preAuthMaxFrame is the largest request a connection may send before it has authenticated (when
// authentication is required): room for ApiVersions and the SASL exchanges, no more.
const preAuthMaxFrame = 64 << 10

// Server is a running Kafka-protocol listener.
type Server struct {
	gnet.BuiltinEventEngine

	opts  Options
	e     *engine.Engine
	log   *slog.Logger
	addr  net.Addr
	ge    gnet.Engine
	coord *coordinator
	// dropGroups unregisters the coordinator from the engine's group sources (Close).
	dropGroups func()

	booted chan struct{}
	done   chan error

	conns connset.Set[*conn] // open connections, TCP and TLS; stopping once Close began

	tlsLn   net.Listener
	tlsDone chan struct{}

	// nextProducerID hands out producer ids for InitProducerId: seeded at random on start, so ids
	// given before a restart (still in the partitions' rebuilt idempotence state) are not given again.
	nextProducerID atomic.Int64
	// txns maps transactional ids to producer ids and epochs (txn.go).
	txns txnRegistry

	// outbound is the sum of every connection's outCounted: bytes gnet holds unsent, as last
	// measured on each connection's loop.
	outbound atomic.Int64

	// auth is the authenticator and ACL in force (SetAuth replaces them on SIGHUP).
	auth atomic.Pointer[authState]

	stats    Stats
	closeOne sync.Once
	closeErr error
}

// Start listens and serves until Close. It returns once the listener is up.
func Start(opts Options) (*Server, error) {
	opts.setDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	s := &Server{opts: opts, e: opts.Engine, log: opts.Logger, booted: make(chan struct{}), done: make(chan error, 1)}
	s.conns.Init(opts.MaxConnections, &s.stats.Accepted.Uint64, &s.stats.Refused.Uint64, &s.stats.Connections.Int64)
	s.auth.Store(&authState{authn: opts.Authenticator, acl: opts.ACL})
	s.coord = newCoordinator(opts.Engine, s.acl, opts.Logger)
	if opts.Engine != nil {
		s.dropGroups = opts.Engine.AddGroupSource(s.coord.groupMembers)
	}
	s.nextProducerID.Store(randomProducerBase())
	loops := gnetrun.Config{Addr: opts.Addr, Loops: opts.Loops, ReadBuffer: 256 << 10, WriteBuffer: 256 << 10, Log: s.log}
	if err := gnetrun.Start(s, loops, s.booted, s.done); err != nil {
		if s.dropGroups != nil {
			s.dropGroups()
		}
		return nil, fmt.Errorf("kafka: listen %s: %w", opts.Addr, err)
	}
	if opts.TLSConfig != nil {
		ln, err := tls.Listen("tcp", opts.TLSAddr, opts.TLSConfig)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("kafka: listen tls %s: %w", opts.TLSAddr, err)
		}
		s.tlsLn, s.tlsDone = ln, make(chan struct{})
		s.log.Info("kafka listening for TLS", "addr", ln.Addr().String())
		go s.serveTLS(ln)
	}
	return s, nil
}

// Addr is the address the listener is bound to.
func (s *Server) Addr() net.Addr { return s.addr }

// TLSAddr is the TLS listener's address, or nil without TLS.
func (s *Server) TLSAddr() net.Addr {
	if s.tlsLn == nil {
		return nil
	}
	return s.tlsLn.Addr()
}

// Stats returns the listener's counters.
func (s *Server) Stats() *Stats { return &s.stats }

// Close stops the listener: new connections are refused, a Produce then refused with
// REQUEST_TIMED_OUT, produces being served or waiting for an fsync get it requested and are
// answered (at most drainTimeout), then the loops stop. It does not close the
// engine. A second call waits for the first.
func (s *Server) Close() error {
	s.closeOne.Do(func() { s.closeErr = s.shutdown() })
	return s.closeErr
}

// drainTimeout bounds how long Close waits for fsync-level produce answers to leave.
const drainTimeout = 5 * time.Second

func (s *Server) shutdown() error {
	s.conns.Stop()
	if s.tlsLn != nil {
		s.tlsLn.Close()
		<-s.tlsDone
	}
	s.conns.Drain(drainTimeout, func(c *conn) bool {
		if c.producing.Load() {
			return true // its answer is not queued yet (conn.producing)
		}
		if c.waitingAcks.Load() == 0 {
			return false
		}
		c.signal(flagSynced) // the loop requests the syncs again and answers what is covered
		return true
	})
	s.conns.Range(func(c *conn) {
		if tc, ok := c.t.(*tlsConn); ok {
			tc.Close()
		}
	})
	s.coord.close()
	if s.dropGroups != nil {
		s.dropGroups()
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
	s.addr = gnetaddr.Resolve(ge, s.opts.Addr)
	s.log.Info("kafka listening", "addr", s.addr.String(), "loops", s.opts.Loops)
	close(s.booted)
	return gnet.None
}

// OnOpen sets up the connection's state; a connection past MaxConnections or arriving while the
// listener stops is closed at once (Kafka has no frame to say why before a request).
func (s *Server) OnOpen(gc gnet.Conn) ([]byte, gnet.Action) {
	c := newConn(s, gc)
	if !s.conns.Admit(c) {
		return nil, gnet.Close
	}
	gc.SetContext(c)
	return nil, gnet.None
}

// OnClose tears the connection's state down.
func (s *Server) OnClose(gc gnet.Conn, _ error) gnet.Action {
	if c, ok := gc.Context().(*conn); ok {
		s.conns.Forget(c)
		c.close()
	}
	return gnet.None
}

// OnTraffic serves every whole request buffered and whatever other goroutines finished.
func (s *Server) OnTraffic(gc gnet.Conn) gnet.Action {
	c, ok := gc.Context().(*conn)
	if !ok {
		return gnet.Close
	}
	return c.onTraffic()
}

// tickInterval paces the resumption of Fetch answers paused by a full outbound buffer and the
// handshake timeout's checks.
const tickInterval = 50 * time.Millisecond

// OnTick wakes connections whose Fetch answer paused on a full outbound buffer, and closes those
// that have not authenticated within HandshakeTimeout or sent nothing for IdleTimeout. A connection
// with a request still unanswered (a long-poll Fetch) is not idle.
func (s *Server) OnTick() (time.Duration, gnet.Action) {
	now := time.Now().UnixNano()
	limit := s.opts.HandshakeTimeout.Nanoseconds()
	idle := s.opts.IdleTimeout.Nanoseconds()
	s.conns.Range(func(c *conn) {
		if !c.authDone.Load() && now-c.opened > limit && c.closing.CompareAndSwap(false, true) {
			s.log.Debug("kafka: closing connection: not authenticated in time", "remote", c.remote)
			_ = c.t.Close()
			return
		}
		if idle > 0 && !c.busy.Load() && now-c.lastActive.Load() > idle && c.closing.CompareAndSwap(false, true) {
			s.log.Debug("kafka: closing idle connection", "remote", c.remote)
			_ = c.t.Close()
			return
		}
		if c.blocked.CompareAndSwap(true, false) {
			c.signal(flagRetry)
		}
	})
	return tickInterval, gnet.None
}
