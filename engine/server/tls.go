package server

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/panjf2000/gnet/v2"

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
		tc := newTLSConn(nc.(*tls.Conn), s.opts.MaxPreAuthFrame)
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
		go tc.read()
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
		case <-tc.wake:
		case f := <-tc.tasks:
			if f() != nil {
				return
			}
		case <-tc.closed:
			return
		}
		if ss.onTraffic() == gnet.Close {
			return
		}
		if tc.readErr() != nil && tc.InboundBuffered() < wire.FrameHeaderSize {
			return
		}
	}
}

// tlsConn adapts a tls.Conn to the session's transport.
type tlsConn struct {
	nc *tls.Conn

	mu sync.Mutex // guards max, in and err
	// max is the input held before the reader waits for the loop to catch up: twice the largest
	// frame the session accepts, MaxPreAuthFrame until the handshake completes, then MaxFrame.
	max     int
	in      []byte     // decrypted input not yet discarded; the reader appends, the loop consumes
	err     error      // the reader's terminal error
	drained *sync.Cond // signalled by Discard; the reader waits on it when in is full

	wake      chan struct{}     // 1-buffered: run the session
	tasks     chan func() error // async writes, run on the loop
	closed    chan struct{}
	closeOnce sync.Once
}

// established raises the input bound to the full frame size and lifts the handshake's read
// deadline. Called by the session's loop once the protocol handshake is complete.
func (tc *tlsConn) established(maxFrame int) {
	_ = tc.nc.SetReadDeadline(time.Time{})
	tc.mu.Lock()
	tc.max = 2 * maxFrame
	tc.drained.Signal() // a reader waiting on the old bound may read on
	tc.mu.Unlock()
}

func newTLSConn(nc *tls.Conn, maxFrame int) *tlsConn {
	tc := &tlsConn{nc: nc, max: 2 * maxFrame, wake: make(chan struct{}, 1), tasks: make(chan func() error, 64),
		closed: make(chan struct{})}
	tc.drained = sync.NewCond(&tc.mu)
	return tc
}

func (tc *tlsConn) read() {
	buf := make([]byte, 64<<10)
	for {
		tc.mu.Lock()
		for len(tc.in) >= tc.max && tc.err == nil {
			tc.drained.Wait() // bounded input: wait until the loop has served some
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
		tc.in = tc.in[:0:0] // let the buffer go; the reader starts a fresh one
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

func (tc *tlsConn) AsyncWrite(b []byte, cb gnet.AsyncCallback) error {
	task := func() error {
		_, err := tc.Write(b)
		if cb != nil {
			_ = cb(nil, err)
		}
		return err
	}
	select {
	case tc.tasks <- task:
	case <-tc.closed:
		return net.ErrClosed
	default:
		go func() {
			select {
			case tc.tasks <- task:
			case <-tc.closed:
			}
		}()
	}
	return nil
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

// CloseWrite sends close_notify and shuts the TCP write side, for a graceful stop.
func (tc *tlsConn) CloseWrite() error {
	_ = tc.nc.SetWriteDeadline(time.Now().Add(time.Second))
	return tc.nc.CloseWrite()
}
