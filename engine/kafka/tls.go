package kafka

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// TLS, as engine/server does it: gnet speaks plain TCP only, so TLS connections arrive on a second
// listener (crypto/tls) and each is driven by two goroutines, a reader that decrypts into an input
// buffer bounded to twice the largest request, and a loop that runs the same connection code gnet's
// OnTraffic runs, on input and on wake-ups.

// serveTLS accepts TLS connections until the listener closes.
func (s *Server) serveTLS(ln net.Listener) {
	defer close(s.tlsDone)
	for {
		nc, err := ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.log.Error("kafka tls accept", "err", err)
			}
			return
		}
		tc := newTLSConn(nc.(*tls.Conn), s.opts.MaxFrame)
		c := newConn(s, tc)
		if !s.admit(c) {
			nc.Close()
			continue
		}
		go tc.read()
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
		case <-tc.wake:
		case <-tc.closed:
			return
		}
		if c.onTraffic() == gnet.Close {
			return
		}
		if tc.readErr() != nil && tc.InboundBuffered() < 4 {
			return
		}
	}
}

// tlsConn adapts a tls.Conn to the connection's transport.
type tlsConn struct {
	nc *tls.Conn

	mu      sync.Mutex // guards in and err
	max     int        // input held before the reader waits for the loop: twice the largest request
	in      []byte     // decrypted input not yet discarded; the reader appends, the loop consumes
	err     error      // the reader's terminal error
	drained *sync.Cond // signalled by Discard; the reader waits on it when in is full

	wake      chan struct{} // 1-buffered: run the connection
	closed    chan struct{}
	closeOnce sync.Once
}

func newTLSConn(nc *tls.Conn, maxFrame int) *tlsConn {
	tc := &tlsConn{nc: nc, max: 2 * (maxFrame + 4), wake: make(chan struct{}, 1), closed: make(chan struct{})}
	tc.drained = sync.NewCond(&tc.mu)
	return tc
}

func (tc *tlsConn) read() {
	buf := make([]byte, 64<<10)
	for {
		tc.mu.Lock()
		for len(tc.in) >= tc.max && tc.err == nil {
			tc.drained.Wait()
		}
		stop := tc.err != nil
		tc.mu.Unlock()
		if stop {
			return
		}
		n, err := tc.nc.Read(buf)
		tc.mu.Lock()
		tc.in = append(tc.in, buf[:n]...)
		if err != nil {
			tc.err = err
		}
		tc.mu.Unlock()
		tc.signal()
		if err != nil {
			return
		}
	}
}

func (tc *tlsConn) signal() {
	select {
	case tc.wake <- struct{}{}:
	default:
	}
}

func (tc *tlsConn) readErr() error {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return tc.err
}

func (tc *tlsConn) Peek(n int) ([]byte, error) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if n > len(tc.in) {
		return nil, io.ErrShortBuffer
	}
	if n <= 0 {
		n = len(tc.in)
	}
	return tc.in[:n:n], nil
}

func (tc *tlsConn) Discard(n int) (int, error) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	n = min(n, len(tc.in))
	tc.in = tc.in[n:]
	if len(tc.in) == 0 {
		tc.in = tc.in[:0:0]
	}
	tc.drained.Signal()
	return n, nil
}

func (tc *tlsConn) InboundBuffered() int {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return len(tc.in)
}

// OutboundBuffered is 0: writes go straight to the TLS connection and block until the kernel takes
// them, which is the back-pressure gnet lacks.
func (tc *tlsConn) OutboundBuffered() int { return 0 }

func (tc *tlsConn) Write(b []byte) (int, error) {
	_ = tc.nc.SetWriteDeadline(time.Now().Add(30 * time.Second))
	return tc.nc.Write(b)
}

func (tc *tlsConn) Writev(bs [][]byte) (int, error) {
	_ = tc.nc.SetWriteDeadline(time.Now().Add(30 * time.Second))
	bufs := net.Buffers(bs)
	n, err := bufs.WriteTo(tc.nc)
	return int(n), err
}

func (tc *tlsConn) Wake(cb gnet.AsyncCallback) error {
	tc.signal()
	if cb != nil {
		_ = cb(nil, nil)
	}
	return nil
}

func (tc *tlsConn) Close() error {
	tc.closeOnce.Do(func() {
		close(tc.closed)
		tc.nc.Close()
		tc.mu.Lock()
		if tc.err == nil {
			tc.err = net.ErrClosed
		}
		tc.drained.Broadcast()
		tc.mu.Unlock()
	})
	return nil
}

func (tc *tlsConn) RemoteAddr() net.Addr { return tc.nc.RemoteAddr() }
func (tc *tlsConn) LocalAddr() net.Addr  { return tc.nc.LocalAddr() }
