package kafka

import (
	"net"

	"github.com/sluicemq/sluice/internal/tlsconn"
)

// TLS, as engine/server does it: gnet speaks plain TCP only, so TLS connections arrive on a second
// listener (crypto/tls) and each is driven by two goroutines, a reader that decrypts into an input
// buffer bounded to twice the largest request, and a loop that runs the same connection code gnet's
// OnTraffic runs, on input and on wake-ups.

// serveTLS accepts TLS connections until the listener closes.
func (s *Server) serveTLS(ln net.Listener) {
	defer close(s.tlsDone)
	// Input bound: twice the largest request (length prefix included).
	tlsconn.Serve(ln, s.log, "kafka", 2*(s.opts.MaxFrame+4), func(tc *tlsConn) func() {
		c := newConn(s, tc)
		if !s.conns.Admit(c) {
			return nil
		}
		return func() { s.runTLS(c, tc) }
	})
}

// runTLS is a TLS connection's event loop.
func (s *Server) runTLS(c *conn, tc *tlsConn) {
	defer func() {
		s.conns.Forget(c)
		c.close()
		tc.Close()
	}()
	tc.Run(c.onTraffic, 4) // 4: a request's length prefix
}

// tlsConn is a TLS connection as the connection's transport (internal/tlsconn).
type tlsConn = tlsconn.Conn
