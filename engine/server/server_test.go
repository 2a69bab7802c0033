package server

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/wire"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func startServer(t testing.TB, mod func(*Options)) (*Server, *engine.Engine) {
	t.Helper()
	dir := t.TempDir()
	e, err := engine.Open(engine.Options{DataDir: dir, MemoryDir: filepath.Join(dir, "mem"), SegmentBytes: 4 << 20,
		AutoCreateTopics: true, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Addr: "127.0.0.1:0", Engine: e, Loops: 2, Logger: quiet}
	if mod != nil {
		mod(&o)
	}
	s, err := Start(o)
	if err != nil {
		e.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		e.Close()
	})
	return s, e
}

// rawConn speaks frames directly, for tests that must send what a client library never would.
type rawConn struct {
	t    testing.TB
	c    net.Conn
	dec  *wire.Decoder
	buf  []byte
	q    []wire.Frame
	corr uint32
}

func dial(t testing.TB, s *Server) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, c: c, dec: wire.NewDecoder(wire.DefaultMaxFrame), buf: make([]byte, 64<<10)}
}

func (r *rawConn) send(op wire.Op, flags wire.Flags, m message) uint32 {
	r.corr++
	b := mustAppendMsg(nil, op, flags, r.corr, m)
	r.write(b)
	return r.corr
}

func (r *rawConn) write(b []byte) {
	r.t.Helper()
	if _, err := r.c.Write(b); err != nil {
		r.t.Fatal(err)
	}
}

// next returns the next frame, or an error (io.EOF when the broker closed the connection).
func (r *rawConn) next() (wire.Frame, error) {
	_ = r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for len(r.q) == 0 {
		n, err := r.c.Read(r.buf)
		if err != nil {
			return wire.Frame{}, err
		}
		if err := r.dec.Feed(r.buf[:n], func(f wire.Frame) error {
			f.Body = append([]byte(nil), f.Body...)
			r.q = append(r.q, f)
			return nil
		}); err != nil {
			return wire.Frame{}, err
		}
	}
	f := r.q[0]
	r.q = r.q[1:]
	return f, nil
}

func (r *rawConn) mustNext() wire.Frame {
	r.t.Helper()
	f, err := r.next()
	if err != nil {
		r.t.Fatal(err)
	}
	return f
}

// expectReply reads the response to corr, failing on an error frame.
func (r *rawConn) expectReply(corr uint32, m interface{ Decode([]byte) error }) {
	r.t.Helper()
	f := r.mustNext()
	if f.Op == wire.OpError {
		var eb wire.ErrorBody
		_ = eb.Decode(f.Body)
		r.t.Fatalf("request %d failed: %v", corr, eb.Err())
	}
	if f.Corr != corr || f.Flags&wire.FlagResponse == 0 {
		r.t.Fatalf("got %v corr %d flags %d, want response to %d", f.Op, f.Corr, f.Flags, corr)
	}
	if m != nil {
		if err := m.Decode(f.Body); err != nil {
			r.t.Fatal(err)
		}
	}
}

// expectClosedWith reads until the broker closes, requiring an error frame with code first.
func (r *rawConn) expectClosedWith(code wire.Code) {
	r.t.Helper()
	sawCode := false
	for {
		f, err := r.next()
		if err != nil {
			if !sawCode {
				r.t.Fatalf("connection ended (%v) without an error frame with %v", err, code)
			}
			return
		}
		if f.Op == wire.OpError {
			var eb wire.ErrorBody
			if err := eb.Decode(f.Body); err != nil {
				r.t.Fatal(err)
			}
			if eb.Code != code {
				r.t.Fatalf("error %v (%s), want %v", eb.Code, eb.Message, code)
			}
			sawCode = true
		}
	}
}

func (r *rawConn) hello() {
	r.t.Helper()
	corr := r.send(wire.OpHello, 0, &wire.Hello{Version: wire.ProtocolVersion, MaxFrame: wire.DefaultMaxFrame, ClientID: "test"})
	var hr wire.HelloReply
	r.expectReply(corr, &hr)
	if hr.Version != wire.ProtocolVersion || hr.MaxFrame == 0 {
		r.t.Fatalf("hello reply %+v", hr)
	}
}

func batchOf(t testing.TB, n int, tag string) []byte {
	b := wire.NewBatchBuilder(1024)
	for i := 0; i < n; i++ {
		b.Append([]byte(fmt.Sprintf("%s-k%d", tag, i)), []byte(fmt.Sprintf("%s-v%d", tag, i)), nil, 1700000000000+int64(i))
	}
	out, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), out...)
}

func TestProduceSubscribeOverTCP(t *testing.T) {
	s, _ := startServer(t, nil)
	prod := dial(t, s)
	prod.hello()
	corr := prod.send(wire.OpCreateTopic, 0, &wire.TopicConfig{Name: "t", Partitions: 2})
	prod.expectReply(corr, nil)

	var sent [][]byte
	for i := 0; i < 50; i++ {
		b := batchOf(t, 5, fmt.Sprint(i))
		sent = append(sent, b)
		corr := prod.send(wire.OpProduce, 0, &wire.Produce{Durability: wire.DurabilityWritten, Partition: 1, Topic: []byte("t"), Batches: b})
		var pr wire.ProduceReply
		prod.expectReply(corr, &pr)
		if pr.BaseOffset != int64(i*5) || pr.LastOffset != int64(i*5+4) || pr.Partition != 1 {
			t.Fatalf("produce %d reply %+v", i, pr)
		}
	}

	cons := dial(t, s)
	cons.hello()
	corr = cons.send(wire.OpSubscribe, 0, &wire.Subscribe{SubID: 7, Topic: "t", Partition: 1, Start: wire.StartEarliest, Credit: 1 << 20})
	var sr wire.SubscribeReply
	cons.expectReply(corr, &sr)
	if len(sr.Starts) != 1 || sr.Starts[0] != (wire.PartitionOffset{Partition: 1, Offset: 0}) {
		t.Fatalf("subscribe reply %+v", sr)
	}
	// Deliveries carry the stored batches byte for byte, base offsets patched.
	var got []byte
	want := 0
	for _, b := range sent {
		want += len(b)
	}
	for len(got) < want {
		f := cons.mustNext()
		var d wire.Deliver
		if f.Op != wire.OpDeliver || d.Decode(f.Body) != nil || d.SubID != 7 || d.Partition != 1 {
			t.Fatalf("unexpected frame %v", f.Op)
		}
		got = append(got, d.Batches...)
	}
	for i, b := range sent {
		stored := got[:len(b)]
		got = got[len(b):]
		if wire.BaseOffset(stored) != int64(i*5) {
			t.Fatalf("batch %d base offset %d", i, wire.BaseOffset(stored))
		}
		if !bytes.Equal(stored[8:], b[8:]) {
			t.Fatalf("batch %d differs from what was produced", i)
		}
	}

	// A live subscription is pushed new records as they commit.
	corr = prod.send(wire.OpProduce, 0, &wire.Produce{Durability: wire.DurabilityWritten, Partition: 1, Topic: []byte("t"), Batches: batchOf(t, 3, "late")})
	prod.expectReply(corr, nil)
	f := cons.mustNext()
	var d wire.Deliver
	if f.Op != wire.OpDeliver || d.Decode(f.Body) != nil || wire.BaseOffset(d.Batches) != 250 {
		t.Fatalf("live delivery: %v base %d", f.Op, wire.BaseOffset(d.Batches))
	}
}

func TestCreditBoundsDeliveries(t *testing.T) {
	s, e := startServer(t, nil)
	c := dial(t, s)
	c.hello()
	for i := 0; i < 20; i++ {
		corr := c.send(wire.OpProduce, 0, &wire.Produce{Durability: wire.DurabilityWritten, Partition: 0, Topic: []byte("cr"), Batches: batchOf(t, 10, "x")})
		c.expectReply(corr, nil)
	}
	size := len(batchOf(t, 10, "x"))
	corr := c.send(wire.OpSubscribe, 0, &wire.Subscribe{SubID: 1, Topic: "cr", Partition: 0, Start: wire.StartEarliest, Credit: uint32(size * 3)})
	c.expectReply(corr, nil)
	got := 0
	for got < size*3 {
		var d wire.Deliver
		if err := d.Decode(c.mustNext().Body); err != nil {
			t.Fatal(err)
		}
		got += len(d.Batches)
	}
	// Credit spent: nothing more arrives until the consumer grants more.
	corr = c.send(wire.OpPing, 0, &wire.Ping{Nonce: 42})
	f := c.mustNext()
	if f.Op != wire.OpPing || f.Corr != corr {
		t.Fatalf("after the credit was spent got %v, want the ping reply", f.Op)
	}
	c.send(wire.OpCredit, 0, &wire.Credit{SubID: 1, Bytes: uint32(size * 100)})
	for got < size*20 {
		var d wire.Deliver
		if err := d.Decode(c.mustNext().Body); err != nil {
			t.Fatal(err)
		}
		got += len(d.Batches)
	}
	if end := e.TopicByName("cr").Partition(0).NextOffset(); end != 200 {
		t.Fatalf("end offset %d", end)
	}
}

func TestFsyncAckAfterSync(t *testing.T) {
	s, e := startServer(t, nil)
	c := dial(t, s)
	c.hello()
	for i := 0; i < 20; i++ {
		corr := c.send(wire.OpProduce, 0, &wire.Produce{Durability: wire.DurabilityFsync, Partition: 0, Topic: []byte("f"), Batches: batchOf(t, 2, "f")})
		var pr wire.ProduceReply
		c.expectReply(corr, &pr)
		if synced := e.TopicByName("f").Partition(0).SyncedOffset(); synced <= pr.LastOffset {
			t.Fatalf("fsync ack for offset %d before the sync (synced %d)", pr.LastOffset, synced)
		}
	}
}

func TestBadInputClosesOnlyThatConnection(t *testing.T) {
	s, e := startServer(t, nil)
	good := dial(t, s)
	good.hello()
	corr := good.send(wire.OpProduce, 0, &wire.Produce{Durability: wire.DurabilityWritten, Partition: 0, Topic: []byte("safe"), Batches: batchOf(t, 4, "a")})
	good.expectReply(corr, nil)

	hello := func() []byte {
		b := mustAppendMsg(nil, wire.OpHello, 0, 1, &wire.Hello{Version: wire.ProtocolVersion, ClientID: "x"})
		return b
	}
	corrupt := batchOf(t, 3, "c")
	corrupt[len(corrupt)-1] ^= 1
	corruptFrame := mustAppendMsg(nil, wire.OpProduce, 0, 2, &wire.Produce{Durability: wire.DurabilityWritten, Topic: []byte("safe"), Batches: corrupt})
	truncated := mustAppendMsg(nil, wire.OpProduce, 0, 2, &wire.Produce{Durability: wire.DurabilityWritten, Topic: []byte("safe"), Batches: batchOf(t, 3, "t")[:70]})
	oversized := make([]byte, wire.FrameHeaderSize)
	binary.BigEndian.PutUint32(oversized, 1<<30)
	oversized[4] = byte(wire.OpProduce)
	badVersion := mustAppendMsg(nil, wire.OpHello, 0, 1, &wire.Hello{Version: 0}) // below wire.MinProtocolVersion
	unknownOp := mustAppendMsg(nil, wire.Op(0x77), 0, 3, nil)
	shortBody := mustAppendMsg(nil, wire.OpSubscribe, 0, 3, &wire.Ping{})
	pingFrame := mustAppendMsg(nil, wire.OpPing, 0, 3, &wire.Ping{})
	// Bodies that parse but carry values the protocol does not define (issue 11, item 13).
	frame := func(op wire.Op, body []byte) []byte {
		b, start := wire.BeginFrame(hello(), op, 0, 4)
		return wire.EndFrame(append(b, body...), start)
	}
	produce9 := frame(wire.OpProduce, (&wire.Produce{Durability: 9, Partition: 0, Topic: []byte("safe"), Batches: batchOf(t, 1, "d")}).Append(nil))
	produceMinus7 := frame(wire.OpProduce, (&wire.Produce{Durability: wire.DurabilityWritten, Partition: -7, Topic: []byte("safe"), Batches: batchOf(t, 1, "p")}).Append(nil))
	subscribeReset3 := frame(wire.OpSubscribe, append((&wire.Subscribe{SubID: 1, Topic: "safe", Partition: -1, Credit: 1 << 20}).Append(nil), 3))
	subscribeMinus3 := frame(wire.OpSubscribe, (&wire.Subscribe{SubID: 1, Topic: "safe", Partition: -3, Credit: 1 << 20}).Append(nil))
	commitMinus1 := frame(wire.OpCommit, (&wire.Commit{Group: "g", Topic: "safe", Partition: -1}).Append(nil))
	ackMinus1 := frame(wire.OpAck, wire.AppendAck(nil, 1, -1, 0, []int64{0}))
	createFlags := frame(wire.OpCreateTopic, (&wire.TopicConfig{Name: "flagged", Flags: 0x80}).Append(nil))

	cases := []struct {
		name  string
		bytes []byte
		code  wire.Code
	}{
		{"no handshake", pingFrame, wire.CodeHandshakeRequired},
		{"zero length", append(hello(), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), wire.CodeMalformedFrame},
		{"oversized frame", append(hello(), oversized...), wire.CodeFrameTooLarge},
		{"wrong version", badVersion, wire.CodeUnsupportedVersion},
		{"unknown op", append(hello(), unknownOp...), wire.CodeUnknownOp},
		{"malformed body", append(hello(), shortBody...), wire.CodeMalformedFrame},
		{"corrupt batch", append(hello(), corruptFrame...), wire.CodeCorruptBatch},
		{"truncated batch", append(hello(), truncated...), wire.CodeMalformedFrame},
		{"produce durability 9", produce9, wire.CodeMalformedFrame},
		{"produce partition -7", produceMinus7, wire.CodeMalformedFrame},
		{"subscribe offset reset 3", subscribeReset3, wire.CodeMalformedFrame},
		{"subscribe partition -3", subscribeMinus3, wire.CodeMalformedFrame},
		{"commit partition -1", commitMinus1, wire.CodeMalformedFrame},
		{"ack partition -1", ackMinus1, wire.CodeMalformedFrame},
		{"create topic flags 0x80", createFlags, wire.CodeMalformedFrame},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bad := dial(t, s)
			bad.write(tc.bytes)
			bad.expectClosedWith(tc.code)
		})
	}
	// Random garbage, and a frame cut off mid-body: the broker closes or waits; it never crashes.
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 20; i++ {
		junk := make([]byte, 1+rng.IntN(200))
		for j := range junk {
			junk[j] = byte(rng.Uint32())
		}
		bad := dial(t, s)
		bad.write(append(hello(), junk...))
		bad.c.Close()
	}
	half := dial(t, s)
	half.write(append(hello(), corruptFrame[:len(corruptFrame)/2]...))
	half.c.Close()

	// The good connection carries on, and the partition holds exactly the good records, intact.
	corr = good.send(wire.OpProduce, 0, &wire.Produce{Durability: wire.DurabilityWritten, Partition: 0, Topic: []byte("safe"), Batches: batchOf(t, 4, "b")})
	var pr wire.ProduceReply
	good.expectReply(corr, &pr)
	if pr.BaseOffset != 4 {
		t.Fatalf("good producer's second batch at %d, want 4", pr.BaseOffset)
	}
	p := e.TopicByName("safe").Partition(0)
	if p.NextOffset() != 8 {
		t.Fatalf("partition end %d, want 8", p.NextOffset())
	}
	l, err := e.SubscribeLocal(wire.Subscribe{Topic: "safe", Partition: 0, Start: wire.StartEarliest})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var it wire.RecordIter
	var r wire.Record
	n := 0
	for n < 8 {
		d, err := l.Next(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for rest := d.Batches(); len(rest) > 0; {
			h, err := it.Reset(rest)
			if err != nil {
				t.Fatal(err)
			}
			rest = rest[h.Size():]
			for it.Next(&r) {
				if r.Offset != int64(n) {
					t.Fatalf("record offset %d, want %d", r.Offset, n)
				}
				n++
			}
		}
	}
	if st := s.Stats().ProtocolErrors.Load(); st < uint64(len(cases)) {
		t.Fatalf("protocol errors counted %d, want at least %d", st, len(cases))
	}
}

func TestAuthAndACL(t *testing.T) {
	s, e := startServer(t, func(o *Options) {
		o.Tokens = map[string]string{"s3cret": "alice", "other": "bob"}
		o.ACL = Rules{{Principal: "alice", Actions: ActProduce | ActConsume, Topic: "orders.*"}}
	})
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "orders.eu"}); err != nil { // alice may not create it
		t.Fatal(err)
	}
	c := dial(t, s)
	corr := c.send(wire.OpHello, 0, &wire.Hello{Version: wire.ProtocolVersion})
	var hr wire.HelloReply
	c.expectReply(corr, &hr)
	if !hr.AuthRequired {
		t.Fatal("hello reply does not ask for authentication")
	}
	// Before auth, requests are refused.
	corr = c.send(wire.OpListTopics, 0, nil)
	f := c.mustNext()
	var eb wire.ErrorBody
	if f.Op != wire.OpError || eb.Decode(f.Body) != nil || eb.Code != wire.CodeAuthFailed || f.Corr != corr {
		t.Fatalf("unauthenticated request answered %v %v", f.Op, eb.Code)
	}
	corr = c.send(wire.OpAuth, 0, &wire.Auth{Mechanism: "token", Payload: []byte("s3cret")})
	c.expectReply(corr, nil)
	corr = c.send(wire.OpProduce, 0, &wire.Produce{Durability: wire.DurabilityWritten, Topic: []byte("orders.eu"), Batches: batchOf(t, 1, "o")})
	c.expectReply(corr, nil)
	corr = c.send(wire.OpProduce, 0, &wire.Produce{Durability: wire.DurabilityWritten, Topic: []byte("payroll"), Batches: batchOf(t, 1, "p")})
	f = c.mustNext()
	if f.Op != wire.OpError || eb.Decode(f.Body) != nil || eb.Code != wire.CodeNotAuthorized || f.Corr != corr {
		t.Fatalf("produce outside the ACL answered %v %v", f.Op, eb.Code)
	}
	bad := dial(t, s)
	bad.send(wire.OpHello, 0, &wire.Hello{Version: wire.ProtocolVersion})
	bad.mustNext()
	bad.send(wire.OpAuth, 0, &wire.Auth{Mechanism: "token", Payload: []byte("wrong")})
	bad.expectClosedWith(wire.CodeAuthFailed)
}

func TestIdleConnectionsClose(t *testing.T) {
	s, _ := startServer(t, func(o *Options) { o.IdleTimeout = 300 * time.Millisecond })
	c := dial(t, s)
	c.hello()
	start := time.Now()
	c.expectClosedWith(wire.CodeTimeout)
	if time.Since(start) > 5*time.Second {
		t.Fatal("idle connection outlived its timeout by seconds")
	}
	if _, err := c.next(); !errors.Is(err, io.EOF) && err == nil {
		t.Fatal("connection still open")
	}
}

// TestInboxOverflowLosesNothing: a consumer subscribed to more partitions than its inbox has slots,
// all woken at once, still receives everything (the overflow rescan serves what dropped events asked).
func TestInboxOverflowLosesNothing(t *testing.T) {
	s, e := startServer(t, nil)
	const parts = 3 * inboxCapacity
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "wide", Partitions: parts}); err != nil {
		t.Fatal(err)
	}
	c := dial(t, s)
	c.hello()
	corr := c.send(wire.OpSubscribe, 0, &wire.Subscribe{SubID: 1, Topic: "wide", Partition: -1, Start: wire.StartLatest, Credit: 1 << 30})
	c.expectReply(corr, nil)
	// Every partition's cursor is caught up and waiting; one append to each wakes them all at once,
	// from another goroutine, while the consumer's loop is idle.
	batch := batchOf(t, 1, "w")
	for p := int32(0); p < parts; p++ {
		if _, _, err := e.TopicByName("wide").Partition(p).Append(batch); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[int32]bool{}
	for len(seen) < parts {
		f := c.mustNext()
		var d wire.Deliver
		if f.Op != wire.OpDeliver || d.Decode(f.Body) != nil {
			t.Fatalf("unexpected %v", f.Op)
		}
		seen[d.Partition] = true
	}
}

// TestMinDurability: with the broker's floor at fsync, a produce asking for written is acknowledged
// only once synced.
func TestMinDurability(t *testing.T) {
	s, e := startServer(t, func(o *Options) { o.MinDurability = wire.DurabilityFsync })
	c := dial(t, s)
	c.hello()
	for i := 0; i < 10; i++ {
		corr := c.send(wire.OpProduce, 0, &wire.Produce{Durability: wire.DurabilityWritten, Partition: 0, Topic: []byte("floor"), Batches: batchOf(t, 2, "f")})
		var pr wire.ProduceReply
		c.expectReply(corr, &pr)
		if synced := e.TopicByName("floor").Partition(0).SyncedOffset(); synced <= pr.LastOffset {
			t.Fatalf("written produce of offset %d acknowledged before the sync (synced %d) under an fsync floor", pr.LastOffset, synced)
		}
	}
}

// TestAssignReachesIdleMember: a rebalance is pushed to a member that sends nothing.
func TestAssignReachesIdleMember(t *testing.T) {
	s, e := startServer(t, nil)
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "idle", Partitions: 4}); err != nil {
		t.Fatal(err)
	}
	a := dial(t, s)
	a.hello()
	corr := a.send(wire.OpSubscribe, 0, &wire.Subscribe{SubID: 1, Topic: "idle", Partition: -1, Group: "g", Credit: 1 << 20})
	a.expectReply(corr, nil)
	var as wire.Assign
	if f := a.mustNext(); f.Op != wire.OpAssign || as.Decode(f.Body) != nil || len(as.Partitions) != 4 {
		t.Fatalf("first assignment: %v %+v", f.Op, as)
	}
	b := dial(t, s)
	b.hello()
	corr = b.send(wire.OpSubscribe, 0, &wire.Subscribe{SubID: 1, Topic: "idle", Partition: -1, Group: "g", Credit: 1 << 20})
	b.expectReply(corr, nil)
	// a sends nothing; its new, smaller share must still arrive.
	if f := a.mustNext(); f.Op != wire.OpAssign || as.Decode(f.Body) != nil || len(as.Partitions) != 2 {
		t.Fatalf("reassignment to the idle member: %v %+v", f.Op, as)
	}
}
