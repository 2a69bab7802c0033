package client

import (
	"crypto/tls"
	"net"
	"sync"
	"testing"

	"github.com/sluicemq/sluice/wire"
)

// fakeBroker is a test double speaking the frame protocol, for what the real broker cannot be made
// to do on cue: drop a connection with requests in flight, speak TLS, serve work queues, send a fatal
// error. It answers the handshake itself and hands every later frame to handle.
type fakeBroker struct {
	t      testing.TB
	ln     net.Listener
	handle func(fc *fakeConn, f wire.Frame)

	version uint16 // announced in the hello reply; 0: wire.ProtocolVersion
	noPong  bool   // leave pings unanswered
	// maxBatch, when set, gives the batch limit announced to connection n (from 1); 0 announces none.
	maxBatch func(n int) uint32

	// only, when set, refuses a Hello of any other version with CodeUnsupportedVersion and closes
	// (as brokers before version 2 did); helloVersions records the versions announced.
	only          uint16
	helloVersions []uint16 // guarded by mu

	mu    sync.Mutex
	conns []*fakeConn
}

type fakeConn struct {
	fb *fakeBroker
	nc net.Conn
	mu sync.Mutex // serializes writes
	n  int        // connection number, from 1
}

func startFake(t testing.TB, tlsCfg *tls.Config, handle func(fc *fakeConn, f wire.Frame)) *fakeBroker {
	t.Helper()
	ln := mustListen(t)
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	fb := &fakeBroker{t: t, ln: ln, handle: handle}
	go fb.accept()
	t.Cleanup(func() {
		ln.Close()
		fb.mu.Lock()
		defer fb.mu.Unlock()
		for _, fc := range fb.conns {
			fc.nc.Close()
		}
	})
	return fb
}

func (fb *fakeBroker) addr() string { return fb.ln.Addr().String() }

func (fb *fakeBroker) accept() {
	for {
		nc, err := fb.ln.Accept()
		if err != nil {
			return
		}
		fb.mu.Lock()
		fc := &fakeConn{fb: fb, nc: nc, n: len(fb.conns) + 1}
		fb.conns = append(fb.conns, fc)
		fb.mu.Unlock()
		go fc.serve()
	}
}

func (fc *fakeConn) serve() {
	dec := wire.NewDecoder(wire.DefaultMaxFrame)
	buf := make([]byte, 64<<10)
	hello := false
	for {
		n, err := fc.nc.Read(buf)
		if n > 0 {
			ferr := dec.Feed(buf[:n], func(f wire.Frame) error {
				f.Body = append([]byte(nil), f.Body...)
				switch {
				case !hello:
					var h wire.Hello
					_ = h.Decode(f.Body)
					fc.fb.mu.Lock()
					fc.fb.helloVersions = append(fc.fb.helloVersions, h.Version)
					fc.fb.mu.Unlock()
					if fc.fb.only != 0 && h.Version != fc.fb.only {
						fc.write(wire.OpError, wire.FlagResponse, f.Corr, &wire.ErrorBody{Code: wire.CodeUnsupportedVersion, Message: "version"})
						return errFakeClose
					}
					hello = true
					v := fc.fb.version
					if v == 0 {
						v = wire.ProtocolVersion
					}
					hr := wire.HelloReply{Version: v, MaxFrame: wire.DefaultMaxFrame, ServerID: "fake"}
					if fc.fb.maxBatch != nil {
						hr.MaxBatchBytes = fc.fb.maxBatch(fc.n)
					}
					fc.reply(f, &hr)
				case f.Op == wire.OpPing && fc.fb.noPong:
				case f.Op == wire.OpPing:
					var p wire.Ping
					_ = p.Decode(f.Body)
					fc.reply(f, &p)
				default:
					fc.fb.handle(fc, f)
				}
				return nil
			})
			if ferr != nil {
				fc.nc.Close()
				return
			}
		}
		if err != nil {
			return
		}
	}
}

type appender interface{ Append([]byte) []byte }

func (fc *fakeConn) write(op wire.Op, flags wire.Flags, corr uint32, m appender) {
	b, start := wire.BeginFrame(nil, op, flags, corr)
	if m != nil {
		b = m.Append(b)
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	_, _ = fc.nc.Write(wire.EndFrame(b, start))
}

func (fc *fakeConn) reply(f wire.Frame, m appender) { fc.write(f.Op, wire.FlagResponse, f.Corr, m) }

// describe answers a Describe for a topic of n partitions.
func (fc *fakeConn) describe(f wire.Frame, n int) {
	var name wire.Name
	_ = name.Decode(f.Body)
	ti := wire.TopicInfo{Config: wire.TopicConfig{Name: name.Name, Partitions: uint32(n)}}
	for i := range n {
		ti.Partitions = append(ti.Partitions, wire.PartitionInfo{Partition: int32(i)})
	}
	fc.reply(f, &ti)
}
