package kafka

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// randomProduce builds a Produce request of version v with random topics, partitions and record
// bytes (null record sets and transactional ids included), and tagged fields in flexible versions.
func randomProduce(r *rand.Rand, v int16) *kmsg.ProduceRequest {
	req := kmsg.NewPtrProduceRequest()
	req.SetVersion(v)
	if r.IntN(4) == 0 {
		req.TransactionID = kmsg.StringPtr("txn")
	}
	req.Acks = []int16{-1, 0, 1, 2}[r.IntN(4)]
	req.TimeoutMillis = r.Int32()
	for range r.IntN(4) {
		t := kmsg.NewProduceRequestTopic()
		t.Topic = string(rune('a' + r.IntN(26)))
		for range r.IntN(4) {
			p := kmsg.NewProduceRequestTopicPartition()
			p.Partition = r.Int32N(8)
			if r.IntN(5) > 0 {
				p.Records = make([]byte, r.IntN(64))
				for i := range p.Records {
					p.Records[i] = byte(r.Uint32())
				}
			}
			if v >= 9 && r.IntN(3) == 0 {
				p.UnknownTags.Set(7, []byte{1, 2, 3})
			}
			t.Partitions = append(t.Partitions, p)
		}
		req.Topics = append(req.Topics, t)
	}
	if v >= 9 && r.IntN(3) == 0 {
		req.UnknownTags.Set(9, []byte("x"))
	}
	return req
}

// TestProduceDecodeMatchesKmsg: the listener's Produce walker reads every version served (3-9)
// as kmsg does, into one reused request: the same transactional flag, acks, timeout, topics,
// partitions and record bytes (null stays null); every prefix of a request is refused exactly
// when kmsg refuses it, and never read past its end.
func TestProduceDecodeMatchesKmsg(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var got produceReq
	for v := int16(3); v <= 9; v++ {
		for range 300 {
			want := randomProduce(r, v)
			body := want.AppendTo(nil)
			got.version = v
			if err := got.decode(body); err != nil {
				t.Fatalf("v%d: %v", v, err)
			}
			if got.transactional != (want.TransactionID != nil) || got.acks != want.Acks ||
				got.timeoutMillis != want.TimeoutMillis || len(got.topics) != len(want.Topics) {
				t.Fatalf("v%d: header %+v, want %+v", v, got, want)
			}
			for i, wt := range want.Topics {
				gt := got.topics[i]
				if gt.name != wt.Topic || len(gt.parts) != len(wt.Partitions) {
					t.Fatalf("v%d topic %d: %q with %d partitions, want %q with %d", v, i, gt.name, len(gt.parts), wt.Topic, len(wt.Partitions))
				}
				for j, wp := range wt.Partitions {
					gp := gt.parts[j]
					if gp.id != wp.Partition || !bytes.Equal(gp.records, wp.Records) || (gp.records == nil) != (wp.Records == nil) {
						t.Fatalf("v%d topic %d partition %d: %d %x, want %d %x", v, i, j, gp.id, gp.records, wp.Partition, wp.Records)
					}
				}
			}
			for cut := range len(body) {
				prefix := bytes.Clone(body[:cut]) // exact capacity: a read past the end panics
				k := kmsg.NewPtrProduceRequest()
				k.SetVersion(v)
				kerr := k.ReadFrom(prefix)
				got.version = v
				if err := got.decode(prefix); (err == nil) != (kerr == nil) {
					t.Fatalf("v%d cut at %d of %d: walker %v, kmsg %v", v, cut, len(body), err, kerr)
				}
			}
		}
	}
}

// TestProduceAllocs: a Produce request, decoded and answered on a connection that has seen its
// shape, allocates nothing (the request and the answer are reused per connection).
func TestProduceAllocs(t *testing.T) {
	s := fuzzServer(t)
	s.opts.ACL, s.opts.MaxFrame = nil, 1<<20
	req := kmsg.NewPtrProduceRequest()
	req.SetVersion(9)
	req.Acks = 1
	pt := kmsg.NewProduceRequestTopic()
	pt.Topic = "t"
	for id := range int32(2) {
		pp := kmsg.NewProduceRequestTopicPartition()
		pp.Partition, pp.Records = id, testBatch()
		pt.Partitions = append(pt.Partitions, pp)
	}
	req.Topics = append(req.Topics, pt)
	frame := appendRequest(nil, 1, req)
	m := &memTransport{}
	c := newConn(s, m)
	defer c.close()
	run := func() {
		m.in = frame
		m.out.Reset()
		c.onTraffic()
		if m.out.Len() == 0 || c.dead {
			t.Fatal("no answer")
		}
	}
	run() // the connection learns the request's shape
	if n := testing.AllocsPerRun(50, run); n != 0 {
		t.Fatalf("%v allocations per Produce request, want 0", n)
	}
}
