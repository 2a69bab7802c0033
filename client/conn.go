package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/sluicemq/sluice/wire"
)

// replyHandler receives the answer to one request. complete runs exactly once: on the connection's
// reader goroutine with the response frame (its body is valid only during the call) and a nil error
// or the broker's *wire.ProtocolError; or, when the connection fails first, on the goroutine that
// failed it, with an error wrapping ErrConnectionLost. It must not block.
type replyHandler interface {
	complete(f wire.Frame, err error)
}

// Buffer sizes of a connection. Reads go into one linear buffer (frameReader) where frames are
// decoded in place: minReadBuf to start with, readBufSize once a frame over half of that arrives (a
// consumer's connection, whose deliveries are up to 1 MiB by default). The write buffer grows to the
// largest burst queued while a write was in progress and is dropped after a burst above
// maxKeptWriteBuf, so one spike does not pin memory.
const (
	minReadBuf      = 64 << 10
	readBufSize     = 2 << 20
	maxKeptWriteBuf = 32 << 20
)

// conn is one broker connection. Requests from any goroutine are encoded straight into wbuf; the
// writer goroutine swaps it for its spare buffer and hands everything queued to the kernel in one
// write, so frames queued while a write is in progress leave together. A produce's batch is not
// copied into wbuf: on a plain TCP connection it is queued by reference (iov) and written from the
// producer's own buffer with the frames around it in one writev. The reader goroutine decodes
// frames and completes the request registered under each response's correlation id.
type conn struct {
	c        *Client
	nc       net.Conn
	maxFrame int    // the smaller of ours and the broker's; set before the goroutines start
	serverID string // from the handshake
	// maxBatch is the broker's batch limit in bytes from the handshake, 0 when it announced none;
	// idle its idle timeout, 0 when it announced none. Immutable after newConn.
	maxBatch int
	idle     time.Duration
	seq      uint64 // connection number within the client, for logs

	made time.Time // when the handshake completed; immutable
	lost bool      // guarded by c.mu: connLost has run, so install must not make it the live connection

	wmu     sync.Mutex
	wbuf    []byte // guarded by wmu: encoded frames no writer has taken yet
	spare   []byte // guarded by wmu: the other buffer, swapped with wbuf by whoever writes
	writing bool   // guarded by wmu: a write is in progress (a caller's or writeLoop's)
	// wclosed, guarded by wmu, says fail has run: what is queued is dropped and nothing more is
	// written, so the batches queued by reference are no longer read once their requests complete.
	// wdone is signalled when a write ends (fail waits on it for the one in progress).
	wclosed bool
	wdone   *sync.Cond
	wake    chan struct{} // capacity 1: asks writeLoop to write what is queued

	// iov holds, when a queued frame carries a batch by reference (endFrameRef), the queued bytes in
	// order: each stretch of wbuf up to such a batch, then the batch; wbuf[mark:] follows the last.
	// Empty otherwise. The batches belong to their producers, which leave them unchanged until they
	// are written (sendOn). spareIov is the other list, swapped as wbuf and spare are; bufs is the
	// list being written (a field, so that writing it allocates nothing). All guarded by wmu but
	// bufs, which only the writer touches. vectored says nc writes a net.Buffers with one writev
	// (plain TCP), so endFrameRef queues by reference; immutable.
	iov      [][]byte
	mark     int
	spareIov [][]byte
	bufs     net.Buffers
	vectored bool

	// fr reads the connection; set by readLoop before it reads, used by the reader goroutine only
	// (a delivery borrows the read buffer it arrived in: Consumer.push).
	fr *frameReader

	corr    atomic.Uint32
	pmu     sync.Mutex
	pending map[uint32]replyHandler // guarded by pmu: requests awaiting an answer
	dead    bool                    // guarded by pmu: failed, registers nothing more

	failOnce sync.Once
	err      error         // why the connection failed; written once, before done is closed
	done     chan struct{} // closed when the connection has failed
}

func newConn(c *Client, nc net.Conn, hs handshakeResult, seq uint64) *conn {
	_, vectored := nc.(*net.TCPConn)
	cn := &conn{
		c: c, nc: nc, maxFrame: hs.maxFrame, serverID: hs.serverID, maxBatch: hs.maxBatch, idle: hs.idle,
		seq: seq, made: time.Now(), vectored: vectored,
		wake:    make(chan struct{}, 1),
		pending: make(map[uint32]replyHandler, 64),
		done:    make(chan struct{}),
	}
	cn.wdone = sync.NewCond(&cn.wmu)
	return cn
}

func (cn *conn) start() {
	cn.c.wg.Add(2)
	go cn.writeLoop()
	go cn.readLoop()
	if cn.c.opts.PingInterval > 0 {
		cn.c.wg.Add(1)
		go cn.keepalive(pingInterval(cn.c.opts.PingInterval, cn.idle), cn.c.opts.PingInterval)
	}
}

// pingInterval is how often a connection pings: the configured interval, or a third of the broker's
// idle timeout (0: none announced) when that is shorter, so that a connection on which the
// application sends nothing for a while (a consumer whose handler is slow) is never idle long enough
// for the broker to close it, even with a ping or a pong delayed. Never below 10 ms.
func pingInterval(configured, brokerIdle time.Duration) time.Duration {
	if brokerIdle > 0 && brokerIdle/3 < configured {
		return max(brokerIdle/3, 10*time.Millisecond)
	}
	return configured
}

// keepalive pings every interval and fails the connection when a pong is more than twice the
// larger of interval and configured late (configured is the client's PingInterval: a short
// interval derived from the broker's idle timeout keeps the connection busy without making the
// liveness check stricter than the application asked for).
func (cn *conn) keepalive(interval, configured time.Duration) {
	defer cn.c.wg.Done()
	late := 2 * max(interval, configured)
	t := time.NewTicker(interval)
	defer t.Stop()
	k := &call{ch: make(chan struct{}, 1)}
	for {
		select {
		case <-t.C:
		case <-cn.done:
			return
		}
		corr, err := cn.register(k)
		if err != nil {
			return
		}
		ping := wire.Ping{Nonce: uint64(corr)}
		buf, start := cn.beginFrame(wire.OpPing, 0, corr)
		_ = cn.endFrame(ping.Append(buf), start)
		timeout := time.NewTimer(late)
		select {
		case <-k.ch:
			timeout.Stop()
		case <-timeout.C:
			cn.fail(fmt.Errorf("no pong in %v", late))
			return
		case <-cn.done:
			timeout.Stop()
			return
		}
	}
}

// isDone reports whether the connection has failed.
func (cn *conn) isDone() bool {
	select {
	case <-cn.done:
		return true
	default:
		return false
	}
}

// lostErr is the error requests in flight on a failed connection complete with.
func (cn *conn) lostErr() error {
	<-cn.done
	return fmt.Errorf("%w: %w", ErrConnectionLost, cn.err)
}

// fail closes the connection for err and completes every pending request with ErrConnectionLost.
// The client forgets the connection before done is closed, so a goroutine that sees done closed and
// asks the client for a connection never gets this one back. A write in progress (which the close
// ends) is waited for and nothing queued is written after it, before any request completes: a
// produce's batch, written by reference (endFrameRef), is recycled by its completion, and no
// writev may still be reading it then. Never called by a goroutine that holds wmu or is writing.
func (cn *conn) fail(err error) {
	cn.failOnce.Do(func() {
		cn.err = err
		_ = cn.nc.Close()
		cn.wmu.Lock()
		for cn.writing {
			cn.wdone.Wait()
		}
		cn.wclosed = true
		cn.dropQueuedLocked()
		cn.wmu.Unlock()
		cn.c.connLost(cn)
		cn.pmu.Lock()
		cn.dead = true
		pending := cn.pending
		cn.pending = nil
		cn.pmu.Unlock()
		close(cn.done)
		lost := cn.lostErr()
		for _, h := range pending {
			h.complete(wire.Frame{}, lost)
		}
	})
}

// nextCorr returns a fresh correlation id. Requests without an answer (FlagNoReply) carry one too:
// the broker's error for them comes back under it, and id 0 would make the error fatal.
func (cn *conn) nextCorr() uint32 {
	for {
		if corr := cn.corr.Add(1); corr != 0 { // 0 is the id of pushes and fatal errors
			return corr
		}
	}
}

// register files h under a fresh correlation id. It fails once the connection has failed.
func (cn *conn) register(h replyHandler) (uint32, error) {
	corr := cn.nextCorr()
	return corr, cn.registerAs(corr, h)
}

// registerAs files h under corr, an id from nextCorr. It fails once the connection has failed.
func (cn *conn) registerAs(corr uint32, h replyHandler) error {
	cn.pmu.Lock()
	if cn.dead {
		cn.pmu.Unlock()
		return cn.lostErr()
	}
	cn.pending[corr] = h
	cn.pmu.Unlock()
	return nil
}

// take removes and returns the handler registered under corr, or nil.
func (cn *conn) take(corr uint32) replyHandler {
	cn.pmu.Lock()
	h, ok := cn.pending[corr]
	if ok {
		delete(cn.pending, corr)
	}
	cn.pmu.Unlock()
	return h
}

// beginFrame locks the write buffer and opens a frame in it; the caller appends the body and must
// call endFrame with the results, which unlocks. Nothing between the two may block.
func (cn *conn) beginFrame(op wire.Op, flags wire.Flags, corr uint32) ([]byte, int) {
	cn.wmu.Lock()
	return wire.BeginFrame(cn.wbuf, op, flags, corr)
}

// abandonFrame drops the frame opened by beginFrame and unlocks the write buffer.
func (cn *conn) abandonFrame(buf []byte, start int) {
	cn.wbuf = buf[:start]
	cn.wmu.Unlock()
}

// endFrame closes the frame opened by beginFrame and unlocks the write buffer. A frame over the
// negotiated maximum is dropped and reported.
func (cn *conn) endFrame(buf []byte, start int) error {
	if n := len(buf) - start; n > cn.maxFrame {
		cn.wbuf = buf[:start]
		cn.wmu.Unlock()
		return fmt.Errorf("%w: frame of %d bytes, limit %d", ErrRecordTooLarge, n, cn.maxFrame)
	}
	cn.wbuf = wire.EndFrame(buf, start)
	cn.queuedLocked()
	return nil
}

// endFrameRef is endFrame for a frame whose body ends with ext, bytes that stay where they are:
// on a plain TCP connection they are queued by reference and written from there, so the caller
// must leave ext unchanged until the connection has written it (a produce's batch: its answer,
// after which the producer recycles it, cannot come before). The frame's header in buf says
// op, flags and corr, as given to beginFrame. Elsewhere (TLS) ext is copied into wbuf.
func (cn *conn) endFrameRef(buf []byte, start int, ext []byte, op wire.Op, flags wire.Flags, corr uint32) error {
	if n := len(buf) - start + len(ext); n > cn.maxFrame {
		cn.wbuf = buf[:start]
		cn.wmu.Unlock()
		return fmt.Errorf("%w: frame of %d bytes, limit %d", ErrRecordTooLarge, n, cn.maxFrame)
	}
	if !cn.vectored {
		cn.wbuf = wire.EndFrame(append(buf, ext...), start)
		cn.queuedLocked()
		return nil
	}
	wire.PutFrameHeader(buf[start:], op, flags, corr, len(buf)-start-wire.FrameHeaderSize+len(ext))
	cn.iov = append(cn.iov, buf[cn.mark:len(buf):len(buf)], ext)
	cn.mark = len(buf)
	cn.wbuf = buf
	cn.queuedLocked()
	return nil
}

// queuedLocked follows a frame queued into wbuf: it unlocks the write buffer and, when nobody is
// writing, writes on this goroutine, saving a hand-off to writeLoop (one wake-up, tens of
// microseconds on a VM). This caller writes only what is queued now and hands anything queued
// meanwhile to writeLoop, so it blocks at most for one write. While a write is in progress,
// whoever does it hands what queued meanwhile to writeLoop.
func (cn *conn) queuedLocked() {
	if cn.wclosed {
		cn.dropQueuedLocked()
		cn.wmu.Unlock()
		return
	}
	if cn.writing {
		cn.wmu.Unlock()
		return
	}
	buf, iov := cn.takeLocked()
	cn.wmu.Unlock()
	cn.write(buf, iov, true)
}

// dropQueuedLocked forgets the frames queued and the batches they reference (a failed connection's).
func (cn *conn) dropQueuedLocked() {
	cn.wbuf, cn.mark = cn.wbuf[:0], 0
	clear(cn.iov)
	cn.iov = cn.iov[:0]
}

// takeLocked claims the right to write and returns the queued frames: buf, or when iov is not empty
// iov (which then covers buf), leaving the spare buffers to collect the next ones.
func (cn *conn) takeLocked() (buf []byte, iov [][]byte) {
	cn.writing = true
	buf, iov = cn.wbuf, cn.iov
	if len(iov) > 0 && cn.mark < len(buf) {
		iov = append(iov, buf[cn.mark:])
	}
	cn.wbuf, cn.spare = cn.spare[:0], nil
	cn.iov, cn.spareIov, cn.mark = cn.spareIov[:0], nil, 0
	return buf, iov
}

// write hands the queued frames (takeLocked's buf and iov) to the kernel, returns the buffers and
// the right to write, and reports whether more frames queued meanwhile; a direct writer (wakeLoop)
// passes those to writeLoop.
func (cn *conn) write(buf []byte, iov [][]byte, wakeLoop bool) (more bool) {
	var err error
	if len(iov) == 0 {
		_, err = cn.nc.Write(buf)
	} else {
		// One writev for the frames and the batches between them (net.Buffers on a TCPConn).
		// WriteTo consumes cn.bufs, not iov's backing array's length; iov is cleared below so the
		// batches are not kept alive.
		cn.bufs = iov
		_, err = cn.bufs.WriteTo(cn.nc)
		cn.bufs = nil
		clear(iov)
	}
	if cap(buf) > maxKeptWriteBuf {
		buf = nil
	}
	cn.wmu.Lock()
	cn.spare = buf[:0]
	cn.spareIov = iov[:0]
	cn.writing = false
	cn.wdone.Broadcast()
	more = len(cn.wbuf) > 0 && !cn.wclosed
	cn.wmu.Unlock()
	if err != nil {
		cn.fail(fmt.Errorf("write: %w", err))
		return false
	}
	if more && wakeLoop {
		select {
		case cn.wake <- struct{}{}:
		default:
		}
	}
	return more
}

// writeLoop writes what callers queued while another write was in progress, everything queued in one
// write.
func (cn *conn) writeLoop() {
	defer cn.c.wg.Done()
	for {
		select {
		case <-cn.wake:
		case <-cn.done:
			return
		}
		for {
			cn.wmu.Lock()
			if cn.writing || cn.wclosed || len(cn.wbuf) == 0 {
				// A direct writer is busy (it wakes this loop if more queues) or nothing is left.
				cn.wmu.Unlock()
				break
			}
			buf, iov := cn.takeLocked()
			cn.wmu.Unlock()
			if !cn.write(buf, iov, false) {
				break
			}
		}
	}
}

// readLoop decodes frames until the connection fails.
func (cn *conn) readLoop() {
	defer cn.c.wg.Done()
	cn.fr = newFrameReader(cn.nc, cn.maxFrame)
	cn.fail(cn.fr.run(cn.dispatch))
}

// dispatch routes one frame: pushes to their subscription, answers to their request.
func (cn *conn) dispatch(f wire.Frame) error {
	switch {
	case f.Op == wire.OpDeliver:
		cn.c.deliver(cn, f.Body)
		return nil
	case f.Op == wire.OpDeliverTopic:
		cn.c.deliverTopic(cn, f.Body)
		return nil
	case f.Op == wire.OpAssign:
		cn.c.assign(cn, f.Body)
		return nil
	case f.Op == wire.OpSubEnded:
		cn.c.subEnded(cn, f.Body)
		return nil
	case f.Op == wire.OpError && f.Corr == 0:
		var eb wire.ErrorBody
		if err := eb.Decode(f.Body); err != nil {
			return fmt.Errorf("fatal error frame: %w", err)
		}
		cn.c.log.Error("sluice: broker closed the connection", "conn", cn.seq, "code", eb.Code, "message", eb.Message)
		return eb.Err()
	case f.Flags&wire.FlagResponse != 0 || f.Op == wire.OpError:
		var err error
		if f.Op == wire.OpError {
			var eb wire.ErrorBody
			if derr := eb.Decode(f.Body); derr != nil {
				return fmt.Errorf("error frame: %w", derr)
			}
			err = eb.Err()
		}
		h := cn.take(f.Corr)
		if h == nil {
			// A request abandoned by its context, or a no-reply request (produce at durability none,
			// ack, credit) the broker refused.
			if err != nil {
				cn.c.log.Warn("sluice: broker refused a request nobody awaits", "conn", cn.seq, "corr", f.Corr, "err", err)
			}
			return nil
		}
		h.complete(f, err)
		return nil
	}
	cn.c.log.Debug("sluice: unexpected frame ignored", "conn", cn.seq, "op", f.Op, "flags", f.Flags)
	return nil
}

// connect dials the broker, speaks the handshake (and authenticates), and starts the connection's
// goroutines. It announces wire.ProtocolVersion; a broker that refuses it with
// CodeUnsupportedVersion (one from before version 2, which requires exactly 1) is dialled again
// announcing wire.MinProtocolVersion.
func (c *Client) connect(ctx context.Context, seq uint64) (*conn, error) {
	cn, err := c.connectAt(ctx, seq, wire.ProtocolVersion)
	if pe := (*wire.ProtocolError)(nil); errors.As(err, &pe) && pe.Code == wire.CodeUnsupportedVersion {
		c.log.Debug("sluice: broker refused the protocol version; trying the oldest", "version", wire.ProtocolVersion, "retry", wire.MinProtocolVersion)
		return c.connectAt(ctx, seq, wire.MinProtocolVersion)
	}
	return cn, err
}

// connectAt is connect announcing version in Hello.
func (c *Client) connectAt(ctx context.Context, seq uint64, version uint16) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.DialTimeout)
	defer cancel()
	d := net.Dialer{KeepAlive: 15 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return nil, fmt.Errorf("client: dial %s: %w", c.addr, err)
	}
	if c.opts.TLS != nil {
		cfg := c.opts.TLS
		if cfg.ServerName == "" {
			cfg = cfg.Clone()
			if host, _, err := net.SplitHostPort(c.addr); err == nil {
				cfg.ServerName = host
			}
		}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = nc.Close()
			return nil, fmt.Errorf("client: tls handshake with %s: %w", c.addr, err)
		}
		nc = tc
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	hs, err := c.handshake(nc, version)
	if err != nil {
		_ = nc.Close()
		return nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	c.brokerMaxBatch.Store(int64(hs.maxBatch))
	cn := newConn(c, nc, hs, seq)
	cn.start()
	return cn, nil
}

// handshakeResult is what a handshake settled: the frame limit, the broker's id and the limits it
// announced (0: none).
type handshakeResult struct {
	maxFrame int           // the smaller of ours and the broker's
	serverID string        // from HelloReply
	maxBatch int           // the broker's batch limit in bytes (HelloReply.MaxBatchBytes)
	idle     time.Duration // the broker's idle timeout (HelloReply.IdleTimeoutMs)
}

// handshake sends Hello announcing version (and Auth) and reads the answers synchronously, before
// the connection's goroutines exist. A broker's refusal is returned as its *wire.ProtocolError,
// wrapped.
func (c *Client) handshake(nc net.Conn, version uint16) (handshakeResult, error) {
	var none handshakeResult
	var buf []byte
	buf, start := wire.BeginFrame(buf, wire.OpHello, 0, 1)
	hello := wire.Hello{Version: version, MaxFrame: uint32(c.opts.MaxFrame), ClientID: c.opts.ClientID}
	buf, err := wire.AppendMessage(buf, &hello)
	if err != nil {
		return none, fmt.Errorf("%w: hello: %w", ErrHandshake, err)
	}
	buf = wire.EndFrame(buf, start)
	if _, err := nc.Write(buf); err != nil {
		return none, fmt.Errorf("%w: write hello: %w", ErrHandshake, err)
	}
	f, err := readFrame(nc, c.opts.MaxFrame)
	if err != nil {
		return none, fmt.Errorf("%w: read hello reply: %w", ErrHandshake, err)
	}
	if err := replyErr(f, wire.OpHello); err != nil {
		return none, fmt.Errorf("%w: %w", ErrHandshake, err)
	}
	var hr wire.HelloReply
	if err := hr.Decode(f.Body); err != nil {
		return none, fmt.Errorf("%w: hello reply: %w", ErrHandshake, err)
	}
	if hr.Version < wire.MinProtocolVersion || hr.Version > version { // every version in between this client reads
		return none, fmt.Errorf("%w: broker speaks version %d, client %d to %d: %w", ErrHandshake, hr.Version, wire.MinProtocolVersion, version, wire.ErrUnsupportedVer)
	}
	maxFrame := c.opts.MaxFrame
	if hr.MaxFrame != 0 && int(hr.MaxFrame) < maxFrame {
		maxFrame = max(int(hr.MaxFrame), wire.MinMaxFrame)
	}
	switch {
	case c.opts.AuthToken != "" || c.opts.SASLMechanism != "":
		principal, err := c.authenticate(nc, buf, maxFrame)
		if err != nil {
			return none, err
		}
		c.mu.Lock()
		c.principal = principal
		c.mu.Unlock()
	case hr.AuthRequired:
		return none, fmt.Errorf("%w: the broker requires authentication and no token or user is set: %w", ErrHandshake, wire.CodeAuthFailed)
	}
	return handshakeResult{maxFrame: maxFrame, serverID: hr.ServerID, maxBatch: int(hr.MaxBatchBytes),
		idle: time.Duration(hr.IdleTimeoutMs) * time.Millisecond}, nil
}

// authenticate runs the Auth exchange of the handshake: a token, or a SASL mechanism one message
// per Auth frame each way. It returns the principal: the name the token's reply gives (empty from
// older brokers), the user name otherwise. buf is scratch.
func (c *Client) authenticate(nc net.Conn, buf []byte, maxFrame int) (string, error) {
	name, msg := "token", []byte(c.opts.AuthToken)
	var sess sasl.Session
	if c.opts.AuthToken == "" {
		m := saslMechanism(c.opts.SASLMechanism, c.opts.SASLUser, c.opts.SASLPassword)
		var err error
		if sess, msg, err = m.Authenticate(context.Background(), c.addr); err != nil {
			return "", fmt.Errorf("%w: %s: %w", ErrHandshake, c.opts.SASLMechanism, err)
		}
		name = m.Name()
	}
	for corr := uint32(2); ; corr++ {
		var start int
		buf, start = wire.BeginFrame(buf[:0], wire.OpAuth, 0, corr)
		auth := wire.Auth{Mechanism: name, Payload: msg}
		var err error
		if buf, err = wire.AppendMessage(buf, &auth); err != nil {
			return "", fmt.Errorf("%w: auth: %w", ErrHandshake, err)
		}
		buf = wire.EndFrame(buf, start)
		if _, err := nc.Write(buf); err != nil {
			return "", fmt.Errorf("%w: write auth: %w", ErrHandshake, err)
		}
		f, err := readFrame(nc, maxFrame)
		if err != nil {
			return "", fmt.Errorf("%w: read auth reply: %w", ErrHandshake, err)
		}
		if err := replyErr(f, wire.OpAuth); err != nil {
			return "", fmt.Errorf("%w: %w", ErrHandshake, err)
		}
		var ar wire.Auth
		if err := ar.Decode(f.Body); err != nil {
			return "", fmt.Errorf("%w: auth reply: %w", ErrHandshake, err)
		}
		if sess == nil {
			return string(ar.Payload), nil // the broker names the token's principal
		}
		done, next, err := sess.Challenge(ar.Payload)
		if err != nil { // e.g. a SCRAM server signature that does not verify: not our broker
			return "", fmt.Errorf("%w: %s: %w", ErrHandshake, name, err)
		}
		if done {
			return c.opts.SASLUser, nil
		}
		if corr > 8 {
			return "", fmt.Errorf("%w: %s exchange does not end", ErrHandshake, name)
		}
		msg = next
	}
}

// saslMechanism returns the client side of a SASL mechanism by name, or nil for one not offered.
// It uses franz-go's SASL clients, which Kafka clients in Go run against Kafka brokers.
func saslMechanism(name, user, password string) sasl.Mechanism {
	switch name {
	case "PLAIN":
		return plain.Auth{User: user, Pass: password}.AsMechanism()
	case "SCRAM-SHA-256":
		return scram.Auth{User: user, Pass: password}.AsSha256Mechanism()
	case "SCRAM-SHA-512":
		return scram.Auth{User: user, Pass: password}.AsSha512Mechanism()
	}
	return nil
}

// replyErr checks that f answers op: the broker's error, or nil.
func replyErr(f wire.Frame, op wire.Op) error {
	if f.Op == wire.OpError {
		var eb wire.ErrorBody
		if err := eb.Decode(f.Body); err != nil {
			return err
		}
		return eb.Err()
	}
	if f.Op != op || f.Flags&wire.FlagResponse == 0 {
		return fmt.Errorf("%w: %v frame (flags %#x) answering %v", wire.ErrMalformed, f.Op, f.Flags, op)
	}
	return nil
}

// readFrame reads exactly one frame from r, for the handshake.
func readFrame(r io.Reader, maxFrame int) (wire.Frame, error) {
	var hdr [wire.FrameHeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return wire.Frame{}, err
	}
	h, err := wire.ParseFrameHeader(hdr[:], maxFrame)
	if err != nil {
		return wire.Frame{}, err
	}
	body := make([]byte, h.Size-wire.FrameHeaderSize)
	if _, err := io.ReadFull(r, body); err != nil {
		return wire.Frame{}, err
	}
	return wire.Frame{Op: h.Op, Flags: h.Flags, Corr: h.Corr, Body: body}, nil
}
