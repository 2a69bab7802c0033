// Package tlsconn adapts a crypto/tls connection to the transport the network faces' event-loop code
// runs on (gnet's Conn methods that code uses). gnet speaks plain TCP only, so TLS connections arrive
// on a second listener and each is driven by two goroutines: ReadLoop, which decrypts into an input
// buffer bounded to MaxInput bytes, and the face's own loop, which waits on Woken (input arrived, or a
// Wake), runs the same connection code gnet's OnTraffic runs, and runs the Tasks AsyncWrite queued.
// engine/server, engine/kafka and engine/mqtt use it; Serve and Run are the accept loop and the event loop
// the faces without AsyncWrite share.
package tlsconn

import (
	"crypto/tls"
	"io"
	"net"
	"sync"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// writeTimeout bounds one write: a peer that stops reading for this long fails the write, and the
// face closes the connection.
const writeTimeout = 30 * time.Second

// Conn is one TLS connection. Peek, Discard and InboundBuffered are for the face's loop; ReadLoop
// runs on its own goroutine; Close may be called from anywhere, more than once.
type Conn struct {
	nc *tls.Conn

	mu      sync.Mutex // guards max, in and err
	max     int        // input held before ReadLoop waits for the loop to catch up (SetMaxInput)
	in      []byte     // decrypted input not yet discarded; ReadLoop appends, the loop consumes
	err     error      // ReadLoop's terminal error
	drained *sync.Cond // signalled by Discard; ReadLoop waits on it when in is full

	wake      chan struct{}     // 1-buffered: run the connection
	tasks     chan func() error // AsyncWrite's writes, run on the loop
	closed    chan struct{}
	closeOnce sync.Once
}

// New wraps nc; ReadLoop holds at most maxInput bytes of decrypted input the loop has not discarded.
func New(nc *tls.Conn, maxInput int) *Conn {
	c := &Conn{nc: nc, max: maxInput, wake: make(chan struct{}, 1), tasks: make(chan func() error, 64),
		closed: make(chan struct{})}
	c.drained = sync.NewCond(&c.mu)
	return c
}

// SetMaxInput changes the input bound (e.g. raised once a connection has authenticated) and lifts
// any read deadline set for the handshake.
func (c *Conn) SetMaxInput(n int) {
	_ = c.nc.SetReadDeadline(time.Time{})
	c.mu.Lock()
	c.max = n
	c.drained.Signal() // a reader waiting on the old bound may read on
	c.mu.Unlock()
}

// ReadLoop reads and decrypts into the input buffer until an error or Close, signalling Woken after
// each read. Run it on its own goroutine.
func (c *Conn) ReadLoop() {
	buf := make([]byte, 64<<10)
	for {
		c.mu.Lock()
		for len(c.in) >= c.max && c.err == nil {
			c.drained.Wait() // bounded input: wait until the loop has served some
		}
		stop := c.err != nil
		c.mu.Unlock()
		if stop {
			return
		}
		n, err := c.nc.Read(buf)
		c.mu.Lock()
		c.in = append(c.in, buf[:n]...)
		if err != nil {
			c.err = err
		}
		c.mu.Unlock()
		c.signal()
		if err != nil {
			return
		}
	}
}

func (c *Conn) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Woken receives when input arrived or Wake was called: the loop should run the connection.
func (c *Conn) Woken() <-chan struct{} { return c.wake }

// Tasks receives the writes AsyncWrite queued; the loop runs each and closes on an error.
func (c *Conn) Tasks() <-chan func() error { return c.tasks }

// Closed is closed by Close.
func (c *Conn) Closed() <-chan struct{} { return c.closed }

// ReadErr is ReadLoop's terminal error (io.EOF at the peer's close), nil while it reads.
func (c *Conn) ReadErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Peek returns the first n bytes of input (all of it for n <= 0), or io.ErrShortBuffer when fewer
// have arrived. The slice stays valid until Discard.
func (c *Conn) Peek(n int) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n > len(c.in) {
		return nil, io.ErrShortBuffer
	}
	if n <= 0 {
		n = len(c.in)
	}
	return c.in[:n:n], nil
}

// Discard drops the first n bytes of input.
func (c *Conn) Discard(n int) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n = min(n, len(c.in))
	c.in = c.in[n:]
	if len(c.in) == 0 {
		c.in = c.in[:0:0] // let the buffer go; the reader starts a fresh one
	}
	c.drained.Signal()
	return n, nil
}

// InboundBuffered is the input held.
func (c *Conn) InboundBuffered() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.in)
}

// OutboundBuffered is 0: writes go straight to the TLS connection and block until the kernel takes
// them, which is the back-pressure gnet lacks.
func (c *Conn) OutboundBuffered() int { return 0 }

// Write writes b, failing after writeTimeout.
func (c *Conn) Write(b []byte) (int, error) {
	_ = c.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
	return c.nc.Write(b)
}

// Writev writes bs in order, failing after writeTimeout.
func (c *Conn) Writev(bs [][]byte) (int, error) {
	_ = c.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
	bufs := net.Buffers(bs)
	n, err := bufs.WriteTo(c.nc)
	return int(n), err
}

// AsyncWrite queues a write of b for the loop (Tasks) and calls cb with its result there. It returns
// net.ErrClosed after Close.
func (c *Conn) AsyncWrite(b []byte, cb gnet.AsyncCallback) error {
	task := func() error {
		_, err := c.Write(b)
		if cb != nil {
			_ = cb(nil, err)
		}
		return err
	}
	select {
	case c.tasks <- task:
	case <-c.closed:
		return net.ErrClosed
	default:
		go func() {
			select {
			case c.tasks <- task:
			case <-c.closed:
			}
		}()
	}
	return nil
}

// Wake makes the loop run the connection, then calls cb.
func (c *Conn) Wake(cb gnet.AsyncCallback) error {
	c.signal()
	if cb != nil {
		_ = cb(nil, nil)
	}
	return nil
}

// Close closes the connection and ends ReadLoop.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.nc.Close()
		c.mu.Lock()
		if c.err == nil {
			c.err = net.ErrClosed
		}
		c.drained.Broadcast()
		c.mu.Unlock()
	})
	return nil
}

func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }
func (c *Conn) LocalAddr() net.Addr  { return c.nc.LocalAddr() }

// CloseWrite sends close_notify and shuts the TCP write side, for a graceful stop.
func (c *Conn) CloseWrite() error {
	_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	return c.nc.CloseWrite()
}
