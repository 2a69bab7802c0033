package mqtt

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/engine/auth"
	"github.com/sluicemq/sluice/internal/connset"
	"github.com/sluicemq/sluice/internal/gnetaddr"
	"github.com/sluicemq/sluice/internal/gnetrun"
)

// Server is a running MQTT listener.
type Server struct {
	gnet.BuiltinEventEngine

	opts Options
	e    *engine.Engine
	log  *slog.Logger
	addr net.Addr
	ge   gnet.Engine

	booted chan struct{}
	done   chan error

	conns connset.Set[*conn] // open connections, TCP and TLS; stopping once Close began

	tlsLn   net.Listener
	tlsDone chan struct{}

	// auth is the authenticator and ACL in force (SetAuth replaces them on SIGHUP).
	auth atomic.Pointer[authState]

	sessions *sessionTable
	retained *retainedStore

	stats    Stats
	closeOne sync.Once
	closeErr error
}

// authState is one consistent pair of authenticator and ACL, immutable once stored.
type authState struct {
	authn *auth.Authenticator
	acl   auth.ACL
}

func (s *Server) acl() auth.ACL              { return s.auth.Load().acl }
func (s *Server) authn() *auth.Authenticator { return s.auth.Load().authn }

// Start listens and serves until Close. It returns once the listener is up. It loads the retained
// messages and persistent sessions stored under the engine's data directory (DATA/mqtt).
func Start(opts Options) (*Server, error) {
	opts.setDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	s := &Server{opts: opts, e: opts.Engine, log: opts.Logger, booted: make(chan struct{}), done: make(chan error, 1)}
	s.conns.Init(opts.MaxConnections, &s.stats.Accepted.Uint64, &s.stats.Refused.Uint64, &s.stats.Connections.Int64)
	s.auth.Store(&authState{authn: opts.Authenticator, acl: opts.ACL})
	var err error
	if s.retained, err = openRetained(stateDir(opts.Engine), s.log); err != nil {
		return nil, err
	}
	if s.sessions, err = openSessions(s, stateDir(opts.Engine)); err != nil {
		return nil, err
	}
	loops := gnetrun.Config{Addr: opts.Addr, Loops: opts.Loops, ReadBuffer: 64 << 10, WriteBuffer: 64 << 10, Log: s.log}
	if err := gnetrun.Start(s, loops, s.booted, s.done); err != nil {
		return nil, fmt.Errorf("mqtt: listen %s: %w", opts.Addr, err)
	}
	if opts.TLSConfig != nil {
		ln, err := tls.Listen("tcp", opts.TLSAddr, opts.TLSConfig)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("mqtt: listen tls %s: %w", opts.TLSAddr, err)
		}
		s.tlsLn, s.tlsDone = ln, make(chan struct{})
		s.log.Info("mqtt listening for TLS", "addr", ln.Addr().String())
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

// Close stops the listener: new connections are refused, open ones read no more packets, the
// QoS 1/2 acknowledgements waiting for an fsync (MinDurability fsync) have their syncs requested
// and are sent (waiting at most drainTimeout), then the connections are closed (their wills are
// not published: the broker, not the client, went away) and the loops stop. It does not close the
// engine. A second call waits for the first.
func (s *Server) Close() error {
	s.closeOne.Do(func() { s.closeErr = s.shutdown() })
	return s.closeErr
}

func (s *Server) shutdown() error {
	s.conns.Stop()
	if s.tlsLn != nil {
		s.tlsLn.Close()
		<-s.tlsDone
	}
	// The acknowledgements of stored PUBLISHes waiting for an fsync are sent before the
	// connections close (stopping connections read no more packets, so the wait ends).
	s.conns.Drain(drainTimeout, func(c *conn) bool {
		if c.reading.Load() {
			return true // a PUBLISH being served may be stored and not yet acknowledged (conn.reading)
		}
		if c.waitingAcks.Load() == 0 {
			return false
		}
		c.signal(flagEvent) // a stopping loop requests the syncs again and answers what is covered
		return true
	})
	s.conns.Range(func(c *conn) {
		if tc, ok := c.t.(*tlsConn); ok {
			tc.Close()
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.ge.Stop(ctx)
	if rerr := <-s.done; err == nil {
		err = rerr
	}
	s.sessions.close()
	return err
}

// drainTimeout bounds how long Close waits for acknowledgements waiting for an fsync to leave; an
// acknowledgement still waiting then is not sent (its connection closes: the client sends the
// PUBLISH again, marked DUP, and the DUP look-up finds it stored).
const drainTimeout = 5 * time.Second

// OnBoot records the engine handle and the bound address.
func (s *Server) OnBoot(ge gnet.Engine) gnet.Action {
	s.ge = ge
	s.addr = gnetaddr.Resolve(ge, s.opts.Addr)
	s.log.Info("mqtt listening", "addr", s.addr.String(), "loops", s.opts.Loops)
	close(s.booted)
	return gnet.None
}

// OnOpen sets up the connection's state; a connection past MaxConnections or arriving while the
// listener stops is closed at once, before CONNECT (there is nothing to answer yet).
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

// OnTraffic serves every whole packet buffered and whatever other goroutines finished.
func (s *Server) OnTraffic(gc gnet.Conn) gnet.Action {
	c, ok := gc.Context().(*conn)
	if !ok {
		return gnet.Close
	}
	return c.onTraffic()
}

// tickInterval paces keep-alive and connect-timeout checks, the resumption of deliveries paused on
// a full outbound buffer, and the look for topics that exact subscriptions wait for.
const tickInterval = 100 * time.Millisecond

// OnTick closes connections past their keep-alive (1.5 times it, MQTT 3.1.2.10) or that have not
// sent CONNECT within ConnectTimeout, and wakes the others that wait for something the ticker
// paces. Delayed wills and expired sessions are handled by the session table.
func (s *Server) OnTick() (time.Duration, gnet.Action) {
	now := time.Now().UnixNano()
	connectLimit := s.opts.ConnectTimeout.Nanoseconds()
	s.conns.Range(func(c *conn) {
		last := c.lastRecv.Load()
		ka := c.keepAlive.Load()
		switch {
		case !c.connected.Load() && now-c.opened > connectLimit:
			if c.closing.CompareAndSwap(false, true) {
				s.log.Debug("mqtt: closing connection: no CONNECT in time", "remote", c.remote)
				_ = c.t.Close()
			}
		case ka > 0 && now-last > ka+ka/2:
			c.signal(flagKeepAlive)
		case c.waitsTick.Load():
			c.signal(flagRetry)
		}
	})
	s.sessions.tick(time.Now())
	return tickInterval, gnet.None
}
