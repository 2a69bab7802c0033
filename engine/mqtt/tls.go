package mqtt

import (
	"crypto/tls"
	"errors"
	"net"

	"github.com/panjf2000/gnet/v2"

	"github.com/sluicemq/sluice/internal/tlsconn"
)

// TLS, as engine/server and engine/kafka do it: gnet speaks plain TCP only, so TLS connections
// arrive on a second listener (crypto/tls) and each is driven by two goroutines, a reader that
// decrypts into an input buffer bounded to twice the largest packet, and a loop that runs the same
// connection code gnet's OnTraffic runs, on input and on wake-ups.

// serveTLS accepts TLS connections until the listener closes.
func (s *Server) serveTLS(ln net.Listener) {
	defer close(s.tlsDone)
	for {
		nc, err := ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.log.Error("mqtt tls accept", "err", err)
			}
			return
		}
		tc := tlsconn.New(nc.(*tls.Conn), 2*s.opts.MaxPacketSize)
		c := newConn(s, tc)
		if !s.admit(c) {
			nc.Close()
			continue
		}
		go tc.ReadLoop()
		go s.runTLS(c, tc)
	}
}

// runTLS is a TLS connection's event loop.
func (s *Server) runTLS(c *conn, tc *tlsConn) {
	defer func() {
		s.forget(c)
		c.close()
		tc.Close()
	}()
	for {
		select {
		case <-tc.Woken():
		case <-tc.Closed():
			return
		}
		if c.onTraffic() == gnet.Close {
			return
		}
		if tc.ReadErr() != nil && tc.InboundBuffered() < 2 {
			return
		}
	}
}

// tlsConn is a TLS connection as the connection's transport (internal/tlsconn).
type tlsConn = tlsconn.Conn
