package kafka

import (
	"bytes"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicemq/sluice/engine"
	"github.com/sluicemq/sluice/engine/auth"
	"github.com/sluicemq/sluice/wire"
)

// Fuzzing the request decoder: a stream of bytes is fed to a connection through an in-memory
// transport, once whole and once split at the points cuts names, and must give the same answers
// (one run's output a prefix of the other's: a Fetch may wait on a clock) and the same verdict on
// closing, without panicking. Run with: go test -run '^$' -fuzz '^FuzzRequest$' -fuzztime 60s ./engine/kafka/

// memTransport is a transport over byte slices, driven by the test's goroutine.
type memTransport struct {
	in       []byte
	out      bytes.Buffer
	outbound int // what OutboundBuffered reports: bytes a socket has not taken
}

func (m *memTransport) Peek(n int) ([]byte, error) {
	if n > len(m.in) {
		return nil, io.ErrShortBuffer
	}
	return m.in[:n:n], nil
}
func (m *memTransport) Discard(n int) (int, error)  { m.in = m.in[n:]; return n, nil }
func (m *memTransport) InboundBuffered() int        { return len(m.in) }
func (m *memTransport) OutboundBuffered() int       { return m.outbound }
func (m *memTransport) Write(b []byte) (int, error) { return m.out.Write(b) }
func (m *memTransport) Writev(bs [][]byte) (int, error) {
	n := 0
	for _, b := range bs {
		k, _ := m.out.Write(b)
		n += k
	}
	return n, nil
}
func (m *memTransport) Wake(gnet.AsyncCallback) error { return nil }
func (m *memTransport) Close() error                  { return nil }
func (m *memTransport) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}
func (m *memTransport) LocalAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9092}
}

// fuzzServer is a Server that is never started: its connections are driven by hand. The ACL lets
// everyone consume and nothing else, so that answers do not depend on what an earlier run stored
// or created.
func fuzzServer(t testing.TB) *Server {
	dir := t.TempDir()
	e, err := engine.Open(engine.Options{DataDir: dir, MemoryDir: filepath.Join(dir, "mem"), SegmentBytes: 1 << 20, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateTopic(wire.TopicConfig{Name: "t", Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.TopicByName("t").Partition(0).Append(testBatch()); err != nil {
		t.Fatal(err)
	}
	s := &Server{opts: Options{Engine: e, Logger: quiet, MaxFrame: 4 << 10,
		ACL: auth.Rules{{Principal: "*", Actions: auth.ActConsume, Topic: "*"}}},
		e: e, log: quiet, addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9092}}
	s.opts.setDefaults()
	s.conns.Init(s.opts.MaxConnections, &s.stats.Accepted.Uint64, &s.stats.Refused.Uint64, &s.stats.Connections.Int64)
	s.auth.Store(&authState{authn: s.opts.Authenticator, acl: s.opts.ACL})
	s.coord = newCoordinator(e, s.acl, quiet)
	t.Cleanup(func() { e.Close() })
	return s
}

// feed runs stream through a fresh connection in chunks ending at points, then lets answers that
// finish on other goroutines arrive (bounded), and returns the output and whether it closed.
func feed(s *Server, stream []byte, points []int) ([]byte, bool) {
	s.nextProducerID.Store(1000)
	m := &memTransport{}
	c := newConn(s, m)
	defer c.close()
	from := 0
	for _, p := range append(points, len(stream)) {
		m.in = append(m.in, stream[from:p]...)
		from = p
		if c.onTraffic() == gnet.Close {
			return m.out.Bytes(), true
		}
	}
	for i := 0; i < 100 && c.q.n > 0 && !c.dead; i++ {
		time.Sleep(time.Millisecond)
		c.flags.Store(flagDone | flagRetry)
		if c.onTraffic() == gnet.Close {
			return m.out.Bytes(), true
		}
	}
	return m.out.Bytes(), c.dead
}

func fuzzRequestSeeds() [][]byte {
	var seeds [][]byte
	api := kmsg.NewPtrApiVersionsRequest()
	api.SetVersion(3)
	meta := kmsg.NewPtrMetadataRequest()
	meta.SetVersion(12)
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr("t")
	meta.Topics = append(meta.Topics, mt)
	fetch := kmsg.NewPtrFetchRequest()
	fetch.SetVersion(12)
	fetch.MaxWaitMillis, fetch.MinBytes = 0, 1
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = "t"
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.PartitionMaxBytes = 1 << 20
	ft.Partitions = append(ft.Partitions, fp)
	fetch.Topics = append(fetch.Topics, ft)
	produce := kmsg.NewPtrProduceRequest()
	produce.SetVersion(9)
	produce.Acks = 1
	pt := kmsg.NewProduceRequestTopic()
	pt.Topic = "t"
	pp := kmsg.NewProduceRequestTopicPartition()
	pp.Records = testBatch()
	pt.Partitions = append(pt.Partitions, pp)
	produce.Topics = append(produce.Topics, pt)
	list := kmsg.NewPtrListOffsetsRequest()
	list.SetVersion(6)
	lt := kmsg.NewListOffsetsRequestTopic()
	lt.Topic = "t"
	lp := kmsg.NewListOffsetsRequestTopicPartition()
	lp.Timestamp = -1
	lt.Partitions = append(lt.Partitions, lp)
	list.Topics = append(list.Topics, lt)
	initp := kmsg.NewPtrInitProducerIDRequest()
	initp.SetVersion(4)
	find := kmsg.NewPtrFindCoordinatorRequest()
	find.SetVersion(4)
	find.CoordinatorKeys = []string{"g"}
	var all []byte
	for i, r := range []kmsg.Request{api, meta, fetch, produce, list, initp, find} {
		one := appendRequest(nil, int32(i), r)
		seeds = append(seeds, one)
		all = append(all, one...)
	}
	return append(seeds, all)
}

func FuzzRequest(f *testing.F) {
	for i, s := range fuzzRequestSeeds() {
		f.Add(s, []byte{byte(i), 3, 17, 1})
	}
	s := fuzzServer(f)
	f.Fuzz(func(t *testing.T, stream, cuts []byte) {
		var points []int
		p := 0
		for _, c := range cuts {
			p += int(c)
			if p > len(stream) {
				break
			}
			points = append(points, p)
		}
		whole, wholeClosed := feed(s, stream, nil)
		split, splitClosed := feed(s, stream, points)
		n := min(len(whole), len(split))
		if !bytes.Equal(whole[:n], split[:n]) {
			t.Fatalf("answers differ when the input is split at %v:\nwhole %x\nsplit %x", points, whole, split)
		}
		if wholeClosed != splitClosed {
			t.Fatalf("closed: whole %v, split %v", wholeClosed, splitClosed)
		}
	})
}

// testBatch is a RecordBatch v2 of one record.
func testBatch() []byte {
	var b wire.BatchBuilder
	b.Reset()
	b.Append([]byte("k"), []byte("v"), nil, 1_700_000_000_000)
	out, err := b.Build()
	if err != nil {
		panic(err)
	}
	return out
}
