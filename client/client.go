package client

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicemq/sluice/wire"
)

// Client is a connection to one broker, shared by any number of producers, consumers and admin
// calls from any goroutines. Requests are pipelined on one TCP connection. When the connection
// fails the client reconnects in the background, with backoff, until Close.
type Client struct {
	opts Options
	addr string
	log  *slog.Logger

	mu      sync.Mutex
	cn      *conn         // guarded by mu: the live connection; nil while reconnecting
	ready   chan struct{} // guarded by mu: closed once cn is set; replaced when cn is lost
	closed  bool          // guarded by mu
	connSeq uint64        // guarded by mu: connections made so far
	// principal is guarded by mu: the name the broker gave the authenticated principal; "" without
	// authentication. Reply inboxes are named after it (request.go).
	principal string

	closeCh  chan struct{}   // closed by Close
	closeCtx context.Context // cancelled by Close
	stop     context.CancelFunc
	wg       sync.WaitGroup

	reqMu sync.Mutex // guards req
	req   *requester // the reply inbox, made by the first Request or Reply

	subMu   sync.RWMutex
	subs    map[uint32]*subscription // guarded by subMu: open subscriptions by id, all connections
	nextSub atomic.Uint32

	// brokerMaxBatch is the batch limit (bytes) the broker announced in the last handshake, 0 when it
	// announced none. Written by each handshake, read by producers as they size batches.
	brokerMaxBatch atomic.Int64
}

// Dial connects to the broker at addr and completes the handshake. ctx bounds the first connection
// only; later reconnections are bounded by the dial timeout option. Errors: ErrOptions for invalid
// options; ErrHandshake when the broker turns the connection away or answers nonsense; an error
// matching wire.CodeAuthFailed for refused credentials; the network's or ctx's error.
func Dial(ctx context.Context, addr string, opts ...Option) (*Client, error) {
	o := DefaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	c := &Client{
		opts: o, addr: addr, log: o.Logger.With("broker", addr),
		ready: make(chan struct{}), closeCh: make(chan struct{}),
		subs: make(map[uint32]*subscription),
	}
	c.closeCtx, c.stop = context.WithCancel(context.Background())
	c.connSeq = 1
	cn, err := c.connect(ctx, 1)
	if err != nil {
		c.stop()
		return nil, err
	}
	c.install(cn)
	c.wg.Add(1)
	go c.supervise(cn)
	return c, nil
}

// Close closes the connection and stops reconnecting. Requests in flight fail with an error
// matching both ErrConnectionLost and ErrClosed. Close producers (which drain) and consumers (which
// commit) first.
func (c *Client) Close() error {
	c.reqMu.Lock()
	r := c.req
	c.req = nil
	c.reqMu.Unlock()
	if r != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		r.close(ctx)
		cancel()
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	cn := c.cn
	close(c.closeCh)
	c.stop()
	c.mu.Unlock()
	if cn != nil {
		cn.fail(ErrClosed)
	}
	c.wg.Wait()
	return nil
}

// install makes cn the live connection and wakes everyone waiting for one.
func (c *Client) install(cn *conn) bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		cn.fail(ErrClosed)
		return false
	}
	if cn.lost {
		c.mu.Unlock()
		return true // it failed before it was installed: supervise sees it done and replaces it
	}
	c.cn = cn
	close(c.ready)
	c.mu.Unlock()
	return true
}

// connLost forgets cn if it is the live connection. Called by conn.fail before it closes done.
func (c *Client) connLost(cn *conn) {
	c.mu.Lock()
	cn.lost = true
	if c.cn == cn {
		c.cn = nil
		c.ready = make(chan struct{})
	}
	c.mu.Unlock()
}

// supervise waits for the live connection to fail and replaces it, until Close. A connection that
// failed within ReconnectMax of being made does not reset the backoff: the next dial waits for it
// first, so a broker that drops every connection at once is not redialled in a tight loop.
func (c *Client) supervise(cn *conn) {
	defer c.wg.Done()
	backoff := c.opts.ReconnectMin
	for {
		select {
		case <-cn.done:
		case <-c.closeCh:
			return
		}
		c.log.Warn("sluice: connection lost; reconnecting", "conn", cn.seq, "err", cn.err)
		if time.Since(cn.made) >= c.opts.ReconnectMax {
			backoff = c.opts.ReconnectMin // it was up a while: redial at once
		} else {
			select {
			case <-time.After(backoff - backoff/4 + time.Duration(rand.Int64N(int64(backoff/2)+1))):
			case <-c.closeCh:
				return
			}
			backoff = min(backoff*2, c.opts.ReconnectMax)
		}
		for {
			c.mu.Lock()
			c.connSeq++
			seq := c.connSeq
			c.mu.Unlock()
			ctx, cancel := c.closeContext()
			ncn, err := c.connect(ctx, seq)
			cancel()
			if err == nil {
				cn = ncn
				break
			}
			c.log.Info("sluice: reconnect failed", "err", err, "retry_in", backoff)
			// ±25% jitter, so clients dropped together do not return together.
			wait := backoff - backoff/4 + time.Duration(rand.Int64N(int64(backoff/2)+1))
			select {
			case <-time.After(wait):
			case <-c.closeCh:
				return
			}
			backoff = min(backoff*2, c.opts.ReconnectMax)
		}
		if !c.install(cn) {
			return
		}
		c.log.Info("sluice: reconnected", "conn", cn.seq, "server", cn.serverID)
	}
}

// closeContext returns a context cancelled by Close.
func (c *Client) closeContext() (context.Context, context.CancelFunc) {
	return context.WithCancel(c.closeCtx)
}

// requestContext bounds a request the client makes on its own behalf.
func (c *Client) requestContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.closeCtx, c.opts.RequestTimeout)
}

// liveConn returns the live connection without waiting: nil while there is none or once the client
// is closed.
func (c *Client) liveConn() *conn {
	c.mu.Lock()
	cn := c.cn
	if c.closed {
		cn = nil
	}
	c.mu.Unlock()
	return cn
}

// waitConn returns the live connection, waiting for a reconnection if there is none.
func (c *Client) waitConn(ctx context.Context) (*conn, error) {
	for {
		c.mu.Lock()
		cn, ready, closed := c.cn, c.ready, c.closed
		c.mu.Unlock()
		if closed {
			return nil, ErrClosed
		}
		if cn != nil {
			return cn, nil
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.closeCh:
			return nil, ErrClosed
		}
	}
}

// call awaits one answer for a synchronous request.
type call struct {
	ch   chan struct{} // capacity 1: signalled once complete has run
	body []byte        // a copy of the answer's body
	err  error
	// onReply, when set, also sees the answer on the reader goroutine, before frames behind it are
	// dispatched (a subscription must know its start offsets before its first delivery).
	onReply func(body []byte)
}

func (k *call) complete(f wire.Frame, err error) {
	if err == nil && k.onReply != nil {
		k.onReply(f.Body)
	}
	k.body = append(k.body[:0], f.Body...)
	k.err = err
	k.ch <- struct{}{}
}

// roundTrip sends one request on the live connection and waits for its answer's body.
func (c *Client) roundTrip(ctx context.Context, op wire.Op, body func([]byte) []byte) ([]byte, error) {
	cn, err := c.waitConn(ctx)
	if err != nil {
		return nil, err
	}
	return c.roundTripOn(ctx, cn, op, &call{ch: make(chan struct{}, 1)}, body)
}

// appendFunc adapts a body encoder (a message's Append method value) to wire.AppendMessage. A func
// value is pointer-shaped: the conversion to an interface does not allocate.
type appendFunc func([]byte) []byte

func (f appendFunc) Append(dst []byte) []byte { return f(dst) }

func (c *Client) roundTripOn(ctx context.Context, cn *conn, op wire.Op, k *call, body func([]byte) []byte) ([]byte, error) {
	corr, err := cn.register(k)
	if err != nil {
		return nil, err
	}
	buf, start := cn.beginFrame(op, 0, corr)
	buf, err = wire.AppendMessage(buf, appendFunc(body))
	if err != nil {
		// A field too long to encode: nothing is sent and the connection is untouched.
		cn.abandonFrame(buf, start)
		cn.take(corr)
		return nil, fmt.Errorf("client: %s request: %w", op, err)
	}
	if err := cn.endFrame(buf, start); err != nil {
		if cn.take(corr) != nil {
			return nil, err
		}
		<-k.ch
		return k.body, k.err
	}
	select {
	case <-k.ch:
		return k.body, k.err
	case <-ctx.Done():
		if cn.take(corr) != nil {
			return nil, ctx.Err()
		}
		<-k.ch // the answer won the race
		return k.body, k.err
	}
}

// subscription is one broker-side subscription: an id on one connection, owned by a Consumer. A
// consumer opens new ones after a reconnect; deliveries for ids of a dead connection are dropped.
type subscription struct {
	id     uint32
	cn     *conn
	cons   *Consumer
	window uint32 // credit bytes granted at subscribe; Credit frames top it back up

	// owed is the bytes delivered and consumed (or dropped) but not yet granted back. Guarded by
	// cons.mu.
	owed int
}

func (c *Client) newSubID() uint32 {
	for {
		if id := c.nextSub.Add(1); id != 0 {
			return id
		}
	}
}

func (c *Client) addSub(s *subscription) {
	c.subMu.Lock()
	c.subs[s.id] = s
	c.subMu.Unlock()
}

func (c *Client) removeSub(id uint32) {
	c.subMu.Lock()
	delete(c.subs, id)
	c.subMu.Unlock()
}

func (c *Client) sub(cn *conn, id uint32) *subscription {
	c.subMu.RLock()
	s := c.subs[id]
	c.subMu.RUnlock()
	if s == nil || s.cn != cn {
		return nil
	}
	return s
}

// deliver routes a Deliver push to its consumer. Reader goroutine.
func (c *Client) deliver(cn *conn, body []byte) {
	var d wire.Deliver
	if err := d.Decode(body); err != nil {
		c.log.Warn("sluice: malformed delivery dropped", "err", err)
		return
	}
	s := c.sub(cn, d.SubID)
	if s == nil {
		c.log.Debug("sluice: delivery for an unknown subscription dropped", "sub", d.SubID)
		return
	}
	s.cons.push(s, &d, cn.fr)
}

// assign routes an Assign push to its consumer. Reader goroutine.
func (c *Client) assign(cn *conn, body []byte) {
	var a wire.Assign
	if err := a.Decode(body); err != nil {
		c.log.Warn("sluice: malformed assignment dropped", "err", err)
		return
	}
	s := c.sub(cn, a.SubID)
	if s == nil {
		c.log.Debug("sluice: assignment for an unknown subscription dropped", "sub", a.SubID)
		return
	}
	s.cons.applyAssign(s, &a)
}

func wrapf(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("client: "+format+": %w", append(args, err)...)
}
