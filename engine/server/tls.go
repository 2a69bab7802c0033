package server

import (
	"crypto/tls"
	"errors"
	"net"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/sluicemq/sluice/internal/tlsconn"

	"github.com/sluicemq/sluice/wire"
)

// TLS. gnet speaks plain TCP only, so TLS connections arrive on a second listener (crypto/tls) and
// each is driven by two goroutines: a reader that decrypts into an input buffer, and a loop that runs
// the same session code gnet's OnTraffic runs — on input, on a wake-up, after an async write. The
// engine cannot tell the two kinds of connection apart.

// serveTLS accepts TLS connections until the listener closes.
func (s *Server) serveTLS(ln net.Listener) {
	defer close(s.tlsDone)
	for {
		nc, err := ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.log.Error("tls accept", "err", err)
			}
			return
		}
		s.stats.Accepted.Add(1)
		if s.stats.Connections.Add(1) > int64(s.opts.MaxConnections) {
			s.stats.Connections.Add(-1)
			s.stats.Refused.Add(1)
			go refuseTLS(nc, "too many connections")
			continue
		}
		tc := tlsconn.New(nc.(*tls.Conn), 2*s.opts.MaxPreAuthFrame) // raised by established
		// The TLS handshake and the protocol's must both be done before this read deadline (a second
		// after the ticker's, which closes with an error frame); establish clears it.
		_ = nc.SetReadDeadline(time.Now().Add(s.opts.HandshakeTimeout + time.Second))
		ss, err := newSession(s, tc)
		if err != nil {
			s.stats.Connections.Add(-1)
			nc.Close()
			continue
		}
		if err := s.admit(ss); err != nil {
			s.stats.Connections.Add(-1)
			go refuseTLS(nc, err.Error())
			continue
		}
		s.connMu.Lock()
		s.tlsConns[tc] = struct{}{}
		s.connMu.Unlock()
		go tc.ReadLoop()
		go s.runTLS(ss, tc)
	}
}

// refuseTLS writes an error frame to a connection the acceptor turned away and closes it. On its
// own goroutine: the write runs the TLS handshake, which the acceptor must not wait for.
func refuseTLS(nc net.Conn, msg string) {
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = nc.Write(wire.AppendError(nil, 0, wire.CodeThrottled, msg))
	nc.Close()
}

// runTLS is a TLS connection's event loop.
func (s *Server) runTLS(ss *session, tc *tlsConn) {
	defer func() {
		s.forget(ss)
		s.connMu.Lock()
		delete(s.tlsConns, tc)
		s.connMu.Unlock()
		ss.close()
		tc.Close()
	}()
	for {
		select {
		case <-tc.Woken():
		case f := <-tc.Tasks():
			if f() != nil {
				return
			}
		case <-tc.Closed():
			return
		}
		if ss.onTraffic() == gnet.Close {
			return
		}
		if tc.ReadErr() != nil && tc.InboundBuffered() < wire.FrameHeaderSize {
			return
		}
	}
}

// tlsConn is a TLS connection as the session's transport (internal/tlsconn).
type tlsConn = tlsconn.Conn
