package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
)

// RelayName is the registry name of the loopback relay target.
const RelayName = "relay"

// ErrRelayConfig is returned by the relay target's Open for a producer/consumer split it does not run.
var ErrRelayConfig = errors.New("the relay target needs as many producers as consumers")

// RelayBufSize is the relay's user-space buffer per connection and hop, in bytes: the size of the
// largest batch the broker accepts by default (1 MiB), so one read or write can move a whole batch.
const RelayBufSize = 1 << 20

// relayFrameHeader is the length prefix of one payload on the relay's wire: 4 bytes, little-endian.
const relayFrameHeader = 4

// RelayTarget is the two-hop limit of the machine: producer → relay → consumer over loopback TCP, with
// no parsing, no storage and no broker. It answers "how fast can bytes go through two loopback sockets
// and a process in the middle", the path every TCP broker figure takes, so a large-record broker figure
// reads as a fraction of it.
//
// Producer i is paired with consumer i (hence Producers == Consumers; keys are ignored). A producer
// frames each payload as a 4-byte length and the bytes into a buffer of Config.BatchBytes and writes it
// to its socket on Flush or when the next payload does not fit: one write per batch, as the broker's
// client does. The relay, one goroutine per pair, only reads into a RelayBufSize buffer and writes what it
// read to the consumer's socket: two copies across the user/kernel boundary per hop, as the broker's
// event loop makes at least. The consumer reads into a RelayBufSize buffer and walks the frames in place.
// Socket buffers are the kernel's defaults (autotuned). Nothing is allocated per message.
type RelayTarget struct {
	cfg       Config
	ln        net.Listener
	producers []*relayProducer
	cons      []net.Conn // consumer i's end
	conns     []net.Conn // every connection, closed by Close
	wg        sync.WaitGroup
	mu        sync.Mutex
	closed    bool  // guarded by mu: errors after it are the shutdown's own
	err       error // guarded by mu: the first relay or consumer error before Close
}

// NewRelayTarget returns an unopened relay target.
func NewRelayTarget() *RelayTarget { return &RelayTarget{} }

// Name implements Target.
func (t *RelayTarget) Name() string { return RelayName }

// Open implements Target: a listener on 127.0.0.1:0 and, per pair, a producer connection and a consumer
// connection with the relay goroutine between them.
func (t *RelayTarget) Open(_ context.Context, cfg Config) (err error) {
	t.cfg = cfg.WithDefaults()
	if t.cfg.Producers != t.cfg.Consumers {
		return fmt.Errorf("%w: %d producers, %d consumers", ErrRelayConfig, t.cfg.Producers, t.cfg.Consumers)
	}
	if t.ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return fmt.Errorf("bench: relay listen: %w", err)
	}
	defer func() {
		if err != nil {
			t.Close()
		}
	}()
	t.producers = make([]*relayProducer, t.cfg.Producers)
	t.cons = make([]net.Conn, t.cfg.Consumers)
	for i := range t.cfg.Producers {
		pc, in, err := t.pair()
		if err != nil {
			return err
		}
		cc, out, err := t.pair()
		if err != nil {
			return err
		}
		t.producers[i] = &relayProducer{c: pc, buf: make([]byte, 0, max(t.cfg.BatchBytes, t.cfg.PayloadSize)+relayFrameHeader)}
		t.cons[i] = cc
		t.wg.Add(1)
		go t.relay(in, out)
	}
	return nil
}

// pair dials the listener and accepts the connection: the dialled end and the accepted end.
func (t *RelayTarget) pair() (dialled, accepted net.Conn, err error) {
	dialled, err = net.Dial("tcp", t.ln.Addr().String())
	if err != nil {
		return nil, nil, fmt.Errorf("bench: relay dial: %w", err)
	}
	t.conns = append(t.conns, dialled)
	if accepted, err = t.ln.Accept(); err != nil {
		return nil, nil, fmt.Errorf("bench: relay accept: %w", err)
	}
	t.conns = append(t.conns, accepted)
	return dialled, accepted, nil
}

// relay copies every byte read from in to out, through one RelayBufSize buffer, until either fails.
// It is deliberately not io.Copy: that would splice(2) socket to socket on Linux and skip the copies
// through user space a broker makes.
func (t *RelayTarget) relay(in, out net.Conn) {
	defer t.wg.Done()
	buf := make([]byte, RelayBufSize)
	for {
		n, err := in.Read(buf)
		if n > 0 {
			if _, werr := out.Write(buf[:n]); werr != nil {
				t.fail(fmt.Errorf("bench: relay write: %w", werr))
				return
			}
		}
		if err != nil {
			t.fail(fmt.Errorf("bench: relay read: %w", err))
			return
		}
	}
}

// Producer implements Target.
func (t *RelayTarget) Producer(i int) Producer { return t.producers[i] }

// Consume implements Target: one goroutine reads consumer i's connection and walks its frames.
func (t *RelayTarget) Consume(i int, deliver func(payload []byte)) error {
	c := t.cons[i]
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		buf := make([]byte, max(RelayBufSize, 2*(t.cfg.PayloadSize+relayFrameHeader)))
		have := 0 // bytes in buf[:have] not yet delivered, starting with a frame header
		for {
			n, err := c.Read(buf[have:])
			have += n
			off := 0
			for have-off >= relayFrameHeader {
				size := int(binary.LittleEndian.Uint32(buf[off:]))
				end := off + relayFrameHeader + size
				if size > len(buf)-relayFrameHeader {
					t.fail(fmt.Errorf("bench: relay frame of %d bytes", size))
					return
				}
				if end > have {
					break
				}
				deliver(buf[off+relayFrameHeader : end])
				off = end
			}
			have = copy(buf, buf[off:have]) // a partial frame, at most one payload: moved to the front
			if err != nil {
				t.fail(fmt.Errorf("bench: relay consumer read: %w", err))
				return
			}
		}
	}()
	return nil
}

// fail records the first error seen before Close.
func (t *RelayTarget) fail(err error) {
	t.mu.Lock()
	if !t.closed && t.err == nil {
		t.err = err
	}
	t.mu.Unlock()
}

// Close implements Target: it closes every connection and the listener and waits for the relay and
// consumer goroutines. It returns the first error one of them met before Close.
func (t *RelayTarget) Close() error {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	for _, c := range t.conns {
		c.Close()
	}
	t.conns = nil
	if t.ln != nil {
		t.ln.Close()
		t.ln = nil
	}
	t.wg.Wait()
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}

// relayProducer frames payloads into one batch buffer and writes it whole. Used from one goroutine.
type relayProducer struct {
	c   net.Conn
	buf []byte // framed payloads not yet written; capacity BatchBytes (at least one frame)
}

// Send implements Producer: it appends the framed payload, writing the batch first if it would not fit.
func (p *relayProducer) Send(_, payload []byte) error {
	if len(p.buf)+relayFrameHeader+len(payload) > cap(p.buf) {
		if err := p.Flush(); err != nil {
			return err
		}
	}
	p.buf = binary.LittleEndian.AppendUint32(p.buf, uint32(len(payload)))
	p.buf = append(p.buf, payload...)
	return nil
}

// Flush implements Producer: one write of everything framed so far.
func (p *relayProducer) Flush() error {
	if len(p.buf) == 0 {
		return nil
	}
	_, err := p.c.Write(p.buf)
	p.buf = p.buf[:0]
	if err != nil {
		return fmt.Errorf("bench: relay producer write: %w", err)
	}
	return nil
}
